//! A small HTTP client for the admin API, used by the operator commands.
//!
//! Every call returns the answer's JSON or a typed [`AdminError`] whose message tells the
//! operator what to do: start Purser, pass the token, or read the server's reason.

use bytes::Bytes;
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::time::Duration;

/// How long one admin call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read (a trace query of 10 000 lines fits).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum AdminError {
    #[error("`{url}` is not a usable admin URL: {detail}")]
    BadUrl { url: String, detail: String },
    #[error("cannot reach the admin API at {url}: {detail} (is `purser run` running?)")]
    Unreachable { url: String, detail: String },
    #[error("the admin API at {url} did not answer within {}s", CALL_TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("admin token required or wrong: set --admin-token or PURSER_ADMIN_TOKEN")]
    Unauthorized,
    #[error(
        "the admin API at {url} has no `{endpoint}` endpoint (is this Purser older than the CLI?)"
    )]
    NoEndpoint { url: String, endpoint: String },
    #[error("{reason} (HTTP {status}, {code})")]
    Refused {
        status: u16,
        code: String,
        reason: String,
    },
    #[error("unexpected answer from the admin API: {0}")]
    BadAnswer(String),
}

/// The admin API at one base URL, with an optional bearer token.
pub(super) struct AdminClient {
    base: String,
    token: Option<String>,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    /// `url` is `http://HOST:PORT[/prefix]`; a bare `HOST:PORT` means `http://`.
    pub(super) fn new(url: &str, token: Option<String>) -> Result<AdminClient, AdminError> {
        let base = normalize_base(url)?;
        let http = Client::builder(TokioExecutor::new()).build_http();
        let token = token.filter(|t| !t.is_empty());
        Ok(AdminClient { base, token, http })
    }

    pub(super) async fn get(&self, path: &str) -> Result<Value, AdminError> {
        self.call(Method::GET, path, None).await
    }

    pub(super) async fn post(&self, path: &str, body: &Value) -> Result<Value, AdminError> {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, AdminError> {
        let request = self.request(method, path, body)?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| self.unreachable(&e))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| AdminError::BadAnswer(format!("cannot read the answer: {e}")))?
                .to_bytes();
            Ok((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| AdminError::Timeout {
                url: self.base.clone(),
            })??;
        self.interpret(status, &bytes, path)
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Request<Full<Bytes>>, AdminError> {
        let target = format!("{}{path}", self.base);
        let uri: Uri = target.parse().map_err(|e| AdminError::BadUrl {
            url: target.clone(),
            detail: format!("{e}"),
        })?;
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(token) = &self.token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let payload = match body {
            Some(value) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(value.to_string())
            }
            None => Bytes::new(),
        };
        builder
            .body(Full::new(payload))
            .map_err(|e| AdminError::BadUrl {
                url: target,
                detail: e.to_string(),
            })
    }

    fn interpret(&self, status: StatusCode, bytes: &[u8], path: &str) -> Result<Value, AdminError> {
        if status == StatusCode::UNAUTHORIZED {
            return Err(AdminError::Unauthorized);
        }
        let parsed = serde_json::from_slice::<Value>(bytes);
        if status.is_success() {
            return parsed.map_err(|e| AdminError::BadAnswer(format!("not JSON: {e}")));
        }
        let body = parsed.unwrap_or(Value::Null);
        let code = text_field(&body, "error").unwrap_or_else(|| "error".to_string());
        if status == StatusCode::NOT_FOUND && code == "not_found" {
            return Err(AdminError::NoEndpoint {
                url: self.base.clone(),
                endpoint: path.split('?').next().unwrap_or(path).to_string(),
            });
        }
        let reason = text_field(&body, "reason")
            .unwrap_or_else(|| String::from_utf8_lossy(bytes).trim().to_string());
        Err(AdminError::Refused {
            status: status.as_u16(),
            code,
            reason,
        })
    }

    fn unreachable(&self, error: &hyper_util::client::legacy::Error) -> AdminError {
        AdminError::Unreachable {
            url: self.base.clone(),
            detail: innermost_cause(error),
        }
    }
}

/// The array under `key` in an answer, e.g. `sessions` in `{"sessions": [...]}`.
pub(super) fn array<'a>(answer: &'a Value, key: &str) -> Result<&'a [Value], AdminError> {
    answer
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| AdminError::BadAnswer(format!("no `{key}` list in the answer")))
}

/// Prints the list under `key` of an answer: the JSON itself with `raw`, `empty` when
/// there is nothing, else the table `table` renders.
pub(super) fn print_list(
    answer: &Value,
    key: &str,
    raw: bool,
    empty: &str,
    table: impl FnOnce(&[Value]) -> super::tables::Table,
) -> Result<(), AdminError> {
    if raw {
        super::tables::print_json(answer);
        return Ok(());
    }
    let items = array(answer, key)?;
    if items.is_empty() {
        println!("{empty}");
    } else {
        print!("{}", table(items).render());
    }
    Ok(())
}

/// Who decides when `--by` is not given: the login name, else `cli`.
pub(super) fn default_decider() -> String {
    std::env::var("USER")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| "cli".to_string())
}

/// Percent-encodes one path segment or query value.
pub(super) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn normalize_base(url: &str) -> Result<String, AdminError> {
    let trimmed = url.trim().trim_end_matches('/');
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    };
    let bad = |detail: &str| AdminError::BadUrl {
        url: url.to_string(),
        detail: detail.to_string(),
    };
    let uri: Uri = with_scheme.parse().map_err(|_| bad("not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("the admin API speaks plain http://"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(with_scheme)
}

/// The last error in a source chain: "Connection refused (os error 111)" rather than
/// "client error (Connect)".
fn innermost_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

fn text_field(body: &Value, key: &str) -> Option<String> {
    body.get(key).and_then(Value::as_str).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_get_a_scheme_and_lose_trailing_slashes() {
        assert_eq!(
            normalize_base("127.0.0.1:8403/").unwrap(),
            "http://127.0.0.1:8403"
        );
        assert_eq!(
            normalize_base("http://admin.local/purser/").unwrap(),
            "http://admin.local/purser"
        );
        assert!(matches!(
            normalize_base("https://x:1"),
            Err(AdminError::BadUrl { .. })
        ));
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode("agent.s1"), "agent.s1");
        assert_eq!(encode("a b/c?"), "a%20b%2Fc%3F");
    }

    #[test]
    fn missing_endpoints_and_refusals_are_told_apart() {
        let client = AdminClient {
            base: "http://127.0.0.1:1".into(),
            token: None,
            http: Client::builder(TokioExecutor::new()).build_http(),
        };
        let missing = br#"{"error":"not_found","reason":"no such admin endpoint"}"#;
        let error = client
            .interpret(StatusCode::NOT_FOUND, missing, "/v1/approvals?x=1")
            .unwrap_err();
        assert!(error.to_string().contains("no `/v1/approvals` endpoint"));
        let conflict = br#"{"error":"invalid_transition","reason":"phases only move forward"}"#;
        let error = client
            .interpret(StatusCode::CONFLICT, conflict, "/v1/sessions/a.b/phase")
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "phases only move forward (HTTP 409, invalid_transition)"
        );
        let error = client
            .interpret(StatusCode::UNAUTHORIZED, b"admin token required", "/v1/x")
            .unwrap_err();
        assert!(matches!(error, AdminError::Unauthorized));
    }
}
