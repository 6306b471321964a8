use serde::{Deserialize, Serialize};
use stepwise::Event;

#[derive(Clone, Debug, Serialize, Deserialize, Event)]
#[event(name = "")]
struct Ev;

fn main() {}
