//! The forges' REST APIs, asked: sends the requests `preview_forge::api` builds and reads their answers — the
//! pull requests it reads, and the feedback it writes on them (comments, commit statuses, GitHub deployments). Each
//! request carries the project's token (when it has one), gets 10 s and at most 8 MiB of answer; a forge that is
//! unreachable or answers 5xx is asked again after a pause, and one that rate-limits is waited for when its limit
//! resets within a minute. A new comment is the one request not sent again once it may have reached the forge
//! unanswered: a second would be a duplicate, while the first, if it was made, is found again by its caller. Errors
//! name the request and what the forge said, never the token.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::HeaderMap;
use hyper::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use preview_forge::api::{Api, ApiRequest, Comment, CommitState, DeploymentState, rate_limit_wait};
use preview_forge::{Headers, PullState};
use preview_secrets::Secret;

const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_ANSWER: usize = 8 << 20;
/// Tries of a request the forge could not answer (unreachable, timed out, 5xx), the pause doubling between them.
const TRIES: u32 = 3;
const FIRST_PAUSE: Duration = Duration::from_millis(200);
/// A rate limit that resets later than this fails the request rather than holding up the caller.
const LONGEST_WAIT: Duration = Duration::from_secs(60);
const RATE_LIMIT_WAITS: u32 = 3;
const OPEN_PULL_PAGES: u32 = 50;
const CHANGED_PATH_PAGES: u32 = 30;
const COMMENT_PAGES: u32 = 30;

/// Why the forge gave no usable answer. The text names the request (method and path) and what the forge said;
/// never the token.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForgeError {
    #[error("{request}: the forge could not be reached after {TRIES} tries: {reason}")]
    Unreachable { request: String, reason: String },
    #[error(
        "{request}: no answer ({reason}); not sent again, since the forge may have acted on it all the same"
    )]
    NoAnswer { request: String, reason: String },
    #[error("{request}: the forge answered {status} {TRIES} times")]
    Unavailable { request: String, status: u16 },
    #[error("{request}: the forge answered {status}{}", said(.status, .message, .write))]
    Refused {
        request: String,
        status: u16,
        message: Option<String>,
        /// The request would have changed something (the hint differs).
        write: bool,
    },
    #[error("{request}: the forge's rate limit is used up; it resets in {}", in_words(.wait))]
    RateLimited { request: String, wait: Duration },
    #[error("{request}: {reason}")]
    Unreadable { request: String, reason: String },
    #[error(
        "{request}: there are more than {pages} pages; `preview` reads no more than that of one listing"
    )]
    TooManyPages { request: String, pages: u32 },
}

fn said(status: &u16, message: &Option<String>, write: &bool) -> String {
    let hint = match status {
        401 => " (is the project's forge token right?)",
        403 if *write => {
            " (may the forge token comment on the repository's pull requests and set its commit statuses and deployments?)"
        }
        403 => " (may the forge token read the repository's pull requests?)",
        404 => " (is `forge.repository` right, and may the token see it?)",
        _ => "",
    };
    match message {
        Some(message) => format!(": {message}{hint}"),
        None => hint.to_owned(),
    }
}

fn in_words(wait: &Duration) -> String {
    match wait.as_secs() {
        seconds @ 0..120 => format!("{seconds} s"),
        seconds => format!("{} min", seconds.div_ceil(60)),
    }
}

/// One repository's forge API, asked with the project's token.
pub(crate) struct ForgeClient {
    api: Api,
    token: Option<Secret>,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// An answer read whole.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

/// An answer's headers as `preview_forge` looks them up.
struct AnswerHeaders<'a>(&'a HeaderMap);

impl Headers for AnswerHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name)?.to_str().ok()
    }
}

/// Why one try failed.
enum Failure {
    /// No connection was made: the forge never saw the request. Worth another try.
    Unsent(String),
    /// No answer, though the request may have reached the forge (timed out, cut off). Worth another try unless
    /// the request must not be made twice.
    MaybeSent(String),
    Final(ForgeError),
}

/// Whether a request that may have reached the forge unanswered is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// Reads, and writes that do the same the second time (an edit, a status).
    Always,
    /// A write that would make a second thing of the same (a comment).
    OnlyUnsent,
}

