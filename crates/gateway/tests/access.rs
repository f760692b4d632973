//! Protected previews through a gateway with both listeners: the credential in every form (header, cookie, query)
//! lets a visitor in and never reaches the app, the cookie is not the token, redirects stay on the site, and plain
//! HTTP is sent to HTTPS.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use preview_gateway::*;
use support::*;

const TOKEN: &str = "s3cret token";

/// A gateway serving plain HTTP and HTTPS with one proxy: `web-pr-1` and `api-pr-1` protected by [`TOKEN`],
/// `web-pr-2` by basic authentication, `web-staging` open, all to one recording app.
struct Protected {
    plain: SocketAddr,
    secure: SocketAddr,
    tls: Tls,
    app: Received,
    challenges: Arc<Challenges>,
}

async fn protected(hsts: Option<Duration>) -> Protected {
    protected_behind(hsts, Vec::new()).await
}

/// [`protected`], trusting the proxies in `trusted_proxies`.
async fn protected_behind(hsts: Option<Duration>, trusted_proxies: Vec<IpRange>) -> Protected {
    let (app, received) = recording_app().await;
    let token = || {
        Some(Access::Token {
            digest: digest(TOKEN),
        })
    };
    let with = |environment: &str, access| {
        let mut route = serving("web", environment, app);
        route.access = access;
        route
    };
    let routes = routes_of(vec![
        ("web-pr-1.shop.localhost", with("pr-1", token())),
        ("api-pr-1.shop.localhost", with("pr-1", token())),
        (
            "web-pr-2.shop.localhost",
            with(
                "pr-2",
                Some(Access::Basic {
                    digest: digest(&basic_credentials("reviewer", "pa:ss")),
                }),
            ),
        ),
        ("web-staging.shop.localhost", with("staging", None)),
    ]);
    let tls = Tls::for_names(&["*.shop.localhost"]);
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let secure = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let (plain_address, secure_address) = (
        plain.local_addr().expect("address"),
        secure.local_addr().expect("address"),
    );
    let challenges = Arc::new(Challenges::default());
    let config = Config {
        https_port: secure_address.port(),
        hsts,
        trusted_proxies,
        ..Config::default()
    };
    let proxy =
        Arc::new(Proxy::with_config(routes, config).with_challenges(Arc::clone(&challenges)));
    tokio::spawn(serve(plain, Arc::clone(&proxy), None));
    tokio::spawn(serve(secure, proxy, Some(Arc::clone(&tls.server))));
    Protected {
        plain: plain_address,
        secure: secure_address,
        tls,
        app: received,
        challenges,
    }
}

