//! Settings: `configuration/base.toml`, then the profile file chosen by
//! `STOCKHOLD_PROFILE` (`development` by default), then `STOCKHOLD_…`
//! environment variables (`STOCKHOLD_REDIS__URL`). Validated right after
//! loading, with messages that say what to fix.

use crate::domain::{Limits, Role};
use anyhow::{bail, Context};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// All of stockhold's settings.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// The HTTP listener.
    pub application: ApplicationSettings,
    /// The Redis the live counts live in.
    pub redis: RedisSettings,
    /// The Postgres the ledger lives in.
    pub database: DatabaseSettings,
    /// Request limits.
    pub limits: LimitsSettings,
    /// Background duties.
    pub reconciler: ReconcilerSettings,
    /// The stock events.
    pub events: EventsSettings,
    /// Delivering events to webhook subscriptions.
    pub webhooks: WebhookSettings,
    /// Logging.
    pub telemetry: TelemetrySettings,
    /// API keys.
    pub auth: AuthSettings,
    /// The profile the settings were loaded with.
    #[serde(skip, default = "Profile::default")]
    pub profile: Profile,
}

/// `[application]`.
#[derive(Debug, Clone, Deserialize)]
pub struct ApplicationSettings {
    /// Listen address.
    pub host: String,
    /// Listen port (0: any free port).
    pub port: u16,
    /// HTTP workers (0: one per core).
    pub workers: usize,
    /// Grace period for in-flight requests at shutdown.
    pub shutdown_timeout_seconds: u64,
    /// Connections the OS queues before they are accepted.
    pub backlog: i32,
    /// Most connections open at once, over all workers.
    pub max_connections: usize,
    /// How long a client may take to send a request's head.
    pub client_request_timeout_ms: u64,
}

/// `[redis]`.
#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    /// Connection URL.
    pub url: String,
    /// Prefix of every key.
    pub key_prefix: String,
    /// Shared (multiplexed) connections, used by all requests at once.
    pub connections: usize,
    /// How long one Redis call may take before the request gives up on it.
    pub call_timeout_ms: u64,
    /// Whether `url` lists the seed nodes of a Redis Cluster.
    pub cluster: bool,
    /// Partitions of the live state (SKU -> partition by a stable hash).
    pub partitions: u16,
}

/// `[database]`.
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// Connection URL.
    pub url: String,
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long to wait for a connection.
    pub acquire_timeout_ms: u64,
    /// Group commit: transactions recording commits at once.
    pub commit_writers: usize,
    /// Group commit: most commits recorded in one transaction.
    pub commit_batch: usize,
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
pub struct LimitsSettings {
    /// Most lines per request.
    pub max_lines: usize,
    /// TTL when none is asked for.
    pub default_ttl_seconds: i64,
    /// Storefront TTL ceiling.
    pub storefront_ttl_ceiling: i64,
    /// Call-centre TTL ceiling.
    pub callcentre_ttl_ceiling: i64,
    /// Most live hold records the holds listing of a SKU reads per partition.
    pub holds_scan: usize,
}

impl LimitsSettings {
    /// The limits requests are checked against.
    pub fn limits(&self) -> Limits {
        Limits {
            max_lines: self.max_lines,
            default_ttl_seconds: self.default_ttl_seconds,
            storefront_ttl_ceiling: self.storefront_ttl_ceiling,
            callcentre_ttl_ceiling: self.callcentre_ttl_ceiling,
            holds_scan: self.holds_scan,
        }
    }
}

/// `[reconciler]`.
#[derive(Debug, Clone, Deserialize)]
pub struct ReconcilerSettings {
    /// Reaper period.
    pub reaper_interval_ms: u64,
    /// Holds per reaper script call.
    pub reaper_batch: usize,
    /// Outbox drain period.
    pub drain_interval_ms: u64,
    /// Entries per drain batch.
    pub drain_batch: usize,
    /// How long persisted entries stay in the stream.
    pub outbox_retention_seconds: u64,
    /// Balancer period (hot-SKU buckets).
    pub balance_interval_ms: u64,
}

