//! A small static HTTP/1.1 file server for the content tests: serves a folder on loopback
//! with `Range` support, like nginx, and can misbehave on purpose (drop a connection after N
//! bytes, stall, throttle, trickle) so the runner's resume and retry paths meet a real socket.
//! Every request is recorded (path, range start, bytes sent).

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub start: u64,
    pub sent: u64,
}

/// Misbehaviours, each applied to the next request whose path ends with the given suffix.
#[derive(Debug, Default)]
pub struct Faults {
    /// Close the connection after sending this many body bytes (once per entry).
    pub drop_after: Vec<(String, u64)>,
    /// Send this many body bytes, then send nothing more for `stall_for` (once per entry).
    pub stall_after: Vec<(String, u64)>,
    pub stall_for: Duration,
    /// Bytes per second for every response body (None: as fast as possible).
    pub rate: Option<u64>,
    /// Send this many body bytes, then one byte every `trickle_every` (once per entry), for
    /// at most 60 s, after which the connection is closed (so a runner that never gives up
    /// fails its test instead of hanging it).
    pub trickle_after: Vec<(String, u64)>,
    pub trickle_every: Duration,
}

#[derive(Default)]
struct Shared {
    log: Vec<Request>,
    faults: Faults,
}

pub struct Server {
    pub url: String,
    shared: Arc<Mutex<Shared>>,
}

impl Server {
    /// Serves `root` on 127.0.0.1 (a free port) until the test process ends.
    pub fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Mutex::new(Shared::default()));
        let root = root.to_path_buf();
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let root = root.clone();
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &root, &s);
                });
            }
        });
        Server { url, shared }
    }

    pub fn faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.shared.lock().unwrap().faults)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().unwrap().log.clone()
    }

    /// Requests from number `from` on (see [`Server::requests`]`.len()`).
    pub fn requests_since(&self, from: usize) -> Vec<Request> {
        self.requests().into_iter().skip(from).collect()
    }

    /// Body bytes sent for paths ending with `suffix`.
    pub fn sent(&self, suffix: &str) -> u64 {
        self.requests()
            .iter()
            .filter(|r| r.path.ends_with(suffix))
            .map(|r| r.sent)
            .sum()
    }
}

fn decode(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&p[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve(conn: TcpStream, root: &Path, shared: &Mutex<Shared>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = decode(parts.next().unwrap_or("/"));
    let mut start = 0u64;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("range") {
                let v = v.trim();
                if let Some(r) = v.strip_prefix("bytes=") {
                    start = r.split('-').next().unwrap_or("0").parse().unwrap_or(0);
                }
            }
        }
    }
    let mut out = conn;
    let rel: PathBuf = path
        .trim_start_matches('/')
        .split('/')
        .filter(|c| !c.is_empty() && *c != "..")
        .collect();
    let file = root.join(rel);
    let Ok(mut f) = std::fs::File::open(&file).and_then(|f| {
        if f.metadata()?.is_file() {
            Ok(f)
        } else {
            Err(std::io::ErrorKind::NotFound.into())
        }
    }) else {
        out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    };
    let size = f.metadata()?.len();
    let (drop_at, stall_at, stall_for, rate, trickle) = {
        let mut s = shared.lock().unwrap();
        let take = |v: &mut Vec<(String, u64)>| {
            v.iter()
                .position(|(suffix, _)| path.ends_with(suffix.as_str()))
                .map(|i| v.remove(i).1)
        };
        let d = take(&mut s.faults.drop_after);
        let st = take(&mut s.faults.stall_after);
        let tr = take(&mut s.faults.trickle_after).map(|t| (t, s.faults.trickle_every));
        (d, st, s.faults.stall_for, s.faults.rate, tr)
    };
    let header = if start > 0 && start < size {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{size}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
            size - start,
            size - 1
        )
    } else {
        start = 0;
        format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n")
    };
    let idx = {
        let mut s = shared.lock().unwrap();
        s.log.push(Request {
            path: path.clone(),
            start,
            sent: 0,
        });
        s.log.len() - 1
    };
    out.write_all(header.as_bytes())?;
    if method == "HEAD" {
        return Ok(());
    }
    f.seek(SeekFrom::Start(start))?;
    let mut sent = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    let began = std::time::Instant::now();
    loop {
        let mut want = buf.len() as u64;
        if let Some(d) = drop_at {
            want = want.min(d.saturating_sub(sent));
            if want == 0 {
                return Ok(()); // drop the connection
            }
        }
        if let Some(st) = stall_at {
            if sent >= st {
                std::thread::sleep(stall_for);
                return Ok(());
            }
            want = want.min(st - sent);
        }
        if let Some((after, every)) = trickle {
            if sent >= after {
                if began.elapsed() > Duration::from_secs(60) {
                    return Ok(());
                }
                std::thread::sleep(every);
                want = 1;
            } else {
                want = want.min(after - sent);
            }
        }
        let n = f.read(&mut buf[..want as usize])?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])?;
        sent += n as u64;
        if let Some(r) = shared.lock().unwrap().log.get_mut(idx) {
            r.sent = sent;
        }
        if let Some(r) = rate {
            let due = Duration::from_secs_f64(sent as f64 / r as f64);
            let el = began.elapsed();
            if due > el {
                std::thread::sleep(due - el);
            }
        }
    }
}
