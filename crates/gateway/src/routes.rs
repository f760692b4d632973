//! The route table and its atomic swap.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use crate::activity::{Activity, LastRequest};

/// Where requests for a route go: an address, in the gateway's own network or in another one (an
/// environment's network namespace, whose loopback only sockets made inside it reach).
#[derive(Debug, Clone)]
pub struct Backend {
    pub address: SocketAddr,
    pub network: Option<Arc<dyn Network>>,
}

impl PartialEq for Backend {
    fn eq(&self, other: &Backend) -> bool {
        self.address == other.address
            && self.network.as_ref().map(|n| n.name()) == other.network.as_ref().map(|n| n.name())
    }
}

impl Eq for Backend {}

/// A network other than the gateway's own, in which sockets are made on its behalf.
pub trait Network: Send + Sync + std::fmt::Debug {
    /// Unique among the networks of a table, without a `.`.
    fn name(&self) -> &str;
    /// A new IPv4 TCP socket inside the network, to connect from.
    fn socket(&self) -> std::io::Result<tokio::net::TcpSocket>;
}

/// What the environment behind a route is doing, for the pages the gateway shows when it cannot forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteState {
    Serving,
    /// Stopped (being deleted, or its app is not running): answered with 503.
    Stopped,
    /// Put to sleep because nobody used it: a request asks the proxy's waker to wake it and waits for it.
    Sleeping,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub project: String,
    pub environment: String,
    pub service: String,
    pub state: RouteState,
    pub backends: Vec<Backend>,
    /// Protection of a preview: requests without the credential get 401.
    pub access: Option<crate::access::Access>,
    /// When a request last reached the route's environment: [`Routes::swap`] gives every route of one environment
    /// the same cell, kept from table to table, whatever the table was built with.
    pub last_request: Arc<LastRequest>,
    /// The route's metrics: [`Routes::swap`] gives each route of a table its own handle on them.
    pub series: Option<Arc<preview_metrics::RouteSeries>>,
}

/// What a route's series are kept by: its project, environment and service.
fn triple(route: &Route) -> (String, String, String) {
    (
        route.project.clone(),
        route.environment.clone(),
        route.service.clone(),
    )
}

/// Hostnames to routes. Built whole, then swapped in; never changed in place.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    exact: HashMap<String, Arc<Route>>,
    /// `*.shop.localhost` is stored under `shop.localhost`.
    wildcard: HashMap<String, Arc<Route>>,
    /// The networks the routes' backends live in, by name.
    networks: HashMap<String, Arc<dyn Network>>,
}

