//! Durable runs: the [`Journal`] that writes runs to a [`JournalStore`] in
//! batches, and resuming runs from a journal or a snapshot.
//!
//! The journal of a run *is* the run: every tick it reduces is appended (with
//! the time it was reduced at), and replaying those ticks through the reducer
//! rebuilds its state exactly. Writes are group-committed by one writer task
//! per journal; a run copies each tick's entry text into its log, and tells the
//! writer once per commit, not once per tick.
//!
//! Guarantees (the user-facing version is on [`Workflow::resume`]): step
//! bodies are at-least-once — an invocation interrupted by a crash runs again
//! on resume; the journal, the published stream and the final outcome are
//! exactly-once — in a journaled run a step's sends and stream writes are
//! applied together with its result (or when it starts to wait), and
//! everything one tick causes (its entry, the events it publishes, the run's
//! final status, a snapshot) is handed to the writer as one group and
//! committed together, so a crash never applies half a tick.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::event::{AnyEvent, Event};
use crate::journal::{DecodeError, Decoder, Entry, StoredEntry, StoredEvent, TickData};
use crate::journal_text;
use crate::reducer::{Outcome, RunState, Tick};
use crate::run::{self, Begin, RunHandle, RunOptions};
use crate::snapshot::Snapshot;
use crate::store::{
    now_ms, EntryBatch, JournalStore, PublishedRecord, RunFilter, RunRecord, RunStatus, StatusUpdate, StoreError,
    WriteBatch,
};
use crate::workflow::{Workflow, WorkflowCore};

/// How a journal behaves.
#[derive(Clone, Debug)]
pub struct JournalConfig {
    /// Take a snapshot every this many journal entries, so that a resume
    /// replays at most that many (default 10,000; 0 turns snapshots off).
    pub snapshot_every: u64,
    /// At most this many writer messages go into one commit (default 65,536).
    /// A run sends one message for everything it committed since the writer
    /// last took its log; below the maximum the writer waits `commit_delay`
    /// for more.
    pub max_batch: usize,
    /// How long the writer lets work gather after waking before it commits
    /// (default 2 ms; zero commits at once). Runs never wait for commits, so
    /// this only delays durability, by at most this much, and saves a thread
    /// wake-up per tick when ticks trickle in. [`Journal::flush`] does not wait
    /// for it.
    pub commit_delay: Duration,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            snapshot_every: 10_000,
            max_batch: 65_536,
            commit_delay: Duration::from_millis(2),
        }
    }
}

/// What a journaled run has handed to its journal and the writer has not
/// taken yet. The run adds whole groups (a tick and what it caused) under the
/// lock and the writer takes everything at once, so a group is never split
/// between two commits. The run tells the writer only when the log goes from
/// taken to not: one channel message per run per commit, not one per tick,
/// and entries go straight into the row text the store writes.
pub(crate) struct RunLog {
    run: Arc<str>,
    inner: Mutex<LogInner>,
}

#[derive(Default)]
struct LogInner {
    /// A `Handover` for this log is on its way to the writer.
    queued: bool,
    /// Full rows of consecutive entries (rare: a long run between takes).
    full: Vec<LogRow>,
    /// The row being filled, after the full ones.
    open: Option<LogRow>,
    /// Other messages, in the order the run gave them.
    messages: Vec<WriterMsg>,
}

/// What the writer takes from a log: rows in order, then the messages.
struct Taken {
    full: Vec<LogRow>,
    open: Option<LogRow>,
    messages: Vec<WriterMsg>,
}

/// Consecutive entries of one run as the text of a JSON array still open at
/// the end (`[e1,e2`).
struct LogRow {
    first_seq: u64,
    count: u64,
    json: Vec<u8>,
}

/// A row's first capacity is the last one's size, up to this: every run with
/// something not yet taken holds a row, so a long run's large rows must not
/// make thousands of short runs reserve as much (larger rows grow by doubling).
const MAX_ROW_HINT: usize = 2 * 1024;

impl RunLog {
    fn new(run: Arc<str>) -> Self {
        RunLog {
            run,
            inner: Mutex::new(LogInner::default()),
        }
    }

    /// Adds a group: `count` entries from `first_seq` on (comma-separated
    /// JSON text) and `messages`; a new row starts with `row_hint` bytes of
    /// room. True when the writer must be told.
    fn add(&self, first_seq: u64, count: u64, entries: &[u8], messages: &mut Vec<WriterMsg>, row_hint: usize) -> bool {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let log = &mut *guard;
        if count > 0 {
            if log.open.as_ref().is_some_and(|row| row.count >= ROW_ENTRIES) {
                log.full.extend(log.open.take());
            }
            match &mut log.open {
                Some(row) => {
                    row.json.push(b',');
                    row.json.extend_from_slice(entries);
                    row.count += count;
                }
                None => {
                    let mut json = Vec::with_capacity(row_hint.max(entries.len() + 2));
                    json.push(b'[');
                    json.extend_from_slice(entries);
                    log.open = Some(LogRow { first_seq, count, json });
                }
            }
        }
        if log.messages.is_empty() {
            // Hand over the run's buffer rather than copy into a new one.
            std::mem::swap(&mut log.messages, messages);
        } else {
            log.messages.append(messages);
        }
        let tell = !log.queued && (log.open.is_some() || !log.messages.is_empty());
        log.queued |= tell;
        tell
    }

    /// Takes everything handed over so far.
    fn take(&self) -> Taken {
        let mut log = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        log.queued = false;
        Taken {
            full: std::mem::take(&mut log.full),
            open: log.open.take(),
            messages: std::mem::take(&mut log.messages),
        }
    }
}

