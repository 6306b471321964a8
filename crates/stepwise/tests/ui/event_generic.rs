use serde::{Deserialize, Serialize};
use stepwise::Event;

#[derive(Clone, Debug, Serialize, Deserialize, Event)]
struct Wrapped<T> {
    value: T,
}

fn main() {}
