//! `tsforge keygen` and `media verify|inspect`: signing keys and checking a medium.

use super::Exit;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct KeygenConfig {
    /// Path prefix of the two files (NAME.key and NAME.pub)
    #[arg(short, long, value_name = "NAME")]
    pub output: PathBuf,
    /// Overwrite existing key files
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum MediaCmd {
    /// Check every file against the manifest and the signature (exit 1 naming each problem)
    Verify(MediaVerifyConfig),
    /// Show what a medium holds: sequences, hooks, variables, packages, signature
    Inspect(MediaVerifyConfig),
}

#[derive(Debug, Args)]
pub struct MediaVerifyConfig {
    /// The medium: a folder (a `dir` output, or a mounted USB stick or ISO)
    #[arg(value_name = "MEDIUM")]
    pub medium: PathBuf,
    /// The ed25519 public key (hex, or a .pub file) the medium must be signed with
    #[arg(long, value_name = "KEY")]
    pub public_key: Option<String>,
}

pub fn keygen_cmd(c: KeygenConfig) -> Result<Exit> {
    let key = c.output.with_extension("key");
    let public = c.output.with_extension("pub");
    for p in [&key, &public] {
        if p.exists() && !c.force {
            bail!("{} exists; use --force to replace it", p.display());
        }
    }
    let (sk, pk) = crate::media::keygen()?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&key)
        .with_context(|| format!("creating {}", key.display()))?;
    writeln!(
        f,
        "# tsforge media signing key (ed25519, secret): keep it off the media\n{sk}"
    )?;
    std::fs::write(&public, format!("{pk}\n"))
        .with_context(|| format!("writing {}", public.display()))?;
    println!(
        "{}: secret key\n{}: public key {pk}",
        key.display(),
        public.display()
    );
    Ok(Exit::Ok)
}

pub fn media_verify_cmd(c: MediaVerifyConfig, inspect: bool) -> Result<Exit> {
    let pinned = c
        .public_key
        .as_deref()
        .map(crate::media::pinned_key)
        .transpose()?;
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let (root, v) = crate::media::verify_medium(&c.medium, scratch.path(), pinned.as_deref())?;
    if inspect {
        let p = crate::media::find_ci(&root, crate::media::CONFIG_FILE).context("no media.toml")?;
        let cfg = crate::media::MediaConfig::parse(
            &std::fs::read_to_string(&p)?,
            &p.display().to_string(),
        )?;
        println!(
            "medium {:?} ({}), created {}",
            cfg.name,
            c.medium.display(),
            cfg.created
        );
        for s in &cfg.sequences {
            let mark = if cfg.default.as_deref() == Some(s.name.as_str()) {
                " (default)"
            } else {
                ""
            };
            println!("  sequence {}: tsforge/{}{mark}", s.name, s.file);
        }
        for h in &cfg.hooks {
            println!("  hook tsforge/{} (from the {})", h.file, h.from);
        }
        for (k, val) in &cfg.variables {
            let shown = if crate::vars::is_known_secret(k) {
                crate::vars::MASK
            } else {
                val.as_str()
            };
            println!("  variable {k} = {shown}");
        }
        for k in cfg.secrets.keys() {
            println!("  secret variable {k} (encrypted)");
        }
        println!(
            "  password: {}",
            if cfg.password.is_some() {
                "yes (PBKDF2-SHA256)"
            } else {
                "no"
            }
        );
        if let Ok(i) = crate::content::build::read_index(&root.join("tsforge/packages")) {
            for p in i.packages {
                println!(
                    "  package {} v{} ({}, {} bytes) {}",
                    p.id, p.version, p.kind, p.size, p.name
                );
            }
        }
    }
    if v.regions_unchecked > 0 {
        println!(
            "{}: note: its {} boot regions (boot code, boot sectors) were not checked: a folder \
             does not show them; verify the image file or the device (e.g. /dev/sdb) for those",
            c.medium.display(),
            v.regions_unchecked
        );
    }
    if v.problems.is_empty() {
        println!(
            "{}: OK ({} files, {} bytes{}{})",
            c.medium.display(),
            v.files,
            v.bytes,
            if v.regions > 0 {
                format!(", {} boot regions", v.regions)
            } else {
                String::new()
            },
            v.signed_by
                .map(|k| format!(", signed by {k}"))
                .unwrap_or_else(|| ", not signed".into())
        );
        Ok(Exit::Ok)
    } else {
        for p in &v.problems {
            println!("{}: {p}", c.medium.display());
        }
        Ok(Exit::No)
    }
}
