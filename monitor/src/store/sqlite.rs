//! SQLite through rusqlite (its `bundled` SQLite: no system library to match, and it
//! cross-compiles with the rest). One connection in WAL mode, used on tokio's blocking pool:
//! SQLite serialises writers anyway, and one connection keeps each batch's transaction simple.

use super::{event_of, Detail, Doc, Filter, Ingested, Result, Storage};
use crate::model::{fold, Batch, Deployment, Machine};
use anyhow::Context;
use futures_util::future::BoxFuture;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The migrations, in order; version = index + 1.
const MIGRATIONS: &[&str] = &["
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    epoch REAL NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (run, key)
);
CREATE TABLE deployments (
    run TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    sequence TEXT,
    started REAL,
    machine TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX deployments_started ON deployments (started DESC);
CREATE TABLE logs (run TEXT PRIMARY KEY, text TEXT NOT NULL);
"];

pub struct Sqlite {
    conn: Arc<Mutex<Connection>>,
}

impl Sqlite {
    pub async fn open(path: &Path) -> Result<Self> {
        let p = path.to_path_buf();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection> {
            let mut c = Connection::open(&p)
                .with_context(|| format!("opening SQLite database {}", p.display()))?;
            c.busy_timeout(std::time::Duration::from_secs(30))?;
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(None, "synchronous", "FULL")?;
            migrate(&mut c).with_context(|| format!("migrating {}", p.display()))?;
            Ok(c)
        })
        .await??;
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> BoxFuture<'_, Result<T>> {
        let conn = self.conn.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut c = conn.lock().unwrap_or_else(|e| e.into_inner());
                f(&mut c)
            })
            .await?
        })
    }
}

fn migrate(c: &mut Connection) -> Result<()> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, applied TEXT NOT NULL)",
    )?;
    let have: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM migrations",
        [],
        |r| r.get(0),
    )?;
    if have > MIGRATIONS.len() as i64 {
        anyhow::bail!(
            "the database is at schema version {have}, newer than this tsforge ({})",
            MIGRATIONS.len()
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(have as usize) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO migrations (version, applied) VALUES (?1, datetime('now'))",
            params![i as i64 + 1],
        )?;
    }
    tx.commit()?;
    Ok(())
}

fn load_events(c: &Connection, run: &str) -> Result<Vec<crate::model::Event>> {
    let mut st =
        c.prepare_cached("SELECT seq, epoch, body FROM events WHERE run = ?1 ORDER BY seq, epoch")?;
    let rows = st.query_map([run], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, f64>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, epoch, body) = row?;
        out.push(event_of(seq, epoch, &body)?);
    }
    Ok(out)
}

impl Storage for Sqlite {
    fn ingest(&self, batch: Batch) -> BoxFuture<'_, Result<Ingested>> {
        self.with(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut stored = 0;
            {
                let mut ins = tx.prepare_cached(
                    "INSERT INTO events (run, key, seq, epoch, kind, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (run, key) DO NOTHING",
                )?;
                for e in &batch.events {
                    let body = Value::Object(e.record.clone()).to_string();
                    stored += ins.execute(params![batch.run, e.key, e.seq, e.epoch, e.kind, body])? as u64;
                }
            }
            let duplicates = batch.events.len() as u64 - stored;
            let old: Option<String> = tx
                .query_row("SELECT machine FROM deployments WHERE run = ?1", [&batch.run], |r| r.get(0))
                .optional()?;
            let old_machine: Option<Machine> = old.as_deref().and_then(|m| serde_json::from_str(m).ok());
            let machine = match &old_machine {
                Some(o) => o.merged(&batch.machine),
                None => batch.machine.clone(),
            };
            let machine_changed = old_machine.as_ref() != Some(&machine);
            let mut changed = None;
            if stored > 0 || machine_changed {
                let events = load_events(&tx, &batch.run)?;
                let (d, steps) = fold(&batch.run, &machine, &events);
                let started = d.started.as_deref().and_then(crate::model::rfc3339_epoch);
                tx.execute(
                    "INSERT INTO deployments (run, state, sequence, started, machine, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (run) DO UPDATE SET state = excluded.state, sequence = excluded.sequence,
                       started = excluded.started, machine = excluded.machine, doc = excluded.doc",
                    params![
                        batch.run,
                        d.state,
                        d.sequence,
                        started,
                        serde_json::to_string(&machine)?,
                        serde_json::to_string(&Doc { deployment: d.clone(), steps })?
                    ],
                )?;
                changed = Some(d.with_elapsed());
            }
            tx.commit()?;
            Ok(Ingested {
                stored,
                duplicates,
                changed,
            })
        })
    }

    fn put_log(&self, run: String, text: String) -> BoxFuture<'_, Result<bool>> {
        self.with(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let known: bool = tx
                .query_row("SELECT 1 FROM deployments WHERE run = ?1", [&run], |_| {
                    Ok(true)
                })
                .optional()?
                .is_some();
            if known {
                tx.execute(
                    "INSERT INTO logs (run, text) VALUES (?1, ?2)
                     ON CONFLICT (run) DO UPDATE SET text = excluded.text",
                    params![run, text],
                )?;
            }
            tx.commit()?;
            Ok(known)
        })
    }

    fn get_log(&self, run: String) -> BoxFuture<'_, Result<Option<String>>> {
        self.with(move |c| {
            Ok(
                c.query_row("SELECT text FROM logs WHERE run = ?1", [&run], |r| r.get(0))
                    .optional()?,
            )
        })
    }

    fn deployments(&self, filter: Filter) -> BoxFuture<'_, Result<Vec<Deployment>>> {
        self.with(move |c| {
            let mut st = c.prepare_cached(
                "SELECT doc FROM deployments
                 WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR sequence = ?2)
                 ORDER BY started DESC, run",
            )?;
            let rows = st.query_map(params![filter.state, filter.sequence], |r| {
                r.get::<_, String>(0)
            })?;
            let mut out = Vec::new();
            for doc in rows {
                let doc: Doc = serde_json::from_str(&doc?)?;
                out.push(doc.deployment.with_elapsed());
            }
            Ok(out)
        })
    }

    fn deployment(&self, run: String) -> BoxFuture<'_, Result<Detail>> {
        self.with(move |c| {
            let doc: Option<String> = c
                .query_row("SELECT doc FROM deployments WHERE run = ?1", [&run], |r| {
                    r.get(0)
                })
                .optional()?;
            Ok(match doc {
                Some(d) => {
                    let doc: Doc = serde_json::from_str(&d)?;
                    Some((doc.deployment.with_elapsed(), doc.steps))
                }
                None => None,
            })
        })
    }

    fn events(&self, run: String) -> BoxFuture<'_, Result<Option<Vec<Value>>>> {
        self.with(move |c| {
            let events = load_events(c, &run)?;
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
        self.with(|c| {
            let mut st =
                c.prepare_cached("SELECT state, COUNT(*) FROM deployments GROUP BY state")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<()>> {
        self.with(|c| {
            c.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
    }
}
