//! The `tsforge/` folder of a boot medium: `media.toml` (sequences, default selection, hooks,
//! media variables, password verifier, secret variables, signing key), `manifest` (sha256 of
//! every file on the medium as written, in `sha256sum` format so `sha256sum -c` checks a
//! medium too), `boot-regions` (sha256 of an image's boot code and boot sectors, listed in the
//! manifest) and `manifest.sig` (ed25519 over the manifest). The builder writes these; the
//! runner's boot flow and `tsforge media verify` read them. Specification: `docs/media.md`.
//!
//! Password: PBKDF2-HMAC-SHA256 (600,000 iterations, 16-byte random salt) derives a 32-byte
//! key; the medium stores only the salt and sha256("tsforge-verifier" ‖ key), so checking a
//! guess costs an attacker the full PBKDF2 work. Secret media variables are encrypted with
//! ChaCha20-Poly1305 under that key (random 12-byte nonce each), never stored in clear.

use crate::sys::hex;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The folder on every medium.
pub const MEDIA_DIR: &str = "tsforge";
pub const CONFIG_FILE: &str = "tsforge/media.toml";
pub const MANIFEST_FILE: &str = "tsforge/manifest";
pub const SIGNATURE_FILE: &str = "tsforge/manifest.sig";
/// The boot regions of an image medium (USB, ISO): byte ranges outside its files (boot code,
/// partition tables, boot sectors, the sectors a boot sector loads) with their sha256. Listed
/// in the manifest like any file, so the signature covers them.
pub const REGIONS_FILE: &str = "tsforge/boot-regions";
/// The Linux payload initrd at the root of a PXE tree: it holds the manifest, so the manifest
/// cannot list it.
pub const PXE_PAYLOAD: &str = "payload.img";
/// Files at the root of a PXE tree that its manifest cannot list: the payload initrd, and the
/// loaders the administrator adds (wimboot, iPXE's undionly.kpxe and ipxe.efi).
pub const PXE_UNLISTED: &[&str] = &[PXE_PAYLOAD, "wimboot", "undionly.kpxe", "ipxe.efi"];
/// A folder Windows creates on every writable volume it mounts; nothing boots from it.
pub const WINDOWS_VOLUME_FOLDER: &str = "System Volume Information";
pub const FORMAT: u32 = 1;
/// PBKDF2 iterations (OWASP's 2023 figure for PBKDF2-HMAC-SHA256).
pub const PBKDF2_ITERATIONS: u32 = 600_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MediaConfig {
    pub format: u32,
    /// The medium's label.
    pub name: String,
    /// Seconds since 1970.
    pub created: i64,
    /// The sequence started without a menu (by name), unless a hook chooses another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default)]
    pub sequences: Vec<SequenceEntry>,
    /// Pre-execution hooks, in the order they run: the template's first, then the medium's.
    #[serde(default)]
    pub hooks: Vec<HookEntry>,
    /// Media variables (`--var`), set before the hooks run.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Secret media variables: base64 of nonce ‖ ChaCha20-Poly1305 ciphertext.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordVerifier>,
    /// The ed25519 public key (hex) the manifest is signed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The failure screen may open a shell (ConfigMgr's *Enable command support* of boot
    /// images); with a media password, only after it is typed again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub debug_shell: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceEntry {
    pub name: String,
    /// Path on the medium, under `tsforge/`.
    pub file: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookEntry {
    /// Path on the medium, under `tsforge/`.
    pub file: String,
    /// `template` or `medium`: where the hook came from (logged).
    pub from: String,
    #[serde(default)]
    pub continue_on_error: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordVerifier {
    pub algorithm: String,
    pub iterations: u32,
    /// hex
    pub salt: String,
    /// hex of sha256("tsforge-verifier" ‖ key)
    pub verifier: String,
}

impl MediaConfig {
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let c: MediaConfig =
            toml::from_str(text).with_context(|| format!("{origin} is not a valid media.toml"))?;
        if c.format > FORMAT {
            bail!(
                "{origin}: media format {} is newer than this tsforge reads",
                c.format
            );
        }
        Ok(c)
    }
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("media config serializes")
    }
}

fn key_from(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut key = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut key);
    key
}

fn verifier_of(key: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(b"tsforge-verifier");
    h.update(key);
    hex(&h.finalize())
}

