//! The embedded SQLite journal store for stepwise: one file, WAL mode, no
//! server, migrations built in.
//!
//! ```no_run
//! use stepwise::Journal;
//! use stepwise_sqlite::SqliteStore;
//!
//! # async fn example() -> Result<(), stepwise::store::StoreError> {
//! let journal = Journal::new(SqliteStore::open("runs.db").await?);
//! # let _ = journal; Ok(()) }
//! ```
//!
//! This is the only stepwise crate that depends on a database driver (sqlx);
//! the engine talks to it through [`JournalStore`] alone. It passes the
//! checks every store must pass (`stepwise-store-tests`, run from this
//! crate's `tests/conformance.rs`). Until 0.1 it was `stepwise::store::SqliteStore`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Row;

use stepwise::store::{
    check_fences, may_take, now_ms, Claim, DatabaseError, EntryBatch, JournalStore, Owner, OwnerLease, PublishedRecord,
    RunFilter, RunRecord, RunStatus, StoreError, StoreFuture, WriteBatch,
};

/// Schema migrations, applied in order and recorded in `schema_migrations`.
/// Never edit a shipped migration; append a new one.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
    CREATE TABLE runs (
        run_id      TEXT PRIMARY KEY,
        workflow    TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        status      TEXT NOT NULL,
        result      TEXT,
        error       TEXT,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    CREATE INDEX runs_by_status ON runs (status, workflow);
    CREATE TABLE journal (
        run_id    TEXT NOT NULL,
        first_seq INTEGER NOT NULL,
        last_seq  INTEGER NOT NULL,
        entries   TEXT NOT NULL,
        PRIMARY KEY (run_id, first_seq)
    );
    CREATE TABLE events (
        run_id TEXT NOT NULL,
        seq    INTEGER NOT NULL,
        event  TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE run_state (
        run_id TEXT PRIMARY KEY,
        state  TEXT NOT NULL
    );
    CREATE TABLE snapshots (
        run_id   TEXT PRIMARY KEY,
        snapshot TEXT NOT NULL
    );
    "#,
    ),
    (
        2,
        // No query used `runs_by_status`, yet every run paid for it on insert
        // and on every status change. Listing unfinished runs (what a restart
        // does) now reads a partial index holding only those: finished runs,
        // nearly all of a long-lived file, are not in it at all.
        r#"
    DROP INDEX runs_by_status;
    CREATE INDEX runs_unfinished ON runs (created_at) WHERE status = 'running';
    "#,
    ),
    (
        3,
        // Run ownership: the journal holding each run and the epoch of its
        // claim (commits for another epoch are refused), and each journal's
        // process and lease, so a claim can tell a dead holder from a live one.
        r#"
    ALTER TABLE runs ADD COLUMN owner TEXT;
    ALTER TABLE runs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE owners (
        owner       TEXT PRIMARY KEY,
        host        TEXT NOT NULL,
        pid         INTEGER NOT NULL,
        started     INTEGER NOT NULL,
        lease_until INTEGER NOT NULL
    );
    "#,
    ),
];

/// A run record with its holder's lease.
const SELECT_RUNS: &str = "SELECT r.*, o.host AS owner_host, o.pid AS owner_pid, o.started AS owner_started, o.lease_until AS owner_until FROM runs r LEFT JOIN owners o ON o.owner = r.owner";

/// A [`JournalStore`] in one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Background WAL checkpoints (file databases only).
    checkpointer: Option<Arc<Checkpointer>>,
    /// Watches the write-ahead log file (file databases only).
    wal: Option<Arc<WalWatch>>,
}

/// The write-ahead log must stay the file SQLite opened: if it is deleted
/// or replaced while the store is open, commits go to a file nobody will
/// read again and are lost when the process ends. Checked before every
/// commit (one `stat`).
struct WalWatch {
    path: std::path::PathBuf,
    /// (device, inode) of the log, once it exists.
    seen: std::sync::Mutex<Option<(u64, u64)>>,
    damaged: std::sync::atomic::AtomicBool,
}

