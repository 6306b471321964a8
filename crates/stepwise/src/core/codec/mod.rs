//! A run as data (serde only), shared by journals, snapshots and traces:
//! journal entries and their replay, the compact entry writer, snapshots.

pub(crate) mod compact;
pub mod journal;
pub(crate) mod snapshot;
