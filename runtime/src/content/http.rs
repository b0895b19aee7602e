//! HTTP(S) reads from a static server (nginx, a CDN, `python3 -m http.server`), on `ureq`
//! (blocking, rustls, no async runtime in the runner). Ranged requests let a read resume where
//! it stopped; transient failures are retried with doubling delays; a read that receives
//! nothing for the stall timeout counts as a failure, and so does a transfer that trickles
//! (less than the minimum rate, averaged over the stall timeout).

use std::io::{self, Read};
use std::time::Duration;

/// Retry and timeout settings; from the ConfigMgr variables `SMSTSDownloadRetryCount`
/// (default 3) and `SMSTSDownloadRetryDelay` (seconds before the first retry, doubled for each
/// next one, at most 60; default 2), and tsforge's `TSForgeDownloadStallTimeout` (seconds a
/// read may receive nothing; default 60), `TSForgeDownloadMinRate` (bytes per second a
/// transfer must average over each stall timeout's worth of waiting for data, else it is
/// treated as stalled; default 1024, 0 turns the check off) and `TSForgeTrustedCA` (a PEM file
/// of the CA certificates to trust for HTTPS instead of Mozilla's roots: an organization's
/// own PKI).
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub retries: u32,
    pub retry_delay: Duration,
    pub stall_timeout: Duration,
    /// Bytes per second; 0: no minimum.
    pub min_rate: u64,
    pub connect_timeout: Duration,
    pub trusted_ca: Option<std::path::PathBuf>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            retries: 3,
            retry_delay: Duration::from_secs(2),
            stall_timeout: Duration::from_secs(60),
            min_rate: 1024,
            connect_timeout: Duration::from_secs(30),
            trusted_ca: None,
        }
    }
}

impl HttpOptions {
    /// Defaults overridden by the variables named in the type's documentation.
    pub fn from_vars(vars: &crate::vars::Vars) -> Self {
        let mut o = HttpOptions::default();
        let num = |name: &str| {
            vars.get(name)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        if let Some(n) = num("SMSTSDownloadRetryCount") {
            o.retries = n.min(100.0) as u32;
        }
        if let Some(s) = num("SMSTSDownloadRetryDelay") {
            o.retry_delay = Duration::from_secs_f64(s.min(3600.0));
        }
        if let Some(s) = num("TSForgeDownloadStallTimeout") {
            o.stall_timeout = Duration::from_secs_f64(s.clamp(0.1, 3600.0));
        }
        if let Some(r) = num("TSForgeDownloadMinRate") {
            o.min_rate = r.min(1e12) as u64;
        }
        o.trusted_ca = vars
            .get("TSForgeTrustedCA")
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from);
        o
    }

    /// Bytes a connection must deliver within one window (the stall timeout) to count as
    /// progress.
    fn window_bytes(&self) -> u64 {
        (self.min_rate as f64 * self.stall_timeout.as_secs_f64()) as u64
    }

    fn delay(&self, attempt: u32) -> Duration {
        let d = self.retry_delay.saturating_mul(1u32 << attempt.min(16));
        d.min(Duration::from_secs(60).max(self.retry_delay))
    }
}

/// A client for one run.
#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
    pub opts: HttpOptions,
}

/// Why a request failed for good.
#[derive(Debug)]
pub enum HttpError {
    /// The server answered 404 or 410: the file is not there (try the next location).
    NotFound { url: String, status: u16 },
    /// Anything else, after the retries.
    Failed { url: String, message: String },
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::NotFound { url, status } => {
                write!(f, "GET {url}: HTTP {status} (not found)")
            }
            HttpError::Failed { url, message } => write!(f, "GET {url}: {message}"),
        }
    }
}

impl std::error::Error for HttpError {}

enum Attempt {
    Retry(String),
    Fatal(HttpError),
}

