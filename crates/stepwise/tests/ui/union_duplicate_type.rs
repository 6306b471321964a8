use stepwise::{EventUnion, StartEvent};

#[derive(EventUnion)]
enum Twice {
    A(StartEvent),
    B(StartEvent),
}

fn main() {}
