//! Inputs the fuzzers in `fuzz/` found, replayed exactly as the fuzz target fed them, so
//! each bug stays fixed. See `fuzz/README.md`; one test per artifact.

use purser::policy::dsl::parse_rule;
use purser::policy::rules::RuleTarget;

/// `fuzz/artifacts/dsl_rule/crash-fad16f6688f875ecebd31abcda2e404cc187216d`: a `*.` host
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
