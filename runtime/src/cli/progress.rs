//! The progress line of long commands (`capture`, `apply`, `package build`) on stderr.

/// Progress on stderr: one line redrawn at most ten times a second on a terminal, a plain
/// line every ten seconds otherwise.
pub struct ProgressLine {
    what: &'static str,
    /// When the command started: its progress rate and the time it reports at the end.
    pub start: std::time::Instant,
    last: Option<std::time::Instant>,
    tty: bool,
    drawn: bool,
}

impl ProgressLine {
    pub fn new(what: &'static str) -> ProgressLine {
        use std::io::IsTerminal;
        ProgressLine {
            what,
            start: std::time::Instant::now(),
            last: None,
            tty: std::io::stderr().is_terminal(),
            drawn: false,
        }
    }
    pub fn update(&mut self, p: &crate::image::Progress) {
        let now = std::time::Instant::now();
        let every = std::time::Duration::from_millis(if self.tty { 100 } else { 10_000 });
        if self.last.is_some_and(|l| now - l < every) {
            return;
        }
        self.last = Some(now);
        let line = self.line(p);
        if self.tty {
            eprint!("\r{line}\x1b[K");
            self.drawn = true;
        } else {
            eprintln!("{line}");
        }
    }
    fn line(&self, p: &crate::image::Progress) -> String {
        let secs = self.start.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            p.bytes_done as f64 / secs
        } else {
            0.0
        };
        let left = if rate > 0.0 {
            format!(
                ", {:.0} s left",
                p.bytes_total.saturating_sub(p.bytes_done) as f64 / rate
            )
        } else {
            String::new()
        };
        let files = if p.files_total > 0 {
            format!(", {} / {} files", p.files_done, p.files_total)
        } else {
            String::new()
        };
        format!(
            "{}: {} / {} MiB{files}, {:.1} MiB/s{left}",
            self.what,
            p.bytes_done >> 20,
            p.bytes_total >> 20,
            rate / f64::from(1u32 << 20)
        )
    }
    pub fn done(&mut self) {
        if self.drawn {
            eprintln!();
        }
    }
}
