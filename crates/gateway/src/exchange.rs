//! A request without a body sent to its app, and the app's answer read, by the gateway itself in the request's own
//! task, over the client connection's own upstream connection (a [`Wire`]): no other task, channel or wake-up
//! between the client's connection and the app's. Most requests are of this kind (`GET`, `HEAD`); those with a
//! body go through the HTTP library's client (`upstream`).
//!
//! An app is not trusted to frame its answer: its head is bounded in size and in headers, interim (1xx) answers are
//! skipped a few times at most, its length is taken from its framing as HTTP/1.1 says (RFC 9112, 6.3) — a transfer
//! encoding over any `Content-Length`, two lengths that differ refused — and a chunked body is decoded strictly. A
//! connection is used again only after an answer that ended exactly where its framing said, with nothing after it,
//! from an app that did not ask to close it.

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::answers::SMALL_BODY;
use crate::deadlines::BoxError;
use crate::routes::Backend;

/// At most so many headers in an answer's head (as many as the HTTP library's client takes).
pub(crate) const MAX_HEADERS: usize = 100;
/// Interim answers (1xx) skipped before the final one; an app that sends more never answers.
const MAX_INTERIM: usize = 8;
/// Room made in the read buffer before each read from the app.
const READ_SIZE: usize = 8 * 1024;
/// The longest chunk-size line (with its extensions), and the most bytes of trailers after the last chunk.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 16 * 1024;
/// The most room a kept connection's buffers keep while it waits for the next request.
const IDLE_ROOM: usize = 16 * 1024;

/// One connection to an app, kept by the client connection it serves between requests.
pub(crate) struct Wire {
    stream: TcpStream,
    /// Read from the app and not used yet.
    read: bytes::BytesMut,
    /// The last request head written, its room kept for the next.
    head: Vec<u8>,
    /// The most bytes `read` held at once since the wire was last kept: its room is at least that.
    peak: usize,
    /// The backend the connection goes to, and its gate.
    pub(crate) backend: Backend,
    pub(crate) gate: Arc<Semaphore>,
}

/// Where a client connection keeps its [`Wire`]; an answer streamed after the request's task has ended puts the
/// wire back there itself.
pub(crate) type Slot = Arc<Mutex<Option<Wire>>>;

/// Why an app's answer could not be read.
#[derive(Debug)]
pub(crate) enum BadAnswer {
    /// Reading from the app failed in the middle of an answer.
    Io,
    /// No new connection could be made to send a request again on.
    Dial(io::Error),
    /// The request could not be sent, or the connection ended or failed before any byte of an answer came.
    Closed,
    /// The answer's head is larger than the limit.
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] headers.
    TooManyHeaders,
    /// The head is not an HTTP/1.x answer's.
    NotHttp,
    /// More than [`MAX_INTERIM`] interim answers.
    EndlessInterim,
    /// A `Content-Length` that is not a length, or two that differ.
    BadLength,
    /// The app closed the connection in the middle of its answer.
    BrokenOff,
}

impl BadAnswer {
    /// Completes "… did not answer: ".
    pub(crate) fn reason(&self, answer_head: usize) -> String {
        match self {
            BadAnswer::Io | BadAnswer::Dial(_) => "the connection to it failed".to_owned(),
            BadAnswer::Closed => "it closed the connection before answering".to_owned(),
            BadAnswer::HeadTooLarge => {
                format!(
                    "its answer's head is larger than {} KiB",
                    answer_head / 1024
                )
            }
            BadAnswer::TooManyHeaders => format!("its answer has more than {MAX_HEADERS} headers"),
            BadAnswer::NotHttp => "its answer is not HTTP/1.1".to_owned(),
            BadAnswer::EndlessInterim => format!("it sent more than {MAX_INTERIM} interim answers"),
            BadAnswer::BadLength => "its answer's Content-Length is not one length".to_owned(),
            BadAnswer::BrokenOff => "it broke off its answer".to_owned(),
        }
    }
}

/// The final answer of an app: status, headers as the app sent them, and the body.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: AnswerBody,
}

