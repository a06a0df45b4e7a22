//! Who is on the other end of a request. Behind a reverse proxy the TCP
//! peer is the proxy, so the client's address comes from `X-Forwarded-For` —
//! but only when the peer is a proxy we trust (`DARKROOM_TRUSTED_PROXIES`);
//! anyone else could write any address there. The resolved [`Client`] is
//! put in the request's extensions by [`resolve_client`] and serves the
//! sign-in limiter, `/metrics` access, the cross-site check and the logs.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(entry: &str) -> Result<Self, String> {
        let bad = || format!("`{entry}` is not an IP address or CIDR (like 10.0.0.0/8 or fd00::/8)");
        let (addr, prefix) = match entry.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (entry, None),
        };
        let addr = canonical(addr.trim().parse::<IpAddr>().map_err(|_| bad())?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
        };
        Ok(Self { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net).into(), self.prefix, 32) == masked(u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), self.prefix, 128) == masked(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// `bits` of width `width` with everything after the first `prefix` zeroed.
fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
    if prefix == 0 { 0 } else { bits & (u128::MAX << (width - prefix)) & (u128::MAX >> (128 - width)) }
}

/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The proxies whose forwarding headers are believed (default: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Comma- or space-separated IPs and CIDRs; blank means none.
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split([',', ' '])
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(Cidr::parse)
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The client behind `peer`: when `peer` is trusted, the right-most
    /// `X-Forwarded-For` address that is not itself trusted (each trusted
    /// proxy appends the address it saw, so everything left of the first
    /// untrusted hop could have been written by the client). Otherwise, or
    /// when the header says nothing usable, the peer itself.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        // Several headers read as one list, in order.
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else { break };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }

    /// Whether the request reached the proxy over https, as a trusted proxy
    /// says in `X-Forwarded-Proto`.
    fn forwarded_https(&self, peer: IpAddr, headers: &HeaderMap) -> bool {
        // The nearest proxy's word: the right-most value, like the address.
        self.contains(canonical(peer))
            && headers
                .get_all("x-forwarded-proto")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .next_back()
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
    }
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`
/// or `[2001:db8::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    hop.parse::<SocketAddr>().ok().map(|s| canonical(s.ip()))
}

/// The client of a request, as far as we can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    /// The scheme the client used: `https` only when a trusted proxy says so
    /// (Darkroom itself serves plain http).
    pub https: bool,
    /// Whether the address can be believed as the client's: the request
    /// came straight from its peer (no forwarding headers), or through a
    /// trusted proxy. A local proxy we were not told to trust makes every
    /// visitor look like loopback: such a request is not vouched for.
    pub vouched: bool,
}

impl Client {
    /// What rate limits count by: the address, or for IPv6 its /64 (one
    /// subscriber usually holds a whole /64).
    pub fn limit_key(&self) -> IpAddr {
        match self.ip {
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(masked(u128::from(v6), 64, 128))),
            v4 => v4,
        }
    }

    /// A loopback client we can believe is one (see `vouched`).
    pub fn is_loopback(&self) -> bool {
        self.vouched && self.ip.is_loopback()
    }

    /// For requests that did not come through [`resolve_client`] (tests
    /// without connection info): an address no limit or check trusts.
    pub fn unknown() -> Self {
        Self { ip: IpAddr::V6(Ipv6Addr::UNSPECIFIED), https: false, vouched: false }
    }
}

