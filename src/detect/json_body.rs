//! Payments inside JSON request bodies: x402 over MCP (`params._meta["x402/payment"]`,
//! `"x402.payment"` from older clients) and MPP over MCP
//! (`_meta["org.paymentauth/credential"]`).
//!
//! The body is read as it streams by [`JsonScanner`], which keeps only the stack of open
//! containers and the first bytes of the key being read: a body of any size is inspected
//! in constant memory, and no payment hides behind padding.
//!
//! What counts as a payment: an object key, anywhere in the document, in the `x402` or
//! `org.paymentauth` namespace (`x402`, `x402/...`, `org.paymentauth/...`), compared after
//! decoding escapes (`"\u0078402/payment"` is `x402/payment`), lower-casing, and mapping
//! every byte that is not a letter or digit to `/`. Not caring where the key sits covers
//! JSON-RPC batches, repeated `params` or `_meta` members (parsers keep either the first
//! or the last), and servers that look for the payment somewhere other than `_meta`.
//!
//! A body that is not strict JSON (comments, single quotes, trailing commas, UTF-16, raw
//! control bytes) cannot be read the way a lenient server might read it, so the scan
//! says so ([`Scan::Unreadable`]) and the caller refuses a body declared as JSON.

use super::Protocol;

/// How deep objects and arrays may nest before a body is called unreadable; strict
/// parsers stop earlier (serde_json at 128), so no server reads what this cannot.
const MAX_DEPTH: usize = 1024;

/// Bytes of a key kept for comparison: the namespaces are much shorter.
const KEY_PREFIX: usize = 64;

/// The payment namespaces, in canonical spelling.
const NAMESPACES: [(&[u8], Protocol); 2] = [
    (b"x402", Protocol::X402Mcp),
    (b"org/paymentauth", Protocol::MppMcp),
];

/// What a scan has found so far. Anything but [`Scan::Clean`] is final.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// No payment key in what was read, and the JSON is well-formed so far.
    Clean,
    /// A payment key, in this protocol.
    Found(Protocol),
    /// Not strict JSON; why.
    Unreadable(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// A value must come next (at the top level, whitespace or the end may too).
    Value,
    /// Just after `[`: a value or `]`.
    ValueOrClose,
    /// Just after `{`: a key or `}`.
    KeyOrClose,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value: `,`, a closing bracket, or at the top level another value.
    AfterValue,
    /// Inside a string; `key` when it is an object key.
    InString { key: bool },
    /// After a backslash in a string.
    Escape { key: bool },
    /// Inside `\uXXXX`, `digits` read so far.
    Unicode { key: bool, digits: u8, value: u16 },
    /// Inside a number, `true`, `false`, `null` (or `NaN`, which Python writes).
    Scalar,
}

/// Longest top-level `id` kept by [`JsonScanner::capturing_id`]: JSON-RPC ids are short
/// numbers or strings.
const MAX_ID_BYTES: usize = 128;

/// What a scanner looks for besides the structure of the JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Payment keys; the first one ends the scan.
    FirstPayment,
    /// Payment keys, every one counted; the scan reads on to the end.
    CountPayments,
    /// Nothing but the structure (a JSON-RPC answer, whose receipt keys are in the x402
    /// namespace too).
    Structure,
}

/// The raw bytes of the top-level object's `id` member, read as they stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum IdCapture {
    /// Not asked for.
    #[default]
    Off,
    /// Waiting for the `id` key.
    Waiting,
    /// The `id` key was read: its value comes next.
    Armed,
    /// Inside the value.
    Reading(Vec<u8>),
    /// The value, whole (`None`: too long, or not a string or a number).
    Read(Option<Vec<u8>>),
}

/// A streaming scanner for payment keys in JSON. Feed it the body chunk by chunk, then
/// call [`JsonScanner::finish`].
#[derive(Debug)]
pub struct JsonScanner {
    /// Open containers, innermost last: `true` for an object.
    stack: Vec<bool>,
    state: State,
    /// The first [`KEY_PREFIX`] decoded bytes of the key being read.
    key: [u8; KEY_PREFIX],
    key_len: usize,
    /// Bytes of a UTF-8 byte-order mark skipped at the start.
    bom: u8,
    /// Whether anything but a byte-order mark was seen.
    started: bool,
    outcome: Scan,
    mode: Mode,
    /// Payment keys seen, and the protocol of the first ([`Mode::CountPayments`]).
    payments: usize,
    first_payment: Option<Protocol>,
    id: IdCapture,
}