/// The certificates of a PEM file, for [`HttpOptions::trusted_ca`].
fn load_ca(path: &std::path::Path) -> anyhow::Result<Vec<ureq::tls::Certificate<'static>>> {
    use anyhow::Context;
    let pem = std::fs::read(path)
        .with_context(|| format!("TSForgeTrustedCA: reading {}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let ureq::tls::PemItem::Certificate(c) =
            item.with_context(|| format!("TSForgeTrustedCA: {} is not PEM", path.display()))?
        {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        anyhow::bail!(
            "TSForgeTrustedCA: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(certs)
}

impl Http {
    /// A client; fails only when `opts.trusted_ca` cannot be read.
    pub fn new(opts: HttpOptions) -> anyhow::Result<Self> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(ca) = &opts.trusted_ca {
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&load_ca(ca)?));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .timeout_connect(Some(opts.connect_timeout))
            .timeout_per_read(Some(opts.stall_timeout))
            .timeout_recv_response(Some(opts.stall_timeout))
            .user_agent(concat!("tsforge/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Http { agent, opts })
    }

    /// One GET of `url` from byte `start` (a `Range` request when `start > 0`), retried on
    /// connection failures and 5xx/429 answers. Returns the body positioned at `start`.
    fn open(&self, url: &str, start: u64) -> Result<Box<dyn Read + Send>, HttpError> {
        let mut attempt = 0;
        loop {
            match self.try_open(url, start) {
                Ok(r) => return Ok(r),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(msg)) => {
                    if attempt >= self.opts.retries {
                        return Err(HttpError::Failed {
                            url: url.to_string(),
                            message: format!(
                                "{msg} (gave up after {} attempt{})",
                                attempt + 1,
                                if attempt == 0 { "" } else { "s" }
                            ),
                        });
                    }
                    std::thread::sleep(self.opts.delay(attempt));
                    attempt += 1;
                }
            }
        }
    }

    fn try_open(&self, url: &str, start: u64) -> Result<Box<dyn Read + Send>, Attempt> {
        let mut req = self.agent.get(url).header("Accept-Encoding", "identity");
        if start > 0 {
            req = req.header("Range", format!("bytes={start}-"));
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::BadUri(m)) => {
                return Err(Attempt::Fatal(HttpError::Failed {
                    url: url.into(),
                    message: format!("bad URL: {m}"),
                }))
            }
            Err(e) => return Err(Attempt::Retry(e.to_string())),
        };
        let status = resp.status().as_u16();
        let reason = resp.status().canonical_reason().unwrap_or("");
        match status {
            200 | 206 => {}
            404 | 410 => {
                return Err(Attempt::Fatal(HttpError::NotFound {
                    url: url.into(),
                    status,
                }))
            }
            408 | 429 | 500..=599 => return Err(Attempt::Retry(format!("HTTP {status} {reason}"))),
            _ => {
                return Err(Attempt::Fatal(HttpError::Failed {
                    url: url.into(),
                    message: format!("HTTP {status} {reason}"),
                }))
            }
        }
        let mut body: Box<dyn Read + Send> = Box::new(Paced::new(
            resp.into_body().into_reader(),
            self.opts.stall_timeout,
            self.opts.min_rate,
        ));
        if start > 0 && status == 200 {
            // The server ignored the Range header: skip to `start`.
            let skipped = io::copy(&mut (&mut body).take(start), &mut io::sink())
                .map_err(|e| Attempt::Retry(e.to_string()))?;
            if skipped < start {
                return Err(Attempt::Retry(format!(
                    "the server sent {skipped} bytes, fewer than the {start} already read"
                )));
            }
        }
        Ok(body)
    }

    /// The whole body of a small file (manifests, indexes); `Ok(None)` when the server says
    /// 404/410.
    pub fn get_small(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>, HttpError> {
        let mut attempt = 0;
        loop {
            let r = match self.open(url, 0) {
                Ok(r) => r,
                Err(HttpError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut v = Vec::new();
            match r.take(limit + 1).read_to_end(&mut v) {
                Ok(_) if v.len() as u64 > limit => {
                    return Err(HttpError::Failed {
                        url: url.into(),
                        message: format!("larger than {limit} bytes"),
                    })
                }
                Ok(_) => return Ok(Some(v)),
                Err(e) if attempt < self.opts.retries => {
                    let _ = e;
                    std::thread::sleep(self.opts.delay(attempt));
                    attempt += 1;
                }
                Err(e) => {
                    return Err(HttpError::Failed {
                        url: url.into(),
                        message: format!("{e} (gave up after {} attempts)", attempt + 1),
                    })
                }
            }
        }
    }

    /// A reader of `url` from byte `start` to `end` (the file's size, from its manifest) that
    /// reconnects with a `Range` request when the connection drops or stalls.
    pub fn range_reader(&self, url: &str, start: u64, end: u64) -> RangeReader {
        RangeReader {
            http: self.clone(),
            url: url.to_string(),
            pos: start,
            end,
            body: None,
            failures: 0,
            since_open: 0,
            resumed: 0,
        }
    }
}

/// The error of a transfer slower than the minimum rate.
#[derive(Debug)]
pub struct TooSlow {
    pub bytes: u64,
    pub secs: f64,
    pub min_rate: u64,
}

impl std::fmt::Display for TooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes in {:.1} s, less than {} bytes/s (too slow: stalled)",
            self.bytes, self.secs, self.min_rate
        )
    }
}

impl std::error::Error for TooSlow {}

/// A response body that must deliver at least `min_rate` bytes a second, averaged over each
/// `window` of time spent waiting in its reads. Only time in `read` counts, so a caller that
/// pauses between reads (a slow disk behind a streamed apply) is not blamed on the server.
/// A slower body fails with [`TooSlow`] (`ErrorKind::TimedOut`), which the callers treat as a
/// stall: retried, and resumed from where it stopped.
struct Paced<R> {
    inner: R,
    window: Duration,
    min_rate: u64,
    waited: Duration,
    bytes: u64,
}

impl<R> Paced<R> {
    fn new(inner: R, window: Duration, min_rate: u64) -> Self {
        Paced {
            inner,
            window,
            min_rate,
            waited: Duration::ZERO,
            bytes: 0,
        }
    }
}

impl<R: Read> Read for Paced<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let started = std::time::Instant::now();
        let n = self.inner.read(buf)?;
        self.waited += started.elapsed();
        self.bytes += n as u64;
        if n > 0 && self.min_rate > 0 && self.waited >= self.window {
            let secs = self.waited.as_secs_f64();
            if (self.bytes as f64) < self.min_rate as f64 * secs {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    TooSlow {
                        bytes: self.bytes,
                        secs,
                        min_rate: self.min_rate,
                    },
                ));
            }
            self.waited = Duration::ZERO;
            self.bytes = 0;
        }
        Ok(n)
    }
}