impl WalWatch {
    fn identity(&self) -> Option<(u64, u64)> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(&self.path).ok().map(|m| (m.dev(), m.ino()))
        }
        #[cfg(not(unix))]
        {
            std::fs::metadata(&self.path).ok().map(|_| (0, 0))
        }
    }

    /// `Err` when the log went away or was replaced since it was first seen.
    fn check(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let damaged = || {
            StoreError::Damaged(format!(
                "the write-ahead log {} was deleted or replaced while the database was open; commits since then may be lost, and no more are accepted (restart the process)",
                self.path.display()
            ))
        };
        if self.damaged.load(Ordering::Relaxed) {
            return Err(damaged());
        }
        let now = self.identity();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match (*seen, now) {
            (None, now) => *seen = now,
            (Some(before), Some(now)) if before == now => {}
            (Some(_), _) => {
                self.damaged.store(true, Ordering::Relaxed);
                return Err(damaged());
            }
        }
        Ok(())
    }
}

/// Copies the write-ahead log back into the database file on its own
/// connection, so that a commit never pays for it: SQLite's automatic
/// checkpoint would run inside whichever commit crosses the threshold,
/// copying megabytes and syncing the file on the journal writer's path.
struct Checkpointer {
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
    pool: SqlitePool,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Checkpoints run at most this often while commits keep coming.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

async fn checkpoint_loop(pool: SqlitePool, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        // PASSIVE: copies what it can without blocking the writer.
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            tracing::warn!(%error, "background WAL checkpoint failed; SQLite's own will run instead");
        }
        tokio::time::sleep(CHECKPOINT_INTERVAL).await;
    }
}

/// The first bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// `Ok(true)` when `path` is a SQLite database file, `Ok(false)` when there
/// is no file; [`StoreError::NotADatabase`] when it is something else
/// (empty, too short, another format, a directory).
fn check_header(path: &Path) -> Result<bool, StoreError> {
    use std::io::Read;
    let refuse = |what: String| StoreError::NotADatabase {
        path: path.display().to_string(),
        what,
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StoreError::Open(format!("{}: {e}", path.display()))),
    };
    if meta.is_dir() {
        return Err(refuse("a directory".into()));
    }
    match meta.len() {
        0 => return Err(refuse("an empty file".into())),
        // SQLite's header is 100 bytes.
        n if n < 100 => return Err(refuse(format!("a {n}-byte file"))),
        _ => {}
    }
    let mut head = [0u8; 16];
    match std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)) {
        Ok(()) if &head == SQLITE_HEADER => Ok(true),
        Ok(()) => Err(refuse(format!("a {}-byte file of another format", meta.len()))),
        // Unreadable (permissions): SQLite will say so when it opens it.
        Err(_) => Ok(true),
    }
}

/// Makes a new database at `path`, which did not exist: set up under a
/// temporary name next to it (schema and all), then linked into place only
/// if `path` still does not exist — when another process made it first,
/// theirs is used. So nobody ever opens a database file that is still empty.
async fn create_new(path: &Path, options: SqliteConnectOptions) -> Result<(), StoreError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let temp = path.with_file_name(format!(".{name}.{}-{nonce}.new", std::process::id()));
    let remove_temp = || {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut file = temp.as_os_str().to_owned();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    };
    let made = async {
        // Set up without a write-ahead log, so the file is complete after
        // every commit whenever the connection is really closed (with a WAL,
        // a close still under way left the schema in the log, and the linked
        // file was short: "disk I/O error"). It is switched to WAL when opened.
        let options = options
            .filename(&temp)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Delete);
        let store = SqliteStore::connect(options).await?;
        store.pool.close().await;
        match std::fs::hard_link(&temp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            // A file system without hard links: a plain rename (which
            // replaces a file made meanwhile; rare, and that file is a
            // complete database too).
            Err(_) if !path.exists() => std::fs::rename(&temp, path)
                .map_err(|e| StoreError::Open(format!("cannot create {}: {e}", path.display()))),
            Err(_) => Ok(()),
        }
    }
    .await;
    remove_temp();
    made.map_err(|e| match e {
        StoreError::Open(reason) if !reason.contains(&*path.to_string_lossy()) => {
            StoreError::Open(format!("cannot create {}: {reason}", path.display()))
        }
        other => other,
    })
}

/// A pool of one connection, opened now and kept open. One: SQLite has one
/// writer anyway, and an in-memory database exists per connection. Kept
/// open: SQLite removes the write-ahead log when its last connection closes.
///
/// Opening can find the file locked by another process setting it up (the
/// pragmas run on connect, and switching to WAL mode does not always wait
/// for the busy timeout): retried for a while, like a busy commit.
async fn one_connection(options: SqliteConnectOptions) -> Result<SqlitePool, StoreError> {
    let connect = || {
        SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
    };
    let deadline = std::time::Instant::now() + OPEN_RETRY_FOR;
    let mut pause = Duration::from_millis(5);
    loop {
        match connect().await {
            Ok(pool) => return Ok(pool),
            Err(e) if is_locked(&e) && std::time::Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            Err(e) => return Err(StoreError::Open(e.to_string())),
        }
    }
}

