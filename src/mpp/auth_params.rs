//! RFC 9110 §11 challenge lists, as `WWW-Authenticate` carries them:
//!
//! ```text
//! WWW-Authenticate = #challenge
//! challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//! auth-param       = token BWS "=" BWS ( token / quoted-string )
//! ```
//!
//! One field value may hold several challenges of several schemes: a comma ends an
//! auth-param, and what follows it is another auth-param only if it is `token BWS =`,
//! otherwise it is the next challenge's scheme (what the MPP SDKs do too). Quoted strings
//! unescape `\"` and `\\`, and also `\uXXXX` (UTF-16 units, surrogate pairs joined, a lone
//! surrogate read as U+FFFD), which mppx writes and both SDKs read: Purser must read a
//! parameter as the paying client will.
//!
//! Anything off the grammar is an error for the whole field value: a value Purser cannot
//! split for certain is not remembered, so a credential answering it is refused.

use super::error::{excerpt, MppError};

/// Most challenges read from one field value, and most parameters in one challenge.
const MAX_ITEMS: usize = 64;

/// One challenge of any scheme, its parameters in order, names lower-cased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthChallenge {
    /// The auth-scheme as written (`Payment`); compare it case-insensitively.
    pub scheme: String,
    /// A token68 credential-style value (`Basic`'s), if the challenge has one.
    pub token68: Option<String>,
    /// `(name, value)`: names lower-cased (they are case-insensitive), values unquoted.
    pub params: Vec<(String, String)>,
}

