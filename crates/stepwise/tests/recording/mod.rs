//! A journal store that keeps a copy of every batch written, in order, so
//! tests can replay a run's history up to any commit (a simulated crash).

use std::sync::{Arc, Mutex};

use stepwise::store::{
    Claim, EntryBatch, JournalStore, MemoryStore, PublishedRecord, RunFilter, RunRecord, StoreFuture, WriteBatch,
};

/// Records every batch written, in order.
#[derive(Clone, Default)]
pub struct Recording {
    pub inner: MemoryStore,
    pub batches: Arc<Mutex<Vec<WriteBatch>>>,
}

impl JournalStore for Recording {
    fn write<'a>(&'a self, batch: &'a WriteBatch) -> StoreFuture<'a, ()> {
        self.batches.lock().unwrap().push(batch.clone());
        self.inner.write(batch)
    }
    fn run(&self, run_id: &str) -> StoreFuture<'_, Option<RunRecord>> {
        self.inner.run(run_id)
    }
    fn runs(&self, filter: RunFilter) -> StoreFuture<'_, Vec<RunRecord>> {
        self.inner.runs(filter)
    }
    fn entries(&self, run_id: &str, from_seq: u64) -> StoreFuture<'_, Vec<EntryBatch>> {
        self.inner.entries(run_id, from_seq)
    }
    fn events(&self, run_id: &str, from_seq: u64) -> StoreFuture<'_, Vec<PublishedRecord>> {
        self.inner.events(run_id, from_seq)
    }
    fn state(&self, run_id: &str) -> StoreFuture<'_, Option<String>> {
        self.inner.state(run_id)
    }
    fn snapshot(&self, run_id: &str) -> StoreFuture<'_, Option<String>> {
        self.inner.snapshot(run_id)
    }
    fn claim<'a>(&'a self, claim: &'a Claim) -> StoreFuture<'a, Option<u64>> {
        self.inner.claim(claim)
    }
}
