use stepwise::{step, workflow, StartEvent};

struct Flow;

#[workflow]
impl Flow {
    #[step]
    async fn go(&self, _ev: StartEvent) -> u32 {
        7
    }
}

fn main() {}
