//! The crate's one error type.

use crate::http::v1_json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nsq_protocol::lookup::ErrorResponse;
use std::path::PathBuf;

/// Everything that can go wrong in nsqlookupd, from start-up to an HTTP request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A JSON document could not be encoded.
    #[error("failed to encode JSON - {0}")]
    Json(#[from] serde_json::Error),
    /// The `--config` file could not be read or parsed.
    #[error("failed to load config file {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A listener could not be opened.
    #[error("listen ({address}) failed - {source}")]
    Listen {
        /// The address asked for.
        address: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The OS hostname (reported in IDENTIFY answers) is unavailable.
    #[error("unable to get hostname - {0}")]
    Hostname(#[source] std::io::Error),
    /// The HTTP server stopped with an error.
    #[error("HTTP server failed - {0}")]
    HttpServer(#[source] std::io::Error),
    /// A server task panicked or was aborted.
    #[error("server task failed - {0}")]
    Task(#[from] tokio::task::JoinError),
    /// An HTTP request is answered with this status and `{"message":"<message>"}`.
    #[error("{status} {message}")]
    Http {
        /// The status code.
        status: StatusCode,
        /// The NSQ error code, e.g. `MISSING_ARG_TOPIC`.
        message: &'static str,
    },
}

impl Error {
    /// `400 {"message":"<message>"}`.
    pub fn bad_request(message: &'static str) -> Self {
        Self::Http {
            status: StatusCode::BAD_REQUEST,
            message,
        }
    }

    /// `404 {"message":"<message>"}`.
    pub fn not_found(message: &'static str) -> Self {
        Self::Http {
            status: StatusCode::NOT_FOUND,
            message,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Error::Http { status, message } => (status, message),
            other => {
                tracing::error!("{other}");
                (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
            }
        };
        v1_json(
            status,
            &ErrorResponse {
                message: message.to_owned(),
            },
        )
    }
}
