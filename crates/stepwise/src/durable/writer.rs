//! The [`Journal`]: one writer task per journal gathers what runs hand over,
//! encodes it into one batch per wake-up, and a committer task writes the
//! batches to the store in order (group commit).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::core::define::workflow::WorkflowCore;
use crate::core::event::AnyEvent;
use crate::store::{
    now_ms, JournalStore, LiveOwner, Owner, OwnerLease, PublishedRecord, RunRecord, RunStatus, StatusUpdate,
    StoreError, WriteBatch, LEASE,
};

use crate::runtime::recorder::JournalError;

use super::run_log::{RunLog, MAX_ROW_HINT};

/// How a journal behaves. Build it with struct update syntax
/// (`JournalConfig { commit_delay: …, ..JournalConfig::default() }`) or the
/// setters.
#[derive(Clone, Debug)]
pub struct JournalConfig {
    /// Take a snapshot after this many journal entries (default 10,000; 0
    /// turns snapshots off), once the entries since the last snapshot are
    /// also at least 8× the larger of its size and an estimate of the next
    /// one's, so that snapshots of a run holding many events cost at most an
    /// eighth of its journal. A resume replays the entries after the latest
    /// snapshot.
    pub snapshot_every: u64,
    /// At most this many writer messages go into one commit (default 65,536).
    /// A run sends one message for everything it committed since the writer
    /// last took its log; below the maximum the writer waits `commit_delay`
    /// for more.
    pub max_batch: usize,
    /// How long the writer lets work gather after waking before it commits
    /// (default 2 ms; zero commits at once). [`Journal::flush`] does not wait
    /// for it.
    pub commit_delay: Duration,
    /// How much handed-over, not yet committed journal text the runs may be
    /// ahead of the store (default 16 MiB). Past it, journaled runs' drivers
    /// wait before they poll their steps again, so the writer never falls
    /// more than about this much behind and commit lag stays bounded.
    pub max_backlog_bytes: usize,
    /// How long a failing commit is retried (with backoff from 10 ms to 1 s)
    /// before it is given up and the runs in it are stopped with
    /// [`JournalError::Lost`] (default 60 s). Failures retrying cannot fix
    /// (a damaged store) are given up at once.
    pub retry_for: Duration,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            snapshot_every: 10_000,
            max_batch: 65_536,
            commit_delay: Duration::from_millis(2),
            max_backlog_bytes: 16 << 20,
            retry_for: Duration::from_secs(60),
        }
    }
}

impl JournalConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`JournalConfig::snapshot_every`].
    pub fn snapshot_every(mut self, entries: u64) -> Self {
        self.snapshot_every = entries;
        self
    }

    /// Sets [`JournalConfig::max_batch`].
    pub fn max_batch(mut self, messages: usize) -> Self {
        self.max_batch = messages.max(1);
        self
    }

    /// Sets [`JournalConfig::commit_delay`].
    pub fn commit_delay(mut self, delay: Duration) -> Self {
        self.commit_delay = delay;
        self
    }

    /// Sets [`JournalConfig::max_backlog_bytes`].
    pub fn max_backlog_bytes(mut self, bytes: usize) -> Self {
        self.max_backlog_bytes = bytes.max(1);
        self
    }

    /// Sets [`JournalConfig::retry_for`].
    pub fn retry_for(mut self, budget: Duration) -> Self {
        self.retry_for = budget;
        self
    }
}

/// Answers a run waiting for its record to be committed (its claim).
pub(crate) type Confirm = oneshot::Sender<Result<(), JournalError>>;

