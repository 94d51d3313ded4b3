//! The `stockhold` binary: loads configuration, sets up telemetry, runs.

use clap::{Parser, Subcommand};
use stockhold::configuration::{get_configuration, hash_key};
use stockhold::domain::{ReconcileMode, Role, Sku};
use stockhold::reconciler::{Reconciler, Report};
use stockhold::startup::{connect_ready, Application};
use stockhold::{demo, shutdown, telemetry};

// Every request allocates and frees many small buffers (JSON values, SKUs,
// script arguments) across worker threads; glibc's allocator took about a
// fifth of the service's CPU in a profile of 60-line reserves, mimalloc a
// small part of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "Stock reservation service: atomic basket holds, durable sales"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Load the demo catalogue (SKUs that exist are left alone).
    DemoData,
    /// Compare the live counts in Redis with the ledger and the live holds.
    Reconcile {
        /// Set drifted counts to the expected values (with a ledger row each).
        #[arg(long)]
        repair: bool,
        /// Only these SKUs (repeatable); all SKUs when absent.
        #[arg(long = "sku", value_name = "SKU")]
        skus: Vec<String>,
    },
    /// API key tools.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a fresh key and the line to put in the configuration.
    New {
        /// storefront, callcentre or admin.
        #[arg(long)]
        role: Role,
        /// A name for the key, shown in logs.
        #[arg(long, default_value = "new-key")]
        name: String,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole cause chain, without a backtrace: these are
            // messages for whoever runs the binary (configuration, reach).
            eprintln!("stockhold: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Keys {
        command: KeysCommand::New { role, name },
    }) = &cli.command
    {
        let key = format!(
            "sh_{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        println!("key:    {key}");
        println!(
            "config: {{ name = \"{name}\", role = \"{role}\", sha256 = \"{}\" }}",
            hash_key(&key)
        );
        return Ok(());
    }
    let settings = get_configuration()?;
    telemetry::init(&settings.telemetry);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(settings, shutdown::on_signal()).await?;
            app.run_until_stopped().await
        }
        Command::DemoData => {
            let stock = connect_ready(&settings).await?;
            let created = demo::load(&stock).await?;
            tracing::info!(created, "demo catalogue loaded");
            Ok(())
        }
        Command::Reconcile { repair, skus } => {
            let skus = skus
                .iter()
                .map(|s| Sku::parse(s).map_err(|m| anyhow::anyhow!("--sku {s:?}: {m}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let stock = connect_ready(&settings).await?;
            let mode = if repair {
                ReconcileMode::Repair
            } else {
                ReconcileMode::Check
            };
            let only = (!skus.is_empty()).then_some(skus.as_slice());
            let report = Reconciler::new(stock.engine, stock.ledger)
                .reconcile(mode, only)
                .await?;
            print_report(&report);
            Ok(())
        }
        Command::Keys { .. } => unreachable!("handled above"),
    }
}

fn print_report(report: &Report) {
    println!(
        "checked {} SKUs in {} ms: {} drifted{}",
        report.checked,
        report.duration.as_millis(),
        report.drifted.len(),
        if report.repaired && !report.drifted.is_empty() {
            ", repaired"
        } else {
            ""
        }
    );
    if report.drifted.is_empty() {
        return;
    }
    println!(
        "{:<32} {:>14} {:>14} {:>12} {:>12}",
        "SKU", "on_hand exp", "on_hand act", "held exp", "held act"
    );
    for d in &report.drifted {
        let actual = d
            .actual_on_hand
            .map_or("missing".to_owned(), |n| n.to_string());
        println!(
            "{:<32} {:>14} {:>14} {:>12} {:>12}",
            d.sku.as_str(),
            d.expected_on_hand,
            actual,
            d.expected_held,
            d.actual_held
        );
    }
}
