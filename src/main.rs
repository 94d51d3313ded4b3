//! The `stockhold` binary: loads configuration, sets up telemetry, runs.

use clap::{Parser, Subcommand};
use stockhold::configuration::{get_configuration, hash_key};
use stockhold::domain::Role;
use stockhold::startup::{connect, Application};
use stockhold::{demo, shutdown, telemetry};

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
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
            let stock = connect(&settings).await?;
            let created = demo::load(&stock).await?;
            tracing::info!(created, "demo catalogue loaded");
            Ok(())
        }
        Command::Keys { .. } => unreachable!("handled above"),
    }
}
