//! Files that are not databases are refused with a clear error and left
//! alone; new files opened at once all work; read-only opens write nothing.

use stepwise::store::{JournalStore, RunFilter, StoreError};
use stepwise::{Journal, RunOptions, StartEvent, StopEvent, Workflow};
use stepwise_sqlite::SqliteStore;

fn echo() -> Workflow {
    Workflow::builder("echo")
        .step("echo", |_ev: StartEvent| async { StopEvent::new("done") })
        .build()
        .unwrap()
}

/// A fresh directory, removed on drop.
struct Dir(std::path::PathBuf);

impl Dir {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("stepwise-refusals-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn a_file_that_is_not_a_sqlite_database_is_refused_and_left_alone() {
    let dir = Dir::new("not-a-db");
    let mut random = vec![0u8; 8192];
    for (i, b) in random.iter_mut().enumerate() {
        *b = (i * 7919 % 251) as u8;
    }
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.db", Vec::new(), "is an empty file"),
        ("one.db", b"x".to_vec(), "is a 1-byte file"),
        ("text.db", b"name,total\nada,3\n".to_vec(), "is a 17-byte file"),
        ("random.db", random, "is a 8192-byte file of another format"),
    ];
    for (name, bytes, what) in &cases {
        let path = dir.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        for read_only in [false, true] {
            let opened = match read_only {
                false => SqliteStore::open(&path).await,
                true => SqliteStore::open_read_only(&path).await,
            };
            let Err(error) = opened else {
                panic!("{name} (read-only {read_only}) was opened as a database");
            };
            assert!(matches!(error, StoreError::NotADatabase { .. }), "{name}: {error:?}");
            let text = error.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(what), "{name}: {text}");
            assert!(text.contains("not a SQLite database"), "{text}");
            assert_eq!(&std::fs::read(&path).unwrap(), bytes, "{name} was changed");
        }
    }
    let sub = dir.0.join("a-directory.db");
    std::fs::create_dir(&sub).unwrap();
    let error = SqliteStore::open(&sub).await.err().expect("a directory is refused");
    assert!(error.to_string().contains("is a directory"), "{error}");
    // Nothing was left next to them (no temporary files, no logs).
    let mut left: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["a-directory.db", "empty.db", "one.db", "random.db", "text.db"]);
}

/// Many stores opening one new path at once (as two processes starting
/// together do) all get the same, working database: a new database is set
/// up under a temporary name and moved into place whole, so nobody ever sees
/// it empty and refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_opening_a_new_path_at_once_all_work() {
    for round in 0..5 {
        let dir = Dir::new(&format!("race-{round}"));
        let path = dir.0.join("new.db");
        let opens: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                tokio::spawn(async move { SqliteStore::open(&path).await })
            })
            .collect();
        let mut stores = Vec::new();
        for open in opens {
            stores.push(open.await.unwrap().expect("every open of a new path works"));
        }
        let wf = echo();
        let journal = Journal::new(stores[3].clone());
        let id = format!("race-{round}");
        wf.run_with(
            StartEvent::new(),
            RunOptions::new().run_id(id.clone()).journal(&journal),
        )
        .await
        .unwrap();
        journal.flush().await.unwrap();
        for store in &stores {
            assert!(store.run(&id).await.unwrap().is_some(), "every store sees the run");
        }
        let temps: Vec<_> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".new") || n.contains(".new-"))
            .collect();
        assert!(temps.is_empty(), "temporary files left: {temps:?}");
    }
}

#[tokio::test]
async fn a_database_opened_read_only_is_read_without_a_write() {
    let dir = Dir::new("read-only");
    let path = dir.0.join("runs.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let journal = Journal::new(store.clone());
    echo()
        .run_with(StartEvent::new(), RunOptions::new().run_id("kept").journal(&journal))
        .await
        .unwrap();
    journal.shutdown().await.unwrap();
    store.close().await;
    drop((journal, store));
    // Each file's name, size and a checksum of its bytes. (A reader in a
    // writable directory may make SQLite's shared-memory file and an empty
    // log; those hold no data.)
    let files = |dir: &Dir| -> Vec<(String, usize, u64)> {
        let mut files: Vec<_> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.to_string_lossy().ends_with("-shm"))
            .filter(|p| !(p.to_string_lossy().ends_with("-wal") && p.metadata().unwrap().len() == 0))
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                let sum = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
                });
                (p.display().to_string(), bytes.len(), sum)
            })
            .collect();
        files.sort();
        files
    };
    let before = files(&dir);
    let store = SqliteStore::open_read_only(&path).await.unwrap();
    let record = store.run("kept").await.unwrap().expect("the stored run");
    assert_eq!(record.workflow, "echo");
    assert_eq!(store.runs(RunFilter::default()).await.unwrap().len(), 1);
    let journal = Journal::new(store.clone());
    let trace = echo().trace(&journal, "kept").await.unwrap();
    assert!(!trace.steps.is_empty());
    assert!(
        store.execute_raw("DELETE FROM runs").await.is_err(),
        "a read-only store refuses writes"
    );
    drop((journal, store));
    assert_eq!(files(&dir), before, "opening read-only wrote to the database");

    let error = SqliteStore::open_read_only(dir.0.join("missing.db"))
        .await
        .err()
        .unwrap();
    assert!(error.to_string().contains("does not exist"), "{error}");
    assert!(!dir.0.join("missing.db").exists());
}

#[tokio::test]
async fn a_read_only_open_of_an_older_or_foreign_schema_says_so() {
    let dir = Dir::new("old-schema");
    let old = dir.0.join("old.db");
    let store = SqliteStore::open(&old).await.unwrap();
    let newest = store.schema_version().await.unwrap();
    store
        .execute_raw(&format!("DELETE FROM schema_migrations WHERE version = {newest}"))
        .await
        .unwrap();
    drop(store);
    let error = SqliteStore::open_read_only(&old)
        .await
        .err()
        .expect("an older schema is refused");
    let text = error.to_string();
    assert!(
        text.contains(&format!(
            "schema version {} is older than this build reads ({newest})",
            newest - 1
        )),
        "{text}"
    );
    assert!(text.contains("open it once with write access"), "{text}");

    let foreign = dir.0.join("foreign.db");
    let store = SqliteStore::open(&foreign).await.unwrap();
    store.execute_raw("DROP TABLE schema_migrations").await.unwrap();
    drop(store);
    let error = SqliteStore::open_read_only(&foreign).await.err().unwrap();
    assert!(error.to_string().contains("is not a stepwise database"), "{error}");
}
