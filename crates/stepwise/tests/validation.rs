//! Build-time validation: one test per issue, several issues at once, and the
//! ways to relax the graph checks.

mod common;

use common::*;
use serde::{Deserialize, Serialize};
use stepwise::{
    BuildError, Context, EventType, GraphCheck, StartEvent, StepConfig, StopEvent, ValidationIssue, Workflow,
    WorkflowBuilder,
};

#[derive(Clone, Debug, Serialize, Deserialize, stepwise::Event)]
#[event(start)]
struct MyStart;

#[derive(Clone, Debug, Serialize, Deserialize, stepwise::Event)]
#[event(stop)]
struct MyStop;

/// An ordinary event shaped like a question (not an input request).
#[derive(Clone, Debug, Serialize, Deserialize, stepwise::Event)]
struct PlainQuestion;

/// An ordinary event shaped like an answer (not a human response).
#[derive(Clone, Debug, Serialize, Deserialize, stepwise::Event)]
struct PlainAnswer;

#[derive(stepwise::EventUnion)]
enum PongOrStop {
    Pong(Pong),
    Stop(StopEvent),
}

async fn stop(_: StartEvent) -> StopEvent {
    StopEvent::default()
}

async fn ping_to_pong(ev: Ping) -> Pong {
    Pong(ev.0)
}

async fn pong_to_ping(ev: Pong) -> Ping {
    Ping(ev.0)
}

