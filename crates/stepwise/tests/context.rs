//! The `Context` a step sees: sending, targeted sending, fan-in collection,
//! writing to the stream, and run/step identity.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use stepwise::{
    AnyEvent, Context, EventType, RunOptions, SendError, StartEvent, StepConfig, StepPhase, StopEvent, UnhandledEvent,
    Workflow,
};

/// Runs `probe` once, as the only step of a workflow, and returns what it returns.
/// Collect calls inside one invocation are sequential, so their results are exact.
async fn in_a_step<T, F>(probe: F) -> T
where
    T: Send + 'static,
    F: Fn(&Context) -> T + Send + Sync + 'static,
{
    let slot: Arc<Mutex<Option<T>>> = Arc::new(Mutex::new(None));
    let out = Arc::clone(&slot);
    let wf = Workflow::builder("probe")
        .step("probe", move |ctx: Context, _: StartEvent| {
            *out.lock().unwrap() = Some(probe(&ctx));
            async { StopEvent::default() }
        })
        .build()
        .unwrap();
    settle(wf.run(StartEvent::new())).await.unwrap();
    let value = slot.lock().unwrap().take();
    value.expect("the probe step ran")
}

fn show(set: Option<Vec<AnyEvent>>) -> Option<Vec<String>> {
    set.map(|events| events.iter().map(|e| format!("{e:?}")).collect())
}

#[tokio::test(start_paused = true)]
async fn send_event_broadcasts_to_every_acceptor() {
    let hits = Log::new();
    let (left, right) = (hits.clone(), hits.clone());
    let wf = Workflow::builder("broadcast")
        .step_with(
            StepConfig::new("start").emits::<Ping>(),
            |ctx: Context, _: StartEvent| async move {
                ctx.send_event(Ping(7));
            },
        )
        .step("left", move |ev: Ping| {
            left.push(format!("left{}", ev.0));
            async move { Done { id: 1 } }
        })
        .step("right", move |ev: Ping| {
            right.push(format!("right{}", ev.0));
            async move { Done { id: 2 } }
        })
        .step("join", |ctx: Context, ev: Done| async move {
            ctx.collect_n(&ev, 2).map(|_| StopEvent::new("joined"))
        })
        .build()
        .unwrap();
    assert_eq!(settle(wf.run(StartEvent::new())).await.unwrap().result, "joined");
    let mut hits = hits.get();
    hits.sort();
    assert_eq!(hits, ["left7", "right7"]);
}

#[tokio::test(start_paused = true)]
async fn send_event_to_delivers_to_that_step_only() {
    let left_hits = Arc::new(AtomicU32::new(0));
    let count = Arc::clone(&left_hits);
    let wf = Workflow::builder("targeted")
        .step_with(
            StepConfig::new("start").emits::<Ping>(),
            |ctx: Context, _: StartEvent| async move {
                ctx.send_event_to("right", Ping(3)).unwrap();
            },
        )
        .step("left", move |ev: Ping| {
            count.fetch_add(1, Ordering::SeqCst);
            async move { StopEvent::new(format!("left{}", ev.0)) }
        })
        .step("right", |ev: Ping| async move {
            // Gives `left` every chance to run if the event had reached it.
            tokio::time::sleep(Duration::from_millis(50)).await;
            StopEvent::new(format!("right{}", ev.0))
        })
        .build()
        .unwrap();
    let handle = wf.run_with(StartEvent::new(), RunOptions::new().internal_events(true));
    let stream = handle.stream_events().unwrap();
    assert_eq!(settle(handle).await.unwrap().result, "right3");
    assert_eq!(left_hits.load(Ordering::SeqCst), 0);
    let running: Vec<String> = phases(&drain(stream).await)
        .into_iter()
        .filter(|(_, phase)| *phase == StepPhase::Running)
        .map(|(step, _)| step)
        .collect();
    assert_eq!(running, ["start", "right"]);
}

