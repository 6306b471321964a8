use stepwise::workflow;

#[workflow]
struct Flow;

fn main() {}
