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

/// What kind of failure an error of the session is; `rest.rs` answers
/// each with its HTTP status, so that nothing else speaks HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong: a bad argument, flag or body.
    BadRequest,
    /// No valid API token.
    Unauthorized,
    /// The caller may not do this.
    Forbidden,
    /// No such job, upload, route or operation.
    NotFound,
    /// The route exists, not with this method.
    MethodNotAllowed,
    /// The job's state does not allow it now.
    Conflict,
    /// The request is larger than allowed.
    TooLarge,
    /// Too many requests of this kind are in progress.
    TooManyRequests,
    /// The session failed.
    Internal,
}

/// An error of the session: its kind and what happened and what to do.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::BadRequest, message.to_string())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Internal, e.to_string())
    }
}
