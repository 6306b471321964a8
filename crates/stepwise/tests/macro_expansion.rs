//! Behaviour of the code the macros generate: derived events carry the right
//! names and kinds, event unions route and emit, and `#[workflow]` impls build
//! and run end to end with the configured steps.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use stepwise::{
    step, workflow, AnyEvent, Context, Emitted, Event, EventKind, EventType, EventUnion, StartEvent, StepInfo,
    StepInput, StepOutput, StopEvent, WorkflowDefinition, DEFAULT_NUM_WORKERS,
};

// ------------------------------------------------------------------ events

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Event)]
struct Number {
    value: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "number.doubled")]
struct Doubled {
    value: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Event)]
struct Again {
    value: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "progress")]
enum Progress {
    Doubling(i64),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "order.placed", start)]
struct OrderPlaced {
    qty: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "order.done", stop)]
struct OrderDone {
    total: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, Event)]
#[event(input_required)]
struct AskHuman;

#[derive(Clone, Debug, Serialize, Deserialize, Event)]
#[event(human_response, name = "human.said")]
struct HumanSaid;

/// What `double` accepts: a fresh number or one sent back for another round.
#[derive(Debug, EventUnion)]
enum DoubleInput {
    Fresh(Number),
    Again(Again),
}

/// What `decide` returns: done, or another round.
#[derive(Debug, EventUnion)]
enum Outcome {
    Done(StopEvent),
    Again(Again),
}

// --------------------------------------------------------- derive(Event)

#[test]
fn derived_event_names_default_to_the_type_name() {
    assert_eq!(Number::NAME, "Number");
    assert_eq!(Again::NAME, "Again");
    assert_eq!(AskHuman::NAME, "AskHuman");
}

#[test]
fn derived_event_names_can_be_overridden() {
    assert_eq!(Doubled::NAME, "number.doubled");
    assert_eq!(Progress::NAME, "progress");
    assert_eq!(OrderPlaced::NAME, "order.placed");
    assert_eq!(HumanSaid::NAME, "human.said");
}

#[test]
fn derived_event_kinds_follow_the_flags() {
    assert_eq!(Number::KIND, EventKind::Regular);
    assert_eq!(Progress::KIND, EventKind::Regular);
    assert_eq!(OrderPlaced::KIND, EventKind::Start);
    assert_eq!(OrderDone::KIND, EventKind::Stop);
    assert_eq!(AskHuman::KIND, EventKind::InputRequired);
    assert_eq!(HumanSaid::KIND, EventKind::HumanResponse);
}

// ---------------------------------------------------- derive(EventUnion)

fn names(types: &[EventType]) -> Vec<&'static str> {
    types.iter().map(EventType::name).collect()
}

#[test]
fn union_lists_its_types_in_declaration_order() {
    assert_eq!(names(&DoubleInput::accepted_types()), ["Number", "Again"]);
    assert_eq!(
        names(&<DoubleInput as StepOutput>::emitted_types()),
        ["Number", "Again"]
    );
    assert_eq!(names(&Outcome::accepted_types()), ["StopEvent", "Again"]);
}

#[test]
fn union_from_event_picks_the_matching_variant() {
    let fresh = DoubleInput::from_event(AnyEvent::new(Number { value: 1 }));
    assert!(matches!(fresh, Ok(DoubleInput::Fresh(Number { value: 1 }))));
    let again = DoubleInput::from_event(AnyEvent::new(Again { value: 2 }));
    assert!(matches!(again, Ok(DoubleInput::Again(Again { value: 2 }))));
}

#[test]
fn union_from_event_gives_back_other_events_unchanged() {
    let other = AnyEvent::new(Doubled { value: 3 });
    let back = DoubleInput::from_event(other.clone()).expect_err("Doubled is not in the union");
    assert!(back.ptr_eq(&other));
}

