//! The `nsqlookupd` binary: flags → [`Options`], logging, run until SIGINT or SIGTERM.

use anyhow::Context as _;
use nsqlookupd::options::Cli;
use nsqlookupd::{Options, logging, version_line};
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// How long a clean shutdown may take before we give up on open connections.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let cli = match Cli::parse_go_style(std::env::args_os()) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    if cli.wants_version() {
        println!("{}", version_line());
        return ExitCode::SUCCESS;
    }
    let options = match cli.into_options() {
        Ok(options) => options,
        Err(err) => {
            eprintln!("[nsqlookupd] FATAL: {err}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(err) = logging::init(options.log_level, &options.log_prefix) {
        eprintln!("[nsqlookupd] FATAL: failed to set up logging - {err}");
        return ExitCode::FAILURE;
    }
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("FATAL: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: Options) -> anyhow::Result<()> {
    tracing::info!("{}", version_line());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(serve(options))
}

async fn serve(options: Options) -> anyhow::Result<()> {
    // Handlers go in before the listeners open: a harness may signal as soon as it sees them.
    let mut terminate = signal(SignalKind::terminate()).context("failed to watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("failed to watch SIGINT")?;
    let cancel = CancellationToken::new();
    let running = nsqlookupd::start(options, cancel.clone()).await?;
    let mut join = running.join;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("signal: terminated"),
        _ = interrupt.recv() => tracing::info!("signal: interrupt"),
        finished = &mut join => {
            finished??;
            anyhow::bail!("servers stopped unexpectedly");
        }
    }
    cancel.cancel();
    match tokio::time::timeout(SHUTDOWN_TIMEOUT, join).await {
        Ok(finished) => Ok(finished??),
        Err(_) => anyhow::bail!("shutdown took longer than {SHUTDOWN_TIMEOUT:?}"),
    }
}
