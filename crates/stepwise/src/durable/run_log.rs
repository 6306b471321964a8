//! A journaled run's side of the journal: the entry text it writes per tick,
//! and the [`RunLog`] it hands each tick's group to.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::core::codec::snapshot::build_snapshot;
use crate::core::define::workflow::WorkflowCore;
use crate::core::event::AnyEvent;
use crate::core::reducer::RunState;
use crate::store::{now_ms, EntryBatch, RunStatus, StatusUpdate};

use crate::runtime::recorder::{FaultHook, JournalError};

use super::writer::{Journal, WriterMsg};

/// What a journaled run has handed to its journal and the writer has not
/// taken yet. The run adds whole groups (a tick and what it caused) under the
/// lock and the writer takes everything at once, so a group is never split
/// between two commits. The run tells the writer only when the log goes from
/// taken to not: one channel message per run per commit, not one per tick,
/// and entries go straight into the row text the store writes.
pub(crate) struct RunLog {
    pub(super) run: Arc<str>,
    /// The epoch this journal holds the run at (its commits are fenced by it).
    epoch: std::sync::atomic::AtomicU64,
    inner: Mutex<LogInner>,
    /// Called once if the journal stops the run (its commits failed or were
    /// refused).
    fault: Mutex<Option<FaultHook>>,
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
    /// Backlog bytes of what is in the log.
    bytes: usize,
    /// The journal gave the run up: what it adds is dropped.
    poisoned: bool,
}

/// What the writer takes from a log: rows in order, then the messages.
pub(super) struct Taken {
    pub(super) full: Vec<LogRow>,
    pub(super) open: Option<LogRow>,
    pub(super) messages: Vec<WriterMsg>,
    pub(super) bytes: usize,
    pub(super) poisoned: bool,
}

/// Backlog bytes counted for a message besides entry text.
const MESSAGE_BYTES: usize = 64;

/// Consecutive entries of one run as the text of a JSON array still open at
/// the end (`[e1,e2`).
pub(super) struct LogRow {
    first_seq: u64,
    pub(super) count: u64,
    pub(super) json: Vec<u8>,
}

/// A row's first capacity is the last one's size, up to this: every run with
/// something not yet taken holds a row, so a long run's large rows must not
/// make thousands of short runs reserve as much (larger rows grow by doubling).
pub(super) const MAX_ROW_HINT: usize = 2 * 1024;

impl RunLog {
    fn new(run: Arc<str>, epoch: u64) -> Self {
        RunLog {
            run,
            epoch: std::sync::atomic::AtomicU64::new(epoch),
            inner: Mutex::new(LogInner::default()),
            fault: Mutex::new(None),
        }
    }

    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The journal gave the run up: nothing more is kept, and the run is
    /// told (once).
    pub(super) fn fail(&self, error: JournalError) {
        {
            let mut log = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            log.poisoned = true;
            log.full.clear();
            log.open = None;
            log.messages.clear();
        }
        let hook = self.fault.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(hook) = hook {
            hook(error);
        }
    }

