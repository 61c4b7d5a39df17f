//! The client's address: the peer's own, or the one a trusted reverse proxy forwarded.
//!
//! `Forwarded` and `X-Forwarded-For` are anyone's to write, so they are read only when the peer
//! is a proxy the operator named with `--trust-proxy`, and then from the right: the first
//! address that is not itself a trusted proxy is the client.

use std::net::IpAddr;
use std::str::FromStr;

use warp::http::HeaderMap;

/// A network in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{p:?} is not a prefix length of 0 to {max}"))?,
            None => max,
        };
        Ok(Cidr { net, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.prefix),
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// The client's address: `peer`, unless `peer` is a trusted proxy, in which case the
/// right-most forwarded address that is not a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return canonical(peer);
    }
    let mut chain = forwarded_for(headers);
    if chain.is_empty() {
        chain = x_forwarded_for(headers);
    }
    chain
        .into_iter()
        .rev()
        .find(|ip| !is_trusted(*ip))
        .map_or(canonical(peer), canonical)
}

/// The `for=` addresses of `Forwarded` (RFC 7239), in order; unparseable ones end the chain.
fn forwarded_for(headers: &HeaderMap) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for value in headers.get_all("forwarded") {
        let Ok(value) = value.to_str() else { return out };
        for element in value.split(',') {
            for pair in element.split(';') {
                let Some((k, v)) = pair.trim().split_once('=') else {
                    continue;
                };
                if !k.eq_ignore_ascii_case("for") {
                    continue;
                }
                let v = v.trim().trim_matches('"');
                // `[2001:db8::1]:4711`, `192.0.2.1:4711` or a bare address.
                let host = match v.strip_prefix('[') {
                    Some(rest) => rest.split(']').next().unwrap_or_default(),
                    None => v
                        .rsplit_once(':')
                        .filter(|_| v.matches(':').count() == 1)
                        .map_or(v, |(h, _)| h),
                };
                match host.parse() {
                    Ok(ip) => out.push(ip),
                    Err(_) => return out,
                }
            }
        }
    }
    out
}

fn x_forwarded_for(headers: &HeaderMap) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else { return out };
        for part in value.split(',') {
            match part.trim().parse() {
                Ok(ip) => out.push(ip),
                Err(_) => return out,
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let lan: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(lan.contains(ip("10.1.200.3")));
        assert!(!lan.contains(ip("10.2.0.1")));
        assert!(lan.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped");
        let odd: Cidr = "192.168.0.128/25".parse().unwrap();
        assert!(odd.contains(ip("192.168.0.200")) && !odd.contains(ip("192.168.0.100")));
        let one: Cidr = "::1".parse().unwrap();
        assert!(one.contains(ip("::1")) && !one.contains(ip("::2")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("proxy".parse::<Cidr>().is_err());
    }

    #[test]
    fn forwarded_addresses_count_only_from_a_trusted_proxy() {
        let trusted = ["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let h = headers(&[("x-forwarded-for", "203.0.113.9, 198.51.100.7, 10.0.0.2")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("198.51.100.7"));
        assert_eq!(
            client_ip(ip("192.0.2.50"), &h, &trusted),
            ip("192.0.2.50"),
            "untrusted peer"
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), &h, &[]),
            ip("127.0.0.1"),
            "no proxies trusted"
        );
        let f = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=https, for=\"[2001:db8::7]:4711\"",
        )]);
        assert_eq!(client_ip(ip("127.0.0.1"), &f, &trusted), ip("2001:db8::7"));
        let ported = headers(&[("forwarded", "for=192.0.2.61:1234")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &ported, &trusted), ip("192.0.2.61"));
        let none = headers(&[]);
        assert_eq!(client_ip(ip("127.0.0.1"), &none, &trusted), ip("127.0.0.1"));
    }
}
