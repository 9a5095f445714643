//! Reading a response: bounded, then parsed, then narrowed by the result pointer.
//!
//! The body is read chunk by chunk and abandoned the moment it passes
//! `max_response_bytes` (a declared `Content-Length` over the limit is refused before
//! reading anything), so a huge or endless body costs at most the limit in memory and never
//! more time than the tool's timeout. Dropping the response closes the connection.

use clarion_engine::ToolError;
use clarion_engine::ToolErrorKind;
use serde_json::Value;

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// It is larger than the limit.
    TooLarge(u64),
    /// The connection failed mid-body.
    Read(reqwest::Error),
}

/// Reads the whole body, up to `limit` bytes.
pub(crate) async fn read_limited(
    response: &mut reqwest::Response,
    limit: u64,
) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit)
    {
        return Err(BodyError::TooLarge(limit));
    }
    let capacity = response.content_length().unwrap_or(0).min(limit);
    let mut body = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// At most `max` characters of `body`, as text, for an error message.
pub(crate) fn snippet(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The tool's result: the body as JSON (an empty body is `null`), narrowed by `pointer`.
pub(crate) fn result(body: &[u8], pointer: Option<&str>) -> Result<Value, ToolError> {
    let mut value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| {
            ToolError::new(
                ToolErrorKind::InvalidOutput,
                format!(
                    "the response is not JSON ({e}); it starts with: {}",
                    snippet(body, 120)
                ),
            )
        })?
    };
    match pointer {
        None | Some("") => Ok(value),
        Some(pointer) => value.pointer_mut(pointer).map(Value::take).ok_or_else(|| {
            ToolError::new(
                ToolErrorKind::InvalidOutput,
                format!("the response has nothing at `{pointer}` (the tool's `result_pointer`)"),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_pick_the_result() {
        let body = br#"{"data": {"offers": [{"id": 1}]}}"#;
        assert_eq!(result(body, Some("/data/offers/0")), Ok(json!({"id": 1})));
        assert_eq!(
            result(body, None),
            Ok(json!({"data": {"offers": [{"id": 1}]}}))
        );
        let error = result(body, Some("/data/hotels"))
            .err()
            .unwrap_or_else(|| panic!("found a missing pointer"));
        assert_eq!(error.kind, ToolErrorKind::InvalidOutput);
        assert_eq!(
            result(b"  \n", Some("/x")).err().map(|e| e.kind),
            Some(ToolErrorKind::InvalidOutput)
        );
        assert_eq!(result(b"", None), Ok(Value::Null));
    }

    #[test]
    fn garbage_is_invalid_output_with_a_snippet() {
        let error = result(b"<html>oops</html>", None)
            .err()
            .unwrap_or_else(|| panic!("parsed HTML"));
        assert_eq!(error.kind, ToolErrorKind::InvalidOutput);
        assert!(
            error.message.ends_with("it starts with: <html>oops</html>"),
            "{}",
            error.message
        );
        assert_eq!(snippet("ééééé".as_bytes(), 2), "éé…");
    }
}
