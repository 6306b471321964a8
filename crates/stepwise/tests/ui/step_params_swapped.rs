// The event before the context: one error saying so, and no second
// "no method named `build`" for the workflow it was meant to define.
use stepwise::{workflow, Context, StartEvent, StopEvent, WorkflowDefinition};

struct Flow;

#[workflow]
impl Flow {
    #[step]
    async fn go(&self, ev: StartEvent, ctx: &Context) -> StopEvent {
        let _ = (ev, ctx);
        StopEvent::default()
    }
}

fn main() {
    let _ = Flow.build();
}
