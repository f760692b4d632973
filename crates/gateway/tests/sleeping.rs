//! Sleeping environments through a real gateway: a request wakes the environment through the proxy's waker and is
//! answered by the app once it serves; requests at once share one wake; a link-preview bot and a refused visitor
//! wake nothing and count as nobody, while a visitor with the token wakes a protected one; past the bound, browsers
//! get a page that reloads itself and other clients a 503, both with `Retry-After`; a route swapped in during the
//! wake for another protection or environment is not forwarded to; a failed wake is not started again by every
//! reload. A WebSocket or a streamed answer keeps its environment in use while it is open, and a request that finds
//! its environment being put to sleep wakes it instead of reaching the app being stopped.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

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

#[tokio::test]
async fn a_visitor_with_the_token_wakes_a_protected_environment_and_is_answered() {
    let app = echo_app("web").await;
    let protected = move |state| Route {
        access: Some(Access::Token {
            digest: digest("the token"),
        }),
        ..route("web", "pr-1", state, app)
    };
    let routes = Arc::new(Routes::default());
    routes.swap(table_of(protected(RouteState::Sleeping)));
    let wakes = Arc::new(AtomicU32::new(0));
    let waker = {
        let (routes, wakes) = (Arc::clone(&routes), Arc::clone(&wakes));
        Waker::new(move |_, _| {
            wakes.fetch_add(1, Ordering::SeqCst);
            routes.swap(table_of(protected(RouteState::Serving)));
            Box::pin(async { Ok(()) })
        })
    };
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
    for token in [None, Some("a wrong one")] {
        let headers: Vec<_> = token.map(|t| ("x-preview-token", t)).into_iter().collect();
        let (status, _, body) = tls.request(gateway, HOST, "/", &headers).await;
        assert_eq!(status, 401, "{body}");
    }
    assert_eq!(wakes.load(Ordering::SeqCst), 0);
    let (status, _, body) = tls
        .request(gateway, HOST, "/page", &[("x-preview-token", "the token")])
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("web /page"), "{body}");
    assert_eq!(wakes.load(Ordering::SeqCst), 1);
    // Awake, a visitor without it is still refused.
    let (status, _, body) = tls.request(gateway, HOST, "/", &[]).await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn a_route_swapped_in_during_the_wake_for_another_protection_or_environment_is_not_forwarded_to()
 {
    let (app, received) = recording_app().await;
    let another_protection = Route {
        access: Some(Access::Token {
            digest: digest("another token"),
        }),
        ..serving("web", "pr-1", app)
    };
    for swapped_in in [another_protection, serving("web", "pr-2", app)] {
        let routes = Arc::new(Routes::default());
        routes.swap(table_of(route("web", "pr-1", RouteState::Sleeping, app)));
        let waker = {
            let routes = Arc::clone(&routes);
            Waker::new(move |_, _| {
                routes.swap(table_of(swapped_in.clone()));
                Box::pin(async { Ok(()) })
            })
        };
        let gateway = gateway_waking(routes, waker, Duration::from_secs(10)).await;
        let (status, _, body) = request(gateway, HOST, "/", &[]).await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("waking up"), "{body}");
    }
    assert_eq!(received.heads(), Vec::<String>::new());
}

#[tokio::test]
async fn a_failed_wake_is_not_started_again_by_every_reload() {
    let app = echo_app("web").await;
    let routes = routes_of(vec![(
        HOST,
        route("web", "pr-1", RouteState::Sleeping, app),
    )]);
    let wakes = Arc::new(AtomicU32::new(0));
    let reported = Arc::new(Mutex::new(Vec::new()));
    let waker = {
        let wakes = Arc::clone(&wakes);
        Waker::new(move |_, _| {
            wakes.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Err("its server did not start".to_owned()) })
        })
    }
    .reporting({
        let reported = Arc::clone(&reported);
        move |failed| {
            reported.lock().expect("lock").push(format!(
                "{}/{}: {} ({} s)",
                failed.project,
                failed.environment,
                failed.error,
                failed.pause.as_secs()
            ));
        }
    });
    let gateway = gateway_waking(Arc::clone(&routes), waker, Duration::from_secs(10)).await;
    for _ in 0..3 {
        let (status, headers, body) = request(gateway, HOST, "/", &[("accept", "text/html")]).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(headers.get("retry-after").map(String::as_str), Some("5"));
        assert!(
            body.contains("waking it failed")
                && body.contains("<meta http-equiv=\"refresh\" content=\"5\">"),
            "{body}"
        );
    }
    assert_eq!(wakes.load(Ordering::SeqCst), 1);
    assert_eq!(
        *reported.lock().expect("lock"),
        ["shop/pr-1: its server did not start (10 s)"]
    );
}

