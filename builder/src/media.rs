//! The medium's `tsforge/` folder (`docs/media.md`): sequences, hooks, packages, `media.toml`,
//! then the manifest of every file on the medium and its signature. Runs after the template
//! (whose files the manifest covers too) and before an output writes the tree.

use crate::source::Source;
use crate::tree::MediaTree;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use tsforge_runtime::media::{self, HookEntry, MediaConfig, SequenceEntry};

/// What goes into `tsforge/`.
#[derive(Debug, Clone, Default)]
pub struct MediaOptions {
    /// The medium's label.
    pub name: String,
    pub sequences: Vec<PathBuf>,
    /// `--default NAME` (a sequence's name: its file name without extension).
    pub default: Option<String>,
    /// Hooks that come with the template (run first).
    pub template_hooks: Vec<PathBuf>,
    /// `--hook FILE`.
    pub hooks: Vec<PathBuf>,
    /// `--package DIR`: distribution point folders merged into `tsforge/packages/`.
    pub packages: Vec<PathBuf>,
    /// `--var NAME=VALUE`.
    pub vars: Vec<(String, String)>,
    /// `--secret NAME=VALUE`: stored encrypted (needs a password).
    pub secrets: Vec<(String, String)>,
    /// The media password (from `--password-file`).
    pub password: Option<String>,
    /// The ed25519 secret key (from `--sign KEY`).
    pub signing_key: Option<[u8; 32]>,
    pub epoch: i64,
    /// PBKDF2 iterations (tests lower it).
    pub iterations: u32,
    /// `--debug-shell`: the failure screen may open a shell (media.toml `debug_shell`).
    pub debug_shell: bool,
}

/// The name of a sequence on the medium: its file name without extension.
pub fn sequence_name(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Adds `tsforge/` to `tree` and returns the media config written.
pub fn assemble(tree: &mut MediaTree, opts: &MediaOptions) -> Result<MediaConfig> {
    if opts.sequences.is_empty() {
        bail!("no task sequence given (--sequence FILE)");
    }
    let mut cfg = MediaConfig {
        format: media::FORMAT,
        name: opts.name.clone(),
        created: opts.epoch,
        debug_shell: opts.debug_shell,
        ..Default::default()
    };
    add_sequences(tree, opts, &mut cfg)?;
    choose_default(opts, &mut cfg)?;
    add_hooks(tree, opts, &mut cfg)?;
    add_packages(tree, opts)?;
    for (k, v) in &opts.vars {
        cfg.variables.insert(k.clone(), v.clone());
    }
    add_secrets(opts, &mut cfg)?;
    if let Some(seed) = &opts.signing_key {
        let (_, pk) = media::sign(seed, b"");
        cfg.public_key = Some(pk);
    }
    tree.add(
        media::CONFIG_FILE,
        Source::bytes(cfg.to_toml().into_bytes()),
    )?;

    seal(tree, opts.signing_key.as_ref())?;
    Ok(cfg)
}

/// Sequences: each must load and validate without errors before anything is written; each
/// goes to `tsforge/sequences/` under its file name, named by it without extension.
fn add_sequences(tree: &mut MediaTree, opts: &MediaOptions, cfg: &mut MediaConfig) -> Result<()> {
    for s in &opts.sequences {
        check_sequence(s)?;
        let name = sequence_name(s);
        if cfg
            .sequences
            .iter()
            .any(|e| e.name.eq_ignore_ascii_case(&name))
        {
            bail!(
                "two sequences are named {name} ({}); rename one file",
                s.display()
            );
        }
        let file_name = s.file_name().unwrap().to_string_lossy().into_owned();
        let rel = format!("sequences/{file_name}");
        tree.add(&format!("tsforge/{rel}"), Source::path(s))?;
        cfg.sequences.push(SequenceEntry { name, file: rel });
    }
    Ok(())
}

/// Loads and validates the sequence file `s`: an error lists every error found in it.
fn check_sequence(s: &Path) -> Result<()> {
    let (seq, _) = tsforge_runtime::sequence::load(s).map_err(|e| anyhow::anyhow!("{e}"))?;
    let diags = tsforge_runtime::engine::validate::validate(
        &seq,
        s,
        &tsforge_runtime::engine::validate::Context::default(),
    );
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.severity == tsforge_runtime::Severity::Error)
        .map(|d| d.to_string())
        .collect();
    if !errors.is_empty() {
        bail!("{} has errors:\n{}", s.display(), errors.join("\n"));
    }
    Ok(())
}

