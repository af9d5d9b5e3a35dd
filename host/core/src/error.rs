//! Failures and who should act on them.

use std::fmt;

/// Whose problem a failure is, so that a message can say what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorDomain {
    /// The job's own code or arguments: a trap, a panic, a bad plan.
    User,
    /// A system outside Weir: a broker, a database, storage, the network.
    External,
    /// A limit the job hit: memory, CPU time, output size.
    Limit,
    /// A bug in Weir itself.
    Internal,
}

impl fmt::Display for ErrorDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorDomain::User => "job error",
            ErrorDomain::External => "external system error",
            ErrorDomain::Limit => "limit exceeded",
            ErrorDomain::Internal => "internal error",
        })
    }
}

/// Why a task, and so its job, failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("{domain}: {message}")]
pub struct Failure {
    pub domain: ErrorDomain,
    pub message: String,
}

impl Failure {
    pub fn new(domain: ErrorDomain, message: impl Into<String>) -> Self {
        let message = message.into();
        let message = match crate::secrets::redact(&message) {
            std::borrow::Cow::Borrowed(_) => message,
            std::borrow::Cow::Owned(m) => m,
        };
        Failure { domain, message }
    }

    pub fn user(message: impl Into<String>) -> Self {
        Failure::new(ErrorDomain::User, message)
    }

    pub fn external(message: impl Into<String>) -> Self {
        Failure::new(ErrorDomain::External, message)
    }

    pub fn limit(message: impl Into<String>) -> Self {
        Failure::new(ErrorDomain::Limit, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Failure::new(ErrorDomain::Internal, message)
    }

    /// Prefixes the message with where the failure happened.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = crate::secrets::redact(&format!("{what}: {}", self.message)).into_owned();
        self
    }
}