#[test]
fn union_emits_the_wrapped_event() {
    let mut out = Emitted::default();
    Outcome::Again(Again { value: 5 }).emit(&mut out).expect("emit");
    let events: Vec<AnyEvent> = out.into_iter().collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].downcast_ref::<Again>(), Some(&Again { value: 5 }));
}

#[test]
fn union_has_from_impls_per_variant() {
    assert!(matches!(DoubleInput::from(Number { value: 7 }), DoubleInput::Fresh(_)));
    assert!(matches!(Outcome::from(StopEvent::new(1)), Outcome::Done(_)));
    assert!(matches!(Outcome::from(Again { value: 1 }), Outcome::Again(_)));
}

// ------------------------------------------------------------- #[workflow]

// The workflow's doc comment is on the impl block below.
struct Pipeline {
    factor: i64,
    threshold: i64,
    progress_seen: Arc<AtomicUsize>,
}

/// Doubles a number until it reaches a threshold.
///
///   The result is the first doubled value at or above it.
#[workflow]
impl Pipeline {
    /// Reads `x` from the start event.
    #[step(num_workers = 2)]
    async fn parse(&self, ev: StartEvent) -> Number {
        Number {
            value: ev.get("x").unwrap_or(0),
        }
    }

    /// Multiplies by the factor,
    /// reporting progress on the side.
    #[step(name = "doubler", emits = [Progress])]
    async fn double(&self, ctx: &Context, ev: DoubleInput) -> Doubled {
        let value = match ev {
            DoubleInput::Fresh(n) => n.value,
            DoubleInput::Again(a) => a.value,
        };
        ctx.send_event(Progress::Doubling(value));
        Doubled {
            value: value * self.factor,
        }
    }

    #[step]
    async fn decide(&self, ev: Doubled) -> Outcome {
        if ev.value >= self.threshold {
            Outcome::Done(StopEvent::new(ev.value))
        } else {
            Outcome::Again(Again { value: ev.value })
        }
    }

    /// Counts progress reports.
    #[step(num_workers = 1, skip_checks = [dead_end, terminal_event])]
    async fn progress(&self, _ev: Progress) {
        self.progress_seen.fetch_add(1, Ordering::SeqCst);
    }

    /// Not a step: left as an ordinary method.
    fn describe(&self) -> String {
        format!("x{} until {}", self.factor, self.threshold)
    }
}

fn pipeline() -> Pipeline {
    Pipeline {
        factor: 2,
        threshold: 20,
        progress_seen: Arc::new(AtomicUsize::new(0)),
    }
}

fn step_named<'a>(steps: &'a [StepInfo], name: &str) -> &'a StepInfo {
    steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step named {name}"))
}

#[tokio::test]
async fn workflow_runs_end_to_end() {
    let wf = pipeline().build().expect("valid workflow");
    // 3 -> 6 -> 12 -> 24: the first value >= 20.
    let stop = wf.run(StartEvent::new().with("x", 3)).await.expect("run");
    assert_eq!(stop.result_as::<i64>().expect("i64 result"), 24);
}

#[tokio::test]
async fn workflow_instance_state_is_shared_with_steps() {
    let flow = pipeline();
    let seen = Arc::clone(&flow.progress_seen);
    let wf = flow.build().expect("valid workflow");
    let stop = wf.run(StartEvent::new().with("x", 15)).await.expect("run");
    assert_eq!(stop.result_as::<i64>().expect("i64 result"), 30);
    // `progress` may still be running when the stop event lands; the send
    // itself happened before `doubler` returned, so at most one is counted.
    assert!(seen.load(Ordering::SeqCst) <= 1);
}

#[tokio::test]
async fn concurrent_runs_of_one_workflow_are_independent() {
    let wf = pipeline().build().expect("valid workflow");
    let runs = (1..=5).map(|x| wf.run(StartEvent::new().with("x", x)));
    let results = futures_util::future::join_all(runs).await;
    let values: Vec<i64> = results
        .into_iter()
        .map(|r| r.expect("run").result_as::<i64>().expect("i64 result"))
        .collect();
    assert_eq!(values, [32, 32, 24, 32, 20]);
}

