//! `descriptors`: Envoy's rate-limit actions run on an `http::Request`, each
//! [`RateLimitActions`] giving at most one request [`Descriptor`].

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::ConnectInfo;
use config::{Action, HeaderMatcher, MatchRule, RateLimitActions, VirtualHostMatch, VirtualHosts};

use crate::local::verdict::Descriptor;

/// The descriptors `request` yields. A [`RateLimitActions`] whose action yields nothing (an
/// absent header without `skip_if_absent`, a header match that fails, no client address) or
/// whose actions were all skipped gives no descriptor, as in Envoy.
pub(crate) fn descriptors<'r, B>(
    all: &'r [RateLimitActions],
    request: &'r http::Request<B>,
) -> Vec<Descriptor<'r>> {
    let mut selected = Selected::default();
    all.iter()
        .filter_map(|item| descriptor(item, request, &mut selected))
        .collect()
}

/// The virtual host a request selects, found once per request: the host test of every
/// rule of every RateLimit resource reads the same table of hosts.
#[derive(Default)]
struct Selected {
    /// The table, the header read, and the host selected (outer `None`: no such header).
    memo: Option<(*const VirtualHosts, String, Option<Option<usize>>)>,
}

impl Selected {
    fn of<B>(
        &mut self,
        request: &http::Request<B>,
        name: &str,
        hosts: &VirtualHostMatch,
    ) -> Option<Option<usize>> {
        let table = Arc::as_ptr(&hosts.all);
        match &self.memo {
            Some((t, n, chosen)) if *t == table && n == name => *chosen,
            _ => {
                let chosen = header(request, name).map(|value| hosts.all.select(&value));
                self.memo = Some((table, name.to_owned(), chosen));
                chosen
            }
        }
    }
}

fn descriptor<'r, B>(
    item: &'r RateLimitActions,
    request: &'r http::Request<B>,
    selected: &mut Selected,
) -> Option<Descriptor<'r>> {
    let mut entries = Vec::with_capacity(item.actions.len());
    for action in &item.actions {
        match action {
            Action::RequestHeaders {
                header_name,
                descriptor_key,
                skip_if_absent,
            } => match header(request, header_name) {
                Some(value) => entries.push((Cow::Borrowed(descriptor_key.as_str()), value)),
                None if *skip_if_absent => {}
                None => return None,
            },
            Action::RemoteAddress {
                xff_num_trusted_hops,
            } => {
                let address = client_address(request, *xff_num_trusted_hops)?;
                entries.push((
                    Cow::Borrowed("remote_address"),
                    Cow::Owned(address.to_string()),
                ));
            }
            Action::MaskedRemoteAddress {
                v4_prefix_mask_len,
                v6_prefix_mask_len,
            } => {
                let address = client_address(request, 0)?;
                entries.push((
                    Cow::Borrowed("masked_remote_address"),
                    Cow::Owned(Action::masked_remote_address(
                        address,
                        *v4_prefix_mask_len,
                        *v6_prefix_mask_len,
                    )),
                ));
            }
            Action::GenericKey {
                descriptor_key,
                descriptor_value,
            } => entries.push((
                Cow::Borrowed(descriptor_key.as_str()),
                Cow::Borrowed(descriptor_value.as_str()),
            )),
            Action::HeaderValueMatch {
                descriptor_key,
                descriptor_value,
                expect_match,
                headers,
            } => {
                if headers.iter().all(|m| matches(request, m, selected)) != *expect_match {
                    return None;
                }
                entries.push((
                    Cow::Borrowed(descriptor_key.as_str()),
                    Cow::Borrowed(descriptor_value.as_str()),
                ));
            }
            // `Action` may grow; an action this version cannot run yields nothing.
            _ => return None,
        }
    }
    (!entries.is_empty()).then_some(Descriptor {
        entries,
        hits_addend: item.hits_addend,
    })
}

/// A header's first value, or a pseudo-header from the request line. Values that are not
/// UTF-8 count as absent.
fn header<'r, B>(request: &'r http::Request<B>, name: &str) -> Option<Cow<'r, str>> {
    let uri = request.uri();
    let value = match name {
        // As Envoy's `:path`, with the query.
        ":path" => uri.path_and_query().map_or("/", |pq| pq.as_str()),
        ":method" => request.method().as_str(),
        ":authority" => match uri.authority() {
            Some(authority) => authority.as_str(),
            None => utf8(request.headers().get(http::header::HOST)?)?,
        },
        ":scheme" => uri.scheme_str()?,
        _ => utf8(request.headers().get(name)?)?,
    };
    Some(Cow::Borrowed(value))
}

