//! The journal behind the runtime's recorder port: a [`Journal`] hands out
//! one [`RunJournal`] per run, and the run tells it every change.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::core::codec::compact;
use crate::core::codec::journal::{record_collect, record_waiter};
use crate::core::context::collect::Expectation;
use crate::core::context::wait::WaiterSpec;
use crate::core::define::workflow::WorkflowCore;
use crate::core::event::AnyEvent;
use crate::core::ids::{InvocationId, RunStatus};
use crate::core::reducer::{Effect, RunState, Tick};
use crate::runtime::recorder::{Claimed, EffectPolicy, FaultHook, RecordError, Recorder, RecorderSource};
use crate::runtime::RunOptions;
use crate::store::now_ms;

use super::run_log::RunJournal;
use super::writer::{Journal, WriterMsg};

impl RunOptions {
    /// Journals the run: every tick, published event and state change is
    /// written to `journal`, and the run can be resumed after a crash.
    pub fn journal(mut self, journal: &Journal) -> Self {
        self.recorder = Some(Arc::new(journal.clone()));
        self
    }

    /// The journal given with [`RunOptions::journal`], if any.
    pub(crate) fn journal_ref(&self) -> Option<&Journal> {
        self.recorder.as_ref()?.as_any().downcast_ref::<Journal>()
    }
}

impl Recorder for RunJournal {
    fn policy(&self) -> EffectPolicy {
        // A step's effects are committed with its result, never half of them.
        EffectPolicy::Deferred
    }

    fn tick(&mut self, tick: &Tick, state: &RunState, now: Duration) -> Result<bool, RecordError> {
        self.append_with(now, |out, seq, at_us| compact::write_tick(out, seq, at_us, tick, state))
    }

    fn collect(
        &mut self,
        invocation: InvocationId,
        buffer: &str,
        event: &AnyEvent,
        expect: &Expectation<'_>,
        now: Duration,
    ) -> Result<bool, RecordError> {
        let data = record_collect(invocation, buffer, event, expect);
        self.append_with(now, |out, seq, at_us| compact::write_entry(out, seq, at_us, data))
    }

    fn waiter(
        &mut self,
        invocation: InvocationId,
        spec: &WaiterSpec,
        effects: &[Effect],
        state: &RunState,
        now: Duration,
    ) -> Result<bool, RecordError> {
        let data = record_waiter(invocation, spec, effects, state);
        self.append_with(now, |out, seq, at_us| compact::write_entry(out, seq, at_us, data))
    }

    fn published(&mut self, seq: u64, event: &AnyEvent) {
        RunJournal::published(self, seq, event);
    }

    fn status(&mut self, status: RunStatus, stop: Option<&AnyEvent>, error: Option<String>) {
        RunJournal::status(self, status, stop, error);
    }

    fn state_changed(&mut self, json: String) {
        let run = Arc::clone(&self.run_id);
        self.queue(WriterMsg::State { run, json });
    }

    fn snapshot(&mut self, workflow: &WorkflowCore, state: &RunState, now: Duration, published: u64) {
        RunJournal::snapshot(self, workflow, state, now, published);
    }

    fn commit(&mut self) {
        RunJournal::commit(self);
    }

    fn seq(&self) -> u64 {
        self.seq
    }

    fn on_fault(&self, hook: FaultHook) {
        RunJournal::on_fault(self, hook);
    }
}

impl RecorderSource for Journal {
    fn start(
        &self,
        run_id: &Arc<str>,
        workflow: &Arc<WorkflowCore>,
        state: Option<String>,
        confirm: bool,
    ) -> Option<(Box<dyn Recorder>, Option<Claimed>)> {
        let mut run = RunJournal::new(self.clone(), Arc::clone(run_id), 0, 1)?;
        let (confirm, claimed) = match confirm {
            true => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        // Committed together with the start event's entry.
        run.queue(WriterMsg::Started {
            run: Arc::clone(run_id),
            workflow: Arc::clone(workflow),
            at_ms: now_ms(),
            confirm,
        });
        if claimed.is_some() {
            // A run waiting for its claim should not wait for the commit delay too.
            self.hurry();
        }
        if let Some(json) = state {
            run.queue(WriterMsg::State {
                run: Arc::clone(run_id),
                json,
            });
        }
        Some((Box::new(run), claimed))
    }

    fn resume(&self, run_id: &Arc<str>, seq: u64, epoch: u64) -> Option<Box<dyn Recorder>> {
        let run = RunJournal::new(self.clone(), Arc::clone(run_id), seq, epoch)?;
        Some(Box::new(run))
    }

    fn backlogged(&self) -> bool {
        Journal::backlogged(self)
    }

    fn drained(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(Journal::drained(self))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
