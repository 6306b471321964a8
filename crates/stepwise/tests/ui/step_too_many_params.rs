use stepwise::{step, workflow, Context, StartEvent, StopEvent};

struct Flow;

#[workflow]
impl Flow {
    #[step]
    async fn go(&self, _ctx: &Context, _ev: StartEvent, _extra: u32) -> StopEvent {
        StopEvent::default()
    }
}

fn main() {}