    /// Adds a group: `count` entries from `first_seq` on (comma-separated
    /// JSON text) and `messages`; a new row starts with `row_hint` bytes of
    /// room. True when the writer must be told.
    fn add(&self, first_seq: u64, count: u64, entries: &[u8], messages: &mut Vec<WriterMsg>, row_hint: usize) -> bool {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let log = &mut *guard;
        if log.poisoned {
            messages.clear();
            return false;
        }
        log.bytes += entries.len() + MESSAGE_BYTES * messages.len();
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
    pub(super) fn take(&self) -> Taken {
        let mut log = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        log.queued = false;
        Taken {
            full: std::mem::take(&mut log.full),
            open: log.open.take(),
            messages: std::mem::take(&mut log.messages),
            bytes: std::mem::take(&mut log.bytes),
            poisoned: log.poisoned,
        }
    }
}

impl LogRow {
    pub(super) fn close(mut self, run: &Arc<str>) -> EntryBatch {
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

/// At most this many entries go into one stored row, so that a replay from a
/// snapshot reads (and parses) at most this many entries it does not need.
const ROW_ENTRIES: u64 = 1024;

/// A snapshot costs about as much to build and write as its size, and saves
/// a resume from replaying the entries written before it. One is due only
/// once the entries written since the last one are at least this many times
/// the larger of that snapshot's size and an estimate of the next one's
/// ([`EVENT_BYTES_ESTIMATE`] per event the run holds), so all of a run's
/// snapshots together cost at most 1/`SNAPSHOT_SIZE_FACTOR` of its journal
/// (plus one snapshot), however large its state grows.
pub(crate) const SNAPSHOT_SIZE_FACTOR: u64 = 8;

/// A low estimate of the bytes a snapshot takes per event it holds (queued,
/// in flight, buffered, waiting to be retried).
const EVENT_BYTES_ESTIMATE: u64 = 32;

/// Whether a snapshot may be due after `entries` entries of `bytes` bytes
/// since the last one, which was `last_size` bytes (0: none yet); `every` is
/// [`JournalConfig::snapshot_every`](super::JournalConfig::snapshot_every).
fn snapshot_due(every: u64, entries: u64, bytes: u64, last_size: u64) -> bool {
    every > 0 && entries >= every && bytes >= SNAPSHOT_SIZE_FACTOR.saturating_mul(last_size)
}

/// Events `state` holds, each of which a snapshot would write: O(steps and
/// collect buffers), not O(events).
fn held_events(state: &RunState) -> u64 {
    let queued: usize = state.steps.iter().map(|s| s.queue.len()).sum();
    let buffered: usize = state
        .buffers
        .values()
        .map(|b| b.by_type.iter().map(|(_, q)| q.len()).sum::<usize>())
        .sum();
    (queued + buffered + state.invocations.len + state.retries.len()) as u64
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
    /// Entries appended since the last snapshot (or the start).
    since_snapshot: u64,
    /// Their text's size in bytes.
    bytes_since_snapshot: u64,
    /// The size of the last snapshot written, in bytes (0 before the first).
    last_snapshot_bytes: u64,
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
    /// A run's journal side; `epoch` is the epoch the journal holds the run
    /// at (1 for a run it starts). `None` when the journal is running a run
    /// with this id already.
    pub(crate) fn new(journal: Journal, run_id: Arc<str>, seq: u64, epoch: u64) -> Option<Self> {
        if !journal.start_run(&run_id) {
            return None;
        }
        Some(RunJournal {
            journal,
            log: Arc::new(RunLog::new(Arc::clone(&run_id), epoch)),
            run_id,
            seq,
            since_snapshot: 0,
            bytes_since_snapshot: 0,
            last_snapshot_bytes: 0,
            pending: Vec::new(),
            entries: Vec::new(),
            entry_count: 0,
            first_seq: seq,
        })
    }

    /// What to do if the journal gives the run up.
    pub(crate) fn on_fault(&self, hook: FaultHook) {
        *self.log.fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(hook);
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
        let row_hint = self.journal.row_hint();
        self.journal
            .add_backlog(self.entries.len() + MESSAGE_BYTES * self.pending.len());
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

    /// Appends the entry `write` writes as the next one; returns true when
    /// a snapshot is due. An entry that does not serialise is not written at
    /// all (no partial entry, no gap in the sequence): the error goes back to
    /// the caller, which must not reduce the tick as it is.
    pub(super) fn append_with(
        &mut self,
        now: Duration,
        write: impl FnOnce(&mut Vec<u8>, u64, u64) -> Result<(), serde_json::Error>,
    ) -> Result<bool, serde_json::Error> {
        let seq = self.seq;
        let mark = self.entries.len();
        if self.entry_count > 0 {
            self.entries.push(b',');
        }
        if let Err(error) = write(&mut self.entries, seq, now.as_micros() as u64) {
            // Nothing of the entry stays and its number is not used: the
            // caller turns the tick into one that serialises.
            self.entries.truncate(mark);
            return Err(error);
        }
        self.seq += 1;
        if self.entry_count == 0 {
            self.first_seq = seq;
        }
        self.entry_count += 1;
        self.since_snapshot += 1;
        self.bytes_since_snapshot += (self.entries.len() - mark) as u64;
        let every = self.journal.config().snapshot_every;
        Ok(snapshot_due(
            every,
            self.since_snapshot,
            self.bytes_since_snapshot,
            self.last_snapshot_bytes,
        ))
    }

    /// Writes a journal snapshot of `state` (covering every entry so far),
    /// unless the entries since the last one are still too few for its
    /// estimated size (see [`SNAPSHOT_SIZE_FACTOR`]); then the next entry
    /// asks again.
    pub(crate) fn snapshot(&mut self, workflow: &WorkflowCore, state: &RunState, now: Duration, published: u64) {
        let estimate = EVENT_BYTES_ESTIMATE.saturating_mul(held_events(state));
        if self.bytes_since_snapshot < SNAPSHOT_SIZE_FACTOR.saturating_mul(estimate) {
            return;
        }
        self.since_snapshot = 0;
        self.bytes_since_snapshot = 0;
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
                Ok(json) => {
                    self.last_snapshot_bytes = json.len() as u64;
                    self.pending.push(WriterMsg::Snapshot {
                        run: Arc::clone(&self.run_id),
                        json,
                    })
                }
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
        self.pending.push(WriterMsg::Status(
            Box::new(update),
            result.cloned(),
            std::time::Instant::now(),
        ));
    }
}

impl Drop for RunJournal {
    fn drop(&mut self) {
        self.journal.run_ended(&self.run_id);
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
        let log = RunLog::new("r".into(), 1);
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
        let log = RunLog::new("r".into(), 1);
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
