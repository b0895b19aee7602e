//! Access control of docs/monitor.md: the runner token on writes, the page password (login
//! form and signed HttpOnly cookie, or HTTP Basic) on reads.

use crate::common::*;
use base64::Engine;
use serde_json::json;

fn basic(user_pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pw)
    )
}

#[test]
fn runner_token_is_required_on_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = sqlite_config(dir.path());
    c.runner_token = Some("s3cret-token".into());
    let s = Server::start(c);
    let run = "tok-run";
    let body = batch(run, "PC-T", full_run(run, 1, None)).to_string();
    for (headers, why) in [
        (vec![], "no token"),
        (vec![("Authorization", "Bearer wrong")], "a wrong token"),
        (
            vec![("Authorization", "Bearer s3cret-token-and-more")],
            "a longer token",
        ),
        (
            vec![("Authorization", "Basic czNjcmV0LXRva2Vu")],
            "another scheme",
        ),
    ] {
        let (code, answer) = post_raw(&s, &headers, body.as_bytes());
        assert_eq!(code, 401, "{why}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("runner token"),
            "{answer}"
        );
    }
    // A 401 comes before the body is read: even an announced oversized one.
    let mut tcp = std::net::TcpStream::connect(s.addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    std::io::Write::write_all(
        &mut tcp,
        b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\n\r\n",
    )
    .unwrap();
    let mut status = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(tcp), &mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 401 "), "{status:?}");
    let (code, _) = send(
        &agent(),
        "PUT",
        &s.url(&format!("/api/v1/runs/{run}/log")),
        &[],
        Some(b"log"),
    );
    assert_eq!(code, 401);
    assert_eq!(
        get_json(&s, "/api/v1/deployments")["deployments"],
        json!([])
    );
    let (code, answer) = post_raw(
        &s,
        &[("Authorization", "Bearer s3cret-token")],
        body.as_bytes(),
    );
    assert_eq!((code, answer), (200, json!({"stored": 4, "duplicates": 0})));
    // Reading needs no token (no page password set).
    assert_eq!(
        get_json(&s, "/api/v1/deployments")["deployments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn page_password_guards_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = sqlite_config(dir.path());
    c.page_password = Some("page-pw".into());
    let s = Server::start(c);
    let run = "pw-run";
    // Writes do not need the page password.
    assert_eq!(post(&s, &batch(run, "PC-P", full_run(run, 1, None))).0, 200);
    let a = agent();
    let api = s.url("/api/v1/deployments");
    for path in [
        "/api/v1/deployments",
        "/metrics",
        &format!("/api/v1/deployments/{run}"),
    ] {
        let (code, body) = get(&s, path);
        assert_eq!(code, 401, "{path}: {body}");
    }
    let (code, _) = send(
        &a,
        "GET",
        &api,
        &[("Authorization", &basic("monitor:wrong"))],
        None,
    );
    assert_eq!(code, 401);
    let (code, body) = send(
        &a,
        "GET",
        &api,
        &[("Authorization", &basic("monitor:page-pw"))],
        None,
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(run));
    let (code, _) = send(
        &a,
        "GET",
        &s.url("/metrics"),
        &[("Authorization", &basic("monitor:page-pw"))],
        None,
    );
    assert_eq!(code, 200);
    // /healthz stays open for load balancers.
    assert_eq!(get(&s, "/healthz").0, 200);

    // The page sends a browser to the login form.
    let no_redirects: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let mut r = no_redirects.get(&s.url("/")).call().unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/login");
    let form = r#"<form method="post" action="/login">"#;
    assert!(get(&s, "/login").1.contains(form));
    let _ = r.body_mut().read_to_string();

    let login = |pw: &str| {
        no_redirects
            .post(&s.url("/login"))
            .content_type("application/x-www-form-urlencoded")
            .send(format!("password={pw}"))
            .unwrap()
    };
    let mut r = login("nope");
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r
        .body_mut()
        .read_to_string()
        .unwrap()
        .contains("Wrong password"));
    let r = login("page-pw");
    assert_eq!(r.status().as_u16(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();
    let (code, body) = send(&a, "GET", &api, &[("Cookie", &pair)], None);
    assert_eq!(code, 200, "{body}");
    let (code, _) = send(&a, "GET", &s.url("/"), &[("Cookie", &pair)], None);
    assert_eq!(code, 200);
    let mut stream = Stream::open(&s, &[("Cookie", &pair)]);
    let r2 = "pw-run-2";
    assert_eq!(post(&s, &batch(r2, "PC-P2", full_run(r2, 1, None))).0, 200);
    assert_eq!(stream.next_deployment()["run"], r2);
    // A forged or altered cookie is refused: a later expiry with the old signature.
    let (name_exp, sig) = pair.split_once('.').unwrap();
    let exp: u64 = name_exp.rsplit('=').next().unwrap().parse().unwrap();
    let forged = format!("tsforge_monitor_session={}.{sig}", exp + 1);
    let (code, _) = send(&a, "GET", &api, &[("Cookie", &forged)], None);
    assert_eq!(code, 401);
    let (code, _) = send(
        &a,
        "GET",
        &api,
        &[("Cookie", "tsforge_monitor_session=99999999999.AAAA")],
        None,
    );
    assert_eq!(code, 401);
}
