//! Every answer checked against what the OpenAPI document says of its operation and status, when the daemon runs
//! with `PREVIEW_CHECK_ANSWERS` naming a file (the tests' daemons do): its content type must be one the document
//! gives for that status, and a JSON body must match the schema. Each mismatch is a line of that file (and an error
//! in the log) naming the operation, the status and the place in the answer — never a value from it. The checker
//! reads the part of JSON Schema the document uses: `$ref`, `type` (one or several), `enum`, `const`,
//! `properties`, `required`, `additionalProperties`, `items`, `oneOf`/`anyOf` (some variant matches), `allOf`,
//! `minimum` and `maximum`. Meant for tests: every JSON answer is read whole before it is sent.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

/// The environment variable that turns the check on: the file mismatches are written to.
pub(crate) const CHECK_ANSWERS: &str = "PREVIEW_CHECK_ANSWERS";

/// Makes the file for mismatches when answers are checked, as the daemon starts (before its client config says it
/// listens), so that a daemon stopped at once has it too; a daemon asked to check that cannot write it does not
/// start.
pub(crate) fn make_mismatch_file() -> Result<(), String> {
    let Some(file) = mismatch_file() else {
        return Ok(());
    };
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&file)
        .map(drop)
        .map_err(|e| format!("{CHECK_ANSWERS}: cannot write {}: {e}", file.display()))
}