fn utf8(value: &http::HeaderValue) -> Option<&str> {
    std::str::from_utf8(value.as_bytes()).ok()
}

/// Envoy's header test: a header sent on several lines passes when one of its lines
/// does; an absent header fails every test but `present`, even inverted, unless it is
/// tested as empty.
fn matches<B>(
    request: &http::Request<B>,
    matcher: &HeaderMatcher,
    selected: &mut Selected,
) -> bool {
    if let MatchRule::VirtualHost(hosts) = &matcher.rule {
        return match selected.of(request, &matcher.name, hosts) {
            None => false,
            Some(chosen) => chosen.is_some_and(|c| hosts.own.contains(&c)) != matcher.invert_match,
        };
    }
    let passes = |value: &str| match &matcher.rule {
        MatchRule::Exact(s) => value == s,
        MatchRule::Prefix(s) => value.starts_with(s.as_str()),
        MatchRule::Suffix(s) => value.ends_with(s.as_str()),
        MatchRule::Contains(s) => value.contains(s.as_str()),
        MatchRule::Regex(regex) => regex.is_match(value),
        // Answered above, once per request.
        MatchRule::VirtualHost(hosts) => hosts.is_match(value),
        MatchRule::Present(present) => *present,
    };
    let Some(first) = header(request, &matcher.name) else {
        return match &matcher.rule {
            // Absent passes `present: false`, then the inversion: `!present != invert`.
            MatchRule::Present(present) => *present == matcher.invert_match,
            _ if matcher.treat_missing_as_empty => passes("") != matcher.invert_match,
            _ => false,
        };
    };
    let matched = passes(&first)
        || (!matcher.name.starts_with(':')
            && (request.headers().get_all(matcher.name.as_str()).iter())
                .skip(1)
                .filter_map(utf8)
                .any(passes));
    matched != matcher.invert_match
}

/// The client's address: with `trusted_hops` = N > 0, the N-th address from the right of
/// `x-forwarded-for` (all its header lines, in order), since each of the N trusted proxies
/// appended the address it was connected from; otherwise, or when that entry is missing or
/// not an address, the connection's peer.
fn client_address<B>(request: &http::Request<B>, trusted_hops: u32) -> Option<IpAddr> {
    if trusted_hops > 0 {
        let mut hops = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .filter_map(utf8)
            .flat_map(|line| line.rsplit(','))
            .map(str::trim);
        if let Some(address) = hops
            .nth(trusted_hops as usize - 1)
            .and_then(|hop| hop.parse::<IpAddr>().ok())
        {
            return Some(address.to_canonical());
        }
    }
    peer_address(request.extensions()).map(|ip| ip.to_canonical())
}

/// The peer of the connection: axum's `ConnectInfo<SocketAddr>` (served with
/// `into_make_service_with_connect_info::<SocketAddr>()`), or a plain `SocketAddr` extension
/// (tonic users copy `TcpConnectInfo::remote_addr` into one).
fn peer_address(extensions: &http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
        .or_else(|| extensions.get::<SocketAddr>().map(SocketAddr::ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> http::Request<()> {
        let mut builder = http::Request::get("http://example.com/items?page=2");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn pseudo_headers_read_the_request_line() {
        let req = request(&[]);
        assert_eq!(header(&req, ":path").as_deref(), Some("/items?page=2"));
        assert_eq!(header(&req, ":method").as_deref(), Some("GET"));
        assert_eq!(header(&req, ":authority").as_deref(), Some("example.com"));
        assert_eq!(header(&req, ":scheme").as_deref(), Some("http"));
    }

    #[test]
    fn the_client_is_the_nth_forwarded_address_from_the_right() {
        let mut req = request(&[
            ("x-forwarded-for", "198.51.100.1, 203.0.113.9"),
            ("x-forwarded-for", "192.0.2.7"),
        ]);
        req.extensions_mut()
            .insert(SocketAddr::from(([10, 0, 0, 1], 5000)));
        let ip = |hops| client_address(&req, hops).map(|ip| ip.to_string());
        assert_eq!(ip(0).as_deref(), Some("10.0.0.1"));
        assert_eq!(ip(1).as_deref(), Some("192.0.2.7"));
        assert_eq!(ip(2).as_deref(), Some("203.0.113.9"));
        assert_eq!(ip(3).as_deref(), Some("198.51.100.1"));
        // Fewer entries than trusted hops: the peer.
        assert_eq!(ip(4).as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn axum_connect_info_gives_the_peer() {
        let mut req = request(&[]);
        assert_eq!(client_address(&req, 0), None);
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 9], 1))));
        assert_eq!(client_address(&req, 0), Some(IpAddr::from([127, 0, 0, 9])));
    }
}
