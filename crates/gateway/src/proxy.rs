//! Forwarding one request: find the route by its one host, check access, count the request as under way in its
//! environment until it is over (and wake the environment when it sleeps), set the forwarding headers, send it to
//! the app, and relay the answer (or tunnel a WebSocket); answer with a page that names the environment when it
//! cannot.

use std::sync::{Arc, Mutex};

use hyper::body::{Body as _, Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::access::{Access, Verdict};
use crate::challenges::{CHALLENGE_PATH, Challenges};
use crate::config::Config;
use crate::deadlines::BodyDeadline;
use crate::forwarding_headers::{Origin, forward_request_headers, is_websocket_upgrade};
use crate::pages::{Body, empty, escape, page, redirect, retry_later, whole};
use crate::request_host::request_host;
use crate::routes::{Route, RouteState, Routes, normalize_host};
use crate::upstream::{Affinity, UpstreamError, Upstreams, pool_authority};
use crate::waking::{Wakes, Woken};

/// What every worker forwards with: the route table, the ACME challenge answers, the connections to apps, the
/// configuration, and the places under the connection cap shared by every listener served with this proxy.
pub struct Proxy {
    routes: Arc<Routes>,
    challenges: Arc<Challenges>,
    upstreams: Upstreams,
    /// Wakes of sleeping environments under way.
    wakes: Wakes,
    /// `Strict-Transport-Security` for protected routes' HTTPS answers, when configured.
    hsts: Option<HeaderValue>,
    pub(crate) config: Config,
    pub(crate) connections: Arc<Semaphore>,
}

impl Proxy {
    /// A proxy with the default [`Config`].
    pub fn new(routes: Arc<Routes>) -> Proxy {
        Proxy::with_config(routes, Config::default())
    }

    pub fn with_config(routes: Arc<Routes>, config: Config) -> Proxy {
        Proxy {
            upstreams: Upstreams::new(Arc::clone(&routes), &config.limits),
            wakes: Wakes::new(config.waker.clone()),
            routes,
            challenges: Arc::default(),
            connections: Arc::new(Semaphore::new(
                config
                    .limits
                    .connections
                    .unwrap_or_else(crate::config::connection_cap_now)
                    .max(1),
            )),
            hsts: config.hsts.and_then(|max_age| {
                HeaderValue::try_from(format!("max-age={}", max_age.as_secs())).ok()
            }),
            config,
        }
    }

    /// Answers the ACME HTTP-01 challenges in `challenges` (for any host), ahead of the routes.
    pub fn with_challenges(mut self, challenges: Arc<Challenges>) -> Proxy {
        self.challenges = challenges;
        self
    }

    /// Handles one request that arrived on `downstream`; a request that reached a route is counted with the
    /// status of its answer and the time until the answer began.
    pub(crate) async fn handle(
        &self,
        request: Request<Incoming>,
        downstream: &Downstream,
    ) -> Response<Body> {
        let began = std::time::Instant::now();
        let mut routed = None;
        let response = self.answer(request, downstream, &mut routed).await;
        if let Some(series) = routed.as_ref().and_then(|route| route.series.as_ref()) {
            series.record(response.status().as_u16(), began.elapsed());
        }
        response
    }

    async fn answer(
        &self,
        mut request: Request<Incoming>,
        downstream: &Downstream,
        routed: &mut Option<Arc<Route>>,
    ) -> Response<Body> {
        let scheme = downstream.origin.client_scheme(request.headers());
        if request.uri().path().starts_with(CHALLENGE_PATH)
            && let Some(answer) = self.challenges.lookup(request.uri().path())
        {
            return whole(Bytes::from(answer), "application/octet-stream");
        }
        // A proxy's tunnel is nothing an app can serve through the gateway.
        if request.method() == hyper::Method::CONNECT {
            return page(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed",
                "The gateway does not open tunnels (CONNECT).",
            );
        }
        let host = match request_host(&request) {
            Ok(host) => host,
            Err(problem) => return page(problem.status(), "Bad host", problem.explanation()),
        };
        let host_name = host.to_str().unwrap_or_default();
        let Some(found) = self.routes.snapshot().lookup(host_name) else {
            let name = escape(&normalize_host(host_name));
            return page(
                StatusCode::NOT_FOUND,
                "No such environment",
                &format!(
                    "No environment answers for <b>{name}</b>. It may not exist yet, or it was deleted."
                ),
            );
        };
        // Kept where the request is counted, and borrowed from there (one count of the shared route, not two).
        let mut route: &Arc<Route> = routed.insert(found);
        let woken_route;
        if let Some(unavailable) = unavailable(route) {
            return unavailable;
        }
        if let Some(access) = &route.access {
            let name = normalize_host(host_name);
            // A credential sent over plain HTTP can be read on the way: protected routes are served over HTTPS
            // only, so that a visitor sends the header or cookie in clear at most once.
            if scheme == "http" {
                return self.to_https(&name, &request);
            }
            match crate::access::check(access, &mut request, &name, scheme) {
                Verdict::Allow => {}
                Verdict::Redirect { location } => {
                    return redirect(StatusCode::SEE_OTHER, &location);
                }
                Verdict::SetCookie { location, cookie } => {
                    let mut response = redirect(StatusCode::SEE_OTHER, &location);
                    response.headers_mut().insert(header::SET_COOKIE, cookie);
                    return response;
                }
                Verdict::Deny { status, message } => {
                    let mut response = page(status, "Protected preview", message);
                    if matches!(access, Access::Basic { .. }) {
                        response.headers_mut().insert(
                            header::WWW_AUTHENTICATE,
                            HeaderValue::from_static("Basic realm=\"preview\", charset=\"UTF-8\""),
                        );
                    }
                    return response;
                }
            }
        }
        // Under way until its answer has gone out or its tunnel closed, whichever way it ends: an environment is
        // not put to sleep under a request. Someone used the environment (noted at most once a second, and as the
        // request ends); a link-preview bot is nobody, and wakes nothing. The environment may be being put to sleep
        // while its route still says it serves: the request then wakes it too.
        let mut flight = route
            .last_request
            .begin(request.headers().get(header::USER_AGENT));
        let sleeping = route.state == RouteState::Sleeping || flight.found_asleep();
        if sleeping && flight.by_link_preview_bot() {
            return retry_later(
                "Environment asleep",
                &format!("{} is asleep; link previews do not wake it.", who(route)),
                false,
            );
        }
        flight.note();
        if sleeping {
            woken_route = match self.woken(route, host_name, request.headers()).await {
                Ok(woken) => woken,
                Err(answer) => return answer,
            };
            route = &woken_route;
            if let Some(unavailable) = unavailable(route) {
                return unavailable;
            }
        }
        let Some(backend) = route.backends.first() else {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not running",
                &format!("{} has no running instance.", who(route)),
            );
        };
        // Only pages use it: not made for requests that are forwarded.
        let named = || who(route);
        let websocket = is_websocket_upgrade(request.headers());
        // HTTP/2 streams run at once and share the pool; HTTP/1.1 requests come one by one and use their
        // connection's own upstream connection.
        let own_connection = request.version() != hyper::Version::HTTP_2 && !websocket;
        let incoming_upgrade = websocket.then(|| hyper::upgrade::on(&mut request));
        let bodiless = request.body().is_end_stream();
        let (mut parts, body) = request.into_parts();
        forward_request_headers(
            &mut parts.headers,
            websocket,
            &downstream.origin,
            downstream.origin.host_for_app(&host),
        );
        // A request without a body (most are) is sent, and its answer read, in this task.
        if own_connection && bodiless {
            let sent = self
                .upstreams
                .exchange(&downstream.upstream, backend, &parts)
                .await;
            let (answer, permit) = match sent {
                Ok(sent) => sent,
                Err(error) => return self.not_answered(&error, route),
            };
            if answer.status == StatusCode::SWITCHING_PROTOCOLS {
                return switched_unasked(route);
            }
            let answer = crate::answers::relay_read(answer, (permit, flight));
            return self.with_hsts(answer, route, scheme);
        }
        // The pool needs the app's address in the URI; a connection of our own sends the path alone, which is what
        // an HTTP/1.1 request already carries.
        let uri = if own_connection && parts.uri.authority().is_none() {
            None
        } else {
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let target = if own_connection {
                path.to_owned()
            } else {
                format!("http://{}{path}", pool_authority(backend))
            };
            match target.parse::<hyper::Uri>() {
                Ok(uri) => Some(uri),
                Err(_) => {
                    return page(
                        StatusCode::BAD_REQUEST,
                        "Bad request",
                        "The request's path is not valid.",
                    );
                }
            }
        };
        if let Some(uri) = uri {
            parts.uri = uri;
        }
        parts.version = hyper::Version::HTTP_11;
        let body = BodyDeadline::new(body, self.config.timeouts.request_body);
        let outgoing = Request::from_parts(parts, body);
        let sent = if own_connection {
            self.upstreams
                .send_own(&downstream.upstream, backend, outgoing)
                .await
        } else {
            self.upstreams.send_pooled(backend, outgoing).await
        };
        let (mut response, permit) = match sent {
            Ok(sent) => sent,
            Err(error) => return self.not_answered(&error, route),
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(incoming) = incoming_upgrade else {
                return switched_unasked(route);
            };
            let outgoing = hyper::upgrade::on(&mut response);
            // The tunnel is the client connection from now on: its place under the connection cap goes with it,
            // which bounds tunnels, and so does the request's flight, which keeps the environment awake. The
            // backend's gate counts requests in flight, and this one has been answered.
            drop(permit);
            let connection = downstream.take_place();
            crate::tunnel::spawn(
                incoming,
                outgoing,
                self.config.timeouts.tunnel,
                (connection, flight),
            );
            let (parts, _) = response.into_parts();
            return Response::from_parts(parts, empty());
        }
        let answer = crate::answers::relay(response, (permit, flight), named).await;
        self.with_hsts(answer, route, scheme)
    }

    /// `answer` with `Strict-Transport-Security` when the route is protected and the request came over HTTPS.
    fn with_hsts(&self, mut answer: Response<Body>, route: &Route, scheme: &str) -> Response<Body> {
        if let (Some(_), "https", Some(hsts)) = (&route.access, scheme, &self.hsts) {
            answer
                .headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        answer
    }

    /// The page for a request that did not reach `route`'s app, or got no answer from it.
    fn not_answered(&self, error: &UpstreamError, route: &Route) -> Response<Body> {
        let (status, reason) = error.explain(&self.config.limits);
        page(
            status,
            "The app did not answer",
            &format!("{} did not answer: {reason}.", who(route)),
        )
    }

    /// Wakes the environment of the sleeping `route` and waits for it, at most `Config::wake_timeout`: the route
    /// that serves `host` then, or the answer to give instead.
    async fn woken(
        &self,
        route: &Route,
        host: &str,
        headers: &hyper::HeaderMap,
    ) -> Result<Arc<Route>, Response<Body>> {
        let outcome = self
            .wakes
            .wake(&route.project, &route.environment, self.config.wake_timeout)
            .await;
        // A wake that failed may still have left the environment serving.
        if matches!(outcome, Woken::Finished | Woken::Failed)
            && let Some(now) = self.routes.snapshot().lookup(host)
            && now.state != RouteState::Sleeping
            && !now.last_request.is_asleep()
            // The environment and protection the request was let through for.
            && now.project == route.project
            && now.environment == route.environment
            && now.access == route.access
        {
            return Ok(now);
        }
        let browser = headers
            .get_all(header::ACCEPT)
            .iter()
            .any(|accept| accept.to_str().is_ok_and(|a| a.contains("text/html")));
        Err(match outcome {
            Woken::NoWaker => retry_later(
                "Environment asleep",
                &format!("{} is asleep, and nothing here can wake it.", who(route)),
                false,
            ),
            Woken::Failed => retry_later(
                "Waking failed",
                &format!(
                    "{} is asleep, and waking it failed just now; it is tried again in a little while.",
                    who(route)
                ),
                browser,
            ),
            Woken::Finished | Woken::StillWaking => retry_later(
                "Waking up",
                &format!(
                    "{} is waking up: it was stopped because nobody used it. This page reloads by itself in a few seconds.",
                    who(route)
                ),
                browser,
            ),
        })
    }

    /// 308 to the same URL over HTTPS.
    fn to_https<B>(&self, host: &str, request: &Request<B>) -> Response<Body> {
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let location = match self.config.https_port {
            443 => format!("https://{host}{path}"),
            port => format!("https://{host}:{port}{path}"),
        };
        redirect(StatusCode::PERMANENT_REDIRECT, &location)
    }
}

/// The labels of a route's series.
pub(crate) fn route_labels(route: &Route) -> preview_metrics::RouteLabels {
    preview_metrics::RouteLabels {
        project: route.project.clone(),
        environment: route.environment.clone(),
        service: route.service.clone(),
    }
}

/// `<b>web</b> of environment <b>pr-1</b> (shop)`, for pages.
fn who(route: &Route) -> String {
    format!(
        "<b>{}</b> of environment <b>{}</b> ({})",
        escape(&route.service),
        escape(&route.environment),
        escape(&route.project)
    )
}

/// The page for an app that switched protocols when the request asked for no upgrade.
fn switched_unasked(route: &Route) -> Response<Body> {
    page(
        StatusCode::BAD_GATEWAY,
        "The app did not answer",
        &format!(
            "{} switched protocols although the request asked for none.",
            who(route)
        ),
    )
}

/// The page for a route that cannot be served whoever asks: its environment is stopped, or its app has no running
/// instance.
fn unavailable(route: &Route) -> Option<Response<Body>> {
    match route.state {
        RouteState::Stopped => Some(page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Environment stopped",
            &format!("{} is stopped.", who(route)),
        )),
        RouteState::Serving if route.backends.is_empty() => Some(page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not running",
            &format!("{} has no running instance.", who(route)),
        )),
        RouteState::Serving | RouteState::Sleeping => None,
    }
}

/// The client connection a request came in on.
pub(crate) struct Downstream {
    origin: Origin,
    upstream: Affinity,
    /// The connection's place under the connection cap, until a tunnel takes it.
    place: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Downstream {
    pub(crate) fn new(origin: Origin, place: OwnedSemaphorePermit) -> Downstream {
        Downstream {
            origin,
            upstream: Affinity::default(),
            place: Mutex::new(Some(place)),
        }
    }

    fn take_place(&self) -> Option<OwnedSemaphorePermit> {
        self.place.lock().ok().and_then(|mut place| place.take())
    }
}
