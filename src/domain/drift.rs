//! Drift: live counts that differ from what the ledger and the live holds
//! say they must be.

use super::Sku;

/// What reconciliation does with the drift it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileMode {
    /// Report only.
    Check,
    /// Set drifted counts to the expected values.
    Repair,
    /// Repair, and restore SKUs missing from Redis with their settings.
    Rebuild,
}

impl ReconcileMode {
    /// The engine's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ReconcileMode::Check => "check",
            ReconcileMode::Repair => "repair",
            ReconcileMode::Rebuild => "rebuild",
        }
    }
}

/// One SKU (or one channel's allocation of it) whose live counts are not
/// what they must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// The SKU.
    pub sku: Sku,
    /// The channel, when the counts are of its allocation of the SKU (its
    /// share as on_hand, the units held from it as held); `None` for the
    /// SKU's own counts (its shared pool's held).
    pub pool: Option<String>,
    /// `on_hand` the ledger and unpersisted outbox entries give.
    pub expected_on_hand: i64,
    /// `held` the live holds give.
    pub expected_held: i64,
    /// `on_hand` in Redis; `None` when the SKU is missing there.
    pub actual_on_hand: Option<i64>,
    /// `held` in Redis.
    pub actual_held: i64,
}

impl Drift {
    /// The ledger account drifted: the SKU, or its allocation's.
    pub fn account(&self) -> String {
        match &self.pool {
            Some(channel) => super::pool_account(&self.sku, channel),
            None => self.sku.to_string(),
        }
    }
}