/// `[events]`.
#[derive(Debug, Clone, Deserialize)]
pub struct EventsSettings {
    /// Whether the scripts write events.
    pub enabled: bool,
    /// Events older than this are trimmed from the streams.
    pub retention_seconds: u64,
    /// Each partition keeps at most this many events.
    pub max_per_partition: usize,
    /// A comment goes to each SSE client this often when no event does.
    pub heartbeat_seconds: u64,
}

/// `[webhooks]`.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookSettings {
    /// How long a receiver has to answer one delivery.
    pub timeout_ms: u64,
    /// The longest wait between two attempts at a failing delivery.
    pub max_backoff_seconds: u64,
    /// A subscription whose every attempt failed for this long is paused.
    pub pause_after_seconds: u64,
    /// Delivery records are kept this long.
    pub delivery_retention_seconds: u64,
}

/// `[telemetry]`.
#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    /// `pretty` or `json`.
    pub format: String,
    /// Default log filter.
    pub filter: String,
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// Configured keys.
    pub keys: Vec<ApiKeySettings>,
    /// Whether the well-known development keys may be among them.
    pub allow_development_keys: bool,
}

/// One configured API key.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiKeySettings {
    /// A name for logs.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the key, hex.
    pub sha256: String,
}

/// The configuration profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Local development: readable logs, well-known keys.
    #[default]
    Development,
    /// Production: JSON logs, no development keys.
    Production,
}

impl Profile {
    fn from_env() -> anyhow::Result<Profile> {
        match std::env::var("STOCKHOLD_PROFILE").as_deref() {
            Err(_) | Ok("development") | Ok("local") => Ok(Profile::Development),
            Ok("production") => Ok(Profile::Production),
            Ok(other) => {
                bail!("STOCKHOLD_PROFILE={other:?} is not a profile: use development or production")
            }
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Profile::Development => "development",
            Profile::Production => "production",
        }
    }
}

/// The well-known development keys, named in the README.
pub const DEVELOPMENT_KEYS: [(&str, Role); 3] = [
    ("dev-storefront-key", Role::Storefront),
    ("dev-callcentre-key", Role::Callcentre),
    ("dev-admin-key", Role::Admin),
];

/// SHA-256 of an API key, hex: how keys are stored and looked up.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Loads and validates the settings.
pub fn get_configuration() -> anyhow::Result<Settings> {
    let profile = Profile::from_env()?;
    let dir = std::env::var_os("STOCKHOLD_CONFIG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configuration"));
    let dir = if dir.exists() {
        dir
    } else {
        PathBuf::from("configuration")
    };
    let mut settings: Settings = config::Config::builder()
        .add_source(config::File::from(dir.join("base.toml")))
        .add_source(config::File::from(
            dir.join(format!("{}.toml", profile.file_name())),
        ))
        .add_source(
            config::Environment::with_prefix("STOCKHOLD")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true),
        )
        .build()
        .and_then(|c| c.try_deserialize())
        .with_context(|| format!("reading configuration from {}", dir.display()))?;
    settings.profile = profile;
    settings.validate()?;
    Ok(settings)
}

