use stepwise::{step, workflow, StopEvent};

struct Flow;

#[workflow]
impl Flow {
    #[step]
    async fn go(&self) -> StopEvent {
        StopEvent::default()
    }
}

fn main() {}
