//! `nsq-tools`: NSQ's command-line utilities (`nsq_tail`, `to_nsq`, `nsq_stat`, `nsq_to_file`)
//! and the pieces they share.
//!
//! * [`args`]: Go-style flags (`-flag`, `--flag=value`, `--bool=false`) and Go durations.
//! * [`lookupd`]: nsqlookupd and nsqd HTTP queries (`/lookup`, `/topics`, `/stats`), merged over
//!   several lookupds.
//! * [`reader`]: one topic/channel consumed over many nsqd connections, found directly or
//!   through lookupd and re-polled; deliveries are answered with FIN/REQ and a stop sends CLS
//!   and waits for in-flight messages.
//! * [`file_logger`]: `nsq_to_file`'s output files (naming, `<REV>`, rotation, gzip, sync).
//!
//! Binaries use `anyhow`; this library reports [`ToolsError`].
#![warn(missing_docs)]

pub mod args;
pub mod file_logger;
pub mod lookupd;
pub mod reader;

use std::time::Duration;

/// What the shared pieces can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    /// An HTTP request failed (connect, timeout, body).
    #[error("{url}: {source}")]
    Http {
        /// The request.
        url: String,
        /// Why it failed.
        #[source]
        source: reqwest::Error,
    },
    /// An HTTP answer with an unexpected status.
    #[error("{url}: status code {status}: {body}")]
    Status {
        /// The request.
        url: String,
        /// Its status.
        status: u16,
        /// The start of its body.
        body: String,
    },
    /// An HTTP answer whose JSON did not parse.
    #[error("{url}: invalid JSON: {source}")]
    Json {
        /// The request.
        url: String,
        /// Why it did not parse.
        #[source]
        source: serde_json::Error,
    },
    /// Every lookupd failed to answer.
    #[error("no nsqlookupd answered: {0}")]
    NoLookupd(String),
    /// An NSQ TCP connection failed.
    #[error("nsqd {address}: {source}")]
    Nsqd {
        /// The nsqd TCP address.
        address: String,
        /// What failed.
        #[source]
        source: nsq_protocol::ProtocolError,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// Bad settings.
    #[error("{0}")]
    Invalid(String),
}

/// The NSQ version the tools report (`nsq_tail v1.3.0`).
pub const VERSION: &str = nsq_protocol::NSQ_VERSION;

/// The `user_agent` a tool sends in IDENTIFY, like upstream's `nsq_tail/1.3.0 go-nsq/…`.
pub fn user_agent(tool: &str) -> String {
    format!("{tool}/{VERSION} nsq-rs/{}", env!("CARGO_PKG_VERSION"))
}

/// Logs to stderr at `info` (or `NSQ_LOG`), without ANSI colours, with a `[tool] ` prefix.
pub fn init_logging(tool: &'static str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NSQ_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false)
        .fmt_fields(tracing_subscriber::fmt::format::DefaultFields::new())
        .event_format(Prefixed(tool))
        .try_init();
}

/// Resolves when SIGINT or SIGTERM arrives (and never if the handlers cannot be installed).
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot install signal handlers");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}

/// go-nsq spreads max-in-flight over connections: each gets `max(1, max_in_flight / n)`.
pub fn per_connection_rdy(max_in_flight: u64, connections: usize) -> u64 {
    let connections = u64::try_from(connections.max(1)).unwrap_or(u64::MAX);
    (max_in_flight / connections).max(1)
}

/// A short human duration for logs.
pub fn format_duration(duration: Duration) -> String {
    format!("{:.3}s", duration.as_secs_f64())
}

/// A log line: `2024-01-02 15:04:05 [nsq_tail] INFO: text`.
struct Prefixed(&'static str);

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Prefixed
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let now = chrono::Local::now().format("%Y/%m/%d %H:%M:%S");
        write!(writer, "{now} [{}] {}: ", self.0, event.metadata().level())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdy_is_spread_over_connections() {
        assert_eq!(per_connection_rdy(200, 0), 200);
        assert_eq!(per_connection_rdy(200, 1), 200);
        assert_eq!(per_connection_rdy(200, 3), 66);
        assert_eq!(per_connection_rdy(2, 5), 1);
    }

    #[test]
    fn user_agent_names_the_tool() {
        assert!(user_agent("nsq_tail").starts_with("nsq_tail/1.3.0 nsq-rs/"));
    }
}
