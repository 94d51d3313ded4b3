//! The parsed types of stockhold and the rules about them. Nothing here does
//! I/O: the engine, the ledger and the HTTP layer all speak these types.

mod drift;
mod event;
mod order;
mod outbox;
mod partition;
mod rejection;
mod requests;
mod reservation;
mod role;
mod sku;
mod validation;
mod webhook;

pub use drift::{Drift, ReconcileMode};
pub use event::{Event, EventBody, EventKind, EventLine, EventPosition};
pub use order::{Order, OrderId, OrderLine};
pub use outbox::{
    pool_account, split_pool_account, AllocationChange, OutboxEntry, OutboxEvent, PoolLine,
    SkuSettings, SoldLine, StreamId,
};
pub use partition::{Partition, Partitions, MAX_PARTITIONS};
pub use rejection::{LimitBreach, PoolShort, Rejection, ReturnExcess};
pub use requests::{
    channel_name, AdjustmentRequest, CommitRequest, Limits, PatchRequest, PutSkuRequest,
    ReserveRequest, ReturnRequest, Setting,
};
pub use reservation::{Hold, HoldLine, HoldStatus, ReservationId, Shortage};
pub use role::Role;
pub use sku::{Allocation, Sku, SkuView, MAX_QTY};
pub use validation::FieldError;
pub use webhook::{new_secret, signature, Delivery, Webhook, WebhookRequest};
