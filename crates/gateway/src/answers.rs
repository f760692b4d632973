//! An app's answer made into the client's: HTTP/1.1 whatever the app speaks, framed only by its real body (never
//! by a `Content-Length` the body does not have), and read whole only when its exact size is known to be small.
//! An app is not trusted to frame its answers: one that sends more bytes than it announces must not write into
//! the next answer on the client's connection, and one that sends without end must not fill the daemon's memory.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body as _, Bytes, Frame, Incoming, SizeHint};
use hyper::header;
use hyper::{Response, StatusCode, Version};

use crate::deadlines::BoxError;
use crate::exchange::{Answer, AnswerBody};
use crate::forwarding_headers::forward_answer_headers;
use crate::pages::{Body, page};

/// Answers whose body is exactly known to be at most this size are read whole and written with the head in one go.
pub(crate) const SMALL_BODY: usize = 16 * 1024;

/// The client's answer from the app's `response`; `held` (the request's place at its backend) is kept until the
/// body has gone through.
pub(crate) async fn relay<H: Send + Sync + Unpin + 'static>(
    response: Response<Incoming>,
    held: H,
    who: impl FnOnce() -> String,
) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    // An HTTP/1.0 status line would end the client's keep-alive connection; the gateway speaks HTTP/1.1 to clients.
    parts.version = Version::HTTP_11;
    client_headers(&mut parts.headers);
    // The body's exact size, as its framing says it (hyper ends a body of announced length at that length); a
    // body of unknown length (chunked, or until the app closes) streams through, however long.
    let small = body
        .size_hint()
        .exact()
        .is_some_and(|length| length <= SMALL_BODY as u64);
    if !small {
        return Response::from_parts(parts, Holding { body, _held: held }.boxed());
    }
    // Bounded again, so that no buffered body can ever exceed the size it was judged by.
    match Limited::new(body, SMALL_BODY).collect().await {
        Ok(collected) => Response::from_parts(
            parts,
            Full::new(collected.to_bytes())
                .map_err(|never| match never {})
                .boxed(),
        ),
        Err(_) => page(
            StatusCode::BAD_GATEWAY,
            "The app did not answer",
            &format!("{} broke off its answer.", who()),
        ),
    }
}

/// The client's answer from an answer the gateway read itself ([`crate::exchange`]); `held` is kept until a streamed
/// body has gone through (a whole one has been read already).
pub(crate) fn relay_read<H: Send + Sync + Unpin + 'static>(
    answer: Answer,
    held: H,
) -> Response<Body> {
    let Answer {
        status,
        mut headers,
        body,
    } = answer;
    client_headers(&mut headers);
    let body = match body {
        AnswerBody::Whole(bytes) => Full::new(bytes).map_err(|never| match never {}).boxed(),
        AnswerBody::Streamed(body) => Holding { body, _held: held }.boxed(),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// An app's answer headers made the client's.
fn client_headers(headers: &mut hyper::HeaderMap) {
    // With a transfer encoding the body is framed by it (and read so), and any Content-Length is a lie that would
    // make the client take the rest of the body for the next answer.
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    forward_answer_headers(headers);
}

/// A body that holds something (a place at a backend, an open request) until it has been sent or dropped.
pub(crate) struct Holding<B, H> {
    pub(crate) body: B,
    pub(crate) _held: H,
}

impl<B, H: Unpin> hyper::body::Body for Holding<B, H>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body)
            .poll_frame(cx)
            .map(|frame| frame.map(|frame| frame.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
