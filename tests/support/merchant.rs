//! A scripted merchant for the settlement tests: plain HTTP/1.1 on loopback, one thread
//! per connection, answering by path prefix the ways a merchant (or an agent's own relay)
//! can answer a payment:
//!
//! * `/ok`: 200 without a receipt; `/error`: 500 without a receipt;
//! * `/settled`: 200 with a receipt that says it settled; `/failed`: 200 with a receipt
//!   that says it did not; `/garbage`: 200 with an unreadable receipt;
//! * `/again`: a fresh 402; `/hold`: like `/ok`, but waits while [`Merchant::hold`] is on.
//!
//! [`Merchant::hang_up_next`] makes the next requests, whatever their path, end with the
//! connection closed and no answer: the payment left, its outcome is unknown.
//!
//! It records every request, and what the proof log held when the request arrived (so a
//! test can tell whether a decision line was on disk before its payment left).

use purser_kit::x402::{encode, receipt, PAYER};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

/// One request as it reached the merchant.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    /// The request target (path and query).
    pub target: String,
    /// The `PAYMENT-SIGNATURE` header, if any.
    pub payment: Option<String>,
    /// The proof log's text when the request arrived (empty when not watching).
    pub log_at_arrival: String,
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    holding: Mutex<bool>,
    released: Condvar,
    waiting: Mutex<usize>,
    hang_ups: Mutex<usize>,
    watch: Mutex<Option<PathBuf>>,
}

pub(crate) struct Merchant {
    pub port: u16,
    shared: Arc<Shared>,
}

impl Merchant {
    pub(crate) fn start() -> Merchant {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind merchant");
        let port = listener.local_addr().expect("merchant address").port();
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = accepting.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        Merchant { port, shared }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Snapshot this proof log as each request arrives.
    pub(crate) fn watch(&self, log: PathBuf) {
        *self.shared.watch.lock().unwrap() = Some(log);
    }

    /// While on, `/hold` requests wait; turning it off lets them all answer.
    pub(crate) fn hold(&self, on: bool) {
        *self.shared.holding.lock().unwrap() = on;
        self.shared.released.notify_all();
    }

    /// The next `count` requests are read, then the connection is closed unanswered.
    pub(crate) fn hang_up_next(&self, count: usize) {
        *self.shared.hang_ups.lock().unwrap() = count;
    }

    /// Requests waiting at `/hold` now.
    pub(crate) fn waiting(&self) -> usize {
        *self.shared.waiting.lock().unwrap()
    }

    pub(crate) fn requests(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Requests that carried a payment.
    pub(crate) fn paid(&self) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|r| r.payment.is_some())
            .collect()
    }
}

fn serve(stream: TcpStream, shared: &Shared) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(clone) => clone,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let target = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    let mut payment = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("payment-signature") {
                payment = Some(value.trim().to_string());
            }
        }
    }
    let log_at_arrival = shared
        .watch
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|log| std::fs::read_to_string(log).ok())
        .unwrap_or_default();
    shared.seen.lock().unwrap().push(Seen {
        target: target.clone(),
        payment,
        log_at_arrival,
    });
    {
        let mut hang_ups = shared.hang_ups.lock().unwrap();
        if *hang_ups > 0 {
            *hang_ups -= 1;
            return;
        }
    }
    if target.starts_with("/hold") {
        wait_while_held(shared);
    }
    let receipt_line = |success: bool| {
        let tx = "0x5e771e5e771e5e771e5e771e5e771e5e771e5e771e5e771e5e771e5e771e5e77";
        format!(
            "payment-response: {}\r\n",
            encode(&receipt(success, tx, PAYER))
        )
    };
    let (status, extra) = match target.split('?').next().unwrap_or("") {
        t if t.starts_with("/error") => ("500 Internal Server Error", String::new()),
        t if t.starts_with("/settled") => ("200 OK", receipt_line(true)),
        t if t.starts_with("/failed") => ("200 OK", receipt_line(false)),
        t if t.starts_with("/garbage") => {
            ("200 OK", "payment-response: !!not-a-receipt!!\r\n".into())
        }
        t if t.starts_with("/again") => ("402 Payment Required", String::new()),
        _ => ("200 OK", String::new()),
    };
    let answer =
        format!("HTTP/1.1 {status}\r\n{extra}content-length: 2\r\nconnection: close\r\n\r\nok");
    let mut stream = stream;
    let _ = stream.write_all(answer.as_bytes());
    let _ = stream.flush();
}

fn wait_while_held(shared: &Shared) {
    *shared.waiting.lock().unwrap() += 1;
    let mut holding = shared.holding.lock().unwrap();
    while *holding {
        holding = shared.released.wait(holding).unwrap();
    }
    drop(holding);
    *shared.waiting.lock().unwrap() -= 1;
}
