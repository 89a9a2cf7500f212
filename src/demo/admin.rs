//! The demo's view of Purser's admin API: the same endpoints the console and the
//! `purser approvals|sessions|traces` commands use (sessions, holds, the proof log).

use super::error::DemoError;
use super::http::send;
use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::Full;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Purser's admin listener.
#[derive(Clone)]
pub(super) struct Admin {
    pub address: SocketAddr,
}

impl Admin {
    /// The console, for a person to watch (and approve holds in).
    pub(super) fn console_url(&self) -> String {
        format!("http://{}/", self.address)
    }

    /// The admin API's base URL, as `purser approvals --admin` takes it.
    pub(super) fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A session's budget and phase (`GET /v1/sessions/ID`).
    pub(super) async fn session(&self, id: &str) -> Result<Value, DemoError> {
        self.call(Method::GET, &format!("/v1/sessions/{id}"), None)
            .await
    }

    /// The holds waiting for a person (`GET /v1/approvals`).
    pub(super) async fn pending_holds(&self) -> Result<Vec<Value>, DemoError> {
        let listing = self.call(Method::GET, "/v1/approvals", None).await?;
        Ok(listing["approvals"].as_array().cloned().unwrap_or_default())
    }

    /// Approves a hold, naming who did.
    pub(super) async fn approve(&self, hold_id: &str, by: &str) -> Result<Value, DemoError> {
        let body = serde_json::json!({ "by": by });
        self.call(
            Method::POST,
            &format!("/v1/approvals/{hold_id}/approve"),
            Some(body),
        )
        .await
    }

    /// The session's proof-log lines, oldest first (`GET /v1/traces`).
    pub(super) async fn traces(&self, session: &str) -> Result<Vec<Value>, DemoError> {
        let listing = self
            .call(
                Method::GET,
                &format!("/v1/traces?session={session}&limit=1000"),
                None,
            )
            .await?;
        Ok(listing["traces"].as_array().cloned().unwrap_or_default())
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, DemoError> {
        let failed = |message: String| DemoError::Http {
            what: format!("admin API {method} {path}"),
            message,
        };
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, self.address.to_string())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(bytes))
            .map_err(|e| failed(e.to_string()))?;
        let reply = send(self.address, request, Some(WAIT))
            .await
            .map_err(failed)?;
        if !reply.status.is_success() {
            return Err(failed(format!(
                "answered {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            )));
        }
        reply
            .json()
            .ok_or_else(|| failed("the answer is not JSON".to_string()))
    }
}
