//! The `tsforge monitor` command line.

use crate::server::{start, Config};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Serve the fleet monitor: runners post events, the page, the API and /metrics show them
#[derive(Debug, clap::Args)]
pub struct MonitorCmd {
    /// Address and port to listen on
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9800")]
    pub listen: SocketAddr,
    /// Where the events are kept: sqlite:PATH or postgres://USER[:PASSWORD]@HOST[:PORT]/DB
    #[arg(long, value_name = "URL", default_value = "sqlite:tsforge-monitor.db")]
    pub database: String,
    /// File holding the token runners must present (Authorization: Bearer); the
    /// TSFORGE_MONITOR_TOKEN environment variable is used when this is not given
    #[arg(long, value_name = "FILE")]
    pub runner_token_file: Option<PathBuf>,
    /// File holding the password of the page and the read API (HTTP Basic user `monitor`)
    #[arg(long, value_name = "FILE")]
    pub page_password_file: Option<PathBuf>,
    /// PEM certificate chain: serve HTTPS (with --tls-key)
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// A secret from a file: its first line, without the line end; an empty one is an error.
fn secret_file(opt: &str, path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{opt} {}: cannot read it", path.display()))?;
    let line = text.lines().next().unwrap_or("").trim().to_string();
    if line.is_empty() {
        anyhow::bail!("{opt} {}: the file is empty", path.display());
    }
    Ok(line)
}

impl MonitorCmd {
    pub fn config(&self) -> anyhow::Result<Config> {
        let runner_token = match &self.runner_token_file {
            Some(p) => Some(secret_file("--runner-token-file", p)?),
            None => match std::env::var("TSFORGE_MONITOR_TOKEN") {
                Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
                Ok(_) => anyhow::bail!("TSFORGE_MONITOR_TOKEN is set but empty"),
                Err(_) => None,
            },
        };
        let page_password = match &self.page_password_file {
            Some(p) => Some(secret_file("--page-password-file", p)?),
            None => None,
        };
        Ok(Config {
            listen: self.listen,
            database: self.database.clone(),
            runner_token,
            page_password,
            tls: self.tls_cert.clone().zip(self.tls_key.clone()),
        })
    }
}

/// Runs the monitor until Ctrl-C (or SIGTERM), then stops gracefully.
pub fn run(cmd: MonitorCmd) -> anyhow::Result<()> {
    let config = cmd.config()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let tls = config.tls.is_some();
        let running = start(config).await?;
        eprintln!(
            "tsforge monitor: listening on {}://{}",
            if tls { "https" } else { "http" },
            running.addr
        );
        stop_signal().await?;
        eprintln!("tsforge monitor: stopping");
        running.stop().await
    })
}

async fn stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
