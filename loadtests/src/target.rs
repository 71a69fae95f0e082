//! Parsing of the `--url` argument and the loopback-only safety rule.
//!
//! A load test must only ever target this machine, so [`Target::parse`] refuses
//! any URL whose host is not a loopback address: an IPv4 address in
//! `127.0.0.0/8`, `localhost` (and every address it resolves to must be
//! loopback), or `[::1]`. Only plain `http://` is supported.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context, Result};

/// Where the load goes: a resolved loopback socket address, the `Host` header to
/// send, and an optional path prefix (no trailing slash) put before every path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The address to connect to (always loopback).
    pub addr: SocketAddr,
    /// The value of the `Host` header, e.g. `127.0.0.1:8000` or `[::1]:8000`.
    pub host_header: String,
    /// A path prefix from the URL, e.g. `/api` for `http://127.0.0.1:8000/api`;
    /// empty when the URL has no path.
    pub base_path: String,
}

impl Target {
    /// Parses `http://HOST[:PORT][/PREFIX]` and checks that HOST is loopback.
    pub fn parse(url: &str) -> Result<Self> {
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                bail!("unsupported URL scheme `{scheme}` in `{url}`: only http:// is supported")
            }
            None => bail!("`{url}` is not a URL: expected http://HOST[:PORT]"),
        };
        if rest.contains(['?', '#']) {
            bail!("`{url}`: a query string or fragment is not allowed in --url");
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            bail!("`{url}`: user info in the URL is not supported");
        }
        let (host, port) =
            split_host_port(authority).with_context(|| format!("bad --url `{url}`"))?;
        let addr = resolve_loopback(host, port)?;
        let host_header = if port == 80 {
            authority_host(host)
        } else {
            format!("{}:{port}", authority_host(host))
        };
        Ok(Target {
            addr,
            host_header,
            base_path: path.trim_end_matches('/').to_string(),
        })
    }

    /// The request target for `path` (which starts with `/`), with the prefix.
    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.base_path)
    }
}

/// Brackets an IPv6 literal again for use in a `Host` header.
fn authority_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Splits `host[:port]` or `[v6][:port]`; the default port is 80.
fn split_host_port(authority: &str) -> Result<(&str, u16)> {
    if authority.is_empty() {
        bail!("missing host");
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').context("unterminated `[` in host")?;
        match after {
            "" => (host, None),
            p if p.starts_with(':') => (host, Some(&p[1..])),
            _ => bail!("unexpected text after `]`"),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                bail!("an IPv6 address must be written in brackets, e.g. http://[::1]:8000")
            }
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        bail!("missing host");
    }
    let port = match port {
        None => 80,
        Some(p) => p
            .parse::<u16>()
            .with_context(|| format!("bad port `{p}`"))?,
    };
    if port == 0 {
        bail!("port 0 is not a valid target");
    }
    Ok((host, port))
}

/// True for `127.0.0.0/8` and `::1` (and IPv4-mapped `::ffff:127.x.y.z`).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Resolves `host` and refuses it unless it is a loopback address.
///
/// Only IP literals and the name `localhost` are looked up; any other name is
/// refused without a DNS query, so a typo can never send load elsewhere.
fn resolve_loopback(host: &str, port: u16) -> Result<SocketAddr> {
    let refuse = || {
        anyhow::anyhow!(
            "refusing to target `{host}`: a load test may only target this machine \
             (127.0.0.0/8, localhost or [::1])"
        )
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        if !is_loopback(ip) {
            return Err(refuse());
        }
        return Ok(SocketAddr::new(ip, port));
    }
    if !host.eq_ignore_ascii_case("localhost") {
        return Err(refuse());
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve `{host}`"))?
        .collect();
    if addrs.is_empty() || !addrs.iter().all(|a| is_loopback(a.ip())) {
        return Err(refuse());
    }
    // Prefer IPv4: servers bound to 127.0.0.1 are the common case.
    Ok(addrs
        .iter()
        .find(|a| a.is_ipv4())
        .copied()
        .unwrap_or(addrs[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loopback_urls() {
        let t = Target::parse("http://127.0.0.1:8000").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(t.host_header, "127.0.0.1:8000");
        assert_eq!(t.path("/v1/health"), "/v1/health");

        let t = Target::parse("HTTP://127.1.2.3:9/api/").unwrap();
        assert_eq!(t.addr, "127.1.2.3:9".parse().unwrap());
        assert_eq!(t.path("/v1/health"), "/api/v1/health");

        let t = Target::parse("http://[::1]:8000/").unwrap();
        assert_eq!(t.addr, "[::1]:8000".parse().unwrap());
        assert_eq!(t.host_header, "[::1]:8000");

        let t = Target::parse("http://127.0.0.1").unwrap();
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.host_header, "127.0.0.1");

        let t = Target::parse("http://localhost:8000").unwrap();
        assert!(t.addr.ip().is_loopback());
        assert_eq!(t.host_header, "localhost:8000");
    }

    #[test]
    fn refuses_non_loopback_hosts() {
        for url in [
            "http://10.0.0.1:8000",
            "http://192.168.1.10:8000",
            "http://0.0.0.0:8000",
            "http://8.8.8.8",
            "http://[::]:8000",
            "http://[2001:db8::1]:8000",
            "http://example.com:8000",
            "http://localhost.example.com",
            "http://128.0.0.1:8000",
        ] {
            let err = Target::parse(url).unwrap_err().to_string();
            assert!(err.contains("only target this machine"), "{url}: {err}");
        }
    }

    #[test]
    fn rejects_malformed_urls() {
        for url in [
            "127.0.0.1:8000",
            "https://127.0.0.1:8000",
            "http://",
            "http://127.0.0.1:notaport",
            "http://127.0.0.1:0",
            "http://::1:8000",
            "http://127.0.0.1:8000/x?y=1",
            "http://user@127.0.0.1:8000",
        ] {
            assert!(Target::parse(url).is_err(), "{url} should be rejected");
        }
    }

    #[test]
    fn loopback_check() {
        assert!(is_loopback("127.0.0.1".parse().unwrap()));
        assert!(is_loopback("127.255.255.254".parse().unwrap()));
        assert!(is_loopback("::1".parse().unwrap()));
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!is_loopback("169.254.0.1".parse().unwrap()));
    }
}
