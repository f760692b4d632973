//! The headers of a forwarded request: connection-specific ones removed, and what the app learns about the client —
//! its address, the scheme and the host — set by the gateway, not taken from the client unless the client is a
//! trusted proxy.

use std::net::IpAddr;

use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, not the message; they are not forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// A network of addresses, `ADDRESS/PREFIX` (or one address): peers trusted to say who the client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// `10.0.0.0/8`, `fd00::/8`, or a single address.
    pub fn parse(text: &str) -> Result<IpRange, String> {
        let (address, prefix) = text.split_once('/').unwrap_or((text, ""));
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("`{address}` is not an IP address"))?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            "" => bits,
            prefix => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("`/{prefix}` is not a prefix length (0–{bits})"))?,
        };
        Ok(IpRange { network, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        // A peer on an IPv6 socket may be an IPv4 client in mapped form.
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        let (network, address, bits) = match (self.network, address) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                (u128::from(n.to_bits()), u128::from(a.to_bits()), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => (n.to_bits(), a.to_bits(), 128),
            _ => return false,
        };
        let host_bits = bits - u32::from(self.prefix);
        network.checked_shr(host_bits).unwrap_or(0) == address.checked_shr(host_bits).unwrap_or(0)
    }
}

/// What the gateway tells an app about the client connection a request came in on; made once per connection.
pub(crate) struct Origin {
    /// `http` or `https`.
    pub(crate) scheme: &'static str,
    /// The peer's address as `X-Forwarded-For` names it.
    forwarded_for: HeaderValue,
    /// The peer is a trusted proxy: what it says about its own client is kept.
    pub(crate) trusted: bool,
    /// The port the connection came in on, which the app is told in `Host` (the client's own port is not trusted).
    port: Option<u16>,
}

impl Origin {
    pub(crate) fn new(peer: IpAddr, scheme: &'static str, trusted_proxies: &[IpRange]) -> Origin {
        Origin {
            scheme,
            // An address is always a valid header value; the fallback is never used.
            forwarded_for: HeaderValue::from_maybe_shared(Bytes::from(peer.to_string()))
                .unwrap_or(HeaderValue::from_static("unknown")),
            trusted: trusted_proxies.iter().any(|range| range.contains(peer)),
            port: None,
        }
    }

    /// The connection came in on `port` (when known).
    pub(crate) fn on_port(mut self, port: Option<u16>) -> Origin {
        self.port = port;
        self
    }

    /// The scheme the client used: the connection's, or — from a trusted proxy that terminates TLS itself — the
    /// one its `X-Forwarded-Proto` names.
    pub(crate) fn client_scheme(&self, headers: &HeaderMap) -> &'static str {
        if self.trusted
            && let Some(proto) = headers.get(X_FORWARDED_PROTO)
        {
            // Proxies in a chain list theirs after the client's: the first is what the client used.
            let first = proto
                .as_bytes()
                .split(|b| *b == b',')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            if first.eq_ignore_ascii_case(b"https") {
                return "https";
            }
            if first.eq_ignore_ascii_case(b"http") {
                return "http";
            }
        }
        self.scheme
    }

    /// The `Host` an app is told: the route's host name (normalised), with the port the client named only when it
    /// is the one the connection came in on or the scheme's default — a client reaching the gateway through a
    /// port forward names none, or the public one — and never another of its choosing. From a trusted proxy, its
    /// own host (normalised).
    pub(crate) fn host_for_app(&self, host: &HeaderValue) -> HeaderValue {
        let canonical = canonical_host(host);
        if self.trusted {
            return canonical;
        }
        let (name, port) = split_port(canonical.as_bytes());
        let Some(port) = port else {
            return canonical;
        };
        let default: &[u8] = if self.scheme == "https" {
            b"443"
        } else {
            b"80"
        };
        let listening = self.port.map(|p| p.to_string());
        if port == default || listening.as_deref().map(str::as_bytes) == Some(port) {
            return canonical;
        }
        HeaderValue::from_maybe_shared(Bytes::copy_from_slice(name)).unwrap_or(canonical)
    }
}

