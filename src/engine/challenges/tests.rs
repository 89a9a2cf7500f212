//! The challenge store's bounds: offers kept, one agent's flood, a session's newest.

use super::*;
use std::time::Duration;

fn settings(total: usize, per_agent: usize) -> X402Settings {
    X402Settings {
        challenge_ttl: Duration::from_secs(3600),
        max_challenges_per_session: 4,
        require_challenge: false,
        max_offers_per_challenge: 8,
        challenge_memory: total,
        challenge_memory_per_agent: per_agent,
    }
}

fn challenge(offers: usize, pay_to: &str) -> Challenge {
    let offer = |n: usize| Requirement {
        scheme: "exact".into(),
        network: "eip155:84532".into(),
        asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
        amount_atomic: 1000 + n as u128,
        pay_to: pay_to.into(),
        resource: Some("https://merchant.example/x".into()),
        max_timeout_seconds: Some(60),
        extra: serde_json::from_str(r#"{"name":"USDC","version":"2","blob":"xxxxxxxx"}"#).unwrap(),
    };
    Challenge {
        version: 2,
        resource: None,
        accepts: (0..offers).map(offer).collect(),
    }
}

#[test]
fn offers_are_capped_and_keep_only_what_pricing_reads() {
    let store = ChallengeStore::default();
    let assets = AssetTable::builtin();
    let settings = settings(1 << 20, 1 << 20);
    assert!(store.remember(
        "a",
        "a.s",
        "h:443/p",
        &challenge(500, "0xabc"),
        &settings,
        &assets
    ));
    let kept = store.lookup("a", "a.s", "h:443/p", &settings).unwrap();
    assert_eq!(kept.accepts.len(), 8);
    assert!(kept.accepts.iter().all(|o| o.extra.is_empty()));
    assert_eq!(store.figures().offers_dropped, 492);
    assert!(store.figures().bytes < 2_000, "{:?}", store.figures());
}

#[test]
fn one_agents_flood_evicts_its_own_challenges_not_anothers() {
    let store = ChallengeStore::default();
    let assets = AssetTable::builtin();
    let settings = settings(20_000, 8_000);
    store.remember(
        "bob",
        "bob.s",
        "h:443/bob",
        &challenge(1, "0xb0b"),
        &settings,
        &assets,
    );
    for n in 0..5_000 {
        let session = format!("mallory.s{}", n % 50);
        store.remember(
            "mallory",
            &session,
            &format!("h:443/{n}"),
            &challenge(8, "0xbad"),
            &settings,
            &assets,
        );
        assert!(store.figures().bytes as usize <= 20_000);
        assert!(store.agent_bytes("mallory") <= 8_000);
    }
    assert!(store
        .lookup("bob", "bob.s", "h:443/bob", &settings)
        .is_some());
    // Under global pressure from many agents, the heaviest loses first.
    for agent in ["c", "d", "e"] {
        for n in 0..200 {
            store.remember(
                agent,
                &format!("{agent}.s"),
                &format!("h:443/{n}"),
                &challenge(8, "0x1"),
                &settings,
                &assets,
            );
        }
    }
    assert!(store.figures().bytes as usize <= 20_000);
    assert!(store
        .lookup("bob", "bob.s", "h:443/bob", &settings)
        .is_some());
}

#[test]
fn a_session_keeps_its_newest_challenges_and_long_paths_cost_a_hash() {
    let store = ChallengeStore::default();
    let assets = AssetTable::builtin();
    let settings = settings(1 << 20, 1 << 20);
    let long = format!("h:443/{}", "p".repeat(30_000));
    for n in 0..10 {
        store.remember(
            "a",
            "a.s",
            &format!("{long}{n}"),
            &challenge(1, "0x1"),
            &settings,
            &assets,
        );
    }
    assert_eq!(store.count_for("a", "a.s"), 4);
    assert!(store
        .lookup("a", "a.s", &format!("{long}9"), &settings)
        .is_some());
    assert!(store
        .lookup("a", "a.s", &format!("{long}0"), &settings)
        .is_none());
    assert!(store.figures().bytes < 4 * 1_000);
    store.forget_session("a", "a.s");
    assert_eq!(store.figures().count, 0);
    assert_eq!(store.figures().bytes, 0);
}

#[test]
fn a_shared_challenge_is_adopted_with_its_age_and_a_stale_or_damaged_one_is_not() {
    use crate::store::SharedChallenge;
    let (seen_here, elsewhere) = (ChallengeStore::default(), ChallengeStore::default());
    let assets = AssetTable::builtin();
    let settings = settings(1 << 20, 1 << 20);
    seen_here.remember(
        "a",
        "a.s",
        "h:443/p",
        &challenge(2, "0xabc"),
        &settings,
        &assets,
    );
    let (key, form) = seen_here.shared_x402("a", "a.s", "h:443/p").unwrap();
    let shared = |age: u64, form: &str| SharedChallenge {
        key: key.clone(),
        form: form.to_string(),
        age: Duration::from_secs(age),
    };

    let stale = shared(3601, &form);
    let damaged = shared(1, &form.replace("\"amount\":\"1000\"", "\"amount\":\"x\""));
    assert_eq!(elsewhere.adopt("a", "a.s", &[stale, damaged], &settings), 0);
    assert!(elsewhere.lookup("a", "a.s", "h:443/p", &settings).is_none());

    assert_eq!(
        elsewhere.adopt("a", "a.s", &[shared(3590, &form)], &settings),
        1
    );
    let adopted = elsewhere.lookup("a", "a.s", "h:443/p", &settings).unwrap();
    let original = seen_here.lookup("a", "a.s", "h:443/p", &settings).unwrap();
    assert_eq!(
        format!("{:?}", adopted.accepts),
        format!("{:?}", original.accepts),
        "what pricing reads survives the trip"
    );
    // It keeps its age: under a TTL five seconds shorter it has aged out.
    let shorter = X402Settings {
        challenge_ttl: Duration::from_secs(3585),
        ..settings
    };
    assert!(elsewhere.lookup("a", "a.s", "h:443/p", &shorter).is_none());
    // Another agent's session adopts nothing under this agent's key.
    assert!(elsewhere.lookup("b", "a.s", "h:443/p", &settings).is_none());
}