/// Something the writer must persist.
/// Rare, large messages are boxed to keep the common ones (handovers) small:
/// the channel allocates its slots in blocks.
pub(crate) enum WriterMsg {
    /// A run's record as given (a run resumed from a snapshot).
    Run(Box<RunRecord>, Option<Confirm>),
    /// A fresh run started: the writer makes its record (off the run's
    /// thread, and without allocating on it). `confirm` is answered once the
    /// record is committed (runs with ids chosen by the caller wait for it).
    Started {
        run: Arc<str>,
        workflow: Arc<WorkflowCore>,
        at_ms: i64,
        confirm: Option<Confirm>,
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
    /// A status change, with when the run queued it (for commit-lag
    /// figures); a stop event is turned into JSON by the writer, off the
    /// run's path.
    Status(Box<StatusUpdate>, Option<AnyEvent>, std::time::Instant),
    /// The epoch this journal holds a stored run at (sent after a claim, with
    /// writes outside a run's log).
    Fence(Arc<str>, u64),
    /// Messages that must be committed together, sent outside a run's log
    /// (a resumed run's record, state and snapshot).
    Group(Vec<WriterMsg>),
    Flush(oneshot::Sender<Result<(), JournalError>>),
}

struct JournalInner {
    store: Arc<dyn JournalStore>,
    tx: mpsc::UnboundedSender<WriterMsg>,
    config: JournalConfig,
    /// This journal's identity: the runs it writes are claimed for it.
    owner: Owner,
    /// Marks the owner live in this process until the writer stops or the
    /// journal is shut down.
    live: Mutex<Option<LiveOwner>>,
    last_error: Mutex<Option<StoreError>>,
    /// Commits given up since the last flush (a flush reports and clears them).
    losses: Mutex<Vec<JournalError>>,
    /// Runs whose commits were given up or refused: nothing more of them is
    /// written, so no commit ever lands past a gap.
    poisoned: Mutex<HashSet<Arc<str>>>,
    appended: AtomicU64,
    /// Journal text handed over and not yet committed (see
    /// [`JournalConfig::max_backlog_bytes`]).
    backlog: AtomicUsize,
    drained: tokio::sync::Notify,
    /// Journaled runs alive now (the lease is renewed while there are any).
    live_runs: AtomicUsize,
    /// Their ids: one journal never runs two runs with one id at once.
    live_ids: Mutex<HashSet<Arc<str>>>,
    /// Run end → its status committed, in µs (see [`Journal::commit_lag`]).
    lags: Mutex<Vec<u32>>,
    /// Cuts the writer's commit delay short when someone waits for a flush.
    flush_requested: tokio::sync::Notify,
    /// The text size of the last row the writer took: a new row's first
    /// capacity, so that a run's row rarely grows (a reallocation here would
    /// free memory the writer's thread is freeing into too).
    row_hint: AtomicUsize,
}

/// Writes journaled runs to a store, batching writes (group commit).
/// Cheap to clone; clones share one writer task and one [`Owner`] identity.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<JournalInner>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("owner", &self.inner.owner)
            .field("config", &self.inner.config)
            .finish()
    }
}

/// Commit lag figures: from a run's end to its final status being committed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CommitLag {
    /// Run ends measured.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// The longest.
    pub max: Duration,
}

/// At most this many lag samples are kept between two reads.
const MAX_LAG_SAMPLES: usize = 1 << 20;

impl Journal {
    /// A journal writing to `store` with the default configuration. Must be
    /// called inside a tokio runtime (it spawns the writer task).
    pub fn new(store: impl JournalStore) -> Self {
        Self::with_config(store, JournalConfig::default())
    }

    /// A journal with an explicit configuration.
    pub fn with_config(store: impl JournalStore, config: JournalConfig) -> Self {
        Self::from_arc(Arc::new(store), config)
    }

    /// A journal over a shared store.
    pub fn from_arc(store: Arc<dyn JournalStore>, config: JournalConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(JournalInner {
            store,
            tx,
            config,
            owner: Owner::this_process(),
            live: Mutex::new(None),
            last_error: Mutex::new(None),
            losses: Mutex::new(Vec::new()),
            poisoned: Mutex::new(HashSet::new()),
            appended: AtomicU64::new(0),
            backlog: AtomicUsize::new(0),
            drained: tokio::sync::Notify::new(),
            live_runs: AtomicUsize::new(0),
            live_ids: Mutex::new(HashSet::new()),
            lags: Mutex::new(Vec::new()),
            flush_requested: tokio::sync::Notify::new(),
            row_hint: AtomicUsize::new(0),
        });
        *inner.live.lock().unwrap_or_else(|p| p.into_inner()) = Some(LiveOwner::new(&inner.owner));
        tokio::spawn(write_loop(Arc::clone(&inner), rx));
        Journal { inner }
    }

    /// The underlying store (to list runs, read events, …).
    pub fn store(&self) -> &dyn JournalStore {
        &*self.inner.store
    }