#[test]
fn workflow_name_and_doc_come_from_the_impl() {
    let wf = pipeline().build().expect("valid workflow");
    assert_eq!(wf.name(), "Pipeline");
    assert_eq!(
        wf.doc(),
        Some("Doubles a number until it reaches a threshold.\n\nThe result is the first doubled value at or above it.")
    );
    assert_eq!(wf.start_event().name(), "StartEvent");
    assert_eq!(wf.stop_event().name(), "StopEvent");
}

#[test]
fn steps_are_registered_in_source_order_with_their_names() {
    let wf = pipeline().build().expect("valid workflow");
    let steps: Vec<String> = wf.steps().into_iter().map(|s| s.name).collect();
    assert_eq!(steps, ["parse", "doubler", "decide", "progress"]);
}

#[test]
fn step_info_reflects_signatures_and_options() {
    let wf = pipeline().build().expect("valid workflow");
    let steps = wf.steps();

    let parse = step_named(&steps, "parse");
    assert_eq!(names(&parse.accepts), ["StartEvent"]);
    assert_eq!(names(&parse.returns), ["Number"]);
    assert!(parse.sends.is_empty());
    assert_eq!(parse.num_workers, 2);
    assert_eq!(parse.doc.as_deref(), Some("Reads `x` from the start event."));

    let doubler = step_named(&steps, "doubler");
    assert_eq!(names(&doubler.accepts), ["Number", "Again"]);
    assert_eq!(names(&doubler.returns), ["number.doubled"]);
    assert_eq!(names(&doubler.sends), ["progress"]);
    assert_eq!(doubler.num_workers, DEFAULT_NUM_WORKERS);
    assert_eq!(
        doubler.doc.as_deref(),
        Some("Multiplies by the factor,\nreporting progress on the side.")
    );

    let decide = step_named(&steps, "decide");
    assert_eq!(names(&decide.accepts), ["number.doubled"]);
    assert_eq!(names(&decide.returns), ["StopEvent", "Again"]);
    assert_eq!(decide.doc, None);

    let progress = step_named(&steps, "progress");
    assert_eq!(names(&progress.accepts), ["progress"]);
    assert!(progress.returns.is_empty());
    assert_eq!(progress.num_workers, 1);
}

#[test]
fn non_step_methods_are_left_alone() {
    assert_eq!(pipeline().describe(), "x2 until 20");
}

#[test]
fn the_builder_can_be_adjusted_before_building() {
    let wf = pipeline()
        .builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .expect("valid workflow");
    assert_eq!(wf.timeout(), Some(std::time::Duration::from_secs(5)));
}

// ------------------------------------- custom start/stop types and names

struct Orders {
    unit_price: u32,
}

#[workflow(name = "orders", start = OrderPlaced, stop = OrderDone)]
impl Orders {
    #[step(name = "price")]
    async fn compute_total(&self, ev: OrderPlaced) -> OrderDone {
        OrderDone {
            total: ev.qty * self.unit_price,
        }
    }
}

#[tokio::test]
async fn custom_start_and_stop_types() {
    let wf = Orders { unit_price: 5 }.build().expect("valid workflow");
    assert_eq!(wf.name(), "orders");
    assert_eq!(wf.doc(), None);
    assert_eq!(wf.start_event().name(), "order.placed");
    assert_eq!(wf.stop_event().name(), "order.done");
    let names: Vec<String> = wf.steps().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["price"]);
    let done = wf.run(OrderPlaced { qty: 3 }).await.expect("run");
    assert_eq!(done, OrderDone { total: 15 });
}

// ------------------------------------------------------ signature variants

#[derive(Debug, thiserror::Error)]
#[error("negative input")]
struct Negative;

