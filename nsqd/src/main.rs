//! The `nsqd` binary: flags, logging, signals.

use anyhow::Context as _;
use clap::Parser as _;
use nsqd::Options;
use nsqd::options::{normalize_args, nsqd_config_key_to_flag, version_line};
use tokio_util::sync::CancellationToken;

fn main() -> std::process::ExitCode {
    let args = match normalize_args(std::env::args_os(), nsqd_config_key_to_flag) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let options = Options::parse_from(args);
    if options.version {
        println!("{}", version_line("nsqd"));
        return std::process::ExitCode::SUCCESS;
    }
    init_logging(&options.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("failed to start runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("FATAL: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let shutdown_timeout = options.shutdown_timeout;
    // Install the handlers before the listeners announce themselves: a harness may signal as
    // soon as it reads the "listening on" lines.
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt =
        signal(SignalKind::interrupt()).context("failed to install SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("failed to install SIGTERM handler")?;
    let running = nsqd::start(options, shutdown.clone())
        .await
        .context("failed to start nsqd")?;
    tokio::select! {
        _ = interrupt.recv() => tracing::info!("received SIGINT, exiting"),
        _ = terminate.recv() => tracing::info!("received SIGTERM, exiting"),
    }
    shutdown.cancel();
    if !running.wait(shutdown_timeout).await {
        anyhow::bail!("shutdown did not finish within {shutdown_timeout:?}");
    }
    tracing::info!("bye");
    Ok(())
}

fn init_logging(level: &str) {
    // The reload layer lets `PUT /config/log_level` change verbosity at runtime.
    let level = level
        .parse::<nsqd::logging::LogLevel>()
        .unwrap_or(nsqd::logging::LogLevel::Info);
    nsqd::logging::init(level);
}