    /// This journal's identity, which the runs it claims record.
    pub fn owner(&self) -> &Owner {
        &self.inner.owner
    }

    /// This journal's lease as of now.
    pub(crate) fn lease(&self) -> OwnerLease {
        OwnerLease {
            owner: self.inner.owner.clone(),
            until_ms: now_ms() + LEASE.as_millis() as i64,
        }
    }

    /// Waits until everything sent so far is committed. `Err` when any
    /// commit was given up or refused since the last flush (the error names
    /// every run it hit); those runs have stopped with the same error.
    pub async fn flush(&self) -> Result<(), JournalError> {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(WriterMsg::Flush(tx)).is_err() {
            return Err(JournalError::Stopped);
        }
        self.inner.flush_requested.notify_one();
        rx.await.unwrap_or(Err(JournalError::Stopped))
    }

    /// Commits everything sent so far, then gives up this journal's claim on
    /// its runs: from now on another journal (in this process or another)
    /// may resume them at once. Runs of this journal that are still going
    /// will have their commits refused once another journal takes them, so
    /// stop them first (a graceful shutdown leaves them resumable).
    pub async fn shutdown(&self) -> Result<(), JournalError> {
        let flushed = self.flush().await;
        self.inner.live.lock().unwrap_or_else(|p| p.into_inner()).take();
        flushed
    }

    /// Cuts the writer's commit delay short (a run waits for a commit).
    pub(crate) fn hurry(&self) {
        self.inner.flush_requested.notify_one();
    }

    /// Journal entries appended since the journal was created.
    pub fn entries_appended(&self) -> u64 {
        self.inner.appended.load(Ordering::Relaxed)
    }