impl Default for JsonScanner {
    fn default() -> Self {
        JsonScanner {
            stack: Vec::new(),
            state: State::Value,
            key: [0; KEY_PREFIX],
            key_len: 0,
            bom: 0,
            started: false,
            outcome: Scan::Clean,
            mode: Mode::FirstPayment,
            payments: 0,
            first_payment: None,
            id: IdCapture::Off,
        }
    }
}

const UTF8_BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_scalar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.')
}

impl JsonScanner {
    /// A scanner that reads the whole document and counts its payment keys
    /// ([`JsonScanner::payment_keys`]) instead of stopping at the first.
    pub fn counting() -> Self {
        JsonScanner {
            mode: Mode::CountPayments,
            ..JsonScanner::default()
        }
    }

    /// A scanner that only follows the structure: whether the JSON is well-formed and
    /// when its top-level value is complete ([`JsonScanner::complete`]).
    pub fn structure() -> Self {
        JsonScanner {
            mode: Mode::Structure,
            ..JsonScanner::default()
        }
    }

    /// This scanner, also keeping the raw bytes of the top-level object's `id` member
    /// ([`JsonScanner::top_level_id`]): a JSON-RPC request's id may come after a body
    /// too large to buffer.
    pub fn capturing_id(mut self) -> Self {
        self.id = IdCapture::Waiting;
        self
    }

    /// Payment keys seen so far, and the protocol of the first ([`JsonScanner::counting`]).
    pub fn payment_keys(&self) -> (usize, Option<Protocol>) {
        (self.payments, self.first_payment)
    }

    /// The raw JSON of the top-level object's `id` (the last one, if repeated), once read
    /// whole; `None` if there is none yet, or it is too long or not a string or number.
    pub fn top_level_id(&self) -> Option<&[u8]> {
        match &self.id {
            IdCapture::Read(Some(bytes)) => Some(bytes),
            _ => None,
        }
    }

    /// Whether a whole top-level value has been read (the rest may be whitespace).
    pub fn complete(&self) -> bool {
        self.started
            && self.outcome == Scan::Clean
            && self.stack.is_empty()
            && self.state == State::AfterValue
    }

    /// Reads the next bytes of the body; the outcome so far.
    pub fn feed(&mut self, chunk: &[u8]) -> Scan {
        let mut index = 0;
        while index < chunk.len() && self.outcome == Scan::Clean {
            let byte = chunk[index];
            if !self.started && self.skip_bom(byte) {
                index += 1;
                continue;
            }
            self.started = true;
            if let State::InString { key: false } = self.state {
                // Most of a body is string values: skip to the next byte that matters.
                let rest = &chunk[index..];
                let skip = rest
                    .iter()
                    .position(|b| matches!(b, b'"' | b'\\') || *b < 0x20)
                    .unwrap_or(rest.len());
                self.capture(&rest[..skip]);
                index += skip;
                if skip == rest.len() {
                    break;
                }
            }
            self.step(chunk[index]);
            index += 1;
        }
        self.outcome
    }

    /// The outcome once the body has ended: a document cut off mid-value is unreadable.
    pub fn finish(&mut self) -> Scan {
        if self.outcome == Scan::Clean {
            let complete = self.stack.is_empty()
                && matches!(self.state, State::Value | State::AfterValue | State::Scalar);
            if !complete {
                self.outcome = Scan::Unreadable("the JSON body ends in the middle of a value");
            }
        }
        self.outcome
    }

    /// The outcome so far.
    pub fn outcome(&self) -> Scan {
        self.outcome
    }

    fn skip_bom(&mut self, byte: u8) -> bool {
        match UTF8_BOM.get(self.bom as usize) {
            Some(expected) if *expected == byte => {
                self.bom += 1;
                true
            }
            _ => false,
        }
    }