/// Whether a request asks for a WebSocket, the one upgrade the gateway tunnels; any other `Upgrade` is dropped
/// with the other connection-specific headers and the request forwarded as an ordinary one.
pub(crate) fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let has_token = |name: HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    headers.contains_key(header::UPGRADE)
        && has_token(header::UPGRADE, "websocket")
        && has_token(header::CONNECTION, "upgrade")
}

/// Makes a request's headers the ones the app gets: without connection-specific headers (a WebSocket upgrade keeps
/// its `Connection` and `Upgrade`), with `host` as `Host` and `X-Forwarded-Host`, and with the client's address
/// and scheme — replacing what the client claimed, unless it is a trusted proxy.
pub(crate) fn forward_request_headers(
    headers: &mut HeaderMap,
    websocket: bool,
    origin: &Origin,
    host: HeaderValue,
) {
    // Room for the headers added below at once (the three forwarding headers, and `Host`, which HTTP/2 requests
    // come without): a map sized to the request's own headers would otherwise grow, and hash its entries again, as
    // each comes.
    headers.reserve(4);
    if origin.trusted {
        strip_hop_by_hop(headers, websocket, false);
        let forwarded_for = match headers.get(X_FORWARDED_FOR).map(|v| v.as_bytes()) {
            Some(earlier) => {
                let mut joined = Vec::with_capacity(earlier.len() + 2 + origin.forwarded_for.len());
                joined.extend_from_slice(earlier);
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(origin.forwarded_for.as_bytes());
                HeaderValue::from_maybe_shared(Bytes::from(joined)).ok()
            }
            None => Some(origin.forwarded_for.clone()),
        };
        if let Some(value) = forwarded_for {
            headers.insert(X_FORWARDED_FOR, value);
        }
        if !headers.contains_key(X_FORWARDED_PROTO) {
            headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(origin.scheme));
        }
        if !headers.contains_key(X_FORWARDED_HOST) {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
    } else {
        strip_hop_by_hop(headers, websocket, true);
        headers.insert(X_FORWARDED_FOR, origin.forwarded_for.clone());
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(origin.scheme));
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
    headers.insert(header::HOST, host);
    join_cookies(headers);
}

/// HTTP/2 may send a request's cookies in several `cookie` fields; an HTTP/1.1 app gets them in one header, joined
/// with `; ` as HTTP/2 says.
fn join_cookies(headers: &mut HeaderMap) {
    let mut cookies = headers.get_all(header::COOKIE).iter();
    if cookies.next().is_none() || cookies.next().is_none() {
        return;
    }
    let joined: Vec<u8> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(joined)) {
        headers.insert(header::COOKIE, value);
    }
}

/// Removes an answer's connection-specific headers before it goes to the client.
pub(crate) fn forward_answer_headers(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers, false, false);
}

/// Removes connection-specific headers (and those the Connection header names); a WebSocket upgrade keeps its two.
/// With `untrusted`, also what a client may claim about its own address (`Forwarded`, `X-Real-IP`).
fn strip_hop_by_hop(headers: &mut HeaderMap, websocket: bool, untrusted: bool) {
    let removable = |name: &HeaderName| {
        HOP_BY_HOP.contains(name) || (untrusted && (name == header::FORWARDED || name == X_REAL_IP))
    };
    // Most messages carry none: a look at each name is cheaper than a removal for each.
    if !headers.keys().any(removable) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(&HOP_BY_HOP) {
        if !(websocket && (name == header::CONNECTION || name == header::UPGRADE)) {
            headers.remove(name);
        }
    }
    if untrusted {
        headers.remove(header::FORWARDED);
        headers.remove(X_REAL_IP);
    }
}

/// The host an app is told: `host` (a Host header or an HTTP/2 authority) in lower case without a trailing dot,
/// with its port when it named one; the client's own value when it already is that (most requests).
pub(crate) fn canonical_host(host: &HeaderValue) -> HeaderValue {
    let bytes = host.as_bytes();
    let (name, port) = split_port(bytes);
    let canonical = !name.ends_with(b".") && !name.iter().any(u8::is_ascii_uppercase);
    if canonical {
        return host.clone();
    }
    let mut normal = name.strip_suffix(b".").unwrap_or(name).to_ascii_lowercase();
    if let Some(port) = port {
        normal.push(b':');
        normal.extend_from_slice(port);
    }
    HeaderValue::from_maybe_shared(Bytes::from(normal)).unwrap_or_else(|_| host.clone())
}

