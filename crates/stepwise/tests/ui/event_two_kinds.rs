use serde::{Deserialize, Serialize};
use stepwise::Event;

#[derive(Clone, Debug, Serialize, Deserialize, Event)]
#[event(start, stop)]
struct Both;

fn main() {}