impl Settings {
    /// Checks the settings hang together; the error says what to fix.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        let prefix = &self.redis.key_prefix;
        if prefix.is_empty() || prefix.contains(['{', '}']) || prefix.contains(char::is_whitespace)
        {
            problems.push(format!(
                "redis.key_prefix {prefix:?} must be non-empty, without braces or spaces"
            ));
        }
        let app = &self.application;
        if app.backlog < 1 || app.client_request_timeout_ms == 0 || app.max_connections == 0 {
            problems.push(
                "application.backlog, .client_request_timeout_ms and .max_connections must be at least 1"
                    .into(),
            );
        }
        let max = crate::domain::MAX_PARTITIONS;
        if !(1..=max).contains(&self.redis.partitions) {
            problems.push(format!("redis.partitions must be 1 to {max}"));
        }
        if self.redis.call_timeout_ms == 0 {
            problems.push("redis.call_timeout_ms must be at least 1".into());
        }
        if self.redis.connections == 0 || self.database.max_connections == 0 {
            problems
                .push("redis.connections and database.max_connections must be at least 1".into());
        }
        let d = &self.database;
        if d.commit_writers == 0 || d.commit_batch == 0 {
            problems.push(
                "database.commit_writers and database.commit_batch must be at least 1".into(),
            );
        } else if d.commit_writers as u32 >= d.max_connections {
            problems.push(format!(
                "database.commit_writers ({}) must be below database.max_connections ({}): the drain and reads need connections too",
                d.commit_writers, d.max_connections
            ));
        }
        let l = &self.limits;
        if l.max_lines == 0 {
            problems.push("limits.max_lines must be at least 1".into());
        }
        if l.holds_scan == 0 {
            problems.push("limits.holds_scan must be at least 1".into());
        }
        if l.storefront_ttl_ceiling < 1 || l.callcentre_ttl_ceiling < 1 {
            problems.push("limits.*_ttl_ceiling must be at least 1 second".into());
        }
        if l.default_ttl_seconds < 1 || l.default_ttl_seconds > l.storefront_ttl_ceiling {
            problems.push(format!(
                "limits.default_ttl_seconds ({}) must be from 1 to storefront_ttl_ceiling ({})",
                l.default_ttl_seconds, l.storefront_ttl_ceiling
            ));
        }
        let r = &self.reconciler;
        if r.reaper_interval_ms == 0 || r.reaper_interval_ms > 1000 {
            problems.push(
                "reconciler.reaper_interval_ms must be 1 to 1000 (expiry promise: 2 s)".into(),
            );
        }
        if r.balance_interval_ms == 0 {
            problems.push("reconciler.balance_interval_ms must be at least 1".into());
        }
        if r.reaper_batch == 0 || r.drain_batch == 0 || r.drain_interval_ms == 0 {
            problems.push("reconciler batches and intervals must be at least 1".into());
        }
        if !matches!(self.telemetry.format.as_str(), "pretty" | "json") {
            problems.push(format!(
                "telemetry.format {:?} must be \"pretty\" or \"json\"",
                self.telemetry.format
            ));
        }
        problems.extend(self.key_problems());
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("invalid configuration:\n  - {}", problems.join("\n  - "))
        }
    }

    fn key_problems(&self) -> Vec<String> {
        let dev_hashes: Vec<String> = DEVELOPMENT_KEYS.iter().map(|(k, _)| hash_key(k)).collect();
        let mut problems = Vec::new();
        for key in &self.auth.keys {
            let hash = key.sha256.to_ascii_lowercase();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                problems.push(format!(
                    "auth.keys {:?}: sha256 must be 64 hex digits (stockhold keys new prints one)",
                    key.name
                ));
            }
            let is_dev = dev_hashes.contains(&hash);
            if is_dev && (!self.auth.allow_development_keys || self.profile == Profile::Production)
            {
                problems.push(format!(
                    "auth.keys {:?} is a well-known development key: replace it (stockhold keys new --role {})",
                    key.name, key.role
                ));
            }
        }
        if self.auth.keys.is_empty() {
            problems.push(
                "auth.keys is empty: no client could call the API (stockhold keys new)".into(),
            );
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_development_profile_loads_and_production_refuses_development_keys() {
        let mut settings = get_configuration().expect("development settings load");
        assert_eq!(settings.auth.keys.len(), 3);
        settings.profile = Profile::Production;
        let message = settings.validate().unwrap_err().to_string();
        assert!(message.contains("well-known development key"), "{message}");
    }

    #[test]
    fn a_prefix_with_braces_is_refused() {
        let mut settings = get_configuration().unwrap();
        settings.redis.key_prefix = "a{b}".into();
        assert!(settings.validate().is_err());
    }
}
