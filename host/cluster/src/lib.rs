//! The Weir session cluster: a long-lived process that takes `.wasm` jobs
//! the way a Flink session cluster takes jars.
//!
//! - [`Session`]: uploaded modules, the jobs and their task slots, job
//!   status and checkpoint history, savepoint operations;
//! - [`ha`]: the HA store, from which a restarted session resumes every job
//!   that was running, from its latest completed checkpoint;
//! - [`rest`]: Flink's REST routes and JSON shapes on one port, with an
//!   OpenAPI document, the web UI and Prometheus `/metrics`.

pub mod ha;
mod java;
pub mod leader;
mod metrics;
pub mod rest;
mod session;
mod status;
mod storage_use;
pub mod tenancy;
mod upgrade;
mod views;

pub use session::{JobEntry, RunRequest, Session, SessionOptions};
pub use status::JobState;
pub use tenancy::{Caller, Tenancy};
pub use upgrade::UpgradeRequest;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answered as Flink does: a status code and
/// `{"errors": ["what happened and what to do"]}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message.to_string())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "errors": [self.message] })),
        )
            .into_response()
    }
}
