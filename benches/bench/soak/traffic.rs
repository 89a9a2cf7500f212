//! The soak's mix on the wire: the cycle of operations, the payments each sends, and the
//! connections that send them and check every answer against its class.

use super::drive::Ctx;
use super::{Class, Sent};
use http::header::HeaderValue;
use http::StatusCode;
use purser::x402::wire::{PaymentRequiredV2, PaymentRequirementsV2, ResourceInfo};
use purser_kit::client::{basic, Answer, Conn};
use purser_kit::x402::{b64, usdc_offer, Pay};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// $0.001: a paid call.
const PAID_ATOMIC: u64 = 1_000;
/// $0.75: above the soak policy's $0.50 per-call threshold, so held.
const HELD_ATOMIC: u64 = 750_000;
/// $3.00: above the soak policy's `per-call-max` ($2.00), so denied.
const OVER_MAX_ATOMIC: u64 = 3_000_000;
const RULE_OVER_MAX: &str = "per-call-max";
const RULE_FORBIDDEN: &str = "forbidden-merchant";

#[derive(Clone, Copy, Debug)]
enum Op {
    Plain,
    PaidDirect,
    PaidX402,
    Held,
    Denied,
    Malformed,
}

/// The fixed mix: 7 plain, 3 direct paid, 3 paid x402 exchanges, 2 held, 2 denied, 3
/// malformed, interleaved.
#[rustfmt::skip]
const CYCLE: [Op; 20] = [
    Op::Plain, Op::PaidDirect, Op::Malformed, Op::Plain, Op::PaidX402,
    Op::Denied, Op::Plain, Op::PaidDirect, Op::Plain, Op::PaidX402,
    Op::Malformed, Op::Held, Op::Plain, Op::PaidDirect, Op::Denied,
    Op::Plain, Op::PaidX402, Op::Malformed, Op::Plain, Op::Held,
];

/// Deliberately broken payment headers (not payments: hand-written on purpose).
const MALFORMED: [(&str, &str); 4] = [
    ("not base64", "!!!not base64!!!"),
    ("base64 of text", "hello, merchant"),
    (
        "JSON with wrong types",
        r#"{"x402Version":2,"payload":"oops","accepted":7}"#,
    ),
    (
        "truncated JSON",
        r#"{"x402Version":2,"payload":{"authorization":{"from":"0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A","#,
    ),
];

/// A payment header to send, with what identifies it.
struct Outgoing {
    header: String,
    /// SHA-256 hex of the decoded header (Purser's `payment_digest`).
    digest: Option<String>,
    amount_atomic: u64,
}

impl Outgoing {
    /// The payment an x402 client signs for `offer` (by default $`amount` to the stub's
    /// payTo, valid 60 s), valid for the offer's `maxTimeoutSeconds` from now as the
    /// official SDK signs it: Purser keeps a payment's replay keys until then, so this
    /// sets the replay set's size.
    fn signed(
        ctx: &Ctx,
        seq: u64,
        offer: PaymentRequirementsV2,
        resource: Option<ResourceInfo>,
    ) -> Outgoing {
        let amount_atomic = offer.amount.parse().unwrap_or(0);
        let timeout = offer.max_timeout_seconds.unwrap_or(60);
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let pay = Pay::offer(offer)
            .unique(ctx.run, seq)
            .valid_before(now_s + timeout)
            .resource(resource);
        let (header, digest) = pay.header_and_digest();
        Outgoing {
            header,
            digest: Some(digest),
            amount_atomic,
        }
    }

    fn direct(ctx: &Ctx, seq: u64, amount: u64) -> Outgoing {
        let mut offer = usdc_offer(amount);
        offer.max_timeout_seconds = Some(60);
        Outgoing::signed(ctx, seq, offer, None)
    }
}

struct Worker {
    ctx: Arc<Ctx>,
    conn: Conn,
    auth: HeaderValue,
    session: String,
}

