//! Run limits: a workflow's `num_concurrent_runs` (extra runs wait in order)
//! and a step's `max_concurrent_across_runs` (over all runs of the workflow).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::durable::{finish, paused_runtime};
use common::*;
use stepwise::store::MemoryStore;
use stepwise::{
    Context, HumanResponseEvent, Journal, RunError, RunOptions, StartEvent, StepConfig, StepError, StopEvent,
    ValidationIssue, WaitFor, Workflow,
};

/// One step that records its run's number, counts itself in flight and
/// sleeps `nap` (on the paused clock).
fn napper(limit: usize, nap: Duration, active: InFlight, order: Log<u32>) -> Workflow {
    Workflow::builder("napper")
        .num_concurrent_runs(limit)
        .step("nap", move |ev: StartEvent| {
            let (active, order) = (active.clone(), order.clone());
            async move {
                let _guard = active.enter();
                order.push(ev.get::<u32>("n").unwrap_or(0));
                tokio::time::sleep(nap).await;
                StopEvent::new(ev.get::<u32>("n").unwrap_or(0))
            }
        })
        .build()
        .unwrap()
}

fn start(n: u32) -> StartEvent {
    StartEvent::new().with("n", n)
}

#[tokio::test(start_paused = true)]
async fn at_most_n_runs_are_active_and_the_rest_start_in_submission_order() {
    let (active, order) = (InFlight::new(), Log::default());
    let wf = napper(2, Duration::from_secs(1), active.clone(), order.clone());
    let began = tokio::time::Instant::now();
    // Clones share the limit.
    let handles: Vec<_> = (0..10).map(|n| wf.clone().run(start(n))).collect();
    for (n, handle) in handles.into_iter().enumerate() {
        assert_eq!(settle(handle).await.unwrap().result, n as u32);
    }
    assert_eq!(active.max(), 2, "never more than two runs at once");
    assert_eq!(order.get(), (0..10).collect::<Vec<u32>>());
    // Five waves of two one-second runs.
    assert_eq!(began.elapsed(), Duration::from_secs(5));
}

