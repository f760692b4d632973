//! Every JSON answer checked against what the OpenAPI document says of its operation and status, when the daemon
//! runs with `PREVIEW_CHECK_ANSWERS=1` (the tests do): an answer the document does not describe is logged as an
//! error naming the operation, the status and the place in the answer — never a value from it. The checker reads
//! the part of JSON Schema the document uses: `$ref`, `type` (one or several), `enum`, `const`, `properties`,
//! `required`, `additionalProperties`, `items`, `oneOf`/`anyOf` (some variant matches), `allOf`, `minimum` and
//! `maximum`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

/// The environment variable that turns the check on.
pub(crate) const CHECK_ANSWERS: &str = "PREVIEW_CHECK_ANSWERS";

/// Whether this daemon checks its answers.
pub(crate) fn enabled() -> bool {
    std::env::var(CHECK_ANSWERS).is_ok_and(|value| value == "1")
}

/// What a logged mismatch starts with, for the tests to look for.
pub(crate) const MISMATCH: &str = "answer does not match the OpenAPI document";

/// The document, read once.
pub(crate) struct AnswerCheck {
    document: Value,
}

impl AnswerCheck {
    pub(crate) fn new(document: &str) -> AnswerCheck {
        AnswerCheck {
            document: serde_json::from_str(document).expect("the document is JSON"),
        }
    }

    /// Why `answer`, sent with `status` by the operation `method` `path` (as the router matched it), is not what the
    /// document describes.
    pub(crate) fn check(
        &self,
        method: &str,
        path: &str,
        status: u16,
        answer: &Value,
    ) -> Result<(), String> {
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
        let response = self.resolve(response)?;
        let schema = &response["content"]["application/json"]["schema"];
        if schema.is_null() {
            return Err(format!("status {status} is documented without a JSON body"));
        }
        self.validate(schema, answer, "$", 0)
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

/// Checks the JSON answer of the request's operation (as the router matched it); logs what does not match.
pub(crate) async fn check_answer(
    check: Arc<AnswerCheck>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_ascii_lowercase();
    let Some(path) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        return next.run(request).await;
    };
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        tracing::error!(operation = %format!("{method} {path}"), "{MISMATCH}: its body could not be read");
        return Response::from_parts(parts, Body::empty());
    };
    let status = parts.status.as_u16();
    let problem = match serde_json::from_slice::<Value>(&bytes) {
        Ok(answer) => check.check(&method, &path, status, &answer).err(),
        Err(_) => Some("the body is not JSON".to_owned()),
    };
    if let Some(problem) = problem {
        tracing::error!(operation = %format!("{method} {path}"), status, "{MISMATCH}: {problem}");
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check() -> AnswerCheck {
        let document = json!({
            "paths": { "/v1/things/{thing}": { "get": { "responses": {
                "200": { "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Thing" } } } },
                "404": { "$ref": "#/components/responses/Error" },
            } } } },
            "components": {
                "responses": { "Error": { "content": { "application/json": { "schema": {
                    "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } },
                } } } } },
                "schemas": { "Thing": {
                    "type": "object",
                    "required": ["name", "state"],
                    "additionalProperties": false,
                    "properties": {
                        "name": { "type": "string" },
                        "state": { "type": "string", "enum": ["ready", "gone"] },
                        "size": { "type": ["integer", "null"], "minimum": 0 },
                        "parts": { "type": "array", "items": { "oneOf": [{ "type": "null" }, { "$ref": "#/components/schemas/Part" }] } },
                    },
                }, "Part": { "type": "object", "required": ["id"], "properties": { "id": { "type": "integer" } } } },
            },
        });
        AnswerCheck::new(&document.to_string())
    }

    #[test]
    fn answers_are_held_to_their_operation_and_status() {
        let check = check();
        let good =
            json!({ "name": "a", "state": "ready", "size": null, "parts": [null, { "id": 1 }] });
        assert_eq!(check.check("get", "/v1/things/{thing}", 200, &good), Ok(()));
        assert_eq!(
            check.check("get", "/v1/things/{thing}", 404, &json!({ "error": "no" })),
            Ok(())
        );
        let refused = |answer: Value, status: u16| {
            check
                .check("get", "/v1/things/{thing}", status, &answer)
                .expect_err("refused")
        };
        assert_eq!(
            refused(json!({ "name": "a" }), 200),
            "$: `state` is required and missing"
        );
        assert_eq!(
            refused(json!({ "name": "a", "state": "ready", "extra": 1 }), 200),
            "$.extra: a field the document does not describe"
        );
        assert_eq!(
            refused(json!({ "name": "a", "state": "secret-value" }), 200),
            "$.state: a value the document's enum does not list",
            "no value of the answer in the message"
        );
        assert_eq!(
            refused(json!({ "name": 1, "state": "ready" }), 200),
            "$.name: a number where the document says string"
        );
        assert_eq!(
            refused(json!({ "name": "a", "state": "gone", "size": -1 }), 200),
            "$.size: below the document's minimum"
        );
        assert!(
            refused(
                json!({ "name": "a", "state": "gone", "parts": [{ "id": "x" }] }),
                200
            )
            .starts_with("$.parts[0]: none of the oneOf")
        );
        assert_eq!(
            refused(json!({ "error": "no" }), 500),
            "status 500 is not documented"
        );
        assert_eq!(
            check.check("post", "/v1/things/{thing}", 200, &good),
            Err("the operation is not in the document".to_owned())
        );
    }
}
