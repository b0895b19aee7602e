//! Extended attributes of captured and applied trees (attr(5), xattr(7)): `security.*`
//! (SELinux labels, `security.capability`), `trusted.*` (listed to root only), `user.*`, and
//! the POSIX ACLs stored as `system.posix_acl_access` / `system.posix_acl_default` (acl(5)).
//!
//! The system calls come from the `xattr` crate (llistxattr, lgetxattr, fsetxattr and
//! lsetxattr, never following a link; nix 0.32 has none of them). Capture makes one
//! `llistxattr` per path and reads values only when the list is not empty. Only Linux has them
//! here: on other systems a tree has no extended attributes and apply skips them (counted in
//! the summary warning).

use anyhow::Result;
use std::path::Path;

/// Longest name and value Linux accepts (`XATTR_NAME_MAX`, `XATTR_SIZE_MAX`, xattr(7)).
pub const NAME_MAX: usize = 255;
pub const VALUE_MAX: usize = 65536;

/// The namespaces Linux knows (xattr(7)); a name outside them cannot be set.
const NAMESPACES: [&str; 4] = ["security.", "system.", "trusted.", "user."];

/// Names only root may set: `security.*` (capabilities, SELinux labels) and `trusted.*`.
pub fn privileged(name: &str) -> bool {
    name.starts_with("security.") || name.starts_with("trusted.")
}

/// Checks a name from a manifest.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.len() > NAME_MAX || name.contains('\0') {
        return Err(format!(
            "extended attribute name {name:?} is longer than {NAME_MAX} bytes or holds a NUL"
        ));
    }
    match NAMESPACES.iter().find(|n| name.starts_with(*n)) {
        Some(n) if name.len() > n.len() => Ok(()),
        _ => Err(format!(
            "extended attribute name {name:?} is not in one of the namespaces security., \
             system., trusted. or user."
        )),
    }
}

/// Every extended attribute of `path` (a link's own, never its target's), sorted by name.
#[cfg(target_os = "linux")]
pub fn read(path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    use anyhow::Context;
    let names = match xattr::list(path) {
        Ok(n) => n,
        // A file system without extended attributes has none to keep.
        Err(e) if e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) => return Ok(Vec::new()),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("listing the extended attributes of {}", path.display()))
        }
    };
    let mut out = Vec::new();
    for n in names {
        let Some(name) = n.to_str() else {
            anyhow::bail!(
                "{}: an extended attribute name is not valid UTF-8 ({:?}); image manifests \
                 hold UTF-8 names only",
                path.display(),
                n
            );
        };
        // Removed between the list and the read: nothing to keep.
        if let Some(v) = xattr::get(path, &n)
            .with_context(|| format!("reading extended attribute {name} of {}", path.display()))?
        {
            out.push((name.to_string(), v));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(not(target_os = "linux"))]
pub fn read(_path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    Ok(Vec::new())
}

/// The manifest form of a value.
pub fn encode(v: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(v)
}

/// A value from the manifest.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}