#[test]
fn a_zero_run_limit_is_refused_when_the_workflow_is_built() {
    let error = Workflow::builder("zero")
        .num_concurrent_runs(0)
        .step("s", |_: StartEvent| async { StopEvent::new(()) })
        .build()
        .unwrap_err();
    assert_eq!(error.issues, [ValidationIssue::ZeroConcurrentRuns]);
    let text = error.to_string();
    assert!(
        text.contains("zero") && text.contains("num_concurrent_runs = 0"),
        "{text}"
    );
    let error = Workflow::builder("zero-step")
        .step_with(
            StepConfig::new("s").max_concurrent_across_runs(0),
            |_: StartEvent| async { StopEvent::new(()) },
        )
        .build()
        .unwrap_err();
    assert_eq!(error.issues, [ValidationIssue::ZeroStepLimit { step: "s".into() }]);
    assert!(error.to_string().contains("`s`"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_waiting_run_can_be_cancelled_and_never_starts() {
    let (active, order) = (InFlight::new(), Log::default());
    let wf = napper(1, Duration::from_secs(10), active, order.clone());
    let first = wf.run(start(1));
    let waiting = wf.run(start(2));
    let third = wf.run(start(3));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_done());
    waiting.cancel();
    assert!(matches!(settle(waiting).await, Err(RunError::Cancelled { .. })));
    assert_eq!(settle(first).await.unwrap().result, 1);
    assert_eq!(settle(third).await.unwrap().result, 3);
    assert_eq!(order.get(), [1, 3], "the cancelled run never ran a step");
}

#[tokio::test(start_paused = true)]
async fn events_sent_to_a_waiting_run_are_delivered_once_it_starts_and_its_stream_works() {
    let wf = Workflow::builder("asks")
        .num_concurrent_runs(1)
        .step("ask", |_: StartEvent| async {
            AskHuman {
                question: "name?".into(),
            }
        })
        .step("answer", |ev: HumanAnswer| async move { StopEvent::new(ev.text) })
        .build()
        .unwrap();
    let first = wf.run(StartEvent::new());
    let second = wf.run(StartEvent::new());
    let stream = second.stream_events().unwrap();
    // Sent while the second run waits for its slot.
    second.send_event(HumanAnswer { text: "two".into() }).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!second.is_done());
    first.send_event(HumanAnswer { text: "one".into() }).unwrap();
    assert_eq!(settle(first).await.unwrap().result, "one");
    assert_eq!(settle(second).await.unwrap().result, "two");
    assert_eq!(names(&drain(stream).await).last(), Some(&"StopEvent"));
}

#[tokio::test(start_paused = true)]
async fn the_timeout_counts_from_when_the_run_gets_its_slot() {
    let wf = Workflow::builder("timed")
        .num_concurrent_runs(1)
        .timeout(Duration::from_secs(3))
        .step("nap", |_: StartEvent| async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            StopEvent::new(())
        })
        .build()
        .unwrap();
    let began = tokio::time::Instant::now();
    // Each run runs 2 s of its 3 s; the last ones wait far longer than 3 s.
    let handles: Vec<_> = (0..4).map(|_| wf.run(StartEvent::new())).collect();
    for handle in handles {
        settle(handle).await.unwrap();
    }
    assert_eq!(began.elapsed(), Duration::from_secs(8));

    // A run that does overrun its timeout still times out, 3 s after it started.
    let slow = Workflow::builder("slow")
        .num_concurrent_runs(1)
        .timeout(Duration::from_secs(3))
        .step("nap", |_: StartEvent| async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            StopEvent::new(())
        })
        .build()
        .unwrap();
    let first = slow.run(StartEvent::new());
    let second = slow.run(StartEvent::new());
    let began = tokio::time::Instant::now();
    settle(first).await.unwrap();
    settle(second).await.unwrap();
    assert_eq!(began.elapsed(), Duration::from_secs(4));
}

