//! HTTP/1.1 as the test forge speaks it: requests read off a stream (bodies by `Content-Length` only), answers
//! written with their length, and connections kept alive until the client sends `Connection: close` or goes away.
//! Stopping the server ends the connections still open, since a client's pool would otherwise hold them forever.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

/// More header lines than any client of a REST API sends: past this the request is refused as garbage.
const MAX_HEADERS: usize = 100;

pub(super) struct Request {
    pub method: String,
    /// The path as sent, still percent-encoded (GitLab's project ids are `group%2Fname` in it).
    pub path: String,
    pub raw_query: String,
    /// Decoded, in the order sent.
    pub query: Vec<(String, String)>,
    pub version: String,
    /// Names lowercased, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path and query, as a problem report names the request.
    pub fn target(&self) -> String {
        if self.raw_query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.raw_query)
        }
    }

    fn keep_alive(&self) -> bool {
        let connection = self.header("connection").unwrap_or("").to_ascii_lowercase();
        let says = |token: &str| connection.split(',').any(|t| t.trim() == token);
        if says("close") {
            false
        } else {
            says("keep-alive") || self.version == "HTTP/1.1"
        }
    }
}

pub(super) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: &serde_json::Value) -> Response {
        Response {
            status,
            headers: vec![(
                "Content-Type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: body.to_string().into_bytes(),
        }
    }

    pub fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn with(mut self, name: &str, value: impl ToString) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn with_all(mut self, headers: Vec<(String, String)>) -> Response {
        self.headers.extend(headers);
        self
    }

    pub fn has(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    fn write_to(&self, stream: &mut impl Write, close: bool) -> io::Result<()> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(&self.body)?;
        stream.flush()
    }
}

pub(super) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// What answers the requests: the forge.
pub(super) trait Handler: Send + Sync + 'static {
    fn answer(&self, request: &Request) -> Response;
    /// A request that could not be read as HTTP/1.1; the connection is closed after a 400.
    fn malformed(&self, why: &str);
}

/// The connections open now, so that stopping the server can end them.
#[derive(Default)]
pub(super) struct Connections {
    stopping: AtomicBool,
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, TcpStream>>,
}

impl Connections {
    /// Makes the accepting thread return: it sees the flag once woken by one last connection.
    pub fn stop(&self, address: SocketAddr) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(address);
    }

    /// Ends the connections still open (call once the accepting thread has returned).
    pub fn end_all(&self) {
        for stream in self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Accepts connections until stopped, each served by a thread of its own.
pub(super) fn serve<H: Handler>(
    listener: TcpListener,
    connections: Arc<Connections>,
    handler: Arc<H>,
) {
    for stream in listener.incoming() {
        if connections.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let id = connections.next.fetch_add(1, Ordering::SeqCst);
        if let Ok(clone) = stream.try_clone() {
            connections
                .open
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id, clone);
        }
        let connections = Arc::clone(&connections);
        let handler = Arc::clone(&handler);
        thread::spawn(move || {
            converse(stream, &*handler);
            connections
                .open
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        });
    }
}

fn converse(stream: TcpStream, handler: &impl Handler) {
    let Ok(reading) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reading);
    let mut writer = stream;
    loop {
        let request = match read_request(&mut reader) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(error) => {
                // A connection ended by `end_all` or by the client mid-request is no client's mistake.
                if error.kind() == io::ErrorKind::InvalidData {
                    handler.malformed(&error.to_string());
                    let _ = Response::text(400, "Bad Request\n").write_to(&mut writer, true);
                }
                return;
            }
        };
        let keep_alive = request.keep_alive();
        let response = handler.answer(&request);
        if response.write_to(&mut writer, !keep_alive).is_err() || !keep_alive {
            return;
        }
    }
}

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// One request, or `None` when the client closed the connection between requests.
fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut line = String::new();
    // Blank lines before a request line are tolerated, as RFC 9112 asks of servers.
    while line.trim_end_matches(['\r', '\n']).is_empty() {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
    }
    let mut parts = line.trim_end_matches(['\r', '\n']).split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid(format!(
            "the request line {:?} is not `METHOD TARGET VERSION`",
            line.trim_end()
        )));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("{version} is not HTTP/1.x")));
    }
    let (path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection ended inside a request",
            ));
        }
        let header = header.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(invalid(format!("the header line {header:?} has no colon")));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        if headers.len() > MAX_HEADERS {
            return Err(invalid(format!("more than {MAX_HEADERS} header lines")));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if header("transfer-encoding").is_some() {
        return Err(invalid(
            "a Transfer-Encoding body (the test forge reads Content-Length bodies only)".into(),
        ));
    }
    let length = match header("content-length") {
        None => 0,
        Some(value) => value
            .parse::<usize>()
            .map_err(|_| invalid(format!("Content-Length {value:?} is not a length")))?,
    };
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        raw_query: raw_query.to_string(),
        query: parse_query(raw_query),
        version: version.to_string(),
        headers,
        body,
    }))
}

fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                decode(&name.replace('+', " ")),
                decode(&value.replace('+', " ")),
            )
        })
        .collect()
}

/// Percent-decoding; a `%` not followed by two hex digits stays as it is.
pub(super) fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Percent-encoding of everything but RFC 3986's unreserved characters, as in a query value.
pub(super) fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// `name=value&…` with the values encoded and `page` set to `page`: last, as GitHub keeps the query it was sent,
/// or in name order, as GitLab (Rails) and Gitea (Go's `url.Values`) rebuild it.
pub(super) fn query_with_page(pairs: &[(String, String)], page: usize, sorted: bool) -> String {
    let mut pairs: Vec<(String, String)> = pairs
        .iter()
        .filter(|(name, _)| name != "page")
        .cloned()
        .chain([("page".to_string(), page.to_string())])
        .collect();
    if sorted {
        pairs.sort();
    }
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}
