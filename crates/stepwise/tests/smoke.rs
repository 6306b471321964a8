use serde::{Deserialize, Serialize};
use stepwise::{Context, Event, StartEvent, StopEvent, StreamExt, Workflow};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Ping(u32);
impl Event for Ping {
    const NAME: &'static str = "Ping";
}

#[tokio::test]
async fn self_loop_and_stream() {
    let wf = Workflow::builder("loop")
        .step("begin", |_ev: StartEvent| async move { Ping(0) })
        .step("spin", |ctx: Context, ev: Ping| async move {
            ctx.write_event_to_stream(ev.clone());
            if ev.0 == 1000 {
                return stepwise_either::Stop(StopEvent::new(ev.0));
            }
            stepwise_either::Again(Ping(ev.0 + 1))
        })
        .build()
        .unwrap();
    let handle = wf.run(StartEvent::new());
    let mut stream = handle.stream_events().unwrap();
    let mut n = 0;
    while let Some(ev) = stream.next().await {
        if ev.is::<Ping>() {
            n += 1;
        }
    }
    assert_eq!(n, 1001);
    let stop = handle.await.unwrap();
    assert_eq!(stop.result, 1000);
}

mod stepwise_either {
    use super::*;
    use stepwise::{Emitted, EventType, StepError, StepOutput};
    pub enum Out {
        Stop(StopEvent),
        Again(Ping),
    }
    pub use Out::*;
    impl StepOutput for Out {
        fn emitted_types() -> Vec<EventType> {
            vec![EventType::of::<StopEvent>(), EventType::of::<Ping>()]
        }
        fn emit(self, out: &mut Emitted) -> Result<(), StepError> {
            match self {
                Stop(s) => out.push(s.into()),
                Again(p) => out.push(p.into()),
            }
            Ok(())
        }
    }
}
