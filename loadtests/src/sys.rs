//! Small operating-system helpers (Linux): raising this process's open-file
//! limit, and reading another process's resident set size from
//! `/proc/PID/status`.

use anyhow::{Context, Result};

/// Raises the soft `RLIMIT_NOFILE` of this process to its hard limit and
/// returns the new soft limit. Opening thousands of sockets needs it.
pub fn raise_nofile_limit() -> Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` through a pointer to a valid,
    // properly aligned local that lives for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `setrlimit` only reads the `rlimit` behind a pointer to a
        // valid local; raising the soft limit up to the hard one is allowed
        // for an unprivileged process and affects only this process.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("setrlimit(RLIMIT_NOFILE)");
        }
        lim = raised;
    }
    // `rlim_t` is `u64` on 64-bit Linux but not on every target.
    #[allow(clippy::unnecessary_cast)]
    Ok(lim.rlim_cur as u64)
}

/// Extracts `VmRSS` (kB) from the text of a `/proc/PID/status` file.
pub fn parse_vm_rss_kb(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value),
        Some(_) => None,
    }
}

/// Reads the resident set size of process `pid` in kB.
pub fn vm_rss_kb(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_vm_rss_kb(&text).with_context(|| format!("no VmRSS line in {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_rss() {
        let status =
            "Name:\ttranscription-se\nVmPeak:\t  123456 kB\nVmRSS:\t   20480 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss_kb(status), Some(20480));
        assert_eq!(parse_vm_rss_kb("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss_kb("VmRSS:\t  12 MB\n"), None);
    }

    #[test]
    fn reads_own_rss_and_raises_the_limit() {
        let rss = vm_rss_kb(std::process::id()).unwrap();
        assert!(rss > 0);
        let soft = raise_nofile_limit().unwrap();
        assert!(soft >= 16);
    }
}