struct Variants;

#[workflow(name = "variants")]
impl Variants {
    /// A step named like an `Arc` method: must still call this method.
    #[step]
    async fn clone(&self, _ctx: &stepwise::Context, mut ev: StartEvent) -> Number {
        ev.set("seen", true).expect("json");
        Number {
            value: ev.get("x").unwrap_or(0),
        }
    }

    /// A fallible step with an explicitly typed receiver.
    #[stepwise::step(name = "check")]
    #[allow(clippy::needless_arbitrary_self_type)]
    async fn check_sign(self: &Self, ev: Number) -> Result<StopEvent, Negative> {
        if ev.value < 0 {
            return Err(Negative);
        }
        Ok(StopEvent::new(ev.value))
    }
}

#[tokio::test]
async fn signature_variants_work() {
    let wf = Variants.build().expect("valid workflow");
    let names: Vec<String> = wf.steps().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["clone", "check"]);
    let stop = wf.run(StartEvent::new().with("x", 4)).await.expect("run");
    assert_eq!(stop.result_as::<i64>().expect("i64 result"), 4);
}

#[tokio::test]
async fn a_failing_step_fails_the_run() {
    let wf = Variants.build().expect("valid workflow");
    let err = wf.run(StartEvent::new().with("x", -1)).await.expect_err("step fails");
    assert!(err.to_string().contains("negative input"), "{err}");
}

mod nested {
    //! The macros work inside modules, with glob imports.
    use stepwise::*;

    pub struct Echo;

    #[workflow]
    impl Echo {
        #[step]
        async fn echo(&self, ev: StartEvent) -> StopEvent {
            StopEvent::new(ev.get::<String>("text").unwrap_or_default())
        }
    }
}

mod unimported {
    //! `#[step]` works without importing it (and, in the rest of this file,
    //! importing it does not trigger `unused_imports`).
    use stepwise::{workflow, StartEvent, StopEvent};

    pub struct First;

    #[workflow]
    impl First {
        #[step]
        async fn only(&self, _ev: StartEvent) -> StopEvent {
            StopEvent::new("first")
        }
    }

    /// A second workflow in the same module.
    pub struct Second;

    #[workflow]
    impl Second {
        #[step]
        async fn only(&self, _ev: StartEvent) -> StopEvent {
            StopEvent::new("second")
        }
    }
}

#[tokio::test]
async fn step_needs_no_import() {
    let first = unimported::First.build().expect("valid workflow");
    let second = unimported::Second.build().expect("valid workflow");
    let a = first.run(StartEvent::new()).await.expect("run");
    let b = second.run(StartEvent::new()).await.expect("run");
    assert_eq!(a.result_as::<String>().expect("string"), "first");
    assert_eq!(b.result_as::<String>().expect("string"), "second");
}

#[tokio::test]
async fn workflow_in_a_nested_module() {
    let wf = nested::Echo.build().expect("valid workflow");
    assert_eq!(wf.name(), "Echo");
    let stop = wf.run(StartEvent::new().with("text", "hi")).await.expect("run");
    assert_eq!(stop.result_as::<String>().expect("string result"), "hi");
}

// ------------------------------------- state, retries and error handlers

mod guarded {
    //! `#[workflow(state = ..)]`, `#[step(retry = ..)]`, `#[step(catch_errors)]`
    //! and `#[step(catch_errors = ..)]`.
    use std::time::Duration;

    use serde::{Deserialize, Serialize};
    use stepwise::{workflow, CatchErrors, Context, Event, RetryPolicy, StartEvent, StepError, StepFailed, StopEvent};

    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
    pub struct Visits {
        pub count: u32,
        pub attempts: Vec<u32>,
    }

    #[derive(Clone, Debug, Serialize, Deserialize, Event)]
    pub struct Risky {
        pub mode: String,
    }

