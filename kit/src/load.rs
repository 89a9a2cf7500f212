//! Load-generation primitives: how a generator reaches a target (straight or through a
//! forward proxy: absolute form for `http://`, a `CONNECT` tunnel then TLS for
//! `https://`), the measurement window it counts in, and per-task tallies of requests,
//! errors and latencies.

use crate::client::{basic, exchange, handshake, Sender};
use crate::{tunnel, Error};
use bytes::Bytes;
use http::header::{HeaderValue, HOST, PROXY_AUTHORIZATION};
use http::{Method, Request, Uri};
use http_body_util::Full;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type Stream = Box<dyn Io>;

/// Where requests go: scheme, host, port, and the path to ask for.
#[derive(Clone, Debug)]
pub struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, Error> {
        let uri: Uri = url.parse()?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{url}: only http:// and https:// targets").into()),
        };
        let host = uri.host().ok_or("target needs a host")?;
        Ok(Target {
            https,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
            path: uri.path_and_query().map_or("/".into(), |p| p.to_string()),
        })
    }

    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority(), self.path)
    }
}

/// How connections are opened: straight or through a proxy, with which TLS roots.
#[derive(Clone)]
pub struct Dialer {
    pub proxy: Option<SocketAddr>,
    pub auth: Option<HeaderValue>,
    pub tls: Arc<rustls::ClientConfig>,
}

impl Dialer {
    /// Through `proxy` when given, with `USER:TOKEN` proxy credentials when given,
    /// trusting the CA files `cas` for TLS (without resumption: every handshake is full).
    pub fn new(
        proxy: Option<SocketAddr>,
        auth: Option<&str>,
        cas: &[PathBuf],
    ) -> Result<Dialer, Error> {
        let cas: Vec<&std::path::Path> = cas.iter().map(PathBuf::as_path).collect();
        Ok(Dialer {
            proxy,
            auth: auth.map(basic),
            tls: tunnel::tls_config(&cas, &[b"http/1.1"], false)?,
        })
    }

    /// A byte stream to `target`: TCP, then `CONNECT` (through a proxy, for TLS), then
    /// TLS with `target.host` as the server name.
    pub async fn open(&self, target: &Target) -> Result<Stream, Error> {
        if let (true, Some(proxy)) = (target.https, self.proxy) {
            let auth = self.auth.as_ref().map(|v| v.to_str()).transpose()?;
            let tls = tunnel::tls_through_proxy(proxy, &target.authority(), auth, self.tls.clone())
                .await?;
            return Ok(Box::new(tls));
        }
        let tcp = match self.proxy {
            Some(proxy) => TcpStream::connect(proxy).await?,
            None => TcpStream::connect((target.host.as_str(), target.port)).await?,
        };
        tcp.set_nodelay(true)?;
        if !target.https {
            return Ok(Box::new(tcp));
        }
        let tls = tunnel::tls_connect(tcp, &target.host, self.tls.clone()).await?;
        Ok(Box::new(tls))
    }

    /// An HTTP/1.1 client connection to `target`.
    pub async fn http(&self, target: &Target) -> Result<Sender, Error> {
        handshake(self.open(target).await?).await
    }

    /// A `GET` of `target` as it must be written on a connection from [`Dialer::http`]:
    /// absolute form to a proxy for `http://` (with `auth`, else the dialer's
    /// credentials), origin form otherwise.
    pub fn get(&self, target: &Target, auth: Option<&HeaderValue>) -> Request<Full<Bytes>> {
        let absolute = self.proxy.is_some() && !target.https;
        let uri = if absolute {
            target.url()
        } else {
            target.path.clone()
        };
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(HOST, target.authority())
            .body(Full::new(Bytes::new()))
            .expect("valid request");
        if absolute {
            if let Some(auth) = auth.or(self.auth.as_ref()) {
                req.headers_mut().insert(PROXY_AUTHORIZATION, auth.clone());
            }
        }
        req
    }
}

