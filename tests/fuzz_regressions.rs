//! Inputs the fuzzers in `fuzz/` found, replayed exactly as the fuzz target fed them, so
//! each bug stays fixed. The inputs are kept in `fuzz/regressions/TARGET/`; see
//! `fuzz/README.md`. One test per finding.

use purser::policy::dsl::parse_rule;
use purser::policy::rules::RuleTarget;
use purser::policy::Policy;
use std::path::Path;

/// `fuzz/regressions/dsl_rule/crash-fad16f6688f875ecebd31abcda2e404cc187216d`: a `*.` host
/// pattern matched against a host whose suffix-length cut fell inside a character
/// (`HostPattern::matches` sliced the `str` and panicked: "byte index 83 is not a char
/// boundary"). Hosts reach `matches` from the proof log on recovery and from policy test
/// cases, not only from validated request authorities.
#[test]
fn dsl_rule_host_match_inside_a_multibyte_character() {
    let input = [
        b"ALLOW *.example.com\0api.EXAM".as_slice(),
        &[b'\t'; 73],
        b"\x97",
        &[b'\t'; 4],
        b"ELP.com",
    ]
    .concat();
    // As the `dsl_rule` target reads it: lossy UTF-8 (0x97 becomes U+FFFD), `RULE\0HOST`.
    let text = String::from_utf8_lossy(&input);
    let (rule, host) = text.split_once('\0').unwrap();
    let RuleTarget::Host(pattern) = parse_rule(rule).unwrap().target else {
        panic!("`{rule}` targets a host pattern");
    };
    assert!(!pattern.matches(host, 443));
    assert!(!pattern.matches(host, 8443));

    // The same cut at every offset of a few non-ASCII hosts: never a panic, and a match
    // only where the ASCII suffix really is there.
    for host in [
        "€",
        "é.example.com",
        "x€example.com",
        "ü.EXAMPLE.COM",
        "\u{FFFD}.com",
    ] {
        let expected = host.to_ascii_lowercase().ends_with(".example.com");
        assert_eq!(pattern.matches(host, 443), expected, "{host:?}");
    }
}

/// `fuzz/regressions/policy_load/crash-17d1da24a2e985b939eb7cdb45d22f7db0315f81`: a
/// `token_sha256` of 64 bytes holding a two-byte character (`\xca\x9c`, `ʜ`). The digest
/// was read two bytes at a time by slicing the `str`, and the slice split the character:
/// "end byte index 30 is not a char boundary", a panic while loading the policy.
#[test]
fn policy_load_token_sha256_with_a_multibyte_character() {
    let input = include_bytes!(
        "../fuzz/regressions/policy_load/crash-17d1da24a2e985b939eb7cdb45d22f7db0315f81"
    );
    // As the `policy_load` target reads it.
    let text = String::from_utf8_lossy(input);
    let error = Policy::from_yaml(Path::new("fuzz.yaml"), &text)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("token_sha256 must be hex digits only"),
        "{error}"
    );

    // The same, small; and a `+`, which `u8::from_str_radix` would read as a sign.
    for digest in [format!("a\u{29c}{}", "a".repeat(61)), "+a".repeat(32)] {
        assert_eq!(digest.len(), 64);
        let policy = format!("agents:\n  bot:\n    token_sha256: \"{digest}\"\n");
        let error = Policy::from_yaml(Path::new("p.yaml"), &policy)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("token_sha256 must be hex digits only"),
            "{error}"
        );
    }
}

/// `fuzz/regressions/trace_recover/overflowing-amounts.jsonl` (found by reading the
/// `trace_recover` harness, not yet by the fuzzer): two allowed decisions of
/// $79,228,162,514,264,337,593,543,950,335 each. Replaying them added past
/// `rust_decimal`'s range and panicked the ledger at start-up. Amounts beyond any payment
/// Purser could have priced are now skipped on replay, as live pricing refuses them.
#[test]
fn trace_recover_amounts_that_would_overflow_the_ledger() {
    use purser::engine::Engine;
    use purser::policy::PolicyStore;
    use purser::store::{Embedded, SharedStore};
    use purser::telemetry::metrics::Metrics;
    use purser::trace::{TraceLog, TraceSettings};
    use std::sync::Arc;

    let log = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions/trace_recover/overflowing-amounts.jsonl");
    let policy = Policy::from_yaml(Path::new("fuzz.yaml"), "").expect("empty policy");
    let trace = TraceLog::open(TraceSettings {
        path: std::path::PathBuf::from("/dev/null"),
        rotate_bytes: u64::MAX,
        fsync: false,
    })
    .expect("open /dev/null");
    let store: SharedStore = Arc::new(Embedded::new());
    let engine = Engine::new(
        Arc::new(PolicyStore::new(policy)),
        store.clone(),
        trace,
        Arc::new(Metrics::default()),
        None,
    );
    let report = engine.recover(&[log]).expect("the log is read");
    assert_eq!(report.lines, 2);
    let view = store
        .budget("a.s", "a")
        .now()
        .expect("the embedded store answers at once");
    assert!(
        view.session.spent().is_zero(),
        "impossible amounts are not counted"
    );
}
