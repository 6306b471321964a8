use stepwise::{workflow, StartEvent, StopEvent};

struct Flow;

#[workflow]
impl Flow {
    #[step]
    async fn go(&self, _ev: StartEvent) -> StopEvent {
        StopEvent::default()
    }
}

fn main() {}