    fn unreadable(&mut self, why: &'static str) {
        self.outcome = Scan::Unreadable(why);
    }

    fn step(&mut self, byte: u8) {
        if matches!(self.id, IdCapture::Reading(_)) {
            return self.step_in_id(byte);
        }
        self.step_structure(byte);
    }

    /// A byte of the top-level `id` value: kept if it is part of the value.
    fn step_in_id(&mut self, byte: u8) {
        let in_string = matches!(
            self.state,
            State::InString { .. } | State::Escape { .. } | State::Unicode { .. }
        );
        if in_string || (self.state == State::Scalar && is_scalar(byte)) {
            self.capture(&[byte]);
            self.step_structure(byte);
            if self.state == State::AfterValue {
                self.end_id(true);
            }
        } else {
            // A scalar ends at the first byte that is not part of it.
            self.end_id(true);
            self.step_structure(byte);
        }
    }

    fn capture(&mut self, bytes: &[u8]) {
        if let IdCapture::Reading(kept) = &mut self.id {
            if kept.len() + bytes.len() > MAX_ID_BYTES {
                self.id = IdCapture::Read(None);
            } else {
                kept.extend_from_slice(bytes);
            }
        }
    }

    fn end_id(&mut self, whole: bool) {
        if let IdCapture::Reading(kept) = &mut self.id {
            let kept = std::mem::take(kept);
            self.id = IdCapture::Read(whole.then_some(kept));
        }
    }

    fn step_structure(&mut self, byte: u8) {
        match self.state {
            State::Value => self.value_start(byte),
            State::ValueOrClose if byte == b']' => self.close(false),
            State::ValueOrClose => self.value_start(byte),
            State::KeyOrClose if byte == b'}' => self.close(true),
            State::KeyOrClose | State::Key => self.key_start(byte),
            State::Colon if byte == b':' => self.state = State::Value,
            State::Colon if is_whitespace(byte) => {}
            State::Colon => self.unreadable("an object key is not followed by `:`"),
            State::AfterValue => self.after_value(byte),
            State::InString { key } => self.in_string(byte, key),
            State::Escape { key } => self.escape(byte, key),
            State::Unicode { key, digits, value } => self.unicode(byte, key, digits, value),
            State::Scalar if is_scalar(byte) => {}
            State::Scalar => {
                self.state = State::AfterValue;
                self.after_value(byte);
            }
        }
    }

    fn value_start(&mut self, byte: u8) {
        if self.id == IdCapture::Armed && !is_whitespace(byte) {
            // Only a string or a number is an id worth echoing.
            self.id = if byte == b'"' || is_scalar(byte) {
                IdCapture::Reading(vec![byte])
            } else {
                IdCapture::Read(None)
            };
        }
        match byte {
            b'{' => self.open(true),
            b'[' => self.open(false),
            b'"' => self.state = State::InString { key: false },
            _ if is_scalar(byte) => self.state = State::Scalar,
            _ if is_whitespace(byte) => {}
            _ => self.unreadable("a byte that cannot start a JSON value"),
        }
    }

    fn key_start(&mut self, byte: u8) {
        match byte {
            b'"' => {
                self.key_len = 0;
                self.state = State::InString { key: true };
            }
            _ if is_whitespace(byte) => {}
            _ => self.unreadable("an object member does not start with a quoted key"),
        }
    }

    fn open(&mut self, object: bool) {
        if self.stack.len() >= MAX_DEPTH {
            return self.unreadable("the JSON body nests deeper than 1024 levels");
        }
        self.stack.push(object);
        self.state = if object {
            State::KeyOrClose
        } else {
            State::ValueOrClose
        };
    }

    fn close(&mut self, object: bool) {
        match self.stack.pop() {
            Some(open) if open == object => self.state = State::AfterValue,
            _ => self.unreadable("a closing bracket does not match what it closes"),
        }
    }

