use stepwise::{step, workflow, StartEvent, StopEvent};

struct Flow;

#[workflow]
impl Flow {
    #[step(name = "a", num_workers = 2, name = "b")]
    async fn go(&self, _ev: StartEvent) -> StopEvent {
        StopEvent::default()
    }
}

fn main() {}
