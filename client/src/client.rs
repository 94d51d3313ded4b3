//! [`Client`]: where the service is, which key to send, and one method per
//! endpoint of API.md.

use crate::types::*;
use crate::Error;
use reqwest::{Method, RequestBuilder, Url};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// The header API.md names for safe retries of mutations.
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// How long a call may take unless the caller brings its own HTTP client;
/// long enough for a 500-line basket on a busy service, short enough that a
/// dead one is noticed.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A stockhold API client. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    api_key: String,
    idempotency_key: Option<String>,
}

/// A successful answer, not yet decoded.
struct Reply {
    status: u16,
    body: bytes::Bytes,
}

impl Reply {
    fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|source| Error::Decode {
            status: self.status,
            source,
        })
    }
}

impl Client {
    /// A client for the service at `base_url` (e.g. `http://127.0.0.1:8080`)
    /// sending `api_key` as `Authorization: Bearer`, with a 30 s timeout.
    pub fn new(base_url: &str, api_key: impl Into<String>) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(DEFAULT_TIMEOUT)
            .build()
            .map_err(Error::Transport)?;
        Client::with_http_client(http, base_url, api_key)
    }

    /// A client that sends its calls through `http` (own timeouts, pool
    /// sizes, proxies).
    pub fn with_http_client(
        http: reqwest::Client,
        base_url: &str,
        api_key: impl Into<String>,
    ) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: base_url.to_owned(),
            reason: reason.to_owned(),
        };
        let base = Url::parse(base_url)
            .map_err(|e| invalid(&format!("{e}; expected e.g. http://127.0.0.1:8080")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(invalid("expected an http:// or https:// URL"));
        }
        Ok(Client {
            http,
            base,
            api_key: api_key.into(),
            idempotency_key: None,
        })
    }

    /// Where the service is.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The same client sending another API key (another role).
    pub fn with_api_key(&self, api_key: impl Into<String>) -> Client {
        Client {
            api_key: api_key.into(),
            ..self.clone()
        }
    }

    /// The same client sending `Idempotency-Key: key` with every POST, PATCH
    /// and DELETE: a repeat of the same call with the same key answers the
    /// first response and changes nothing.
    pub fn with_idempotency_key(&self, key: impl Into<String>) -> Client {
        Client {
            idempotency_key: Some(key.into()),
            ..self.clone()
        }
    }

    // ------------------------------------------------------------ SKUs

    /// `PUT /v1/skus/{sku}` (admin): creates the SKU (`created`) or changes it.
    pub async fn put_sku(&self, sku: &str, body: &PutSku) -> Result<Saved<SkuView>, Error> {
        let reply = self
            .call(self.v1(Method::PUT, &["skus", sku]).json(body))
            .await?;
        saved(reply)
    }

    /// `GET /v1/skus/{sku}`: live counts and settings.
    pub async fn sku(&self, sku: &str) -> Result<SkuView, Error> {
        self.call(self.v1(Method::GET, &["skus", sku]))
            .await?
            .json()
    }

    /// `GET /v1/availability?sku=…`: up to 500 SKUs, in the order asked; a
    /// SKU never set up reads as 0.
    pub async fn availability<S: AsRef<str>>(&self, skus: &[S]) -> Result<Availability, Error> {
        self.availability_on(skus, None).await
    }

    /// `GET /v1/availability?sku=…&channel=…`: what a reservation of
    /// `channel` may hold (the shared pool and the channel's allocation).
    pub async fn availability_on<S: AsRef<str>>(
        &self,
        skus: &[S],
        channel: Option<&str>,
    ) -> Result<Availability, Error> {
        let mut url = self.url(&["v1", "availability"]);
        url.query_pairs_mut()
            .extend_pairs(skus.iter().map(|s| ("sku", s.as_ref())));
        if let Some(channel) = channel {
            url.query_pairs_mut().append_pair("channel", channel);
        }
        self.call(self.authorized(Method::GET, url)).await?.json()
    }

    /// `POST /v1/skus/{sku}/adjustments` (admin): a relative change of
    /// `on_hand`; `created` is false for a repeated `adjustment_id`.
    pub async fn adjust(&self, sku: &str, body: &Adjustment) -> Result<Saved<SkuView>, Error> {
        let reply = self
            .call(
                self.v1(Method::POST, &["skus", sku, "adjustments"])
                    .json(body),
            )
            .await?;
        saved(reply)
    }

    /// `GET /v1/skus/{sku}/ledger` (admin): a page of history, newest first;
    /// pass the previous page's `next` as `before` for the next one.
    pub async fn ledger(
        &self,
        sku: &str,
        limit: Option<u32>,
        before: Option<&str>,
    ) -> Result<LedgerPage, Error> {
        let mut url = self.url(&["v1", "skus", sku, "ledger"]);
        {
            let mut query = url.query_pairs_mut();
            if let Some(limit) = limit {
                query.append_pair("limit", &limit.to_string());
            }
            if let Some(before) = before {
                query.append_pair("before", before);
            }
        }
        // An empty query would leave a bare `?`; harmless, but untidy in logs.
        if url.query() == Some("") {
            url.set_query(None);
        }
        self.call(self.authorized(Method::GET, url)).await?.json()
    }

    // ------------------------------------------------------------ reservations

    /// `POST /v1/reservations`: holds every line or nothing (with
    /// `allow_partial`, what is available, listed in `shortages`).
    pub async fn reserve(&self, body: &ReserveRequest) -> Result<Reservation, Error> {
        self.call(self.v1(Method::POST, &["reservations"]).json(body))
            .await?
            .json()
    }

    /// `GET /v1/reservations/{id}`.
    pub async fn reservation(&self, id: &str) -> Result<Reservation, Error> {
        self.call(self.v1(Method::GET, &["reservations", id]))
            .await?
            .json()
    }

    /// `PATCH /v1/reservations/{id}`: sets line quantities (0 removes) and/or
    /// restarts the TTL; all or nothing.
    pub async fn patch_reservation(
        &self,
        id: &str,
        body: &PatchReservation,
    ) -> Result<Reservation, Error> {
        self.call(self.v1(Method::PATCH, &["reservations", id]).json(body))
            .await?
            .json()
    }

    /// `POST /v1/reservations/{id}/commit`: the sale. The outcome tells a
    /// fresh persisted sale (201), one not yet in Postgres (202) and a
    /// repeat (200) apart.
    pub async fn commit(&self, id: &str, body: &CommitRequest) -> Result<CommitOutcome, Error> {
        let reply = self
            .call(
                self.v1(Method::POST, &["reservations", id, "commit"])
                    .json(body),
            )
            .await?;
        CommitOutcome::from_status(reply.status, reply.json()?)
    }

    /// `DELETE /v1/reservations/{id}`: releases the held units at once
    /// (status `released`, or `expired` if it ran out first).
    pub async fn release(&self, id: &str) -> Result<Reservation, Error> {
        self.call(self.v1(Method::DELETE, &["reservations", id]))
            .await?
            .json()
    }

    // ------------------------------------------------------------ orders

    /// `GET /v1/orders/{order_id}`.
    pub async fn order(&self, order_id: &str) -> Result<Order, Error> {
        self.call(self.v1(Method::GET, &["orders", order_id]))
            .await?
            .json()
    }

    /// `POST /v1/orders/{order_id}/returns` (admin): the order with updated
    /// `returned_qty`; `created` is false for a repeated `return_id`.
    pub async fn return_order(
        &self,
        order_id: &str,
        body: &ReturnRequest,
    ) -> Result<Saved<Order>, Error> {
        let reply = self
            .call(
                self.v1(Method::POST, &["orders", order_id, "returns"])
                    .json(body),
            )
            .await?;
        saved(reply)
    }

    // ------------------------------------------------------------ administration

    /// `POST /v1/admin/reconcile` (admin): drift of the live counts against
    /// the ledger, repaired with `repair: true`.
    pub async fn reconcile(&self, body: &ReconcileRequest) -> Result<ReconcileReport, Error> {
        self.call(self.v1(Method::POST, &["admin", "reconcile"]).json(body))
            .await?
            .json()
    }

    /// `GET /healthz`: `Ok` while the process runs.
    pub async fn healthz(&self) -> Result<(), Error> {
        let url = self.url(&["healthz"]);
        self.call(self.http.get(url)).await.map(drop)
    }

    /// `GET /readyz`: ready (200), or not yet with the reasons (503).
    pub async fn readyz(&self) -> Result<Readiness, Error> {
        let url = self.url(&["readyz"]);
        match self.call(self.http.get(url)).await {
            Ok(_) => Ok(Readiness {
                ready: true,
                reasons: Vec::new(),
            }),
            Err(Error::Problem {
                status: 503,
                detail,
                body,
                ..
            }) => {
                let reasons: Vec<String> = body
                    .get("reasons")
                    .and_then(|r| serde_json::from_value(r.clone()).ok())
                    .unwrap_or_else(|| vec![detail]);
                Ok(Readiness {
                    ready: false,
                    reasons,
                })
            }
            Err(e) => Err(e),
        }
    }

    // ------------------------------------------------------------ plumbing

    /// The base URL with `segments` appended, each percent-encoded (order
    /// ids may hold any printable character).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked in with_http_client: an http URL is a base")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// A `/v1/…` call with the API key (and the idempotency key, for
    /// mutations).
    fn v1(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        let mut path = Vec::with_capacity(segments.len() + 1);
        path.push("v1");
        path.extend_from_slice(segments);
        self.authorized(method, self.url(&path))
    }

    fn authorized(&self, method: Method, url: Url) -> RequestBuilder {
        let mutation = matches!(method, Method::POST | Method::PATCH | Method::DELETE);
        let mut request = self.http.request(method, url).bearer_auth(&self.api_key);
        if let (true, Some(key)) = (mutation, &self.idempotency_key) {
            request = request.header(IDEMPOTENCY_KEY, key);
        }
        request
    }

    /// Sends `request`; any non-2xx answer becomes an [`Error`].
    async fn call(&self, request: RequestBuilder) -> Result<Reply, Error> {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let body = response.bytes().await?;
        if (200..300).contains(&status) {
            Ok(Reply { status, body })
        } else {
            Err(Error::from_response(status, &body))
        }
    }
}

