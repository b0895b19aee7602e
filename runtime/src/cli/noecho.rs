//! Echo off while a secret is typed (the media password).
//!
//! In the Linux boot environment `/init` feeds the runner's standard input from every console
//! through a FIFO (one `dd` per console): the runner's stdin is then not a terminal, and what an
//! operator types is echoed by each console's own line discipline (the serial line `ttyS0`, the
//! screen `tty0`). So echo is turned off on every active console (`/sys/class/tty/console/active`)
//! and on standard input when it is a terminal, and turned back on when the guard is dropped.
//! Outside a boot environment only standard input is touched (a test or an administrator's
//! shell must not change the host's consoles). Windows PE's console is not changed here.

use std::fs::File;

/// Echo is off on these terminals until the guard is dropped.
pub struct EchoOff {
    #[cfg(unix)]
    saved: Vec<(File, nix::sys::termios::Termios)>,
}

impl EchoOff {
    /// Echo off on the consoles the runner reads from (see the module documentation).
    pub fn consoles() -> EchoOff {
        #[cfg(not(unix))]
        let ttys = Vec::new();
        #[cfg(unix)]
        let ttys = {
            use std::os::fd::AsFd;
            let mut ttys = Vec::new();
            if let Ok(fd) = std::io::stdin().as_fd().try_clone_to_owned() {
                ttys.push(File::from(fd));
            }
            if crate::machine::in_boot_environment() {
                let active =
                    std::fs::read_to_string("/sys/class/tty/console/active").unwrap_or_default();
                for name in active.split_whitespace() {
                    use std::os::unix::fs::OpenOptionsExt;
                    // O_NONBLOCK: a serial line without carrier must not block the open.
                    if let Ok(f) = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .custom_flags(nix::libc::O_NOCTTY | nix::libc::O_NONBLOCK)
                        .open(format!("/dev/{name}"))
                    {
                        ttys.push(f);
                    }
                }
            }
            ttys
        };
        EchoOff::on(ttys)
    }

    /// Echo off on each of `ttys` that is a terminal (the others are left alone).
    pub fn on(ttys: Vec<File>) -> EchoOff {
        #[cfg(unix)]
        {
            use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
            let mut saved = Vec::new();
            for f in ttys {
                let Ok(t) = tcgetattr(&f) else { continue };
                let mut quiet = t.clone();
                quiet.local_flags.remove(LocalFlags::ECHO);
                // The Enter that ends the line is still shown, so the next output starts on a
                // line of its own.
                quiet.local_flags.insert(LocalFlags::ECHONL);
                if tcsetattr(&f, SetArg::TCSANOW, &quiet).is_ok() {
                    saved.push((f, t));
                }
            }
            EchoOff { saved }
        }
        #[cfg(not(unix))]
        {
            drop(ttys);
            EchoOff {}
        }
    }

    /// How many terminals have echo turned off.
    pub fn count(&self) -> usize {
        #[cfg(unix)]
        {
            self.saved.len()
        }
        #[cfg(not(unix))]
        {
            0
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        #[cfg(unix)]
        for (f, t) in &self.saved {
            let _ = nix::sys::termios::tcsetattr(f, nix::sys::termios::SetArg::TCSANOW, t);
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::EchoOff;
    use std::io::{Read, Write};

    /// What the terminal shows (the pty's master side) after `typed` is typed on it and a
    /// program read the line, with or without the guard.
    fn shown(typed: &str, guard: bool) -> String {
        let pty = nix::pty::openpty(None, None).unwrap();
        let mut master = std::fs::File::from(pty.master);
        let slave = std::fs::File::from(pty.slave);
        let g = guard.then(|| EchoOff::on(vec![slave.try_clone().unwrap()]));
        if guard {
            assert_eq!(g.as_ref().unwrap().count(), 1, "a pty is a terminal");
        }
        master.write_all(typed.as_bytes()).unwrap();
        let mut line = [0u8; 64];
        let n = (&slave).read(&mut line).unwrap();
        assert_eq!(&line[..n], typed.as_bytes(), "the program reads the line");
        drop(g);
        // Make sure the master has something to read in both cases, then read what is there.
        (&slave).write_all(b"<end>").unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&out).contains("<end>") {
            let n = master.read(&mut buf).unwrap();
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn a_password_typed_with_echo_off_is_not_shown_and_echo_comes_back() {
        assert!(
            shown("open sesame\n", false).contains("open sesame"),
            "control: a terminal echoes what is typed"
        );
        let with = shown("open sesame\n", true);
        assert!(!with.contains("open sesame"), "{with:?}");
        assert!(with.contains('\n'), "the Enter is still shown: {with:?}");
    }

    #[test]
    fn echo_is_restored_when_the_guard_is_dropped() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = std::fs::File::from(pty.slave);
        let before = nix::sys::termios::tcgetattr(&slave).unwrap().local_flags;
        drop(EchoOff::on(vec![slave.try_clone().unwrap()]));
        let after = nix::sys::termios::tcgetattr(&slave).unwrap().local_flags;
        assert_eq!(before, after);
    }

    #[test]
    fn a_file_that_is_not_a_terminal_is_left_alone() {
        let f = tempfile::tempfile().unwrap();
        assert_eq!(EchoOff::on(vec![f]).count(), 0);
    }
}