/// See [`Http::range_reader`]. Reading past `end` yields EOF; a server that ends the body
/// early is asked again from where it stopped.
pub struct RangeReader {
    http: Http,
    url: String,
    pos: u64,
    end: u64,
    body: Option<Box<dyn Read + Send>>,
    /// Consecutive failures without progress.
    failures: u32,
    /// Bytes read since the last (re)connection: once they reach a window's minimum
    /// ([`HttpOptions::window_bytes`]), the connection counts as progress and `failures` is
    /// reset; a server that trickles a few bytes on each new connection still runs out of
    /// retries.
    since_open: u64,
    /// Times the read was resumed after a dropped connection.
    pub resumed: u32,
}

impl RangeReader {
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn fail(&mut self, msg: String) -> io::Result<()> {
        self.body = None;
        if self.failures >= self.http.opts.retries {
            return Err(io::Error::other(HttpError::Failed {
                url: self.url.clone(),
                message: format!(
                    "{msg} at byte {} of {} (gave up after {} attempts)",
                    self.pos,
                    self.end,
                    self.failures + 1
                ),
            }));
        }
        std::thread::sleep(self.http.opts.delay(self.failures));
        self.failures += 1;
        self.resumed += 1;
        Ok(())
    }
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.end || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min((self.end - self.pos).min(usize::MAX as u64) as usize);
        loop {
            if self.body.is_none() {
                match self.http.open(&self.url, self.pos) {
                    Ok(b) => {
                        self.body = Some(b);
                        self.since_open = 0;
                    }
                    Err(e) => return Err(io::Error::other(e)),
                }
            }
            let body = self.body.as_mut().expect("opened above");
            match body.read(&mut buf[..want]) {
                Ok(0) => {
                    let msg = "the server closed the connection early".to_string();
                    self.fail(msg)?;
                }
                Ok(n) => {
                    self.pos += n as u64;
                    self.since_open += n as u64;
                    if self.since_open >= self.http.opts.window_bytes() {
                        self.failures = 0;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let msg =
                        if let Some(slow) = e.get_ref().and_then(|i| i.downcast_ref::<TooSlow>()) {
                            slow.to_string()
                        } else if e.kind() == io::ErrorKind::TimedOut
                            || e.to_string().to_ascii_lowercase().contains("timeout")
                        {
                            format!(
                                "no data for {} s (stalled)",
                                self.http.opts.stall_timeout.as_secs_f64()
                            )
                        } else {
                            e.to_string()
                        };
                    self.fail(msg)?;
                }
            }
        }
    }
}

