//! The crate's one error type, and how API errors become upstream's V1 responses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::path::PathBuf;

/// The `X-NSQ-Content-Type` header every V1 JSON response carries.
pub const NSQ_CONTENT_TYPE: (&str, &str) = ("x-nsq-content-type", "nsq; version=1.0");

/// Everything that can go wrong in nsqadmin, from start-up to an API request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A start-up check failed (upstream logs `failed to instantiate nsqadmin - <this>`).
    #[error("{0}")]
    Startup(String),
    /// The `--config` file could not be read or parsed.
    #[error("failed to load config file {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The listener could not be opened.
    #[error("listen ({address}) failed - {source}")]
    Listen {
        /// The address asked for.
        address: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client for lookupd and nsqd calls could not be built.
    #[error("failed to build the HTTP client - {0}")]
    HttpClient(#[source] reqwest::Error),
    /// The HTTP server stopped with an error.
    #[error("HTTP server failed - {0}")]
    HttpServer(#[source] std::io::Error),
    /// An API request is answered with this status and `{"message":"<message>"}`.
    #[error("{status} {message}")]
    Api {
        /// The status code.
        status: StatusCode,
        /// Upstream's code (`INVALID_TOPIC`) or text (a JSON decoder error).
        message: String,
    },
    /// Every upstream call of a step failed: `502 {"message":"UPSTREAM_ERROR: <details>"}`.
    #[error("UPSTREAM_ERROR: {0}")]
    Upstream(String),
}

impl Error {
    /// `<status> {"message":"<message>"}`.
    pub fn api(status: StatusCode, message: impl Into<String>) -> Self {
        Self::Api {
            status,
            message: message.into(),
        }
    }

    /// `400 {"message":"<message>"}`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::api(StatusCode::BAD_REQUEST, message)
    }

    /// `403 {"message":"FORBIDDEN"}`.
    pub fn forbidden() -> Self {
        Self::api(StatusCode::FORBIDDEN, "FORBIDDEN")
    }

    /// `404 {"message":"<message>"}`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::api(StatusCode::NOT_FOUND, message)
    }

    /// `500 {"message":"INTERNAL_ERROR"}`.
    pub fn internal() -> Self {
        Self::api(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Error::Api { status, message } => (status, message),
            Error::Upstream(details) => {
                tracing::error!("{details}");
                (
                    StatusCode::BAD_GATEWAY,
                    format!("UPSTREAM_ERROR: {details}"),
                )
            }
            other => {
                tracing::error!("{other}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL_ERROR".to_owned(),
                )
            }
        };
        v1_json(status, &serde_json::json!({ "message": message }))
    }
}

/// A V1 JSON response: the body, `Content-Type: application/json; charset=utf-8` and
/// `X-NSQ-Content-Type: nsq; version=1.0`.
pub fn v1_json<T: serde::Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    let (status, json) = match serde_json::to_vec(body) {
        Ok(json) => (status, json),
        Err(err) => {
            tracing::error!("failed to encode JSON response - {err}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                br#"{"message":"INTERNAL_ERROR"}"#.to_vec(),
            )
        }
    };
    let mut response = (status, json).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(
        NSQ_CONTENT_TYPE.0,
        HeaderValue::from_static(NSQ_CONTENT_TYPE.1),
    );
    response
}
