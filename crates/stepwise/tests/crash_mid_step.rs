//! A crash mid-step (the runtime shut down with a step in flight), on
//! `MemoryStore`: the completed step is not run again, the step in flight
//! is, and the stored stream is whole. The same on a SQLite file:
//! `stepwise-sqlite`'s `tests/crash_mid_step.rs`.

mod common;
use common::durable::crash_and_resume;
use stepwise::store::MemoryStore;

#[test]
fn memory_store_crash_and_resume() {
    crash_and_resume(MemoryStore::new());
}