#[tokio::test]
async fn the_token_lets_visitors_in_and_never_reaches_the_app() {
    let gateway = protected(None).await;
    let get = |host: &'static str, path: &'static str, headers: Vec<(&'static str, String)>| {
        let gateway = &gateway;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            gateway
                .tls
                .request(gateway.secure, host, path, &headers)
                .await
        }
    };
    let host = "web-pr-1.shop.localhost";

    let (status, _, page) = get(host, "/", vec![]).await;
    assert_eq!(status, 401);
    assert!(page.contains("preview_token"), "{page}");
    let (status, _, _) = get(host, "/", vec![("x-preview-token", "wrong".into())]).await;
    assert_eq!(status, 401);
    assert!(gateway.app.heads().is_empty(), "nothing reached the app");

    let (status, _, body) = get(host, "/a", vec![("x-preview-token", TOKEN.into())]).await;
    assert_eq!((status, body.as_str()), (200, "recorded"));
    assert!(gateway.app.last().starts_with("GET /a HTTP/1.1\r\n"));

    // Once in the query: a cookie that is not the token, and the same URL without it.
    let (status, headers, _) = get(host, "/cart?preview_token=s3cret%20token&item=3", vec![]).await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/cart?item=3");
    let set = &headers["set-cookie"];
    assert!(
        set.ends_with("; Path=/; HttpOnly; SameSite=Lax; Secure"),
        "{set}"
    );
    let cookie = set.split(';').next().expect("pair").to_owned();
    let value = cookie.strip_prefix("preview_token=").expect("the cookie");
    assert_eq!(value.len(), 64, "{value}");
    assert!(!value.contains("s3cret"), "{value}");

    // The cookie with the token in the query once more (the shared link opened again): the browser is sent to the
    // URL without it, so that the page cannot read the token from its address bar.
    let (status, headers, _) = get(
        host,
        "/cart?item=3&preview_token=s3cret%20token",
        vec![("cookie", cookie.clone())],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/cart?item=3");
    // The cookie, beside the visitor's own cookies (in two headers, as HTTP/2 may send them), a cookie of the same
    // name set by another site, a stale header and a `Referer` that names the token: allowed, and the app gets the
    // visitor's cookies (joined) and the referer without the token, but none of the gateway's credentials.
    let (status, _, _) = get(
        host,
        "/cart?item=3",
        vec![
            (
                "cookie",
                format!("theme=dark; {cookie}; preview_token=0000"),
            ),
            ("cookie", "lang=en".into()),
            ("x-preview-token", "stale".into()),
            (
                "referer",
                format!("https://{host}/?preview_token=s3cret%20token&from=mail"),
            ),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let head = gateway.app.last();
    assert!(head.starts_with("GET /cart?item=3 HTTP/1.1\r\n"), "{head}");
    assert_eq!(
        header_in(&head, "cookie").as_deref(),
        Some("theme=dark; lang=en"),
        "{head}"
    );
    assert_eq!(
        header_in(&head, "referer"),
        Some(format!("https://{host}/?from=mail")),
        "{head}"
    );
    assert_eq!(header_in(&head, "x-preview-token"), None, "{head}");

    // The cookie opens its own host only, and the token itself is no cookie.
    let (status, _, _) = get(
        "api-pr-1.shop.localhost",
        "/",
        vec![("cookie", cookie.clone())],
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, _) = get(
        host,
        "/",
        vec![("cookie", "preview_token=s3cret%20token".into())],
    )
    .await;
    assert_eq!(status, 401);

    for head in gateway.app.heads() {
        for secret in ["s3cret", "preview_token", "x-preview-token", value] {
            assert!(
                !head
                    .to_ascii_lowercase()
                    .contains(&secret.to_ascii_lowercase()),
                "{secret} reached the app:\n{head}"
            );
        }
    }
}

#[tokio::test]
async fn redirects_after_the_query_token_stay_on_the_site() {
    let gateway = protected(None).await;
    for (path, expected) in [
        (
            "//evil.example/?preview_token=s3cret%20token",
            "/evil.example/",
        ),
        (
            "///evil.example/x?a=1&preview_token=s3cret%20token",
            "/evil.example/x?a=1",
        ),
    ] {
        let (status, headers, _) = gateway
            .tls
            .request(gateway.secure, "web-pr-1.shop.localhost", path, &[])
            .await;
        assert_eq!(status, 303, "{path}");
        assert_eq!(headers["location"], expected, "{path}");
    }
}

#[tokio::test]
async fn a_trusted_proxy_that_terminates_tls_is_not_sent_in_circles() {
    let trusted = vec![IpRange::parse("127.0.0.0/8").expect("range")];
    let gateway = protected_behind(None, trusted).await;
    // The proxy says its client used HTTPS: served, not redirected (which would loop).
    let (status, _, body) = request(
        gateway.plain,
        "web-pr-1.shop.localhost",
        "/",
        &[("x-preview-token", TOKEN), ("x-forwarded-proto", "https")],
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "recorded"));
    // It says nothing, or plain HTTP: sent to HTTPS.
    for proto in [None, Some("http")] {
        let mut headers = vec![("x-preview-token", TOKEN)];
        headers.extend(proto.map(|p| ("x-forwarded-proto", p)));
        let (status, _, _) = request(gateway.plain, "web-pr-1.shop.localhost", "/", &headers).await;
        assert_eq!(status, 308, "{proto:?}");
    }
    // A client that is no trusted proxy cannot say so.
    let untrusted = protected(None).await;
    let (status, _, _) = request(
        untrusted.plain,
        "web-pr-1.shop.localhost",
        "/",
        &[("x-preview-token", TOKEN), ("x-forwarded-proto", "https")],
    )
    .await;
    assert_eq!(status, 308);
    assert!(untrusted.app.heads().is_empty(), "nothing reached the app");
}

#[tokio::test]
async fn plain_http_sends_protected_routes_to_https_except_challenges() {
    let gateway = protected(Some(Duration::from_secs(86_400))).await;
    let port = gateway.secure.port();
    // Even with the right token: it was sent in clear once, and the app does not get it.
    let (status, headers, _) = request(
        gateway.plain,
        "Web-PR-1.shop.localhost:80",
        "/cart?item=3",
        &[("x-preview-token", TOKEN)],
    )
    .await;
    assert_eq!(status, 308);
    assert_eq!(
        headers["location"],
        format!("https://web-pr-1.shop.localhost:{port}/cart?item=3")
    );
    assert!(gateway.app.heads().is_empty(), "nothing reached the app");
    // An ACME CA checks over plain HTTP: answered, not redirected.
    gateway.challenges.answer("abc", "abc.thumbprint");
    let (status, _, body) = request(
        gateway.plain,
        "web-pr-1.shop.localhost",
        "/.well-known/acme-challenge/abc",
        &[],
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "abc.thumbprint"));
    // Open routes are served over plain HTTP as before.
    let (status, _, _) = request(gateway.plain, "web-staging.shop.localhost", "/", &[]).await;
    assert_eq!(status, 200);

    // Over HTTPS, a protected route's answers tell browsers to stay there; open routes' do not.
    let (status, headers, _) = gateway
        .tls
        .request(
            gateway.secure,
            "web-pr-1.shop.localhost",
            "/",
            &[("x-preview-token", TOKEN)],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["strict-transport-security"], "max-age=86400");
    let (_, headers, _) = gateway
        .tls
        .request(gateway.secure, "web-staging.shop.localhost", "/", &[])
        .await;
    assert!(!headers.contains_key("strict-transport-security"));
}

#[tokio::test]
async fn basic_authentication_wants_its_password_and_keeps_it_from_the_app() {
    let gateway = protected(None).await;
    let host = "web-pr-2.shop.localhost";
    let (status, headers, _) = gateway.tls.request(gateway.secure, host, "/", &[]).await;
    assert_eq!(status, 401);
    assert!(headers["www-authenticate"].starts_with("Basic realm=\"preview\""));
    let bad = format!("Basic {}", basic_credentials("reviewer", "nope"));
    let (status, _, _) = gateway
        .tls
        .request(gateway.secure, host, "/", &[("authorization", &bad)])
        .await;
    assert_eq!(status, 401);
    let good = format!("Basic {}", basic_credentials("reviewer", "pa:ss"));
    let (status, _, _) = gateway
        .tls
        .request(gateway.secure, host, "/", &[("authorization", &good)])
        .await;
    assert_eq!(status, 200);
    assert_eq!(gateway.app.last_header("authorization"), "-");
}