/// Builds and expects failure; checks the error names the workflow.
fn invalid<S: stepwise::Event, O: stepwise::Event>(builder: WorkflowBuilder<S, O>) -> (Vec<ValidationIssue>, String) {
    let err: BuildError = builder.build().expect_err("the workflow must be invalid");
    let text = err.to_string();
    assert!(text.contains(&format!("`{}`", err.workflow)), "{text}");
    assert_eq!(text.lines().count(), err.issues.len() + 1, "one line per issue: {text}");
    (err.issues, text)
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn no_steps() {
    let (issues, text) = invalid(Workflow::builder("empty"));
    assert_eq!(issues, [ValidationIssue::NoSteps]);
    assert!(text.contains("`empty`") && text.contains("no steps"), "{text}");
}

#[test]
fn duplicate_step() {
    let (issues, text) = invalid(Workflow::builder("dup").step("same", stop).step("same", stop));
    assert_eq!(issues, [ValidationIssue::DuplicateStep { step: "same".into() }]);
    assert!(text.contains("`same`"), "{text}");
}

#[test]
fn zero_workers() {
    let (issues, text) = invalid(Workflow::builder("zero").step_with(StepConfig::new("lazy").num_workers(0), stop));
    assert_eq!(issues, [ValidationIssue::ZeroWorkers { step: "lazy".into() }]);
    assert!(text.contains("`lazy`") && text.contains("num_workers"), "{text}");
}

#[test]
fn no_start_event() {
    let (issues, text) =
        invalid(Workflow::builder("headless").step("ping", |ev: Ping| async move { StopEvent::new(ev.0) }));
    assert_eq!(issues, [ValidationIssue::NoStartEvent]);
    assert!(text.contains("start event"), "{text}");
}

#[test]
fn multiple_start_events() {
    let (issues, text) = invalid(
        Workflow::builder("two-starts")
            .step("a", stop)
            .step("b", |_: MyStart| async { StopEvent::default() })
            .step("c", stop),
    );
    assert_eq!(
        issues,
        [ValidationIssue::MultipleStartEvents {
            events: vec![
                ("StartEvent".into(), strings(&["a", "c"])),
                ("MyStart".into(), strings(&["b"]))
            ]
        }]
    );
    for name in ["StartEvent", "MyStart", "`a`", "`b`", "`c`"] {
        assert!(text.contains(name), "{name} in {text}");
    }
}

#[test]
fn start_type_mismatch() {
    let (issues, text) = invalid(WorkflowBuilder::<MyStart, StopEvent>::new("mismatch").step("s", stop));
    assert_eq!(
        issues,
        [ValidationIssue::StartTypeMismatch {
            declared: "MyStart".into(),
            found: "StartEvent".into()
        }]
    );
    assert!(text.contains("MyStart") && text.contains("StartEvent"), "{text}");
}

#[test]
fn no_stop_event() {
    let (issues, text) = invalid(
        Workflow::builder("endless")
            .step("start", |_: StartEvent| async { Ping(0) })
            .step("sink", |_: Ping| async {}),
    );
    assert_eq!(issues, [ValidationIssue::NoStopEvent]);
    assert!(text.contains("stop event"), "{text}");
}

#[test]
fn multiple_stop_events() {
    let (issues, text) = invalid(
        Workflow::builder("two-stops")
            .step("start", |_: StartEvent| async { Ping(0) })
            .step("x", |_: Ping| async { StopEvent::default() })
            .step("y", |_: Ping| async { MyStop }),
    );
    assert_eq!(
        issues,
        [ValidationIssue::MultipleStopEvents {
            events: vec![
                ("StopEvent".into(), strings(&["x"])),
                ("MyStop".into(), strings(&["y"]))
            ]
        }]
    );
    for name in ["StopEvent", "MyStop", "`x`", "`y`"] {
        assert!(text.contains(name), "{name} in {text}");
    }
}

#[test]
fn stop_type_mismatch() {
    let (issues, text) = invalid(Workflow::builder("mismatch").step("s", |_: StartEvent| async { MyStop }));
    assert_eq!(
        issues,
        [ValidationIssue::StopTypeMismatch {
            declared: "StopEvent".into(),
            found: "MyStop".into()
        }]
    );
    assert!(text.contains("MyStop") && text.contains("StopEvent"), "{text}");
}

#[test]
fn step_accepts_stop() {
    let (issues, text) = invalid(
        Workflow::builder("watcher")
            .step("start", stop)
            .step("watch", |_: StopEvent| async {})
            .step("watch_too", |_: StopEvent| async {}),
    );
    assert_eq!(
        issues,
        [ValidationIssue::StepAcceptsStop {
            steps: strings(&["watch", "watch_too"]),
            event: "StopEvent".into()
        }]
    );
    assert!(text.contains("`watch`") && text.contains("`watch_too`") && text.contains("StopEvent"));
}

#[test]
fn consumed_never_produced() {
    let (issues, text) = invalid(
        Workflow::builder("waiting")
            .step("start", stop)
            .step("pinged", |ev: Ping| async move { StopEvent::new(ev.0) }),
    );
    assert_eq!(
        issues,
        [
            ValidationIssue::ConsumedNeverProduced {
                events: vec![("Ping".into(), strings(&["pinged"]))]
            },
            ValidationIssue::Unreachable {
                steps: strings(&["pinged"])
            },
        ]
    );
    assert!(text.contains("Ping") && text.contains("`pinged`"), "{text}");
}

#[test]
fn produced_never_consumed() {
    let (issues, text) = invalid(
        Workflow::builder("leaky")
            .step("start", |_: StartEvent| async { Ping(0) })
            .step("pong", |_: Ping| async { PongOrStop::Pong(Pong(1)) }),
    );
    assert_eq!(
        issues,
        [ValidationIssue::ProducedNeverConsumed {
            events: vec![("Pong".into(), strings(&["pong"]))]
        }]
    );
    assert!(text.contains("Pong") && text.contains("`pong`") && text.contains("terminal_event"));
}

/// `a` and `b` form a loop that can stop, but nothing leads into it.
fn island() -> WorkflowBuilder {
    Workflow::builder("island")
        .step("start", stop)
        .step("a", |ev: Ping| async move {
            if ev.0 > 3 {
                PongOrStop::Stop(StopEvent::default())
            } else {
                PongOrStop::Pong(Pong(ev.0))
            }
        })
        .step("b", pong_to_ping)
}

#[test]
fn unreachable() {
    let (issues, text) = invalid(island());
    assert_eq!(
        issues,
        [ValidationIssue::Unreachable {
            steps: strings(&["a", "b"])
        }]
    );
    assert!(text.contains("`a`") && text.contains("`b`") && text.contains("reachability"));
}

/// `loop_a` and `loop_b` are reachable but can never lead to the stop event.
fn dead_loop() -> WorkflowBuilder {
    Workflow::builder("dead")
        .step("start", |ev: StartEvent| async move {
            match ev.get_or("stop", true).unwrap() {
                true => PingOrStop::Stop(StopEvent::default()),
                false => PingOrStop::Ping(Ping(0)),
            }
        })
        .step("loop_a", ping_to_pong)
        .step("loop_b", pong_to_ping)
}

#[test]
fn dead_end() {
    let (issues, text) = invalid(dead_loop());
    assert_eq!(
        issues,
        [ValidationIssue::DeadEnd {
            steps: strings(&["loop_a", "loop_b"])
        }]
    );
    assert!(text.contains("`loop_a`") && text.contains("`loop_b`") && text.contains("dead_end"));
}

#[test]
fn a_step_that_emits_nothing_is_not_a_dead_end() {
    Workflow::builder("sink")
        .step("start", |_: StartEvent| async {
            vec![PingOrStop::Ping(Ping(0)), PingOrStop::Stop(StopEvent::default())]
        })
        .step("sink", |_: Ping| async {})
        .build()
        .unwrap();
}

#[test]
fn several_issues_are_reported_together() {
    let (issues, text) = invalid(
        Workflow::builder("mess")
            .step("start", |_: StartEvent| async { Ping(0) })
            .step("start", |_: Ping| async { StopEvent::default() })
            .step_with(StepConfig::new("idle").num_workers(0), |_: A| async {
                StopEvent::default()
            })
            .step("watch", |_: StopEvent| async {})
            .step("leak", |_: Ping| async { PongOrStop::Pong(Pong(0)) }),
    );
    assert_eq!(
        issues,
        [
            ValidationIssue::DuplicateStep { step: "start".into() },
            ValidationIssue::ZeroWorkers { step: "idle".into() },
            ValidationIssue::StepAcceptsStop {
                steps: strings(&["watch"]),
                event: "StopEvent".into()
            },
            ValidationIssue::ConsumedNeverProduced {
                events: vec![("A".into(), strings(&["idle"]))]
            },
            ValidationIssue::ProducedNeverConsumed {
                events: vec![("Pong".into(), strings(&["leak"]))]
            },
            ValidationIssue::Unreachable {
                steps: strings(&["idle"])
            },
        ]
    );
    for issue in &issues {
        assert!(text.contains(&issue.to_string()), "{issue} in {text}");
    }
}

#[test]
fn skipping_reachability_per_step_relaxes_only_that_step() {
    let island_one_skipped = Workflow::builder("island")
        .step("start", stop)
        .step_with(
            StepConfig::new("a").skip_check(GraphCheck::Reachability),
            |ev: Ping| async move {
                if ev.0 > 3 {
                    PongOrStop::Stop(StopEvent::default())
                } else {
                    PongOrStop::Pong(Pong(ev.0))
                }
            },
        )
        .step("b", pong_to_ping);
    let (issues, _) = invalid(island_one_skipped);
    assert_eq!(issues, [ValidationIssue::Unreachable { steps: strings(&["b"]) }]);
}

#[test]
fn skipping_reachability_for_the_workflow() {
    island().skip_check(GraphCheck::Reachability).build().unwrap();
    // Other checks do not relax it.
    let (issues, _) = invalid(
        island()
            .skip_check(GraphCheck::DeadEnd)
            .skip_check(GraphCheck::TerminalEvent),
    );
    assert!(matches!(issues.as_slice(), [ValidationIssue::Unreachable { .. }]));
}

#[test]
fn skipping_reachability_also_accepts_an_event_nothing_produces() {
    // A step waiting for an event nothing produces is unreachable by construction.
    Workflow::builder("waiting")
        .step("start", stop)
        .step_with(
            StepConfig::new("pinged").skip_check(GraphCheck::Reachability),
            |ev: Ping| async move { StopEvent::new(ev.0) },
        )
        .build()
        .unwrap();
}

#[test]
fn skipping_dead_end_per_step_and_per_workflow() {
    let one_skipped = Workflow::builder("dead")
        .step("start", |_: StartEvent| async {
            vec![PingOrStop::Ping(Ping(0)), PingOrStop::Stop(StopEvent::default())]
        })
        .step_with(StepConfig::new("loop_a").skip_check(GraphCheck::DeadEnd), ping_to_pong)
        .step("loop_b", pong_to_ping);
    let (issues, _) = invalid(one_skipped);
    assert_eq!(
        issues,
        [ValidationIssue::DeadEnd {
            steps: strings(&["loop_b"])
        }]
    );

    dead_loop().skip_check(GraphCheck::DeadEnd).build().unwrap();
    let (issues, _) = invalid(
        dead_loop()
            .skip_check(GraphCheck::Reachability)
            .skip_check(GraphCheck::TerminalEvent),
    );
    assert!(matches!(issues.as_slice(), [ValidationIssue::DeadEnd { .. }]));
}

/// Both `first` and `second` may produce `Pong`, which nothing consumes.
fn leaky(first: StepConfig, second: StepConfig) -> WorkflowBuilder {
    Workflow::builder("leaky")
        .step("start", |_: StartEvent| async { Ping(0) })
        .step_with(first, |_: Ping| async { PongOrStop::Stop(StopEvent::default()) })
        .step_with(second, |_: Ping| async { PongOrStop::Pong(Pong(0)) })
}

#[test]
fn skipping_terminal_event_per_step_and_per_workflow() {
    let (issues, _) = invalid(leaky(StepConfig::new("first"), StepConfig::new("second")));
    assert_eq!(
        issues,
        [ValidationIssue::ProducedNeverConsumed {
            events: vec![("Pong".into(), strings(&["first", "second"]))]
        }]
    );
    let skip = |name: &str| StepConfig::new(name).skip_check(GraphCheck::TerminalEvent);
    let (issues, _) = invalid(leaky(skip("first"), StepConfig::new("second")));
    assert_eq!(
        issues,
        [ValidationIssue::ProducedNeverConsumed {
            events: vec![("Pong".into(), strings(&["second"]))]
        }]
    );
    leaky(skip("first"), skip("second")).build().unwrap();

    leaky(StepConfig::new("first"), StepConfig::new("second"))
        .skip_check(GraphCheck::TerminalEvent)
        .build()
        .unwrap();
    let (issues, _) = invalid(
        leaky(StepConfig::new("first"), StepConfig::new("second"))
            .skip_check(GraphCheck::Reachability)
            .skip_check(GraphCheck::DeadEnd),
    );
    assert!(matches!(
        issues.as_slice(),
        [ValidationIssue::ProducedNeverConsumed { .. }]
    ));
}

#[tokio::test(start_paused = true)]
async fn declared_emits_count_as_production() {
    let sends_ping = |ctx: Context, _: StartEvent| async move { ctx.send_event(Ping(8)) };
    let undeclared = Workflow::builder("sends")
        .step("start", sends_ping)
        .step("pinged", |ev: Ping| async move { StopEvent::new(ev.0) });
    let (issues, text) = invalid(undeclared);
    assert!(issues.contains(&ValidationIssue::ConsumedNeverProduced {
        events: vec![("Ping".into(), strings(&["pinged"]))]
    }));
    // The message says what to do: a send that validation cannot see needs `emits`.
    assert!(
        text.contains(
            "events are consumed but never produced: `Ping` (waited for by `pinged`); no step returns or \
             declares it. A step that sends it with `ctx.send_event` must declare it: \
             `#[step(emits = [Ping])]` (by hand: `StepConfig::new(..).emits::<Ping>()`)"
        ),
        "{text}"
    );
    let two = ValidationIssue::ConsumedNeverProduced {
        events: vec![("A".into(), strings(&["a"])), ("B".into(), strings(&["b"]))],
    };
    assert!(
        two.to_string().ends_with(
            "no step returns or declares them. A step that sends one with `ctx.send_event` must \
             declare it: `#[step(emits = [A, B])]` (by hand: `StepConfig::new(..).emits::<A>()`)"
        ),
        "{two}"
    );

    let wf = Workflow::builder("sends")
        .step_with(StepConfig::new("start").emits::<Ping>(), sends_ping)
        .step("pinged", |ev: Ping| async move { StopEvent::new(ev.0) })
        .build()
        .unwrap();
    assert_eq!(wf.steps()[0].sends, [EventType::of::<Ping>()]);
    assert!(wf.steps()[0].returns.is_empty());
    assert_eq!(settle(wf.run(StartEvent::new())).await.unwrap().result, 8);

    // A declared event nobody consumes is reported against the declaring step.
    let (issues, _) = invalid(Workflow::builder("sends").step_with(StepConfig::new("start").emits::<Pong>(), stop));
    assert_eq!(
        issues,
        [ValidationIssue::ProducedNeverConsumed {
            events: vec![("Pong".into(), strings(&["start"]))]
        }]
    );
}

#[test]
fn declared_stop_emits_count_as_a_stop() {
    Workflow::builder("stops-by-send")
        .step_with(
            StepConfig::new("start").emits::<StopEvent>(),
            |ctx: Context, _: StartEvent| async move { ctx.send_event(StopEvent::default()) },
        )
        .build()
        .unwrap();
}

#[test]
fn human_responses_count_as_produced_from_outside() {
    let hitl = Workflow::builder("hitl")
        .step("ask", |_: StartEvent| async { AskHuman { question: "?".into() } })
        .step("answer", |ev: HumanAnswer| async move { StopEvent::new(ev.text) });
    hitl.build().unwrap();

    let (issues, _) = invalid(
        Workflow::builder("plain")
            .step("start", stop)
            .step("answer", |_: PlainAnswer| async { StopEvent::default() }),
    );
    assert_eq!(
        issues,
        [
            ValidationIssue::ConsumedNeverProduced {
                events: vec![("PlainAnswer".into(), strings(&["answer"]))]
            },
            ValidationIssue::Unreachable {
                steps: strings(&["answer"])
            },
        ]
    );
}

#[test]
fn input_requests_may_be_terminal() {
    let ask = Workflow::builder("ask")
        .step("start", |ev: StartEvent| async move {
            match ev.get_or("ask", false).unwrap() {
                true => Ok(AskHuman { question: "?".into() }),
                false => Err(MyError { code: 0 }),
            }
        })
        .step("answer", |ev: HumanAnswer| async move { StopEvent::new(ev.text) });
    ask.build().unwrap();

    // The same shape with an ordinary event is both terminal and a dead end.
    let (issues, _) = invalid(
        Workflow::builder("plain")
            .step("start", |_: StartEvent| async { PlainQuestion })
            .step("answer", |_: HumanAnswer| async { StopEvent::default() }),
    );
    assert_eq!(
        issues,
        [
            ValidationIssue::ProducedNeverConsumed {
                events: vec![("PlainQuestion".into(), strings(&["start"]))]
            },
            ValidationIssue::DeadEnd {
                steps: strings(&["start"])
            },
        ]
    );
}

#[test]
fn validation_issues_display_their_check_name() {
    assert_eq!(GraphCheck::Reachability.name(), "reachability");
    assert_eq!(GraphCheck::DeadEnd.name(), "dead_end");
    assert_eq!(GraphCheck::TerminalEvent.name(), "terminal_event");
    let unreachable = ValidationIssue::Unreachable { steps: strings(&["x"]) }.to_string();
    assert!(unreachable.starts_with("[reachability]"), "{unreachable}");
    let dead = ValidationIssue::DeadEnd { steps: strings(&["x"]) }.to_string();
    assert!(dead.starts_with("[dead_end]"), "{dead}");
}
