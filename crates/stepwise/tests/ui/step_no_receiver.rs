use stepwise::{step, workflow, StartEvent, StopEvent};

struct Flow;

#[workflow]
impl Flow {
    #[step]
    async fn go(_ev: StartEvent) -> StopEvent {
        StopEvent::default()
    }
}

fn main() {}
