//! Sleeping environments through a real gateway: a request wakes the environment through the proxy's waker and is
//! answered by the app once it serves; requests at once share one wake; a link-preview bot and a refused visitor
//! wake nothing and count as nobody; past the bound, browsers get a page that reloads itself and other clients a
//! 503, both with `Retry-After`.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use preview_gateway::*;
use support::*;

const HOST: &str = "web-pr-1.shop.localhost";

fn table_of(route: Route) -> RouteTable {
    let mut table = RouteTable::default();
    table.insert(HOST, route);
    table
}

/// `web` of `pr-1` asleep; its waker counts its wakes and, after `takes`, swaps in the route serving `app`.
fn asleep(app: SocketAddr, takes: Duration) -> (Arc<Routes>, Waker, Arc<AtomicU32>) {
    let routes = Arc::new(Routes::default());
    routes.swap(table_of(route("web", "pr-1", RouteState::Sleeping, app)));
    let wakes = Arc::new(AtomicU32::new(0));
    let waker = {
        let (routes, wakes) = (Arc::clone(&routes), Arc::clone(&wakes));
        Waker::new(move |project, environment| {
            assert_eq!((project, environment), ("shop", "pr-1"));
            wakes.fetch_add(1, Ordering::SeqCst);
            let routes = Arc::clone(&routes);
            Box::pin(async move {
                tokio::time::sleep(takes).await;
                routes.swap(table_of(serving("web", "pr-1", app)));
                Ok(())
            })
        })
    };
    (routes, waker, wakes)
}

async fn gateway_waking(routes: Arc<Routes>, waker: Waker, bound: Duration) -> SocketAddr {
    let config = Config {
        waker: Some(waker),
        wake_timeout: bound,
        ..Config::default()
    };
    gateway_with(Proxy::with_config(routes, config), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_at_once_wake_the_environment_once_and_reach_the_app() {
    let app = echo_app("web").await;
    let (routes, waker, wakes) = asleep(app, Duration::from_millis(300));
    let gateway = gateway_waking(Arc::clone(&routes), waker, Duration::from_secs(10)).await;
    let mut requests = tokio::task::JoinSet::new();
    for n in 0..20 {
        requests.spawn(async move { get(gateway, HOST, &format!("/page/{n}")).await });
    }
    while let Some(answered) = requests.join_next().await {
        let (status, body) = answered.expect("joined");
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("web /page/"), "{body}");
    }
    assert_eq!(wakes.load(Ordering::SeqCst), 1);
    assert!(routes.activity().last_request("shop", "pr-1").is_some());
}

#[tokio::test]
async fn a_link_preview_bot_wakes_nothing_and_counts_as_nobody() {
    let app = echo_app("web").await;
    let (routes, waker, wakes) = asleep(app, Duration::ZERO);
    let gateway = gateway_waking(Arc::clone(&routes), waker, Duration::from_secs(10)).await;
    let (status, headers, body) = request(
        gateway,
        HOST,
        "/",
        &[(
            "user-agent",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        )],
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers.get("retry-after").map(String::as_str), Some("5"));
    assert!(body.contains("link previews do not wake it"), "{body}");
    assert_eq!(wakes.load(Ordering::SeqCst), 0);
    assert_eq!(routes.activity().last_request("shop", "pr-1"), None);
    // Awake, a bot still counts as nobody; a person does.
    let (status, _) = get(gateway, HOST, "/").await;
    assert_eq!(status, 200);
    let first = routes
        .activity()
        .last_request("shop", "pr-1")
        .expect("noted");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, _) = request(gateway, HOST, "/", &[("user-agent", "Twitterbot/1.0")]).await;
    assert_eq!(status, 200);
    assert_eq!(routes.activity().last_request("shop", "pr-1"), Some(first));
}

#[tokio::test]
async fn past_the_bound_a_browser_gets_a_page_that_reloads_and_others_a_503() {
    let app = echo_app("web").await;
    let (routes, waker, wakes) = asleep(app, Duration::from_secs(3));
    let gateway = gateway_waking(routes, waker, Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let (status, headers, body) = request(
        gateway,
        HOST,
        "/",
        &[(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )],
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers.get("retry-after").map(String::as_str), Some("5"));
    assert!(
        body.contains("<meta http-equiv=\"refresh\" content=\"5\">") && body.contains("waking up"),
        "{body}"
    );
    let (status, headers, body) = request(gateway, HOST, "/", &[("accept", "*/*")]).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers.get("retry-after").map(String::as_str), Some("5"));
    assert!(!body.contains("refresh"), "{body}");
    // Both waited for the one wake, which went on without them and ends serving.
    assert_eq!(wakes.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, _) = get(gateway, HOST, "/").await;
    assert_eq!(status, 200);
    assert_eq!(wakes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_visitor_refused_by_the_protection_wakes_nothing() {
    let app = echo_app("web").await;
    let (routes, waker, wakes) = asleep(app, Duration::ZERO);
    let mut protected = route("web", "pr-1", RouteState::Sleeping, app);
    protected.access = Some(Access::Token {
        digest: digest("the token"),
    });
    routes.swap(table_of(protected));
    let tls = Tls::for_names(&["*.shop.localhost"]);
    let config = Config {
        waker: Some(waker),
        ..Config::default()
    };
    let gateway = gateway_with(
        Proxy::with_config(Arc::clone(&routes), config),
        Some(Arc::clone(&tls.server)),
    )
    .await;
    let (status, _, body) = tls.request(gateway, HOST, "/", &[]).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = tls
        .request(gateway, HOST, "/", &[("x-preview-token", "a wrong one")])
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(wakes.load(Ordering::SeqCst), 0);
    assert_eq!(routes.activity().last_request("shop", "pr-1"), None);
}

#[tokio::test]
async fn without_a_waker_a_sleeping_environment_answers_503() {
    let app = echo_app("web").await;
    let (routes, _, _) = asleep(app, Duration::ZERO);
    let gateway = gateway(routes, None).await;
    let (status, headers, body) = request(gateway, HOST, "/", &[]).await;
    assert_eq!(status, 503, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert!(body.contains("is asleep"), "{body}");
}
