//! Where runs are kept: a SQLite file (the default, `--db`), or the store
//! the embedding binary gave with [`Cli::store`](crate::Cli::store). The
//! only file of the CLI that names a store type.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stepwise::store::{JournalStore, StoreError};
use stepwise::{Journal, JournalConfig};

use crate::{failed, usage, Failure};

/// The runs' home for one command.
#[derive(Clone)]
pub(crate) enum Storage {
    /// A SQLite file, created by the first journaled run.
    File(PathBuf),
    /// A store given by the embedding binary.
    Given(Arc<dyn JournalStore>),
}

impl Storage {
    /// How messages name it.
    pub(crate) fn describe(&self) -> String {
        match self {
            Storage::File(path) => path.display().to_string(),
            Storage::Given(_) => "the tool's store".to_owned(),
        }
    }

    /// False only for a database file not made yet (read commands then say
    /// so instead of creating an empty one).
    pub(crate) fn exists(&self) -> bool {
        match self {
            Storage::File(path) => path.exists(),
            Storage::Given(_) => true,
        }
    }

    /// Opens it for a command that writes (`run`, `resume`), creating the
    /// database file if needed.
    pub(crate) async fn open(&self) -> Result<Journal, Failure> {
        self.journal(false).await
    }

    /// Opens it for a command that only reads (`runs`, `show`): a file
    /// read-write when it can be (so an older schema is upgraded), else
    /// read-only — a read-only file or directory can still be inspected.
    pub(crate) async fn open_to_read(&self) -> Result<Journal, Failure> {
        self.journal(true).await
    }

    async fn journal(&self, read_only_fallback: bool) -> Result<Journal, Failure> {
        match self {
            Storage::Given(store) => Ok(Journal::from_arc(Arc::clone(store), JournalConfig::default())),
            Storage::File(path) => sqlite(path, read_only_fallback)
                .await
                .map(|store| Journal::from_arc(store, JournalConfig::default()))
                .map_err(|error| store_failure(path, error)),
        }
    }
}

/// Opens the SQLite file. Every mention of the SQLite store type is in this
/// function, so moving the store to another crate changes one line.
async fn sqlite(path: &Path, read_only_fallback: bool) -> Result<Arc<dyn JournalStore>, StoreError> {
    use stepwise_sqlite::SqliteStore;
    match SqliteStore::open(path).await {
        Ok(store) => Ok(Arc::new(store)),
        Err(error @ StoreError::NotADatabase { .. }) => Err(error),
        Err(_) if read_only_fallback => Ok(Arc::new(SqliteStore::open_read_only(path).await?)),
        Err(error) => Err(error),
    }
}

/// A database that could not be opened: a file that is not one is bad
/// input (exit 2), anything else a failure (exit 1).
fn store_failure(path: &Path, error: StoreError) -> Failure {
    match error {
        StoreError::NotADatabase { .. } => usage(error.to_string()),
        other => failed(format!("{}: {other}", path.display())),
    }
}
