use stepwise::{step, StartEvent, StopEvent};

struct Flow;

impl Flow {
    #[step]
    async fn go(&self, _ev: StartEvent) -> StopEvent {
        StopEvent::default()
    }
}

fn main() {}
