//! `tsforge monitor`: runners post their events (`docs/events.schema.json` records, see
//! `docs/monitor.md` for the contract), the monitor stores them and serves a live page, a JSON
//! API, a server-sent event stream and Prometheus metrics.
//!
//! A leaf crate beside the runtime and the builder: it depends on neither, and takes the event
//! kinds and fields from `docs/events.schema.json` at compile time (`model::EVENTS_SCHEMA`).
//!
//! Why these crates:
//! - axum on tokio (hyper underneath): the maintained, widely used Rust HTTP server stack;
//!   its body limits, routing and server-sent events cover the API without more crates.
//! - rusqlite with `bundled`: SQLite compiled in, one file, no system library to match,
//!   cross-compiles for Windows with mingw like the rest.
//! - tokio-postgres + deadpool-postgres: the async PostgreSQL driver of the `postgres` family
//!   (with `LISTEN/NOTIFY` messages) and a small, maintained pool for it.
//! - tokio-rustls with rustls' `ring` provider: HTTPS in pure Rust with the crypto the
//!   runner's ureq already builds; no OpenSSL.
//! - hmac, sha2, subtle (RustCrypto): the session cookie's HMAC and constant-time compares.
//!
//! Metrics are written by hand (`metrics.rs`): five series do not need a library.

pub mod cli;
pub mod metrics;
pub mod model;
pub mod server;
pub mod store;
pub mod tls;

pub use server::{start, Config, Running};
