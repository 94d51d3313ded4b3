//! The demo catalogue the development set-up loads: a few SKUs showing each
//! setting (allocations and safety stock included). SKUs that exist already are left as they are, so loading twice
//! does not reset stock.

use crate::domain::{PutSkuRequest, Setting, Sku};
use crate::service::Stock;
use chrono::{Duration, Utc};

/// Creates the demo SKUs that do not exist yet; returns how many it created.
pub async fn load(stock: &Stock) -> anyhow::Result<usize> {
    let next_week = Utc::now() + Duration::days(7);
    let catalogue: [(&str, i64, i64, Setting<i64>, Setting<_>); 6] = [
        ("TSHIRT-RED-M", 120, 0, Setting::Keep, Setting::Keep),
        ("TSHIRT-BLUE-L", 80, 0, Setting::Keep, Setting::Keep),
        ("MUG-LOGO", 500, 0, Setting::Keep, Setting::Keep),
        ("SNEAKER-LTD-42", 100, 0, Setting::Set(2), Setting::Keep),
        ("BOOK-PREORDER", 0, 50, Setting::Keep, Setting::Keep),
        (
            "CONSOLE-1212",
            100,
            0,
            Setting::Set(1),
            Setting::Set(next_week),
        ),
    ];
    let mut created = 0;
    for (name, on_hand, backorder_limit, per_customer_limit, sale_starts_at) in catalogue {
        let sku = Sku::parse(name).map_err(anyhow::Error::msg)?;
        if stock.engine.sku(&sku).await?.is_some() {
            continue;
        }
        // The limited sneaker keeps 20 pairs for the phone line and 5 back.
        let pools = name == "SNEAKER-LTD-42";
        let req = PutSkuRequest {
            buckets: None,
            on_hand: Some(on_hand),
            backorder_limit: Some(backorder_limit),
            per_customer_limit,
            sale_starts_at,
            safety_stock: pools.then_some(5),
            allocations: pools.then(|| vec![("callcentre".to_owned(), 20)]),
            // Told as sku.low_stock when 10 or fewer are left to hold.
            low_stock: if pools {
                crate::domain::Setting::Set(10)
            } else {
                crate::domain::Setting::Keep
            },
        };
        if stock.put_sku(&sku, &req).await?.created {
            created += 1;
        }
    }
    Ok(created)
}