/// A new verifier for `password` and the key secrets are encrypted with.
pub fn new_password(password: &str, iterations: u32) -> Result<(PasswordVerifier, [u8; 32])> {
    if password.is_empty() {
        bail!("the media password is empty");
    }
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| anyhow::anyhow!("no random numbers: {e}"))?;
    let key = key_from(password, &salt, iterations);
    Ok((
        PasswordVerifier {
            algorithm: "pbkdf2-sha256".into(),
            iterations,
            salt: hex(&salt),
            verifier: verifier_of(&key),
        },
        key,
    ))
}

/// The key when `password` is right, `None` when it is wrong.
pub fn check_password(v: &PasswordVerifier, password: &str) -> Result<Option<[u8; 32]>> {
    if v.algorithm != "pbkdf2-sha256" {
        bail!(
            "media password algorithm {:?} is not supported",
            v.algorithm
        );
    }
    let salt = unhex(&v.salt).context("media.toml: password salt is not hex")?;
    let key = key_from(password, &salt, v.iterations);
    let got = verifier_of(&key);
    // Constant-time comparison of the verifiers.
    let same = got.len() == v.verifier.len()
        && got
            .bytes()
            .zip(v.verifier.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    Ok(same.then_some(key))
}

/// Encrypts a secret variable's value.
pub fn seal(key: &[u8; 32], name: &str, value: &str) -> Result<String> {
    use base64::Engine;
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    let cipher = chacha20poly1305::ChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; 12];
    getrandom::getrandom(&mut nonce).map_err(|e| anyhow::anyhow!("no random numbers: {e}"))?;
    let ct = cipher
        .encrypt(
            (&nonce).into(),
            Payload {
                msg: value.as_bytes(),
                aad: name.as_bytes(),
            },
        )
        .map_err(|_| anyhow::anyhow!("encrypting {name}"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Ok(base64::engine::general_purpose::STANDARD.encode(out))
}

/// Decrypts a secret variable's value (bound to its name).
pub fn open(key: &[u8; 32], name: &str, sealed: &str) -> Result<String> {
    use base64::Engine;
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    let raw = base64::engine::general_purpose::STANDARD
        .decode(sealed.trim())
        .with_context(|| format!("secret variable {name} is not base64"))?;
    if raw.len() < 12 + 16 {
        bail!("secret variable {name} is too short to be encrypted data");
    }
    let cipher = chacha20poly1305::ChaCha20Poly1305::new(key.into());
    let pt = cipher
        .decrypt(
            raw[..12].into(),
            Payload {
                msg: &raw[12..],
                aad: name.as_bytes(),
            },
        )
        .map_err(|_| {
            anyhow::anyhow!("secret variable {name} does not decrypt with this password (altered?)")
        })?;
    String::from_utf8(pt).with_context(|| format!("secret variable {name} is not UTF-8"))
}

/// A new ed25519 key pair: (secret key hex, public key hex).
pub fn keygen() -> Result<(String, String)> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| anyhow::anyhow!("no random numbers: {e}"))?;
    let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
    Ok((hex(&seed), hex(sk.verifying_key().as_bytes())))
}

/// Reads a key file written by `tsforge keygen` (hex, whitespace and `#` comments ignored).
pub fn read_key_file(path: &Path) -> Result<[u8; 32]> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let hexpart: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<String>()
        .split_whitespace()
        .collect();
    let bytes = unhex(&hexpart)
        .ok()
        .filter(|b| b.len() == 32)
        .with_context(|| format!("{} is not a tsforge key (64 hex digits)", path.display()))?;
    Ok(bytes.try_into().expect("32 bytes"))
}

/// Signs `manifest` with the secret key `seed`: (signature, public key hex).
pub fn sign(seed: &[u8; 32], manifest: &[u8]) -> (Vec<u8>, String) {
    use ed25519_dalek::Signer;
    let sk = ed25519_dalek::SigningKey::from_bytes(seed);
    let sig = sk.sign(manifest);
    (sig.to_bytes().to_vec(), hex(sk.verifying_key().as_bytes()))
}

/// Whether `sig` is the ed25519 signature of `msg` by the public key `public_hex`; an error
/// only when `public_hex` is not an ed25519 public key.
pub fn signature_valid(public_hex: &str, msg: &[u8], sig: &[u8]) -> Result<bool> {
    use ed25519_dalek::Verifier;
    let pk: [u8; 32] = unhex(public_hex.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("the public key is not 64 hex digits")?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&pk).context("not an ed25519 public key")?;
    let Ok(sig) = <[u8; 64]>::try_from(sig) else {
        return Ok(false);
    };
    Ok(key
        .verify(msg, &ed25519_dalek::Signature::from_bytes(&sig))
        .is_ok())
}

