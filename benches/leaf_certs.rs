//! Interception certificates: minting a leaf for a new host (key generation, signing and
//! the rustls server configuration) and serving a cached one.
//!
//! Run: `cargo bench --bench leaf_certs`.

use criterion::{criterion_main, Criterion};
use purser::proxy::ca::CertificateAuthority;
use purser::proxy::leaf_cache::LeafCache;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

fn temp_ca() -> CertificateAuthority {
    let dir = std::env::temp_dir().join(format!("purser-bench-ca-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    CertificateAuthority::load_or_create(&dir).expect("CA").0
}

fn leaf_certs(c: &mut Criterion) {
    let cache = LeafCache::new(temp_ca(), 1_000_000);
    let counter = AtomicU64::new(0);
    c.bench_function("leaf/mint_new_host", |b| {
        b.iter(|| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            black_box(
                cache
                    .server_config(&format!("h{n}.bench.example"))
                    .expect("mint"),
            )
        })
    });
    cache.server_config("cached.bench.example").expect("mint");
    c.bench_function("leaf/cache_hit", |b| {
        b.iter(|| {
            black_box(
                cache
                    .server_config(black_box("cached.bench.example"))
                    .expect("hit"),
            )
        })
    });
    let ca = temp_ca();
    c.bench_function("leaf/sign_only", |b| {
        b.iter(|| black_box(ca.mint_leaf(black_box("sign.bench.example")).expect("sign")))
    });
}

/// The group, configured from the command line. Written out rather than with
/// `criterion_group!`, whose `pub fn` cannot carry the doc comment the crate's lints ask for.
fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    leaf_certs(&mut criterion);
}

criterion_main!(benches);
