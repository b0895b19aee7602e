//! `tsforge package build|list|verify`: content packages and distribution points
//! (`docs/content.md`; the package code itself is `crate::content`).

use super::progress::ProgressLine;
use super::Exit;
use crate::content::{build, manifest, store, HttpOptions, Origin, Store};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum PackageCmd {
    /// Build a folder (files package) or an image file (image package) into a distribution
    /// point folder; adds to the packages already there
    Build(PackageBuildConfig),
    /// List the packages of a distribution point (folder or http(s):// URL)
    List(PackageListConfig),
    /// Check every file of packages against their manifests (exit 1 on a mismatch)
    Verify(PackageVerifyConfig),
}

#[derive(Debug, Args)]
pub struct PackageBuildConfig {
    /// A folder of files, or a tsforge image / WIM
    #[arg(value_name = "SRC")]
    pub src: PathBuf,
    /// Package ID (ConfigMgr style, e.g. TSF00001)
    #[arg(long)]
    pub id: String,
    /// Display name (default: SRC's name)
    #[arg(long)]
    pub name: Option<String>,
    /// Version (default: one more than the one in the distribution point, else 1)
    #[arg(long)]
    pub version: Option<u32>,
    /// A program for Install Package steps, NAME=COMMAND LINE; repeatable
    #[arg(long = "program", value_name = "NAME=COMMAND LINE")]
    pub programs: Vec<String>,
    /// The distribution point folder
    #[arg(long, value_name = "DP")]
    pub out: PathBuf,
    /// Sign the package manifest and the index with this key (from `tsforge keygen`)
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PackageListConfig {
    /// Distribution point: a folder or an http(s):// URL
    #[arg(value_name = "DP")]
    pub dp: String,
    /// PEM file of the CA certificates to trust for HTTPS (instead of Mozilla's roots)
    #[arg(long, value_name = "PEM", env = "TSFORGE_TRUSTED_CA")]
    pub trusted_ca: Option<PathBuf>,
    /// Print JSON (the index) instead of a table
    #[arg(long)]
    pub json: bool,
    /// Require the index to be signed with this ed25519 public key (hex, or a .pub file)
    #[arg(long, value_name = "KEY")]
    pub public_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct PackageVerifyConfig {
    /// Distribution point: a folder or an http(s):// URL
    #[arg(value_name = "DP")]
    pub dp: String,
    /// PEM file of the CA certificates to trust for HTTPS (instead of Mozilla's roots)
    #[arg(long, value_name = "PEM", env = "TSFORGE_TRUSTED_CA")]
    pub trusted_ca: Option<PathBuf>,
    /// Package IDs (default: every package in the index)
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
    /// Require every package (and the index) to be signed with this ed25519 public key (hex,
    /// or a .pub file)
    #[arg(long, value_name = "KEY")]
    pub public_key: Option<String>,
}

pub fn dispatch(cmd: PackageCmd) -> Result<Exit> {
    match cmd {
        PackageCmd::Build(c) => build_cmd(c),
        PackageCmd::List(c) => list_cmd(c),
        PackageCmd::Verify(c) => verify_cmd(c),
    }
}

fn build_cmd(c: PackageBuildConfig) -> Result<Exit> {
    let programs = c
        .programs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((n, cl)) if !n.trim().is_empty() && !cl.trim().is_empty() => {
                Ok(manifest::Program {
                    name: n.trim().to_string(),
                    command_line: cl.trim().to_string(),
                })
            }
            _ => anyhow::bail!("--program {p:?}: expected NAME=COMMAND LINE"),
        })
        .collect::<Result<Vec<_>>>()?;
    let signing_key = match &c.sign {
        Some(k) => Some(crate::media::read_key_file(k)?),
        None => None,
    };
    let opts = build::BuildOptions {
        id: c.id.clone(),
        name: c.name,
        version: c.version,
        programs,
        signing_key,
    };
    let mut line = ProgressLine::new("package");
    let m = build::build(&c.src, &c.out, &opts, &mut |done, total| {
        line.update(&crate::image::Progress {
            bytes_done: done,
            bytes_total: total,
            files_done: 0,
            files_total: 0,
        })
    });
    line.done();
    let m = m?;
    println!(
        "{}: package {} v{} ({}, {} file{}, {} bytes) hash {}{}",
        c.out.display(),
        m.id,
        m.version,
        m.kind,
        m.files.len(),
        if m.files.len() == 1 { "" } else { "s" },
        m.size(),
        m.hash,
        match &signing_key {
            Some(seed) => format!(", signed by {}", crate::media::sign(seed, b"").1),
            None => ", not signed".into(),
        }
    );
    Ok(Exit::Ok)
}

