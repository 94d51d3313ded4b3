//! Orders over HTTP: reading back what a commit made.

use crate::helpers::*;
use reqwest::Method;
use serde_json::json;

/// The JSON body of `res`, asserting its status first.
use crate::helpers::body_of;

#[tokio::test]
async fn get_order_returns_the_committed_order_to_any_role() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.create_sku("B", 5).await;
    let reservation = app
        .reserve(json!({
            "lines": [ { "sku": "A", "qty": 2 }, { "sku": "B", "qty": 1 } ],
            "customer_id": "c-123", "channel": "web"
        }))
        .await;
    let id = body_of(reservation, 201).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let committed = app
        .commit(
            &id,
            json!({ "order_id": "ord-5521", "payment_ref": "psp-77" }),
        )
        .await;
    let committed = body_of(committed, 201).await;

    for key in [STOREFRONT, CALLCENTRE, ADMIN] {
        // Act
        let res = app
            .request(Method::GET, "/v1/orders/ord-5521", Some(key), None)
            .await;

        // Assert
        assert_eq!(body_of(res, 200).await, committed, "read with {key}");
    }
}

#[tokio::test]
async fn get_order_of_an_unknown_id_returns_404_not_found() {
    // Arrange
    let app = spawn_app().await;

    for order_id in ["ord-never-made", "ord_0190a1b2c3d4e5f6a7b8c9d0e1f2a3b4"] {
        // Act
        let res = app.get_order(order_id).await;

        // Assert
        assert_problem(res, 404, "not_found").await;
    }
}
