//! Who the client is behind a reverse proxy: `daehwa serve --trusted-proxy ADDR_OR_CIDR`.
//!
//! The TCP peer is the client unless it is a trusted proxy; only then is `X-Forwarded-For`
//! read, from the right (the proxy nearest to us appends last), skipping hops that are trusted
//! proxies themselves: the first untrusted address is the client. A client can put anything
//! in the header it sends, so without a trusted peer the header means nothing (else any
//! client could pick the address the sign-in limit counts it under). The same rule decides
//! whether the CSRF guard believes `X-Forwarded-Host`.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// Parses one `--trusted-proxy` value: an address (`10.0.0.5`, `::1`) or a range
/// (`10.0.0.0/8`, `fd00::/8`).
pub fn parse_proxy(s: &str) -> Result<IpNet, String> {
    let t = s.trim();
    t.parse::<IpNet>()
        .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{s}` is not an IP address or CIDR range (examples: 10.0.0.5, 10.0.0.0/8, ::1)"))
}

fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies(nets)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// Whether the peer is a trusted proxy (so its forwarding headers count).
    pub fn trusts(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|p| self.contains(p))
    }

    /// The client's address: the peer, or the address a trusted peer forwarded for.
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer.map(canonical);
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip())) else {
                // A hop nobody trusted wrote: what the last trusted hop saw is the client.
                break;
            };
            let ip = canonical(ip);
            client = Some(ip);
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 203.0.113.7, 10.0.0.2"));
        let none = TrustedProxies::default();
        assert_eq!(none.client(ip("127.0.0.1"), &h), ip("127.0.0.1"), "no trusted proxy: the header is ignored");
        let p = TrustedProxies::new(vec![parse_proxy("127.0.0.1").expect("addr"), parse_proxy("10.0.0.0/8").expect("cidr")]);
        assert_eq!(p.client(ip("127.0.0.1"), &h), ip("203.0.113.7"), "the first untrusted hop from the right");
        assert_eq!(p.client(ip("192.0.2.1"), &h), ip("192.0.2.1"), "an untrusted peer's header is ignored");
        assert_eq!(p.client(ip("::ffff:127.0.0.1"), &h), ip("203.0.113.7"), "IPv4-mapped peers");
        assert_eq!(p.client(ip("127.0.0.1"), &HeaderMap::new()), ip("127.0.0.1"));
        h.insert("x-forwarded-for", HeaderValue::from_static("junk, 10.0.0.3"));
        assert_eq!(p.client(ip("127.0.0.1"), &h), ip("10.0.0.3"));
        assert!(parse_proxy("10.0.0.0/33").is_err() && parse_proxy("proxy.local").is_err());
        assert!(parse_proxy(" fd00::/8 ").is_ok());
    }
}
