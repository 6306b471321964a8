//! Journaled runs across a restart on `MemoryStore` (a clone of the store
//! outlives the runtime): sends and stream writes before a wait, a retry
//! pending at the crash, a run that recorded nothing, replay of times that
//! are not whole microseconds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stepwise::retry::RetryPolicy;
use stepwise::store::{JournalStore, MemoryStore, RunRecord, RunStatus, WriteBatch};
use stepwise::{
    Context, Event, HumanResponseEvent, InputRequiredEvent, Journal, ResumeError, RunOptions, StartEvent, StepConfig,
    StepError, StopEvent, WaitFor, Workflow,
};

mod common;
use common::durable::*;

#[test]
fn journaled_steps_can_send_or_write_then_wait() {
    // A journaled run holds a step's sends and stream writes until the step
    // ends — but applies them when it starts to wait, or these would deadlock.
    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct Question(u64);
    impl Event for Question {
        const NAME: &'static str = "Question";
    }
    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct Answer(u64);
    impl Event for Answer {
        const NAME: &'static str = "Answer";
    }
    let send_then_wait = Workflow::builder("send-then-wait")
        .step_with(
            StepConfig::new("ask").emits::<Question>(),
            |ctx: Context, _ev: StartEvent| async move {
                ctx.send_event(Question(41));
                let answer = ctx
                    .wait_for_event(WaitFor::<Answer>::new())
                    .await
                    .map_err(StepError::new)?;
                Ok::<_, StepError>(StopEvent::new(answer.0))
            },
        )
        .step_with(
            StepConfig::new("oracle")
                .skip_check(stepwise::GraphCheck::TerminalEvent)
                .skip_check(stepwise::GraphCheck::DeadEnd),
            |q: Question| async move { Answer(q.0 + 1) },
        )
        .build()
        .unwrap();
    let write_then_wait = Workflow::builder("write-then-wait")
        .step("ask", |ctx: Context, _ev: StartEvent| async move {
            ctx.write_event_to_stream(InputRequiredEvent::new("name?"));
            let answer = ctx
                .wait_for_event(WaitFor::<HumanResponseEvent>::new())
                .await
                .map_err(StepError::new)?;
            Ok::<_, StepError>(StopEvent::new(answer.response))
        })
        .build()
        .unwrap();
    runtime().block_on(async {
        let store = MemoryStore::new();
        let journal = Journal::new(store.clone());
        let handle = send_then_wait.run_journaled(StartEvent::new(), &journal, RunOptions::new());
        assert_eq!(finish(handle).await.unwrap().result, 42);

        let handle = write_then_wait.run_journaled(StartEvent::new(), &journal, RunOptions::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<InputRequiredEvent>()).await;
        handle.send_event(HumanResponseEvent::new("ada")).unwrap();
        let run_id = handle.run_id().to_owned();
        assert_eq!(finish(handle).await.unwrap().result, "ada");
        journal.flush().await.unwrap();
        let stream = stored_stream(&store, &run_id).await;
        assert_eq!(stream, ["InputRequiredEvent", "WorkflowIdle", "StopEvent"]);
    });
}