/// How long opening waits for a database another process holds locked.
const OPEN_RETRY_FOR: Duration = Duration::from_secs(10);

/// SQLITE_BUSY (5) or SQLITE_LOCKED (6), extended codes included.
fn is_locked(error: &sqlx::Error) -> bool {
    let code = error.as_database_error().and_then(|e| e.code());
    let code = code.as_deref().and_then(|c| c.parse::<i64>().ok());
    matches!(code.map(|c| c & 0xff), Some(5 | 6))
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(DatabaseError::new(e))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending
    /// migrations. An existing file that is not a SQLite database — an empty
    /// or 1-byte file too — is refused with [`StoreError::NotADatabase`]: a new
    /// database is made under a temporary name and moved into place whole,
    /// so an empty file is never one being set up by another process.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if !check_header(path)? {
            create_new(path, Self::file_options(path)).await?;
        }
        // SQLite would open a file it cannot write read-only without a word,
        // and every commit would then fail.
        if let Err(e) = std::fs::OpenOptions::new().write(true).open(path) {
            return Err(StoreError::Open(format!(
                "the database file is not writable ({e}); commands that only read can open it read-only (SqliteStore::open_read_only), writing needs write access"
            )));
        }
        let options = Self::file_options(path);
        // The background checkpointer keeps the log short; the writer's own
        // automatic checkpoint only backs it up (at 4,096 pages: 64 MiB of log).
        let mut store = Self::connect(options.clone().pragma("wal_autocheckpoint", "4096")).await?;
        let checkpoints = one_connection(options).await?;
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(checkpoint_loop(checkpoints.clone(), Arc::clone(&wake)));
        store.checkpointer = Some(Arc::new(Checkpointer {
            wake,
            task,
            pool: checkpoints,
        }));
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let watch = WalWatch {
            path: wal.into(),
            seen: std::sync::Mutex::new(None),
            damaged: std::sync::atomic::AtomicBool::new(false),
        };
        watch.check()?;
        store.wal = Some(Arc::new(watch));
        Ok(store)
    }

    /// Opens an existing database for reading only: nothing is written and
    /// nothing migrated, so it works on a read-only file or in a read-only
    /// directory (where SQLite cannot make the write-ahead log's shared-memory
    /// file, the database is opened as immutable: nobody can be writing it
    /// then). A database whose schema is older or newer than this build's is
    /// refused with [`StoreError::Open`] saying so, and so is a missing file;
    /// one that is not a SQLite database with [`StoreError::NotADatabase`].
    /// Writes to the store fail.
    pub async fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if !check_header(path)? {
            return Err(StoreError::Open(format!("{} does not exist", path.display())));
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        let store = match Self::connect_read_only(options.clone()).await {
            Ok(store) => store,
            Err(first) => match Self::connect_read_only(options.immutable(true)).await {
                Ok(store) => store,
                Err(_) => return Err(first),
            },
        };
        let newest = store.schema_version().await.map_err(|e| {
            StoreError::Open(format!(
                "{} is not a stepwise database (it has no readable schema version: {e})",
                path.display()
            ))
        })?;
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        if newest > known {
            return Err(StoreError::Open(format!(
                "{}: database schema version {newest} is newer than this build knows ({known}); upgrade stepwise",
                path.display()
            )));
        }
        if newest < known {
            return Err(StoreError::Open(format!(
                "{}: database schema version {newest} is older than this build reads ({known}), and it is opened read-only so it cannot be upgraded; open it once with write access to upgrade it",
                path.display()
            )));
        }
        Ok(store)
    }

    async fn connect_read_only(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let pool = one_connection(options).await?;
        // SQLite opens lazily: the first read tells whether it can.
        sqlx::query("SELECT 1 FROM sqlite_master LIMIT 1")
            .fetch_optional(&pool)
            .await
            .map_err(|e| StoreError::Open(e.to_string()))?;
        Ok(SqliteStore {
            pool,
            checkpointer: None,
            wal: None,
        })
    }

    /// How a database file is opened for reading and writing.
    fn file_options(path: &Path) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            // Durable across process crashes (the WAL is fsynced at checkpoints);
            // a power loss may drop the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", "-65536")
            // 16 KiB pages (new files only; SQLite's default is 4 KiB): journal
            // rows are a few KiB, and fewer, larger pages make appends and the
            // log cheaper (measured ~8% on the journaled chain).
            .page_size(16384)
            .foreign_keys(true)
    }

    /// Closes the store's connections (every clone's: they share them) and
    /// waits until they are closed; SQLite then copies the write-ahead log
    /// into the database file and removes it. Later calls on the store fail.
    pub async fn close(&self) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.task.abort();
            checkpointer.pool.close().await;
        }
        self.pool.close().await;
    }

    /// Opens a private in-memory database (for tests).
    pub async fn in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").map_err(|e| StoreError::Open(e.to_string()))?;
        Self::connect(options).await
    }

    async fn connect(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let pool = one_connection(options).await?;
        let store = SqliteStore {
            pool,
            checkpointer: None,
            wal: None,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        if let Some(newest) = applied.iter().max() {
            let known = MIGRATIONS.last().map_or(0, |m| m.0);
            if *newest > known {
                return Err(StoreError::Open(format!(
                    "database schema version {newest} is newer than this build knows ({known}); upgrade stepwise"
                )));
            }
        }
        for (version, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            // `Executor::execute` on the text runs every statement in it. (Not
            // `raw_sql(..).execute(&mut *tx)`: that makes `open`'s future one
            // the compiler cannot prove `Send`, so no `tokio::spawn(open)`.)
            sqlx::Executor::execute(&mut *tx, *sql).await.map_err(db)?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)")
                .bind(version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    /// The schema version in use.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&self.pool)
            .await
            .map_err(db)
    }

    /// Runs raw SQL against the database (tests use it to damage rows on purpose).
    #[doc(hidden)]
    pub async fn execute_raw(&self, sql: &str) -> Result<u64, StoreError> {
        Ok(sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected())
    }

    /// Writes `batch` in one transaction: a multi-row statement per table
    /// and chunk of rows. Row counts are padded to powers of two (see
    /// [`padded`]), so that every batch uses the same few statement texts,
    /// which SQLite prepares once and keeps (parsing a statement of hundreds
    /// of rows costs as much as running it).
    async fn write_batch(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        if let Some(wal) = &self.wal {
            if let Err(error) = wal.check() {
                // Save what the lost log holds into the database file, which
                // our open connection can still read.
                let _ = sqlx::query("PRAGMA wal_checkpoint(FULL)").execute(&self.pool).await;
                return Err(error);
            }
        }
        let mut conn = self.pool.acquire().await.map_err(db)?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await.map_err(db)?;
        let written = match check_batch_fences(&mut conn, batch).await {
            Ok(()) => write_rows(&mut conn, batch).await.map_err(db),
            Err(error) => Err(error),
        };
        if let Err(error) = written {
            // Nothing of the batch stays.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            return Err(error);
        }
        drop(conn);
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.wake.notify_one();
        }
        Ok(())
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Refuses the batch (inside the caller's transaction) when a run it writes
/// is no longer the writer's: see [`check_fences`].
async fn check_batch_fences(conn: &mut sqlx::SqliteConnection, batch: &WriteBatch) -> Result<(), StoreError> {
    let ids: Vec<&str> = batch
        .runs
        .iter()
        .map(|r| r.run_id.as_str())
        .chain(batch.fences.iter().map(|(run, _)| &**run))
        .collect();
    let mut epochs = std::collections::HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let size = padded(chunk.len());
        let mut q = sqlx::query(epoch_query(size));
        for id in chunk {
            q = q.bind(*id);
        }
        for _ in chunk.len()..size {
            q = q.bind(None::<&str>);
        }
        for row in q.fetch_all(&mut *conn).await.map_err(db)? {
            let run: String = row.try_get(0).map_err(db)?;
            let epoch: i64 = row.try_get(1).map_err(db)?;
            epochs.insert(run, epoch as u64);
        }
    }
    check_fences(batch, |run| epochs.get(run).copied())
}

/// `SELECT run_id, epoch FROM runs WHERE run_id IN (…)` with `rows`
/// placeholders (a power of two; the texts are made once).
fn epoch_query(rows: usize) -> &'static str {
    static TEXTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        (0..=ROWS_PER_STATEMENT.trailing_zeros())
            .map(|bits| {
                format!(
                    "SELECT run_id, epoch FROM runs WHERE run_id IN ({})",
                    vec!["?"; 1 << bits].join(", ")
                )
            })
            .collect()
    });
    &texts[rows.trailing_zeros() as usize]
}

