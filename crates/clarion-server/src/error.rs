//! Errors as the Assistants API returned them: an HTTP status and the body
//! `{"error": {"message", "type", "param", "code"}}`.
//!
//! SDKs raise typed exceptions from the status (400 → `BadRequestError`, 404 →
//! `NotFoundError`…) and show `message`, so both must match what applications already
//! handle. Engine errors are mapped here in one place; routes add context (which id, which
//! parameter) where the API did.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use clarion_engine::EngineError;
use clarion_engine::StoreError;
use serde_json::json;

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for people.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `server_error`…
    pub kind: &'static str,
    /// The request parameter at fault, if one is.
    pub param: Option<String>,
    /// A machine-readable code, if any.
    pub code: Option<&'static str>,
    /// Seconds a client should wait before trying again (`Retry-After`), for a 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// 400 `invalid_request_error`.
    #[must_use]
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 404 `invalid_request_error`, worded as the API did: `No thread found with id 'x'.`
    #[must_use]
    pub fn not_found(what: &str, id: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: format!("No {what} found with id '{id}'."),
            kind: "invalid_request_error",
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 401 with code `invalid_api_key`.
    #[must_use]
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
            retry_after: None,
        }
    }

    /// 500 `server_error` (the detail goes to the log, not to the client). Details are
    /// store and lock failures, which name ids and files, never message content.
    #[must_use]
    pub fn internal(detail: &str) -> Self {
        tracing::error!(detail, "internal error");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "The server had an error while processing your request.".to_owned(),
            kind: "server_error",
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// Names the parameter at fault.
    #[must_use]
    pub fn param(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    /// Sets the status (e.g. 413 or 409 for the same kind of error).
    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The response body.
    #[must_use]
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::Store(store) => store.into(),
            EngineError::Metadata(e) => Self::bad_request(e.to_string()).param("metadata"),
            EngineError::EmptyMessage => {
                Self::bad_request("Message content must be non-empty.").param("content")
            }
            EngineError::WrongFlow { .. } => Self::bad_request(error.to_string()),
            EngineError::RunNotActive { run_id, status } => Self::bad_request(format!(
                "Cannot cancel run {run_id} with status '{}'.",
                status.as_str()
            )),
            EngineError::NotRequiresAction { status, .. } => Self::bad_request(format!(
                "Runs in status \"{}\" do not accept tool outputs.",
                status.as_str()
            )),
            EngineError::MissingToolOutputs(_)
            | EngineError::UnknownToolCall(_)
            | EngineError::DuplicateToolOutput(_) => {
                Self::bad_request(error.to_string()).param("tool_outputs")
            }
            EngineError::RunBusy(_) => {
                Self::bad_request(error.to_string()).with_status(StatusCode::CONFLICT)
            }
            // A kind this server does not know yet is the server's fault, not the client's.
            _ => Self::internal(&error.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::ThreadNotFound(id) => Self::not_found("thread", &id),
            StoreError::RunNotFound(id) => Self::not_found("run", &id),
            StoreError::Locked { thread_id, run_id } => Self::bad_request(format!(
                "Thread {thread_id} already has an active run {run_id}."
            )),
            StoreError::MessageNotFound { message_id, .. } => {
                Self::not_found("message", &message_id)
            }
            _ => Self::internal(&error.to_string()),
        }
    }
}