#[test]
fn a_retry_pending_at_a_crash_fires_after_resume_on_the_run_clock() {
    let attempts: Arc<Mutex<Vec<(u32, String)>>> = Arc::default();
    let started_at: Arc<Mutex<Vec<tokio::time::Instant>>> = Arc::default();
    let wf = {
        let (attempts, started_at) = (attempts.clone(), started_at.clone());
        Workflow::builder("retry-across-crash")
            .step_with(
                StepConfig::new("flaky").retry(RetryPolicy::fixed(3, Duration::from_secs(10))),
                move |ctx: Context, _ev: StartEvent| {
                    let (attempts, started_at) = (attempts.clone(), started_at.clone());
                    async move {
                        let info = ctx.retry_info();
                        let last = info.last_error.map(|e| e.to_string()).unwrap_or_default();
                        attempts.lock().unwrap().push((info.attempt, last));
                        started_at.lock().unwrap().push(tokio::time::Instant::now());
                        if info.attempt == 1 {
                            return Err(StepError::msg("flaky attempt 1"));
                        }
                        Ok(StopEvent::new(info.attempt))
                    }
                },
            )
            .build()
            .unwrap()
    };
    let store = MemoryStore::new();
    let rt = paused_runtime();
    let run_id = rt.block_on(async {
        let journal = Journal::new(store.clone());
        let handle = wf.run_journaled(StartEvent::new(), &journal, RunOptions::new());
        // The first attempt fails at once; the retry is due 10 s later. The
        // process "crashes" 3 s into that wait.
        tokio::time::sleep(Duration::from_secs(3)).await;
        journal.flush().await.unwrap();
        handle.run_id().to_owned()
    });
    rt.shutdown_background();
    assert_eq!(attempts.lock().unwrap().len(), 1);

    paused_runtime().block_on(async {
        let journal = Journal::new(store.clone());
        let resumed_at = tokio::time::Instant::now();
        let handle = wf.resume(&journal, &run_id).await.unwrap();
        assert_eq!(finish(handle).await.unwrap().result, 2);
        // The run's clock stops while the run is not running: it goes on from
        // the run's last journaled tick (the failure), so the retry comes the
        // full 10 s of run time after it.
        let second = *started_at.lock().unwrap().last().unwrap();
        assert_eq!(second - resumed_at, Duration::from_secs(10));
    });
    assert_eq!(
        *attempts.lock().unwrap(),
        [(1, String::new()), (2, "flaky attempt 1".to_owned())],
        "attempt numbers and the last error survive the crash"
    );
}

#[test]
fn a_run_with_no_journal_entries_is_marked_failed() {
    runtime().block_on(async {
        let store = MemoryStore::new();
        let wf = chain(false);
        let record = RunRecord {
            run_id: "early".into(),
            workflow: "chain".into(),
            fingerprint: wf.fingerprint().into(),
            status: RunStatus::Running,
            result: None,
            error: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            owner: None,
            epoch: 0,
        };
        store
            .write(&WriteBatch {
                runs: vec![record],
                ..WriteBatch::default()
            })
            .await
            .unwrap();
        let journal = Journal::new(store.clone());
        let resumed = wf.resume_unfinished(&journal).await.unwrap();
        assert_eq!(resumed.len(), 1);
        let error = resumed.into_iter().next().unwrap().1.unwrap_err();
        assert!(matches!(error, ResumeError::NothingRecorded { .. }), "{error:?}");
        assert!(
            error.to_string().contains("run early has no journal entries"),
            "{error}"
        );
        journal.flush().await.unwrap();
        let record = store.run("early").await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Failed);
        assert!(wf.resume_unfinished(&journal).await.unwrap().is_empty());
    });
}

#[test]
fn replay_matches_live_when_times_are_not_whole_microseconds() {
    // The journal keeps microseconds. A retry delay with a sub-microsecond
    // part, added to a time that is not a whole microsecond, must give the
    // same due time live and in a replay.
    use stepwise::retry::{Stop, Wait};
    let wf = Workflow::builder("sub-micro")
        .step_with(
            StepConfig::new("flaky").retry(
                RetryPolicy::new()
                    .stop(Stop::after_attempts(3))
                    .wait(Wait::random(Duration::ZERO, Duration::from_millis(10))),
            ),
            |ctx: Context, _ev: StartEvent| async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                if ctx.retry_info().attempt == 1 {
                    return Err(StepError::msg("first attempt fails"));
                }
                Ok(StopEvent::new("done"))
            },
        )
        .build()
        .unwrap();
    paused_runtime().block_on(async {
        let store = MemoryStore::new();
        let journal = Journal::new(store.clone());
        let handle = wf.run_journaled(StartEvent::new(), &journal, RunOptions::new().run_id("fixed-id"));
        // The paused clock moves in whole milliseconds from wherever it is:
        // moved by 999 ns right after the start, the run's times are
        // x.000999 ms.
        tokio::time::advance(Duration::from_nanos(999)).await;
        tokio::time::sleep(Duration::from_millis(3)).await; // the first attempt has failed
        let live = handle.snapshot().await.unwrap();
        journal.flush().await.unwrap();
        let replayed = wf.rebuild(&journal, "fixed-id", Some(live.journal_seq)).await.unwrap();
        assert_eq!(
            replayed.reducer_state()["retries"],
            live.reducer_state()["retries"],
            "the pending retry's due time"
        );
        assert_eq!(replayed.reducer_state(), live.reducer_state());
        assert_eq!(finish(handle).await.unwrap().result, "done");
    });
}