/// When the gateway last saw a request for `pr-1`.
fn last_request(routes: &Routes) -> SystemTime {
    routes
        .activity()
        .last_request("shop", "pr-1")
        .expect("a request reached pr-1")
}

/// Waits until no request for `pr-1` is under way (the last request stops being now); when the last one ended.
async fn once_none_is_under_way(routes: &Routes) -> SystemTime {
    for _ in 0..50 {
        let before = last_request(routes);
        tokio::time::sleep(Duration::from_millis(100)).await;
        if last_request(routes) == before {
            return before;
        }
    }
    panic!("a request for pr-1 is still under way");
}

#[tokio::test]
async fn an_open_websocket_keeps_its_environment_in_use_until_it_closes() {
    let routes = routes_of(vec![(
        HOST,
        serving("web", "pr-1", websocket_echo_app().await),
    )]);
    let gateway = gateway(Arc::clone(&routes), None).await;
    let mut stream = tokio::net::TcpStream::connect(gateway)
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut stream, websocket_request(HOST).as_bytes())
        .await
        .expect("upgrade request");
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let opened = SystemTime::now();
    // Quiet for longer than the time is noted at: the open tunnel is a request now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = last_request(&routes);
    assert!(
        during >= opened + Duration::from_millis(1400),
        "{during:?}, opened {opened:?}"
    );
    assert!(
        !routes
            .activity()
            .fall_asleep("shop", "pr-1", SystemTime::now()),
        "an environment is not put to sleep under an open WebSocket"
    );
    assert_eq!(
        websocket_echo(&mut stream, "still here").await,
        "still here"
    );
    drop(stream);
    // Its end is when the environment was last used.
    let ended = once_none_is_under_way(&routes).await;
    assert!(
        ended >= opened + Duration::from_millis(1400),
        "{ended:?}, opened {opened:?}"
    );
    let activity = routes.activity();
    assert!(!activity.fall_asleep("shop", "pr-1", ended - Duration::from_millis(1)));
    assert!(activity.fall_asleep("shop", "pr-1", ended));
}

#[tokio::test]
async fn a_streamed_answer_keeps_its_environment_in_use_until_it_has_gone_out() {
    let app = raw_app(|mut stream| async move {
        read_head(&mut stream).await;
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes())
            .await
            .expect("head");
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let chunk = "5\r\ntick\n\r\n";
            tokio::io::AsyncWriteExt::write_all(&mut stream, chunk.as_bytes())
                .await
                .expect("chunk");
        }
        let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, b"0\r\n\r\n").await;
    })
    .await;
    let routes = routes_of(vec![(HOST, serving("web", "pr-1", app))]);
    let gateway = gateway(Arc::clone(&routes), None).await;
    let began = SystemTime::now();
    let streaming = tokio::spawn(async move { get(gateway, HOST, "/events").await });
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(
        last_request(&routes) >= began + Duration::from_millis(1200),
        "a streamed answer under way is a request now"
    );
    assert!(
        !routes
            .activity()
            .fall_asleep("shop", "pr-1", SystemTime::now())
    );
    let (status, body) = streaming.await.expect("joined");
    assert_eq!((status, body.as_str()), (200, "tick\n".repeat(5).as_str()));
    let ended = once_none_is_under_way(&routes).await;
    assert!(ended >= began + Duration::from_millis(1900), "{ended:?}");
}

#[tokio::test]
async fn a_request_that_finds_its_environment_being_put_to_sleep_wakes_it_and_does_not_reach_the_app_stopping()
 {
    let (stopping, received) = recording_app().await;
    let woken = echo_app("web").await;
    let routes = routes_of(vec![(HOST, serving("web", "pr-1", stopping))]);
    // The runtime took the environment for its sleep; the route table still says it serves.
    assert!(
        routes
            .activity()
            .fall_asleep("shop", "pr-1", SystemTime::now())
    );
    let wakes = Arc::new(AtomicU32::new(0));
    let waker = {
        let (routes, wakes) = (Arc::clone(&routes), Arc::clone(&wakes));
        Waker::new(move |project, environment| {
            wakes.fetch_add(1, Ordering::SeqCst);
            let routes = Arc::clone(&routes);
            let (project, environment) = (project.to_owned(), environment.to_owned());
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                routes.activity().woke(&project, &environment);
                routes.swap(table_of(serving("web", "pr-1", woken)));
                Ok(())
            })
        })
    };
    let gateway = gateway_waking(Arc::clone(&routes), waker, Duration::from_secs(10)).await;
    let (status, _, body) = request(gateway, HOST, "/", &[("user-agent", "Twitterbot/1.0")]).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(wakes.load(Ordering::SeqCst), 0);
    let (status, body) = get(gateway, HOST, "/page").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("web /page"), "{body}");
    assert_eq!(wakes.load(Ordering::SeqCst), 1);
    assert_eq!(received.heads(), Vec::<String>::new());
}
