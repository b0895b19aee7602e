//! HTTPS with --tls-cert/--tls-key: a certificate made with openssl for 127.0.0.1.

use crate::common::*;
use serde_json::json;
use std::process::Command;

#[test]
fn https_serves_the_api_and_refuses_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = sqlite_config(dir.path());
    c.tls = Some((cert.clone(), key.clone()));
    c.runner_token = Some("tok".into());
    c.page_password = Some("pw".into());
    let s = Server::start(c);
    assert!(s.base.starts_with("https://"));
    let pem = std::fs::read(&cert).unwrap();
    let root = ureq::tls::Certificate::from_pem(&pem).unwrap();
    let tls_agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&[root]))
                .build(),
        )
        .build()
        .into();
    let run = "tls-run";
    let body = batch(run, "PC-TLS", full_run(run, 1, None)).to_string();
    let (code, answer) = send(
        &tls_agent,
        "POST",
        &s.url("/api/v1/events"),
        &[
            ("Authorization", "Bearer tok"),
            ("Content-Type", "application/json"),
        ],
        Some(body.as_bytes()),
    );
    assert_eq!(
        (
            code,
            serde_json::from_str::<serde_json::Value>(&answer).unwrap()
        ),
        (200, json!({"stored": 4, "duplicates": 0}))
    );
    let (code, _) = send(&tls_agent, "GET", &s.url("/healthz"), &[], None);
    assert_eq!(code, 200);
    let r = tls_agent
        .post(&s.url("/login"))
        .content_type("application/x-www-form-urlencoded")
        .send("password=pw")
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("; Secure"),
        "over HTTPS the cookie is Secure: {cookie}"
    );
    // Plain HTTP to the HTTPS port gets no answer.
    let plain = agent().get(&format!("http://{}/healthz", s.addr)).call();
    assert!(
        plain.is_err(),
        "plain HTTP answered: {:?}",
        plain.map(|r| r.status())
    );
    // A client that does not trust the certificate is refused.
    assert!(agent().get(&s.url("/healthz")).call().is_err());
}

#[test]
fn a_bad_certificate_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    let mut c = sqlite_config(dir.path());
    c.tls = Some((bogus.clone(), bogus.clone()));
    let err = Server::try_start(c).err().expect("refused").to_string();
    assert!(
        err.contains("--tls-cert") && err.contains("bogus.pem"),
        "{err}"
    );
}