/// Every row of `batch`, then `COMMIT`, inside the caller's transaction.
async fn write_rows(conn: &mut sqlx::SqliteConnection, batch: &WriteBatch) -> Result<(), sqlx::Error> {
    if let Some(lease) = &batch.owner {
        upsert_owner(conn, lease).await?;
    }
    insert(conn, Table::Runs, &batch.runs, |q, run| {
        q.bind(&run.run_id)
            .bind(&run.workflow)
            .bind(&run.fingerprint)
            .bind(run.status.as_str())
            .bind(run.result.as_ref().map(|v| v.to_string()))
            .bind(&run.error)
            .bind(run.created_at_ms)
            .bind(run.updated_at_ms)
            .bind(run.owner.as_ref().map(|o| o.owner.id.as_str()))
            .bind(run.epoch as i64)
    })
    .await?;
    insert(conn, Table::Entries, &batch.entries, |q, entry| {
        q.bind(&*entry.run_id)
            .bind(entry.first_seq as i64)
            .bind(entry.last_seq as i64)
            .bind(&entry.data)
    })
    .await?;
    insert(conn, Table::Events, &batch.events, |q, event| {
        q.bind(&*event.run_id).bind(event.seq as i64).bind(&event.event)
    })
    .await?;
    insert(conn, Table::States, &batch.states, |q, (run, state)| {
        q.bind(&**run).bind(state)
    })
    .await?;
    insert(conn, Table::Snapshots, &batch.snapshots, |q, (run, snapshot)| {
        q.bind(&**run).bind(snapshot)
    })
    .await?;
    insert(conn, Table::Statuses, &batch.statuses, |q, update| {
        q.bind(&*update.run_id)
            .bind(update.status.as_str())
            .bind(update.result.as_ref().map(|v| v.to_string()))
            .bind(&update.error)
            .bind(update.at_ms)
    })
    .await?;
    sqlx::query("COMMIT").execute(&mut *conn).await?;
    Ok(())
}

