//! Crash recovery's reader: arbitrary bytes as the proof log replayed into a fresh
//! engine (budgets, sessions, replay set) at start-up.

#![no_main]

use libfuzzer_sys::fuzz_target;
use purser::telemetry::metrics::Metrics;
use purser::engine::Engine;
use purser::store::{Embedded, SharedStore};
use purser::policy::{Policy, PolicyStore};
use purser::trace::{TraceLog, TraceSettings};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

struct Fixture {
    policy: Arc<PolicyStore>,
    log: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let policy = Policy::from_yaml(Path::new("fuzz.yaml"), "").expect("empty policy");
        let dir = std::env::temp_dir().join(format!("purser-fuzz-recover-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Fixture {
            policy: Arc::new(PolicyStore::new(policy)),
            log: dir.join("trace.jsonl"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    std::fs::write(&fixture.log, data).expect("write the log");
    // The engine's own log is a sink: recovery reads the fuzzed file, never writes.
    let trace = TraceLog::open(TraceSettings {
        path: PathBuf::from("/dev/null"),
        rotate_bytes: u64::MAX,
        fsync: false,
    })
    .expect("open /dev/null");
    let store: SharedStore = Arc::new(Embedded::new());
    let engine = Engine::new(
        fixture.policy.clone(),
        store.clone(),
        trace,
        Arc::new(Metrics::default()),
        None,
    );
    // Only bytes that are not UTF-8 stop a replay (an I/O error, by design: Purser then
    // refuses to start rather than forget spend); anything else is read or skipped.
    let report = match engine.recover(std::slice::from_ref(&fixture.log)) {
        Ok(report) => report,
        Err(error) => {
            assert!(std::str::from_utf8(data).is_err(), "{error}");
            return;
        }
    };
    assert!(report.unreadable_lines <= report.lines);
    for id in store.session_ids().now().unwrap_or_default() {
        let agent = id.split('.').next().unwrap_or("");
        let _ = store.budget(&id, agent).now();
    }
});
