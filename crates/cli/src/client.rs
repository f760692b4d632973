//! Talking to the daemon: its address and token come from the client config file it wrote.

use std::path::Path;

use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use preview_server::{ClientConfig, client_config_path};
use serde_json::Value;

use crate::exit::Failure;

pub struct Client {
    authority: String,
    token: String,
}

impl Client {
    pub fn from_data_dir(data_dir: &Path) -> Result<Client, Failure> {
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
            authority,
            token: config.token,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.request(Method::GET, path, None).await
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
        let unreachable = |e: &dyn std::fmt::Display| {
            Failure::invalid(format!(
                "cannot reach the daemon at {}: {e}; is `preview serve` running?",
                self.authority
            ))
        };
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(connection);
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority)
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| Failure::internal(e.to_string()))?;
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
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the daemon answered {status}"));
        if status.is_server_error() {
            Err(Failure::internal(message))
        } else {
            let code = value["error"]["code"].as_str().unwrap_or("invalid_input");
            Err(Failure::coded(code, message))
        }
    }
}
