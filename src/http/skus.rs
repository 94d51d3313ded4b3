//! SKU set-up, SKU views and availability.

use super::auth::Caller;
use super::body::JsonBody;
use super::error::ApiError;
use super::views::{AvailabilityItem, AvailabilityView, SkuJson};
use crate::domain::{FieldError, PutSkuRequest, Role, Sku};
use crate::service::Stock;
use actix_web::{web, HttpRequest, HttpResponse};

/// Most SKUs one availability call may ask for.
const MAX_AVAILABILITY_SKUS: usize = 500;

/// Registers the SKU routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        super::resource("/skus/{sku}")
            .route(web::put().to(put_sku))
            .route(web::get().to(get_sku)),
    )
    .service(super::resource("/availability").route(web::get().to(availability)));
}

#[tracing::instrument(skip_all, fields(sku = %path))]
async fn put_sku(
    caller: Caller,
    stock: web::Data<Stock>,
    path: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let sku = Sku::parse(&path);
    let req = PutSkuRequest::parse(&body.required()?);
    let (sku, req) = match (sku, req) {
        (Ok(sku), Ok(req)) => (sku, req),
        (sku, req) => {
            let mut errors = sku
                .err()
                .map(|m| vec![FieldError::new("sku", m)])
                .unwrap_or_default();
            errors.extend(req.err().unwrap_or_default());
            return Err(ApiError::Validation(errors));
        }
    };
    let put = stock.put_sku(&sku, &req).await?;
    let view = SkuJson::from(&put.view);
    Ok(if put.created {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
}

async fn get_sku(
    _caller: Caller,
    stock: web::Data<Stock>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let sku = Sku::parse(&path).map_err(|_| ApiError::NotFound("SKU"))?;
    let view = stock
        .engine
        .sku(&sku)
        .await?
        .ok_or(ApiError::NotFound("SKU"))?;
    Ok(HttpResponse::Ok().json(SkuJson::from(&view)))
}

async fn availability(
    _caller: Caller,
    stock: web::Data<Stock>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut skus = Vec::new();
    let mut errors = Vec::new();
    for (name, value) in form_urlencoded::parse(req.query_string().as_bytes()) {
        if name != "sku" {
            errors.push(FieldError::new(name.as_ref(), "is not a known parameter"));
            continue;
        }
        match Sku::parse(&value) {
            Ok(sku) => skus.push(sku),
            Err(m) => errors.push(FieldError::new(
                format!("sku[{}]", skus.len() + errors.len()),
                m,
            )),
        }
    }
    let asked = skus.len()
        + errors
            .iter()
            .filter(|e| e.field.starts_with("sku["))
            .count();
    if asked == 0 {
        errors.push(FieldError::new(
            "sku",
            "name at least one SKU: ?sku=A&sku=B",
        ));
    } else if asked > MAX_AVAILABILITY_SKUS {
        errors.push(FieldError::new(
            "sku",
            format!("at most {MAX_AVAILABILITY_SKUS} SKUs per call, not {asked}"),
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let available = stock.engine.availability(&skus).await?;
    let items = skus
        .iter()
        .zip(available)
        .map(|(sku, available)| {
            let available = available.unwrap_or(0);
            AvailabilityItem {
                sku: sku.to_string(),
                available,
                in_stock: available > 0,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(AvailabilityView { items }))
}