pub(crate) enum AnswerBody {
    /// The whole body, read already (none, or a known length of at most [`SMALL_BODY`]).
    Whole(Bytes),
    /// A body read as the client takes it.
    Streamed(WireBody),
}

/// How the body of an answer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// After so many more bytes.
    Length(u64),
    /// With its last chunk (decoding in the given state).
    Chunked(Chunk),
    /// When the app closes the connection.
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// A chunk-size line is next.
    Size,
    /// So many bytes of a chunk's data are next.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines until an empty one, after the last chunk; so many bytes of them so far.
    Trailers(usize),
}

/// Whether a request with `method` may be sent again when the app closed the connection before answering it: the
/// app may have received it and acted on it, which only a safe method allows (RFC 9110, 9.2.1) — not even `PUT` or
/// `DELETE`, idempotent by the standard but not always in a pull request's code.
fn safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

impl Wire {
    /// A new connection to `backend`, gated by `gate`.
    pub(crate) async fn dial(backend: Backend, gate: Arc<Semaphore>) -> io::Result<Wire> {
        let stream = crate::upstream::dial(backend.address, backend.network.as_ref()).await?;
        Ok(Wire {
            stream,
            read: bytes::BytesMut::new(),
            head: Vec::new(),
            peak: 0,
            backend,
            gate,
        })
    }