/// Sends `req` and reads the whole answer; anything but `200` is an error. The body's
/// length.
pub async fn get_ok(sender: &mut Sender, req: Request<Full<Bytes>>) -> Result<u64, Error> {
    let answer = exchange(sender, req).await?;
    if answer.status != http::StatusCode::OK {
        return Err(format!("{}: {}", answer.status, answer.excerpt().trim()).into());
    }
    Ok(answer.body.len() as u64)
}

/// `count` connections to `target`, each after one `GET` answered `200`, kept open: what
/// idle keep-alive connections cost the proxy.
pub async fn open_idle(
    dialer: &Dialer,
    target: &Target,
    count: usize,
) -> Result<Vec<Sender>, Error> {
    let mut open = Vec::with_capacity(count);
    for _ in 0..count {
        let mut sender = dialer.http(target).await?;
        get_ok(&mut sender, dialer.get(target, None)).await?;
        open.push(sender);
    }
    Ok(open)
}

/// Cores the generator used since `cpu_start` (its CPU seconds then) over the wall time
/// since `wall`: `gen_cpu=…`, so a run can tell when the generator set the pace.
pub fn gen_cpu(cpu_start: f64, wall: Instant) -> String {
    let secs = wall.elapsed().as_secs_f64().max(1e-3);
    let used = crate::process::cpu_seconds(None) - cpu_start;
    format!("gen_cpu={:.2}", used / secs)
}

/// A number unique to this run of the generator (payment nonces, host names).
pub fn run_id() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_nanos() as u64) ^ ((std::process::id() as u64) << 40)
}

/// Per-task tallies, merged at the end.
#[derive(Default)]
pub struct Tally {
    pub sent: u64,
    pub measured: u64,
    pub errors: u64,
    pub behind: u64,
    pub unsent: u64,
    pub reconnects: u64,
    pub bytes: u64,
    pub exhausted: bool,
    pub last_done: Option<Instant>,
    pub latencies_us: Vec<u64>,
    pub first_error: Option<String>,
}

impl Tally {
    pub fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| e.to_string());
    }

    pub fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        self.measured += other.measured;
        self.errors += other.errors;
        self.behind += other.behind;
        self.unsent += other.unsent;
        self.reconnects += other.reconnects;
        self.bytes += other.bytes;
        self.exhausted |= other.exhausted;
        self.last_done = self.last_done.max(other.last_done);
        self.latencies_us.extend(other.latencies_us);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// `p50_us=… p90_us=… p99_us=… p999_us=… max_us=…` over the latencies.
    pub fn percentiles(&mut self) -> String {
        self.latencies_us.sort_unstable();
        crate::stats::percentiles_us(&self.latencies_us)
    }

    pub fn report_error(&self, mode: &str) {
        if let Some(e) = &self.first_error {
            eprintln!("bench {mode}: {} errors; first: {e}", self.errors);
        }
    }
}

pub async fn join_all(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Result<Tally, Error> {
    let mut all = Tally::default();
    for task in tasks {
        all.merge(task.await?);
    }
    Ok(all)
}

/// The measurement window: warm-up from `start`, measured from `warm_end` to `end`.
#[derive(Clone, Copy)]
pub struct Clock {
    pub start: Instant,
    pub warm_end: Instant,
    pub end: Instant,
}

impl Clock {
    /// From now: `warmup` seconds, then `duration` seconds measured.
    pub fn new(warmup: f64, duration: f64) -> Clock {
        let start = Instant::now();
        let warm_end = start + Duration::from_secs_f64(warmup);
        Clock {
            start,
            warm_end,
            end: warm_end + Duration::from_secs_f64(duration),
        }
    }

    pub fn measured(&self, at: Instant) -> bool {
        at >= self.warm_end && at <= self.end
    }
}

/// Runs `count` jobs over `workers` tasks; job `i` gets `i`. Returns the merged tally.
pub async fn spread<F, Fut>(count: usize, workers: usize, job: F) -> Result<Tally, Error>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), Error>> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let (job, next) = (job.clone(), next.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        break tally;
                    }
                    tally.sent += 1;
                    if let Err(e) = job(i).await {
                        tally.error(e);
                    }
                }
            })
        })
        .collect();
    join_all(tasks).await
}
