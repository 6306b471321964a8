use serde::{Deserialize, Serialize};
use stepwise::Event;

#[derive(Clone, Debug, Serialize, Deserialize, Event)]
struct Ev {
    #[event(name = "x")]
    x: u32,
}

fn main() {}