    /// Whether the connection can carry another request: as far as the runtime has seen, the app has sent nothing
    /// since its last answer — neither bytes that belong to no request nor the end of the connection. Costs no
    /// system call when the runtime saw nothing arrive since the last read (which drained the socket).
    pub(crate) async fn is_quiet(&mut self) -> bool {
        let stream = &self.stream;
        let readable = std::future::poll_fn(|cx| Poll::Ready(stream.poll_read_ready(cx))).await;
        match readable {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readiness may be stale: only a read tells.
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Sends the head of a request without a body: `method`, `target` (a path and query) and `headers`.
    async fn send(&mut self, method: &Method, target: &str, headers: &HeaderMap) -> io::Result<()> {
        let head = &mut self.head;
        head.clear();
        head.extend_from_slice(method.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(target.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in headers {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        self.stream.write_all(&self.head).await
    }

    /// Reads more of the app's answer; `Ok(0)` at the end of the connection.
    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_SIZE / 2 {
            self.read.reserve(READ_SIZE);
        }
        let read = pin!(self.stream.read_buf(&mut self.read)).poll(cx);
        self.peak = self.peak.max(self.read.len());
        read
    }

    /// Reads the head of the final answer, skipping interim ones. [`BadAnswer::Closed`] when the connection ended
    /// or failed before any byte of an answer came.
    ///
    /// A head is parsed when its first bytes come and then only once the blank line that ends it has come: an app
    /// that sends its head a byte at a time does not make the gateway parse it again at every byte.
    async fn read_head(&mut self, limit: usize) -> Result<Head, BadAnswer> {
        let mut interim = 0;
        // How much of the buffer has been looked at for the end of the head.
        let mut searched = 0;
        loop {
            if !self.read.is_empty()
                && (searched == 0 || has_head_end(&self.read, searched))
                && let Some(head) = parse_head(&self.read, limit)?
            {
                let _ = self.read.split_to(head.length);
                searched = 0;
                if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS
                {
                    interim += 1;
                    if interim > MAX_INTERIM {
                        return Err(BadAnswer::EndlessInterim);
                    }
                    continue;
                }
                return Ok(head);
            }
            if self.read.len() >= limit {
                return Err(BadAnswer::HeadTooLarge);
            }
            searched = self.read.len();
            let nothing_came = interim == 0 && self.read.is_empty();
            match self.fill().await {
                Ok(0) | Err(_) if nothing_came => return Err(BadAnswer::Closed),
                Ok(0) => return Err(BadAnswer::BrokenOff),
                Ok(_) => {}
                Err(_) => return Err(BadAnswer::Io),
            }
        }
    }
}

/// Whether `buffer` holds the blank line that ends a head (a line feed, then an optional carriage return, then a
/// line feed), looking only at what came after its first `searched` bytes and at the two before, where it may begin.
fn has_head_end(buffer: &[u8], searched: usize) -> bool {
    let from = searched.saturating_sub(2);
    buffer[from..].windows(2).enumerate().any(|(at, pair)| {
        pair[0] == b'\n'
            && (pair[1] == b'\n' || (pair[1] == b'\r' && buffer.get(from + at + 2) == Some(&b'\n')))
    })
}

/// An answer's head as read.
struct Head {
    /// Its length in bytes.
    length: usize,
    status: StatusCode,
    headers: HeaderMap,
    /// The app keeps the connection open after the answer (HTTP/1.1 without `Connection: close`).
    keep: bool,
}

/// Parses a complete answer head at the start of `buffer`; `None` while it is incomplete.
fn parse_head(buffer: &bytes::BytesMut, limit: usize) -> Result<Option<Head>, BadAnswer> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut answer = httparse::Response::new(&mut []);
    let length = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut answer,
        buffer,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(BadAnswer::TooManyHeaders),
        Err(_) => return Err(BadAnswer::NotHttp),
    };
    if length > limit {
        return Err(BadAnswer::HeadTooLarge);
    }
    let status = answer
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(BadAnswer::NotHttp)?;
    let http_11 = answer.version == Some(1);
    let mut keep = http_11;
    let (mut transfer_encoding, mut content_length) = (false, false);
    let mut headers = HeaderMap::with_capacity(answer.headers.len() + 2);
    for found in answer.headers.iter() {
        let name = HeaderName::from_bytes(found.name.as_bytes()).map_err(|_| BadAnswer::NotHttp)?;
        let value = HeaderValue::from_bytes(found.value).map_err(|_| BadAnswer::NotHttp)?;
        if name == header::CONNECTION && has_token(&value, "close") {
            keep = false;
        }
        transfer_encoding |= name == header::TRANSFER_ENCODING;
        content_length |= name == header::CONTENT_LENGTH;
        headers.append(name, value);
    }
    // An HTTP/1.0 answer cannot be framed by a transfer encoding (RFC 9112, 6.1); one framed by it and by a length
    // is read by the encoding, and its connection not trusted with another answer (6.3).
    if transfer_encoding && !http_11 {
        return Err(BadAnswer::NotHttp);
    }
    keep &= !(transfer_encoding && content_length);
    Ok(Some(Head {
        length,
        status,
        headers,
        keep,
    }))
}

/// Whether a comma-separated header value lists `token` (in any case).
fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .as_bytes()
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// How the body of an answer with `status` and `headers` to a request with `method` is framed.
fn framing(method: &Method, status: StatusCode, headers: &HeaderMap) -> Result<Framing, BadAnswer> {
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Length(0));
    }
    if let Some(last) = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
    {
        // The last coding decides; a body with another is read until the app closes.
        let chunked = last
            .as_bytes()
            .rsplit(|b| *b == b',')
            .next()
            .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        return Ok(if chunked {
            Framing::Chunked(Chunk::Size)
        } else {
            Framing::UntilClose
        });
    }
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for part in value.as_bytes().split(|b| *b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return Err(BadAnswer::BadLength);
            }
            // Leading zeros say nothing; at most 19 digits are left of a length that fits.
            let significant = part
                .iter()
                .position(|digit| *digit != b'0')
                .map_or(&part[..0], |first| &part[first..]);
            if significant.len() > 19 {
                return Err(BadAnswer::BadLength);
            }
            let parsed = significant
                .iter()
                .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
            if length.is_some_and(|earlier| earlier != parsed) {
                return Err(BadAnswer::BadLength);
            }
            length = Some(parsed);
        }
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

