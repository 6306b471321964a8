use stepwise::{step, workflow, StartEvent, StopEvent};

struct Flow;

#[workflow(name = "flow", input = StartEvent)]
impl Flow {
    #[step]
    async fn go(&self, _ev: StartEvent) -> StopEvent {
        StopEvent::default()
    }
}

fn main() {}
