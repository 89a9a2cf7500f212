//! The README's quick start, as a new user runs it: `purser ca init` prints every line an
//! agent's runtime needs (curl's own variables included), and the bundle it points at
//! holds Purser's CA.

mod support;

use support::{purser_cli, TempDir};

#[test]
fn ca_init_prints_the_lines_every_client_reads() {
    let dir = TempDir::new("quickstart-ca");
    let certs = dir.path().join("certs");
    let output = purser_cli(&[
        "ca".as_ref(),
        "init".as_ref(),
        "--dir".as_ref(),
        certs.as_os_str(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    for variable in [
        "export HTTPS_PROXY=http://",
        "export HTTP_PROXY=http://",
        "export SSL_CERT_FILE=",
        "export CURL_CA_BUNDLE=",
        "unset SSL_CERT_DIR",
        "export REQUESTS_CA_BUNDLE=",
        "export NODE_EXTRA_CA_CERTS=",
    ] {
        assert!(
            text.contains(variable),
            "`{variable}` missing from:\n{text}"
        );
    }
    let bundle = text
        .lines()
        .find_map(|line| line.strip_prefix("export CURL_CA_BUNDLE="))
        .expect("CURL_CA_BUNDLE line");
    let ca = std::fs::read_to_string(certs.join("purser-ca.pem")).expect("the CA certificate");
    let bundle = std::fs::read_to_string(bundle).expect("the bundle curl is pointed at");
    assert!(bundle.contains(ca.trim()), "the bundle holds Purser's CA");
}