/// A public key given on the command line (`--public-key`): 64 hex digits, or a file holding
/// them (a `.pub` file from `tsforge keygen`; `#` lines ignored). Returns the hex key.
pub fn public_key_arg(arg: &str) -> Result<String> {
    let text = if Path::new(arg).is_file() {
        std::fs::read_to_string(arg).with_context(|| format!("reading {arg}"))?
    } else {
        arg.to_string()
    };
    let key = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let ok = unhex(&key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .is_some_and(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).is_ok());
    if !ok {
        bail!(
            "--public-key {arg}: neither an ed25519 public key (64 hex digits) nor a file \
             holding one (NAME.pub from tsforge keygen)"
        );
    }
    Ok(key)
}

/// The medium's pinned public key as given to `--public-key` of the medium check (boot and
/// `tsforge media verify`): a file's first word not starting with `#`, or the argument itself.
/// Unlike [`public_key_arg`] it does not check the key: [`verify_dir`] reports a bad one.
pub fn pinned_key(arg: &str) -> Result<String> {
    if !Path::new(arg).is_file() {
        return Ok(arg.to_string());
    }
    Ok(std::fs::read_to_string(arg)
        .with_context(|| format!("reading {arg}"))?
        .split_whitespace()
        .find(|w| !w.starts_with('#'))
        .unwrap_or("")
        .to_string())
}

/// Checks `sig` over `manifest` with the public key `public_hex`.
pub fn verify_signature(public_hex: &str, manifest: &[u8], sig: &[u8]) -> Result<()> {
    use ed25519_dalek::Verifier;
    let pk: [u8; 32] = unhex(public_hex.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("the public key is not 64 hex digits")?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&pk).context("not an ed25519 public key")?;
    let sig: [u8; 64] = sig
        .try_into()
        .map_err(|_| anyhow::anyhow!("{SIGNATURE_FILE} is not a 64-byte ed25519 signature"))?;
    key.verify(manifest, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| anyhow::anyhow!("{SIGNATURE_FILE} does not match {MANIFEST_FILE} (the manifest was changed, or signed with another key)"))
}

/// One manifest line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    pub sha256: String,
    pub path: String,
}

/// `sha256  path` lines (sha256sum's format), sorted by path.
pub fn format_manifest(entries: &[ManifestEntry]) -> Vec<u8> {
    let mut sorted = entries.to_vec();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut out = String::new();
    for e in sorted {
        out.push_str(&e.sha256);
        out.push_str("  ");
        out.push_str(&e.path);
        out.push('\n');
    }
    out.into_bytes()
}

pub fn parse_manifest(bytes: &[u8]) -> Result<Vec<ManifestEntry>> {
    let text = std::str::from_utf8(bytes).context("tsforge/manifest is not UTF-8")?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let (h, p) = line
            .split_once("  ")
            .with_context(|| format!("tsforge/manifest line {}: expected `SHA256  PATH`", i + 1))?;
        if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("tsforge/manifest line {}: {h:?} is not a sha256", i + 1);
        }
        // A control character (a carriage return left by a CRLF line, a tab) is never part
        // of a file name on a medium, and would not survive being written back.
        if p.is_empty()
            || p.starts_with('/')
            || p.split('/').any(|c| c == ".." || c.is_empty())
            || p.chars().any(char::is_control)
        {
            bail!(
                "tsforge/manifest line {}: {p:?} is not a path on the medium",
                i + 1
            );
        }
        out.push(ManifestEntry {
            sha256: h.to_ascii_lowercase(),
            path: p.to_string(),
        });
    }
    Ok(out)
}

/// The outcome of [`verify_dir`].
#[derive(Debug, Clone, Default)]
pub struct Verified {
    pub files: usize,
    pub bytes: u64,
    pub signed_by: Option<String>,
    /// Problems, each naming the file; empty when the medium is intact.
    pub problems: Vec<String>,
    /// Boot-loader files of the manifest that a PXE tree or payload does not carry.
    pub not_carried: usize,
    /// Boot regions (`tsforge/boot-regions`) checked against the image or device.
    pub regions: usize,
    /// Boot regions the medium lists that were not checked: the medium was given as a folder
    /// (a mounted stick or ISO), whose boot sectors cannot be read from there.
    pub regions_unchecked: usize,
}