    #[derive(Clone, Debug, Serialize, Deserialize, Event)]
    pub struct Checked {
        pub mode: String,
    }

    pub struct Guarded;

    #[workflow(state = Visits)]
    impl Guarded {
        #[step]
        async fn start(&self, ctx: &Context, ev: StartEvent) -> Result<Risky, StepError> {
            ctx.state()
                .edit(|v: &mut Visits| v.count += 1)
                .await
                .map_err(StepError::new)?;
            let mode: String = ev.get("mode").map_err(StepError::new)?;
            if mode == "start_fails" {
                return Err(StepError::msg("start failed"));
            }
            Ok(Risky { mode })
        }

        /// Fails twice, then passes the event on.
        #[step(retry = RetryPolicy::fixed(3, Duration::from_millis(10)))]
        async fn flaky(&self, ctx: &Context, ev: Risky) -> Result<Checked, StepError> {
            let attempt = ctx.retry_info().attempt;
            ctx.state()
                .edit(|v: &mut Visits| v.attempts.push(attempt))
                .await
                .map_err(StepError::new)?;
            if attempt < 3 {
                return Err(StepError::msg(format!("attempt {attempt}")));
            }
            Ok(Checked { mode: ev.mode })
        }

        #[step(name = "x")]
        async fn check(&self, ev: Checked) -> Result<StopEvent, StepError> {
            if ev.mode == "x_fails" {
                return Err(StepError::msg("x failed"));
            }
            Ok(StopEvent::new("ok"))
        }

        #[step(catch_errors = CatchErrors::for_steps(["x"]).max_recoveries(2))]
        async fn rescue_x(&self, ev: StepFailed) -> StopEvent {
            StopEvent::new(format!("rescue_x: {}", ev.error))
        }

        #[step(catch_errors)]
        async fn rescue_all(&self, ev: StepFailed) -> StopEvent {
            StopEvent::new(format!("rescue_all: {} ({})", ev.error, ev.step))
        }
    }
}

#[test]
fn state_retry_and_catch_errors_options_reach_the_step_config() {
    use stepwise::CatchErrors;
    let wf = guarded::Guarded.build().expect("valid workflow");
    assert!(wf.state_type().ends_with("Visits"), "{}", wf.state_type());
    let steps = wf.steps();
    assert!(step_named(&steps, "flaky").retry.is_some());
    assert!(step_named(&steps, "x").retry.is_none());
    assert_eq!(
        step_named(&steps, "rescue_x").catch_errors,
        Some(CatchErrors::for_steps(["x"]).max_recoveries(2))
    );
    assert_eq!(step_named(&steps, "rescue_all").catch_errors, Some(CatchErrors::all()));
    assert_eq!(step_named(&steps, "start").catch_errors, None);
}

#[tokio::test(start_paused = true)]
async fn state_retry_and_catch_errors_work_through_the_macros() {
    let wf = guarded::Guarded.build().expect("valid workflow");
    let run = |mode: &str| {
        let handle = wf.run(StartEvent::new().with("mode", mode));
        let state = handle.state().clone();
        async move { (handle.await, state) }
    };

    let started = tokio::time::Instant::now();
    let (stop, state) = run("ok").await;
    assert_eq!(stop.expect("run").result, "ok");
    assert_eq!(
        started.elapsed(),
        std::time::Duration::from_millis(20),
        "two 10 ms waits"
    );
    let visits: guarded::Visits = state.get().await.expect("typed state");
    assert_eq!(
        visits,
        guarded::Visits {
            count: 1,
            attempts: vec![1, 2, 3]
        }
    );

    let (stop, _) = run("x_fails").await;
    assert_eq!(
        stop.expect("recovered").result,
        "rescue_x: x failed",
        "the scoped handler"
    );

    let (stop, _) = run("start_fails").await;
    assert_eq!(
        stop.expect("recovered").result,
        "rescue_all: start failed (start)",
        "the catch-all"
    );
}