/// Sends `request` (which has no body) over `wire` and reads the app's answer; a body of known length up to
/// [`SMALL_BODY`] is read whole. When the answer is over (or will be, for a streamed body) and the app keeps the
/// connection, the wire goes back to `slot`.
///
/// A connection that was used before (`reused`) may have been closed by the app just as the request went out; a safe
/// request (`GET`, `HEAD`, `OPTIONS`, `TRACE`) that got no byte of answer is then sent once more, on a new connection
/// from `reconnect`.
pub(crate) async fn exchange<C, F>(
    mut wire: Wire,
    reused: bool,
    reconnect: C,
    request: &hyper::http::request::Parts,
    answer_head: usize,
    slot: &Slot,
) -> Result<Answer, BadAnswer>
where
    C: FnOnce() -> F,
    F: Future<Output = Result<Wire, BadAnswer>>,
{
    let method = &request.method;
    // An absolute URI without a path (`http://host?x`) names the root.
    let target = match request.uri.path_and_query().map(|p| p.as_str()) {
        Some(target) if target.starts_with('/') || target == "*" => Cow::Borrowed(target),
        Some(query) => Cow::Owned(format!("/{query}")),
        None => Cow::Borrowed("/"),
    };
    let target = target.as_ref();
    let once = async |wire: &mut Wire| {
        wire.send(method, target, &request.headers)
            .await
            .map_err(|_| BadAnswer::Closed)?;
        wire.read_head(answer_head).await
    };
    let head = match once(&mut wire).await {
        Ok(head) => head,
        Err(BadAnswer::Closed) if reused && safe(method) => {
            // The old connection goes before the new one is made: one descriptor to the app at a time.
            drop(wire);
            wire = reconnect().await?;
            once(&mut wire).await?
        }
        Err(error) => return Err(error),
    };
    let Head {
        status,
        headers,
        keep,
        ..
    } = head;
    let framing = framing(method, status, &headers)?;
    // Nothing may follow a protocol switch the gateway did not ask for.
    let keep = keep && status != StatusCode::SWITCHING_PROTOCOLS;
    match framing {
        Framing::Length(length) if length <= SMALL_BODY as u64 => {
            let length = length as usize;
            while wire.read.len() < length {
                match wire.fill().await {
                    Ok(0) => return Err(BadAnswer::BrokenOff),
                    Ok(_) => {}
                    Err(_) => return Err(BadAnswer::Io),
                }
            }
            let body = wire.read.split_to(length).freeze();
            if keep {
                put_back(slot, wire);
            }
            Ok(Answer {
                status,
                headers,
                body: AnswerBody::Whole(body),
            })
        }
        framing => Ok(Answer {
            status,
            headers,
            body: AnswerBody::Streamed(WireBody {
                wire: Some(wire),
                framing,
                home: keep.then(|| Arc::clone(slot)),
            }),
        }),
    }
}

/// Keeps `wire` in `slot` for the client connection's next request — only when nothing follows the answer in what
/// was read from the app (bytes no request asked for), and without the room a large head or answer made in its
/// buffers: an idle connection holds little memory whatever the last exchange was.
fn put_back(slot: &Slot, mut wire: Wire) {
    if !wire.read.is_empty() {
        return;
    }
    if wire.head.capacity() > IDLE_ROOM {
        wire.head = Vec::new();
    }
    // Its room is not what `capacity` says once parts of it were handed out; it grew to hold the most it held.
    if wire.peak > IDLE_ROOM - READ_SIZE {
        wire.read = bytes::BytesMut::new();
    }
    wire.peak = 0;
    if let Ok(mut kept) = slot.lock() {
        *kept = Some(wire);
    }
}

/// A body read from the app as the client takes it; the wire goes back to its client connection at the end (when
/// the app keeps it), and is closed if the body is dropped before.
pub(crate) struct WireBody {
    wire: Option<Wire>,
    framing: Framing,
    home: Option<Slot>,
}

impl WireBody {
    /// The body is over: the wire goes home if nothing follows the answer on it.
    fn finish(&mut self) {
        if let (Some(wire), Some(home)) = (self.wire.take(), self.home.take()) {
            put_back(&home, wire);
        }
    }

    /// Ends a body the app broke off or framed wrongly, and its connection.
    fn broken(&mut self, why: &'static str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.wire = None;
        Poll::Ready(Some(Err(Box::new(io::Error::other(why)))))
    }
}

