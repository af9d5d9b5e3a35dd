//! Identifiers.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A job's identity: 32 hex digits, as Flink's `JobID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(u128);

impl JobId {
    pub fn random() -> Self {
        JobId(uuid::Uuid::new_v4().as_u128())
    }

    /// The first six hex digits, used in savepoint directory names.
    pub fn short(&self) -> String {
        self.to_string()[..6].to_owned()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl std::str::FromStr for JobId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() != 32 {
            return Err(format!("'{s}' is not a job id (32 hex digits)"));
        }
        u128::from_str_radix(s, 16)
            .map(JobId)
            .map_err(|_| format!("'{s}' is not a job id (32 hex digits)"))
    }
}

impl TryFrom<String> for JobId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.to_string()
    }
}

/// The stable identity of an operator, used to match state on restore.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OperatorUid(pub String);

impl fmt::Display for OperatorUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl OperatorUid {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A checkpoint's number within a job, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CheckpointId(pub u64);

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl CheckpointId {
    pub fn next(self) -> CheckpointId {
        CheckpointId(self.0 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_round_trip() {
        let id = JobId::random();
        let s = id.to_string();
        assert_eq!(s.len(), 32);
        assert_eq!(s.parse::<JobId>().unwrap(), id);
        assert_eq!(id.short(), s[..6]);
        assert!("xyz".parse::<JobId>().is_err());
        assert!("g".repeat(32).parse::<JobId>().is_err());
    }
}
