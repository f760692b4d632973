//! What the gateway answers itself: short pages people can read, naming the problem and the environment — never an
//! address inside the machine or a credential.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

pub type Body = http_body_util::combinators::BoxBody<Bytes, crate::deadlines::BoxError>;

pub(crate) fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A small page people can read, with the status in the title.
pub(crate) fn page(status: StatusCode, title: &str, message: &str) -> Response<Body> {
    page_with_head(status, title, message, "")
}

/// How long a client is asked to wait before it asks again for an environment that sleeps or is waking up.
pub(crate) const RETRY_AFTER_SECONDS: u32 = 5;

/// 503 with `Retry-After` for an environment that sleeps or is waking up; with `reload`, the page (for a browser)
/// asks again by itself after as long.
pub(crate) fn retry_later(title: &str, message: &str, reload: bool) -> Response<Body> {
    let head = if reload {
        format!("<meta http-equiv=\"refresh\" content=\"{RETRY_AFTER_SECONDS}\">")
    } else {
        String::new()
    };
    let mut response = page_with_head(StatusCode::SERVICE_UNAVAILABLE, title, message, &head);
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn page_with_head(status: StatusCode, title: &str, message: &str, head: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html><meta charset=utf-8>{head}<title>{code} {title} · preview</title>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\"><h1>{code} · {title}</h1><p>{message}</p>\
         <p style=\"color:#666\">preview gateway</p></body>\n",
        code = status.as_u16()
    );
    let mut response = whole(Bytes::from(html), "text/html; charset=utf-8");
    *response.status_mut() = status;
    response
}

/// A 200 answer with `body` of type `content_type`.
pub(crate) fn whole(body: Bytes, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// An empty answer with `status` sending the client to `location`.
pub(crate) fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut response = Response::new(empty());
    *response.status_mut() = status;
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}