/// The default sequence: `--default` (which must name one), else the only one there is.
fn choose_default(opts: &MediaOptions, cfg: &mut MediaConfig) -> Result<()> {
    if let Some(d) = &opts.default {
        if !cfg.sequences.iter().any(|e| e.name.eq_ignore_ascii_case(d)) {
            bail!(
                "--default {d}: no such sequence (the medium has: {})",
                cfg.sequences
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        cfg.default = Some(d.clone());
    } else if cfg.sequences.len() == 1 {
        cfg.default = Some(cfg.sequences[0].name.clone());
    }
    Ok(())
}

/// Hooks: the template's first, then the medium's, numbered to keep the order visible.
fn add_hooks(tree: &mut MediaTree, opts: &MediaOptions, cfg: &mut MediaConfig) -> Result<()> {
    let mut n = 0;
    for (from, list) in [("template", &opts.template_hooks), ("medium", &opts.hooks)] {
        for h in list {
            if !h.is_file() {
                bail!("hook {} does not exist", h.display());
            }
            n += 1;
            let rel = format!("hooks/{n:02}-{}", h.file_name().unwrap().to_string_lossy());
            tree.add(&format!("tsforge/{rel}"), Source::path(h))?;
            cfg.hooks.push(HookEntry {
                file: rel,
                from: from.into(),
                continue_on_error: false,
            });
        }
    }
    Ok(())
}

/// Packages: every package folder of every distribution point, and one merged index.
fn add_packages(tree: &mut MediaTree, opts: &MediaOptions) -> Result<()> {
    let mut index = tsforge_runtime::content::manifest::DpIndex {
        format: tsforge_runtime::content::manifest::FORMAT,
        packages: Vec::new(),
    };
    for dp in &opts.packages {
        let i = tsforge_runtime::content::build::read_index(dp)?;
        if i.packages.is_empty() {
            bail!(
                "{} holds no packages (make them with tsforge package build)",
                dp.display()
            );
        }
        for p in i.packages {
            if index
                .packages
                .iter()
                .any(|q| q.id.eq_ignore_ascii_case(&p.id))
            {
                bail!("package {} is in more than one --package folder", p.id);
            }
            tree.add_dir(&dp.join(&p.id), &format!("tsforge/packages/{}", p.id))?;
            if let Some(seed) = &opts.signing_key {
                sign_package(tree, dp, &p.id, seed)?;
            }
            index.upsert(p);
        }
    }
    if !opts.packages.is_empty() {
        add_package_index(tree, &index, opts.signing_key.as_ref())?;
    }
    Ok(())
}

/// A signed medium accepts only packages signed with its key: its copy of package `id` from
/// the distribution point `dp` is signed with it (after checking that the manifest is whole).
fn sign_package(tree: &mut MediaTree, dp: &Path, id: &str, seed: &[u8; 32]) -> Result<()> {
    use tsforge_runtime::content::manifest::{PackageManifest, PACKAGE_FILE, PACKAGE_SIG_FILE};
    let path = dp.join(id).join(PACKAGE_FILE);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    PackageManifest::parse(&bytes, &path.display().to_string())?;
    tree.add(
        &format!("tsforge/packages/{id}/{PACKAGE_SIG_FILE}"),
        Source::bytes(media::sign(seed, &bytes).0),
    )?;
    Ok(())
}

/// The merged index of the medium's packages, and its signature on a signed medium.
fn add_package_index(
    tree: &mut MediaTree,
    index: &tsforge_runtime::content::manifest::DpIndex,
    signing_key: Option<&[u8; 32]>,
) -> Result<()> {
    use tsforge_runtime::content::manifest::{INDEX_FILE, INDEX_SIG_FILE};
    let bytes = index.to_json();
    if let Some(seed) = signing_key {
        tree.add(
            &format!("tsforge/packages/{INDEX_SIG_FILE}"),
            Source::bytes(media::sign(seed, &bytes).0),
        )?;
    }
    tree.add(
        &format!("tsforge/packages/{INDEX_FILE}"),
        Source::bytes(bytes),
    )?;
    Ok(())
}

/// Secret variables, sealed with a key derived from the media password, and the password's
/// verifier; secrets without a password are refused.
fn add_secrets(opts: &MediaOptions, cfg: &mut MediaConfig) -> Result<()> {
    match (&opts.password, opts.secrets.is_empty()) {
        (Some(pw), _) => {
            let (verifier, key) = media::new_password(pw, opts.iterations)?;
            for (k, v) in &opts.secrets {
                cfg.secrets.insert(k.clone(), media::seal(&key, k, v)?);
            }
            cfg.password = Some(verifier);
        }
        (None, false) => bail!(
            "secret media variables need a media password (--password-file): their values are \
             stored encrypted with a key derived from it"
        ),
        (None, true) => {}
    }
    Ok(())
}

/// (Re)writes `tsforge/manifest` over every other file of `tree` (the template's too) and, with
/// a key, `tsforge/manifest.sig`. Outputs that change or add files (the ISO's boot-info table,
/// syslinux's files, the boot regions, the PXE root) re-make it with [`reseal`].
pub fn seal(tree: &mut MediaTree, signing_key: Option<&[u8; 32]>) -> Result<()> {
    use sha2::Digest;
    tree.remove(media::MANIFEST_FILE);
    tree.remove(media::SIGNATURE_FILE);
    let mut entries = Vec::new();
    for (path, src) in tree.iter() {
        let mut r = src
            .open()
            .with_context(|| format!("{path}: opening {}", src.describe()))?;
        let mut h = sha2::Sha256::default();
        std::io::copy(&mut r, &mut h)
            .with_context(|| format!("{path}: reading {}", src.describe()))?;
        entries.push(media::ManifestEntry {
            sha256: tsforge_runtime::sys::hex(&h.finalize()),
            path: path.to_string(),
        });
    }
    let manifest = media::format_manifest(&entries);
    if let Some(seed) = signing_key {
        let (sig, _) = media::sign(seed, &manifest);
        tree.add(media::SIGNATURE_FILE, Source::bytes(sig))?;
    }
    tree.add(media::MANIFEST_FILE, Source::bytes(manifest))?;
    Ok(())
}

/// A manifest and its signature, made for one output.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub manifest: Vec<u8>,
    pub signature: Option<Vec<u8>>,
}

impl Sealed {
    /// Puts the manifest and the signature into `tree`.
    pub fn add_to(&self, tree: &mut MediaTree) -> Result<()> {
        tree.remove(media::SIGNATURE_FILE);
        tree.add(media::MANIFEST_FILE, Source::bytes(self.manifest.clone()))?;
        if let Some(sig) = &self.signature {
            tree.add(media::SIGNATURE_FILE, Source::bytes(sig.clone()))?;
        }
        Ok(())
    }
}

/// The manifest `tree` carries with `updates` (each replaces the entry of its path, ASCII case
/// ignored, or is added), signed with `signing_key`. `None` when `tree` has no manifest (not
/// a medium made by [`assemble`]). An output calls this for the files it writes differently
/// from the tree or adds, so the manifest lists every byte of the medium as written. A signed
/// tree needs the key again: its signature would not match the new manifest.
pub fn reseal(
    tree: &MediaTree,
    signing_key: Option<&[u8; 32]>,
    updates: &[media::ManifestEntry],
) -> Result<Option<Sealed>> {
    let Some(src) = tree.get(media::MANIFEST_FILE) else {
        return Ok(None);
    };
    if signing_key.is_none() && tree.contains(media::SIGNATURE_FILE) {
        bail!(
            "the medium is signed, and this output changes its manifest (it adds or rewrites \
             boot files); give the signing key (--sign KEY) so the new manifest is signed too"
        );
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut src
            .open()
            .with_context(|| format!("reading {}", media::MANIFEST_FILE))?,
        &mut bytes,
    )?;
    let mut entries = media::parse_manifest(&bytes)?;
    for u in updates {
        entries.retain(|e| !e.path.eq_ignore_ascii_case(&u.path));
        entries.push(u.clone());
    }
    let manifest = media::format_manifest(&entries);
    let signature = signing_key.map(|seed| media::sign(seed, &manifest).0);
    Ok(Some(Sealed {
        manifest,
        signature,
    }))
}

/// A manifest entry for `path` holding `bytes`.
pub fn entry_of(path: &str, bytes: &[u8]) -> media::ManifestEntry {
    use sha2::Digest;
    media::ManifestEntry {
        sha256: tsforge_runtime::sys::hex(&sha2::Sha256::digest(bytes)),
        path: path.to_string(),
    }
}
