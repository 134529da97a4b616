//! The `nsqadmin` binary: flags → [`Options`], logging, run until SIGINT or SIGTERM.

use anyhow::Context as _;
use nsqadmin::options::Cli;
use nsqadmin::{Options, logging, version_line};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};
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
        Err(err) => return fatal("[nsqadmin] ", &format!("failed to load options - {err}")),
    };
    if let Err(err) = options.validate() {
        return fatal(
            &options.log_prefix,
            &format!("failed to instantiate nsqadmin - {err}"),
        );
    }
    let log_control = match logging::init(options.log_level, &options.log_prefix) {
        Ok(control) => control,
        Err(err) => {
            return fatal(
                &options.log_prefix,
                &format!("failed to set up logging - {err}"),
            );
        }
    };
    match run(options, log_control) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("FATAL: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Upstream's fatal line (`<prefix><time> FATAL: <text>`), printed before logging is set up.
fn fatal(prefix: &str, text: &str) -> ExitCode {
    eprintln!(
        "{prefix}{} FATAL: {text}",
        logging::go_timestamp(SystemTime::now())
    );
    ExitCode::FAILURE
}

fn run(options: Options, log_control: logging::LevelControl) -> anyhow::Result<()> {
    tracing::info!("{}", version_line());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(serve(options, log_control))
}

async fn serve(options: Options, log_control: logging::LevelControl) -> anyhow::Result<()> {
    // Handlers go in before the listener opens: a harness may signal as soon as it sees it.
    let mut terminate = signal(SignalKind::terminate()).context("failed to watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("failed to watch SIGINT")?;
    let cancel = CancellationToken::new();
    let running = nsqadmin::start(options, Some(log_control), cancel.clone())
        .await
        .map_err(|err| anyhow::anyhow!("failed to instantiate nsqadmin - {err}"))?;
    let mut join = running.join;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("signal: terminated"),
        _ = interrupt.recv() => tracing::info!("signal: interrupt"),
        finished = &mut join => {
            finished??;
            anyhow::bail!("server stopped unexpectedly");
        }
    }
    cancel.cancel();
    match tokio::time::timeout(SHUTDOWN_TIMEOUT, join).await {
        Ok(finished) => Ok(finished??),
        Err(_) => anyhow::bail!("shutdown took longer than {SHUTDOWN_TIMEOUT:?}"),
    }
}
