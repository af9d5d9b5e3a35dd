//! The error type of user functions and of the SDK.

use std::fmt;

/// An error raised by a job: the task fails and the message reaches the
/// user (`weir run` prints it; the cluster shows it under exceptions).
///
/// ```
/// let e = weir_sdk::Error::new("missing --input");
/// assert_eq!(e.to_string(), "missing --input");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with a message that says what happened and what to do.
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn context(self, what: impl fmt::Display) -> Self {
        Error::new(format!("{what}: {}", self.message))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::new(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::new(message)
    }
}

impl From<weir_frame::FrameError> for Error {
    fn from(e: weir_frame::FrameError) -> Self {
        Error::new(e.to_string())
    }
}
