use stepwise::{step, workflow, StartEvent, StopEvent};

struct Flow;

#[workflow]
impl Flow {
    #[step(workers = 2)]
    async fn go(&self, _ev: StartEvent) -> StopEvent {
        StopEvent::default()
    }
}

fn main() {}
