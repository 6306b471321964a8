use stepwise::{EventUnion, StartEvent, StopEvent};

#[derive(EventUnion)]
enum Either {
    Nothing,
    Start(StartEvent),
    Pair(StartEvent, StopEvent),
}

fn main() {}
