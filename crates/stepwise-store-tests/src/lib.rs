//! The checks every stepwise [`JournalStore`] must pass.
//!
//! A store is correct when the journal can trust it: a batch is written
//! whole or not at all, commits for runs the writer no longer holds are
//! fenced, claims decide ownership the way [`may_take`](stepwise::store::may_take)
//! says, reads from a cursor return rows in order, and run listings filter
//! and sort as promised. Each of those promises is one check in [`checks`];
//! [`store_conformance!`] turns them into one `#[test]` per check, named after
//! it, so a failing promise names itself in the test output.
//!
//! # Running the kit against a new store
//!
//! Add the crate as a dev-dependency and call the macro once per way of
//! making the store, with a closure that returns a future of a **fresh,
//! empty** store (each check gets its own):
//!
//! ```toml
//! [dev-dependencies]
//! stepwise-store-tests = "0.1"
//! ```
//!
//! ```ignore
//! // tests/conformance.rs of a store crate
//! mod in_memory {
//!     stepwise_store_tests::store_conformance!(|| async {
//!         my_store::MyStore::connect("…").await.unwrap()
//!     });
//! }
//! ```
//!
//! Each generated test builds its own multi-thread tokio runtime, so the
//! calling crate needs no tokio macros. Where one test is preferred, or the
//! store must be made inside an existing runtime, [`run_all`] runs every
//! check in turn and panics naming each one that failed:
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)] async fn main() {
//! use stepwise::store::MemoryStore;
//!
//! stepwise_store_tests::run_all(|| async { MemoryStore::new() }).await;
//! # }
//! ```
//!
//! The kit never skips a check: there is no feature to turn one off. A store
//! that cannot keep a promise fails its test and says which.
//!
//! # What is not here
//!
//! Checks that need to reach inside one store (damage a row with SQL, read a
//! file header) belong to that store's own tests. The engine's behaviour on
//! top of a store (resume, crashes at every commit, backpressure) is tested
//! in the engine on `MemoryStore`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;

use futures_util::FutureExt;
use stepwise::store::JournalStore;

pub mod checks;

/// Calls `$callback!($($args)* ; name, name, …)` with the name of every
/// check in [`checks`]: the one list the macro and [`run_all`] share.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_checks {
    ($callback:ident ! ($($args:tt)*)) => {
        $crate::$callback! { $($args)* ;
            a_batch_is_read_back_whole,
            reads_of_an_unknown_run_find_nothing,
            a_new_run_whose_id_is_in_use_fences_the_batch_and_nothing_is_written,
            a_stale_or_missing_epoch_fences_the_batch_and_nothing_is_written,
            entries_are_read_from_a_cursor_in_order,
            events_are_read_from_a_cursor_in_order,
            state_and_snapshot_keep_the_latest_per_run,
            status_updates_change_only_their_run,
            runs_are_listed_oldest_first_and_filtered,
            a_record_round_trips_every_field,
            a_batchs_owner_lease_renews_the_lease_its_runs_show,
            a_claim_bumps_the_epoch_and_fences_the_old_one,
            a_claim_on_a_run_under_a_live_lease_is_refused_until_it_expires,
            journaled_runs_keep_their_records_and_streams,
            long_runs_are_stored_in_bounded_rows_and_replay_exactly
        }
    };
}

/// Expands to one `#[test]` per check in [`checks`], each on a fresh store
/// from `$make` (a closure returning a future of the store). See the crate
/// docs.
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::__with_checks!(__conformance_tests!($make));
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($make:expr ; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                $crate::__private::run_one($make, $crate::checks::$check);
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __check_list {
    ($store:ty ; $($check:ident),* $(,)?) => {
        vec![$((
            stringify!($check),
            Box::new(|store: $store| Box::pin($crate::checks::$check(store)) as $crate::__private::CheckFuture)
                as Box<dyn FnOnce($store) -> $crate::__private::CheckFuture>,
        )),*]
    };
}

/// The names of every check, in the order they run.
pub fn check_names() -> Vec<&'static str> {
    __with_checks!(__check_list!(stepwise::store::MemoryStore))
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// Runs every check, each on a fresh store from `make`, inside the caller's
/// tokio runtime (multi-thread: some stores spawn tasks). Panics after the
/// last check if any failed, naming each.
pub async fn run_all<S, F, Fut>(make: F)
where
    S: JournalStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let mut failed = Vec::new();
    for (name, check) in __with_checks!(__check_list!(S)) {
        let store = make().await;
        if let Err(panic) = AssertUnwindSafe(check(store)).catch_unwind().await {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failed.push(format!("{name}: {why}"));
        }
    }
    assert!(failed.is_empty(), "store checks failed:\n{}", failed.join("\n"));
}

/// Used by [`store_conformance!`]; not a public API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    /// A check's future, boxed.
    pub type CheckFuture = Pin<Box<dyn Future<Output = ()>>>;

    /// One check on a fresh store, in a runtime of its own.
    pub fn run_one<S, F, Fut, C, CFut>(make: F, check: C)
    where
        S: JournalStore,
        F: FnOnce() -> Fut,
        Fut: Future<Output = S>,
        C: FnOnce(S) -> CFut,
        CFut: Future<Output = ()>,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async move { check(make().await).await });
    }
}
