use stepwise::{EventUnion, StartEvent};

#[derive(EventUnion)]
enum Mixed {
    Start(StartEvent),
    Text(String),
}

fn main() {}
