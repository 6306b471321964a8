use stepwise::{step, workflow, StartEvent, StopEvent};

struct Flow;

#[workflow]
impl Flow {
    #[step(skip_checks = [dead_end, cycles])]
    async fn go(&self, _ev: StartEvent) -> StopEvent {
        StopEvent::default()
    }
}

fn main() {}
