//! The queue side of the daemon: the Redis job store, ingest from the submit stream, the reconciler.

pub mod backend;
pub mod ingest;
pub mod store;

pub use store::{Claim, JobStore};
