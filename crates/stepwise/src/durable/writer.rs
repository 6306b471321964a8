//! The [`Journal`]: one writer task per journal gathers what runs hand over,
//! encodes it into one batch per wake-up, and a committer task writes the
//! batches to the store in order (group commit).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::event::AnyEvent;
use crate::store::{JournalStore, PublishedRecord, RunRecord, RunStatus, StatusUpdate, StoreError, WriteBatch};
use crate::workflow::WorkflowCore;

use super::run_log::{RunLog, MAX_ROW_HINT};

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

/// Something the writer must persist.
/// Rare, large messages are boxed to keep the common ones (handovers) small:
/// the channel allocates its slots in blocks.
pub(crate) enum WriterMsg {
    /// A run's record as given (a run resumed from a snapshot).
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
    /// Messages that must be committed together, sent outside a run's log
    /// (a resumed run's record, state and snapshot).
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

    /// The size a run's new row should start with (see `JournalInner::row_hint`).
    pub(super) fn row_hint(&self) -> usize {
        self.inner.row_hint.load(Ordering::Relaxed)
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
            WriterMsg::Run(record) => self.new_run(record.run_id.as_str().into(), *record),
            WriterMsg::Started { run, workflow, at_ms } => {
                let record = RunRecord {
                    run_id: run.to_string(),
                    workflow: workflow.name.clone(),
                    fingerprint: workflow.fingerprint.clone(),
                    status: RunStatus::Running,
                    result: None,
                    error: None,
                    created_at_ms: at_ms,
                    updated_at_ms: at_ms,
                };
                self.new_run(run, record);
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

    fn new_run(&mut self, run: Arc<str>, record: RunRecord) {
        self.new_runs.insert(run, self.batch.runs.len());
        self.batch.runs.push(record);
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
