//! PostgreSQL through tokio-postgres (the async driver of the `postgres` crate family) with a
//! deadpool-postgres pool. Several monitor instances may share one database: each batch takes
//! a transaction-scoped advisory lock on its run, so two instances storing events of one run
//! recompute its deployment one after the other; every change is announced with
//! `pg_notify`, and each instance `LISTEN`s and streams the changes the others stored.
//! Connections are plain (no TLS to the database): run it on a trusted network or a socket.

use super::{event_of, Detail, Doc, Filter, Ingested, Result, Storage};
use crate::model::{fold, Batch, Deployment, Machine};
use anyhow::Context;
use deadpool_postgres::{Pool, Runtime};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use serde_json::Value;
use tokio_postgres::{AsyncMessage, NoTls};

const CHANNEL: &str = "tsforge_monitor";
/// The advisory lock key migrations hold ("tsfmon" in ASCII).
const MIGRATION_LOCK: i64 = 0x7473_666d_6f6e;

const MIGRATIONS: &[&str] = &["
CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    run TEXT NOT NULL,
    key TEXT NOT NULL,
    seq BIGINT NOT NULL,
    epoch DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (run, key)
);
CREATE TABLE deployments (
    run TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    sequence TEXT,
    started DOUBLE PRECISION,
    machine TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX deployments_started ON deployments (started DESC);
CREATE TABLE logs (run TEXT PRIMARY KEY, text TEXT NOT NULL);
"];

pub struct Postgres {
    url: String,
    pool: Pool,
    /// Tells this instance's notifications from the others'.
    instance: String,
}

impl Postgres {
    pub async fn open(url: &str) -> Result<Self> {
        let mut cfg = deadpool_postgres::Config::new();
        cfg.url = Some(url.to_string());
        let pool = cfg
            .create_pool(Some(Runtime::Tokio1), NoTls)
            .context("--database: not a PostgreSQL connection URL")?;
        let mut c = pool
            .get()
            .await
            .with_context(|| format!("connecting to PostgreSQL {}", redact(url)))?;
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, applied TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await?;
        let have: i32 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM migrations", &[])
            .await?
            .get(0);
        if have as usize > MIGRATIONS.len() {
            anyhow::bail!(
                "the database is at schema version {have}, newer than this tsforge ({})",
                MIGRATIONS.len()
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(have as usize) {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO migrations (version) VALUES ($1)",
                &[&(i as i32 + 1)],
            )
            .await?;
        }
        tx.commit()
            .await
            .context("migrating the PostgreSQL database")?;
        let mut id = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
            .map_err(|_| anyhow::anyhow!("no random numbers from the system"))?;
        Ok(Postgres {
            url: url.to_string(),
            pool,
            instance: id.iter().map(|b| format!("{b:02x}")).collect(),
        })
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

async fn load_events(
    c: &impl tokio_postgres::GenericClient,
    run: &str,
) -> Result<Vec<crate::model::Event>> {
    let rows = c
        .query(
            "SELECT seq, epoch, body FROM events WHERE run = $1 ORDER BY seq, epoch",
            &[&run],
        )
        .await?;
    rows.iter()
        .map(|r| event_of(r.get(0), r.get(1), r.get::<_, &str>(2)))
        .collect()
}

async fn read_deployment(c: &impl tokio_postgres::GenericClient, run: &str) -> Result<Detail> {
    let row = c
        .query_opt("SELECT doc FROM deployments WHERE run = $1", &[&run])
        .await?;
    Ok(match row {
        Some(r) => {
            let doc: Doc = serde_json::from_str(r.get::<_, &str>(0))?;
            Some((doc.deployment.with_elapsed(), doc.steps))
        }
        None => None,
    })
}

impl Storage for Postgres {
    fn ingest(&self, batch: Batch) -> BoxFuture<'_, Result<Ingested>> {
        Box::pin(async move {
            let mut c = self.pool.get().await?;
            let tx = c.transaction().await?;
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[&batch.run],
            )
            .await?;
            let ins = tx
                .prepare(
                    "INSERT INTO events (run, key, seq, epoch, kind, body) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (run, key) DO NOTHING",
                )
                .await?;
            let mut stored = 0;
            for e in &batch.events {
                let body = Value::Object(e.record.clone()).to_string();
                stored += tx
                    .execute(
                        &ins,
                        &[&batch.run, &e.key, &e.seq, &e.epoch, &e.kind, &body],
                    )
                    .await?;
            }
            let duplicates = batch.events.len() as u64 - stored;
            let old_machine: Option<Machine> = tx
                .query_opt(
                    "SELECT machine FROM deployments WHERE run = $1",
                    &[&batch.run],
                )
                .await?
                .and_then(|r| serde_json::from_str(r.get::<_, &str>(0)).ok());
            let machine = match &old_machine {
                Some(o) => o.merged(&batch.machine),
                None => batch.machine.clone(),
            };
            let mut changed = None;
            if stored > 0 || old_machine.as_ref() != Some(&machine) {
                let events = load_events(&*tx, &batch.run).await?;
                let (d, steps) = fold(&batch.run, &machine, &events);
                let started = d.started.as_deref().and_then(crate::model::rfc3339_epoch);
                let machine_json = serde_json::to_string(&machine)?;
                let doc = serde_json::to_string(&Doc {
                    deployment: d.clone(),
                    steps,
                })?;
                tx.execute(
                    "INSERT INTO deployments (run, state, sequence, started, machine, doc)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (run) DO UPDATE SET state = excluded.state, sequence = excluded.sequence,
                       started = excluded.started, machine = excluded.machine, doc = excluded.doc",
                    &[&batch.run, &d.state, &d.sequence, &started, &machine_json, &doc],
                )
                .await?;
                let payload = format!("{} {}", self.instance, batch.run);
                tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
                    .await?;
                changed = Some(d.with_elapsed());
            }
            tx.commit().await?;
            Ok(Ingested {
                stored,
                duplicates,
                changed,
            })
        })
    }

    fn put_log(&self, run: String, text: String) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            let n = c
                .execute(
                    "INSERT INTO logs (run, text) SELECT run, $2 FROM deployments WHERE run = $1
                     ON CONFLICT (run) DO UPDATE SET text = excluded.text",
                    &[&run, &text],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn get_log(&self, run: String) -> BoxFuture<'_, Result<Option<String>>> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            Ok(c.query_opt("SELECT text FROM logs WHERE run = $1", &[&run])
                .await?
                .map(|r| r.get(0)))
        })
    }

    fn deployments(&self, filter: Filter) -> BoxFuture<'_, Result<Vec<Deployment>>> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            let rows = c
                .query(
                    "SELECT doc FROM deployments
                     WHERE ($1::TEXT IS NULL OR state = $1) AND ($2::TEXT IS NULL OR sequence = $2)
                     ORDER BY started DESC NULLS LAST, run",
                    &[&filter.state, &filter.sequence],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    let doc: Doc = serde_json::from_str(r.get::<_, &str>(0))?;
                    Ok(doc.deployment.with_elapsed())
                })
                .collect()
        })
    }

    fn deployment(&self, run: String) -> BoxFuture<'_, Result<Detail>> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            read_deployment(&**c, &run).await
        })
    }

    fn events(&self, run: String) -> BoxFuture<'_, Result<Option<Vec<Value>>>> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            let events = load_events(&**c, &run).await?;
            if events.is_empty() {
                return Ok(None);
            }
            Ok(Some(
                events
                    .into_iter()
                    .map(|e| Value::Object(e.record))
                    .collect(),
            ))
        })
    }

    fn count_by_state(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>>> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            let rows = c
                .query(
                    "SELECT state, COUNT(*) FROM deployments GROUP BY state",
                    &[],
                )
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            c.query_one("SELECT 1", &[]).await?;
            Ok(())
        })
    }

    fn watch_others(&self, tx: tokio::sync::broadcast::Sender<Deployment>) {
        let url = self.url.clone();
        let pool = self.pool.clone();
        let me = self.instance.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = listen(&url, &pool, &me, &tx).await {
                    eprintln!("tsforge monitor: LISTEN {CHANNEL}: {e:#}; reconnecting in 1 s");
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
    }
}

/// Streams the deployments other instances change until the connection breaks.
async fn listen(
    url: &str,
    pool: &Pool,
    me: &str,
    tx: &tokio::sync::broadcast::Sender<Deployment>,
) -> Result<()> {
    let (client, mut conn) = tokio_postgres::connect(url, NoTls).await?;
    let (ntx, mut nrx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if ntx.send(n.payload().to_string()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    while let Some(payload) = nrx.recv().await {
        let Some((instance, run)) = payload.split_once(' ') else {
            continue;
        };
        if instance == me {
            continue;
        }
        let c = pool.get().await?;
        if let Some((d, _)) = read_deployment(&**c, run).await? {
            let _ = tx.send(d);
        }
    }
    anyhow::bail!("the connection closed")
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_the_password() {
        assert_eq!(
            super::redact("postgres://mon:secret@db:5432/tsforge"),
            "postgres://mon@db:5432/tsforge"
        );
        assert_eq!(super::redact("postgres://db/x"), "postgres://db/x");
    }
}
