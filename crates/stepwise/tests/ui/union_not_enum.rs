use stepwise::{EventUnion, StartEvent};

#[derive(EventUnion)]
struct Single(StartEvent);

fn main() {}