/// `name:port` → (`name`, `port`) when the part after the last colon is a port (digits) and that colon is not
/// inside a bare IPv6 address.
fn split_port(host: &[u8]) -> (&[u8], Option<&[u8]>) {
    if let Some(colon) = host.iter().rposition(|b| *b == b':') {
        let (name, port) = (&host[..colon], &host[colon + 1..]);
        if !port.is_empty()
            && port.iter().all(u8::is_ascii_digit)
            && (name.ends_with(b"]") || !name.contains(&b':'))
        {
            return (name, Some(port));
        }
    }
    (host, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_canonical(host: &str, expected: &str) {
        assert_eq!(
            canonical_host(&HeaderValue::from_str(host).expect("value")),
            expected,
            "{host}"
        );
    }

    #[test]
    fn apps_are_told_the_host_in_one_spelling() {
        check_canonical("web.shop.localhost", "web.shop.localhost");
        check_canonical("Web-PR-1.Shop.LOCALHOST.", "web-pr-1.shop.localhost");
        check_canonical("WEB.shop.localhost:8443", "web.shop.localhost:8443");
        check_canonical("web.shop.localhost.:80", "web.shop.localhost:80");
        check_canonical("[::1]:443", "[::1]:443");
    }

    #[test]
    fn trusted_ranges_contain_their_addresses_only() {
        let range = |text: &str| IpRange::parse(text).expect(text);
        let ip = |text: &str| text.parse::<IpAddr>().expect(text);
        assert!(range("10.0.0.0/8").contains(ip("10.200.3.4")));
        assert!(!range("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(range("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!range("192.0.2.7").contains(ip("192.0.2.8")));
        assert!(range("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(range("127.0.0.1").contains(ip("::ffff:127.0.0.1")));
        assert!(range("fd00::/8").contains(ip("fd12::1")));
        assert!(!range("fd00::/8").contains(ip("10.0.0.1")));
        assert_eq!(
            IpRange::parse("10.0.0.0/33"),
            Err("`/33` is not a prefix length (0–32)".to_owned())
        );
        assert_eq!(
            IpRange::parse("proxy"),
            Err("`proxy` is not an IP address".to_owned())
        );
    }

    #[test]
    fn only_websocket_upgrades_are_tunnelled() {
        let headers = |upgrade: &str, connection: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::UPGRADE,
                HeaderValue::from_str(upgrade).expect("value"),
            );
            headers.insert(
                header::CONNECTION,
                HeaderValue::from_str(connection).expect("value"),
            );
            headers
        };
        assert!(is_websocket_upgrade(&headers("websocket", "Upgrade")));
        assert!(is_websocket_upgrade(&headers(
            "WebSocket",
            "keep-alive, upgrade"
        )));
        assert!(!is_websocket_upgrade(&headers("h2c", "Upgrade")));
        assert!(!is_websocket_upgrade(&headers("websocket", "keep-alive")));
    }

    #[test]
    fn untrusted_clients_cannot_name_their_own_address() {
        let origin = Origin::new(ip("127.0.0.1"), "https", &[]);
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "elsewhere.example"),
            ("forwarded", "for=203.0.113.9"),
            ("x-real-ip", "203.0.113.9"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        forward_request_headers(
            &mut headers,
            false,
            &origin,
            HeaderValue::from_static("web.shop.localhost"),
        );
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "web.shop.localhost");
        assert_eq!(headers["host"], "web.shop.localhost");
        assert!(!headers.contains_key("forwarded") && !headers.contains_key("x-real-ip"));

        let proxy = Origin::new(
            ip("127.0.0.1"),
            "http",
            &[IpRange::parse("127.0.0.0/8").expect("range")],
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        headers.insert("x-real-ip", HeaderValue::from_static("203.0.113.9"));
        forward_request_headers(
            &mut headers,
            false,
            &proxy,
            HeaderValue::from_static("web.shop.localhost"),
        );
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-real-ip"], "203.0.113.9");
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }
}
