//! Ids and small values every layer shares: step indexes, invocation ids,
//! retry information, run status.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::error::StepError;

/// Index of a step in its workflow's definition order.
pub(crate) type StepIdx = usize;

/// Identifies one step invocation within a run. Allocated deterministically
/// (slot plus generation), so a replay hands out the same ids.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct InvocationId {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

impl InvocationId {
    pub(crate) fn to_pair(self) -> [u32; 2] {
        [self.slot, self.generation]
    }

    pub(crate) fn from_pair([slot, generation]: [u32; 2]) -> Self {
        InvocationId { slot, generation }
    }
}

/// What a step can learn about its retries.
#[derive(Clone, Debug)]
pub struct RetryInfo {
    /// 1 for the first try, 2 for the first retry, …
    pub attempt: u32,
    /// Time since the first attempt started.
    pub elapsed: Duration,
    /// The previous attempt's failure.
    pub last_error: Option<StepError>,
    /// When the previous attempt failed, as time since the run started.
    pub last_failed_at: Option<Duration>,
}

/// Where a run stands.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Not finished (running now, or interrupted and resumable).
    Running,
    /// Ended with its stop event.
    Completed,
    /// Ended by a failure or timeout.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl RunStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "running" => RunStatus::Running,
            "completed" => RunStatus::Completed,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            _ => return None,
        })
    }

    /// True for completed, failed and cancelled.
    pub fn is_terminal(self) -> bool {
        self != RunStatus::Running
    }
}