/// Every challenge in one `WWW-Authenticate` field value.
pub fn parse_challenge_list(text: &str) -> Result<Vec<AuthChallenge>, MppError> {
    let mut cursor = Cursor {
        bytes: text.as_bytes(),
        at: 0,
    };
    let mut challenges = Vec::new();
    loop {
        cursor.skip_separators();
        if cursor.done() {
            return Ok(challenges);
        }
        if challenges.len() >= MAX_ITEMS {
            return Err(cursor.error("more challenges than Purser reads in one field"));
        }
        challenges.push(cursor.challenge()?);
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn is_token68_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~+/".contains(&byte)
}

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn error(&self, what: &str) -> MppError {
        let rest = String::from_utf8_lossy(&self.bytes[self.at.min(self.bytes.len())..]);
        MppError::BadChallengeSyntax(format!("{what} at byte {} ({})", self.at, excerpt(&rest)))
    }

    /// Skips optional whitespace; how many bytes it skipped.
    fn skip_ows(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
        self.at - start
    }

    /// Skips whitespace and the empty list elements `#rule` allows (`a, , b`).
    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.at += 1;
        }
    }

    fn token(&mut self) -> Option<String> {
        let start = self.at;
        while self.peek().is_some_and(is_tchar) {
            self.at += 1;
        }
        // tchars are ASCII, so each is one char.
        (self.at > start).then(|| {
            self.bytes[start..self.at]
                .iter()
                .map(|b| char::from(*b))
                .collect()
        })
    }

    fn challenge(&mut self) -> Result<AuthChallenge, MppError> {
        let Some(scheme) = self.token() else {
            return Err(self.error("expected an auth-scheme"));
        };
        let mut challenge = AuthChallenge {
            scheme,
            token68: None,
            params: Vec::new(),
        };
        let spaced = self.skip_ows() > 0;
        if self.done() || self.peek() == Some(b',') {
            return Ok(challenge);
        }
        if !spaced {
            return Err(self.error("expected a space after the auth-scheme"));
        }
        if let Some(token68) = self.token68() {
            challenge.token68 = Some(token68);
            return Ok(challenge);
        }
        loop {
            if challenge.params.len() >= MAX_ITEMS {
                return Err(self.error("more parameters than Purser reads in one challenge"));
            }
            challenge.params.push(self.param()?);
            self.skip_ows();
            if self.done() {
                return Ok(challenge);
            }
            if self.peek() != Some(b',') {
                return Err(self.error("expected a comma after a parameter"));
            }
            self.skip_separators();
            if self.done() || !self.param_follows() {
                return Ok(challenge);
            }
        }
    }

    /// A token68 that is the whole rest of the element, if that is what follows.
    fn token68(&mut self) -> Option<String> {
        let start = self.at;
        while self.peek().is_some_and(is_token68_char) {
            self.at += 1;
        }
        let run = self.at > start;
        while self.peek() == Some(b'=') {
            self.at += 1;
        }
        let end = self.at;
        self.skip_ows();
        if run && (self.done() || self.peek() == Some(b',')) {
            return std::str::from_utf8(&self.bytes[start..end])
                .ok()
                .map(str::to_string);
        }
        self.at = start;
        None
    }

    /// Whether the next element is `token BWS "="`, an auth-param, rather than a scheme.
    fn param_follows(&mut self) -> bool {
        let start = self.at;
        let named = self.token().is_some();
        self.skip_ows();
        let param = named && self.peek() == Some(b'=');
        self.at = start;
        param
    }

    fn param(&mut self) -> Result<(String, String), MppError> {
        let Some(name) = self.token() else {
            return Err(self.error("expected a parameter name"));
        };
        let name = name.to_ascii_lowercase();
        self.skip_ows();
        if self.peek() != Some(b'=') {
            return Err(self.error("expected = after a parameter name"));
        }
        self.at += 1;
        self.skip_ows();
        let value = if self.peek() == Some(b'"') {
            self.quoted()?
        } else {
            match self.token() {
                Some(token) => token,
                None => return Err(self.error("expected a token or a quoted string")),
            }
        };
        Ok((name, value))
    }

    fn quoted(&mut self) -> Result<String, MppError> {
        self.at += 1; // the opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(byte) = self.peek() else {
                return Err(self.error("unterminated quoted string"));
            };
            self.at += 1;
            match byte {
                b'"' => break,
                b'\\' => self.escape(&mut out)?,
                b'\t' | b' '..=b'~' | 0x80..=0xff => out.push(byte),
                _ => return Err(self.error("control character in a quoted string")),
            }
        }
        // The input is UTF-8 and only whole sequences or ASCII were copied or added.
        String::from_utf8(out).map_err(|_| self.error("quoted string is not UTF-8"))
    }

    /// The byte after a backslash: a quoted-pair, or a `\uXXXX` UTF-16 escape.
    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), MppError> {
        let Some(byte) = self.peek() else {
            return Err(self.error("unterminated quoted string"));
        };
        if let Some(unit) = self.unicode_unit(self.at) {
            self.at += 5;
            let ch = if (0xD800..=0xDBFF).contains(&unit) {
                let low = (self.peek() == Some(b'\\'))
                    .then(|| self.unicode_unit(self.at + 1))
                    .flatten()
                    .filter(|low| (0xDC00..=0xDFFF).contains(low));
                match low {
                    Some(low) => {
                        self.at += 6;
                        let code = 0x10000
                            + ((u32::from(unit) - 0xD800) << 10)
                            + (u32::from(low) - 0xDC00);
                        char::from_u32(code).unwrap_or('\u{FFFD}')
                    }
                    None => '\u{FFFD}',
                }
            } else {
                char::from_u32(u32::from(unit)).unwrap_or('\u{FFFD}')
            };
            let mut buffer = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buffer).as_bytes());
            return Ok(());
        }
        match byte {
            b'\t' | b' '..=b'~' | 0x80..=0xff => {
                self.at += 1;
                out.push(byte);
                Ok(())
            }
            _ => Err(self.error("control character in a quoted string")),
        }
    }

    /// The UTF-16 unit of `uXXXX` starting at `at`, if that is what is there.
    fn unicode_unit(&self, at: usize) -> Option<u16> {
        let body = self.bytes.get(at..at + 5)?;
        if body[0] != b'u' {
            return None;
        }
        let digits = std::str::from_utf8(&body[1..]).ok()?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u16::from_str_radix(digits, 16).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(challenge: &AuthChallenge) -> Vec<(&str, &str)> {
        challenge
            .params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn several_challenges_of_several_schemes_in_one_value() {
        let list = parse_challenge_list(
            r#"Basic realm="a, b", Payment id="x1", Method=evm , request=eyJ9,Bearer, Negotiate abc==, Payment id="x2""#,
        )
        .unwrap();
        let schemes: Vec<&str> = list.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(
            schemes,
            ["Basic", "Payment", "Bearer", "Negotiate", "Payment"]
        );
        assert_eq!(params(&list[0]), [("realm", "a, b")]);
        assert_eq!(
            params(&list[1]),
            [("id", "x1"), ("method", "evm"), ("request", "eyJ9")]
        );
        assert!(list[2].params.is_empty() && list[2].token68.is_none());
        assert_eq!(list[3].token68.as_deref(), Some("abc=="));
        assert_eq!(params(&list[4]), [("id", "x2")]);
    }

    #[test]
    fn quoted_strings_unescape_pairs_and_utf16_escapes() {
        let list = parse_challenge_list(
            r#"Payment a="q\"uote\\d", b="caf\u00e9", c="\ud83d\ude00", d="\ud83d", e="x\y""#,
        )
        .unwrap();
        assert_eq!(
            params(&list[0]),
            [
                ("a", "q\"uote\\d"),
                ("b", "café"),
                ("c", "😀"),
                ("d", "\u{FFFD}"),
                ("e", "xy")
            ]
        );
        let spaced = parse_challenge_list("Payment  id = \"1\" ,\t,  realm=r").unwrap();
        assert_eq!(params(&spaced[0]), [("id", "1"), ("realm", "r")]);
    }

    #[test]
    fn values_off_the_grammar_are_errors_not_guesses() {
        for bad in [
            r#"Payment id="unterminated"#,
            r#"Payment id="a" realm="b""#,
            "Payment id=\"a\u{1}\"",
            r#"Payment=id="a""#,
            "Payment id=\"a\", =b",
            "\"quoted\" id=1",
            "Payment id=a=b",
        ] {
            assert!(parse_challenge_list(bad).is_err(), "{bad:?}");
        }
        // `id=` alone is a token68, which a Payment challenge cannot use (its caller says so).
        let token68 = parse_challenge_list("Payment id=").unwrap();
        assert_eq!(token68[0].token68.as_deref(), Some("id="));
        assert!(parse_challenge_list("").unwrap().is_empty());
        assert!(parse_challenge_list(" , ,").unwrap().is_empty());
        let many = vec!["Payment id=1"; MAX_ITEMS + 1].join(", ");
        assert!(parse_challenge_list(&many).is_err());
    }
}
