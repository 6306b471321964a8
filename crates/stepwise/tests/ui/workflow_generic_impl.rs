use stepwise::{step, workflow, StartEvent, StopEvent};

struct Flow<T>(T);

#[workflow]
impl<T: Send + Sync + 'static> Flow<T> {
    #[step]
    async fn go(&self, _ev: StartEvent) -> StopEvent {
        StopEvent::default()
    }
}

fn main() {}
