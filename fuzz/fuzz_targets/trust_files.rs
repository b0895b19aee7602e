//! The files a runner trusts only after checking them, read from media and distribution
//! points: the first byte picks the reader, the rest is the file. `media.toml`
//! (`MediaConfig::parse`), the medium's `tsforge/manifest` and `tsforge/boot-regions`, a
//! package's `tsforge-package.json` (then every block of every file is asked for) and a
//! distribution point's `tsforge-dp.json`, and ed25519 signature checks with arbitrary keys and
//! signatures. No panic; a parsed manifest written again reads back the same; a package
//! manifest written as JSON parses back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsforge_runtime::content::manifest::{DpIndex, PackageManifest};
use tsforge_runtime::media;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    match mode % 6 {
        0 => {
            if let Ok(text) = std::str::from_utf8(body) {
                if let Ok(c) = media::MediaConfig::parse(text, "media.toml") {
                    let _ = media::MediaConfig::parse(&c.to_toml(), "again");
                }
            }
        }
        1 => {
            if let Ok(entries) = media::parse_manifest(body) {
                let again = media::parse_manifest(&media::format_manifest(&entries)).unwrap();
                let mut sorted = entries.clone();
                sorted.sort_by(|a, b| a.path.cmp(&b.path));
                assert_eq!(again, sorted, "manifest does not read back");
            }
        }
        2 => {
            let _ = media::parse_regions(body);
        }
        3 => {
            if let Ok(m) = PackageManifest::parse(body, "fuzz") {
                for f in &m.files {
                    for i in 0..f.block_count().min(64) {
                        let _ = f.block_len(i);
                        let _ = f.block_hash(i);
                    }
                }
                let _ = m.size();
                let _ = m.compute_hash();
                let back = PackageManifest::parse(&m.to_json(), "again")
                    .expect("a parsed package manifest written as JSON reads back");
                assert_eq!(back, m);
            }
        }
        4 => {
            if let Ok(mut ix) = DpIndex::parse(body, "fuzz") {
                let _ = ix.to_json();
                if let Some(e) = ix.packages.first().cloned() {
                    ix.upsert(e);
                }
            }
        }
        _ => {
            // key (hex text) NUL signature NUL message
            let mut parts = body.splitn(3, |&b| b == 0);
            let key = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let sig = parts.next().unwrap_or_default();
            let msg = parts.next().unwrap_or_default();
            let _ = media::signature_valid(&key, msg, sig);
            let _ = media::verify_signature(&key, msg, sig);
            let _ = media::public_key_arg(&key);
        }
    }
});
