//! The bottom layer: plain records every module may use and that use none of them — an op's record, status
//! and timings, the audit log's entries, an account's health around an op, an entity's reputation counters,
//! the pool's limits, and the leases an instance holds (its fence). The store persists them, the pool, the
//! bundler and the chain follower fill them in, metrics and the RPC face read them.

mod fence;
mod health;
mod limits;
mod op;
mod reputation;

pub use fence::{Fence, shard_of};
pub use health::{Health, HealthChange};
pub(crate) use limits::PoolLimits;
pub use op::{AuditEntry, OpEvent, OpRecord, OpStatus, Timings};
pub use reputation::ReputationEntry;
