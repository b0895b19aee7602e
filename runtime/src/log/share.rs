//! Copies of the run's logs on a log share, as MDT's `SLShare` does: at the end of the run and
//! when it fails, `smsts.log` and `events.jsonl` go to `<share>/<computer name>/` (MDT's layout:
//! one folder per computer), named `<_SMSTSClientGuid>-smsts.log` and
//! `<_SMSTSClientGuid>-events.jsonl` so the runs of two machines given the same name, or of
//! the same machine twice, do not overwrite each other's logs.
//!
//! The share is a folder path (a mounted network share, a disk), or an `http://` / `https://`
//! URL that receives each file with a PUT to `<url>/<computer name>/<guid>-<file>`. A copy
//! that fails is returned as a warning for the caller to log: a log share never fails a run.

use std::path::{Path, PathBuf};

/// The run's log files copied to a share, in the log folder.
pub const FILES: &[&str] = &["smsts.log", "events.jsonl"];

/// A name usable as one path component (a folder, a URL segment): characters outside
/// letters, digits, `-`, `_` and `.` become `_`; empty or dots only → `unknown`.
pub fn component(name: &str) -> String {
    let s: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.chars().all(|c| c == '.') {
        "unknown".into()
    } else {
        s
    }
}

fn is_url(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

/// Copies the files of `log_dir` listed in [`FILES`] that exist to `share`. Each item of the
/// result is one file: `Ok(where it went)` or `Err(why it did not)`.
pub fn copy_logs(
    log_dir: &Path,
    share: &str,
    computer: &str,
    guid: &str,
) -> Vec<Result<String, String>> {
    let share = share.trim();
    let computer = component(computer);
    let guid = component(guid);
    let mut out = Vec::new();
    for f in FILES {
        let src = log_dir.join(f);
        let Ok(bytes) = std::fs::read(&src) else {
            continue;
        };
        let name = format!("{guid}-{f}");
        out.push(if is_url(share) {
            put(share, &computer, &name, &bytes)
        } else {
            to_folder(Path::new(share), &computer, &name, &bytes)
        });
    }
    out
}

fn to_folder(share: &Path, computer: &str, name: &str, bytes: &[u8]) -> Result<String, String> {
    if share.as_os_str().is_empty() {
        return Err("the log share is empty".into());
    }
    if !share.is_dir() {
        return Err(format!(
            "log share {} is not a folder (a network share must be mounted first)",
            share.display()
        ));
    }
    let dir: PathBuf = share.join(computer);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let dest = dir.join(name);
    // Written beside, then renamed: a reader of the share never sees half a log.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &dest).map_err(|e| format!("writing {}: {e}", dest.display()))?;
    Ok(dest.display().to_string())
}

fn put(base: &str, computer: &str, name: &str, bytes: &[u8]) -> Result<String, String> {
    let url = format!("{}/{computer}/{name}", base.trim_end_matches('/'));
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .new_agent();
    match agent
        .put(&url)
        .header("Content-Type", "text/plain")
        .send(bytes)
    {
        Ok(_) => Ok(url),
        Err(e) => Err(format!("PUT {url}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_one_safe_path_component() {
        assert_eq!(component("PC-01"), "PC-01");
        assert_eq!(component("../etc"), ".._etc");
        assert_eq!(component(".."), "unknown");
        assert_eq!(component(""), "unknown");
        assert_eq!(component("a b/c\\d"), "a_b_c_d");
    }

    /// MDT's SLShare: the logs are copied to `SLShare\<computer name>` at the end.
    /// https://learn.microsoft.com/en-us/mem/configmgr/mdt/toolkit-reference#slshare
    #[test]
    fn a_folder_share_gets_the_logs_under_the_computer_name_named_by_the_guid() {
        let d = tempfile::tempdir().unwrap();
        let logs = d.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        std::fs::write(logs.join("smsts.log"), "the log").unwrap();
        std::fs::write(logs.join("events.jsonl"), "{}\n").unwrap();
        let share = d.path().join("share");
        std::fs::create_dir(&share).unwrap();
        let r = copy_logs(&logs, share.to_str().unwrap(), "PC1", "GUID-1");
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(r.iter().all(|x| x.is_ok()), "{r:?}");
        assert_eq!(
            std::fs::read_to_string(share.join("PC1/GUID-1-smsts.log")).unwrap(),
            "the log"
        );
        assert_eq!(
            std::fs::read_to_string(share.join("PC1/GUID-1-events.jsonl")).unwrap(),
            "{}\n"
        );
        // Copied again at the end: replaced, no temporary file left.
        std::fs::write(logs.join("smsts.log"), "the longer log").unwrap();
        copy_logs(&logs, share.to_str().unwrap(), "PC1", "GUID-1");
        assert_eq!(
            std::fs::read_to_string(share.join("PC1/GUID-1-smsts.log")).unwrap(),
            "the longer log"
        );
        assert_eq!(std::fs::read_dir(share.join("PC1")).unwrap().count(), 2);
    }

    #[test]
    fn a_missing_share_is_a_warning_naming_it() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("smsts.log"), "x").unwrap();
        let missing = d.path().join("nope");
        let r = copy_logs(d.path(), missing.to_str().unwrap(), "PC1", "G");
        assert_eq!(r.len(), 1);
        let e = r[0].as_ref().unwrap_err();
        assert!(e.contains("nope") && e.contains("not a folder"), "{e}");
    }

    type Received = std::thread::JoinHandle<Vec<(String, Vec<u8>)>>;

    /// A loopback HTTP server that answers each request with `status` and records the
    /// request line and body of each.
    fn receiver(status: u16, n: usize) -> (String, Received) {
        use std::io::{BufRead, BufReader, Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/logs", l.local_addr().unwrap());
        let t = std::thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..n {
                let (s, _) = l.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut first = String::new();
                r.read_line(&mut first).unwrap();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0u8; len];
                r.read_exact(&mut body).unwrap();
                got.push((first.trim().to_string(), body));
                let mut s = s;
                write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
            }
            got
        });
        (url, t)
    }

    #[test]
    fn an_http_share_receives_each_log_with_a_put() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("smsts.log"), "the log").unwrap();
        std::fs::write(d.path().join("events.jsonl"), "{}\n").unwrap();
        let (url, t) = receiver(201, 2);
        let r = copy_logs(d.path(), &url, "PC 1", "GUID-1");
        assert!(r.iter().all(|x| x.is_ok()), "{r:?}");
        let got = t.join().unwrap();
        assert_eq!(got[0].0, "PUT /logs/PC_1/GUID-1-smsts.log HTTP/1.1");
        assert_eq!(got[0].1, b"the log");
        assert_eq!(got[1].0, "PUT /logs/PC_1/GUID-1-events.jsonl HTTP/1.1");
    }

    #[test]
    fn an_http_share_refusing_the_log_is_a_warning() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("smsts.log"), "the log").unwrap();
        let (url, t) = receiver(403, 1);
        let r = copy_logs(d.path(), &url, "PC1", "G");
        t.join().unwrap();
        let e = r[0].as_ref().unwrap_err();
        assert!(e.contains("PUT ") && e.contains("403"), "{e}");
    }

    #[test]
    fn an_unreachable_url_is_a_warning_naming_it() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("smsts.log"), "x").unwrap();
        // Port 9 on localhost: nothing listens (connection refused).
        let r = copy_logs(d.path(), "http://127.0.0.1:9/logs", "PC1", "G");
        let e = r[0].as_ref().unwrap_err();
        assert!(
            e.contains("PUT http://127.0.0.1:9/logs/PC1/G-smsts.log"),
            "{e}"
        );
    }
}
