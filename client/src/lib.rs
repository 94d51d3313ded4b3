//! A typed async client for the stockhold HTTP API (the contract is
//! `shared/API.md`): one method per endpoint, serde types for every body, and
//! one [`Error`] that carries the service's problem+json answers with helpers
//! for each code's extra members.
//!
//! ```no_run
//! # async fn demo() -> Result<(), stockhold_client::Error> {
//! use stockhold_client::{Client, CommitRequest, Line, ReserveRequest};
//!
//! let client = Client::new("http://127.0.0.1:8080", "dev-storefront-key")?;
//! let basket = ReserveRequest::new(vec![Line::new("MUG-LOGO", 2)]).customer("c-123");
//! let held = match client.with_idempotency_key("basket-77").reserve(&basket).await {
//!     Ok(held) => held,
//!     Err(e) if e.is(stockhold_client::codes::INSUFFICIENT_STOCK) => {
//!         for s in e.shortages() {
//!             println!("{} wants {}, {} available", s.sku, s.requested, s.available);
//!         }
//!         return Ok(());
//!     }
//!     Err(e) => return Err(e),
//! };
//! let order = client.commit(&held.id, &CommitRequest::default()).await?.into_order();
//! println!("sold as {}", order.order_id);
//! # Ok(()) }
//! ```
//!
//! The crate also builds `stockhold-cc`, the call-centre command line
//! (`src/bin/stockhold-cc.rs`).
//!
//! # Layout
//!
//! - `client`: [`Client`], the connection settings and one method per endpoint.
//! - `types`: the request and response bodies of API.md.
//! - `error`: [`Error`], problem+json parsed, with accessors for shortages,
//!   field errors and the other extra members; [`codes`] names every code.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod error;
mod types;

pub use client::Client;
pub use error::{codes, Error};
pub use types::*;

/// The URL type [`Client::base_url`] returns (re-exported from reqwest).
pub use reqwest::Url;
