//! Talking to the daemon: its address and token come from the client config file it wrote.

use std::path::Path;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use preview_server::{ClientConfig, client_config_path};
use serde_json::Value;

use crate::exit::Failure;

pub struct Client {
    data_dir: std::path::PathBuf,
    authority: String,
    token: String,
}

/// How long a command waits for a daemon that is starting (it holds its data directory but does not answer yet):
/// `preview serve & preview env list` works in a script.
const STARTING_PATIENCE: Duration = Duration::from_secs(60);

/// Whether a daemon holds `data_dir` (its `daemon.lock` is locked), read from `/proc/locks` so that looking takes
/// no lock a starting daemon could meet.
fn daemon_holds(data_dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(metadata) = std::fs::metadata(data_dir.join("daemon.lock")) else {
        return false;
    };
    let device = metadata.dev();
    let (major, minor) = (
        (device >> 8) & 0xfff,
        (device & 0xff) | ((device >> 12) & 0xfff00),
    );
    let wanted = format!("{major:02x}:{minor:02x}:{}", metadata.ino());
    std::fs::read_to_string("/proc/locks").is_ok_and(|locks| {
        locks
            .lines()
            .any(|line| line.contains("FLOCK") && line.split_whitespace().any(|f| f == wanted))
    })
}

impl Client {
    pub fn from_data_dir(data_dir: &Path) -> Result<Client, Failure> {
        let started = Instant::now();
        loop {
            match Client::read(data_dir) {
                Ok(client) => return Ok(client),
                Err(_) if daemon_holds(data_dir) && started.elapsed() < STARTING_PATIENCE => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(failure) => return Err(failure),
            }
        }
    }

    fn read(data_dir: &Path) -> Result<Client, Failure> {
        let path = client_config_path(data_dir);
        let text = std::fs::read(&path).map_err(|_| {
            Failure::invalid(format!(
                "no daemon found: {} does not exist; start one with `preview serve` (or point --data-dir / PREVIEW_HOME at its data directory)",
                path.display()
            ))
        })?;
        let config: ClientConfig = serde_json::from_slice(&text).map_err(|e| {
            Failure::invalid(format!("{} is not a client config: {e}", path.display()))
        })?;
        let authority = config
            .address
            .strip_prefix("http://")
            .ok_or_else(|| {
                Failure::invalid(format!(
                    "{}: the address must start with http://",
                    path.display()
                ))
            })?
            .trim_end_matches('/')
            .to_owned();
        Ok(Client {
            data_dir: data_dir.to_path_buf(),
            authority,
            token: config.token,
        })
    }

    /// The daemon's URL for `path`, as this client reaches it.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.authority)
    }

    pub async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.request(Method::GET, path, None).await
    }

    /// Where the daemon listens (`host:port`).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value, Failure> {
        self.request(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, Failure> {
        self.request(Method::DELETE, path, None).await
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        // A daemon that is starting (again) does not answer yet: wait for it, with the address and token it
        // publishes when it listens.
        let started = Instant::now();
        let mut client = None::<Client>;
        loop {
            let current = client.as_ref().unwrap_or(self);
            match current
                .request_once(method.clone(), path, body.clone())
                .await
            {
                Err(Unreachable(_))
                    if daemon_holds(&self.data_dir) && started.elapsed() < STARTING_PATIENCE =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    client = Client::read(&self.data_dir).ok();
                }
                Err(Unreachable(failure)) => return Err(failure),
                Ok(answer) => return answer,
            }
        }
    }

    /// One request. `Err(Unreachable)` when no connection could be made (nothing was sent, so it may be made
    /// again); otherwise the daemon's answer, or why there was none.
    async fn request_once(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Result<Value, Failure>, Unreachable> {
        let unreachable = |e: &dyn std::fmt::Display| {
            Failure::invalid(format!(
                "cannot reach the daemon at {}: {e}; is `preview serve` running?",
                self.authority
            ))
        };
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| Unreachable(unreachable(&e)))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Unreachable(unreachable(&e)))?;
        tokio::spawn(connection);
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let request = match hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority)
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(bytes)))
        {
            Ok(request) => request,
            Err(e) => return Ok(Err(Failure::internal(e.to_string()))),
        };
        // From here on the request may have reached the daemon: it is not made again.
        let answered = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| unreachable(&e))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(&e))?
                .to_bytes();
            Ok::<_, Failure>((status, body))
        };
        let (status, body) = match answered.await {
            Ok(answer) => answer,
            Err(failure) => return Ok(Err(failure)),
        };
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(Ok(value));
        }
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the daemon answered {status}"));
        if status.is_server_error() {
            Ok(Err(Failure::internal(message)))
        } else {
            let code = value["error"]["code"].as_str().unwrap_or("invalid_input");
            Ok(Err(Failure::coded(code, message)))
        }
    }
}

/// No connection to the daemon could be made.
struct Unreachable(Failure);
