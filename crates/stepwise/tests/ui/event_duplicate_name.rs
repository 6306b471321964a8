use serde::{Deserialize, Serialize};
use stepwise::Event;

#[derive(Clone, Debug, Serialize, Deserialize, Event)]
#[event(name = "a")]
#[event(name = "b")]
struct Ev;

fn main() {}
