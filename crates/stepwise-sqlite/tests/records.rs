//! Run records and stored streams in a SQLite file, seen by every store
//! opened on it.

use stepwise::store::{JournalStore, RunFilter, RunStatus};

mod common;
use common::durable::*;
use common::*;
use stepwise_sqlite::SqliteStore;

#[test]
fn run_records_and_streams_in_sqlite() {
    let path = temp_db("records");
    runtime().block_on(async {
        // What every store must keep (the kit's check), then what a file adds.
        stepwise_store_tests::checks::journaled_runs_keep_their_records_and_streams(
            SqliteStore::open(&path).await.unwrap(),
        )
        .await;
        // A second store on the same file sees everything.
        let other = SqliteStore::open(&path).await.unwrap();
        assert_eq!(other.schema_version().await.unwrap(), 3);
        assert_eq!(other.run("ok").await.unwrap().unwrap().status, RunStatus::Completed);
        assert_eq!(other.events("ok", 0).await.unwrap().len(), 6);
        assert!(!other.entries("ok", 0).await.unwrap().is_empty());
    });
    runtime().block_on(async {
        // And so does one opened later, in another runtime.
        let reopened = SqliteStore::open(&path).await.unwrap();
        assert_eq!(reopened.schema_version().await.unwrap(), 3);
        assert_eq!(reopened.runs(RunFilter::default()).await.unwrap().len(), 3);
    });
}
