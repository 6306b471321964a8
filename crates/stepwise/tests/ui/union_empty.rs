use stepwise::EventUnion;

#[derive(EventUnion)]
enum Nothing {}

fn main() {}
