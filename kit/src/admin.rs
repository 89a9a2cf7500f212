//! A client of Purser's admin API: [`Admin`] keeps one keep-alive connection for the
//! benches' approvers and probes; [`console`] is a human answering every hold it is
//! shown; [`call_blocking`] makes one call from synchronous test code (also from inside
//! an async test).

use crate::client::{Answer, Conn};
use crate::Error;
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The admin API on one keep-alive connection.
pub struct Admin {
    conn: Conn,
}

impl Admin {
    pub fn new(addr: SocketAddr) -> Admin {
        Admin {
            conn: Conn::new(addr),
        }
    }

    /// Any call: the whole answer, whatever its status.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, Error> {
        let body = body.map(Value::to_string);
        self.conn.call(method, path, body.as_deref()).await
    }

    /// A `GET` that must answer `200`: its JSON body.
    pub async fn get_json(&mut self, path: &str) -> Result<Value, Error> {
        let answer = self.call(Method::GET, path, None).await?;
        if !answer.status.is_success() {
            return Err(format!(
                "GET {path} answered {}: {}",
                answer.status,
                answer.excerpt()
            )
            .into());
        }
        Ok(answer.json())
    }

    /// The pending holds (`GET /v1/approvals`).
    pub async fn holds(&mut self) -> Result<Vec<Value>, Error> {
        let listed = self.get_json("/v1/approvals").await?;
        Ok(listed["approvals"].as_array().cloned().unwrap_or_default())
    }

    /// The pending holds whose id is not in `seen` yet, their ids then added to it: what a
    /// human polling the console has not looked at.
    pub async fn new_holds(&mut self, seen: &mut HashSet<String>) -> Result<Vec<Value>, Error> {
        let holds = self.holds().await?;
        let id = |hold: &Value| hold["id"].as_str().unwrap_or_default().to_string();
        Ok(holds.into_iter().filter(|h| seen.insert(id(h))).collect())
    }

    /// `POST /v1/approvals/{id}/{verb}` (`approve` or `deny`) with `body`.
    pub async fn decide(&mut self, id: &str, verb: &str, body: &Value) -> Result<Answer, Error> {
        let path = format!("/v1/approvals/{id}/{verb}");
        self.call(Method::POST, &path, Some(body)).await
    }

    /// One line's value from `GET /metrics` (Prometheus text).
    pub async fn metric(&mut self, name: &str) -> Result<Option<String>, Error> {
        let answer = self.call(Method::GET, "/metrics", None).await?;
        let text = String::from_utf8_lossy(&answer.body);
        Ok(text
            .lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.split_whitespace().last())
            .map(str::to_string))
    }
}

/// One hold the [`console`] answered: the hold as listed, when (wall-clock nanoseconds, so
/// another process on the host can compare), the verb, and how the call went.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Answered {
    pub hold: Value,
    pub verb: String,
    pub listed_unix_ns: u64,
    pub sent_unix_ns: u64,
    pub returned_unix_ns: u64,
    /// `Ok(200)`, or what the call answered instead (status and body) or why it failed.
    pub status: Result<u16, String>,
}

/// A human at the console: lists the pending holds every `poll` and answers each new one
/// `think` after seeing it with the verb and body `verdict` chooses (`approve`, `deny`),
/// until `stop` is set and nothing new is pending. Failed listings are retried at the
/// next poll and returned beside the answers.
pub async fn console(
    addr: SocketAddr,
    poll: Duration,
    think: Duration,
    stop: &AtomicBool,
    mut verdict: impl FnMut(&Value) -> (&'static str, Value),
) -> (Vec<Answered>, Vec<String>) {
    let (mut admin, mut seen) = (Admin::new(addr), HashSet::new());
    let (mut answered, mut list_errors) = (Vec::new(), Vec::new());
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let fresh = admin.new_holds(&mut seen).await.unwrap_or_else(|e| {
            list_errors.push(format!("GET /v1/approvals: {e}"));
            Vec::new()
        });
        if fresh.is_empty() && stopping {
            return (answered, list_errors);
        }
        for hold in fresh {
            let listed_unix_ns = crate::merchant::unix_ns();
            if !think.is_zero() {
                tokio::time::sleep(think).await;
            }
            let (verb, body) = verdict(&hold);
            let id = hold["id"].as_str().unwrap_or_default().to_string();
            let sent_unix_ns = crate::merchant::unix_ns();
            let status = match admin.decide(&id, verb, &body).await {
                Ok(a) if a.status == http::StatusCode::OK => Ok(200),
                Ok(a) => Err(format!("{verb} {id}: {} {}", a.status, a.excerpt())),
                Err(e) => Err(format!("{verb} {id}: {e}")),
            };
            answered.push(Answered {
                hold,
                verb: verb.to_string(),
                listed_unix_ns,
                sent_unix_ns,
                returned_unix_ns: crate::merchant::unix_ns(),
                status,
            });
        }
        tokio::time::sleep(poll).await;
    }
}

/// One admin call from synchronous code: `(status, body)`. It runs on a thread and
/// runtime of its own, so an async test may call it too.
pub fn call_blocking(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), Error> {
    let method = Method::from_bytes(method.as_bytes())?;
    let body = body.map(str::to_string);
    let path = path.to_string();
    let call = std::thread::spawn(move || -> Result<(u16, String), String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let answer = Conn::new(addr)
                .call(method, &path, body.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&answer.body).into_owned();
            Ok((answer.status.as_u16(), text))
        })
    });
    Ok(call.join().map_err(|_| "the admin call panicked")??)
}