#[tokio::test(start_paused = true)]
async fn send_event_to_an_unknown_or_non_accepting_step_fails_naming_both() {
    let errors: Log<SendError> = Log::new();
    let log = errors.clone();
    let wf = Workflow::builder("targets")
        .step("start", move |ctx: Context, _: StartEvent| {
            log.push(ctx.send_event_to("nowhere", Ping(1)).unwrap_err());
            log.push(ctx.send_event_to("start", Ping(2)).unwrap_err());
            async { Ping(3) }
        })
        .step("ping", |ev: Ping| async move { StopEvent::new(ev.0) })
        .build()
        .unwrap();
    let handle = wf.run(StartEvent::new());
    let stream = handle.stream_events().unwrap();
    assert_eq!(
        settle(handle).await.unwrap().result,
        3,
        "the refused sends delivered nothing"
    );
    let events = drain(stream).await;
    assert!(of_type::<UnhandledEvent>(&events).is_empty(), "{events:?}");

    let errors = errors.get();
    assert_eq!(
        errors[0],
        SendError::UnknownStep {
            workflow: "targets".into(),
            step: "nowhere".into(),
            event: "Ping"
        }
    );
    let text = errors[0].to_string();
    assert!(text.contains("nowhere") && text.contains("Ping"), "{text}");
    assert_eq!(
        errors[1],
        SendError::NotAccepted {
            step: "start".into(),
            event: "Ping",
            accepted: "StartEvent".into()
        }
    );
    let text = errors[1].to_string();
    assert!(
        text.contains("`start`") && text.contains("Ping") && text.contains("StartEvent"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn collect_events_returns_none_until_complete_then_the_set_in_expected_order() {
    let results = in_a_step(|ctx| {
        let expected = [EventType::of::<C>(), EventType::of::<A>(), EventType::of::<B>()];
        vec![
            show(ctx.collect_events(&A(1), &expected)),
            show(ctx.collect_events(&B(2), &expected)),
            show(ctx.collect_events(&C(3), &expected)),
            // The buffer was emptied by the completed set.
            show(ctx.collect_events(&A(4), &expected)),
        ]
    })
    .await;
    assert_eq!(
        results,
        [
            None,
            None,
            Some(vec!["C(3)".into(), "A(1)".into(), "B(2)".into()]),
            None
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn collect_events_keeps_arrival_order_within_a_type() {
    let set = in_a_step(|ctx| {
        let expected = [
            EventType::of::<A>(),
            EventType::of::<B>(),
            EventType::of::<A>(),
            EventType::of::<B>(),
        ];
        assert!(ctx.collect_events(&A(1), &expected).is_none());
        assert!(ctx.collect_events(&A(2), &expected).is_none());
        assert!(ctx.collect_events(&B(1), &expected).is_none());
        show(ctx.collect_events(&B(2), &expected))
    })
    .await;
    assert_eq!(set.unwrap(), ["A(1)", "B(1)", "A(2)", "B(2)"]);
}

#[tokio::test(start_paused = true)]
async fn collect_events_does_not_buffer_unexpected_or_extra_events() {
    let results = in_a_step(|ctx| {
        let ab = [EventType::of::<A>(), EventType::of::<B>()];
        let mut out = vec![
            show(ctx.collect_events(&A(1), &ab)),
            show(ctx.collect_events(&A(2), &ab)), // A is already there: dropped
            show(ctx.collect_events(&C(9), &ab)), // not expected: dropped
            show(ctx.collect_events(&B(3), &ab)),
        ];
        // Had A(2) been kept, B(4) would complete a second set.
        out.push(show(ctx.collect_events(&B(4), &ab)));
        out.push(show(ctx.collect_events(&A(5), &ab)));
        // Had C(9) been kept, it would come out here instead of C(10).
        out.push(show(ctx.collect_events(&C(10), &[EventType::of::<C>()])));
        out
    })
    .await;
    assert_eq!(
        results,
        [
            None,
            None,
            None,
            Some(vec!["A(1)".into(), "B(3)".into()]),
            None,
            Some(vec!["A(5)".into(), "B(4)".into()]),
            Some(vec!["C(10)".into()]),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn collect_events_with_nothing_expected_returns_an_empty_set_at_once() {
    let (empty, after) = in_a_step(|ctx| {
        let empty = show(ctx.collect_events(&A(1), &[]));
        // A(1) was not buffered either.
        let after = show(ctx.collect_events(&A(2), &[EventType::of::<A>()]));
        (empty, after)
    })
    .await;
    assert_eq!(empty, Some(vec![]));
    assert_eq!(after, Some(vec!["A(2)".to_string()]));
}

#[tokio::test(start_paused = true)]
async fn collect_typed_tuples() {
    let results = in_a_step(|ctx| {
        (
            ctx.collect::<(A, B, C)>(&C(3)),
            ctx.collect::<(A, B, C)>(&A(1)),
            ctx.collect::<(A, B, C)>(&B(2)),
            ctx.collect::<(A,)>(&A(7)),
            ctx.collect::<(B, B)>(&B(8)),
            ctx.collect::<(B, B)>(&B(9)),
        )
    })
    .await;
    assert_eq!(results.0, None);
    assert_eq!(results.1, None);
    assert_eq!(results.2, Some((A(1), B(2), C(3))));
    assert_eq!(results.3, Some((A(7),)));
    assert_eq!(results.4, None);
    assert_eq!(results.5, Some((B(8), B(9))));
}

#[tokio::test(start_paused = true)]
async fn collect_n_returns_n_events_in_arrival_order() {
    let results = in_a_step(|ctx| {
        vec![
            ctx.collect_n(&A(3), 3),
            ctx.collect_n(&A(1), 3),
            ctx.collect_n(&A(2), 3),
            ctx.collect_n(&A(9), 0),
            ctx.collect_n(&A(10), 1), // A(9) was not kept by the zero-sized collect
        ]
    })
    .await;
    assert_eq!(
        results,
        [
            None,
            None,
            Some(vec![A(3), A(1), A(2)]),
            Some(vec![]),
            Some(vec![A(10)])
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn named_buffers_are_independent() {
    let results = in_a_step(|ctx| {
        let ab = [EventType::of::<A>(), EventType::of::<B>()];
        vec![
            show(ctx.collect_events_in("x", &A(1), &ab)),
            show(ctx.collect_events_in("y", &B(2), &ab)),
            show(ctx.collect_events(&B(3), &ab)),
            show(ctx.collect_events_in("x", &B(4), &ab)),
            show(ctx.collect_events_in("y", &A(5), &ab)),
            show(ctx.collect_events(&A(6), &ab)),
        ]
    })
    .await;
    let set = |a: &str, b: &str| Some(vec![a.to_string(), b.to_string()]);
    assert_eq!(
        results,
        [
            None,
            None,
            None,
            set("A(1)", "B(4)"),
            set("A(5)", "B(2)"),
            set("A(6)", "B(3)")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn collect_buffers_belong_to_one_step() {
    let seen = Log::new();
    let (first, second) = (seen.clone(), seen.clone());
    let ab = [EventType::of::<A>(), EventType::of::<B>()];
    let wf = Workflow::builder("per-step")
        .step("first", move |ctx: Context, _: StartEvent| {
            first.push(show(ctx.collect_events(&A(1), &ab)));
            async { Ping(0) }
        })
        .step("second", move |ctx: Context, _: Ping| {
            // Would complete the set if buffers were shared between steps.
            second.push(show(ctx.collect_events(&B(2), &ab)));
            async { StopEvent::default() }
        })
        .build()
        .unwrap();
    settle(wf.run(StartEvent::new())).await.unwrap();
    assert_eq!(seen.get(), [None, None]);
}

#[tokio::test(start_paused = true)]
async fn fan_in_across_invocations_hands_the_set_to_exactly_one() {
    let complete = Arc::new(AtomicU32::new(0));
    let incomplete = Arc::new(AtomicU32::new(0));
    let (yes, no) = (Arc::clone(&complete), Arc::clone(&incomplete));
    let wf = Workflow::builder("fan-in")
        .step("start", |_: StartEvent| async {
            (0..6).map(|id| Item { id }).collect::<Vec<_>>()
        })
        .step_with(StepConfig::new("work").num_workers(6), |ev: Item| async move {
            tokio::time::sleep(Duration::from_millis(u64::from(10 * (6 - ev.id)))).await;
            Done { id: ev.id }
        })
        .step("join", move |ctx: Context, ev: Done| {
            let set = ctx.collect_n(&ev, 6);
            match &set {
                Some(_) => yes.fetch_add(1, Ordering::SeqCst),
                None => no.fetch_add(1, Ordering::SeqCst),
            };
            async move { set.map(|set| StopEvent::new(set.iter().map(|d| d.id).collect::<Vec<_>>())) }
        })
        .build()
        .unwrap();
    let stop = settle(wf.run(StartEvent::new())).await.unwrap();
    // Arrival order: the shortest sleeps finish first.
    assert_eq!(stop.result_as::<Vec<u32>>().unwrap(), [5, 4, 3, 2, 1, 0]);
    assert_eq!(complete.load(Ordering::SeqCst), 1);
    assert_eq!(incomplete.load(Ordering::SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn written_events_reach_the_stream_before_the_writers_downstream_effects() {
    let wf = Workflow::builder("progress")
        .step("first", |ctx: Context, _: StartEvent| async move {
            ctx.write_event_to_stream(Progress("first: begin".into()));
            tokio::task::yield_now().await;
            ctx.write_event_to_stream(Progress("first: end".into()));
            Ping(1)
        })
        .step("second", |ctx: Context, ev: Ping| async move {
            ctx.write_event_to_stream(Progress(format!("second: {}", ev.0)));
            StopEvent::new("ok")
        })
        .build()
        .unwrap();
    let handle = wf.run_with(StartEvent::new(), RunOptions::new().internal_events(true));
    let stream = handle.stream_events().unwrap();
    settle(handle).await.unwrap();
    let events = drain(stream).await;
    let progress: Vec<String> = of_type::<Progress>(&events).into_iter().map(|p| p.0).collect();
    assert_eq!(progress, ["first: begin", "first: end", "second: 1"]);
    let first_end = position(&events, |e| {
        e.downcast_ref::<Progress>().is_some_and(|p| p.0 == "first: end")
    });
    let second_runs = position(&events, |e| {
        e.downcast_ref::<stepwise::StepStateChanged>()
            .is_some_and(|s| s.step == "second" && s.phase == StepPhase::Running)
    });
    let stop = position(&events, |e| e.is::<StopEvent>());
    assert!(first_end < second_runs, "{:?}", names(&events));
    assert!(second_runs < stop);
    assert_eq!(stop, events.len() - 1);
    // Written events are published, not routed: nobody accepts Progress, yet no UnhandledEvent.
    assert!(of_type::<UnhandledEvent>(&events).is_empty());
}

#[tokio::test(start_paused = true)]
async fn context_knows_its_run_step_and_workflow() {
    let seen = Log::new();
    let (a, b) = (seen.clone(), seen.clone());
    let wf = Workflow::builder("identity")
        .step("first", move |ctx: Context, _: StartEvent| {
            a.push((
                ctx.run_id().to_owned(),
                ctx.step_name().to_owned(),
                ctx.workflow_name().to_owned(),
            ));
            async { Ping(0) }
        })
        .step("second", move |ctx: Context, _: Ping| {
            b.push((
                ctx.run_id().to_owned(),
                ctx.step_name().to_owned(),
                ctx.workflow_name().to_owned(),
            ));
            async { StopEvent::default() }
        })
        .build()
        .unwrap();
    let handle = wf.run(StartEvent::new());
    let run_id = handle.run_id().to_owned();
    settle(handle).await.unwrap();
    let id = |step: &str| (run_id.clone(), step.to_owned(), "identity".to_owned());
    assert_eq!(seen.get(), [id("first"), id("second")]);

    let handle = wf.run_with(StartEvent::new(), RunOptions::new().run_id("fixed-id"));
    settle(handle).await.unwrap();
    assert_eq!(seen.get()[2].0, "fixed-id");
}

#[tokio::test(start_paused = true)]
async fn a_context_can_be_used_from_a_spawned_task() {
    let wf = Workflow::builder("spawned")
        .step_with(
            StepConfig::new("start").emits::<Ping>(),
            |ctx: Context, _: StartEvent| async move {
                let ctx = ctx.clone();
                tokio::spawn(async move { ctx.send_event(Ping(11)) }).await.unwrap();
            },
        )
        .step("stop", |ev: Ping| async move { StopEvent::new(ev.0) })
        .build()
        .unwrap();
    assert_eq!(settle(wf.run(StartEvent::new())).await.unwrap().result, 11);
}
