//! The Lua scripts of `lua/`, each loaded with the shared helpers of
//! `lua/common.lua` in front. Called with EVALSHA (the redis crate loads a
//! script again when Redis answers NOSCRIPT).

use redis::Script;

const COMMON: &str = include_str!("../../lua/common.lua");

fn with_common(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

/// Every script, loaded once per engine.
pub(crate) struct Scripts {
    pub reserve: Script,
    pub patch: Script,
    pub commit: Script,
    pub release: Script,
    pub expire: Script,
    pub get_hold: Script,
    pub put_sku: Script,
    pub read_sku: Script,
    pub reconcile: Script,
    pub watch: Script,
    pub adjust: Script,
    pub restock: Script,
    pub settle: Script,
    pub set_customer_counts: Script,
    pub lease: Script,
    pub mark_ready: Script,
    pub stage: Script,
    pub finish_stage: Script,
    pub commit_part: Script,
    pub end_part: Script,
    pub bucket: Script,
    pub transfer: Script,
}

impl Scripts {
    pub fn load() -> Self {
        Scripts {
            reserve: with_common(include_str!("../../lua/reserve.lua")),
            patch: with_common(include_str!("../../lua/patch.lua")),
            commit: with_common(include_str!("../../lua/commit.lua")),
            release: with_common(include_str!("../../lua/release.lua")),
            expire: with_common(include_str!("../../lua/expire.lua")),
            get_hold: with_common(include_str!("../../lua/get_hold.lua")),
            put_sku: with_common(include_str!("../../lua/put_sku.lua")),
            read_sku: with_common(include_str!("../../lua/read_sku.lua")),
            reconcile: with_common(include_str!("../../lua/reconcile.lua")),
            watch: with_common(include_str!("../../lua/watch.lua")),
            adjust: with_common(include_str!("../../lua/adjust.lua")),
            restock: with_common(include_str!("../../lua/restock.lua")),
            settle: with_common(include_str!("../../lua/settle.lua")),
            set_customer_counts: with_common(include_str!("../../lua/set_customer_counts.lua")),
            lease: Script::new(include_str!("../../lua/lease.lua")),
            mark_ready: Script::new(include_str!("../../lua/mark_ready.lua")),
            stage: with_common(include_str!("../../lua/stage.lua")),
            finish_stage: with_common(include_str!("../../lua/finish_stage.lua")),
            commit_part: with_common(include_str!("../../lua/commit_part.lua")),
            end_part: with_common(include_str!("../../lua/end_part.lua")),
            bucket: with_common(include_str!("../../lua/bucket.lua")),
            transfer: with_common(include_str!("../../lua/transfer.lua")),
        }
    }
}
