//! A request as the handlers see it: method, path, decoded query pairs in order, content type, body; and the body
//! read as an object (JSON, or YAML for apply patches).

use bytes::Bytes;
use serde_json::Value;

use super::status::ApiError;

#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
    pub body: Bytes,
}

impl Request {
    /// The query parameter `name`, the first if repeated.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean parameter: absent is false; anything but `true`, `1`, `false`, `0` is refused.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.param(name) {
            None | Some("false" | "0" | "") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid value for {name}: {other:?} is not a boolean"
            ))),
        }
    }

    /// `dryRun=All` (the only value the server knows).
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.param("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid dry run value: {other:?}; supported values: \"All\""
            ))),
        }
    }

    /// The media type without parameters (`application/apply-patch+yaml`).
    pub fn media_type(&self) -> &str {
        self.content_type
            .as_deref()
            .and_then(|c| c.split(';').next())
            .map(str::trim)
            .unwrap_or("")
    }

    /// The body as a JSON object; apply patches may be YAML.
    pub fn object(&self) -> Result<Value, ApiError> {
        let text = std::str::from_utf8(&self.body)
            .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
        let parsed = match serde_json::from_str::<Value>(text) {
            Ok(value) => value,
            Err(json_error) if self.media_type() == "application/apply-patch+yaml" => {
                serde_saphyr::from_str::<Value>(text).map_err(|e| {
                    ApiError::bad_request(format!(
                        "error decoding YAML: {e} (as JSON: {json_error})"
                    ))
                })?
            }
            Err(e) => {
                return Err(ApiError::bad_request(format!(
                    "couldn't get version/kind; json parse error: {e}"
                )));
            }
        };
        if !parsed.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be an object".to_owned(),
            ));
        }
        Ok(parsed)
    }

    /// Who writes, for a write other than apply: `fieldManager`, else the client's name from its user agent.
    pub fn manager(&self) -> String {
        self.param("fieldManager")
            .map(str::to_owned)
            .or_else(|| {
                self.user_agent
                    .as_deref()
                    .and_then(|agent| agent.split('/').next())
                    .filter(|name| !name.is_empty())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

/// `a=1&b=x%20y` as decoded pairs, in order.
pub(crate) fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}
