//! The SQLite file itself: WAL mode, background checkpoints, 16 KiB pages,
//! migrations from older schemas, atomic batches, `Send` futures.

use std::time::Duration;

use stepwise::store::{EntryBatch, JournalStore, RunFilter, RunRecord, RunStatus, StoreError, WriteBatch};
use stepwise::{Journal, RunOptions, StartEvent};

mod common;
use common::durable::*;
use common::*;
use stepwise_sqlite::SqliteStore;

#[test]
fn the_sqlite_store_is_one_file_in_wal_mode() {
    use sqlx::Connection;
    let path = temp_db("wal");
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let journal = Journal::new(store.clone());
        let handle = outcomes_flow().run_journaled(StartEvent::new(), &journal, RunOptions::new());
        finish(handle).await.unwrap();
        journal.flush().await.unwrap();
        assert!(
            path.with_file_name("runs.db-wal").exists(),
            "a write-ahead log next to the file"
        );
        // WAL mode is a property of the file: a plain connection sees it.
        let url = format!("sqlite://{}", path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let version: i64 = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(version, 3);
        conn.close().await.unwrap();
    });
}

/// Compile-time check: opening a store can happen inside `tokio::spawn`
/// (its future was not `Send` before, because of how the migrations used
/// their transaction).
#[test]
fn sqlite_store_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let path = temp_db("send");
    let open = async move { SqliteStore::open(&path).await };
    assert_send(&open);
    let in_memory = async { SqliteStore::in_memory().await };
    assert_send(&in_memory);
    runtime().block_on(async {
        let store = tokio::spawn(open).await.unwrap().unwrap();
        assert_eq!(store.schema_version().await.unwrap(), 3);
        let store = tokio::spawn(in_memory).await.unwrap().unwrap();
        assert_eq!(store.schema_version().await.unwrap(), 3);
    });
}

#[test]
fn sqlite_checkpoints_the_log_into_the_database_file_in_the_background() {
    let db = temp_db("checkpoint");
    runtime().block_on(async {
        let store = SqliteStore::open(&db.path).await.unwrap();
        let empty = std::fs::metadata(&db.path).unwrap().len();
        let journal = Journal::new(store.clone());
        let wf = outcomes_flow();
        for _ in 0..300 {
            wf.run_journaled(StartEvent::new(), &journal, RunOptions::new())
                .await
                .unwrap();
        }
        journal.flush().await.unwrap();
        // Far below SQLite's own checkpoint threshold; only ours copies it.
        let mut grown = false;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if std::fs::metadata(&db.path).unwrap().len() > empty + 64 * 1024 {
                grown = true;
                break;
            }
        }
        assert!(grown, "the database file did not grow from {empty} bytes");
        assert_eq!(store.runs(RunFilter::default()).await.unwrap().len(), 300);
    });
}

#[test]
fn a_sqlite_batch_that_fails_part_way_leaves_nothing_and_the_store_usable() {
    let db = temp_db("atomic");
    runtime().block_on(async {
        let store = SqliteStore::open(&db.path).await.unwrap();
        let record = |id: &str| RunRecord {
            run_id: id.into(),
            workflow: "w".into(),
            fingerprint: "f".into(),
            status: RunStatus::Running,
            result: None,
            error: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            owner: None,
            epoch: 0,
        };
        let row = |id: &str| EntryBatch {
            run_id: id.into(),
            first_seq: 0,
            last_seq: 0,
            data: "[]".into(),
        };
        store
            .write(&WriteBatch {
                runs: vec![record("a")],
                entries: vec![row("a")],
                ..WriteBatch::default()
            })
            .await
            .unwrap();
        // The run record goes in first; the entry row then collides.
        let failing = WriteBatch {
            runs: vec![record("b")],
            entries: vec![row("a")],
            ..WriteBatch::default()
        };
        assert!(store.write(&failing).await.is_err());
        assert!(store.run("b").await.unwrap().is_none(), "half a batch was kept");
        store
            .write(&WriteBatch {
                runs: vec![record("c")],
                ..WriteBatch::default()
            })
            .await
            .unwrap();
        assert!(store.run("c").await.unwrap().is_some());
    });
}

#[test]
fn new_sqlite_files_use_16_kib_pages() {
    let db = temp_db("pages");
    runtime().block_on(async {
        SqliteStore::open(&db.path).await.unwrap();
        // The page size is in the file's header (bytes 16–17, big-endian).
        let header = std::fs::read(&db.path).unwrap();
        assert_eq!(u16::from_be_bytes([header[16], header[17]]), 16384);
    });
}

#[test]
fn a_version_1_file_is_migrated_and_lists_its_unfinished_runs_from_an_index() {
    use sqlx::Connection;
    let db = temp_db("migrate-v1");
    runtime().block_on(async {
        // A file as the first schema left it (migration 1, verbatim).
        let url = format!("sqlite://{}?mode=rwc", db.path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 0);
             CREATE TABLE runs (run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, fingerprint TEXT NOT NULL,
                 status TEXT NOT NULL, result TEXT, error TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
             CREATE INDEX runs_by_status ON runs (status, workflow);
             CREATE TABLE journal (run_id TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
                 entries TEXT NOT NULL, PRIMARY KEY (run_id, first_seq));
             CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL, PRIMARY KEY (run_id, seq));
             CREATE TABLE run_state (run_id TEXT PRIMARY KEY, state TEXT NOT NULL);
             CREATE TABLE snapshots (run_id TEXT PRIMARY KEY, snapshot TEXT NOT NULL);
             INSERT INTO runs VALUES ('b-done', 'w', 'f', 'completed', NULL, NULL, 2, 2);
             INSERT INTO runs VALUES ('a-open', 'w', 'f', 'running', NULL, NULL, 1, 1);
             INSERT INTO runs VALUES ('c-open', 'w', 'f', 'running', NULL, NULL, 3, 3);",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();

        let store = SqliteStore::open(&db.path).await.unwrap();
        assert_eq!(store.schema_version().await.unwrap(), 3);
        let unfinished = store
            .runs(RunFilter {
                statuses: vec![RunStatus::Running],
                ..RunFilter::default()
            })
            .await
            .unwrap();
        let ids: Vec<&str> = unfinished.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(ids, ["a-open", "c-open"], "oldest first");
        assert_eq!(store.runs(RunFilter::default()).await.unwrap().len(), 3);

        let url = format!("sqlite://{}", db.path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        // The listing reads the partial index, not the whole table.
        let detail: Vec<(i64, i64, i64, String)> =
            sqlx::query_as("EXPLAIN QUERY PLAN SELECT * FROM runs WHERE status = 'running' ORDER BY created_at, rowid")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert!(
            detail.iter().any(|(_, _, _, d)| d.contains("runs_unfinished")),
            "{detail:?}"
        );
        conn.close().await.unwrap();
    });
}

#[test]
fn a_database_error_keeps_the_drivers_error_as_its_source() {
    runtime().block_on(async {
        let store = SqliteStore::in_memory().await.unwrap();
        let error = store.execute_raw("SELEC nothing").await.unwrap_err();
        let StoreError::Database(database) = &error else {
            panic!("{error:?}");
        };
        assert!(error.is_transient());
        assert!(error.to_string().starts_with("store error: "), "{error}");
        let driver = database.get_ref().downcast_ref::<sqlx::Error>();
        assert!(driver.is_some(), "the source is sqlx's error: {database:?}");
        let source = std::error::Error::source(&error).expect("a source");
        assert_eq!(source.to_string(), driver.unwrap().to_string());
    });
}
