//! The Lua scripts of `lua/`, each loaded with the shared helpers of
//! `lua/common.lua` in front. Called with EVALSHA (the redis crate loads a
//! script again when Redis answers NOSCRIPT).

use redis::Script;

const COMMON: &str = include_str!("../../lua/common.lua");

/// `body` as a function run after the helpers, then (with `events`) the
/// events it noted written (`flush_events` in common.lua), whichever
/// `return` ends it.
fn with_common(body: &str, events: bool) -> Script {
    Script::new(&script_source(body, events))
}

/// The source Redis runs for script `body` of lua/ (other than the few
/// loaded alone: lease.lua, mark_ready.lua, tally.lua), as `with_common` makes it.
pub fn script_source(body: &str, events: bool) -> String {
    let flush = if events { "flush_events()" } else { "" };
    format!(
        "{COMMON}\nlocal function main()\n{body}\nend\nlocal out = main()\n{flush}\nreturn out\n"
    )
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
    pub trim_events: Script,
    pub tally: Script,
}

impl Scripts {
    /// The scripts; with `events`, those that change stock write events.
    pub fn load(events: bool) -> Self {
        Scripts {
            reserve: with_common(include_str!("../../lua/reserve.lua"), events),
            patch: with_common(include_str!("../../lua/patch.lua"), events),
            commit: with_common(include_str!("../../lua/commit.lua"), events),
            release: with_common(include_str!("../../lua/release.lua"), events),
            expire: with_common(include_str!("../../lua/expire.lua"), events),
            get_hold: with_common(include_str!("../../lua/get_hold.lua"), events),
            put_sku: with_common(include_str!("../../lua/put_sku.lua"), events),
            read_sku: with_common(include_str!("../../lua/read_sku.lua"), events),
            reconcile: with_common(include_str!("../../lua/reconcile.lua"), events),
            watch: with_common(include_str!("../../lua/watch.lua"), events),
            adjust: with_common(include_str!("../../lua/adjust.lua"), events),
            restock: with_common(include_str!("../../lua/restock.lua"), events),
            settle: with_common(include_str!("../../lua/settle.lua"), events),
            set_customer_counts: with_common(
                include_str!("../../lua/set_customer_counts.lua"),
                events,
            ),
            lease: Script::new(include_str!("../../lua/lease.lua")),
            mark_ready: Script::new(include_str!("../../lua/mark_ready.lua")),
            stage: with_common(include_str!("../../lua/stage.lua"), events),
            finish_stage: with_common(include_str!("../../lua/finish_stage.lua"), events),
            commit_part: with_common(include_str!("../../lua/commit_part.lua"), events),
            end_part: with_common(include_str!("../../lua/end_part.lua"), events),
            bucket: with_common(include_str!("../../lua/bucket.lua"), events),
            transfer: with_common(include_str!("../../lua/transfer.lua"), events),
            trim_events: with_common(include_str!("../../lua/trim_events.lua"), events),
            tally: Script::new(include_str!("../../lua/tally.lua")),
        }
    }
}
