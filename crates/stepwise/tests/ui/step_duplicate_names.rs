use serde::{Deserialize, Serialize};
use stepwise::{step, workflow, Event, StartEvent, StopEvent};

#[derive(Clone, Debug, Serialize, Deserialize, Event)]
struct Middle;

struct Flow;

#[workflow]
impl Flow {
    #[step]
    async fn first(&self, _ev: StartEvent) -> Middle {
        Middle
    }

    #[step(name = "first")]
    async fn second(&self, _ev: Middle) -> StopEvent {
        StopEvent::default()
    }
}

fn main() {}