/// A `201` (made now) or `200` (made before) with its body.
fn saved<T: DeserializeOwned>(reply: Reply) -> Result<Saved<T>, Error> {
    Ok(Saved {
        created: reply.status == 201,
        value: reply.json()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_must_be_http() {
        assert!(Client::new("http://127.0.0.1:8080", "k").is_ok());
        assert!(Client::new("https://stock.example/api/", "k").is_ok());
        for bad in ["127.0.0.1:8080", "localhost:8080", "ftp://x/", "not a url"] {
            assert!(
                matches!(Client::new(bad, "k"), Err(Error::InvalidUrl { .. })),
                "{bad} was taken"
            );
        }
    }

    #[test]
    fn paths_are_appended_and_encoded() {
        let client = Client::new("http://h:1", "k").unwrap();
        assert_eq!(
            client.url(&["v1", "orders", "ord 1/a?b"]).as_str(),
            "http://h:1/v1/orders/ord%201%2Fa%3Fb"
        );
        let under = Client::new("http://h:1/stock/", "k").unwrap();
        assert_eq!(
            under.url(&["v1", "skus", "A:1"]).as_str(),
            "http://h:1/stock/v1/skus/A:1"
        );
    }

    #[test]
    fn the_idempotency_key_goes_only_on_mutations() {
        let client = Client::new("http://h:1", "k")
            .unwrap()
            .with_idempotency_key("once");
        let get = client.v1(Method::GET, &["skus", "A"]).build().unwrap();
        assert!(get.headers().get(IDEMPOTENCY_KEY).is_none());
        assert_eq!(get.headers()["authorization"], "Bearer k");
        let post = client.v1(Method::POST, &["reservations"]).build().unwrap();
        assert_eq!(post.headers()[IDEMPOTENCY_KEY], "once");
    }
}
