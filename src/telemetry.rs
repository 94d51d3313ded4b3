//! Logging: one tracing subscriber, JSON in production and readable text in
//! development; `RUST_LOG` overrides the configured filter.

use crate::configuration::TelemetrySettings;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber, writing to stderr (once; later calls do
/// nothing).
pub fn init(settings: &TelemetrySettings) {
    init_with(settings, std::io::stderr);
}

/// Installs the global subscriber writing to `writer` (the benchmark
/// gives the in-process service a file, as a deployment gives it a pipe).
pub fn init_with<W>(settings: &TelemetrySettings, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = if settings.format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
