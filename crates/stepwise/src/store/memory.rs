//! An in-process store: everything in maps behind one lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::{
    check_fences, may_take, now_ms, Claim, EntryBatch, JournalStore, OwnerLease, PublishedRecord, RunFilter, RunRecord,
    StoreError, StoreFuture, WriteBatch,
};

#[derive(Default)]
struct Tables {
    runs: BTreeMap<String, (u64, RunRecord)>,
    entries: HashMap<String, Vec<EntryBatch>>,
    events: HashMap<String, Vec<PublishedRecord>>,
    states: HashMap<String, String>,
    snapshots: HashMap<String, String>,
    /// Each journal's latest lease, by owner id.
    owners: HashMap<String, OwnerLease>,
    next_order: u64,
}

impl Tables {
    /// A run's record with its owner's latest lease.
    fn record(&self, run: &RunRecord) -> RunRecord {
        let mut run = run.clone();
        if let Some(lease) = &mut run.owner {
            if let Some(latest) = self.owners.get(&lease.owner.id) {
                *lease = latest.clone();
            }
        }
        run
    }
}

/// A [`JournalStore`] in memory. Cheap to clone (clones share the data), so a
/// test can "restart" by resuming from a clone.
#[derive(Clone, Default)]
pub struct MemoryStore {
    tables: Arc<Mutex<Tables>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Tables) -> T) -> T {
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut tables)
    }
}

impl JournalStore for MemoryStore {
    fn write<'a>(&'a self, batch: &'a WriteBatch) -> StoreFuture<'a, ()> {
        let written = self.with(|t| {
            check_fences(batch, |run| t.runs.get(run).map(|(_, r)| r.epoch))?;
            if let Some(lease) = &batch.owner {
                t.owners.insert(lease.owner.id.clone(), lease.clone());
            }
            for run in &batch.runs {
                let order = t.next_order;
                t.next_order += 1;
                t.runs.insert(run.run_id.clone(), (order, run.clone()));
            }
            for entry in &batch.entries {
                t.entries
                    .entry(entry.run_id.to_string())
                    .or_default()
                    .push(entry.clone());
            }
            for event in &batch.events {
                t.events
                    .entry(event.run_id.to_string())
                    .or_default()
                    .push(event.clone());
            }
            for (run, state) in &batch.states {
                t.states.insert(run.to_string(), state.clone());
            }
            for (run, snapshot) in &batch.snapshots {
                t.snapshots.insert(run.to_string(), snapshot.clone());
            }
            for update in &batch.statuses {
                if let Some((_, record)) = t.runs.get_mut(&*update.run_id) {
                    record.status = update.status;
                    record.result = update.result.clone();
                    record.error = update.error.clone();
                    record.updated_at_ms = update.at_ms;
                }
            }
            Ok(())
        });
        Box::pin(std::future::ready(written))
    }

    fn run(&self, run_id: &str) -> StoreFuture<'_, Option<RunRecord>> {
        let record = self.with(|t| t.runs.get(run_id).map(|(_, r)| t.record(r)));
        Box::pin(std::future::ready(Ok(record)))
    }

    fn runs(&self, filter: RunFilter) -> StoreFuture<'_, Vec<RunRecord>> {
        let mut runs: Vec<(u64, RunRecord)> = self.with(|t| {
            t.runs
                .values()
                .filter(|(_, r)| filter.statuses.is_empty() || filter.statuses.contains(&r.status))
                .filter(|(_, r)| filter.workflow.as_ref().is_none_or(|w| *w == r.workflow))
                .map(|(order, r)| (*order, t.record(r)))
                .collect()
        });
        runs.sort_by_key(|(order, _)| *order);
        Box::pin(std::future::ready(Ok(runs.into_iter().map(|(_, r)| r).collect())))
    }

    fn entries(&self, run_id: &str, from_seq: u64) -> StoreFuture<'_, Vec<EntryBatch>> {
        let entries = self.with(|t| {
            t.entries
                .get(run_id)
                .map(|all| {
                    // Batches are stored in sequence order.
                    let first = all.partition_point(|b| b.last_seq < from_seq);
                    all[first..].to_vec()
                })
                .unwrap_or_default()
        });
        Box::pin(std::future::ready(Ok(entries)))
    }

    fn events(&self, run_id: &str, from_seq: u64) -> StoreFuture<'_, Vec<PublishedRecord>> {
        let events = self.with(|t| {
            t.events
                .get(run_id)
                .map(|all| all.iter().filter(|e| e.seq >= from_seq).cloned().collect())
                .unwrap_or_default()
        });
        Box::pin(std::future::ready(Ok(events)))
    }

    fn state(&self, run_id: &str) -> StoreFuture<'_, Option<String>> {
        let state = self.with(|t| t.states.get(run_id).cloned());
        Box::pin(std::future::ready(Ok(state)))
    }

    fn snapshot(&self, run_id: &str) -> StoreFuture<'_, Option<String>> {
        let snapshot = self.with(|t| t.snapshots.get(run_id).cloned());
        Box::pin(std::future::ready(Ok(snapshot)))
    }

    fn claim<'a>(&'a self, claim: &'a Claim) -> StoreFuture<'a, Option<u64>> {
        let claimed = self.with(|t| {
            let Some((_, stored)) = t.runs.get(&claim.run_id) else {
                return Ok(None);
            };
            let holder = stored.owner.as_ref().map(|o| t.owners.get(&o.owner.id).unwrap_or(o));
            may_take(holder, &claim.lease.owner, now_ms()).map_err(|reason| StoreError::Claimed {
                run_id: claim.run_id.clone(),
                reason,
            })?;
            t.owners.insert(claim.lease.owner.id.clone(), claim.lease.clone());
            let (_, record) = t.runs.get_mut(&claim.run_id).expect("checked above");
            record.epoch += 1;
            record.owner = Some(claim.lease.clone());
            Ok(Some(record.epoch))
        });
        Box::pin(std::future::ready(claimed))
    }
}