/// Records a journal's process and lease (or renews the lease).
async fn upsert_owner(conn: &mut sqlx::SqliteConnection, lease: &OwnerLease) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO owners (owner, host, pid, started, lease_until) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (owner) DO UPDATE SET lease_until = excluded.lease_until",
    )
    .bind(&lease.owner.id)
    .bind(&lease.owner.host)
    .bind(lease.owner.pid as i64)
    .bind(lease.owner.started as i64)
    .bind(lease.until_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Writes `rows` into `table`, [`ROWS_PER_STATEMENT`] at a time.
async fn insert<'q, T>(
    conn: &mut sqlx::SqliteConnection,
    table: Table,
    rows: &'q [T],
    bind: impl Fn(SqliteQuery<'q>, &'q T) -> SqliteQuery<'q>,
) -> Result<(), sqlx::Error> {
    let statements = statements(table);
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let size = padded(chunk.len());
        let mut q = sqlx::query(statements.text(size));
        for row in chunk {
            q = bind(q, row);
        }
        // Padding rows: all NULL, skipped by every statement.
        for _ in 0..statements.columns * (size - chunk.len()) {
            q = q.bind(None::<i64>);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Rows per multi-row statement (SQLite allows 32,766 parameters in one); a
/// power of two, like every padded row count.
const ROWS_PER_STATEMENT: usize = 256;

/// How many rows a statement for `rows` rows has: the next power of two, so
/// that there are few statement texts to prepare and keep.
fn padded(rows: usize) -> usize {
    rows.next_power_of_two()
}

/// The tables a batch writes, in the order it writes them.
#[derive(Copy, Clone)]
enum Table {
    Runs,
    Entries,
    Events,
    States,
    Snapshots,
    Statuses,
}

impl Table {
    const ALL: [Table; 6] = [
        Table::Runs,
        Table::Entries,
        Table::Events,
        Table::States,
        Table::Snapshots,
        Table::Statuses,
    ];

    /// The table's multi-row statement (its texts are made once, by
    /// [`statements`]).
    fn statement(self) -> RowsStatement {
        // New runs are plain inserts (the fence check refused ids in use);
        // state and snapshot keep the latest.
        match self {
            Table::Runs => RowsStatement::insert(
                "runs",
                &[
                    "run_id",
                    "workflow",
                    "fingerprint",
                    "status",
                    "result",
                    "error",
                    "created_at",
                    "updated_at",
                    "owner",
                    "epoch",
                ],
                "",
            ),
            Table::Entries => RowsStatement::insert("journal", &["run_id", "first_seq", "last_seq", "entries"], ""),
            Table::Events => RowsStatement::insert("events", &["run_id", "seq", "event"], ""),
            Table::States => RowsStatement::insert(
                "run_state",
                &["run_id", "state"],
                " ON CONFLICT (run_id) DO UPDATE SET state = excluded.state",
            ),
            Table::Snapshots => RowsStatement::insert(
                "snapshots",
                &["run_id", "snapshot"],
                " ON CONFLICT (run_id) DO UPDATE SET snapshot = excluded.snapshot",
            ),
            Table::Statuses => RowsStatement {
                // Padding rows match no run.
                head: "UPDATE runs SET status = v.column2, result = v.column3, error = v.column4, updated_at = v.column5 FROM (VALUES ".into(),
                tail: ") AS v WHERE runs.run_id = v.column1".into(),
                columns: 5,
            },
        }
    }
}

/// A table's statements for every padded row count, made once.
struct Statements {
    columns: usize,
    /// Index `i`: the statement for `2^i` rows.
    texts: Vec<String>,
}

impl Statements {
    /// The statement for `rows` rows (a power of two up to
    /// [`ROWS_PER_STATEMENT`]).
    fn text(&self, rows: usize) -> &str {
        &self.texts[rows.trailing_zeros() as usize]
    }
}

fn statements(table: Table) -> &'static Statements {
    static ALL: std::sync::OnceLock<Vec<Statements>> = std::sync::OnceLock::new();
    let all = ALL.get_or_init(|| {
        Table::ALL
            .iter()
            .map(|table| {
                let statement = table.statement();
                Statements {
                    columns: statement.columns,
                    texts: (0..=ROWS_PER_STATEMENT.trailing_zeros())
                        .map(|bits| multi_row(&statement, 1 << bits))
                        .collect(),
                }
            })
            .collect()
    });
    &all[table as usize]
}

/// One table's multi-row statement: `head`, then a row of `columns`
/// placeholders per row, then `tail`. Rows whose first column is NULL are
/// padding and skipped.
struct RowsStatement {
    head: String,
    tail: String,
    columns: usize,
}

impl RowsStatement {
    /// `INSERT INTO table (columns)` of the non-padding rows, then `upsert`.
    fn insert(table: &str, columns: &[&str], upsert: &str) -> Self {
        RowsStatement {
            head: format!("INSERT INTO {table} ({}) SELECT * FROM (VALUES ", columns.join(", ")),
            tail: format!(") WHERE column1 IS NOT NULL{upsert}"),
            columns: columns.len(),
        }
    }
}

/// `statement` for `rows` rows: one statement inserts (or updates) many rows,
/// which is what makes a group commit cheap on SQLite.
fn multi_row(statement: &RowsStatement, rows: usize) -> String {
    let row = format!("({})", vec!["?"; statement.columns].join(", "));
    format!("{}{}{}", statement.head, vec![row; rows].join(","), statement.tail)
}

fn record(row: &sqlx::sqlite::SqliteRow) -> Result<RunRecord, StoreError> {
    let run_id: String = row.try_get("run_id").map_err(db)?;
    let corrupt = |reason: String| StoreError::Corrupt {
        what: format!("runs row of run {run_id}"),
        reason,
    };
    let status: String = row.try_get("status").map_err(db)?;
    let status = RunStatus::parse(&status).ok_or_else(|| corrupt(format!("unknown status `{status}`")))?;
    let result: Option<String> = row.try_get("result").map_err(db)?;
    let result = match result {
        None => None,
        Some(text) => Some(serde_json::from_str(&text).map_err(|e| corrupt(format!("result is not JSON: {e}")))?),
    };
    let owner = match row.try_get::<Option<String>, _>("owner").map_err(db)? {
        None => None,
        Some(id) => match row.try_get::<Option<String>, _>("owner_host").map_err(db)? {
            Some(host) => Some(OwnerLease {
                owner: Owner {
                    id,
                    host,
                    pid: row.try_get::<i64, _>("owner_pid").map_err(db)? as u32,
                    started: row.try_get::<i64, _>("owner_started").map_err(db)? as u64,
                },
                until_ms: row.try_get("owner_until").map_err(db)?,
            }),
            // An owner whose lease row is missing: nothing proves it alive.
            None => Some(OwnerLease {
                owner: Owner {
                    id,
                    host: String::new(),
                    pid: 0,
                    started: 0,
                },
                until_ms: 0,
            }),
        },
    };
    Ok(RunRecord {
        owner,
        epoch: row.try_get::<i64, _>("epoch").map_err(db)? as u64,
        workflow: row.try_get("workflow").map_err(db)?,
        fingerprint: row.try_get("fingerprint").map_err(db)?,
        status,
        result,
        error: row.try_get("error").map_err(db)?,
        created_at_ms: row.try_get("created_at").map_err(db)?,
        updated_at_ms: row.try_get("updated_at").map_err(db)?,
        run_id,
    })
}

impl JournalStore for SqliteStore {
    fn write<'a>(&'a self, batch: &'a WriteBatch) -> StoreFuture<'a, ()> {
        Box::pin(self.write_batch(batch))
    }

    fn run(&self, run_id: &str) -> StoreFuture<'_, Option<RunRecord>> {
        let run_id = run_id.to_owned();
        Box::pin(async move {
            let row = sqlx::query(&format!("{SELECT_RUNS} WHERE r.run_id = ?"))
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            row.as_ref().map(record).transpose()
        })
    }

    fn runs(&self, filter: RunFilter) -> StoreFuture<'_, Vec<RunRecord>> {
        Box::pin(async move {
            // Only unfinished runs: through the partial index, without
            // reading the finished ones.
            let unfinished = filter.statuses == [RunStatus::Running];
            let sql = if unfinished {
                format!("{SELECT_RUNS} WHERE r.status = 'running' ORDER BY r.created_at, r.rowid")
            } else {
                format!("{SELECT_RUNS} ORDER BY r.created_at, r.rowid")
            };
            let rows = sqlx::query(&sql).fetch_all(&self.pool).await.map_err(db)?;
            let mut runs = Vec::new();
            for row in &rows {
                let run = record(row)?;
                let status_ok = filter.statuses.is_empty() || filter.statuses.contains(&run.status);
                let workflow_ok = filter.workflow.as_ref().is_none_or(|w| *w == run.workflow);
                if status_ok && workflow_ok {
                    runs.push(run);
                }
            }
            Ok(runs)
        })
    }

    fn entries(&self, run_id: &str, from_seq: u64) -> StoreFuture<'_, Vec<EntryBatch>> {
        let run_id: Arc<str> = run_id.into();
        Box::pin(async move {
            // Rows hold consecutive entries: start at the row that holds
            // `from_seq` (found through the primary key), so that a replay from
            // a recent snapshot does not scan the run's whole journal.
            let rows = sqlx::query(
                "SELECT first_seq, last_seq, entries FROM journal
                 WHERE run_id = ?1 AND last_seq >= ?2 AND first_seq >= COALESCE(
                     (SELECT MAX(first_seq) FROM journal WHERE run_id = ?1 AND first_seq <= ?2), 0)
                 ORDER BY first_seq",
            )
            .bind(&*run_id)
            .bind(from_seq as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            rows.iter()
                .map(|row| {
                    Ok(EntryBatch {
                        run_id: Arc::clone(&run_id),
                        first_seq: row.try_get::<i64, _>("first_seq").map_err(db)? as u64,
                        last_seq: row.try_get::<i64, _>("last_seq").map_err(db)? as u64,
                        data: row.try_get("entries").map_err(db)?,
                    })
                })
                .collect()
        })
    }

    fn events(&self, run_id: &str, from_seq: u64) -> StoreFuture<'_, Vec<PublishedRecord>> {
        let run_id: Arc<str> = run_id.into();
        Box::pin(async move {
            let rows = sqlx::query("SELECT seq, event FROM events WHERE run_id = ? AND seq >= ? ORDER BY seq")
                .bind(&*run_id)
                .bind(from_seq as i64)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            rows.iter()
                .map(|row| {
                    Ok(PublishedRecord {
                        run_id: Arc::clone(&run_id),
                        seq: row.try_get::<i64, _>("seq").map_err(db)? as u64,
                        event: row.try_get("event").map_err(db)?,
                    })
                })
                .collect()
        })
    }

    fn state(&self, run_id: &str) -> StoreFuture<'_, Option<String>> {
        let run_id = run_id.to_owned();
        Box::pin(async move {
            sqlx::query_scalar("SELECT state FROM run_state WHERE run_id = ?")
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)
        })
    }

    fn snapshot(&self, run_id: &str) -> StoreFuture<'_, Option<String>> {
        let run_id = run_id.to_owned();
        Box::pin(async move {
            sqlx::query_scalar("SELECT snapshot FROM snapshots WHERE run_id = ?")
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)
        })
    }

    fn claim<'a>(&'a self, claim: &'a Claim) -> StoreFuture<'a, Option<u64>> {
        Box::pin(self.claim_run(claim))
    }
}