impl LogRow {
    fn close(mut self, run: &Arc<str>) -> EntryBatch {
        self.json.push(b']');
        EntryBatch {
            run_id: Arc::clone(run),
            first_seq: self.first_seq,
            last_seq: self.first_seq + self.count - 1,
            // serde_json writes UTF-8; the lossy path is never taken.
            data: String::from_utf8(self.json).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        }
    }
}

/// Something the writer must persist.
/// Rare, large messages are boxed to keep the common ones (entries) small:
/// the channel allocates its slots in blocks.
pub(crate) enum WriterMsg {
    Run(Box<RunRecord>),
    /// A fresh run started: the writer makes its record (off the run's
    /// thread, and without allocating on it).
    Started {
        run: Arc<str>,
        workflow: Arc<WorkflowCore>,
        at_ms: i64,
    },
    /// A run's log has something for the writer to take.
    Handover(Arc<RunLog>),
    Published {
        run: Arc<str>,
        seq: u64,
        event: AnyEvent,
    },
    State {
        run: Arc<str>,
        json: String,
    },
    Snapshot {
        run: Arc<str>,
        json: String,
    },
    /// A status change; a stop event is turned into JSON by the writer, off
    /// the run's path.
    Status(Box<StatusUpdate>, Option<AnyEvent>),
    /// Messages that must be committed together (one tick and what it caused:
    /// its entry, the events it published, the run's final status).
    Group(Vec<WriterMsg>),
    Flush(oneshot::Sender<Result<(), StoreError>>),
}

struct JournalInner {
    store: Arc<dyn JournalStore>,
    tx: mpsc::UnboundedSender<WriterMsg>,
    config: JournalConfig,
    last_error: Mutex<Option<StoreError>>,
    appended: AtomicU64,
    /// Cuts the writer's commit delay short when someone waits for a flush.
    flush_requested: tokio::sync::Notify,
    /// The text size of the last row the writer took: a new row's first
    /// capacity, so that a run's row rarely grows (a reallocation here would
    /// free memory the writer's thread is freeing into too).
    row_hint: AtomicUsize,
}

/// Writes journaled runs to a store, batching writes (group commit).
/// Cheap to clone; clones share one writer task.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<JournalInner>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("config", &self.inner.config).finish()
    }
}

impl Journal {
    /// A journal writing to `store` with the default configuration. Must be
    /// called inside a tokio runtime (it spawns the writer task).
    pub fn new(store: impl JournalStore) -> Self {
        Self::with_config(store, JournalConfig::default())
    }

    /// A journal with an explicit configuration.
    pub fn with_config(store: impl JournalStore, config: JournalConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(JournalInner {
            store: Arc::new(store),
            tx,
            config,
            last_error: Mutex::new(None),
            appended: AtomicU64::new(0),
            flush_requested: tokio::sync::Notify::new(),
            row_hint: AtomicUsize::new(0),
        });
        tokio::spawn(write_loop(Arc::clone(&inner), rx));
        Journal { inner }
    }

    /// The underlying store (to list runs, read events, …).
    pub fn store(&self) -> &dyn JournalStore {
        &*self.inner.store
    }

    /// Waits until everything sent so far is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(WriterMsg::Flush(tx)).is_err() {
            return Err(StoreError::Database("the journal writer has stopped".into()));
        }
        self.inner.flush_requested.notify_one();
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Database("the journal writer has stopped".into())))
    }

    /// Journal entries appended since the journal was created.
    pub fn entries_appended(&self) -> u64 {
        self.inner.appended.load(Ordering::Relaxed)
    }

    /// The last write error, if any write failed.
    pub fn last_error(&self) -> Option<StoreError> {
        self.inner.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn send(&self, msg: WriterMsg) {
        // The writer only stops when the runtime shuts down.
        let _ = self.inner.tx.send(msg);
    }

    pub(crate) fn config(&self) -> &JournalConfig {
        &self.inner.config
    }
}

/// One group commit per wake-up: everything queued is encoded into one
/// batch, which the committer writes while the next one is being encoded
/// (so encoding and the store's work overlap; batches stay in order).
async fn write_loop(inner: Arc<JournalInner>, mut rx: mpsc::UnboundedReceiver<WriterMsg>) {
    // One batch waits while another is written: enough to overlap the two.
    let (to_committer, batches) = mpsc::channel(1);
    let committer = tokio::spawn(commit_loop(Arc::clone(&inner), batches));
    let mut messages = Vec::new();
    let max = inner.config.max_batch;
    while rx.recv_many(&mut messages, max).await > 0 {
        let flushing = messages.iter().any(|m| matches!(m, WriterMsg::Flush(_)));
        if !flushing && messages.len() < max && !inner.config.commit_delay.is_zero() {
            // Let the group grow: while the writer sleeps, senders wake nobody
            // (only a flush does).
            tokio::select! {
                () = tokio::time::sleep(inner.config.commit_delay) => {}
                () = inner.flush_requested.notified() => {}
            }
            while messages.len() < max {
                match rx.try_recv() {
                    Ok(message) => messages.push(message),
                    Err(_) => break,
                }
            }
        }
        let mut encoder = Encoder::default();
        for message in messages.drain(..) {
            encoder.add(message);
        }
        inner.appended.fetch_add(encoder.appended, Ordering::Relaxed);
        if encoder.row_hint > 0 {
            inner.row_hint.store(encoder.row_hint, Ordering::Relaxed);
        }
        if to_committer.send(encoder.finish()).await.is_err() {
            break; // the committer stopped: the runtime is shutting down
        }
    }
    drop(to_committer);
    let _ = committer.await;
}

