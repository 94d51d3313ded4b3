//! API keys: looked up by their SHA-256, never held in clear text.

use super::error::ApiError;
use crate::configuration::{hash_key, AuthSettings};
use crate::domain::Role;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use std::collections::HashMap;
use std::future::{ready, Ready};

/// The configured keys, by hash.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    by_hash: HashMap<String, (String, Role)>,
}

impl ApiKeys {
    /// The keys of `settings`.
    pub fn new(settings: &AuthSettings) -> Self {
        ApiKeys {
            by_hash: settings
                .keys
                .iter()
                .map(|k| (k.sha256.to_ascii_lowercase(), (k.name.clone(), k.role)))
                .collect(),
        }
    }

    /// The caller a bearer token identifies, if any.
    pub fn identify(&self, token: &str) -> Option<Caller> {
        let hash = hash_key(token);
        let (name, role) = self.by_hash.get(&hash)?;
        Some(Caller {
            name: name.clone(),
            role: *role,
            id: hash[..32].to_owned(),
        })
    }

    /// The caller of `req`, if it sent a known key.
    pub fn caller_of(&self, req: &HttpRequest) -> Option<Caller> {
        let header = req.headers().get(actix_web::http::header::AUTHORIZATION)?;
        let token = header.to_str().ok()?.strip_prefix("Bearer ")?.trim();
        self.identify(token)
    }
}

/// Who is calling: a known key's name and role.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's configured name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// A stable id of the key (part of its hash), scoping idempotency keys.
    pub id: String,
}

impl Caller {
    /// Refuses with 403 unless the caller's role includes `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role.includes(role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(role))
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let keys = req.app_data::<web::Data<ApiKeys>>();
        ready(
            keys.and_then(|k| k.caller_of(req))
                .ok_or(ApiError::Unauthorized),
        )
    }
}

/// A caller whose key has the admin role; 401 or 403 otherwise. Put it
/// first among a handler's arguments so the role is checked before the
/// body is read.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        ready(
            Caller::from_request(req, payload)
                .into_inner()
                .and_then(|caller| {
                    caller.require(Role::Admin)?;
                    Ok(Admin(caller))
                }),
        )
    }
}