impl ForgeClient {
    /// Trusts the system's certificate authorities; speaks HTTPS, or plain HTTP to an `http://` base.
    pub(crate) fn new(api: Api, token: Option<Secret>) -> Result<ForgeClient, String> {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("no TLS for the forge's API: {e}"))?
        .with_native_roots()
        .map_err(|e| {
            format!("no certificate authorities to check the forge's API with (install ca-certificates): {e}")
        })?
        .with_no_client_auth();
        Ok(ForgeClient::with_tls(api, token, tls))
    }

    fn with_tls(api: Api, token: Option<Secret>, tls: rustls::ClientConfig) -> ForgeClient {
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        ForgeClient {
            api,
            token,
            http: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// The repository's open pull requests, every page of them.
    pub(crate) async fn open_pulls(&self) -> Result<Vec<PullState>, ForgeError> {
        self.pages(
            |page| self.api.list_open(page),
            |body| self.api.read_list(body),
            OPEN_PULL_PAGES,
        )
        .await
    }

    /// One pull request; `None` when the forge has none of that number.
    pub(crate) async fn pull(&self, number: u64) -> Result<Option<PullState>, ForgeError> {
        let request = self.api.get(number);
        let answer = match self.send(&request, Resend::Always).await {
            Ok(answer) => answer,
            Err(ForgeError::Refused { status: 404, .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        self.api
            .read_one(&answer.body)
            .map(Some)
            .map_err(unreadable(&request))
    }

    /// The paths a pull request changes (where renamed files were, too), every page of them.
    pub(crate) async fn changed_paths(&self, number: u64) -> Result<Vec<String>, ForgeError> {
        self.pages(
            |page| self.api.files(number, page),
            |body| self.api.read_files(body),
            CHANGED_PATH_PAGES,
        )
        .await
    }

    /// The requests' builder: which forge and repository this client asks.
    #[allow(dead_code)] // used by the pull-request feedback
    pub(crate) fn api(&self) -> &Api {
        &self.api
    }

    /// The login (GitLab: username) the token belongs to: the author of `preview`'s own comments.
    #[allow(dead_code)] // used by the pull-request feedback
    pub(crate) async fn current_user(&self) -> Result<String, ForgeError> {
        let request = self.api.current_user();
        let answer = self.send(&request, Resend::Always).await?;
        self.api
            .read_user(&answer.body)
            .map_err(unreadable(&request))
    }

    /// A pull request's comments, oldest first, every page of them (GitLab: its notes, without system notes).
    #[allow(dead_code)] // used by the pull-request feedback
    pub(crate) async fn comments(&self, number: u64) -> Result<Vec<Comment>, ForgeError> {
        self.pages(
            |page| self.api.comments(number, page),
            |body| self.api.read_comments(body),
            COMMENT_PAGES,
        )
        .await
    }

    /// Comments on a pull request. Not sent again once it may have reached the forge unanswered (it may have been
    /// made): that is a `ForgeError::NoAnswer`, and the caller looks for the comment before making another.
    #[allow(dead_code)] // used by the pull-request feedback
    pub(crate) async fn create_comment(
        &self,
        number: u64,
        text: &str,
    ) -> Result<Comment, ForgeError> {
        let request = self.api.create_comment(number, text);
        let answer = self.send(&request, Resend::OnlyUnsent).await?;
        self.api
            .read_comment(&answer.body)
            .map_err(unreadable(&request))
    }

    /// Replaces a comment's text; `None` when the comment is gone (someone deleted it).
    #[allow(dead_code)] // used by the pull-request feedback
    pub(crate) async fn edit_comment(
        &self,
        number: u64,
        id: u64,
        text: &str,
    ) -> Result<Option<Comment>, ForgeError> {
        let request = self.api.edit_comment(number, id, text);
        let answer = match self.send(&request, Resend::Always).await {
            Ok(answer) => answer,
            Err(ForgeError::Refused { status: 404, .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        self.api
            .read_comment(&answer.body)
            .map(Some)
            .map_err(unreadable(&request))
    }

    /// Sets the commit status named `context` on `sha`.
    #[allow(dead_code)] // used by the pull-request feedback
    pub(crate) async fn set_status(
        &self,
        sha: &str,
        state: CommitState,
        context: &str,
        description: &str,
        target_url: Option<&str>,
    ) -> Result<(), ForgeError> {
        let request = self
            .api
            .commit_status(sha, state, context, description, target_url);
        self.send(&request, Resend::Always).await.map(drop)
    }

    /// Creates a deployment of `sha` to `environment`, and gives its id; `None` on a forge without deployments.
    #[allow(dead_code)] // used by the pull-request feedback
    pub(crate) async fn create_deployment(
        &self,
        sha: &str,
        environment: &str,
        description: &str,
    ) -> Result<Option<u64>, ForgeError> {
        let Some(request) = self.api.create_deployment(sha, environment, description) else {
            return Ok(None);
        };
        let answer = self.send(&request, Resend::Always).await?;
        self.api
            .read_deployment(&answer.body)
            .map(Some)
            .map_err(unreadable(&request))
    }

    /// Adds a status to deployment `id`; nothing on a forge without deployments.
    #[allow(dead_code)] // used by the pull-request feedback
    pub(crate) async fn set_deployment_status(
        &self,
        id: u64,
        state: DeploymentState,
        environment_url: Option<&str>,
        log_url: Option<&str>,
        description: &str,
    ) -> Result<(), ForgeError> {
        let Some(request) =
            self.api
                .deployment_status(id, state, environment_url, log_url, description)
        else {
            return Ok(());
        };
        self.send(&request, Resend::Always).await.map(drop)
    }

    /// Every page of a listing, from the first, up to `most` pages: a listing longer than that is an error rather
    /// than a part taken for the whole.
    async fn pages<T>(
        &self,
        request: impl Fn(u32) -> ApiRequest,
        read: impl Fn(&[u8]) -> Result<Vec<T>, String>,
        most: u32,
    ) -> Result<Vec<T>, ForgeError> {
        let mut items = Vec::new();
        let mut page = 1;
        for _ in 0..most {
            let request = request(page);
            let answer = self.send(&request, Resend::Always).await?;
            items.extend(read(&answer.body).map_err(unreadable(&request))?);
            match self.api.next_page(&AnswerHeaders(&answer.headers), page) {
                Some(next) => page = next,
                None => return Ok(items),
            }
        }
        Err(ForgeError::TooManyPages {
            request: described(&request(1)),
            pages: most,
        })
    }

    /// Sends a request until it is answered with a 2xx, trying again after 5xx, failed connections (those that may
    /// have reached the forge only when `resend` allows) and short rate limits.
    async fn send(&self, request: &ApiRequest, resend: Resend) -> Result<Answer, ForgeError> {
        let mut pause = FIRST_PAUSE;
        let mut tries = 0;
        let mut waits = 0;
        loop {
            tries += 1;
            let tried = self.try_once(request).await;
            self.count(match &tried {
                Ok(answer) => preview_metrics::status_class(answer.status),
                Err(_) => "error",
            });
            let answer = match tried {
                Ok(answer) => answer,
                Err(Failure::Final(error)) => return Err(error),
                Err(Failure::MaybeSent(reason)) if resend == Resend::OnlyUnsent => {
                    return Err(ForgeError::NoAnswer {
                        request: described(request),
                        reason,
                    });
                }
                Err(Failure::Unsent(reason) | Failure::MaybeSent(reason)) if tries >= TRIES => {
                    return Err(ForgeError::Unreachable {
                        request: described(request),
                        reason,
                    });
                }
                Err(Failure::Unsent(_) | Failure::MaybeSent(_)) => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    continue;
                }
            };
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            let headers = AnswerHeaders(&answer.headers);
            if let Some(wait) = rate_limit_wait(answer.status, &headers, &answer.body, now) {
                waits += 1;
                preview_metrics::metrics()
                    .forge_rate_limit_waits
                    .get_or_create(&preview_metrics::ForgeKindLabels {
                        forge: self.api.forge().name().to_owned(),
                    })
                    .inc();
                if wait > LONGEST_WAIT || waits > RATE_LIMIT_WAITS {
                    return Err(ForgeError::RateLimited {
                        request: described(request),
                        wait,
                    });
                }
                tokio::time::sleep(wait).await;
                continue;
            }
            match answer.status {
                200..=299 => return Ok(answer),
                500.. if tries < TRIES => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                500.. => {
                    return Err(ForgeError::Unavailable {
                        request: described(request),
                        status: answer.status,
                    });
                }
                status => {
                    return Err(ForgeError::Refused {
                        request: described(request),
                        status,
                        message: self.message(&answer.body),
                        write: request.method != "GET",
                    });
                }
            }
        }
    }

    /// Counts one call by its forge and how it was answered.
    fn count(&self, class: &'static str) {
        preview_metrics::metrics()
            .forge_requests
            .get_or_create(&preview_metrics::ForgeLabels {
                forge: self.api.forge().name().to_owned(),
                class,
            })
            .inc();
    }

    /// One try: the answer's status, headers and whole body, within the timeout.
    async fn try_once(&self, request: &ApiRequest) -> Result<Answer, Failure> {
        let invalid = |reason: String| {
            Failure::Final(ForgeError::Unreadable {
                request: described(request),
                reason,
            })
        };
        let mut builder = hyper::Request::builder()
            .method(request.method)
            .uri(&request.url)
            .header(USER_AGENT, concat!("preview/", env!("CARGO_PKG_VERSION")));
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        if request.body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        if let Some(token) = &self.token {
            let (name, value) = self.api.authorization(token.expose());
            // The error says nothing of the value, which holds the token.
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| invalid("the forge token is not valid in a header".to_owned()))?;
            value.set_sensitive(true);
            builder = builder.header(name, value);
        }
        let body = Full::new(Bytes::from(request.body.clone().unwrap_or_default()));
        let http_request = builder
            .body(body)
            .map_err(|e| invalid(format!("the request cannot be made: {e}")))?;
        let exchange = async {
            let response = self.http.request(http_request).await.map_err(|e| {
                if e.is_connect() {
                    Failure::Unsent(chain(&e))
                } else {
                    Failure::MaybeSent(chain(&e))
                }
            })?;
            let (parts, body) = response.into_parts();
            let body = match Limited::new(body, MAX_ANSWER).collect().await {
                Ok(body) => body.to_bytes(),
                Err(e) if e.is::<LengthLimitError>() => {
                    return Err(invalid(format!(
                        "the answer is larger than {} MiB",
                        MAX_ANSWER >> 20
                    )));
                }
                Err(e) => return Err(Failure::MaybeSent(chain(e.as_ref()))),
            };
            Ok(Answer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(Failure::MaybeSent(format!(
                    "no answer within {} s",
                    TIMEOUT.as_secs()
                )))
            })
    }

    /// What a forge's JSON error says (`{"message": …}` on all of them; OAuth's `error_description` on GitLab),
    /// shortened, and without the token should the forge quote it.
    fn message(&self, body: &[u8]) -> Option<String> {
        let json: serde_json::Value = serde_json::from_slice(body).ok()?;
        let message = match json
            .get("message")
            .or_else(|| json.get("error_description"))
            .or_else(|| json.get("error"))?
        {
            serde_json::Value::String(message) => message.clone(),
            // GitLab's validation errors are objects.
            other => other.to_string(),
        };
        // The token goes before the message is cut, so that no piece of it is left at the cut.
        let message = match &self.token {
            Some(token) if !token.expose().is_empty() => {
                message.replace(token.expose(), "[redacted]")
            }
            _ => message,
        };
        Some(message.chars().take(300).collect())
    }
}

fn unreadable(request: &ApiRequest) -> impl FnOnce(String) -> ForgeError {
    let request = described(request);
    |reason| ForgeError::Unreadable { request, reason }
}

/// A request as errors name it: its method and path, without the host.
fn described(request: &ApiRequest) -> String {
    let path = request
        .url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|slash| &rest[slash..]))
        .unwrap_or(&request.url);
    format!("{} {path}", request.method)
}

/// An error with its causes, which hyper keeps out of its own text.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