impl SqliteStore {
    async fn claim_run(&self, claim: &Claim) -> Result<Option<u64>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await.map_err(db)?;
        let claimed = claim_in(&mut conn, claim).await;
        let end = if matches!(claimed, Ok(Some(_))) {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        if let Err(error) = sqlx::query(end).execute(&mut *conn).await {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            return Err(db(error));
        }
        claimed
    }
}

/// The claim inside the caller's transaction.
async fn claim_in(conn: &mut sqlx::SqliteConnection, claim: &Claim) -> Result<Option<u64>, StoreError> {
    let row = sqlx::query(&format!("{SELECT_RUNS} WHERE r.run_id = ?"))
        .bind(&claim.run_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    let Some(row) = row else { return Ok(None) };
    let stored = record(&row)?;
    may_take(stored.owner.as_ref(), &claim.lease.owner, now_ms()).map_err(|reason| StoreError::Claimed {
        run_id: claim.run_id.clone(),
        reason,
    })?;
    upsert_owner(conn, &claim.lease).await.map_err(db)?;
    let epoch = stored.epoch + 1;
    sqlx::query("UPDATE runs SET owner = ?, epoch = ? WHERE run_id = ?")
        .bind(&claim.lease.owner.id)
        .bind(epoch as i64)
        .bind(&claim.run_id)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(Some(epoch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stepwise::store::StatusUpdate;

    fn run(i: usize) -> RunRecord {
        RunRecord {
            run_id: format!("run-{i:03}"),
            workflow: "w".into(),
            fingerprint: "f".into(),
            status: RunStatus::Running,
            result: None,
            error: None,
            created_at_ms: i as i64,
            updated_at_ms: i as i64,
            owner: None,
            epoch: 1,
        }
    }

    /// Row counts that are not powers of two, and more rows than one
    /// statement holds: padding rows must never be written.
    #[tokio::test]
    async fn padded_statements_write_exactly_the_batch() {
        let store = SqliteStore::in_memory().await.unwrap();
        let runs: Vec<RunRecord> = (0..3).map(run).collect();
        let one: Arc<str> = "run-000".into();
        let entries = (0..300u64)
            .map(|i| EntryBatch {
                run_id: Arc::clone(&one),
                first_seq: i,
                last_seq: i,
                data: format!("[[{i}]]"),
            })
            .collect();
        let events = (0..5u64)
            .map(|seq| PublishedRecord {
                run_id: Arc::clone(&one),
                seq,
                event: format!("{{\"type\":\"E\",\"value\":{seq}}}"),
            })
            .collect();
        let batch = WriteBatch {
            runs,
            entries,
            events,
            states: vec![(Arc::clone(&one), "{\"n\":1}".into())],
            ..WriteBatch::default()
        };
        store.write(&batch).await.unwrap();
        let update = |i: usize, status| StatusUpdate {
            run_id: format!("run-{i:03}").into(),
            status,
            result: None,
            error: None,
            at_ms: 99,
        };
        let batch = WriteBatch {
            statuses: vec![update(0, RunStatus::Completed), update(2, RunStatus::Failed)],
            ..WriteBatch::default()
        };
        store.write(&batch).await.unwrap();

        let all = store.runs(RunFilter::default()).await.unwrap();
        let statuses: Vec<_> = all.iter().map(|r| (r.run_id.as_str(), r.status)).collect();
        assert_eq!(
            statuses,
            [
                ("run-000", RunStatus::Completed),
                ("run-001", RunStatus::Running),
                ("run-002", RunStatus::Failed)
            ]
        );
        let rows = store.entries("run-000", 0).await.unwrap();
        assert_eq!(rows.len(), 300);
        assert!(rows.iter().enumerate().all(|(i, row)| row.first_seq == i as u64));
        let seqs: Vec<u64> = store
            .events("run-000", 0)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4]);
        assert_eq!(store.state("run-000").await.unwrap().as_deref(), Some("{\"n\":1}"));
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM journal")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(count, 300, "no padding row was written");
    }

    #[test]
    fn statement_texts_have_one_row_of_placeholders_per_padded_row() {
        let entries = statements(Table::Entries);
        assert_eq!(entries.columns, 4);
        for rows in [1, 2, 64, ROWS_PER_STATEMENT] {
            assert_eq!(entries.text(rows).matches('?').count(), rows * 4);
        }
        assert_eq!(padded(3), 4);
        assert_eq!(padded(44), 64);
    }
}