/// `Shop.LOCALHOST.:8443` → `shop.localhost`: what a Host header or SNI name is compared as.
pub fn normalize_host(host: &str) -> String {
    // A port is digits after the last colon, unless that colon is inside a bare IPv6 address.
    let without_port = match host.rsplit_once(':') {
        Some((name, port))
            if !port.is_empty()
                && port.chars().all(|c| c.is_ascii_digit())
                && (name.ends_with(']') || !name.contains(':')) =>
        {
            name
        }
        _ => host,
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `normalize_host` would return `host` unchanged.
fn is_normal(host: &str) -> bool {
    !host.ends_with('.') && !host.bytes().any(|b| b == b':' || b.is_ascii_uppercase())
}

/// 1 to 63 lower-case letters, digits and hyphens, neither first nor last a hyphen.
fn is_dns_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

impl RouteTable {
    /// Adds `route` under `hostname` (`*.x.y` for a wildcard). A later route for the same name replaces it.
    pub fn insert(&mut self, hostname: &str, route: Route) {
        for network in route.backends.iter().filter_map(|b| b.network.as_ref()) {
            self.networks
                .insert(network.name().to_owned(), Arc::clone(network));
        }
        let route = Arc::new(route);
        let hostname = normalize_host(hostname);
        match hostname.strip_prefix("*.") {
            Some(parent) => self.wildcard.insert(parent.to_owned(), route),
            None => self.exact.insert(hostname, route),
        };
    }

    /// The route for a Host: an exact name first, else a wildcard one label above it.
    pub fn lookup(&self, host: &str) -> Option<Arc<Route>> {
        // Most requests name the host exactly as it is stored: look that up without making a copy.
        let normalized;
        let host = if is_normal(host) {
            host
        } else {
            normalized = normalize_host(host);
            &normalized
        };
        if let Some(route) = self.exact.get(host) {
            return Some(Arc::clone(route));
        }
        let (label, parent) = host.split_once('.')?;
        // What a wildcard stands for becomes the app's Host: only a name a DNS label could be.
        if !is_dns_label(label) {
            return None;
        }
        self.wildcard.get(parent).map(Arc::clone)
    }

    /// The network of that name some backend lives in.
    pub fn network(&self, name: &str) -> Option<Arc<dyn Network>> {
        self.networks.get(name).map(Arc::clone)
    }

    /// Whether `host` lies under a domain one of the table's names lies under (the parent of an exact name, or a
    /// wildcard's own domain): a name the gateway serves environments in, whether or not one answers for it now.
    pub fn covers_domain_of(&self, host: &str) -> bool {
        let host = normalize_host(host);
        let Some((_, parent)) = host.split_once('.') else {
            return false;
        };
        self.wildcard.contains_key(parent)
            || self.exact.keys().any(|name| {
                name.split_once('.')
                    .is_some_and(|(_, name_parent)| name_parent == parent)
            })
            || self
                .wildcard
                .keys()
                .any(|domain| domain.split_once('.').is_some_and(|(_, up)| up == parent))
    }

    fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.exact.values().chain(self.wildcard.values())
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The table every request reads; replaced as a whole.
#[derive(Debug, Default)]
pub struct Routes {
    current: RwLock<Arc<RouteTable>>,
    activity: Arc<Activity>,
}

impl Routes {
    /// The table as of now; a request keeps using it even if a new one is swapped in meanwhile.
    pub fn snapshot(&self) -> Arc<RouteTable> {
        match self.current.read() {
            Ok(table) => Arc::clone(&table),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// When requests last reached each environment of the tables swapped in.
    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// Replaces the table; requests that already took a snapshot finish with the old one.
    pub fn swap(&self, mut table: RouteTable) {
        let cells = {
            let present: Vec<(&str, &str)> = table
                .routes()
                .map(|route| (route.project.as_str(), route.environment.as_str()))
                .collect();
            self.activity.keep_only(&present)
        };
        // Under the lock, so that every route keeps one handle on its series from table to table, and the series of
        // a route no environment serves any more go with it, once (previews come and go by the thousand).
        let mut current = match self.current.write() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut kept: HashMap<(String, String, String), Arc<preview_metrics::RouteSeries>> =
            current
                .routes()
                .filter_map(|route| Some((triple(route), Arc::clone(route.series.as_ref()?))))
                .collect();
        for route in table.exact.values_mut().chain(table.wildcard.values_mut()) {
            let key = (route.project.clone(), route.environment.clone());
            let series = match kept.get(&triple(route)) {
                Some(series) => Arc::clone(series),
                None => {
                    let series =
                        preview_metrics::metrics().route_series(crate::proxy::route_labels(route));
                    kept.insert(triple(route), Arc::clone(&series));
                    series
                }
            };
            let route = Arc::make_mut(route);
            if let Some(cell) = cells.get(&key) {
                route.last_request = Arc::clone(cell);
            }
            route.series = Some(series);
        }
        let served: std::collections::HashSet<(String, String, String)> =
            table.routes().map(|route| triple(route)).collect();
        *current = Arc::new(table);
        // The series of routes no environment serves any more are exported no more; a request still under way on
        // one counts nowhere, and a route of the same name made later has series of its own. (Under the lock, so
        // that a scrape never sees the old and the new series of a route made again at once.)
        for (route, series) in &kept {
            if !served.contains(route) {
                series.retire();
            }
        }
        drop(current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(service: &str) -> Route {
        Route {
            project: "shop".into(),
            environment: "pr-42".into(),
            service: service.into(),
            state: RouteState::Serving,
            backends: vec![Backend {
                address: SocketAddr::from(([127, 0, 0, 1], 8080)),
                network: None,
            }],
            access: None,
            last_request: Arc::default(),
            series: None,
        }
    }

    fn table() -> RouteTable {
        let mut table = RouteTable::default();
        table.insert("storefront-pr-42.shop.localhost", route("storefront"));
        table.insert("*.pr-42.preview.example.test", route("wildcard"));
        table.insert("api.pr-42.preview.example.test", route("api"));
        table
    }

    /// A route keeps one series from table to table; a table without it retires them; the route made again under
    /// the same name counts on series of its own, which the old route's late requests leave alone.
    #[test]
    fn a_route_keeps_its_series_until_a_table_leaves_it_out() {
        let named = |environment: &str| {
            let mut route = route("web");
            route.environment = environment.into();
            route
        };
        let with = |environment: &str| {
            let mut table = RouteTable::default();
            table.insert("web-series-test.shop.localhost", named(environment));
            table
        };
        let routes = Routes::default();
        let series = |routes: &Routes| {
            let route = routes
                .snapshot()
                .lookup("web-series-test.shop.localhost")
                .expect("route");
            Arc::clone(route.series.as_ref().expect("series"))
        };
        let exported = |needle: &str| {
            preview_metrics::metrics()
                .encode()
                .lines()
                .filter(|line| line.contains(needle))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let counted = "preview_gateway_requests_total{project=\"shop\",environment=\"series-test\",service=\"web\",class=\"2xx\"}";
        routes.swap(with("series-test"));
        let first = series(&routes);
        first.record(200, std::time::Duration::from_millis(1));
        routes.swap(with("series-test"));
        let kept = series(&routes);
        assert!(
            Arc::ptr_eq(&first, &kept),
            "the same series from table to table"
        );
        kept.record(200, std::time::Duration::from_millis(1));
        assert_eq!(exported(counted), [format!("{counted} 2")]);
        routes.swap(RouteTable::default());
        assert!(
            exported(counted).is_empty(),
            "a route left out has no series"
        );
        first.record(200, std::time::Duration::from_millis(1));
        routes.swap(with("series-test"));
        let again = series(&routes);
        assert!(!Arc::ptr_eq(&first, &again));
        again.record(200, std::time::Duration::from_millis(1));
        first.record(200, std::time::Duration::from_millis(1));
        assert_eq!(exported(counted), [format!("{counted} 1")]);
    }

    #[test]
    fn hosts_are_compared_without_case_port_or_trailing_dot() {
        for (host, expected) in [
            ("Shop.LOCALHOST", "shop.localhost"),
            ("shop.localhost:8443", "shop.localhost"),
            ("shop.localhost.", "shop.localhost"),
            ("[::1]:443", "[::1]"),
            ("[::1]", "[::1]"),
            ("::1", "::1"),
        ] {
            assert_eq!(normalize_host(host), expected, "{host}");
        }
    }

    #[test]
    fn exact_names_beat_wildcards_and_wildcards_cover_one_label() {
        let table = table();
        let service = |host: &str| table.lookup(host).map(|r| r.service.clone());
        assert_eq!(
            service("STOREFRONT-pr-42.shop.localhost:443").as_deref(),
            Some("storefront")
        );
        assert_eq!(
            service("api.pr-42.preview.example.test").as_deref(),
            Some("api")
        );
        assert_eq!(
            service("docs.pr-42.preview.example.test").as_deref(),
            Some("wildcard")
        );
        assert_eq!(
            service("a.b.pr-42.preview.example.test"),
            None,
            "one label only"
        );
        assert_eq!(
            service("pr-42.preview.example.test"),
            None,
            "the wildcard does not cover its parent"
        );
        assert_eq!(service("unknown.shop.localhost"), None);
        for label in ["a_b", "-docs", "docs-", "a%2fb", "a b", &"x".repeat(64)] {
            assert_eq!(
                service(&format!("{label}.pr-42.preview.example.test")),
                None,
                "a wildcard covers DNS labels only: {label}"
            );
        }
        assert_eq!(
            service(&format!("{}.pr-42.preview.example.test", "x".repeat(63))).as_deref(),
            Some("wildcard")
        );
    }

    #[test]
    fn a_swap_replaces_the_whole_table_and_snapshots_keep_theirs() {
        let routes = Routes::default();
        assert!(routes.snapshot().is_empty());
        routes.swap(table());
        let before = routes.snapshot();
        let mut next = RouteTable::default();
        next.insert("storefront-pr-42.shop.localhost", route("storefront-v2"));
        routes.swap(next);
        assert_eq!(
            before
                .lookup("storefront-pr-42.shop.localhost")
                .map(|r| r.service.clone())
                .as_deref(),
            Some("storefront")
        );
        let after = routes.snapshot();
        assert_eq!(
            after
                .lookup("storefront-pr-42.shop.localhost")
                .map(|r| r.service.clone())
                .as_deref(),
            Some("storefront-v2")
        );
        assert_eq!(after.lookup("api.pr-42.preview.example.test"), None);
    }

    #[test]
    fn an_environment_keeps_one_last_request_across_swaps() {
        let routes = Routes::default();
        routes.swap(table());
        let cell = |host: &str| {
            routes
                .snapshot()
                .lookup(host)
                .map(|route| Arc::clone(&route.last_request))
                .expect("a route")
        };
        let storefront = cell("storefront-pr-42.shop.localhost");
        assert!(Arc::ptr_eq(
            &storefront,
            &cell("api.pr-42.preview.example.test")
        ));
        storefront.note(42_000);
        routes.swap(table());
        assert!(Arc::ptr_eq(
            &storefront,
            &cell("docs.pr-42.preview.example.test")
        ));
        assert!(routes.activity().last_request("shop", "pr-42").is_some());
        assert_eq!(routes.activity().last_request("shop", "pr-43"), None);
    }
}