fn store_of(
    dp: &str,
    trusted_ca: Option<PathBuf>,
    public_key: Option<&str>,
) -> Result<(Store, Origin)> {
    let key = public_key.map(crate::media::public_key_arg).transpose()?;
    let origin = Origin::parse(dp);
    let origin = match origin {
        Origin::Dir(d) => Origin::Dir(std::path::absolute(&d).unwrap_or(d)),
        u => u,
    };
    let opts = HttpOptions {
        trusted_ca,
        ..HttpOptions::default()
    };
    let store = Store::new(vec![origin.clone()], std::env::temp_dir(), opts)?.with_public_key(key);
    Ok((store, origin))
}

fn list_cmd(c: PackageListConfig) -> Result<Exit> {
    let (store, origin) = store_of(&c.dp, c.trusted_ca.clone(), c.public_key.as_deref())?;
    let index = match store.index(&origin) {
        Err(e) if e.is::<store::SignatureError>() => {
            println!("{e}");
            return Ok(Exit::No);
        }
        r => r?,
    };
    let index = index.with_context(|| {
        format!(
            "{origin} has no {} (not a distribution point)",
            manifest::INDEX_FILE
        )
    })?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if c.json {
        out.write_all(&index.to_json())?;
        return Ok(Exit::Ok);
    }
    writeln!(
        out,
        "{:<12} {:>4} {:<6} {:>6} {:>14}  NAME",
        "ID", "VER", "KIND", "FILES", "BYTES"
    )?;
    for p in &index.packages {
        writeln!(
            out,
            "{:<12} {:>4} {:<6} {:>6} {:>14}  {}",
            p.id, p.version, p.kind, p.files, p.size, p.name
        )?;
    }
    Ok(Exit::Ok)
}

fn verify_cmd(c: PackageVerifyConfig) -> Result<Exit> {
    let (store, origin) = store_of(&c.dp, c.trusted_ca.clone(), c.public_key.as_deref())?;
    let ids: Vec<String> = if c.ids.is_empty() {
        let index = match store.index(&origin) {
            Err(e) if e.is::<store::SignatureError>() => {
                println!("{e}");
                return Ok(Exit::No);
            }
            r => r?,
        };
        index
            .with_context(|| format!("{origin} has no {}", manifest::INDEX_FILE))?
            .packages
            .into_iter()
            .map(|p| p.id)
            .collect()
    } else {
        c.ids.clone()
    };
    let mut bad = 0;
    for id in &ids {
        let found = match store.find(id) {
            Err(e) if e.is::<store::SignatureError>() => {
                bad += 1;
                println!("{id}: FAILED: {e}");
                continue;
            }
            r => r?,
        };
        let mut failed = None;
        for f in &found.manifest.files {
            let mut s = store.stream(&found, f)?;
            if let Err(e) = std::io::copy(&mut s, &mut std::io::sink()) {
                failed = Some(e.to_string());
                break;
            }
        }
        match failed {
            None => println!(
                "{id}: OK ({} files, {} bytes)",
                found.manifest.files.len(),
                found.manifest.size()
            ),
            Some(e) => {
                bad += 1;
                println!("{id}: FAILED: {e}");
            }
        }
    }
    Ok(if bad > 0 { Exit::No } else { Exit::Ok })
}