/// Whether the untrusted-proxy warning was logged (once per process).
static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Middleware: resolves the [`Client`] of every request into its extensions.
pub async fn resolve_client(
    axum::extract::State(proxies): axum::extract::State<std::sync::Arc<TrustedProxies>>,
    mut request: Request,
    next: Next,
) -> Response {
    let client = match request.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) => {
            let headers = request.headers();
            let forwarded = headers.contains_key("x-forwarded-for") || headers.contains_key("forwarded");
            let trusted = proxies.contains(peer.ip());
            if forwarded && !trusted && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    peer = %peer.ip(),
                    "a request came through a proxy that is not in DARKROOM_TRUSTED_PROXIES: its clients share \
                     the proxy's address (one sign-in limit for all); add the proxy to DARKROOM_TRUSTED_PROXIES"
                );
            }
            Client {
                ip: proxies.client_ip(peer.ip(), headers),
                https: proxies.forwarded_https(peer.ip(), headers),
                vouched: !forwarded || trusted,
            }
        }
        None => Client::unknown(),
    };
    request.extensions_mut().insert(client);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn entries_parse_as_addresses_and_networks() {
        let t = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8 fd00::/8").unwrap();
        assert!(t.contains(ip("127.0.0.1")));
        assert!(!t.contains(ip("127.0.0.2")));
        assert!(t.contains(ip("10.200.3.4")));
        assert!(!t.contains(ip("11.0.0.1")));
        assert!(t.contains(ip("fd12::1")));
        assert!(!t.contains(ip("fe80::1")));
        assert!(t.contains(ip("::ffff:10.1.1.1")), "IPv4-mapped IPv6 is the IPv4 address");
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert!(TrustedProxies::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "::/129", "caddy", "10.0.0.1/x", "10.0.0"] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let none = TrustedProxies::default();
        assert_eq!(none.client_ip(ip("203.0.113.9"), &xff(&["198.51.100.1"])), ip("203.0.113.9"));
        let some = TrustedProxies::parse("10.0.0.1").unwrap();
        assert_eq!(some.client_ip(ip("203.0.113.9"), &xff(&["198.51.100.1"])), ip("203.0.113.9"));
    }

    #[test]
    fn behind_trusted_proxies_the_client_is_the_right_most_untrusted_hop() {
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        // One proxy.
        assert_eq!(t.client_ip(ip("10.0.0.1"), &xff(&["198.51.100.1"])), ip("198.51.100.1"));
        // The client wrote a fake address first; the proxy appended the real one.
        assert_eq!(t.client_ip(ip("10.0.0.1"), &xff(&["1.2.3.4, 198.51.100.1"])), ip("198.51.100.1"));
        // Two proxies in a chain, the header split over two lines.
        assert_eq!(t.client_ip(ip("10.0.0.1"), &xff(&["1.2.3.4, 198.51.100.1", "10.0.0.2"])), ip("198.51.100.1"));
        // Ports and brackets as some proxies write them.
        assert_eq!(t.client_ip(ip("10.0.0.1"), &xff(&["[2001:db8::7]:443"])), ip("2001:db8::7"));
        assert_eq!(t.client_ip(ip("10.0.0.1"), &xff(&["198.51.100.1:5000"])), ip("198.51.100.1"));
        // No header, or garbage where the client should be: the nearest
        // trusted hop, never a made-up address.
        assert_eq!(t.client_ip(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
        assert_eq!(t.client_ip(ip("10.0.0.1"), &xff(&["1.2.3.4, nonsense, 10.0.0.2"])), ip("10.0.0.2"));
        // Everything trusted: the left-most.
        assert_eq!(t.client_ip(ip("10.0.0.1"), &xff(&["10.9.9.9, 10.0.0.2"])), ip("10.9.9.9"));
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        let a = Client { ip: ip("2001:db8:1:2:aaaa::1"), https: false, vouched: true };
        let b = Client { ip: ip("2001:db8:1:2:ffff::9"), https: false, vouched: true };
        let c = Client { ip: ip("2001:db8:1:3::1"), https: false, vouched: true };
        assert_eq!(a.limit_key(), b.limit_key());
        assert_ne!(a.limit_key(), c.limit_key());
        assert_eq!(a.limit_key(), ip("2001:db8:1:2::"));
        let v4 = Client { ip: ip("198.51.100.1"), https: false, vouched: true };
        assert_eq!(v4.limit_key(), ip("198.51.100.1"));
    }

    #[test]
    fn only_a_trusted_proxy_can_say_https() {
        let t = TrustedProxies::parse("10.0.0.1").unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(t.forwarded_https(ip("10.0.0.1"), &h));
        assert!(!t.forwarded_https(ip("10.0.0.2"), &h));
        assert!(!t.forwarded_https(ip("10.0.0.1"), &HeaderMap::new()));
        // The nearest proxy's value counts, not what the client wrote first.
        let mut chain = HeaderMap::new();
        chain.insert("x-forwarded-proto", HeaderValue::from_static("https, http"));
        assert!(!t.forwarded_https(ip("10.0.0.1"), &chain));
    }
}
