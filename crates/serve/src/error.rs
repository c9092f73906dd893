//! Errors of the server, each with its HTTP status and OpenAI's error shape.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api::{ErrorBody, ErrorDetail};

/// A request the server refuses or could not answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `code`: a stable machine-readable name (`model_not_found`, `queue_full`, …).
    pub code: &'static str,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    /// Seconds a client should wait before trying again (503 only).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), code, param: None, retry_after: None }
    }

    /// 400: the request is well-formed JSON but asks for something invalid.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// [`ApiError::invalid`] naming the field at fault.
    pub fn invalid_param(param: &str, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { param: Some(param.into()), ..ApiError::invalid(code, message) }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn too_large(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
    }

    pub fn unsupported_media(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message)
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(code: &'static str, message: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError { retry_after: Some(retry_after), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message) }
    }

    pub fn timeout(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "engine_error", message)
    }

    /// OpenAI's `type` for the status.
    /// The error of the request part `param` (`messages[i].content[j]`): named in `param` and at the
    /// head of the message.
    pub fn at(self, param: &str) -> ApiError {
        let message = if self.message.starts_with(param) { self.message } else { format!("{param}: {}", self.message) };
        ApiError { param: Some(param.into()), message, ..self }
    }

    pub fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            404 => "not_found_error",
            400..=499 => "invalid_request_error",
            503 => "overloaded_error",
            _ => "server_error",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                message: self.message.clone(),
                kind: self.kind().into(),
                param: self.param.clone(),
                code: Some(self.code.into()),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
