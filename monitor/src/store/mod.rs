//! Storage: one trait, two databases. SQLite (the default: one file, no server) and
//! PostgreSQL (many machines, several monitor instances sharing one database).
//!
//! Both keep the same three tables, created by numbered migrations recorded in `migrations`:
//! `events` (every record as received, `UNIQUE(run, key)`: a resent event is counted as a
//! duplicate, never stored twice), `deployments` (one row per run, recomputed from its events
//! in the same transaction that stores them) and `logs` (each run's smsts.log).

pub mod postgres;
pub mod sqlite;

use crate::model::{Batch, Deployment, Event, Step};
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

/// What one batch did.
#[derive(Debug, Clone, Default)]
pub struct Ingested {
    pub stored: u64,
    pub duplicates: u64,
    /// The deployment as it is after the batch, when the batch changed it.
    pub changed: Option<Deployment>,
}

/// `GET /api/v1/deployments` filters.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub state: Option<String>,
    pub sequence: Option<String>,
}

pub type Result<T> = anyhow::Result<T>;

/// A deployment with its steps, when there is one.
pub type Detail = Option<(Deployment, Vec<Step>)>;

/// A database the monitor keeps its runs in.
pub trait Storage: Send + Sync + 'static {
    /// Stores a batch in one transaction: its new events, the run's deployment and machine.
    fn ingest(&self, batch: Batch) -> BoxFuture<'_, Result<Ingested>>;
    /// Replaces a run's smsts.log; `false` when no event of the run is stored.
    fn put_log(&self, run: String, text: String) -> BoxFuture<'_, Result<bool>>;
    fn get_log(&self, run: String) -> BoxFuture<'_, Result<Option<String>>>;
    /// Newest first.
    fn deployments(&self, filter: Filter) -> BoxFuture<'_, Result<Vec<Deployment>>>;
    fn deployment(&self, run: String) -> BoxFuture<'_, Result<Detail>>;
    /// The run's records in the order they happened; `None` for an unknown run.
    fn events(&self, run: String) -> BoxFuture<'_, Result<Option<Vec<Value>>>>;
    /// Deployments per state (the `/metrics` gauge).
    fn count_by_state(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>>>;
    /// The database answers.
    fn health(&self) -> BoxFuture<'_, Result<()>>;
    /// Sends on `tx` the deployments other instances sharing this database change
    /// (PostgreSQL's `LISTEN/NOTIFY`); nothing to do for a database only one instance opens.
    fn watch_others(&self, tx: tokio::sync::broadcast::Sender<Deployment>) {
        let _ = tx;
    }
}

/// The stored document of a deployment row: the deployment and its steps.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Doc {
    pub deployment: Deployment,
    pub steps: Vec<Step>,
}

/// An event back from its stored record.
pub(crate) fn event_of(seq: i64, epoch: f64, body: &str) -> Result<Event> {
    let record: Map<String, Value> = serde_json::from_str(body)?;
    let s = |k: &str| {
        record
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok(Event {
        key: s("key"),
        seq,
        time: s("time"),
        epoch,
        kind: s("event"),
        record,
    })
}

/// Opens the database a `--database` value names and runs its migrations.
pub async fn open(database: &str) -> Result<std::sync::Arc<dyn Storage>> {
    if let Some(path) = database.strip_prefix("sqlite:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() {
            anyhow::bail!("--database {database:?}: no file after `sqlite:`");
        }
        Ok(std::sync::Arc::new(
            sqlite::Sqlite::open(path.as_ref()).await?,
        ))
    } else if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(
            postgres::Postgres::open(database).await?,
        ))
    } else {
        anyhow::bail!("--database {database:?}: expected sqlite:PATH or postgres://USER@HOST/DB")
    }
}