    /// The last write error, if any write failed (even one a retry got past).
    pub fn last_error(&self) -> Option<StoreError> {
        self.inner.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Commit lag since the last call: how long after a run ended its final
    /// status was committed (what a crash right after a run's end can lose).
    pub fn commit_lag(&self) -> CommitLag {
        let mut samples = std::mem::take(&mut *self.inner.lags.lock().unwrap_or_else(|p| p.into_inner()));
        if samples.is_empty() {
            return CommitLag::default();
        }
        samples.sort_unstable();
        let at = |q: f64| Duration::from_micros(samples[((samples.len() - 1) as f64 * q).round() as usize] as u64);
        CommitLag {
            count: samples.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        }
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

    /// Counts `bytes` more handed over and not yet committed.
    pub(super) fn add_backlog(&self, bytes: usize) {
        self.inner.backlog.fetch_add(bytes, Ordering::Relaxed);
    }

    /// True when runs are too far ahead of the store.
    pub(crate) fn backlogged(&self) -> bool {
        self.inner.backlog.load(Ordering::Relaxed) > self.inner.config.max_backlog_bytes
    }

    /// Waits until the backlog is under the limit again. Waiting runs are
    /// woken one at a time, in order: each commit wakes the first, and a run
    /// that finds room wakes the next before it goes on (so thousands of
    /// waiting runs cost one wake-up each, not one each per commit).
    pub(crate) async fn drained(&self) {
        let mut woken = false;
        loop {
            let notified = self.inner.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.backlogged() {
                if woken {
                    self.inner.drained.notify_one();
                }
                return;
            }
            notified.await;
            woken = true;
        }
    }

    /// Registers a run this journal is about to run: false when it runs
    /// one with that id already. A run registered again after its journal
    /// gave it up is written again (a new claim of it).
    pub(crate) fn start_run(&self, run: &Arc<str>) -> bool {
        if !self
            .inner
            .live_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(Arc::clone(run))
        {
            return false;
        }
        self.inner
            .poisoned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(run);
        self.inner.live_runs.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// True while this journal runs a run with this id.
    pub(crate) fn is_running(&self, run: &str) -> bool {
        self.inner
            .live_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(run)
    }

    pub(super) fn run_ended(&self, run: &str) {
        self.inner
            .live_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(run);
        self.inner.live_runs.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One group commit per wake-up: everything queued is encoded into one
/// batch, which the committer writes while the next one is being encoded
/// (so encoding and the store's work overlap; batches stay in order). While
/// the journal has live runs, its lease is renewed every third of [`LEASE`].
async fn write_loop(inner: Arc<JournalInner>, mut rx: mpsc::UnboundedReceiver<WriterMsg>) {
    // The owner counts as alive while this task exists: a runtime shutting
    // down drops it, and other journals may then take its runs at once.
    struct Release(Arc<JournalInner>);
    impl Drop for Release {
        fn drop(&mut self) {
            self.0.live.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
    }
    let _release = Release(Arc::clone(&inner));
    // One batch waits while another is written: enough to overlap the two.
    let (to_committer, batches) = mpsc::channel(1);
    let committer = tokio::spawn(commit_loop(Arc::clone(&inner), batches));
    let mut messages = Vec::new();
    let max = inner.config.max_batch;
    let renew_every = LEASE / 3;
    let mut renewed: Option<tokio::time::Instant> = None;
    loop {
        let received = if inner.live_runs.load(Ordering::Relaxed) > 0 {
            match tokio::time::timeout(renew_every, rx.recv_many(&mut messages, max)).await {
                Ok(received) => received,
                Err(_) => usize::MAX, // time to renew the lease
            }
        } else {
            rx.recv_many(&mut messages, max).await
        };
        if received == 0 {
            break;
        }
        let flushing = messages.iter().any(|m| matches!(m, WriterMsg::Flush(_)));
        if received != usize::MAX && !flushing && messages.len() < max && !inner.config.commit_delay.is_zero() {
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
        let mut encoder = Encoder::new(&inner);
        for message in messages.drain(..) {
            encoder.add(message);
        }
        let now = tokio::time::Instant::now();
        let due = renewed.is_none_or(|at| now.duration_since(at) >= renew_every);
        if due && (!encoder.batch.is_empty() || inner.live_runs.load(Ordering::Relaxed) > 0) {
            encoder.batch.owner = Some(OwnerLease {
                owner: inner.owner.clone(),
                until_ms: now_ms() + LEASE.as_millis() as i64,
            });
            renewed = Some(now);
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

/// Writes encoded batches in order, then answers the flushes that came with
/// each. A failing write is retried with backoff for
/// [`JournalConfig::retry_for`]; runs the store refuses (fenced) are taken
/// out and told at once, and the rest is written without them; a batch given
/// up stops every run in it. Either way those runs are written no more.
async fn commit_loop(inner: Arc<JournalInner>, mut batches: mpsc::Receiver<Encoded>) {
    while let Some(mut encoded) = batches.recv().await {
        {
            // Filtered under the lock: no copy of the set per batch.
            let poisoned = inner.poisoned.lock().unwrap_or_else(|p| p.into_inner());
            if !poisoned.is_empty() {
                encoded.retain(|run| !poisoned.contains(run));
            }
        }
        if !encoded.batch.is_empty() {
            write_with_retries(&inner, &mut encoded).await;
        }
        inner.backlog.fetch_sub(encoded.bytes, Ordering::Relaxed);
        inner.drained.notify_one();
        for (_, confirm) in encoded.confirms.drain(..) {
            let _ = confirm.send(Ok(()));
        }
        if !encoded.status_times.is_empty() {
            let mut lags = inner.lags.lock().unwrap_or_else(|p| p.into_inner());
            let now = std::time::Instant::now();
            for queued in encoded.status_times.drain(..) {
                if lags.len() < MAX_LAG_SAMPLES {
                    lags.push(now.duration_since(queued).as_micros().min(u32::MAX as u128) as u32);
                }
            }
        }
        if !encoded.flushes.is_empty() {
            let losses = std::mem::take(&mut *inner.losses.lock().unwrap_or_else(|p| p.into_inner()));
            let result = match losses.len() {
                0 => Ok(()),
                1 => Err(losses.into_iter().next().expect("one loss")),
                _ => Err(merge_losses(losses)),
            };
            for flush in encoded.flushes.drain(..) {
                let _ = flush.send(result.clone());
            }
        }
    }
}

/// Writes `encoded`, retrying transient failures and taking fenced runs out;
/// on giving up, stops every run in it. Afterwards `encoded` holds only what
/// was committed (its confirmations are for those runs).
async fn write_with_retries(inner: &JournalInner, encoded: &mut Encoded) {
    let started = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(10);
    let mut failures = 0u32;
    loop {
        let error = match inner.store.write(&encoded.batch).await {
            Ok(()) => {
                if failures > 0 {
                    tracing::warn!(failures, "journal write succeeded after retries");
                }
                return;
            }
            Err(error) => error,
        };
        *inner.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.clone());
        if let StoreError::Fenced { runs } = &error {
            for fenced in runs {
                tracing::error!(run_id = %fenced.run_id, reason = %fenced.reason, "journal commit refused; the run stops");
                let failure = JournalError::Fenced {
                    run_id: fenced.run_id.to_string(),
                    reason: fenced.reason.clone(),
                };
                encoded.fail_run(inner, &fenced.run_id, &failure);
            }
            let refused: HashSet<&str> = runs.iter().map(|r| &*r.run_id).collect();
            encoded.retain(|run| !refused.contains(run));
            if encoded.batch.is_empty() {
                return;
            }
            continue;
        }
        failures += 1;
        if error.is_transient() && started.elapsed() + backoff <= inner.config.retry_for {
            if failures == 1 || failures.is_power_of_two() {
                tracing::warn!(%error, failures, "journal write failed; retrying");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            continue;
        }
        // Given up: every run in the batch stops here, and nothing more of
        // them is written (so nothing lands past the gap).
        let runs = encoded.runs();
        tracing::error!(%error, runs = runs.len(), "journal write given up; the runs in the batch stop");
        let loss = JournalError::Lost {
            runs: runs.iter().map(|r| r.to_string()).collect(),
            source: error,
        };
        for run in &runs {
            encoded.fail_run(inner, run, &loss);
        }
        inner.losses.lock().unwrap_or_else(|p| p.into_inner()).push(loss);
        encoded.retain(|_| false);
        return;
    }
}

/// Several losses as one error (what a flush reports).
fn merge_losses(losses: Vec<JournalError>) -> JournalError {
    let mut runs = Vec::new();
    let mut source = None;
    for loss in losses {
        match loss {
            JournalError::Lost { runs: lost, source: s } => {
                runs.extend(lost);
                source = Some(s);
            }
            JournalError::Fenced { run_id, .. } => runs.push(run_id),
            JournalError::Stopped => {}
        }
    }
    JournalError::Lost {
        runs,
        source: source.unwrap_or_else(|| StoreError::Database("commits were refused".into())),
    }
}

/// A batch ready to write, with what must happen once it is written.
struct Encoded {
    batch: WriteBatch,
    flushes: Vec<oneshot::Sender<Result<(), JournalError>>>,
    /// Runs waiting for their record's commit.
    confirms: Vec<(Arc<str>, Confirm)>,
    /// The logs handed over (to tell their runs when their commits fail).
    logs: Vec<Arc<RunLog>>,
    /// When each status in the batch was queued.
    status_times: Vec<std::time::Instant>,
    /// Backlog bytes the batch accounts for.
    bytes: usize,
}

impl Encoded {
    /// Every run the batch writes.
    fn runs(&self) -> Vec<Arc<str>> {
        let b = &self.batch;
        let mut runs: Vec<Arc<str>> = b
            .runs
            .iter()
            .map(|r| Arc::from(r.run_id.as_str()))
            .chain(b.fences.iter().map(|(r, _)| Arc::clone(r)))
            .chain(b.entries.iter().map(|e| Arc::clone(&e.run_id)))
            .chain(b.events.iter().map(|e| Arc::clone(&e.run_id)))
            .chain(b.states.iter().map(|(r, _)| Arc::clone(r)))
            .chain(b.snapshots.iter().map(|(r, _)| Arc::clone(r)))
            .chain(b.statuses.iter().map(|s| Arc::clone(&s.run_id)))
            .collect();
        runs.sort_unstable();
        runs.dedup();
        runs
    }

    /// Keeps only what belongs to runs `keep` accepts.
    fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let b = &mut self.batch;
        b.runs.retain(|r| keep(&r.run_id));
        b.fences.retain(|(r, _)| keep(r));
        b.entries.retain(|e| keep(&e.run_id));
        b.events.retain(|e| keep(&e.run_id));
        b.states.retain(|(r, _)| keep(r));
        b.snapshots.retain(|(r, _)| keep(r));
        b.statuses.retain(|s| keep(&s.run_id));
        self.confirms.retain(|(r, _)| keep(r));
    }

    /// Stops `run` with `error`: it is written no more, a run waiting for its
    /// claim hears why, and a live run is ended.
    fn fail_run(&mut self, inner: &JournalInner, run: &Arc<str>, error: &JournalError) {
        inner
            .poisoned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(Arc::clone(run));
        let mut kept = Vec::with_capacity(self.confirms.len());
        for (id, confirm) in self.confirms.drain(..) {
            if id == *run {
                let _ = confirm.send(Err(error.clone()));
            } else {
                kept.push((id, confirm));
            }
        }
        self.confirms = kept;
        for log in &self.logs {
            if log.run == *run {
                log.fail(error.clone());
            }
        }
    }
}

/// `{"type": .., "value": ..}` of `event` as text.
fn event_text(event: &AnyEvent) -> Result<String, serde_json::Error> {
    let mut json = Vec::with_capacity(128);
    event.write_json(&mut json)?;
    Ok(String::from_utf8(json).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// Turns the messages of one wake-up into one batch: a run's entries become
/// one row (or several, of at most `ROW_ENTRIES`); state and snapshots keep
/// the latest per run.
struct Encoder<'a> {
    inner: &'a JournalInner,
    batch: WriteBatch,
    flushes: Vec<oneshot::Sender<Result<(), JournalError>>>,
    confirms: Vec<(Arc<str>, Confirm)>,
    logs: Vec<Arc<RunLog>>,
    status_times: Vec<std::time::Instant>,
    bytes: usize,
    /// Runs given fences in this batch.
    fenced: HashSet<Arc<str>>,
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

impl<'a> Encoder<'a> {
    fn new(inner: &'a JournalInner) -> Self {
        Encoder {
            inner,
            batch: WriteBatch::default(),
            flushes: Vec::new(),
            confirms: Vec::new(),
            logs: Vec::new(),
            status_times: Vec::new(),
            bytes: 0,
            fenced: HashSet::new(),
            states: HashMap::new(),
            snapshots: HashMap::new(),
            new_runs: HashMap::new(),
            appended: 0,
            row_hint: 0,
        }
    }

    /// Fences `run` at `epoch` unless it is new in this batch.
    fn fence(&mut self, run: &Arc<str>, epoch: u64) {
        if !self.new_runs.contains_key(run) && self.fenced.insert(Arc::clone(run)) {
            self.batch.fences.push((Arc::clone(run), epoch));
        }
    }

    fn add(&mut self, message: WriterMsg) {
        match message {
            WriterMsg::Group(group) => {
                for message in group {
                    self.add(message);
                }
            }
            WriterMsg::Run(record, confirm) => {
                let run: Arc<str> = record.run_id.as_str().into();
                if let Some(confirm) = confirm {
                    self.confirms.push((Arc::clone(&run), confirm));
                }
                self.new_run(run, *record);
            }
            WriterMsg::Fence(run, epoch) => self.fence(&run, epoch),
            WriterMsg::Started {
                run,
                workflow,
                at_ms,
                confirm,
            } => {
                if let Some(confirm) = confirm {
                    self.confirms.push((Arc::clone(&run), confirm));
                }
                let record = RunRecord {
                    run_id: run.to_string(),
                    workflow: workflow.name.clone(),
                    fingerprint: workflow.fingerprint.clone(),
                    status: RunStatus::Running,
                    result: None,
                    error: None,
                    created_at_ms: at_ms,
                    updated_at_ms: at_ms,
                    owner: Some(OwnerLease {
                        owner: self.inner.owner.clone(),
                        until_ms: now_ms() + LEASE.as_millis() as i64,
                    }),
                    epoch: 1,
                };
                self.new_run(run, record);
            }
            WriterMsg::Handover(log) => {
                let taken = log.take();
                self.bytes += taken.bytes;
                if taken.poisoned {
                    return; // the run was stopped: nothing more of it is written
                }
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
                // After its messages: a new run's record comes in them.
                self.fence(&log.run, log.epoch());
                self.logs.push(log);
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
            WriterMsg::Status(mut update, stop, queued) => {
                if let Some(stop) = stop {
                    update.result = serde_json::to_value(&stop).ok();
                }
                self.status_times.push(queued);
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
        Encoded {
            batch: self.batch,
            flushes: self.flushes,
            confirms: self.confirms,
            logs: self.logs,
            status_times: self.status_times,
            bytes: self.bytes,
        }
    }
}
