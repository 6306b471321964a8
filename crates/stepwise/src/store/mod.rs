//! Journal stores: where journaled runs keep their records, ticks, published
//! events, state and snapshots.
//!
//! [`MemoryStore`] keeps everything in the process (tests, short-lived jobs).
//! Stores that survive a restart live in their own crates, so the engine has
//! no database dependency: `stepwise_sqlite::SqliteStore` keeps runs in one
//! SQLite file (WAL mode, no server) and is the embedded default. Every store
//! implements [`JournalStore`], which the [`Journal`](crate::Journal) writes
//! through in batches (group commit), and passes the checks of the
//! `stepwise-store-tests` crate (its docs say how a new store runs them).
//!
//! What a store in another crate needs besides the trait is public here and
//! nothing more: [`check_fences`] and [`may_take`] (every store fences commits
//! and decides claims the same way), [`now_ms`] (the clock those decisions and
//! the records' times use), and [`DatabaseError`] (a driver's error, kept as
//! the source of [`StoreError::Database`]).

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

mod memory;
mod owner;

pub use crate::core::ids::RunStatus;
pub use memory::MemoryStore;
pub(crate) use owner::LiveOwner;
pub use owner::{may_take, Claim, Owner, OwnerLease, LEASE};

/// A boxed future returned by store methods (keeps [`JournalStore`] object safe).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

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
    /// The journal that holds the run (its last claimant), with its lease;
    /// `None` for records written before ownership existed.
    #[serde(default)]
    pub owner: Option<OwnerLease>,
    /// Grows by one with every claim; a commit for an older epoch is refused.
    #[serde(default)]
    pub epoch: u64,
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
///
/// A store applies a batch only if every run it writes is still the
/// writer's: each of `runs` must not exist yet (its insert is its claim), and
/// each run in `fences` must still be at the given epoch. Otherwise it writes
/// nothing and returns [`StoreError::Fenced`] naming every such run, so the
/// journal can write the rest without them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteBatch {
    /// The writing journal's lease, to record or renew (set on a journal's
    /// first batch and when its lease is due for renewal).
    pub owner: Option<OwnerLease>,
    /// Runs already stored that this batch writes to, with the epoch the
    /// writer holds them at.
    pub fences: Vec<(Arc<str>, u64)>,
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
        self.owner.is_none()
            && self.runs.is_empty()
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
#[non_exhaustive]
pub enum StoreError {
    /// The database said no (busy, I/O, full disk, …): worth retrying. The
    /// driver's error is kept as the source.
    #[error("store error: {0}")]
    Database(#[source] DatabaseError),
    /// The store can no longer be trusted with writes (its files were
    /// removed or replaced under it); retrying cannot help.
    #[error("store damaged: {0}")]
    Damaged(String),
    /// A run could not be claimed: another live journal holds it.
    #[error("run {run_id} cannot be taken: {reason}")]
    Claimed {
        /// The run.
        run_id: String,
        /// Who holds it.
        reason: String,
    },
    /// A commit was refused because runs it writes are no longer this
    /// journal's (another one claimed them, or the id was already in use);
    /// nothing of the batch was written.
    #[error("commit refused for {}", fenced_text(.runs))]
    Fenced {
        /// Each refused run and why.
        runs: Vec<FencedRun>,
    },
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
    /// The file given as a database is not one (empty, too short, another
    /// format, a directory); nothing was written to it.
    #[error("{path} is {what}, not a SQLite database; stepwise makes new databases itself: move the file away or choose another path")]
    NotADatabase {
        /// The file.
        path: String,
        /// What it is instead ("an empty file", "a 1-byte file", …).
        what: String,
    },
}

/// A database driver's error inside [`StoreError::Database`]: shown as the
/// driver shows it, and reachable for downcasting through [`get_ref`](Self::get_ref).
///
/// Shared (an `Arc`, not a `Box`) because [`StoreError`] is `Clone`: the
/// journal keeps its last failure and hands out copies of it. Made from a
/// string too, for failures that have no driver error behind them.
#[derive(Clone)]
pub struct DatabaseError(Arc<dyn Error + Send + Sync + 'static>);

impl DatabaseError {
    /// Wraps a driver's error.
    pub fn new(error: impl Error + Send + Sync + 'static) -> Self {
        DatabaseError(Arc::new(error))
    }

    /// The driver's error, e.g. to `downcast_ref::<sqlx::Error>()`.
    pub fn get_ref(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl From<&str> for DatabaseError {
    fn from(message: &str) -> Self {
        DatabaseError(Arc::from(Box::<dyn Error + Send + Sync>::from(message)))
    }
}

impl From<String> for DatabaseError {
    fn from(message: String) -> Self {
        DatabaseError(Arc::from(Box::<dyn Error + Send + Sync>::from(message)))
    }
}

impl std::fmt::Debug for DatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&*self.0, f)
    }
}

// Transparent: the wrapper adds no message of its own, so the chain goes on
// with the driver error's own source.
impl Error for DatabaseError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

/// A run whose writes a store refused, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FencedRun {
    /// The run.
    pub run_id: Arc<str>,
    /// Why: "the run id is already in use", "it was claimed by …".
    pub reason: String,
}

fn fenced_text(runs: &[FencedRun]) -> String {
    let named: Vec<String> = runs
        .iter()
        .take(5)
        .map(|r| format!("run {} ({})", r.run_id, r.reason))
        .collect();
    let more = runs.len().saturating_sub(5);
    if more > 0 {
        format!("{} and {more} more", named.join(", "))
    } else {
        named.join(", ")
    }
}

impl StoreError {
    /// True for failures a retry may get past (a busy or full database, an
    /// I/O error); false when retrying cannot help.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Database(_))
    }
}

/// Checks a batch's runs against what a store holds: `existing(run)` gives a
/// stored run's epoch (`None` when the run does not exist). Every store
/// fences commits this same way.
pub fn check_fences(batch: &WriteBatch, existing: impl Fn(&str) -> Option<u64>) -> Result<(), StoreError> {
    let mut runs = Vec::new();
    for record in &batch.runs {
        if existing(&record.run_id).is_some() {
            runs.push(FencedRun {
                run_id: record.run_id.as_str().into(),
                reason: "the run id is already in use in this store".into(),
            });
        }
    }
    for (run_id, epoch) in &batch.fences {
        match existing(run_id) {
            Some(stored) if stored == *epoch => {}
            Some(stored) => runs.push(FencedRun {
                run_id: Arc::clone(run_id),
                reason: format!("it was claimed by another journal (epoch {stored}, this journal holds {epoch})"),
            }),
            None => runs.push(FencedRun {
                run_id: Arc::clone(run_id),
                reason: "its record is gone from the store".into(),
            }),
        }
    }
    if runs.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Fenced { runs })
    }
}

/// Where journaled runs live. Implementations must apply each [`WriteBatch`]
/// atomically, fence it (see [`WriteBatch`] and [`check_fences`]), and return
/// entries and events in sequence order.
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
    /// Takes a stored run for `claim.lease`'s owner, atomically: allowed
    /// when [`may_take`] says so; bumps the run's epoch, records the owner
    /// and its lease, and returns the new epoch. `Ok(None)` when there is no
    /// such run; [`StoreError::Claimed`] when another live journal holds it.
    fn claim<'a>(&'a self, claim: &'a Claim) -> StoreFuture<'a, Option<u64>>;
}

/// Current wall-clock time in Unix milliseconds: the clock of run records'
/// times and of lease decisions ([`may_take`]); the reducer never sees it.
/// Public so that a store in another crate judges leases on the same clock
/// as the engine's journal sets them.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
