use stepwise::workflow;

struct Flow;

#[workflow]
impl Flow {
    async fn not_a_step(&self) {}
}

fn main() {}