impl Worker {
    async fn request(&mut self, path: &str, payment: Option<&str>) -> Result<Answer, String> {
        let url = format!("http://{}{path}", self.ctx.stub);
        let headers: Vec<(&str, &str)> = payment
            .map(|p| ("payment-signature", p))
            .into_iter()
            .collect();
        let timeout = Duration::from_secs(self.ctx.args.request_timeout);
        let answer = self
            .conn
            .get_through(&url, &self.auth, &headers, timeout)
            .await;
        answer.map_err(|e| e.to_string())
    }

    fn path(&self, prefix: &str) -> String {
        let n = self.ctx.next_path.fetch_add(1, Ordering::Relaxed);
        format!("/{prefix}/{n}")
    }

    fn next_seq(&self) -> u64 {
        self.ctx.next_payment.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts one answer of `class` (0: none), with its rule or code and what was wrong.
    fn count(&self, class: Class, status: u16, code: Option<&str>, problem: Option<String>) {
        let mut tally = self.ctx.tally.lock().unwrap();
        tally.count(class, status, code, problem);
    }

    async fn plain(&mut self) {
        let path = self.path("plain");
        let (status, problem) = match self.request(&path, None).await {
            Ok(a) if a.status == StatusCode::OK => (200, None),
            Ok(a) => (
                a.status.as_u16(),
                Some(format!("{path}: {} {}", a.status, a.excerpt())),
            ),
            Err(e) => (0, Some(format!("{path}: {e}"))),
        };
        self.count(Class::Plain, status, None, problem);
    }

    /// Sends one payment and checks the answer against what its class expects.
    async fn pay(
        &mut self,
        class: Class,
        variant: &str,
        path: &str,
        out: Outgoing,
        expect_rule: Option<&str>,
    ) {
        let mut sent = Sent {
            class,
            variant: variant.to_string(),
            session: self.session.clone(),
            digest: out.digest,
            amount_atomic: out.amount_atomic,
            t_ms: self.ctx.t_ms(),
            status: 0,
            decision: None,
            trace: None,
            rule: None,
            code: None,
            ok: false,
        };
        let problem = match self.request(path, Some(&out.header)).await {
            Err(e) => Some(format!("{variant} {path}: {e}")),
            Ok(answer) => {
                sent.status = answer.status.as_u16();
                sent.decision = answer.header("x-purser-decision");
                sent.trace = answer.header("x-purser-trace");
                let body = answer.json();
                sent.rule = body["rule"].as_str().map(str::to_string);
                sent.code = body["code"].as_str().map(str::to_string);
                let decision = sent.decision.as_deref();
                let why = match class {
                    Class::Paid | Class::Held
                        if answer.status != StatusCode::OK || decision != Some("ALLOWED") =>
                    {
                        Some("expected 200 ALLOWED")
                    }
                    Class::Paid | Class::Held
                        if !answer.headers.contains_key("payment-response") =>
                    {
                        Some("no PAYMENT-RESPONSE receipt")
                    }
                    Class::Denied
                        if answer.status != StatusCode::FORBIDDEN || decision != Some("DENIED") =>
                    {
                        Some("expected 403 DENIED")
                    }
                    Class::Denied if sent.rule.as_deref() != expect_rule => {
                        Some("denied by another rule")
                    }
                    Class::Malformed if !answer.status.is_client_error() => Some("expected a 4xx"),
                    _ => None,
                };
                why.map(|why| {
                    format!(
                        "{variant} {path}: {why}, got {} {decision:?} {}",
                        answer.status,
                        answer.excerpt()
                    )
                })
            }
        };
        sent.ok = problem.is_none();
        let code = match class {
            Class::Denied => sent.rule.clone(),
            Class::Malformed => sent.code.clone(),
            _ => None,
        };
        self.count(class, sent.status, code.as_deref(), problem);
        self.ctx.tally.lock().unwrap().payments.push(sent);
    }

    async fn paid_direct(&mut self) {
        let path = self.path("paid");
        let out = Outgoing::direct(&self.ctx, self.next_seq(), PAID_ATOMIC);
        self.pay(Class::Paid, "direct", &path, out, None).await;
    }

    /// The `402` probe: the challenge, counted as its own class.
    async fn probe(&mut self, path: &str) -> Option<PaymentRequiredV2> {
        let (status, challenge, problem) = match self.request(path, None).await {
            Ok(a) => {
                let challenge = a.challenge();
                let problem = challenge.is_none();
                let problem = problem.then(|| format!("{path}: {} without a challenge", a.status));
                (a.status.as_u16(), challenge, problem)
            }
            Err(e) => (0, None, Some(format!("{path}: {e}"))),
        };
        self.count(Class::Challenge, status, None, problem);
        challenge
    }

    async fn paid_x402(&mut self) {
        let path = format!("{}?price={PAID_ATOMIC}", self.path("priced"));
        let Some(mut challenge) = self.probe(&path).await else {
            return;
        };
        let offer = challenge.accepts.swap_remove(0);
        let out = Outgoing::signed(&self.ctx, self.next_seq(), offer, challenge.resource);
        self.pay(Class::Paid, "x402", &path, out, None).await;
    }

    async fn held(&mut self) {
        let path = self.path("premium");
        let out = Outgoing::direct(&self.ctx, self.next_seq(), HELD_ATOMIC);
        let digest = out.digest.clone().unwrap_or_default();
        self.ctx.held_digests.lock().unwrap().insert(digest);
        self.pay(Class::Held, "above threshold", &path, out, None)
            .await;
    }

    async fn denied(&mut self, turn: u64) {
        let seq = self.next_seq();
        let (variant, path, amount, rule) = if turn % 2 == 0 {
            (
                "over per-call max",
                self.path("paid"),
                OVER_MAX_ATOMIC,
                RULE_OVER_MAX,
            )
        } else {
            (
                "forbidden merchant",
                self.path("forbidden"),
                PAID_ATOMIC,
                RULE_FORBIDDEN,
            )
        };
        let out = Outgoing::direct(&self.ctx, seq, amount);
        self.pay(Class::Denied, variant, &path, out, Some(rule))
            .await;
    }

    async fn malformed(&mut self, turn: u64) {
        let (variant, text) = MALFORMED[turn as usize % MALFORMED.len()];
        let header = if variant == "not base64" {
            text.to_string()
        } else {
            b64(text)
        };
        let path = self.path("paid");
        let out = Outgoing {
            header,
            digest: None,
            amount_atomic: 0,
        };
        self.pay(Class::Malformed, variant, &path, out, None).await;
    }
}

/// One connection: the mix at `rate / conns` operations per second until the end.
pub(super) async fn worker(ctx: Arc<Ctx>, index: usize) {
    let session = format!("{}.c{index}", ctx.args.agent);
    let mut w = Worker {
        conn: Conn::new(ctx.proxy),
        auth: basic(&format!("{session}:{}", ctx.args.token)),
        session,
        ctx: ctx.clone(),
    };
    let period = Duration::from_secs_f64(ctx.args.conns as f64 / ctx.args.rate);
    let offset = period.mul_f64(index as f64 / ctx.args.conns as f64);
    let mut ticks = tokio::time::interval_at((ctx.start + offset).into(), period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if Instant::now() >= ctx.end || ctx.stop.load(Ordering::Relaxed) {
            break;
        }
        let slot = ctx.next_op.fetch_add(1, Ordering::Relaxed);
        let turn = slot / CYCLE.len() as u64;
        match CYCLE[slot as usize % CYCLE.len()] {
            Op::Plain => w.plain().await,
            Op::PaidDirect => w.paid_direct().await,
            Op::PaidX402 => w.paid_x402().await,
            Op::Held => w.held().await,
            // Two denied and three malformed slots per cycle: `slot` varies the variant.
            Op::Denied => w.denied(turn * 2 + u64::from(slot % 20 > 10)).await,
            Op::Malformed => w.malformed(turn * 3 + slot % 20 / 7).await,
        }
    }
    ctx.tally.lock().unwrap().reconnects += w.conn.reconnects;
}