    fn after_value(&mut self, byte: u8) {
        match (byte, self.stack.last()) {
            (_, _) if is_whitespace(byte) => {}
            (b',', Some(true)) => self.state = State::Key,
            (b',', Some(false)) => self.state = State::Value,
            (b'}', Some(_)) => self.close(true),
            (b']', Some(_)) => self.close(false),
            // Several documents one after another (NDJSON): each is read.
            (_, None) => self.value_start(byte),
            _ => self.unreadable("a value is not followed by `,` or a closing bracket"),
        }
    }

    fn in_string(&mut self, byte: u8, key: bool) {
        match byte {
            b'"' if key => {
                self.state = State::Colon;
                self.check_key();
            }
            b'"' => self.state = State::AfterValue,
            b'\\' => self.state = State::Escape { key },
            _ if byte < 0x20 => self.unreadable("a raw control byte inside a JSON string"),
            _ => self.push_key(key, byte),
        }
    }

    fn escape(&mut self, byte: u8, key: bool) {
        let decoded = match byte {
            b'"' | b'\\' | b'/' => byte,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                self.state = State::Unicode {
                    key,
                    digits: 0,
                    value: 0,
                };
                return;
            }
            _ => return self.unreadable("an unknown escape inside a JSON string"),
        };
        self.push_key(key, decoded);
        self.state = State::InString { key };
    }

    fn unicode(&mut self, byte: u8, key: bool, digits: u8, value: u16) {
        let Some(digit) = (byte as char).to_digit(16) else {
            return self.unreadable("a \\u escape without four hex digits");
        };
        let value = (value << 4) | digit as u16;
        if digits < 3 {
            self.state = State::Unicode {
                key,
                digits: digits + 1,
                value,
            };
            return;
        }
        // Only ASCII can spell a namespace; anything else stands in as a separator.
        let byte = u8::try_from(value)
            .ok()
            .filter(u8::is_ascii)
            .unwrap_or(0x80);
        self.push_key(key, byte);
        self.state = State::InString { key };
    }

    fn push_key(&mut self, key: bool, byte: u8) {
        if key {
            if let Some(slot) = self.key.get_mut(self.key_len) {
                *slot = byte;
            }
            self.key_len = self.key_len.saturating_add(1);
        }
    }

    fn check_key(&mut self) {
        let kept = &self.key[..self.key_len.min(KEY_PREFIX)];
        if self.id != IdCapture::Off && self.stack.len() == 1 && kept == b"id" {
            self.id = IdCapture::Armed;
        }
        if self.mode == Mode::Structure {
            return;
        }
        if let Some(protocol) = payment_namespace(kept, self.key_len) {
            self.payments = self.payments.saturating_add(1);
            self.first_payment = self.first_payment.or(Some(protocol));
            if self.mode == Mode::FirstPayment {
                self.outcome = Scan::Found(protocol);
            }
        }
    }
}

/// A key byte as compared: letters lower-cased, digits kept, anything else `/`.
fn canonical_key_byte(byte: u8) -> u8 {
    if byte.is_ascii_alphanumeric() {
        byte.to_ascii_lowercase()
    } else {
        b'/'
    }
}

/// The protocol whose namespace `key` (its first bytes, of `length` in all) is in.
fn payment_namespace(key: &[u8], length: usize) -> Option<Protocol> {
    NAMESPACES.iter().find_map(|(namespace, protocol)| {
        let n = namespace.len();
        let head_matches = key.len() >= n
            && key[..n]
                .iter()
                .zip(namespace.iter())
                .all(|(byte, wanted)| canonical_key_byte(*byte) == *wanted);
        let ends_there = length == n || key.get(n).is_some_and(|b| canonical_key_byte(*b) == b'/');
        (head_matches && ends_there).then_some(*protocol)
    })
}

/// The payment protocol an object key names, if it is in a payment namespace.
pub fn payment_key(key: &str) -> Option<Protocol> {
    let bytes = key.as_bytes();
    payment_namespace(&bytes[..bytes.len().min(KEY_PREFIX)], bytes.len())
}

/// One whole body, scanned.
pub fn scan(body: &[u8]) -> Scan {
    let mut scanner = JsonScanner::default();
    scanner.feed(body);
    scanner.finish()
}

#[cfg(test)]
mod tests;