#[tokio::test(start_paused = true)]
async fn a_waiting_run_times_out_after_its_own_timeout_once_running() {
    let wf = Workflow::builder("overrun")
        .num_concurrent_runs(1)
        .timeout(Duration::from_secs(3))
        .step("nap", |ev: StartEvent| async move {
            let secs = ev.get::<u64>("secs").unwrap_or(0);
            tokio::time::sleep(Duration::from_secs(secs)).await;
            StopEvent::new(())
        })
        .build()
        .unwrap();
    let began = tokio::time::Instant::now();
    let first = wf.run(StartEvent::new().with("secs", 2u64));
    let second = wf.run(StartEvent::new().with("secs", 60u64));
    settle(first).await.unwrap();
    assert!(matches!(settle(second).await, Err(RunError::TimedOut { .. })));
    assert_eq!(began.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_step_limit_serialises_that_step_across_runs_while_other_steps_proceed() {
    let (limited, free) = (InFlight::new(), InFlight::new());
    let wf = {
        let (limited, free) = (limited.clone(), free.clone());
        Workflow::builder("shared-api")
            .step("free", move |_: StartEvent| {
                let free = free.clone();
                async move {
                    let _guard = free.enter();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ping(0)
                }
            })
            .step_with(StepConfig::new("api").max_concurrent_across_runs(1), move |_: Ping| {
                let limited = limited.clone();
                async move {
                    let _guard = limited.enter();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    StopEvent::new(())
                }
            })
            .build()
            .unwrap()
    };
    let began = tokio::time::Instant::now();
    let handles: Vec<_> = (0..5).map(|_| wf.run(StartEvent::new())).collect();
    for handle in handles {
        settle(handle).await.unwrap();
    }
    assert_eq!(limited.max(), 1);
    assert_eq!(free.max(), 5, "the unlimited step ran in all five runs at once");
    // 1 s of `free` everywhere, then five 1 s `api` calls one after another.
    assert_eq!(began.elapsed(), Duration::from_secs(6));
}

#[tokio::test(start_paused = true)]
async fn cancelled_and_failed_runs_free_their_slots() {
    let wf = Workflow::builder("frees")
        .num_concurrent_runs(1)
        .step_with(
            StepConfig::new("work").max_concurrent_across_runs(1),
            |ev: StartEvent| async move {
                match ev.get::<String>("do").unwrap_or_default().as_str() {
                    "fail" => Err(StepError::msg("boom")),
                    "hang" => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok(StopEvent::new("late"))
                    }
                    _ => Ok(StopEvent::new("ok")),
                }
            },
        )
        .build()
        .unwrap();
    let hang = wf.run(StartEvent::new().with("do", "hang"));
    let fail = wf.run(StartEvent::new().with("do", "fail"));
    let ok = wf.run(StartEvent::new().with("do", "ok"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    hang.cancel();
    assert!(matches!(settle(hang).await, Err(RunError::Cancelled { .. })));
    assert!(matches!(settle(fail).await, Err(RunError::StepFailed { .. })));
    assert_eq!(settle(ok).await.unwrap().result, "ok");
    // And once more: nothing leaked.
    assert_eq!(settle(wf.run(StartEvent::new())).await.unwrap().result, "ok");
}

#[tokio::test(start_paused = true)]
async fn a_step_limit_holds_across_retries_and_num_workers() {
    let active = InFlight::new();
    let tries = Arc::new(Mutex::new(0u32));
    let wf = {
        let (active, tries) = (active.clone(), tries.clone());
        Workflow::builder("retries")
            .step_with(
                StepConfig::new("fan").emits::<Ping>(),
                |ctx: Context, _: StartEvent| async move {
                    for n in 0..4 {
                        ctx.send_event(Ping(n));
                    }
                },
            )
            .step_with(
                StepConfig::new("api")
                    .num_workers(4)
                    .max_concurrent_across_runs(2)
                    .retry(stepwise::retry::RetryPolicy::fixed(3, Duration::from_millis(100))),
                move |ctx: Context, ev: Ping| {
                    let (active, tries) = (active.clone(), tries.clone());
                    async move {
                        let _guard = active.enter();
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        *tries.lock().unwrap() += 1;
                        if ctx.retry_info().attempt == 1 && ev.0 % 2 == 0 {
                            return Err(StepError::msg("first try fails"));
                        }
                        Ok(Pong(ev.0))
                    }
                },
            )
            .step("join", |ctx: Context, ev: Pong| async move {
                let done = ctx.collect_n(&ev, 4)?;
                Some(StopEvent::new(done.len()))
            })
            .build()
            .unwrap()
    };
    let handles: Vec<_> = (0..3).map(|_| wf.run(StartEvent::new())).collect();
    for handle in handles {
        assert_eq!(settle(handle).await.unwrap().result, 4);
    }
    assert_eq!(active.max(), 2);
    assert_eq!(*tries.lock().unwrap(), 3 * 6);
}

#[test]
fn journaled_runs_with_limits_resume() {
    let asked: Log<()> = Log::new();
    let counter = asked.clone();
    let wf = Workflow::builder("journaled")
        .num_concurrent_runs(1)
        .step_with(
            StepConfig::new("ask").max_concurrent_across_runs(1),
            move |ctx: Context, _: StartEvent| {
                let counter = counter.clone();
                async move {
                    counter.push(());
                    let answer = ctx
                        .wait_for_event(WaitFor::<HumanResponseEvent>::new())
                        .await
                        .map_err(StepError::new)?;
                    Ok::<_, StepError>(StopEvent::new(answer.response))
                }
            },
        )
        .build()
        .unwrap();
    let store = MemoryStore::new();
    let rt = paused_runtime();
    let ids = rt.block_on(async {
        let journal = Journal::new(store.clone());
        let first = wf.run_journaled(StartEvent::new(), &journal, RunOptions::new());
        let second = wf.run_journaled(StartEvent::new(), &journal, RunOptions::new());
        tokio::time::sleep(Duration::from_secs(1)).await;
        journal.flush().await.unwrap();
        vec![first.run_id().to_owned(), second.run_id().to_owned()]
    });
    rt.shutdown_background();
    paused_runtime().block_on(async {
        let journal = Journal::new(store.clone());
        let mut resumed = Vec::new();
        for id in &ids {
            resumed.push(wf.resume(&journal, id).await.unwrap());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        // One slot: only the first resumed run is running.
        assert_eq!(asked.get().len(), 2, "run 1 before the crash, run 1 again now");
        resumed[0].send_event(HumanResponseEvent::new("a")).unwrap();
        let second = resumed.pop().unwrap();
        let first = resumed.pop().unwrap();
        assert_eq!(finish(first).await.unwrap().result, "a");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(asked.get().len(), 3, "then run 2");
        second.send_event(HumanResponseEvent::new("b")).unwrap();
        assert_eq!(finish(second).await.unwrap().result, "b");
    });
}

struct Limited {
    active: InFlight,
}

#[stepwise::workflow(num_concurrent_runs = 3)]
impl Limited {
    #[stepwise::step(max_concurrent_across_runs = 1)]
    async fn call(&self, _ev: StartEvent) -> StopEvent {
        let _guard = self.active.enter();
        tokio::time::sleep(Duration::from_secs(1)).await;
        StopEvent::new(())
    }
}

#[tokio::test(start_paused = true)]
async fn the_macro_sets_both_limits() {
    use stepwise::WorkflowDefinition;
    let active = InFlight::new();
    let wf = Limited { active: active.clone() }.build().unwrap();
    assert_eq!(wf.num_concurrent_runs(), Some(3));
    let began = tokio::time::Instant::now();
    let handles: Vec<_> = (0..4).map(|_| wf.run(StartEvent::new())).collect();
    for handle in handles {
        settle(handle).await.unwrap();
    }
    assert_eq!(active.max(), 1);
    assert_eq!(began.elapsed(), Duration::from_secs(4));
}

#[tokio::test(start_paused = true)]
async fn a_step_slot_is_held_across_its_waits_and_a_cancelled_waiter_leaves_the_queue() {
    let asked: Log<u32> = Log::new();
    let wf = {
        let asked = asked.clone();
        Workflow::builder("ask-one-at-a-time")
            .step_with(
                StepConfig::new("ask").max_concurrent_across_runs(1),
                move |ctx: Context, ev: StartEvent| {
                    let asked = asked.clone();
                    async move {
                        asked.push(ev.get::<u32>("n").unwrap_or(0));
                        let answer = ctx
                            .wait_for_event(WaitFor::<HumanResponseEvent>::new())
                            .await
                            .map_err(StepError::new)?;
                        Ok::<_, StepError>(StopEvent::new(answer.response))
                    }
                },
            )
            .build()
            .unwrap()
    };
    let a = wf.run(start(1));
    let b = wf.run(start(2));
    let c = wf.run(start(3));
    tokio::time::sleep(Duration::from_secs(1)).await;
    // `a` holds the slot while it waits; `b` and `c` wait for it.
    assert_eq!(asked.get(), [1]);
    b.cancel();
    assert!(matches!(settle(b).await, Err(RunError::Cancelled { .. })));
    a.send_event(HumanResponseEvent::new("a")).unwrap();
    assert_eq!(settle(a).await.unwrap().result, "a");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(asked.get(), [1, 3], "the cancelled run's invocation left the queue");
    c.send_event(HumanResponseEvent::new("c")).unwrap();
    assert_eq!(settle(c).await.unwrap().result, "c");
}