/// One line of `tsforge/boot-regions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub sha256: String,
    /// Byte offset from the start of the image or device.
    pub offset: u64,
    pub len: u64,
    /// What the bytes are ("MBR boot code", …), named in problems.
    pub what: String,
}

/// `sha256  OFFSET+LENGTH  WHAT` lines, after a comment line saying so.
pub fn format_regions(regions: &[Region]) -> Vec<u8> {
    let mut out = String::from(
        "# tsforge boot regions: sha256  offset+length  what (bytes of the image outside its files)\n",
    );
    for r in regions {
        out.push_str(&format!(
            "{}  {}+{}  {}\n",
            r.sha256, r.offset, r.len, r.what
        ));
    }
    out.into_bytes()
}

pub fn parse_regions(bytes: &[u8]) -> Result<Vec<Region>> {
    let text = std::str::from_utf8(bytes).context("tsforge/boot-regions is not UTF-8")?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || {
            anyhow::anyhow!(
                "{REGIONS_FILE} line {}: expected `SHA256  OFFSET+LENGTH  WHAT`",
                i + 1
            )
        };
        let mut parts = line.splitn(3, "  ");
        let (h, range, what) = match (parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(r), Some(w)) if !w.trim().is_empty() => (h, r, w),
            _ => return Err(bad()),
        };
        if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let (o, l) = range.split_once('+').ok_or_else(bad)?;
        let offset: u64 = o.parse().map_err(|_| bad())?;
        let len: u64 = l.parse().map_err(|_| bad())?;
        if len == 0 || offset.checked_add(len).is_none() {
            return Err(bad());
        }
        out.push(Region {
            sha256: h.to_ascii_lowercase(),
            offset,
            len,
            what: what.to_string(),
        });
    }
    Ok(out)
}

/// sha256 (hex) of `len` bytes of `f` from `offset`; an error when `f` ends before.
pub fn hash_range(f: &mut std::fs::File, offset: u64, len: u64) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    f.seek(SeekFrom::Start(offset))?;
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f.take(len), &mut h)?;
    if n != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the medium ends at byte {}", offset + n),
        ));
    }
    Ok(hex(&h.finalize()))
}

/// At the root of a PXE tree (`tsforge build pxe`) and of the payload a PXE-booted machine
/// unpacks under /pxe, and listed in its manifest: the boot-loader files are not carried (the
/// network boot loaded the kernel and initramfs), so their absence is not tampering. Every
/// file that is there is still checked. A marker the manifest does not list means nothing.
pub const PXE_MARKER: &str = "tsforge-pxe.txt";

/// A boot-loader file of a medium: outside `tsforge/`, or under `tsforge/boot/`.
fn is_boot_file(path: &str) -> bool {
    let l = path.to_ascii_lowercase();
    !l.starts_with("tsforge/") || l.starts_with("tsforge/boot/")
}

/// Checks a medium mounted or copied at `root`: the signature (when media.toml names a key,
/// or `pinned_key` is given — then it must match), every manifest file's sha256, and that the
/// medium holds no file the manifest does not list, anywhere. Boot regions cannot be read from
/// a folder: they are counted in [`Verified::regions_unchecked`] ([`verify_medium`] checks
/// them on an image or device).
pub fn verify_dir(root: &Path, pinned_key: Option<&str>) -> Result<Verified> {
    let (mut v, regions) = verify_files(root, pinned_key)?;
    v.regions_unchecked = regions.len();
    Ok(v)
}

/// [`verify_dir`] on the files of `medium` (a folder, an ISO, a USB image or a device, read
/// through [`materialize`] into `scratch`); for an image or a device, also every boot region
/// of `tsforge/boot-regions` against its bytes. Returns the folder read and the outcome.
pub fn verify_medium(
    medium: &Path,
    scratch: &Path,
    pinned_key: Option<&str>,
) -> Result<(PathBuf, Verified)> {
    let root = materialize(medium, scratch)?;
    let (mut v, regions) = verify_files(&root, pinned_key)?;
    if std::fs::metadata(medium)?.is_dir() {
        v.regions_unchecked = regions.len();
        return Ok((root, v));
    }
    let mut f =
        std::fs::File::open(medium).with_context(|| format!("opening {}", medium.display()))?;
    for r in &regions {
        let end = r.offset + r.len - 1;
        match hash_range(&mut f, r.offset, r.len) {
            Ok(h) if h == r.sha256 => v.regions += 1,
            Ok(h) => v.problems.push(format!(
                "boot region {} (bytes {}-{end}): sha256 {h} does not match {REGIONS_FILE} ({})",
                r.what, r.offset, r.sha256
            )),
            Err(e) => v.problems.push(format!(
                "boot region {} (bytes {}-{end}): {e}",
                r.what, r.offset
            )),
        }
    }
    Ok((root, v))
}

