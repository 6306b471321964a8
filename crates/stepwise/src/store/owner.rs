//! Run ownership: who may write a run, and how a dead owner is told from a
//! live one.
//!
//! Every [`Journal`](crate::Journal) is an [`Owner`] (a random id, plus the
//! host, process id and process start time that made it). A run is *claimed*
//! by one owner at a time: the store keeps the run's owner and an **epoch**
//! that grows with every claim, and refuses a commit whose epoch is not the
//! run's current one. So two processes can never both write a run, and a
//! paused process that lost its run to another cannot merge late writes.
//!
//! An owner holds a lease (renewed by its journal while it has live runs). A
//! claim takes a run from another owner only when that owner is gone:
//!
//! - in this process: its journal's writer has stopped (its runtime shut
//!   down), known exactly;
//! - on this host: its process no longer exists (or its id was reused by a
//!   later process), read from `/proc` on Linux;
//! - elsewhere: its lease has expired.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The identity of one journal: the runs it claims carry it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    /// A random id, unique per journal.
    pub id: String,
    /// The host name of the process.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// The process start time (clock ticks since boot on Linux; 0 where
    /// unknown), so a reused process id is not taken for the old process.
    pub started: u64,
}

/// An owner with its lease, as stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OwnerLease {
    /// Who.
    pub owner: Owner,
    /// Until when the lease holds (Unix ms). A live process renews it.
    pub until_ms: i64,
}

/// A request to take a run.
#[derive(Clone, Debug)]
pub struct Claim {
    /// The run.
    pub run_id: String,
    /// The claimant, with the lease it asks for.
    pub lease: OwnerLease,
}

/// How long a journal's lease holds unless renewed (renewed every third of
/// it while the journal has live runs).
pub const LEASE: Duration = Duration::from_secs(30);

impl Owner {
    /// A new owner for this process (a fresh random id each call).
    pub fn this_process() -> Self {
        let (pid, started) = process_identity();
        Owner {
            id: random_id(),
            host: host_name(),
            pid,
            started,
        }
    }

    /// Whether this owner still exists: `Some(true)` / `Some(false)` when it
    /// can be known (same process or same host), `None` when only its lease
    /// can tell.
    pub fn is_alive(&self) -> Option<bool> {
        let (pid, started) = process_identity();
        if self.host != host_name() {
            return None;
        }
        if self.pid == pid && self.started == started {
            return Some(
                live_owners()
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&self.id),
            );
        }
        if self.started == 0 {
            return None;
        }
        match process_start(self.pid) {
            Some(start) => Some(start == self.started),
            // No such process (or no /proc here: only the lease can tell).
            None if std::path::Path::new("/proc/self/stat").exists() => Some(false),
            None => None,
        }
    }

    /// True when the owner lives in this process.
    pub fn is_this_process(&self) -> bool {
        let (pid, started) = process_identity();
        self.host == host_name() && self.pid == pid && self.started == started
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short: String = self.id.chars().take(8).collect();
        write!(f, "process {} on {} (journal {short})", self.pid, self.host)
    }
}

/// Decides a claim: `Ok(())` when `claimant` may take a run held by `holder`
/// (nobody, itself, or an owner that is gone), otherwise the reason. Every
/// store makes the same decision, inside the transaction that takes the run.
pub fn may_take(holder: Option<&OwnerLease>, claimant: &Owner, now_ms: i64) -> Result<(), String> {
    let Some(holder) = holder else { return Ok(()) };
    if holder.owner.id == claimant.id {
        return Ok(());
    }
    let alive = match holder.owner.is_alive() {
        Some(alive) => alive,
        None => holder.until_ms > now_ms,
    };
    if alive {
        Err(format!("it is held by {}", holder.owner))
    } else {
        Ok(())
    }
}

/// Owners whose journal writer is running in this process.
fn live_owners() -> &'static Mutex<HashSet<String>> {
    static LIVE: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    LIVE.get_or_init(Mutex::default)
}

/// Marks an owner of this process live until the guard drops (the journal's
/// writer task holds it, so a runtime shutting down releases its runs).
pub(crate) struct LiveOwner(String);

impl LiveOwner {
    pub(crate) fn new(owner: &Owner) -> Self {
        live_owners()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(owner.id.clone());
        LiveOwner(owner.id.clone())
    }
}

impl Drop for LiveOwner {
    fn drop(&mut self) {
        live_owners().lock().unwrap_or_else(|p| p.into_inner()).remove(&self.0);
    }
}

fn process_identity() -> (u32, u64) {
    static IDENTITY: OnceLock<(u32, u64)> = OnceLock::new();
    *IDENTITY.get_or_init(|| {
        let pid = std::process::id();
        (pid, process_start(pid).unwrap_or(0))
    })
}

/// A process's start time in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`), or `None` when there is no such process (or no /proc).
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

fn host_name() -> String {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    })
    .clone()
}

/// 16 hex digits from the std hasher's random keys, the time and a counter.
fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_only_while_its_guard_lives() {
        let owner = Owner::this_process();
        assert_eq!(owner.is_alive(), Some(false), "not registered yet");
        let guard = LiveOwner::new(&owner);
        assert_eq!(owner.is_alive(), Some(true));
        assert!(may_take(
            Some(&OwnerLease {
                owner: owner.clone(),
                until_ms: i64::MAX
            }),
            &Owner::this_process(),
            0
        )
        .is_err());
        drop(guard);
        assert_eq!(owner.is_alive(), Some(false));
    }

    #[test]
    fn a_dead_process_on_this_host_is_gone_and_a_remote_one_has_its_lease() {
        let mut dead = Owner::this_process();
        dead.pid = u32::MAX - 1; // no such process
        if std::path::Path::new("/proc/self/stat").exists() {
            assert_eq!(dead.is_alive(), Some(false));
        }
        let mut remote = Owner::this_process();
        remote.host = "elsewhere.invalid".into();
        assert_eq!(remote.is_alive(), None);
        let me = Owner::this_process();
        let lease = |until_ms| OwnerLease {
            owner: remote.clone(),
            until_ms,
        };
        assert!(may_take(Some(&lease(2_000)), &me, 1_000).is_err(), "lease not expired");
        assert!(may_take(Some(&lease(500)), &me, 1_000).is_ok(), "lease expired");
        assert!(may_take(None, &me, 0).is_ok());
    }

    #[test]
    fn ids_differ() {
        assert_ne!(Owner::this_process().id, Owner::this_process().id);
    }
}
