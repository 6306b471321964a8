//! The agent workflows behind the `hitl_console`, `retry_flaky` and
//! `state_counter` examples, on tokio's paused clock.

use std::time::Duration;

use stepwise::testing::WorkflowTestRunner;
use stepwise::{
    HumanResponseEvent, InputRequiredEvent, RunError, RunOptions, StartEvent, StateStore, StreamExt, WaitError,
    WorkflowDefinition, WorkflowIdle,
};
use stepwise_demo::agents::{
    is_yes, ApprovalFlow, AttemptReport, ChangeRequest, FlakyApi, StateCounter, Tally, Unavailable, FLAKY_WAITS_MS,
};

fn change(text: &str) -> ChangeRequest {
    ChangeRequest { change: text.into() }
}

#[tokio::test]
async fn approval_asks_and_follows_the_answer() {
    let flow = ApprovalFlow::default().build().expect("valid workflow");
    for (answer, approved) in [("yes", true), ("Y", true), ("no", false), ("maybe later", false)] {
        let outcome = WorkflowTestRunner::new(&flow)
            .internal_events(false)
            .run_responding(change("search v3"), |ev| {
                let request = ev.downcast_ref::<InputRequiredEvent>()?;
                assert_eq!(request.prompt, "Deploy `search v3`? [yes/no]");
                assert_eq!(request.data["steps"][0], "build search v3");
                Some(HumanResponseEvent::new(answer).into())
            })
            .await;
        let result = outcome.result.as_ref().expect("run");
        assert_eq!(result.approved, approved, "{answer}");
        assert_eq!(result.answer, answer);
        assert_eq!(result.change, "search v3");
        assert_eq!(
            outcome.names(),
            ["InputRequiredEvent", "WorkflowIdle", "ApprovalOutcome"]
        );
    }
}

#[tokio::test]
async fn approval_waits_as_long_as_it_takes_with_the_handle_api() {
    let flow = ApprovalFlow::default().build().expect("valid workflow");
    let handle = flow.run(change("billing"));
    let mut events = handle.stream_events().unwrap();
    while let Some(event) = events.next().await {
        if let Some(idle) = event.downcast_ref::<WorkflowIdle>() {
            assert_eq!(idle.waiting, ["approve/approval"]);
            handle.send_event(HumanResponseEvent::new("ok")).unwrap();
        }
    }
    assert!(handle.await.expect("run").approved);
}

#[tokio::test(start_paused = true)]
async fn approval_times_out_when_nobody_answers() {
    let flow = ApprovalFlow {
        timeout: Duration::from_secs(600),
    }
    .build()
    .expect("valid workflow");
    let started = tokio::time::Instant::now();
    let err = flow.run(change("x")).await.expect_err("nobody answered");
    assert_eq!(started.elapsed(), Duration::from_secs(600));
    let RunError::StepFailed { step, source, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(step, "approve");
    assert!(
        matches!(source.downcast_ref::<WaitError>(), Some(WaitError::TimedOut { waiter_id, .. }) if waiter_id == "approval"),
        "{source}"
    );
}

#[test]
fn yes_means_yes() {
    assert!(is_yes(" Yes\n") && is_yes("ok") && !is_yes("nope") && !is_yes(""));
}

#[tokio::test(start_paused = true)]
async fn the_flaky_call_succeeds_on_the_third_attempt() {
    let flow = FlakyApi { failures: 2 }.build().expect("valid workflow");
    let started = tokio::time::Instant::now();
    let outcome = WorkflowTestRunner::new(&flow)
        .internal_events(false)
        .run(StartEvent::new())
        .await;
    let result = outcome.result.as_ref().expect("run");
    assert!(result.ok);
    assert_eq!(result.attempts, 3);
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(FLAKY_WAITS_MS[0] + FLAKY_WAITS_MS[1])
    );
    let reports = outcome.events_of::<AttemptReport>();
    assert_eq!(
        reports,
        [
            AttemptReport {
                attempt: 1,
                elapsed_ms: 0,
                last_error: None
            },
            AttemptReport {
                attempt: 2,
                elapsed_ms: 100,
                last_error: Some("service unavailable (attempt 1)".into())
            },
            AttemptReport {
                attempt: 3,
                elapsed_ms: 300,
                last_error: Some("service unavailable (attempt 2)".into())
            },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_error_handler_reports_a_call_that_never_succeeds() {
    let flow = FlakyApi { failures: u32::MAX }.build().expect("valid workflow");
    let started = tokio::time::Instant::now();
    let outcome = WorkflowTestRunner::new(&flow)
        .internal_events(false)
        .run(StartEvent::new())
        .await;
    let result = outcome.result.as_ref().expect("the handler ends the run");
    assert!(!result.ok);
    assert_eq!(result.attempts, 4);
    assert_eq!(
        result.message,
        "gave up on call_api after 4 attempts in 0.7 s: service unavailable (attempt 4)"
    );
    assert_eq!(started.elapsed(), Duration::from_millis(FLAKY_WAITS_MS.iter().sum()));
    assert_eq!(outcome.count_of::<AttemptReport>(), 4);
    // The error type is what the retry condition matches on.
    assert_eq!(
        Unavailable { attempt: 1 }.to_string(),
        "service unavailable (attempt 1)"
    );
}

#[tokio::test]
async fn the_counter_loses_no_increment_and_carries_over() {
    let flow = StateCounter.build().expect("valid workflow");
    let first = flow.run(StartEvent::new().with("increments", 40));
    let state = first.state().clone();
    assert_eq!(first.await.expect("run").result, 40);

    let second = flow.run_with(
        StartEvent::new().with("increments", 5),
        RunOptions::new().state(state.clone()),
    );
    assert_eq!(second.await.expect("run").result, 45);

    let tally: Tally = state.get().await.unwrap();
    assert_eq!(tally.total, 45);
    assert_eq!(tally.runs, 2);
    assert_eq!(tally.by_source.values().sum::<u64>(), 45);
    assert_eq!(tally.by_source["worker-0"], 9);

    // A fresh run starts from zero.
    assert_eq!(flow.run(StartEvent::new()).await.expect("run").result, 10);
}

#[tokio::test]
async fn the_counter_starts_from_a_given_tally() {
    let flow = StateCounter.build().expect("valid workflow");
    let store = StateStore::new(Tally {
        total: 1000,
        ..Tally::default()
    });
    let stop = flow
        .run_with(StartEvent::new().with("increments", 3), RunOptions::new().state(store))
        .await
        .expect("run");
    assert_eq!(stop.result, 1003);
}
