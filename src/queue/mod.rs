//! The job store and what works on it: the Redis store with its due and lease indexes
//! (`store`), its apalis backend (`backend`), the verdict a handler ends a claim with ([`Next`]),
//! the reconciler that re-queues a post with no queue entry (`reconcile`), the release of posts a
//! posting block held (`release`), and the worker identity
//! that keeps lease owners unique (`identity`).

pub(crate) mod backend;
pub(crate) mod identity;
pub(crate) mod reconcile;
pub mod release;
mod store;

pub use backend::{BackendSettings, RedisBackend};
pub use identity::reclaim_own;
pub use reconcile::reconcile_once;
pub use store::{Claim, JobStore};

/// What to do with a claim when the handler returns. Defined with the store, which ends the claim
/// with it; the worker produces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing more to do (the post is settled, or gone).
    Done,
    /// Work on it again at this time (ms since the epoch).
    At(i64),
}
