//! A crash mid-step, on a SQLite file: the completed step is not run again,
//! the step in flight is, and the stored stream is whole.

mod common;
use common::durable::*;
use common::*;
use stepwise_sqlite::SqliteStore;

#[test]
fn sqlite_store_crash_and_resume() {
    let path = temp_db("crash-mid-step");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(SqliteStore::open(&path)).unwrap();
    crash_and_resume(store);
}
