//! The servers `benches/run` starts beside the proxies: the origin stub (`origin`), the
//! stub merchant and facilitator (`merchant`), and the test CA and origin certificate
//! (`certs`). Each is the kit's (`purser_kit::origin`, `purser_kit::merchant`,
//! `purser_kit::pki`); this is their command line.

use clap::Args;
use purser_kit::merchant::Merchant;
use purser_kit::origin::{Origin, Profile};
use purser_kit::pki::{server_config, ServerCert, TestPki};
use purser_kit::Error;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Args)]
pub(crate) struct OriginArgs {
    #[arg(long, default_value = "127.0.0.1:18080")]
    listen: SocketAddr,
    /// Serve the same over TLS (HTTP/1.1) here too, with `--cert` and `--key`.
    #[arg(long, requires_all = ["cert", "key"])]
    tls_listen: Option<SocketAddr>,
    #[arg(long)]
    cert: Option<PathBuf>,
    #[arg(long)]
    key: Option<PathBuf>,
}

/// The load origin (`hello\n`, `/bulk?bytes=N`), plain and optionally TLS, until killed.
pub(crate) async fn origin(args: OriginArgs) -> Result<(), Error> {
    let plain = Origin::start(&args.listen.to_string(), Profile::Load, None, false).await?;
    eprintln!("bench origin listening on {}", plain.addr);
    let mut tls = None;
    if let (Some(addr), Some(cert), Some(key)) = (args.tls_listen, &args.cert, &args.key) {
        let config = server_config(ServerCert::from_pem_files(cert, key)?, &[b"http/1.1"]);
        let origin = Origin::start(&addr.to_string(), Profile::Load, Some(config), false).await?;
        eprintln!("bench origin (TLS) listening on {}", origin.addr);
        tls = Some(origin);
    }
    std::future::pending::<()>().await;
    drop((plain, tls));
    Ok(())
}

#[derive(Args)]
pub(crate) struct MerchantArgs {
    #[arg(long, default_value = "127.0.0.1:18290")]
    listen: SocketAddr,
    /// Keep the facilitator's record (`GET /__record`).
    #[arg(long)]
    record: bool,
}

/// The stub merchant and facilitator, until killed.
pub(crate) async fn merchant(args: MerchantArgs) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let suffix = if args.record { ", recording" } else { "" };
    eprintln!(
        "bench merchant listening on {}{suffix}",
        listener.local_addr()?
    );
    let merchant = match args.record {
        true => Merchant::recording(),
        false => Merchant::default(),
    };
    Arc::new(merchant).serve(listener).await;
    Ok(())
}

/// A test CA and a certificate for `127.0.0.1`/`localhost` it signed: `DIR/origin-ca.pem`,
/// `DIR/origin.pem`, `DIR/origin.key`.
pub(crate) fn certs(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    let pki = TestPki::new(dir, "origin");
    pki.server_cert_files(dir, "origin");
    println!("RESULT mode=certs dir={}", dir.display());
    Ok(())
}
