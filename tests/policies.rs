//! The shipped policies load and pass their decision cases; bad policies fail loudly with
//! file:line:column, through the real `purser` binary.

use std::process::Command;

fn purser(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_purser"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run purser")
}

/// Every `policies/NAME.yaml` that has a `NAME.cases.yaml` beside it: the shipped
/// policies, the seed's template and the seed's DSL lines.
fn policies_with_cases() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("policies/")
        .flatten()
        .filter_map(|entry| {
            let file = entry.file_name().to_string_lossy().into_owned();
            file.strip_suffix(".cases.yaml").map(str::to_string)
        })
        .filter(|name| dir.join(format!("{name}.yaml")).exists())
        .collect();
    names.sort();
    names
}

#[test]
fn every_shipped_policy_passes_its_cases() {
    let names = policies_with_cases();
    for expected in [
        "default",
        "agent-governance-policy",
        "seed-rules",
        "governed",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} has cases: {names:?}"
        );
    }
    for name in names {
        let policy = format!("policies/{name}.yaml");
        let cases = format!("policies/{name}.cases.yaml");
        let output = purser(&["policy", "test", &policy, &cases]);
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{name}: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(text.contains(" 0 failed"), "{name}: {text}");
        assert!(!text.contains("FAIL"), "{name}: {text}");
    }
}

#[test]
fn a_failing_case_makes_policy_test_exit_non_zero() {
    let dir = std::env::temp_dir().join(format!("purser-cases-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = dir.join("wrong.cases.yaml");
    std::fs::write(
        &cases,
        "cases:\n  - name: expects the wrong thing\n    input: { phase: EXPLORE, cost: 0.05 }\n    expect: { decision: ALLOWED }\n",
    )
    .unwrap();
    let output = purser(&[
        "policy",
        "test",
        "policies/default.yaml",
        cases.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(
        text.contains("FAIL")
            && text.contains("expected ALLOWED, got DENIED by pay-only-in-commit"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn policy_errors_name_file_line_and_column() {
    let dir = std::env::temp_dir().join(format!("purser-badpolicy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "unknown key",
            "budget:\n  session_limit: 1.00\n  sesion_limit: 2.00\n",
            ":3:3: budget: unknown field `sesion_limit`",
        ),
        (
            "bad amount",
            "budget:\n  session_limit: lots\n",
            ":2:18: budget.session_limit: `lots` is not an amount",
        ),
        (
            "unparsable DSL",
            "rules:\n  - \"BLOCK * WHEN costt > 1\"\n",
            ":2:19: unknown field `costt`",
        ),
        (
            "unknown tool",
            "rules:\n  - \"BLOCK pay_for_data\"\n",
            "names unknown tool",
        ),
        (
            "unknown category in a condition",
            "rules:\n  - id: r\n    condition: \"category IS nope\"\n    action: BLOCK\n",
            ":3:29: rule `r` names unknown category `nope`",
        ),
        (
            "bad tier approval",
            "tiers:\n  - name: t\n    approval: maybe\n",
            ":3:15: tier `t`: approval `maybe`",
        ),
        (
            "negative amount",
            "budget:\n  single_call_threshold: -1\n",
            "is negative",
        ),
        (
            "unknown time zone",
            "timezone: Mars/Olympus\n",
            ":1:11: unknown time zone",
        ),
    ];
    for (label, text, expected) in cases {
        let path = dir.join("bad.yaml");
        std::fs::write(&path, text).unwrap();
        let output = purser(&["policy", "check", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{label}: a bad policy must not load"
        );
        assert!(stderr.contains(path.to_str().unwrap()), "{label}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{label}: expected `{expected}` in: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