/// The file this daemon writes mismatches to, when it checks its answers.
pub(crate) fn mismatch_file() -> Option<PathBuf> {
    std::env::var_os(CHECK_ANSWERS)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

/// The document, read once, and the file mismatches go to.
pub(crate) struct AnswerCheck {
    document: Value,
    mismatches: Mutex<std::fs::File>,
}

impl AnswerCheck {
    /// Checks answers against `document`, writing mismatches to `mismatches` (made if missing, private).
    pub(crate) fn open(document: &str, mismatches: &Path) -> std::io::Result<AnswerCheck> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(mismatches)?;
        Ok(AnswerCheck {
            document: serde_json::from_str(document).map_err(std::io::Error::other)?,
            mismatches: Mutex::new(file),
        })
    }

    fn record(&self, operation: &str, status: u16, problem: &str) {
        tracing::error!(
            operation,
            status,
            "answer does not match the OpenAPI document: {problem}"
        );
        if let Ok(mut file) = self.mismatches.lock() {
            let _ = writeln!(file, "{operation} {status}: {problem}");
        }
    }

    /// What the document says of the answer `method` `path` (as the router matched it) gives with `status`.
    fn response(&self, method: &str, path: &str, status: u16) -> Result<&Value, String> {
        let responses = &self.document["paths"][path][method]["responses"];
        if responses.is_null() {
            return Err("the operation is not in the document".to_owned());
        }
        let response = match &responses[status.to_string()] {
            Value::Null => &responses["default"],
            response => response,
        };
        if response.is_null() {
            return Err(format!("status {status} is not documented"));
        }
        self.resolve(response)
    }

    /// Why an answer of content type `media` (without parameters; none when the answer names none) is not one the
    /// document gives for `response`.
    fn check_content_type(response: &Value, media: Option<&str>) -> Result<(), String> {
        let documented: Vec<&str> = response["content"]
            .as_object()
            .map(|content| content.keys().map(|key| media_type(key)).collect())
            .unwrap_or_default();
        match media {
            None if documented.is_empty() => Ok(()),
            None => Err(format!(
                "no content type where the document says {}",
                documented.join(" or ")
            )),
            Some(media) if documented.contains(&media) => Ok(()),
            Some(media) if documented.is_empty() => Err(format!(
                "a body of type {media} where the document gives none"
            )),
            Some(media) => Err(format!(
                "a body of type {media} where the document says {}",
                documented.join(" or ")
            )),
        }
    }

    /// Why `answer`, a JSON body sent with `status` by the operation `method` `path` (as the router matched it),
    /// is not what the document describes.
    pub(crate) fn check(
        &self,
        method: &str,
        path: &str,
        status: u16,
        answer: &Value,
    ) -> Result<(), String> {
        let response = self.response(method, path, status)?;
        Self::check_content_type(response, Some("application/json"))?;
        self.validate(
            &response["content"]["application/json"]["schema"],
            answer,
            "$",
            0,
        )
    }

    /// `value` (`$ref` followed) as a schema or response.
    fn resolve<'a>(&'a self, value: &'a Value) -> Result<&'a Value, String> {
        let mut value = value;
        for _ in 0..16 {
            let Some(reference) = value["$ref"].as_str() else {
                return Ok(value);
            };
            let pointer = reference
                .strip_prefix('#')
                .ok_or_else(|| format!("`{reference}` is not a reference inside the document"))?;
            value = self
                .document
                .pointer(pointer)
                .ok_or_else(|| format!("`{reference}` names nothing in the document"))?;
        }
        Err("references go round in circles".to_owned())
    }

    fn validate(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        depth: usize,
    ) -> Result<(), String> {
        if depth > 64 {
            return Err(format!("{at}: nested too deep to check"));
        }
        let schema = match schema {
            Value::Bool(true) => return Ok(()),
            Value::Bool(false) => return Err(format!("{at}: nothing is allowed here")),
            schema => self.resolve(schema)?,
        };
        if let Some(all) = schema["allOf"].as_array() {
            for part in all {
                self.validate(part, value, at, depth + 1)?;
            }
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(variants) = schema[key].as_array() {
                let mut reasons = Vec::new();
                let matched = variants.iter().any(|variant| {
                    self.validate(variant, value, at, depth + 1)
                        .map_err(|reason| reasons.push(reason))
                        .is_ok()
                });
                if !matched {
                    return Err(format!(
                        "{at}: none of the {key} variants matches ({})",
                        reasons.join("; ")
                    ));
                }
            }
        }
        if let Some(types) = types(&schema["type"])
            && !types.iter().any(|t| is_of_type(value, t))
        {
            return Err(format!(
                "{at}: a {} where the document says {}",
                kind(value),
                types.join(" or ")
            ));
        }
        if let Some(allowed) = schema["enum"].as_array()
            && !allowed.contains(value)
        {
            return Err(format!("{at}: a value the document's enum does not list"));
        }
        if let Some(constant) = schema.get("const")
            && constant != value
        {
            return Err(format!("{at}: not the document's constant"));
        }
        if let Some(number) = value.as_f64() {
            if schema["minimum"]
                .as_f64()
                .is_some_and(|minimum| number < minimum)
            {
                return Err(format!("{at}: below the document's minimum"));
            }
            if schema["maximum"]
                .as_f64()
                .is_some_and(|maximum| number > maximum)
            {
                return Err(format!("{at}: above the document's maximum"));
            }
        }
        if let Value::Object(fields) = value {
            let properties = schema["properties"].as_object();
            for required in schema["required"].as_array().into_iter().flatten() {
                if let Some(name) = required.as_str()
                    && !fields.contains_key(name)
                {
                    return Err(format!("{at}: `{name}` is required and missing"));
                }
            }
            for (name, field) in fields {
                let place = format!("{at}.{name}");
                match properties.and_then(|p| p.get(name)) {
                    Some(property) => self.validate(property, field, &place, depth + 1)?,
                    None => match schema.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            return Err(format!("{place}: a field the document does not describe"));
                        }
                        Some(extra @ Value::Object(_)) => {
                            self.validate(extra, field, &place, depth + 1)?
                        }
                        _ => {}
                    },
                }
            }
        }
        if let (Value::Array(items), Some(item)) = (value, schema.get("items")) {
            for (index, value) in items.iter().enumerate() {
                self.validate(item, value, &format!("{at}[{index}]"), depth + 1)?;
            }
        }
        Ok(())
    }
}

/// The types a schema's `type` allows, when it names any.
fn types(value: &Value) -> Option<Vec<&str>> {
    match value {
        Value::String(one) => Some(vec![one.as_str()]),
        Value::Array(several) => Some(several.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

fn is_of_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|n| n.fract() == 0.0)
        }
        _ => false,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The media type of a content type, without its parameters.
fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or_default().trim()
}

