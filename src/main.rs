use std::path::PathBuf;

use clap::{Parser, Subcommand};
use partner_gateway::configuration::Settings;
use partner_gateway::lifecycle::shut_down_on_signals;
use partner_gateway::startup::Application;
use partner_gateway::telemetry::{TraceExport, get_subscriber_with_export, init_subscriber};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An internal gateway in front of Microsoft Partner Center's customer qualification API.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// A TOML settings file, layered over the defaults and under PARTNER_GATEWAY__* variables.
    #[arg(long, env = "PARTNER_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the OpenAPI document (what openapi/openapi.json must hold) and exit.
    Openapi,
    /// Load and check the settings, print them (secrets redacted) and exit: 0 when valid.
    CheckConfig,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        println!(
            "{}",
            partner_gateway::routes::openapi_document().to_pretty_json()?
        );
        return Ok(());
    }
    let settings = Settings::load(cli.config.as_deref())?;
    if let Some(Command::CheckConfig) = cli.command {
        println!("{settings:#?}");
        return Ok(());
    }
    // Before the runtime: the exporter's blocking HTTP client must not live inside it.
    let export = TraceExport::from_env()?;
    // Lines are written by a thread of their own, so a slow log pipe never stalls a request;
    // never dropped (audit records are among them): a full buffer waits instead.
    let (stdout, _flush_at_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stdout());
    init_subscriber(get_subscriber_with_export(
        &settings.telemetry.log_level,
        settings.telemetry.log_format,
        stdout,
        export.as_ref(),
    ));
    let served = tokio::runtime::Runtime::new()?.block_on(serve(settings));
    if let Some(export) = export {
        export.shutdown();
    }
    served
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let application = Application::build(settings).await?;
    if let Some(banner) = application.sandbox_banner() {
        eprintln!("{banner}");
    }
    tokio::spawn(shut_down_on_signals(application.lifecycle()));
    application.run_until_stopped().await?;
    Ok(())
}
