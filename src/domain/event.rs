//! Stock events: what happened to holds and SKUs, as the scripts that made
//! it happen wrote it to their partition's `events` stream
//! (`flush_events` in lua/common.lua), and the position of a reader in
//! those streams.

use super::{Partition, Partitions, StreamId};
use std::fmt;
use std::str::FromStr;

/// The kinds of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    HoldCreated,
    HoldChanged,
    HoldCommitted,
    HoldReleased,
    HoldExpired,
    SkuOutOfStock,
    SkuBackInStock,
    SkuLowStock,
    SkuAdjusted,
    DriftFound,
    DriftRepaired,
}

impl EventKind {
    /// Every kind, in the order the API lists them.
    pub const ALL: [EventKind; 11] = [
        EventKind::HoldCreated,
        EventKind::HoldChanged,
        EventKind::HoldCommitted,
        EventKind::HoldReleased,
        EventKind::HoldExpired,
        EventKind::SkuOutOfStock,
        EventKind::SkuBackInStock,
        EventKind::SkuLowStock,
        EventKind::SkuAdjusted,
        EventKind::DriftFound,
        EventKind::DriftRepaired,
    ];

    /// The kind's name, as events carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::HoldCreated => "hold.created",
            EventKind::HoldChanged => "hold.changed",
            EventKind::HoldCommitted => "hold.committed",
            EventKind::HoldReleased => "hold.released",
            EventKind::HoldExpired => "hold.expired",
            EventKind::SkuOutOfStock => "sku.out_of_stock",
            EventKind::SkuBackInStock => "sku.back_in_stock",
            EventKind::SkuLowStock => "sku.low_stock",
            EventKind::SkuAdjusted => "sku.adjusted",
            EventKind::DriftFound => "drift.found",
            EventKind::DriftRepaired => "drift.repaired",
        }
    }

    /// Whether it is one of the `sku.*` kinds (the ones a storefront key
    /// may read).
    pub fn is_sku(self) -> bool {
        self.as_str().starts_with("sku.")
    }
}

impl FromStr for EventKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown event type {s:?}"))
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of a hold event: the units of a SKU, and what is available of
/// the SKU right after (None for a SKU spread over buckets: no partition
/// has its whole count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLine {
    pub sku: String,
    pub quantity: i64,
    pub available: Option<i64>,
}

/// What an event says, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventBody {
    /// `hold.*`: a hold (or, with `part`, the part of a basket over several
    /// partitions kept in this one) and its lines here.
    Hold {
        reservation_id: String,
        part: bool,
        customer_id: Option<String>,
        channel: Option<String>,
        expires_at_ms: Option<i64>,
        order_id: Option<String>,
        lines: Vec<EventLine>,
    },
    /// `sku.*`: a SKU's counts after the change.
    Sku {
        sku: String,
        available: Option<i64>,
        on_hand: Option<i64>,
        low_stock: Option<i64>,
        /// `sku.adjusted`: the change of on_hand, why (`adjustment`,
        /// `return`, `set`, `created`), its id and note.
        delta: Option<i64>,
        reason: Option<String>,
        reference: Option<String>,
        note: Option<String>,
    },
    /// `drift.*`: a count of a SKU (or of a channel's allocation of it,
    /// `pool`) that Redis had wrong, and what it should have been.
    Drift {
        sku: String,
        pool: Option<String>,
        expected_on_hand: i64,
        expected_held: i64,
        on_hand: Option<i64>,
        held: i64,
    },
}

/// An event, as read from its partition's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub partition: Partition,
    /// Its entry in the partition's stream.
    pub stream_id: StreamId,
    pub kind: EventKind,
    /// When it happened (Redis time), in ms.
    pub at_ms: i64,
    pub body: EventBody,
}

impl Event {
    /// The event's id, unique and stable: `<partition>-<stream id>`.
    pub fn id(&self) -> String {
        format!("{}-{}", self.partition.name(), self.stream_id)
    }

    /// The SKUs it is about.
    pub fn skus(&self) -> Vec<&str> {
        match &self.body {
            EventBody::Hold { lines, .. } => lines.iter().map(|l| l.sku.as_str()).collect(),
            EventBody::Sku { sku, .. } | EventBody::Drift { sku, .. } => vec![sku.as_str()],
        }
    }
}

/// Where a reader of every partition's events stands: the last stream id it
/// has seen in each (`0-0`: none). As text (the SSE `id`, sent back as
/// `Last-Event-ID`), the ids in partition order joined by `.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPosition(pub Vec<StreamId>);

impl EventPosition {
    /// Before every event of `partitions`.
    pub fn start(partitions: Partitions) -> Self {
        EventPosition(vec![
            StreamId { ms: 0, seq: 0 };
            partitions.count() as usize
        ])
    }

    /// Parses a position of a deployment with `partitions`.
    pub fn parse(s: &str, partitions: Partitions) -> Result<Self, String> {
        let ids = s
            .split('.')
            .map(StreamId::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| format!("not an event id of this service: {s:?}"))?;
        if ids.len() != partitions.count() as usize {
            return Err(format!(
                "not an event id of this service: {s:?} (it names {} partitions, the service has {})",
                ids.len(),
                partitions.count()
            ));
        }
        Ok(EventPosition(ids))
    }

    /// Whether `event` comes after this position.
    pub fn is_before(&self, event: &Event) -> bool {
        event.stream_id > self.0[event.partition.0 as usize]
    }

    /// Moves past `event`.
    pub fn advance(&mut self, event: &Event) {
        let at = &mut self.0[event.partition.0 as usize];
        if event.stream_id > *at {
            *at = event.stream_id;
        }
    }
}

impl fmt::Display for EventPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, id) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{id}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_reads_back_what_it_wrote() {
        let partitions = Partitions::new(3);
        let p = EventPosition::parse("5-1.0-0.17-3", partitions).unwrap();
        assert_eq!(p.to_string(), "5-1.0-0.17-3");
        assert!(EventPosition::parse("5-1.0-0", partitions).is_err());
        assert!(EventPosition::parse("x.0-0.0-0", partitions).is_err());
        assert!(EventPosition::parse("5--3.0-0.0-0", partitions).is_err());
        assert!(EventPosition::parse("-5-3.0-0.0-0", partitions).is_err());
        assert_eq!(EventPosition::start(partitions).to_string(), "0-0.0-0.0-0");
    }

    #[test]
    fn kinds_read_back_their_names() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>(), Ok(k));
        }
        assert!("hold.made".parse::<EventKind>().is_err());
    }
}