/// Checks the answer of the request's operation (as the router matched it); records what does not match.
pub(crate) async fn check_answer(
    check: Arc<AnswerCheck>,
    request: Request,
    next: Next,
) -> Response {
    // A HEAD request is answered by its GET operation (the body is dropped after this layer).
    let method = match request.method() {
        &axum::http::Method::HEAD => "get".to_owned(),
        method => method.as_str().to_ascii_lowercase(),
    };
    let Some(path) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        return next.run(request).await;
    };
    let operation = format!("{method} {path}");
    let response = next.run(request).await;
    let status = response.status().as_u16();
    // A method the path does not take: the router's answer (405, or the path check's 400 first), which no
    // operation describes; every routed method is in the document, made from the same descriptions.
    if check.document["paths"][&path][&method].is_null() {
        return response;
    }
    let documented = match check.response(&method, &path, status) {
        Ok(documented) => documented,
        Err(problem) => {
            check.record(&operation, status, &problem);
            return response;
        }
    };
    let media = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .map(|value| media_type(value.to_str().unwrap_or("(not text)")).to_owned());
    if let Err(problem) = AnswerCheck::check_content_type(documented, media.as_deref()) {
        check.record(&operation, status, &problem);
        return response;
    }
    if media.as_deref() != Some("application/json") {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        check.record(&operation, status, "its body could not be read");
        return Response::from_parts(parts, Body::empty());
    };
    let problem = match serde_json::from_slice::<Value>(&bytes) {
        Ok(answer) => check.check(&method, &path, status, &answer).err(),
        Err(_) => Some("the body is not JSON".to_owned()),
    };
    if let Some(problem) = problem {
        check.record(&operation, status, &problem);
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document() -> Value {
        json!({
            "paths": { "/v1/things/{thing}": { "get": { "responses": {
                "200": { "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Thing" } } } },
                "204": { "description": "Nothing" },
                "404": { "$ref": "#/components/responses/Error" },
                "default": { "content": { "text/plain; charset=utf-8": {} } },
            } } },
            "/v1/others": { "get": { "responses": { "200": { "description": "Fine" } } } } },
            "components": {
                "responses": { "Error": { "content": { "application/json": { "schema": {
                    "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } },
                } } } } },
                "schemas": {
                    "Thing": {
                        "allOf": [{ "$ref": "#/components/schemas/Named" }],
                        "type": "object",
                        "required": ["state"],
                        "additionalProperties": false,
                        "properties": {
                            "name": { "type": "string" },
                            "state": { "type": "string", "enum": ["ready", "gone"] },
                            "kind": { "const": "thing" },
                            "size": { "type": ["integer", "null"], "minimum": 0, "maximum": 10 },
                            "parts": { "type": "array", "items": { "oneOf": [{ "type": "null" }, { "$ref": "#/components/schemas/Part" }] } },
                            "labels": { "type": "object", "additionalProperties": { "type": "string" } },
                            "either": { "anyOf": [{ "type": "string" }, { "type": "boolean" }] },
                        },
                    },
                    "Named": { "type": "object", "required": ["name"] },
                    "Part": { "type": "object", "required": ["id"], "properties": { "id": { "type": "integer" } } },
                },
            },
        })
    }

    fn check(dir: &preview_testing::TempDir) -> AnswerCheck {
        AnswerCheck::open(&document().to_string(), &dir.path().join("mismatches")).expect("open")
    }

    #[test]
    fn answers_are_held_to_their_operation_and_status() {
        let dir = preview_testing::TempDir::new("answer-check");
        let check = check(&dir);
        let thing = "/v1/things/{thing}";
        let good = json!({
            "name": "a", "state": "ready", "kind": "thing", "size": null, "parts": [null, { "id": 1 }],
            "labels": { "x": "y" }, "either": true,
        });
        assert_eq!(check.check("get", thing, 200, &good), Ok(()));
        assert_eq!(
            check.check("get", thing, 404, &json!({ "error": "no" })),
            Ok(())
        );
        let refused = |answer: Value, status: u16| {
            check
                .check("get", thing, status, &answer)
                .expect_err("refused")
        };
        let with = |field: &str, value: Value| {
            let mut answer = good.clone();
            answer[field] = value;
            refused(answer, 200)
        };
        assert_eq!(
            refused(json!({ "name": "a" }), 200),
            "$: `state` is required and missing"
        );
        assert_eq!(
            refused(json!({ "state": "ready" }), 200),
            "$: `name` is required and missing",
            "allOf"
        );
        assert_eq!(
            with("extra", json!(1)),
            "$.extra: a field the document does not describe"
        );
        assert_eq!(
            with("state", json!("secret-value")),
            "$.state: a value the document's enum does not list",
            "no value of the answer in the message"
        );
        assert_eq!(
            with("name", json!(1)),
            "$.name: a number where the document says string"
        );
        assert_eq!(
            with("kind", json!("other")),
            "$.kind: not the document's constant"
        );
        assert_eq!(
            with("size", json!(-1)),
            "$.size: below the document's minimum"
        );
        assert_eq!(
            with("size", json!(11)),
            "$.size: above the document's maximum"
        );
        assert_eq!(
            with("size", json!(1.5)),
            "$.size: a number where the document says integer or null"
        );
        assert_eq!(
            with("labels", json!({ "x": 1 })),
            "$.labels.x: a number where the document says string"
        );
        assert!(
            with("either", json!(1)).starts_with("$.either: none of the anyOf variants matches")
        );
        assert!(
            with("parts", json!([{ "id": "x" }]))
                .starts_with("$.parts[0]: none of the oneOf variants")
        );
        assert_eq!(
            refused(json!({ "error": "no" }), 500),
            "a body of type application/json where the document says text/plain",
            "an undocumented status is the default answer's"
        );
        assert_eq!(
            refused(json!({}), 204),
            "a body of type application/json where the document gives none"
        );
        assert_eq!(
            check.check("get", "/v1/others", 500, &good),
            Err("status 500 is not documented".to_owned())
        );
        assert_eq!(
            check.check("post", thing, 200, &good),
            Err("the operation is not in the document".to_owned())
        );
    }

    /// The layer, on a real socket: a HEAD request is its GET operation's; a wrong JSON body, a content type the
    /// document does not give and an undocumented status are each a line of the file; a good answer is none.
    #[tokio::test]
    async fn the_layer_writes_each_mismatch_to_its_file() {
        use axum::response::IntoResponse;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = preview_testing::TempDir::new("answer-check-layer");
        let check = Arc::new(check(&dir));
        let layer = axum::middleware::from_fn(move |request, next| {
            check_answer(Arc::clone(&check), request, next)
        });
        let app =
            axum::Router::new()
                .route(
                    "/v1/things/{thing}",
                    axum::routing::get(
                        |axum::extract::Path(thing): axum::extract::Path<String>| async move {
                            match thing.as_str() {
                                "good" => axum::Json(json!({ "name": "a", "state": "ready" }))
                                    .into_response(),
                                "bad" => axum::Json(json!({ "name": 1, "state": "ready" }))
                                    .into_response(),
                                "text" => (axum::http::StatusCode::OK, "plain").into_response(),
                                _ => axum::http::StatusCode::IM_A_TEAPOT.into_response(),
                            }
                        },
                    ),
                )
                .route_layer(layer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        for (method, thing) in [
            ("GET", "good"),
            ("HEAD", "good"),
            ("GET", "bad"),
            ("GET", "text"),
            ("GET", "teapot"),
        ] {
            let mut stream = tokio::net::TcpStream::connect(address)
                .await
                .expect("connect");
            let request = format!(
                "{method} /v1/things/{thing} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await.expect("write");
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.expect("read");
        }
        let written = std::fs::read_to_string(dir.path().join("mismatches")).expect("the file");
        assert_eq!(
            written.lines().collect::<Vec<_>>(),
            [
                "get /v1/things/{thing} 200: $.name: a number where the document says string",
                "get /v1/things/{thing} 200: a body of type text/plain where the document says application/json",
                "get /v1/things/{thing} 418: no content type where the document says text/plain",
            ]
        );
    }
}
