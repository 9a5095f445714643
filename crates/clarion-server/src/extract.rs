//! Extractors whose rejections are API errors: a malformed body, query or path gets the
//! `{"error": …}` body with the status axum chose (400, 413, 415, 422), not plain text.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_error(&rejection)),
        }
    }
}

fn json_error(rejection: &JsonRejection) -> ApiError {
    let status = rejection.status();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "The request body is too large for this server.".to_owned()
    } else if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        "Send the request body as JSON with `Content-Type: application/json`.".to_owned()
    } else {
        // 422 (wrong shape) reads as 400 in the API: the SDKs raise BadRequestError.
        format!("Invalid request body: {}", rejection.body_text())
    };
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    ApiError::bad_request(message).with_status(status)
}

/// A JSON body that may be absent (`POST /threads` with no body creates an empty thread).
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let empty = request
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .is_some_and(|v| v == "0")
            || !request
                .headers()
                .contains_key(axum::http::header::CONTENT_TYPE);
        if empty {
            let bytes = axum::body::Bytes::from_request(request, state)
                .await
                .map_err(|e| ApiError::bad_request(e.body_text()).with_status(e.status()))?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Self(T::default()));
            }
            return serde_json::from_slice(&bytes)
                .map(Self)
                .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}")));
        }
        ApiJson::<T>::from_request(request, state)
            .await
            .map(|ApiJson(v)| Self(v))
    }
}

/// Query parameters.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Self(v))
            .map_err(|e: QueryRejection| {
                ApiError::bad_request(format!("Invalid query: {}", e.body_text()))
            })
    }
}