impl Body for WireBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(wire) = this.wire.as_mut() else {
                return Poll::Ready(None);
            };
            match this.framing {
                Framing::Length(0) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(remaining) => {
                    if !wire.read.is_empty() {
                        let take = wire
                            .read
                            .len()
                            .min(remaining.try_into().unwrap_or(usize::MAX));
                        this.framing = Framing::Length(remaining - take as u64);
                        let data = wire.read.split_to(take).freeze();
                        // The client's side asks no more of a body whose exact length has come.
                        if this.framing == Framing::Length(0) {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Framing::UntilClose => {
                    if !wire.read.is_empty() {
                        let data = wire.read.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Framing::Chunked(state) => match step_chunked(&mut wire.read, state) {
                    Ok(Step::Data(data, next)) => {
                        this.framing = Framing::Chunked(next);
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(Step::Next(next)) => {
                        this.framing = Framing::Chunked(next);
                        continue;
                    }
                    Ok(Step::End) => {
                        this.framing = Framing::Length(0);
                        continue;
                    }
                    Ok(Step::More) => {}
                    Err(why) => return this.broken(why),
                },
            }
            // More is needed from the app.
            let Some(wire) = this.wire.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(wire.poll_fill(cx)) {
                Ok(0) if this.framing == Framing::UntilClose => {
                    this.wire = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.broken("the app broke off its answer"),
                Ok(_) => {}
                Err(_) => return this.broken("the connection to the app failed"),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.wire.is_none() || self.framing == Framing::Length(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(remaining) => SizeHint::with_exact(remaining),
            _ => SizeHint::default(),
        }
    }
}

/// What decoding a chunked body did with what had been read.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Data of a chunk, and the state after it.
    Data(Bytes, Chunk),
    /// A line was taken; go on in this state.
    Next(Chunk),
    /// The body is over (its trailers, dropped, included).
    End,
    /// More must be read first.
    More,
}

/// One step of decoding a chunked body from `read` in `state` (RFC 9112, 7.1): sizes in hexadecimal with optional
/// extensions, lines ended by CRLF, trailers dropped.
fn step_chunked(read: &mut bytes::BytesMut, state: Chunk) -> Result<Step, &'static str> {
    match state {
        Chunk::Size => {
            let Some(end) = line_end(read, MAX_CHUNK_LINE)? else {
                return Ok(Step::More);
            };
            let line = read.split_to(end + 2);
            let size = &line[..end];
            let digits = size
                .iter()
                .position(|b| !b.is_ascii_hexdigit())
                .unwrap_or(size.len());
            let rest = trim_blanks(&size[digits..]);
            // Leading zeros say nothing; at most 16 digits are left of a size that fits.
            let significant = size[..digits]
                .iter()
                .position(|digit| *digit != b'0')
                .map_or(&size[..0], |first| &size[first..digits]);
            // After the size: blanks, or extensions after a `;`.
            if digits == 0 || significant.len() > 16 || !(rest.is_empty() || rest.starts_with(b";"))
            {
                return Err("the app's chunked answer has a chunk size that is not one");
            }
            let size = significant.iter().fold(0u64, |n, digit| {
                n * 16 + u64::from((*digit as char).to_digit(16).unwrap_or(0))
            });
            Ok(Step::Next(if size == 0 {
                Chunk::Trailers(0)
            } else {
                Chunk::Data(size)
            }))
        }
        Chunk::Data(remaining) => {
            if read.is_empty() {
                return Ok(Step::More);
            }
            let take = read.len().min(remaining.try_into().unwrap_or(usize::MAX));
            let data = read.split_to(take).freeze();
            let next = match remaining - take as u64 {
                0 => Chunk::DataEnd,
                left => Chunk::Data(left),
            };
            Ok(Step::Data(data, next))
        }
        Chunk::DataEnd => {
            if read.len() < 2 {
                return Ok(Step::More);
            }
            if &read[..2] != b"\r\n" {
                return Err("the app's chunked answer has a chunk longer than its size");
            }
            let _ = read.split_to(2);
            Ok(Step::Next(Chunk::Size))
        }
        Chunk::Trailers(so_far) => {
            let Some(end) = line_end(read, MAX_TRAILERS - so_far)? else {
                return Ok(Step::More);
            };
            let _ = read.split_to(end + 2);
            Ok(if end == 0 {
                Step::End
            } else {
                Step::Next(Chunk::Trailers(so_far + end + 2))
            })
        }
    }
}

/// `text` without the spaces and tabs around it.
fn trim_blanks(text: &[u8]) -> &[u8] {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = text.iter().position(|b| !blank(b)).unwrap_or(text.len());
    let end = text
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |last| last + 1);
    &text[start..end]
}

/// Where the CRLF that ends the line at the start of `read` is; `None` while it has not arrived, an error when the
/// line with its CRLF is longer than `limit` or a bare LF ends it.
fn line_end(read: &[u8], limit: usize) -> Result<Option<usize>, &'static str> {
    match read.iter().take(limit).position(|b| *b == b'\n') {
        Some(newline) if newline > 0 && read[newline - 1] == b'\r' => Ok(Some(newline - 1)),
        Some(_) => Err("the app's chunked answer has a line not ended by CRLF"),
        None if read.len() >= limit => Err("the app's chunked answer has a line too long"),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8]) -> Result<(Vec<u8>, bool), &'static str> {
        let mut read = bytes::BytesMut::from(input);
        let (mut state, mut body) = (Chunk::Size, Vec::new());
        loop {
            match step_chunked(&mut read, state)? {
                Step::Data(data, next) => {
                    body.extend_from_slice(&data);
                    state = next;
                }
                Step::Next(next) => state = next,
                Step::End => return Ok((body, read.is_empty())),
                Step::More => return Ok((body, false)),
            }
        }
    }

    #[test]
    fn chunked_bodies_are_decoded_strictly() {
        assert_eq!(
            decode(b"5\r\nhello\r\n1;name=value\r\n!\r\n0\r\nX-Trailer: t\r\n\r\n"),
            Ok((b"hello!".to_vec(), true))
        );
        // Incomplete: what arrived so far, and no end.
        assert_eq!(decode(b"5\r\nhel"), Ok((b"hel".to_vec(), false)));
        // Blanks after the size, and leading zeros beyond 16 digits.
        assert_eq!(
            decode(b"5 \r\nhello\r\n00000000000000000001\r\n!\r\n0\r\n\r\n"),
            Ok((b"hello!".to_vec(), true))
        );
        assert_eq!(
            decode(b"A\r\n0123456789\r\n0\r\n\r\nrest").map(|d| d.1),
            Ok(false)
        );
        for bad in [
            &b"5\r\nhello!\r\n0\r\n\r\n"[..],
            b"x\r\nhello\r\n",
            b"5 junk\r\nhello\r\n",
            b"5\nhello\r\n",
            // Data longer than its size, the two bytes after it taken for the CRLF.
            b"5\r\nhelloXY0\r\n\r\n",
            b"5\r\r\nhello\r\n",
            b"-5\r\nhello\r\n",
            b"11111111111111111\r\n",
            b"0\r\nX-Trailer: t\n\r\n",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = format!("5;{}\r\nhello\r\n", "e".repeat(MAX_CHUNK_LINE));
        assert!(decode(long.as_bytes()).is_err());
        let trailers = format!("0\r\n{}\r\n", "X-T: t\r\n".repeat(MAX_TRAILERS / 8 + 1));
        assert!(
            decode(trailers.as_bytes()).is_err(),
            "trailers are bounded in all"
        );
    }

    #[test]
    fn the_framing_follows_http_1_1() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.append(
                    HeaderName::from_bytes(name.as_bytes()).expect("name"),
                    HeaderValue::from_str(value).expect("value"),
                );
            }
            map
        };
        let ok = StatusCode::OK;
        let cl = headers(&[("content-length", "12")]);
        assert_eq!(
            framing(&Method::GET, ok, &cl).ok(),
            Some(Framing::Length(12))
        );
        assert_eq!(
            framing(&Method::HEAD, ok, &cl).ok(),
            Some(Framing::Length(0))
        );
        for status in [StatusCode::NO_CONTENT, StatusCode::NOT_MODIFIED] {
            assert_eq!(
                framing(&Method::GET, status, &cl).ok(),
                Some(Framing::Length(0))
            );
        }
        let both = headers(&[
            ("content-length", "12"),
            ("transfer-encoding", "gzip, chunked"),
        ]);
        assert_eq!(
            framing(&Method::GET, ok, &both).ok(),
            Some(Framing::Chunked(Chunk::Size))
        );
        let gzip = headers(&[("transfer-encoding", "chunked, gzip")]);
        assert_eq!(
            framing(&Method::GET, ok, &gzip).ok(),
            Some(Framing::UntilClose)
        );
        assert_eq!(
            framing(&Method::GET, ok, &HeaderMap::new()).ok(),
            Some(Framing::UntilClose)
        );
        let same = headers(&[("content-length", "7, 7"), ("content-length", "7")]);
        assert_eq!(
            framing(&Method::GET, ok, &same).ok(),
            Some(Framing::Length(7))
        );
        let zeros = headers(&[("content-length", "000000000000000000000000012")]);
        assert_eq!(
            framing(&Method::GET, ok, &zeros).ok(),
            Some(Framing::Length(12))
        );
        for bad in ["7, 8", "-1", "", "1e3", "0x10", "99999999999999999999"] {
            let map = headers(&[("content-length", bad)]);
            assert!(
                matches!(framing(&Method::GET, ok, &map), Err(BadAnswer::BadLength)),
                "{bad}"
            );
        }
        let two = headers(&[("content-length", "7"), ("content-length", "8")]);
        assert!(matches!(
            framing(&Method::GET, ok, &two),
            Err(BadAnswer::BadLength)
        ));
    }

    #[test]
    fn the_end_of_a_head_is_found_in_what_came_last() {
        let head = b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n";
        // Wherever the bytes came apart, the end is found once its last byte came, and not before.
        for split in 1..head.len() {
            for end in split..=head.len() {
                let found = has_head_end(&head[..end], split);
                assert_eq!(found, end == head.len(), "came {split}, then up to {end}");
            }
        }
        assert!(has_head_end(b"HTTP/1.1 200 OK\n\n", 15));
        assert!(has_head_end(b"HTTP/1.1 200 OK\r\n\n", 17));
        assert!(
            !has_head_end(b"HTTP/1.1 200 OK\r\n\r\n", 19),
            "looked at already"
        );
    }

    #[test]
    fn heads_are_bounded_and_keep_alive_is_read() {
        let parse = |text: &str, limit| {
            parse_head(&bytes::BytesMut::from(text.as_bytes()), limit)
                .map(|found| found.map(|head| (head.length, head.status.as_u16(), head.keep)))
        };
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(
            parse(head, 1024).ok(),
            Some(Some((head.len() - 2, 200, true)))
        );
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\nContent-Len", 1024).ok(),
            Some(None)
        );
        assert!(matches!(parse(head, 16), Err(BadAnswer::HeadTooLarge)));
        let close = "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\n\r\n";
        assert_eq!(
            parse(close, 1024).ok(),
            Some(Some((close.len(), 200, false)))
        );
        let chunked_old = "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(parse(chunked_old, 1024), Err(BadAnswer::NotHttp)));
        let both = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(parse(both, 1024).ok(), Some(Some((both.len(), 200, false))));
        let old = "HTTP/1.0 200 OK\r\n\r\n";
        assert_eq!(parse(old, 1024).ok(), Some(Some((old.len(), 200, false))));
        assert!(matches!(
            parse("SSH-2.0-OpenSSH\r\n\r\n", 1024),
            Err(BadAnswer::NotHttp)
        ));
        assert!(matches!(
            parse("HTTP/1.1 20 OK\r\n\r\n", 1024),
            Err(BadAnswer::NotHttp)
        ));
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "X-A: a\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(matches!(
            parse(&many, 64 * 1024),
            Err(BadAnswer::TooManyHeaders)
        ));
    }
}
