//! The HTTP shapes of text-embeddings-inference's classification route, so its clients work:
//! `{"inputs": "text"}`, `{"inputs": ["text", "pair"]}`, a batch `{"inputs": [["a"], ["b",
//! "pair"]]}` (or a list of texts), optional `raw_scores` and `truncate`; answers are a list of
//! `{"label", "score"}` per input, most probable first, and errors `{"error", "error_type"}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use crate::inference::TextInput;

/// A parsed `/predict` request.
#[derive(Debug, PartialEq)]
pub struct PredictRequest {
    /// The texts to label, each with an optional pair.
    pub inputs: Vec<TextInput>,
    /// The request held one input (answer: a list), not a batch (answer: a list of lists).
    pub single: bool,
    /// Logits instead of probabilities.
    pub raw_scores: bool,
    /// Cut inputs longer than the model's maximum instead of refusing them.
    pub truncate: bool,
}

/// One label and its score.
#[derive(Debug, Serialize, PartialEq)]
pub struct LabelScore {
    /// The label's name.
    pub label: String,
    /// Its probability, or its logit with `raw_scores`.
    pub score: f32,
}

/// An error answer: a status and `{"error": message, "error_type": kind}`.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status of the answer.
    pub status: StatusCode,
    /// The `error_type`: `Validation`, `Overloaded`, ...
    pub kind: &'static str,
    /// The `error` message.
    pub message: String,
}

impl ApiError {
    /// A `422 Unprocessable Entity` answer with `error_type` `Validation`.
    pub fn validation(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "Validation",
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "error_type": self.kind });
        (self.status, Json(body)).into_response()
    }
}

/// One input from a JSON string (a text) or array of one or two strings (a text and its pair).
fn sequence(value: &Value, at: &str) -> Result<TextInput, ApiError> {
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| ApiError::validation(format!("{at}: expected a string")))
    };
    match value {
        Value::String(s) => Ok(TextInput {
            text: s.clone(),
            text_pair: None,
        }),
        Value::Array(parts) if (1..=2).contains(&parts.len()) => Ok(TextInput {
            text: text(&parts[0])?,
            text_pair: parts.get(1).map(text).transpose()?,
        }),
        _ => Err(ApiError::validation(format!(
            "{at}: expected a text or [text] or [text, pair]"
        ))),
    }
}

/// Parses a `/predict` body.
pub fn parse_predict(body: &[u8]) -> Result<PredictRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::validation(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::validation("the body must be a JSON object"));
    };
    let flag = |name: &str| match fields.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::validation(format!(
            "`{name}` must be true or false"
        ))),
    };
    let (raw_scores, truncate) = (flag("raw_scores")?, flag("truncate")?);
    let inputs = fields
        .get("inputs")
        .ok_or_else(|| ApiError::validation("missing field `inputs`"))?;
    let (inputs, single) = match inputs {
        Value::String(_) => (vec![sequence(inputs, "inputs")?], true),
        // Two strings are a text and its pair, as in text-embeddings-inference.
        Value::Array(items) if items.len() == 2 && items.iter().all(Value::is_string) => {
            (vec![sequence(inputs, "inputs")?], true)
        }
        Value::Array(items) => {
            if items.is_empty() {
                return Err(ApiError::validation("`inputs` is an empty batch"));
            }
            let batch = items
                .iter()
                .enumerate()
                .map(|(i, item)| sequence(item, &format!("inputs[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            (batch, false)
        }
        _ => {
            return Err(ApiError::validation(
                "`inputs` must be a text, [text, pair] or a list of them",
            ));
        }
    };
    Ok(PredictRequest {
        inputs,
        single,
        raw_scores,
        truncate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(text: &str, pair: Option<&str>) -> TextInput {
        TextInput {
            text: text.into(),
            text_pair: pair.map(Into::into),
        }
    }

    #[test]
    fn the_shapes_of_text_embeddings_inference() {
        let r = parse_predict(br#"{"inputs": "a fine film"}"#).unwrap();
        assert_eq!(
            (r.inputs, r.single),
            (vec![input("a fine film", None)], true)
        );
        let r = parse_predict(br#"{"inputs": ["a", "b"], "raw_scores": true}"#).unwrap();
        assert_eq!(r.inputs, vec![input("a", Some("b"))]);
        assert!(r.single && r.raw_scores && !r.truncate);
        let r = parse_predict(br#"{"inputs": [["a"], ["b", "c"]], "truncate": true}"#).unwrap();
        assert_eq!(r.inputs, vec![input("a", None), input("b", Some("c"))]);
        assert!(!r.single && r.truncate);
        let r = parse_predict(br#"{"inputs": ["a", "b", "c"]}"#).unwrap();
        assert_eq!(r.inputs.len(), 3);
        assert!(!r.single);
    }

    #[test]
    fn bad_bodies_are_named() {
        let err = |body: &[u8]| parse_predict(body).unwrap_err().message;
        assert!(err(b"{").contains("not valid JSON"));
        assert!(err(b"[1]").contains("JSON object"));
        assert!(err(br#"{"input": "a"}"#).contains("missing field `inputs`"));
        assert!(err(br#"{"inputs": []}"#).contains("empty batch"));
        assert!(err(br#"{"inputs": [["a", "b", "c"]]}"#).contains("inputs[0]"));
        assert!(err(br#"{"inputs": 3}"#).contains("`inputs` must be"));
        assert!(err(br#"{"inputs": "a", "truncate": "yes"}"#).contains("`truncate`"));
    }
}
