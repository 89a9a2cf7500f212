//! Where an agent may not go: Purser's own listeners by every spelling of loopback,
//! loopback ports the policy does not list, and link-local metadata.

use super::*;

// --- Where an agent may not go ------------------------------------------------------

/// An agent reaching into Purser's own listeners, by every spelling of loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_requests_to_purser_own_listeners_are_refused() {
    let origin = Origin::plain().await;
    let purser = Purser::start(ANONYMOUS, None);
    let admin = purser.admin.port();
    let proxy = purser.proxy.port();
    for target in [
        format!("127.0.0.1:{admin}"),
        format!("localhost:{admin}"),
        format!("0.0.0.0:{admin}"),
        format!("[::ffff:127.0.0.1]:{admin}"),
        format!("127.0.0.1:{proxy}"),
    ] {
        let (status, _) = connect_tunnel(purser.proxy, &target, None).await;
        assert_eq!(status, 403, "CONNECT {target}");
    }
    // Names that resolve to loopback: `127.1` is not a valid CONNECT host (its last label
    // is numeric), `0x7f000001` is, and is intercepted; the request inside is refused
    // when its address is judged.
    let (status, _) =
        connect_tunnel(purser.proxy, &format!("{LOOPBACK_SHORT}:{admin}"), None).await;
    assert_eq!(status, 400);
    let authority = format!("{LOOPBACK_HEX}:{admin}");
    let tls = purser.intercept(&authority, None, &[b"http/1.1"]).await;
    let request = Request::get(format!("https://{authority}/v1/sessions"))
        .header("host", &authority)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = send_over(tls, false, request).await;
    assert_eq!(response.status(), 403);
    assert_eq!(purser_error(response.headers()), "forbidden_destination");
    let body = String::from_utf8_lossy(response.body());
    assert!(body.contains("own listener"), "{body}");
    // Absolute-form requests, by literal and by name.
    for host in [
        "127.0.0.1".to_string(),
        "0.0.0.0".to_string(),
        "[::ffff:127.0.0.1]".to_string(),
        LOOPBACK_SHORT.to_string(),
        LOOPBACK_HEX.to_string(),
        "2130706433".to_string(),
    ] {
        let url = format!("http://{host}:{admin}/v1/sessions");
        let (status, headers, body) = absolute(purser.proxy, &url, &[]).await;
        assert_eq!(status, 403, "{url}: {body}");
        assert_eq!(purser_error(&headers), "forbidden_destination", "{url}");
        assert!(
            !body.contains("\"sessions\""),
            "{url} reached the admin API: {body}"
        );
    }
    // A tunnel host that resolves to the admin listener is refused before the splice.
    let tunnelled = start(
        &format!("{ANONYMOUS}tunnel: ['{LOOPBACK_HEX}']\n"),
        &[],
        None,
    );
    let (status, _) = connect_tunnel(
        tunnelled.proxy,
        &format!("{LOOPBACK_HEX}:{}", tunnelled.admin.port()),
        None,
    )
    .await;
    assert_eq!(status, 403, "spliced CONNECT to the admin listener by name");
    assert_still_serving(&purser, &origin).await;
    assert_still_serving(&tunnelled, &origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_ports_the_policy_does_not_list_are_refused_by_any_name() {
    let origin = Origin::plain().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let policy = format!(
        "{ANONYMOUS}egress:\n  loopback_ports: [{}]\ntunnel: ['{LOOPBACK_HEX}']\n",
        origin.port()
    );
    let purser = Purser::start(&policy, None);
    for target in [
        format!("127.0.0.1:{closed}"),
        format!("127.0.0.2:{closed}"),
        format!("[::1]:{closed}"),
        format!("[::ffff:127.0.0.1]:{closed}"),
        format!("0.0.0.0:{closed}"),
        format!("localhost:{closed}"),
        // A tunnel host, so spliced: the splice judges the address it connects to.
        format!("{LOOPBACK_HEX}:{closed}"),
    ] {
        let (status, _) = connect_tunnel(purser.proxy, &target, None).await;
        assert_eq!(status, 403, "CONNECT {target}");
    }
    for host in [
        LOOPBACK_SHORT,
        LOOPBACK_HEX,
        "2130706433",
        "[::ffff:7f00:1]",
    ] {
        let url = format!("http://{host}:{closed}/");
        let (status, headers, body) = absolute(purser.proxy, &url, &[]).await;
        assert_eq!(status, 403, "{url}: {body}");
        assert_eq!(purser_error(&headers), "forbidden_destination", "{url}");
        assert!(body.contains("loopback_ports"), "{url}: {body}");
    }
    // The listed port is reachable, by name as by address.
    let url = format!("http://{LOOPBACK_SHORT}:{}/by-name", origin.port());
    let (status, _, body) = absolute(purser.proxy, &url, &[]).await;
    assert_eq!((status, body.as_str()), (200, "ok"), "{url}");
    assert_eq!(origin.requests().len(), 1);
    assert_still_serving(&purser, &origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_local_metadata_is_refused_unless_the_policy_allows_it() {
    let origin = Origin::plain().await;
    let purser = Purser::start(ANONYMOUS, None);
    for target in [
        "169.254.169.254:80".to_string(),
        "169.254.0.1:443".to_string(),
        "[::ffff:169.254.169.254]:80".to_string(),
        "[fe80::1]:443".to_string(),
    ] {
        let (status, _) = connect_tunnel(purser.proxy, &target, None).await;
        assert_eq!(status, 403, "CONNECT {target}");
    }
    // By name: intercepted, and the request inside is refused at connection time.
    let authority = format!("{METADATA_HEX}:443");
    let tls = purser.intercept(&authority, None, &[b"http/1.1"]).await;
    let request = Request::get(format!("https://{METADATA_HEX}/latest/meta-data/"))
        .header("host", METADATA_HEX)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = send_over(tls, false, request).await;
    assert_eq!(response.status(), 403);
    assert_eq!(purser_error(response.headers()), "forbidden_destination");
    for host in [
        "169.254.169.254",
        "[::ffff:169.254.169.254]",
        METADATA_SHORT,
        METADATA_HEX,
    ] {
        let url = format!("http://{host}/latest/meta-data/");
        let (status, headers, body) = absolute(purser.proxy, &url, &[]).await;
        assert_eq!(status, 403, "{url}: {body}");
        assert_eq!(purser_error(&headers), "forbidden_destination", "{url}");
        assert!(body.contains("link-local"), "{url}: {body}");
    }
    assert_still_serving(&purser, &origin).await;
    // The policy may allow it: then the CONNECT is not refused (it is intercepted).
    let allowing = Purser::start(
        &format!("{ANONYMOUS}egress:\n  allow_link_local: true\n"),
        None,
    );
    let (status, _) = connect_tunnel(allowing.proxy, "169.254.169.254:80", None).await;
    assert_eq!(status, 200, "allowed by egress.allow_link_local");
}
