//! The workloads of the stepwise benchmark harness (run by `main.rs`; the
//! examples reuse them). Each module mirrors a script in
//! `shared/anchor/bench-py/` and says which.

pub mod chain;
pub mod concurrent;
pub mod events;
pub mod fanout;
pub mod io_fanout;
pub mod journal;
pub mod measure;
pub mod self_loop;
pub mod stream;
