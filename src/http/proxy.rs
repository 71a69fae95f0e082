//! Trusted proxies: which client address a request stands for.
//!
//! Behind a load balancer every connection comes from the balancer. With
//! `--trusted-proxies CIDR,...`, a request whose TCP peer lies in one of
//! those networks is taken to come from the address its `X-Forwarded-For`
//! names: the right-most entry that is not itself a trusted proxy (each
//! proxy appends the address it received the request from, so entries to
//! the left of the last untrusted hop are whatever the client claimed). A
//! request from any other peer, or without a usable header, is the TCP
//! peer, whatever it sends. The address found is used for the per-peer
//! session limit, the session list and the logs.

use std::net::{IpAddr, SocketAddr};

use super::RequestHead;

/// One network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parse `10.0.0.0/8`, `fd00::/8`, or a single address (a /32 or /128).
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an address or network like 10.0.0.0/8"))?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= bits)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {bits}"))?,
            None => bits,
        };
        Ok(Cidr { network, prefix })
    }

    /// Whether `address` lies in this network (an IPv4-mapped IPv6 address
    /// counts as its IPv4 address).
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

/// The networks whose `X-Forwarded-For` is believed; empty: nobody's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<Cidr>,
}

impl TrustedProxies {
    pub fn new(networks: Vec<Cidr>) -> Self {
        TrustedProxies { networks }
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.networks
            .iter()
            .any(|network| network.contains(address))
    }

    /// The client a request from `peer` stands for (port 0 when it comes
    /// from `X-Forwarded-For`, which carries no port).
    pub fn client(&self, peer: SocketAddr, head: &RequestHead) -> SocketAddr {
        if self.networks.is_empty() || !self.trusts(peer.ip()) {
            return peer;
        }
        // Every X-Forwarded-For line, in order, as one list; walk it from
        // the right past the trusted proxies.
        let hops: Vec<&str> = head
            .headers
            .iter()
            .filter(|(name, _)| name == "x-forwarded-for")
            .flat_map(|(_, value)| value.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.iter().rev() {
            let Ok(address) = hop.parse::<IpAddr>() else {
                // Not an address: nothing left of it can be trusted.
                return peer;
            };
            if !self.trusts(address) {
                return SocketAddr::new(address, 0);
            }
        }
        peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::parse_head;

    fn head(forwarded: &[&str]) -> RequestHead {
        let mut text = String::from("GET / HTTP/1.1\r\n");
        for value in forwarded {
            text.push_str(&format!("X-Forwarded-For: {value}\r\n"));
        }
        text.push_str("\r\n");
        parse_head(text.as_bytes(), 16 * 1024)
            .expect("valid")
            .expect("complete")
            .0
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|c| Cidr::parse(c).expect("cidr")).collect())
    }

    #[test]
    fn networks_parse_and_contain() {
        let net = Cidr::parse("10.1.0.0/16").expect("valid");
        assert!(net.contains("10.1.200.3".parse().expect("ip")));
        assert!(!net.contains("10.2.0.1".parse().expect("ip")));
        assert!(Cidr::parse("127.0.0.2")
            .expect("host")
            .contains("::ffff:127.0.0.2".parse().expect("ip")));
        assert!(Cidr::parse("0.0.0.0/0")
            .expect("all")
            .contains("8.8.8.8".parse().expect("ip")));
        assert!(Cidr::parse("fd00::/8")
            .expect("v6")
            .contains("fd12::1".parse().expect("ip")));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_last_untrusted_hop_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8", "127.0.0.2"]);
        let proxy: SocketAddr = "127.0.0.2:5000".parse().expect("addr");
        let stranger: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let client = |peer, forwarded: &[&str]| trusted.client(peer, &head(forwarded)).ip();
        let ip = |text: &str| text.parse::<IpAddr>().expect("ip");
        // The client's own claim (left) is ignored past the last untrusted hop.
        assert_eq!(
            client(proxy, &["6.6.6.6, 203.0.113.7, 10.0.0.5"]),
            ip("203.0.113.7")
        );
        // Several header lines read as one list.
        assert_eq!(
            client(proxy, &["6.6.6.6", "203.0.113.8"]),
            ip("203.0.113.8")
        );
        // Untrusted peers, missing or broken headers: the TCP peer.
        assert_eq!(client(stranger, &["203.0.113.7"]), ip("127.0.0.1"));
        assert_eq!(client(proxy, &[]), ip("127.0.0.2"));
        assert_eq!(client(proxy, &["garbage, 203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(client(proxy, &["203.0.113.7, garbage"]), ip("127.0.0.2"));
        // Only trusted hops: the TCP peer.
        assert_eq!(client(proxy, &["10.0.0.1"]), ip("127.0.0.2"));
        // Nobody trusted: the header is never read.
        assert_eq!(
            TrustedProxies::default()
                .client(proxy, &head(&["203.0.113.7"]))
                .ip(),
            ip("127.0.0.2")
        );
    }
}
