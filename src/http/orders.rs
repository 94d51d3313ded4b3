//! Orders and returns.

use super::auth::{Admin, Caller};
use super::body::JsonBody;
use super::error::ApiError;
use super::views::OrderView;
use crate::domain::{Limits, OrderId, ReturnRequest};
use crate::service::Stock;
use actix_web::{web, HttpResponse};

/// Registers the order routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/orders/{order_id}", "GET").route(web::get().to(get_order)))
        .service(
            super::resource("/orders/{order_id}/returns", "POST")
                .route(web::post().to(return_order)),
        );
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

#[tracing::instrument(skip_all, fields(order = %path))]
async fn return_order(
    _admin: Admin,
    stock: web::Data<Stock>,
    limits: web::Data<Limits>,
    path: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let order_id = OrderId::parse(&path).map_err(|_| ApiError::NotFound("order"))?;
    let req = ReturnRequest::parse(&body.required()?, &limits).map_err(ApiError::Validation)?;
    let (order, fresh) = stock.return_order(&order_id, &req).await?;
    let view = OrderView::from(&order);
    Ok(if fresh {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
}
