use std::path::PathBuf;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use partner_gateway::configuration::Settings;
use partner_gateway::lifecycle::shut_down_on_signals;
use partner_gateway::login::{LoginFlow, LoginOptions, login, print_status, token_status};
use partner_gateway::startup::Application;
use partner_gateway::telemetry::{TraceExport, get_subscriber_with_export, init_subscriber};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read as it starts (`MALLOC_CONF` in the environment comes after them,
/// so an operator can override any); what they did under bench/run is in the README's
/// Performance section:
/// - two arenas whatever the node's CPU count (jemalloc's default is four per CPU it sees,
///   not per CPU the pod may use);
/// - pages left free for 50 ms go back to the kernel, purged by jemalloc's own thread rather
///   than on the request path: at 1 s the peak was ~2 MiB higher, at 0 (purged inline) the
///   POSTs lost 40 % of their rate; one such thread serves both arenas (jemalloc's default
///   is one per CPU: a thread more with nothing of its own to purge);
/// - threads cache freed blocks of up to 4 KiB (jemalloc's default: 32 KiB); larger ones,
///   connections' 8 KiB buffers among them, go back to the arena: ~1.5 MiB off the peak.
#[unsafe(export_name = "malloc_conf")]
static MALLOC_CONF: &u8 =
    &b"narenas:2,background_thread:true,max_background_threads:1,dirty_decay_ms:50,muzzy_decay_ms:0,tcache_max:4096\0"[0];

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
    /// Sign in as an admin agent of the partner tenant and store the refresh token the
    /// gateway redeems, in partner_token.refresh_token_file (after verifying it).
    Login(LoginArgs),
    /// The partner credential.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Args)]
struct LoginArgs {
    /// Sign in in a browser (the default): authorization code with PKCE, redirected to
    /// http://localhost on a port of partner_token.login_redirect_ports.
    #[arg(long, conflicts_with = "device_code")]
    browser: bool,
    /// Sign in on any other device with a short code, for hosts without a browser.
    #[arg(long)]
    device_code: bool,
    /// Only print the sign-in URL; do not try to open a browser.
    #[arg(long)]
    no_open: bool,
    /// Give up when nobody has signed in after this many seconds.
    #[arg(long, default_value_t = 900, value_name = "SECS")]
    timeout_secs: u64,
    /// Use a running sandbox gateway's app registration, Entra and Partner Center, to try
    /// login with no tenant (e.g. http://127.0.0.1:8080).
    #[arg(long, value_name = "URL")]
    sandbox: Option<String>,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Where the refresh token comes from, when it last rotated and was redeemed, days left
    /// before the 90-day inactivity limit, MFA. Exit code: 0 usable, 1 within
    /// partner_token.warn_days of the limit or of unknown age, 2 unusable.
    Status {
        /// The same as JSON.
        #[arg(long)]
        json: bool,
    },
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
    match cli.command {
        Some(Command::Login(args)) => {
            let settings = Settings::load_unchecked(cli.config.as_deref())?;
            let options = LoginOptions {
                flow: if args.device_code {
                    LoginFlow::DeviceCode
                } else {
                    LoginFlow::Browser
                },
                open_browser: !args.no_open,
                timeout: Duration::from_secs(args.timeout_secs),
                sandbox: args.sandbox,
            };
            return tokio::runtime::Runtime::new()?.block_on(login(settings, options));
        }
        Some(Command::Token {
            command: TokenCommand::Status { json },
        }) => {
            let settings = Settings::load_unchecked(cli.config.as_deref())?;
            let code = print_status(&token_status(&settings)?, json)?;
            std::process::exit(code.into());
        }
        _ => {}
    }
    let settings = Settings::load(cli.config.as_deref())?;
    if let Some(Command::CheckConfig) = cli.command {
        println!("{settings:#?}");
        return Ok(());
    }
    // Before the runtime: the exporter's blocking HTTP client must not live inside it.
    let export = TraceExport::from_env()?;
    let (stdout, _flush_at_exit) = partner_gateway::telemetry::log_writer(std::io::stdout());
    init_subscriber(get_subscriber_with_export(
        &settings.telemetry.log_level,
        settings.telemetry.log_format,
        stdout,
        export.as_ref(),
    ));
    // One thread for what is not a request (start, the watcher, deliveries, the drain):
    // requests run on actix's workers, each with a runtime of its own, so a multi-thread
    // runtime here only added idle threads competing for the same CPUs.
    let served = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(settings));
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
