use stepwise::{step, workflow, StartEvent, StopEvent, Workflow};

/// Not an error: no `std::error::Error` impl.
#[derive(Debug)]
struct Oops;

async fn step(_: StartEvent) -> Result<StopEvent, Oops> {
    Err(Oops)
}

struct Flow;

#[workflow]
impl Flow {
    #[step]
    async fn go(&self, _ev: StartEvent) -> Result<StopEvent, Oops> {
        Err(Oops)
    }
}

fn main() {
    let _ = Workflow::builder("w").step("step", step).build();
}
