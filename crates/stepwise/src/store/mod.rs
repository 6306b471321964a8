//! Journal stores: where journaled runs keep their records, ticks, published
//! events, state and snapshots.
//!
//! [`MemoryStore`] keeps everything in the process (tests, short-lived jobs);
//! [`SqliteStore`] keeps it in one SQLite file (WAL mode, no server) and is the
//! default for anything that must survive a restart. Both implement
//! [`JournalStore`], which the [`Journal`](crate::Journal) writes through in
//! batches (group commit).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

mod memory;
mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

/// A boxed future returned by store methods (keeps [`JournalStore`] object safe).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

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

/// What a store knows about one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run's id.
    pub run_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The workflow definition's fingerprint when the run started.
    pub fingerprint: String,
    /// Where it stands.
    pub status: RunStatus,
    /// The stop event (`{"type", "value"}`), once completed.
    pub result: Option<serde_json::Value>,
    /// The error, once failed or cancelled.
    pub error: Option<String>,
    /// When the run started (Unix ms, wall clock).
    pub created_at_ms: i64,
    /// When the record last changed (Unix ms, wall clock).
    pub updated_at_ms: i64,
}

/// A run's status change.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusUpdate {
    /// The run.
    pub run_id: Arc<str>,
    /// The new status.
    pub status: RunStatus,
    /// The stop event, when completed.
    pub result: Option<serde_json::Value>,
    /// The error, when failed or cancelled.
    pub error: Option<String>,
    /// When (Unix ms).
    pub at_ms: i64,
}

/// Consecutive journal entries of one run, stored together (one row).
#[derive(Clone, Debug, PartialEq)]
pub struct EntryBatch {
    /// The run.
    pub run_id: Arc<str>,
    /// Sequence number of the first entry.
    pub first_seq: u64,
    /// Sequence number of the last entry.
    pub last_seq: u64,
    /// The entries, as a JSON array.
    pub data: String,
}

/// A published event with its per-run sequence number.
#[derive(Clone, Debug, PartialEq)]
pub struct PublishedRecord {
    /// The run.
    pub run_id: Arc<str>,
    /// 0, 1, 2, … per run.
    pub seq: u64,
    /// The event as `{"type", "value"}` JSON.
    pub event: String,
}

/// Everything one group commit writes, atomically.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteBatch {
    /// New runs.
    pub runs: Vec<RunRecord>,
    /// Journal entries.
    pub entries: Vec<EntryBatch>,
    /// Published events.
    pub events: Vec<PublishedRecord>,
    /// Latest state per run (JSON).
    pub states: Vec<(Arc<str>, String)>,
    /// Latest snapshot per run (JSON).
    pub snapshots: Vec<(Arc<str>, String)>,
    /// Status changes.
    pub statuses: Vec<StatusUpdate>,
}

impl WriteBatch {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
            && self.entries.is_empty()
            && self.events.is_empty()
            && self.states.is_empty()
            && self.snapshots.is_empty()
            && self.statuses.is_empty()
    }
}

/// Which runs to list.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// Only these statuses (all when empty).
    pub statuses: Vec<RunStatus>,
    /// Only this workflow.
    pub workflow: Option<String>,
}

/// A store failure.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The database said no.
    #[error("store error: {0}")]
    Database(String),
    /// A stored row is unreadable.
    #[error("corrupt store row ({what}): {reason}")]
    Corrupt {
        /// Which row.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The store cannot be opened or migrated.
    #[error("cannot open store: {0}")]
    Open(String),
}

/// Where journaled runs live. Implementations must apply each [`WriteBatch`]
/// atomically and return entries and events in sequence order.
pub trait JournalStore: Send + Sync + 'static {
    /// Writes one batch atomically. The batch is borrowed so that the journal
    /// can retry it after a failure without copying it first.
    fn write<'a>(&'a self, batch: &'a WriteBatch) -> StoreFuture<'a, ()>;
    /// One run's record.
    fn run(&self, run_id: &str) -> StoreFuture<'_, Option<RunRecord>>;
    /// Runs matching `filter`, oldest first.
    fn runs(&self, filter: RunFilter) -> StoreFuture<'_, Vec<RunRecord>>;
    /// Entry batches of a run whose entries reach `from_seq` or later, in order.
    fn entries(&self, run_id: &str, from_seq: u64) -> StoreFuture<'_, Vec<EntryBatch>>;
    /// Published events of a run with sequence ≥ `from_seq`, in order.
    fn events(&self, run_id: &str, from_seq: u64) -> StoreFuture<'_, Vec<PublishedRecord>>;
    /// A run's latest state JSON.
    fn state(&self, run_id: &str) -> StoreFuture<'_, Option<String>>;
    /// A run's latest snapshot JSON.
    fn snapshot(&self, run_id: &str) -> StoreFuture<'_, Option<String>>;
}

/// Current wall-clock time in Unix milliseconds (only for records shown to
/// people; the reducer never sees it).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
