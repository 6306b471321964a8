//! Mirrors `bench_loop.py`: one step accepting `StartEvent | LoopEvent` and
//! returning `LoopEvent | StopEvent` re-emits its own event N times in one run.

use stepwise::{
    AnyEvent, Context, Emitted, EventType, StartEvent, StepError, StepInput, StepOutput, StopEvent, Workflow,
};

use crate::events::{LoopEvent, Tick};
use crate::measure::{self, emit};

const N: u64 = 1_000_000;
const REPS: usize = 5;

/// `StartEvent | LoopEvent` (what `#[derive(EventUnion)]` would generate).
enum LoopIn {
    Start(StartEvent),
    Again(LoopEvent),
}

impl StepInput for LoopIn {
    fn accepted_types() -> Vec<EventType> {
        vec![EventType::of::<StartEvent>(), EventType::of::<LoopEvent>()]
    }
    fn from_event(event: AnyEvent) -> Result<Self, AnyEvent> {
        event
            .downcast::<LoopEvent>()
            .map(LoopIn::Again)
            .or_else(|event| event.downcast::<StartEvent>().map(LoopIn::Start))
    }
}

/// `LoopEvent | StopEvent`.
enum LoopOut {
    Again(LoopEvent),
    Stop(StopEvent),
}

impl StepOutput for LoopOut {
    fn emitted_types() -> Vec<EventType> {
        vec![EventType::of::<LoopEvent>(), EventType::of::<StopEvent>()]
    }
    fn emit(self, out: &mut Emitted) -> Result<(), StepError> {
        match self {
            LoopOut::Again(ev) => out.push(ev.into()),
            LoopOut::Stop(ev) => out.push(ev.into()),
        }
        Ok(())
    }
}

pub(crate) fn workflow(k: u64) -> Workflow {
    Workflow::builder("loop")
        .step("loop", move |ev: LoopIn| async move { turn(ev, k) })
        .build()
        .expect("loop workflow is valid")
}

/// The same loop, each turn also writing `Tick { i: n }` to the stream.
pub(crate) fn writing_workflow(k: u64) -> Workflow {
    Workflow::builder("writing_loop")
        .step("loop", move |ctx: Context, ev: LoopIn| async move {
            let out = turn(ev, k);
            if let LoopOut::Again(next) = &out {
                ctx.write_event_to_stream(Tick { i: next.n - 1 });
            }
            out
        })
        .build()
        .expect("writing loop workflow is valid")
}

/// One turn of the loop: the next event, or the stop event after `k`.
fn turn(ev: LoopIn, k: u64) -> LoopOut {
    let n = match ev {
        LoopIn::Start(ev) => ev.get("from").unwrap_or(0),
        LoopIn::Again(ev) => ev.n,
    };
    if n >= k {
        LoopOut::Stop(StopEvent::new(n))
    } else {
        LoopOut::Again(LoopEvent { n: n + 1 })
    }
}

pub fn bench() {
    let rt = measure::runtime(2);
    let samples = measure::run_on(&rt, async {
        let stop = workflow(10_000).run(StartEvent::new()).await.expect("warm-up run");
        assert_eq!(stop.result, 10_000);
        let wf = workflow(N);
        let mut samples = Vec::with_capacity(REPS);
        for _ in 0..REPS {
            let (dt, stop) = measure::time_async(wf.run(StartEvent::new())).await;
            assert_eq!(stop.expect("loop run").result, N);
            samples.push(N as f64 / dt.as_secs_f64());
        }
        samples
    });
    measure::comment(format!(
        "loop: {REPS} runs of N = {N} self-loop events, events/s samples: {}",
        measure::samples_text(&samples)
    ));
    emit("loop_events_per_s", measure::median(samples), "events/s");
}
