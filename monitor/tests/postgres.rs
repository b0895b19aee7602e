//! The same API on PostgreSQL (a throwaway cluster, common/pg.rs), and two monitor instances
//! sharing one database: what one stores, the other serves and streams.

use crate::api;
use crate::common::pg::Cluster;
use crate::common::*;
use serde_json::json;

fn pg_config(url: &str) -> tsforge_monitor::Config {
    tsforge_monitor::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database: url.to_string(),
        runner_token: None,
        page_password: None,
        tls: None,
    }
}

#[test]
fn postgres_api_and_two_instances() {
    let Some(pg) = Cluster::start() else { return };
    let a = Server::start(pg_config(&pg.url));
    // A second instance on the same database: the migrations are not run twice.
    let b = Server::start(pg_config(&pg.url));
    api::scenario_full_run(&a);
    api::scenario_duplicates(&a);
    api::scenario_out_of_order(&a);
    api::scenario_states(&a);
    // B serves what A stored.
    let run = "0b6e0000-0000-4000-8000-000000000001";
    let d = get_json(&b, &format!("/api/v1/deployments/{run}"));
    assert_eq!(d["deployment"]["state"], "succeeded");
    assert_eq!(d["steps"].as_array().unwrap().len(), 12);
    // A duplicate sent to B is a duplicate of what A stored.
    let ev = full_run("dup-run", 3, None);
    assert_eq!(
        post(&b, &batch("dup-run", "PC-DUP", ev[..5].to_vec())).1,
        json!({"stored": 0, "duplicates": 5})
    );
    // B's stream shows what A stored (LISTEN/NOTIFY), and A's own stream too.
    api::scenario_stream(&a, &b);
    let mut own = Stream::open(&a, &[]);
    let r = "pg-own";
    assert_eq!(post(&a, &batch(r, "PC-OWN", full_run(r, 1, None))).0, 200);
    let d = own.next_deployment();
    assert_eq!(
        (d["run"].clone(), d["state"].clone()),
        (json!(r), json!("succeeded"))
    );
    let (code, text) = get(&b, "/metrics");
    assert_eq!(code, 200);
    // Succeeded: the full run, dup-run, stream-run and pg-own; failed: out-of-order and states.
    assert!(
        text.contains("tsforge_monitor_deployments{state=\"succeeded\"} 4"),
        "{text}"
    );
    assert!(
        text.contains("tsforge_monitor_deployments{state=\"failed\"} 2"),
        "{text}"
    );
    let (code, body) = get(&b, "/healthz");
    assert_eq!((code, body.as_str()), (200, "ok"));
    // The log stored through A is read through B.
    let (code, _) = send(
        &agent(),
        "PUT",
        &a.url(&format!("/api/v1/runs/{r}/log")),
        &[],
        Some(b"the log"),
    );
    assert_eq!(code, 204);
    assert_eq!(
        get(&b, &format!("/api/v1/deployments/{r}/log")),
        (200, "the log".to_string())
    );
    a.stop();
    b.stop();
}