/// `http://` or `https://` (ASCII case ignored).
pub fn is_url(s: &str) -> bool {
    let l = s.trim_start().to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

/// `base` + `/` + path components percent-encoded where a URL needs it.
pub fn join_url(base: &str, rel: &str) -> String {
    let mut u = base.trim_end_matches('/').to_string();
    for part in rel.split('/') {
        u.push('/');
        for b in part.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=@".contains(&b) {
                u.push(b as char);
            } else {
                u.push_str(&format!("%{b:02X}"));
            }
        }
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(is_url("HTTP://x/"));
        assert!(is_url("https://dp.example/pkgs"));
        assert!(!is_url("/srv/dp"));
        assert_eq!(
            join_url("http://h/dp/", "TSF1/files/a b/ü.txt"),
            "http://h/dp/TSF1/files/a%20b/%C3%BC.txt"
        );
    }

    /// A reader that takes `delay` for each read and returns one byte.
    struct Trickle {
        delay: Duration,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            std::thread::sleep(self.delay);
            buf[0] = b'x';
            Ok(1)
        }
    }

    #[test]
    fn a_trickle_is_too_slow_but_a_pausing_caller_is_not() {
        let window = Duration::from_millis(100);
        let mut p = Paced::new(
            Trickle {
                delay: Duration::from_millis(10),
            },
            window,
            1000,
        );
        let mut buf = [0u8; 16];
        let started = std::time::Instant::now();
        let err = loop {
            match p.read(&mut buf) {
                Ok(n) => assert!(n > 0 && started.elapsed() < Duration::from_secs(2)),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let slow = err.get_ref().unwrap().downcast_ref::<TooSlow>().unwrap();
        assert!(slow.bytes < 20 && slow.min_rate == 1000, "{slow}");
        assert!(err.to_string().contains("too slow"), "{err}");
        // The same bytes, fast, but the caller waits between reads: only time in read counts.
        let mut p = Paced::new(
            Trickle {
                delay: Duration::ZERO,
            },
            window,
            1000,
        );
        for _ in 0..5 {
            assert!(p.read(&mut buf).unwrap() > 0);
            std::thread::sleep(Duration::from_millis(40));
        }
        // No minimum: never too slow.
        let mut p = Paced::new(
            Trickle {
                delay: Duration::from_millis(30),
            },
            Duration::from_millis(50),
            0,
        );
        for _ in 0..5 {
            assert!(p.read(&mut buf).unwrap() > 0);
        }
    }

    #[test]
    fn min_rate_comes_from_a_variable() {
        let mut vars = crate::vars::Vars::default();
        assert_eq!(HttpOptions::from_vars(&vars).min_rate, 1024);
        vars.set("TSForgeDownloadMinRate", "0");
        assert_eq!(HttpOptions::from_vars(&vars).min_rate, 0);
        vars.set("TSForgeDownloadMinRate", "65536");
        vars.set("TSForgeDownloadStallTimeout", "2");
        let o = HttpOptions::from_vars(&vars);
        assert_eq!(o.window_bytes(), 131_072);
    }

    #[test]
    fn delays_double_and_are_capped() {
        let o = HttpOptions {
            retry_delay: Duration::from_secs(2),
            ..Default::default()
        };
        assert_eq!(o.delay(0), Duration::from_secs(2));
        assert_eq!(o.delay(2), Duration::from_secs(8));
        assert_eq!(o.delay(10), Duration::from_secs(60));
    }
}
