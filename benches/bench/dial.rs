//! The command-line half of dialing: how a load generator is told to reach its target
//! (`--proxy`, `--auth`, `--ca`) and how long to measure (`--warmup`, `--duration`). The
//! dialing, tallies and clocks themselves are the kit's (`purser_kit::load`).

use clap::Args;
use http::header::HeaderValue;
use purser_kit::client::basic;
use purser_kit::load::{Clock, Dialer};
use purser_kit::Error;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args, Clone)]
pub(crate) struct Via {
    /// Forward proxy; without it, straight to the target.
    #[arg(long)]
    pub proxy: Option<SocketAddr>,
    /// Proxy credentials `USER:TOKEN` (`Proxy-Authorization: Basic`).
    #[arg(long)]
    pub auth: Option<String>,
    /// PEM roots trusted for TLS (the proxy's interception CA, the origin's CA).
    #[arg(long = "ca")]
    pub cas: Vec<PathBuf>,
}

impl Via {
    pub(crate) fn dialer(&self) -> Result<Dialer, Error> {
        Dialer::new(self.proxy, self.auth.as_deref(), &self.cas)
    }

    /// The credentials of another session of the `--auth` agent: `AGENT.SESSION:TOKEN`.
    pub(crate) fn session_auth(&self, session: &str) -> Result<HeaderValue, Error> {
        let credentials = self
            .auth
            .as_deref()
            .ok_or("sessions need --auth AGENT[.SESSION]:TOKEN")?;
        let (user, token) = credentials.split_once(':').ok_or("--auth is USER:TOKEN")?;
        let agent = user.split('.').next().unwrap_or(user);
        Ok(basic(&format!("{agent}.{session}:{token}")))
    }
}

#[derive(Args, Clone)]
pub(crate) struct Window {
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
}

impl Window {
    /// The measurement window, starting now.
    pub(crate) fn clock(&self) -> Clock {
        Clock::new(self.warmup, self.duration)
    }
}
