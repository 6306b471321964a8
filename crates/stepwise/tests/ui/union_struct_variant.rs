use stepwise::{EventUnion, StartEvent, StopEvent};

#[derive(EventUnion)]
enum Either {
    Start(StartEvent),
    Stop { inner: StopEvent },
}

fn main() {}
