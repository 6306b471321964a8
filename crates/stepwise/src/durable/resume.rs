//! Resuming runs: rebuilding a run's state from its journal (or a
//! snapshot), checking it against the workflow, and continuing it.

use std::sync::Arc;
use std::time::Duration;

use crate::core::codec::journal::{DecodeError, Decoder, Entry, StoredEntry, StoredEvent};
use crate::core::codec::snapshot::Snapshot;
use crate::core::define::workflow::{Workflow, WorkflowCore};
use crate::core::event::Event;
use crate::core::reducer::{Outcome, RunState};
use crate::runtime::{self, Begin, RunHandle, RunOptions};
use crate::store::{
    now_ms, Claim, EntryBatch, JournalStore, RunFilter, RunRecord, RunStatus, StatusUpdate, StoreError,
};

use super::writer::{Journal, WriterMsg};
use crate::core::codec::snapshot::build_snapshot;

/// Why a run could not be resumed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeError {
    /// Another live journal holds the run (another process is running it,
    /// or this process resumed it already).
    #[error("run {run_id} is held by another journal: {reason}; resume it once that one has stopped, or wait for it with ResumeOptions::wait_for_owner")]
    Held {
        /// The run.
        run_id: String,
        /// Who holds it.
        reason: String,
    },
    /// The run id is not one a run can have (empty, blank, with a control
    /// character, or too long; see [`check_run_id`](crate::check_run_id)).
    #[error("run id {} is not valid: {reason}", crate::core::error::shown_run_id(.run_id))]
    InvalidRunId {
        /// The id as given.
        run_id: String,
        /// What is wrong with it.
        reason: String,
    },
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
    /// The snapshot is inconsistent (hand-edited or damaged): its parts do not
    /// fit together, so no run could continue from it.
    #[error("run {run_id}: the snapshot is inconsistent: {problem}")]
    InvalidSnapshot {
        /// The run.
        run_id: String,
        /// What is wrong.
        problem: String,
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
    wait_for_owner: Option<Duration>,
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

    /// When another live journal holds the run, keeps trying for up to
    /// `limit` (every 100 ms) instead of failing at once with
    /// [`ResumeError::Held`].
    pub fn wait_for_owner(mut self, limit: Duration) -> Self {
        self.wait_for_owner = Some(limit);
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
            snapshot
                .validate(workflow)
                .map_err(|problem| ResumeError::InvalidSnapshot {
                    run_id: run_id.to_owned(),
                    problem,
                })?;
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
    // Entries after a snapshot cannot be older than it: if they are, its
    // `journal_seq` went backwards and they would be applied twice.
    if let Some(first) = entries.first().filter(|_| from_seq > 0) {
        let snapshot_us = at.as_micros() as u64;
        if first.at_us < snapshot_us {
            return Err(ResumeError::InvalidSnapshot {
                run_id: run_id.to_owned(),
                problem: format!(
                    "it says it covers {from_seq} journal entries, but entry {} is older ({} µs) than the snapshot \
                     ({snapshot_us} µs), so it covers more",
                    first.seq, first.at_us
                ),
            });
        }
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

/// Claims `run_id` for `journal`: at once, or (when asked) retrying while
/// another live journal holds it. A holder in this same process is waited for
/// briefly even unasked: a runtime that is shutting down releases its
/// journals' runs a moment later.
async fn claim(journal: &Journal, run_id: &str, options: &ResumeOptions) -> Result<u64, ResumeError> {
    const SAME_PROCESS_GRACE: Duration = Duration::from_secs(2);
    let started = tokio::time::Instant::now();
    loop {
        let request = Claim {
            run_id: run_id.to_owned(),
            lease: journal.lease(),
        };
        let error = match journal.store().claim(&request).await {
            Ok(Some(epoch)) => return Ok(epoch),
            Ok(None) => {
                return Err(ResumeError::NotFound {
                    run_id: run_id.to_owned(),
                })
            }
            Err(error) => error,
        };
        let StoreError::Claimed { reason, .. } = error else {
            return Err(ResumeError::Store {
                run_id: run_id.to_owned(),
                source: error,
            });
        };
        let held_here = journal
            .store()
            .run(run_id)
            .await
            .ok()
            .flatten()
            .and_then(|r| r.owner)
            .is_some_and(|o| o.owner.is_this_process());
        let limit = match (options.wait_for_owner, held_here) {
            (Some(limit), true) => limit.max(SAME_PROCESS_GRACE),
            (Some(limit), false) => limit,
            (None, true) => SAME_PROCESS_GRACE,
            (None, false) => Duration::ZERO,
        };
        if started.elapsed() >= limit {
            return Err(ResumeError::Held {
                run_id: run_id.to_owned(),
                reason,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
        crate::check_run_id(run_id).map_err(|reason| ResumeError::InvalidRunId {
            run_id: run_id.to_owned(),
            reason,
        })?;
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
        if journal.is_running(run_id) {
            return Err(ResumeError::Held {
                run_id: run_id.to_owned(),
                reason: "this journal is running it now".into(),
            });
        }
        let epoch = claim(journal, run_id, &options).await?;
        // Writes outside the run's log (the statuses below) are fenced too.
        journal.send(WriterMsg::Fence(run_id.into(), epoch));
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
            journal.send(WriterMsg::Status(Box::new(update), None, std::time::Instant::now()));
            return Err(ResumeError::NothingRecorded {
                run_id: run_id.to_owned(),
            });
        }
        if rebuilt.state.is_finished() {
            // The journal holds the run's end but its status was not recorded
            // (a journal written by an older version, or a failed status
            // write): record it now instead of resuming a finished run.
            let result = match rebuilt.outcome {
                Some(outcome) => runtime::outcome_result(&self.core, run_id, outcome),
                None => Err(crate::runtime::RunError::Aborted {
                    run_id: run_id.to_owned(),
                }),
            };
            let (status, stop, error) = runtime::ended_status(&result);
            let update = StatusUpdate {
                run_id: run_id.into(),
                status,
                result: None,
                error,
                at_ms: now_ms(),
            };
            journal.send(WriterMsg::Status(
                Box::new(update),
                stop.cloned(),
                std::time::Instant::now(),
            ));
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
        Ok(runtime::launch(
            Arc::clone(&self.core),
            Begin::Resume {
                run_id: run_id.into(),
                state: Box::new(rebuilt.state),
                at: rebuilt.at,
                journal_seq: rebuilt.journal_seq,
                published: rebuilt.published,
                store: state,
                recorder: Some(Arc::new(journal.clone())),
                epoch,
                claim: None,
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
            Some(outcome) => runtime::ended_status(&runtime::outcome_result(&self.core, run_id, outcome)).0,
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
        snapshot
            .validate(&self.core)
            .map_err(|problem| ResumeError::InvalidSnapshot {
                run_id: run_id.clone(),
                problem,
            })?;
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
        let mut claimed = None;
        if let (Some(journal), Some(json)) = (options.journal_ref(), seed) {
            // The record is the run's claim: the run waits for its commit
            // before any step runs, and stops if the id is in use.
            let (confirm, rx) = tokio::sync::oneshot::channel();
            claimed = Some(rx);
            let mut group = vec![WriterMsg::Run(
                Box::new(RunRecord {
                    run_id: run_id.clone(),
                    workflow: self.core.name.clone(),
                    fingerprint: snapshot.fingerprint.clone(),
                    status: RunStatus::Running,
                    result: None,
                    error: None,
                    created_at_ms: now_ms(),
                    updated_at_ms: now_ms(),
                    owner: Some(journal.lease()),
                    epoch: 1,
                }),
                Some(confirm),
            )];
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
        Ok(runtime::launch(
            Arc::clone(&self.core),
            Begin::Resume {
                run_id: run_arc,
                state: Box::new(state),
                at: Duration::from_micros(snapshot.at_us),
                journal_seq: snapshot.journal_seq,
                published: snapshot.published,
                store,
                recorder: options.recorder.clone(),
                epoch: 1,
                claim: claimed,
            },
        ))
    }
}
