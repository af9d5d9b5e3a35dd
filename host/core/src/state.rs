//! Operator state as one old subtask checkpointed it.

/// The state one subtask of an operator checkpointed (a source's position,
/// a sink's transactions), with where it came from: at the same
/// parallelism a restored subtask gets its own predecessor's state only;
/// after rescaling, every old subtask's, and picks what it takes over
/// (old subtask `s` goes to new subtask `s % parallelism`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubtaskState {
    /// The old subtask's index.
    pub subtask: u32,
    /// The operator's parallelism when the state was taken.
    pub parallelism: u32,
    pub value: serde_json::Value,
}

impl SubtaskState {
    /// Whether new subtask `subtask` of `parallelism` takes this state over.
    pub fn belongs_to(&self, subtask: u32, parallelism: u32) -> bool {
        parallelism > 0 && self.subtask % parallelism == subtask
    }
}