/// Writes encoded batches in order, then answers the flushes that came
/// with each.
async fn commit_loop(inner: Arc<JournalInner>, mut batches: mpsc::Receiver<Encoded>) {
    while let Some((batch, flushes)) = batches.recv().await {
        let mut result = Ok(());
        if !batch.is_empty() {
            // A store hiccup (busy, I/O) is retried a few times before giving up.
            for attempt in 0..3u32 {
                result = inner.store.write(&batch).await;
                if result.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
        }
        if let Err(error) = &result {
            tracing::error!(%error, "journal write failed; the batch is lost");
            *inner.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.clone());
        }
        for flush in flushes {
            let _ = flush.send(result.clone());
        }
    }
}

/// A batch ready to write and the flushes waiting for it.
type Encoded = (WriteBatch, Vec<oneshot::Sender<Result<(), StoreError>>>);

/// At most this many entries go into one stored row, so that a replay from a
/// snapshot reads (and parses) at most this many entries it does not need.
const ROW_ENTRIES: u64 = 1024;

/// `{"type": .., "value": ..}` of `event` as text.
fn event_text(event: &AnyEvent) -> Result<String, serde_json::Error> {
    let mut json = Vec::with_capacity(128);
    event.write_json(&mut json)?;
    Ok(String::from_utf8(json).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// Turns the messages of one wake-up into one batch: a run's entries become
/// one row (or several, of at most `ROW_ENTRIES`); state and snapshots keep
/// the latest per run.
#[derive(Default)]
struct Encoder {
    batch: WriteBatch,
    flushes: Vec<oneshot::Sender<Result<(), StoreError>>>,
    states: HashMap<Arc<str>, String>,
    snapshots: HashMap<Arc<str>, String>,
    /// Run → its record in `batch.runs`: a run that starts and ends within
    /// one batch is written once, with its final status.
    new_runs: HashMap<Arc<str>, usize>,
    /// Entries encoded.
    appended: u64,
    /// The size of the last row taken (see `JournalInner::row_hint`).
    row_hint: usize,
}

impl Encoder {
    fn add(&mut self, message: WriterMsg) {
        match message {
            WriterMsg::Group(group) => {
                for message in group {
                    self.add(message);
                }
            }
            WriterMsg::Run(record) => {
                self.new_runs
                    .insert(record.run_id.as_str().into(), self.batch.runs.len());
                self.batch.runs.push(*record);
            }
            WriterMsg::Started { run, workflow, at_ms } => {
                self.batch.runs.push(RunRecord {
                    run_id: run.to_string(),
                    workflow: workflow.name.clone(),
                    fingerprint: workflow.fingerprint.clone(),
                    status: RunStatus::Running,
                    result: None,
                    error: None,
                    created_at_ms: at_ms,
                    updated_at_ms: at_ms,
                });
                self.new_runs.insert(run, self.batch.runs.len() - 1);
            }
            WriterMsg::Handover(log) => {
                let taken = log.take();
                if let Some(row) = &taken.open {
                    self.row_hint = (row.json.len() + 1).min(MAX_ROW_HINT);
                }
                for row in taken.full.into_iter().chain(taken.open) {
                    self.appended += row.count;
                    self.batch.entries.push(row.close(&log.run));
                }
                for message in taken.messages {
                    self.add(message);
                }
            }
            WriterMsg::Published { run, seq, event } => match event_text(&event) {
                Ok(json) => self.batch.events.push(PublishedRecord {
                    run_id: run,
                    seq,
                    event: json,
                }),
                Err(error) => tracing::error!(run_id = %run, seq, %error, "published event does not serialise"),
            },
            WriterMsg::State { run, json } => {
                self.states.insert(run, json);
            }
            WriterMsg::Snapshot { run, json } => {
                self.snapshots.insert(run, json);
            }
            WriterMsg::Status(mut update, stop) => {
                if let Some(stop) = stop {
                    update.result = serde_json::to_value(&stop).ok();
                }
                self.status(*update);
            }
            WriterMsg::Flush(tx) => self.flushes.push(tx),
        }
    }

    fn status(&mut self, update: StatusUpdate) {
        match self.new_runs.get(&*update.run_id) {
            Some(&index) => {
                let record = &mut self.batch.runs[index];
                record.status = update.status;
                record.result = update.result;
                record.error = update.error;
                record.updated_at_ms = update.at_ms;
            }
            None => self.batch.statuses.push(update),
        }
    }

    fn finish(mut self) -> Encoded {
        self.batch.states = self.states.into_iter().collect();
        self.batch.snapshots = self.snapshots.into_iter().collect();
        (self.batch, self.flushes)
    }
}

/// A journaled run's connection to its journal.
///
/// Everything one tick causes — its entry, the events it publishes, a
/// snapshot, the run's final status — is gathered in `pending` and handed to
/// the writer as one group by [`RunJournal::commit`], so a commit (and thus a
/// crash) never falls between a tick and its consequences.
pub(crate) struct RunJournal {
    pub(crate) journal: Journal,
    pub(crate) run_id: Arc<str>,
    /// Sequence number of the next entry.
    pub(crate) seq: u64,
    since_snapshot: u64,
    /// Where commits go; shared with the writer.
    log: Arc<RunLog>,
    pending: Vec<WriterMsg>,
    /// Entries appended since the last commit, as JSON text (comma-separated).
    entries: Vec<u8>,
    /// Their count and the first one's sequence number.
    entry_count: u64,
    first_seq: u64,
}

impl RunJournal {
    pub(crate) fn new(journal: Journal, run_id: Arc<str>, seq: u64) -> Self {
        RunJournal {
            journal,
            log: Arc::new(RunLog::new(Arc::clone(&run_id))),
            run_id,
            seq,
            since_snapshot: 0,
            pending: Vec::new(),
            entries: Vec::new(),
            entry_count: 0,
            first_seq: seq,
        }
    }

    /// Adds `msg` to the group committed with the next tick.
    pub(crate) fn queue(&mut self, msg: WriterMsg) {
        self.pending.push(msg);
    }

    /// Hands the entries and messages gathered since the last call to the
    /// writer, to be committed together.
    pub(crate) fn commit(&mut self) {
        if self.entry_count == 0 && self.pending.is_empty() {
            return;
        }
        let row_hint = self.journal.inner.row_hint.load(Ordering::Relaxed);
        let tell = self.log.add(
            self.first_seq,
            self.entry_count,
            &self.entries,
            &mut self.pending,
            row_hint,
        );
        self.entries.clear();
        self.entry_count = 0;
        if tell {
            self.journal.send(WriterMsg::Handover(Arc::clone(&self.log)));
        }
    }

    /// Appends `tick` (about to be reduced) as the next entry; returns true
    /// when a snapshot is due.
    pub(crate) fn append_tick(&mut self, tick: &Tick, state: &RunState, now: Duration) -> bool {
        self.append_with(now, |out, seq, at_us| {
            journal_text::write_tick(out, seq, at_us, tick, state)
        })
    }

    /// Appends an entry given as data (waiters, collects); returns true when
    /// a snapshot is due.
    pub(crate) fn append(&mut self, tick: TickData<AnyEvent>, now: Duration) -> bool {
        self.append_with(now, |out, seq, at_us| journal_text::write_entry(out, seq, at_us, tick))
    }

    fn append_with(
        &mut self,
        now: Duration,
        write: impl FnOnce(&mut Vec<u8>, u64, u64) -> Result<(), serde_json::Error>,
    ) -> bool {
        let seq = self.seq;
        self.seq += 1;
        let mark = self.entries.len();
        if self.entry_count > 0 {
            self.entries.push(b',');
        }
        match write(&mut self.entries, seq, now.as_micros() as u64) {
            Ok(()) => {
                if self.entry_count == 0 {
                    self.first_seq = seq;
                }
                self.entry_count += 1;
            }
            Err(error) => {
                // The gap makes the run unresumable from here, with a clear
                // error then; a run's events must serialise to be journaled.
                self.entries.truncate(mark);
                tracing::error!(run_id = %self.run_id, seq, %error, "journal entry does not serialise");
            }
        }
        self.since_snapshot += 1;
        let every = self.journal.config().snapshot_every;
        every > 0 && self.since_snapshot >= every
    }

    /// Writes a journal snapshot of `state` (covering every entry so far).
    pub(crate) fn snapshot(&mut self, workflow: &WorkflowCore, state: &RunState, now: Duration, published: u64) {
        self.since_snapshot = 0;
        match build_snapshot(
            workflow,
            &self.run_id,
            state,
            self.seq,
            now,
            published,
            serde_json::Value::Null,
            RunStatus::Running,
        ) {
            Ok(snapshot) => match snapshot.to_json() {
                Ok(json) => self.pending.push(WriterMsg::Snapshot {
                    run: Arc::clone(&self.run_id),
                    json,
                }),
                Err(error) => tracing::warn!(%error, "snapshot does not serialise; replay will start further back"),
            },
            Err(error) => tracing::warn!(%error, "snapshot does not serialise; replay will start further back"),
        }
    }

    pub(crate) fn published(&mut self, seq: u64, event: &AnyEvent) {
        self.pending.push(WriterMsg::Published {
            run: Arc::clone(&self.run_id),
            seq,
            event: event.clone(),
        });
    }

    pub(crate) fn status(&mut self, status: RunStatus, result: Option<&AnyEvent>, error: Option<String>) {
        let update = StatusUpdate {
            run_id: Arc::clone(&self.run_id),
            status,
            result: None,
            error,
            at_ms: now_ms(),
        };
        self.pending.push(WriterMsg::Status(Box::new(update), result.cloned()));
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn build_snapshot(
    workflow: &WorkflowCore,
    run_id: &str,
    state: &RunState,
    journal_seq: u64,
    now: Duration,
    published: u64,
    user_state: serde_json::Value,
    status: RunStatus,
) -> Result<Snapshot, serde_json::Error> {
    Ok(Snapshot {
        format: crate::snapshot::SNAPSHOT_FORMAT,
        workflow: workflow.name.clone(),
        fingerprint: workflow.fingerprint.clone(),
        run_id: run_id.to_owned(),
        journal_seq,
        at_us: now.as_micros() as u64,
        published,
        state_type: workflow.state.type_name.to_owned(),
        state: user_state,
        status,
        run: state.to_data()?,
    })
}

/// Sends a state change of a journaled run to its journal.
pub(crate) fn state_observer(journal: Journal, run: Arc<str>) -> crate::state::StateObserver {
    Arc::new(move |json: String| {
        journal.send(WriterMsg::State {
            run: Arc::clone(&run),
            json,
        })
    })
}

/// Why a run could not be resumed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ResumeError {
    /// The store has no such run.
    #[error("no run {run_id} in the journal store")]
    NotFound {
        /// The run.
        run_id: String,
    },
    /// The run's record exists but not even its start event was journaled
    /// (the process stopped right after starting it). It is marked failed.
    #[error("run {run_id} has no journal entries: it stopped before its start event was recorded, so there is nothing to resume (it is now marked failed)")]
    NothingRecorded {
        /// The run.
        run_id: String,
    },
    /// The run belongs to another workflow.
    #[error("run {run_id} belongs to workflow `{found}`, not `{expected}`")]
    WrongWorkflow {
        /// The run.
        run_id: String,
        /// The workflow asked to resume it.
        expected: String,
        /// The workflow that ran it.
        found: String,
    },
    /// The workflow definition changed since the run started.
    #[error(
        "run {run_id} was started by a different definition of workflow `{workflow}` (fingerprint {recorded}, now {current}); resume it with ResumeOptions::allow_changed_definition(true) if the change is compatible"
    )]
    DefinitionChanged {
        /// The run.
        run_id: String,
        /// The workflow.
        workflow: String,
        /// The fingerprint the run recorded.
        recorded: String,
        /// The current definition's fingerprint.
        current: String,
    },
    /// The run has already ended.
    #[error("run {run_id} has already ended ({status:?})")]
    Finished {
        /// The run.
        run_id: String,
        /// How it ended.
        status: RunStatus,
    },
    /// A stored entry, event or snapshot does not decode.
    #[error("run {run_id} cannot be rebuilt: {source}")]
    Decode {
        /// The run.
        run_id: String,
        /// What is wrong.
        #[source]
        source: DecodeError,
    },
    /// The stored state no longer fits the workflow's state type.
    #[error("run {run_id}: stored state does not decode as `{state_type}`: {reason}")]
    State {
        /// The run.
        run_id: String,
        /// The declared state type.
        state_type: &'static str,
        /// What serde said.
        reason: String,
    },
    /// The store failed.
    #[error("run {run_id}: {source}")]
    Store {
        /// The run.
        run_id: String,
        /// The failure.
        #[source]
        source: StoreError,
    },
}

/// How to resume.
#[derive(Clone, Debug, Default)]
pub struct ResumeOptions {
    allow_changed_definition: bool,
    internal_events: bool,
}

impl ResumeOptions {
    /// Default options: refuse a changed definition.
    pub fn new() -> Self {
        Self::default()
    }

    /// Resumes even if the workflow's fingerprint changed (you vouch that the
    /// stored events and steps still fit).
    pub fn allow_changed_definition(mut self, allow: bool) -> Self {
        self.allow_changed_definition = allow;
        self
    }

    /// Publishes internal step events after resuming.
    pub fn internal_events(mut self, on: bool) -> Self {
        self.internal_events = on;
        self
    }
}

/// Parses the entries of stored batches in order, checking there is no gap.
pub(crate) fn parse_entries(
    run_id: &str,
    batches: Vec<EntryBatch>,
    from_seq: u64,
) -> Result<Vec<Entry<StoredEvent>>, ResumeError> {
    let decode = |source| ResumeError::Decode {
        run_id: run_id.to_owned(),
        source,
    };
    let mut expected = from_seq;
    let mut entries = Vec::new();
    for batch in batches {
        let rows: Vec<StoredEntry> = serde_json::from_str(&batch.data).map_err(|e| {
            decode(DecodeError::Malformed {
                what: format!("journal entries {}..={}", batch.first_seq, batch.last_seq),
                reason: e.to_string(),
            })
        })?;
        for StoredEntry(entry) in rows {
            if entry.seq < expected {
                continue; // covered by the snapshot
            }
            if entry.seq != expected {
                return Err(decode(DecodeError::Malformed {
                    what: format!("journal entry {}", entry.seq),
                    reason: format!("expected entry {expected} next; the journal has a gap"),
                }));
            }
            expected += 1;
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// A run rebuilt from its journal, ready to continue.
pub(crate) struct Rebuilt {
    pub(crate) state: RunState,
    pub(crate) at: Duration,
    pub(crate) journal_seq: u64,
    pub(crate) published: u64,
    /// How the run ended, when the replay ended it.
    pub(crate) outcome: Option<Outcome>,
}

/// Rebuilds a run's reducer state: latest snapshot, then the entries after it.
pub(crate) async fn rebuild(
    workflow: &Arc<WorkflowCore>,
    store: &dyn JournalStore,
    run_id: &str,
    internal_events: bool,
) -> Result<Rebuilt, ResumeError> {
    rebuild_upto(workflow, store, run_id, internal_events, None).await
}

/// [`rebuild`], stopping before entry `upto` when given.
async fn rebuild_upto(
    workflow: &Arc<WorkflowCore>,
    store: &dyn JournalStore,
    run_id: &str,
    internal_events: bool,
    upto: Option<u64>,
) -> Result<Rebuilt, ResumeError> {
    let store_err = |source| ResumeError::Store {
        run_id: run_id.to_owned(),
        source,
    };
    let decode = |source| ResumeError::Decode {
        run_id: run_id.to_owned(),
        source,
    };
    let run_arc: Arc<str> = run_id.into();
    let snapshot = store.snapshot(run_id).await.map_err(store_err)?;
    // A snapshot past the requested point is no use; replay from the start.
    let snapshot = match (snapshot, upto) {
        (Some(json), Some(limit)) => match Snapshot::from_json(&json) {
            Ok(s) if s.journal_seq > limit => None,
            _ => Some(json),
        },
        (snapshot, _) => snapshot,
    };
    let (mut state, mut at, from_seq, snapshot_published) = match snapshot {
        Some(json) => {
            let snapshot = Snapshot::from_json(&json).map_err(decode)?;
            if snapshot.run_id != run_id || snapshot.workflow != workflow.name {
                return Err(decode(DecodeError::Malformed {
                    what: "stored snapshot".into(),
                    reason: format!(
                        "it belongs to run {} of workflow `{}`, not to run {run_id} of workflow `{}`",
                        snapshot.run_id, snapshot.workflow, workflow.name
                    ),
                }));
            }
            let at = Duration::from_micros(snapshot.at_us);
            let seq = snapshot.journal_seq;
            let published = snapshot.published;
            let state = RunState::from_data(
                Arc::clone(workflow),
                Arc::clone(&run_arc),
                internal_events,
                snapshot.run,
            )
            .map_err(decode)?;
            (state, at, seq, published)
        }
        None => (
            RunState::new(Arc::clone(workflow), Arc::clone(&run_arc), internal_events),
            Duration::ZERO,
            0,
            0,
        ),
    };
    let batches = store.entries(run_id, from_seq).await.map_err(store_err)?;
    let mut entries = parse_entries(run_id, batches, from_seq)?;
    if let Some(limit) = upto {
        entries.retain(|e| e.seq < limit);
    }
    let journal_seq = from_seq + entries.len() as u64;
    let decoder = Decoder { workflow };
    let mut outcome = None;
    for entry in entries {
        at = Duration::from_micros(entry.at_us);
        if let Some(ended) = decoder.replay(&mut state, entry).map_err(decode)? {
            outcome = Some(ended);
        }
    }
    // Events before the snapshot's count need not be read.
    let published = match store
        .events(run_id, snapshot_published)
        .await
        .map_err(store_err)?
        .last()
    {
        Some(last) => (last.seq + 1).max(snapshot_published),
        None => snapshot_published,
    };
    Ok(Rebuilt {
        state,
        at,
        journal_seq,
        published,
        outcome,
    })
}

impl<S: Event, O: Event> Workflow<S, O> {
    /// Starts a journaled run: every tick is written to `journal`, so the run
    /// survives a crash of this process (see [`Workflow::resume`]).
    pub fn run_journaled(&self, start: S, journal: &Journal, options: RunOptions) -> RunHandle<O> {
        self.run_with(start, options.journal(journal))
    }

    /// Continues an unfinished journaled run (after a crash or a stop): its
    /// state is rebuilt from the journal, in-flight steps run again, and the
    /// run goes on where it was.
    ///
    /// What a resume guarantees:
    ///
    /// - **Step bodies are at-least-once.** A step that had finished (its
    ///   result committed) does not run again. A step that was running when
    ///   the process stopped runs again *from its start*, with the same input
    ///   event and attempt number; side effects it had on the outside world
    ///   (HTTP calls, files, state edits with `ctx.state()`) happen again.
    /// - **The journal, the stored stream and the outcome are exactly-once.**
    ///   A step's `send_event`s and `write_event_to_stream`s are applied with
    ///   its result, so an interrupted step's are dropped and made again by
    ///   its re-run. Published events are stored with per-run sequence
    ///   numbers 0, 1, 2, … without gaps or repeats, across any number of
    ///   resumes.
    /// - **`wait_for_event` on resume.** A step that was waiting runs again
    ///   from its start. What it had already done before the wait is not
    ///   done twice: the sends and stream writes it made before waiting were
    ///   applied when it started to wait, and the re-run's first ones are
    ///   skipped; its collect calls get the results they got before; when it
    ///   reaches the same wait (same waiter id) the wait is registered again
    ///   *without* publishing its event a second time (it is in the stored
    ///   stream already). A wait that had been answered before the crash gets
    ///   the same answer at once; one that had not is still open, and the
    ///   resumed run publishes [`WorkflowIdle`](crate::WorkflowIdle) (listing
    ///   its waiters) when only such waits remain — so a caller resuming a
    ///   run can answer it. A wait's timeout starts again from the re-run.
    ///   This relies on the step doing the same things in the same order up
    ///   to the wait, i.e. on its body being deterministic up to there.
    /// - **Time.** The run's clock (timeouts, retry delays, waiter timeouts)
    ///   goes on from the run's last journaled tick: the time the process was
    ///   down does not count. A retry that was pending fires its full delay
    ///   after the failure, counted on that clock.
    pub async fn resume(&self, journal: &Journal, run_id: &str) -> Result<RunHandle<O>, ResumeError> {
        self.resume_with(journal, run_id, ResumeOptions::default()).await
    }

    /// [`Workflow::resume`] with options.
    pub async fn resume_with(
        &self,
        journal: &Journal,
        run_id: &str,
        options: ResumeOptions,
    ) -> Result<RunHandle<O>, ResumeError> {
        let store = journal.store();
        let store_err = |source| ResumeError::Store {
            run_id: run_id.to_owned(),
            source,
        };
        let record = store
            .run(run_id)
            .await
            .map_err(store_err)?
            .ok_or_else(|| ResumeError::NotFound {
                run_id: run_id.to_owned(),
            })?;
        self.check_record(&record, &options)?;
        let rebuilt = rebuild(&self.core, store, run_id, options.internal_events).await?;
        if rebuilt.journal_seq == 0 {
            // Nothing was recorded, not even the start event: nothing to resume.
            let error = format!(
                "run {run_id} has no journal entries: it stopped before its start event was recorded, so it cannot be resumed"
            );
            let update = StatusUpdate {
                run_id: run_id.into(),
                status: RunStatus::Failed,
                result: None,
                error: Some(error),
                at_ms: now_ms(),
            };
            journal.send(WriterMsg::Status(Box::new(update), None));
            return Err(ResumeError::NothingRecorded {
                run_id: run_id.to_owned(),
            });
        }
        if rebuilt.state.is_finished() {
            // The journal holds the run's end but its status was not recorded
            // (a journal written by an older version, or a failed status
            // write): record it now instead of resuming a finished run.
            let result = match rebuilt.outcome {
                Some(outcome) => run::outcome_result(&self.core, run_id, outcome),
                None => Err(crate::error::RunError::Aborted {
                    run_id: run_id.to_owned(),
                }),
            };
            let (status, stop, error) = run::ended_status(&result);
            let update = StatusUpdate {
                run_id: run_id.into(),
                status,
                result: None,
                error,
                at_ms: now_ms(),
            };
            journal.send(WriterMsg::Status(Box::new(update), stop.cloned()));
            return Err(ResumeError::Finished {
                run_id: run_id.to_owned(),
                status,
            });
        }
        let state = match store.state(run_id).await.map_err(store_err)? {
            Some(json) => (self.core.state.from_json)(&json).map_err(|reason| ResumeError::State {
                run_id: run_id.to_owned(),
                state_type: self.core.state.type_name,
                reason,
            })?,
            None => (self.core.state.fresh)(),
        };
        Ok(run::launch(
            Arc::clone(&self.core),
            Begin::Resume {
                run_id: run_id.into(),
                state: Box::new(rebuilt.state),
                at: rebuilt.at,
                journal_seq: rebuilt.journal_seq,
                published: rebuilt.published,
                store: state,
                journal: Some(journal.clone()),
            },
        ))
    }

    fn check_record(&self, record: &RunRecord, options: &ResumeOptions) -> Result<(), ResumeError> {
        if record.workflow != self.core.name {
            return Err(ResumeError::WrongWorkflow {
                run_id: record.run_id.clone(),
                expected: self.core.name.clone(),
                found: record.workflow.clone(),
            });
        }
        if record.status.is_terminal() {
            return Err(ResumeError::Finished {
                run_id: record.run_id.clone(),
                status: record.status,
            });
        }
        if record.fingerprint != self.core.fingerprint && !options.allow_changed_definition {
            return Err(ResumeError::DefinitionChanged {
                run_id: record.run_id.clone(),
                workflow: self.core.name.clone(),
                recorded: record.fingerprint.clone(),
                current: self.core.fingerprint.clone(),
            });
        }
        Ok(())
    }

    /// Rebuilds a journaled run's exact state from its store, without running
    /// anything: the latest snapshot, then the entries after it — all of them,
    /// or only those before `upto` (a journal sequence number). Tools use it to
    /// inspect runs; tests use it to check that replay matches the live run.
    pub async fn rebuild(&self, journal: &Journal, run_id: &str, upto: Option<u64>) -> Result<Snapshot, ResumeError> {
        let rebuilt = rebuild_upto(&self.core, journal.store(), run_id, false, upto).await?;
        let state = journal
            .store()
            .state(run_id)
            .await
            .map_err(|source| ResumeError::Store {
                run_id: run_id.to_owned(),
                source,
            })?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or(serde_json::Value::Null);
        let status = match rebuilt.outcome {
            Some(outcome) => run::ended_status(&run::outcome_result(&self.core, run_id, outcome)).0,
            None => RunStatus::Running,
        };
        build_snapshot(
            &self.core,
            run_id,
            &rebuilt.state,
            rebuilt.journal_seq,
            rebuilt.at,
            rebuilt.published,
            state,
            status,
        )
        .map_err(|e| ResumeError::Decode {
            run_id: run_id.to_owned(),
            source: DecodeError::Malformed {
                what: "rebuilt state".into(),
                reason: e.to_string(),
            },
        })
    }

    /// Resumes every unfinished run of this workflow in `journal`'s store.
    /// Runs that cannot be resumed are returned with their error.
    pub async fn resume_unfinished(
        &self,
        journal: &Journal,
    ) -> Result<Vec<(String, Result<RunHandle<O>, ResumeError>)>, StoreError> {
        let filter = RunFilter {
            statuses: vec![RunStatus::Running],
            workflow: Some(self.core.name.clone()),
        };
        let runs = journal.store().runs(filter).await?;
        let mut resumed = Vec::with_capacity(runs.len());
        for record in runs {
            let handle = self.resume(journal, &record.run_id).await;
            resumed.push((record.run_id, handle));
        }
        Ok(resumed)
    }

    /// Continues a run from a snapshot (taken with [`RunHandle::snapshot`]),
    /// in this process or another one with the same workflow definition.
    /// `options` may add a journal; its run id, if set, is ignored.
    pub fn resume_from_snapshot(
        &self,
        mut snapshot: Snapshot,
        options: RunOptions,
    ) -> Result<RunHandle<O>, ResumeError> {
        let run_id = snapshot.run_id.clone();
        if snapshot.workflow != self.core.name {
            return Err(ResumeError::WrongWorkflow {
                run_id,
                expected: self.core.name.clone(),
                found: snapshot.workflow,
            });
        }
        if snapshot.fingerprint != self.core.fingerprint && !options.allows_changed_definition() {
            return Err(ResumeError::DefinitionChanged {
                run_id,
                workflow: self.core.name.clone(),
                recorded: snapshot.fingerprint,
                current: self.core.fingerprint.clone(),
            });
        }
        match snapshot.status {
            RunStatus::Completed | RunStatus::Failed => {
                return Err(ResumeError::Finished {
                    run_id,
                    status: snapshot.status,
                })
            }
            // A cancelled run goes on as if it had not been cancelled.
            RunStatus::Cancelled => {
                snapshot.run.reopen();
                snapshot.status = RunStatus::Running;
            }
            RunStatus::Running if snapshot.run.finished() => {
                return Err(ResumeError::Decode {
                    run_id,
                    source: DecodeError::Malformed {
                        what: "snapshot".into(),
                        reason: "its status is `running` but its run state has ended".into(),
                    },
                })
            }
            RunStatus::Running => {}
        }
        let store = match (self.core.state.from_json)(&snapshot.state.to_string()) {
            Ok(store) => store,
            // No state was recorded (e.g. a snapshot rebuilt from a journal
            // without state): the run starts from the default state.
            Err(_) if snapshot.state.is_null() => (self.core.state.fresh)(),
            Err(reason) => {
                return Err(ResumeError::State {
                    run_id: run_id.clone(),
                    state_type: self.core.state.type_name,
                    reason,
                })
            }
        };
        // A journal given here receives the run's record, state and this
        // snapshot first, so that it can resume the run after a crash.
        let seed = match options.journal_ref() {
            Some(_) => Some(snapshot.to_json().map_err(|e| ResumeError::Decode {
                run_id: run_id.clone(),
                source: DecodeError::Malformed {
                    what: "snapshot".into(),
                    reason: e.to_string(),
                },
            })?),
            None => None,
        };
        let run_arc: Arc<str> = run_id.as_str().into();
        let state = RunState::from_data(
            Arc::clone(&self.core),
            Arc::clone(&run_arc),
            options.wants_internal_events(),
            snapshot.run,
        )
        .map_err(|source| ResumeError::Decode {
            run_id: run_id.clone(),
            source,
        })?;
        if let (Some(journal), Some(json)) = (options.journal_ref(), seed) {
            let mut group = vec![WriterMsg::Run(Box::new(RunRecord {
                run_id: run_id.clone(),
                workflow: self.core.name.clone(),
                fingerprint: snapshot.fingerprint.clone(),
                status: RunStatus::Running,
                result: None,
                error: None,
                created_at_ms: now_ms(),
                updated_at_ms: now_ms(),
            }))];
            if let Some(json) = store.try_json() {
                group.push(WriterMsg::State {
                    run: Arc::clone(&run_arc),
                    json,
                });
            }
            group.push(WriterMsg::Snapshot {
                run: Arc::clone(&run_arc),
                json,
            });
            journal.send(WriterMsg::Group(group));
        }
        Ok(run::launch(
            Arc::clone(&self.core),
            Begin::Resume {
                run_id: run_arc,
                state: Box::new(state),
                at: Duration::from_micros(snapshot.at_us),
                journal_seq: snapshot.journal_seq,
                published: snapshot.published,
                store,
                journal: options.journal_ref().cloned(),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(range: std::ops::Range<u64>) -> Vec<u8> {
        let texts: Vec<String> = range.map(|seq| format!("[{seq}]")).collect();
        texts.join(",").into_bytes()
    }

    fn row_texts(log: &RunLog) -> Vec<(u64, u64, String)> {
        let taken = log.take();
        taken
            .full
            .into_iter()
            .chain(taken.open)
            .map(|row| row.close(&log.run))
            .map(|row| (row.first_seq, row.last_seq, row.data))
            .collect()
    }

    #[test]
    fn the_writer_is_told_once_per_take_and_gets_every_group_in_one_row() {
        let log = RunLog::new("r".into());
        let mut none = Vec::new();
        assert!(
            log.add(0, 2, &entries(0..2), &mut none, 0),
            "the first group tells the writer"
        );
        assert!(!log.add(2, 1, &entries(2..3), &mut none, 0), "it has been told already");
        let mut messages = vec![WriterMsg::State {
            run: "r".into(),
            json: "{}".into(),
        }];
        assert!(!log.add(3, 0, &[], &mut messages, 0));
        assert!(messages.is_empty(), "messages move into the log");
        let taken = log.take();
        assert_eq!(taken.messages.len(), 1);
        assert!(taken.full.is_empty());
        let row = taken.open.unwrap().close(&log.run);
        assert_eq!((row.first_seq, row.last_seq), (0, 2));
        assert_eq!(row.data, "[[0],[1],[2]]");
        assert!(
            log.add(3, 1, &entries(3..4), &mut none, 0),
            "after a take the writer is told again"
        );
        assert_eq!(row_texts(&log), [(3, 3, "[[3]]".to_owned())]);
    }

    #[test]
    fn a_full_row_is_closed_and_the_next_entries_start_another() {
        let log = RunLog::new("r".into());
        let mut none = Vec::new();
        let mut seq = 0;
        while seq < ROW_ENTRIES + 5 {
            log.add(seq, 1, &entries(seq..seq + 1), &mut none, 0);
            seq += 1;
        }
        let rows = row_texts(&log);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].0, rows[0].1), (0, ROW_ENTRIES - 1));
        assert_eq!((rows[1].0, rows[1].1), (ROW_ENTRIES, ROW_ENTRIES + 4));
        let parsed: Vec<Vec<u64>> = serde_json::from_str(&rows[1].2).unwrap();
        assert_eq!(
            parsed,
            (ROW_ENTRIES..ROW_ENTRIES + 5).map(|s| vec![s]).collect::<Vec<_>>()
        );
    }
}
