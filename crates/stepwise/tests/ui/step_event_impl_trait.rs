use stepwise::{step, workflow, Event, StopEvent};

struct Flow;

#[workflow]
impl Flow {
    #[step]
    async fn go(&self, _ev: impl Event) -> StopEvent {
        StopEvent::default()
    }
}

fn main() {}
