use stepwise::workflow;

struct Flow;

#[workflow]
impl Default for Flow {
    fn default() -> Self {
        Flow
    }
}

fn main() {}
