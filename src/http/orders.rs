//! Orders.

use super::auth::Caller;
use super::error::ApiError;
use super::views::OrderView;
use crate::domain::OrderId;
use crate::service::Stock;
use actix_web::{web, HttpResponse};

/// Registers the order routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/orders/{order_id}").route(web::get().to(get_order)));
}

async fn get_order(
    _caller: Caller,
    stock: web::Data<Stock>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let order_id = OrderId::parse(&path).map_err(|_| ApiError::NotFound("order"))?;
    let order = stock
        .order(&order_id)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    Ok(HttpResponse::Ok().json(OrderView::from(&order)))
}
