//! Small operating-system helpers (Linux): raising this process's open-file
//! limit, reading another process's resident set size from
//! `/proc/PID/status`, and a process's CPU time from `/proc/PID/stat`.

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

/// Extracts `utime + stime` (clock ticks) from the text of a
/// `/proc/PID/stat` file (fields 14 and 15; the command name, field 2, may
/// hold spaces and parentheses, so fields are counted after its last `)`).
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state): utime is field 14, i.e. index 11.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time (user + system, all threads) used so far by process `pid`, or by
/// this process with `None`, in seconds (clock-tick resolution).
pub fn cpu_seconds(pid: Option<u32>) -> Result<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let ticks = parse_stat_cpu_ticks(&text).with_context(|| format!("malformed {path}"))?;
    // SAFETY: `sysconf` only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Ok(ticks as f64 / hz)
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
    fn parses_cpu_ticks() {
        let stat = "1234 (a (b) c) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        assert_eq!(parse_stat_cpu_ticks("1 (x) S 1"), None);
        assert!(cpu_seconds(None).unwrap() >= 0.0);
        assert!(cpu_seconds(Some(std::process::id())).unwrap() >= 0.0);
    }

    #[test]
    fn reads_own_rss_and_raises_the_limit() {
        let rss = vm_rss_kb(std::process::id()).unwrap();
        assert!(rss > 0);
        let soft = raise_nofile_limit().unwrap();
        assert!(soft >= 16);
    }
}