/// The signature and the files; the boot regions the medium lists (checked against the
/// manifest like any file, so a changed list is a problem of its own).
fn verify_files(root: &Path, pinned_key: Option<&str>) -> Result<(Verified, Vec<Region>)> {
    let cfg_path = find_ci(root, CONFIG_FILE).with_context(|| {
        format!(
            "{} has no {CONFIG_FILE}: not a tsforge medium",
            root.display()
        )
    })?;
    let cfg = MediaConfig::parse(
        &std::fs::read_to_string(&cfg_path)
            .with_context(|| format!("reading {}", cfg_path.display()))?,
        &cfg_path.display().to_string(),
    )?;
    let man_path = find_ci(root, MANIFEST_FILE)
        .with_context(|| format!("{} has no {MANIFEST_FILE}", root.display()))?;
    let manifest = std::fs::read(&man_path)?;
    let mut v = Verified::default();
    let key = match (pinned_key, cfg.public_key.as_deref()) {
        (Some(p), Some(c)) if !p.trim().eq_ignore_ascii_case(c.trim()) => {
            v.problems.push(format!(
                "{CONFIG_FILE} names public key {c}, not the expected {}",
                p.trim()
            ));
            Some(p.trim().to_string())
        }
        (Some(p), _) => Some(p.trim().to_string()),
        (None, c) => c.map(str::to_string),
    };
    if let Some(k) = &key {
        match find_ci(root, SIGNATURE_FILE) {
            None => v.problems.push(format!(
                "{SIGNATURE_FILE} is missing (the medium must be signed)"
            )),
            Some(sp) => {
                let sig = std::fs::read(&sp)?;
                match verify_signature(k, &manifest, &sig) {
                    Ok(()) => v.signed_by = Some(k.clone()),
                    Err(e) => v.problems.push(format!("{e:#}")),
                }
            }
        }
    }
    let entries = parse_manifest(&manifest)?;
    let listed: std::collections::HashSet<String> = entries
        .iter()
        .map(|e| e.path.to_ascii_lowercase())
        .collect();
    let pxe = listed.contains(&PXE_MARKER.to_ascii_lowercase()) && root.join(PXE_MARKER).is_file();
    for e in &entries {
        let Some(p) = find_ci(root, &e.path) else {
            if pxe && is_boot_file(&e.path) {
                v.not_carried += 1;
            } else {
                v.problems.push(format!("{}: missing", e.path));
            }
            continue;
        };
        match sha256_file(&p) {
            Ok((h, n)) => {
                v.files += 1;
                v.bytes += n;
                if h != e.sha256 {
                    v.problems.push(format!(
                        "{}: sha256 {h} does not match the manifest ({})",
                        e.path, e.sha256
                    ));
                }
            }
            Err(err) => v.problems.push(format!("{}: {err}", e.path)),
        }
    }
    // Files added after the build, anywhere on the medium.
    let mut found = Vec::new();
    walk_rel(root, "", &mut found);
    for f in found {
        let l = f.to_ascii_lowercase();
        let own = [MANIFEST_FILE, SIGNATURE_FILE]
            .iter()
            .any(|o| o.eq_ignore_ascii_case(&f));
        let windows = l.starts_with(&format!("{}/", WINDOWS_VOLUME_FOLDER.to_ascii_lowercase()));
        let pxe_file = pxe && PXE_UNLISTED.iter().any(|n| n.eq_ignore_ascii_case(&f));
        if !listed.contains(&l) && !own && !windows && !pxe_file {
            v.problems
                .push(format!("{f}: not in the manifest (added after the build)"));
        }
    }
    let regions = if listed.contains(&REGIONS_FILE.to_ascii_lowercase()) {
        match find_ci(root, REGIONS_FILE).map(std::fs::read) {
            Some(Ok(b)) => match parse_regions(&b) {
                Ok(r) => r,
                Err(e) => {
                    v.problems.push(format!("{e:#}"));
                    Vec::new()
                }
            },
            // Named above as missing or unreadable.
            _ => Vec::new(),
        }
    } else {
        Vec::new()
    };
    Ok((v, regions))
}

