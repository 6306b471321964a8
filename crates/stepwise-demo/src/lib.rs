//! Example workflows for stepwise, used by the demo binary, the examples and
//! the tests.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agents;
pub mod pipeline;
pub mod seed;