/// Every file under `dir`, as paths relative to the walk's start (`rel` is `dir`'s).
fn walk_rel(dir: &Path, rel: &str, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if e.path().is_dir() {
            walk_rel(&e.path(), &r, out);
        } else {
            out.push(r);
        }
    }
}

/// `rel` under `root`, matching each component ignoring ASCII case (FAT and ISO media).
pub fn find_ci(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut cur = root.to_path_buf();
    for comp in rel.split('/') {
        let direct = cur.join(comp);
        if direct.exists() {
            cur = direct;
            continue;
        }
        let rd = std::fs::read_dir(&cur).ok()?;
        cur = rd
            .flatten()
            .find(|e| e.file_name().to_string_lossy().eq_ignore_ascii_case(comp))?
            .path();
    }
    Some(cur)
}

/// sha256 (hex) and size of a file.
pub fn sha256_file(p: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(p)?;
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f, &mut h)?;
    Ok((hex(&h.finalize()), n))
}

fn unhex(s: &str) -> Result<Vec<u8>> {
    // (See the test `unhex_refuses_non_ascii_without_panicking`.)
    if s.len() % 2 != 0 {
        bail!("odd number of hex digits");
    }
    // Bytes, not string slices: a key file or media.toml may hold anything, and slicing a
    // multi-byte character in half panics (found by the trust_files fuzz target).
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks_exact(2)
        .map(|p| match (digit(p[0]), digit(p[1])) {
            (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
            _ => Err(anyhow::anyhow!("not hex")),
        })
        .collect()
}

/// A folder holding the medium's files: `medium` itself when it is a folder; for an ISO, its
/// files extracted into `scratch` with `xorriso`; for a USB disk image (MBR, GPT or a bare FAT
/// file system), the files of the FAT partition that holds `tsforge/media.toml`, read with
/// tsforge's own FAT reader into `scratch`.
pub fn materialize(medium: &Path, scratch: &Path) -> Result<PathBuf> {
    let meta =
        std::fs::metadata(medium).with_context(|| format!("reading {}", medium.display()))?;
    if meta.is_dir() {
        return Ok(medium.to_path_buf());
    }
    let mut head = vec![0u8; 32774];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(medium)?;
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..])? {
                0 => break,
                k => n += k,
            }
        }
        head.truncate(n);
    }
    if head.get(32769..32774) == Some(b"CD001") {
        let xorriso = crate::tools::find(crate::tools::Tool::Xorriso)
            .with_context(|| format!("{} is an ISO image", medium.display()))?;
        let out = std::process::Command::new(xorriso)
            .args(["-osirrox", "on", "-indev"])
            .arg(medium)
            .args(["-extract", "/"])
            .arg(scratch)
            .output()
            .context("running xorriso")?;
        if !out.status.success() {
            bail!(
                "xorriso could not read {}: {}",
                medium.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        return Ok(scratch.to_path_buf());
    }
    let disk = crate::disk::Disk::open(medium, false)?;
    let mut ranges = Vec::new();
    if let Ok(Some(t)) = crate::disk::layout::read_table(&disk) {
        for p in t.partitions {
            ranges.push((
                format!("partition {}", p.number),
                disk.range(p.start, p.len)?,
            ));
        }
    }
    ranges.push(("the whole image".to_string(), disk.whole()?));
    // Each FAT is checked before `fatfs` reads it (a medium is untrusted input): a damaged one
    // is reported, never read.
    let mut damaged = Vec::new();
    for (what, mut r) in ranges {
        match crate::disk::fatcheck::check(&mut r) {
            Ok(report) if report.is_clean() => {}
            Ok(report) => {
                damaged.push(format!("{what}: {}", report.problems.join("; ")));
                continue;
            }
            Err(_) => continue, // not FAT
        }
        let Ok(fs) = crate::disk::fat::open(r) else {
            continue;
        };
        if fs.open_file(CONFIG_FILE).is_ok() {
            crate::image::fat::extract_to_dir(&fs, scratch)
                .with_context(|| format!("reading {what} of {}", medium.display()))?;
            return Ok(scratch.to_path_buf());
        }
    }
    if !damaged.is_empty() {
        bail!(
            "{} holds a damaged FAT file system, not read: {}",
            medium.display(),
            damaged.join("; ")
        );
    }
    bail!(
        "{} is neither a folder, an ISO, nor a disk image with a FAT file system holding {CONFIG_FILE}",
        medium.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhex_refuses_non_ascii_without_panicking() {
        // An even number of bytes whose characters are 3 bytes long: the old code sliced
        // `s[0..2]`, inside the first one.
        let key = "€".repeat(22);
        assert!(unhex(&key).is_err());
        assert!(unhex("0g").is_err());
        assert_eq!(unhex("00ff7A").unwrap(), [0, 255, 0x7a]);
        assert!(signature_valid(&key, b"m", &[0; 64]).is_err());
        assert!(verify_signature(&key, b"m", &[0; 64]).is_err());
    }

    #[test]
    fn password_and_secrets() {
        let (v, key) = new_password("correct horse", 1000).unwrap();
        assert!(check_password(&v, "wrong").unwrap().is_none());
        let k2 = check_password(&v, "correct horse").unwrap().unwrap();
        assert_eq!(k2, key);
        let sealed = seal(&key, "DomainJoinPassword", "s3cret!").unwrap();
        assert!(!sealed.contains("s3cret"));
        assert_eq!(
            open(&key, "DomainJoinPassword", &sealed).unwrap(),
            "s3cret!"
        );
        // Bound to the name: moving a secret to another variable fails.
        assert!(open(&key, "Other", &sealed).is_err());
        let (_, other) = new_password("x", 1000).unwrap();
        assert!(open(&other, "DomainJoinPassword", &sealed).is_err());
    }

    #[test]
    fn signatures() {
        let (sk, pk) = keygen().unwrap();
        let seed: [u8; 32] = unhex(&sk).unwrap().try_into().unwrap();
        let (sig, pk2) = sign(&seed, b"abc  x\n");
        assert_eq!(pk, pk2);
        verify_signature(&pk, b"abc  x\n", &sig).unwrap();
        assert!(verify_signature(&pk, b"abd  x\n", &sig).is_err());
    }

    #[test]
    fn regions_roundtrip_and_bad_lines_are_refused() {
        let r = vec![
            Region {
                sha256: "a".repeat(64),
                offset: 0,
                len: 440,
                what: "MBR boot code".into(),
            },
            Region {
                sha256: "b".repeat(64),
                offset: 1 << 20,
                len: 65,
                what: "partition 1 boot sector  (two spaces kept)".into(),
            },
        ];
        assert_eq!(parse_regions(&format_regions(&r)).unwrap(), r);
        let h = "c".repeat(64);
        for bad in [
            format!("{h}  0+440\n"),
            format!("{h}  0+0  empty\n"),
            format!("{h}  x+1  what\n"),
            format!("{h}  18446744073709551615+2  overflow\n"),
            "abc  0+1  short hash\n".to_string(),
        ] {
            assert!(parse_regions(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn manifest_roundtrip() {
        let e = vec![
            ManifestEntry {
                sha256: "b".repeat(64),
                path: "z/y".into(),
            },
            ManifestEntry {
                sha256: "a".repeat(64),
                path: "a b/c".into(),
            },
        ];
        let bytes = format_manifest(&e);
        assert!(bytes.starts_with(format!("{}  a b/c\n", "a".repeat(64)).as_bytes()));
        assert_eq!(parse_manifest(&bytes).unwrap().len(), 2);
        assert!(parse_manifest(b"xyz  a\n").is_err());
        assert!(parse_manifest(format!("{}  ../x\n", "a".repeat(64)).as_bytes()).is_err());
        // A path ending in a carriage return (a CRLF line with one CR too many, found by
        // fuzz/fuzz_targets/trust_files.rs) would not read back the same once written again.
        let cr = format!("{}  EFI/BOOT/x\r\r\n", "a".repeat(64));
        let err = parse_manifest(cr.as_bytes()).unwrap_err();
        assert!(
            format!("{err:#}").contains("is not a path on the medium"),
            "{err:#}"
        );
        assert!(parse_manifest(format!("{}  a\tb\n", "a".repeat(64)).as_bytes()).is_err());
    }
}
