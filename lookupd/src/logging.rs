//! Log lines in upstream's shape: `<prefix><YYYY/MM/DD HH:MM:SS.micros> <LEVEL>: <message>`, on
//! stderr, e.g. `[nsqlookupd] 2026/11/22 03:12:00.123456 INFO: TCP: listening on 127.0.0.1:4160`.
//! Times are UTC. Test harnesses scrape the `listening on` lines.

use crate::options::LogLevel;
use std::fmt;
use std::time::SystemTime;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the global subscriber. Fails if one is already installed.
pub fn init(level: LogLevel, prefix: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .event_format(GoLogFormat {
            prefix: prefix.to_owned(),
        })
        .with_max_level(level_filter(level))
        .with_writer(std::io::stderr)
        .try_init()
}

/// The tracing filter for a `--log-level` (`fatal` shows only errors, which fatal ones are).
pub fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error | LogLevel::Fatal => LevelFilter::ERROR,
    }
}

/// Formats events like upstream's logger.
#[derive(Debug, Clone)]
pub struct GoLogFormat {
    /// `--log-prefix`.
    pub prefix: String,
}

impl<S, N> FormatEvent<S, N> for GoLogFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARNING",
            Level::INFO => "INFO",
            Level::DEBUG | Level::TRACE => "DEBUG",
        };
        write!(
            writer,
            "{}{} {level}: ",
            self.prefix,
            go_timestamp(SystemTime::now())
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// `2026/11/22 03:12:00.123456` (UTC).
pub fn go_timestamp(time: SystemTime) -> String {
    // RFC 3339 with microseconds: 2026-11-22T03:12:00.123456Z
    let rfc3339 = humantime::format_rfc3339_micros(time).to_string();
    let (date, clock) = rfc3339.split_once('T').unwrap_or((&rfc3339, ""));
    format!("{} {}", date.replace('-', "/"), clock.trim_end_matches('Z'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_look_like_go_log() {
        let time = UNIX_EPOCH + Duration::from_micros(1_795_316_859_373_306);
        assert_eq!(go_timestamp(time), "2026/11/22 03:07:39.373306");
    }

    #[test]
    fn levels() {
        assert_eq!(level_filter(LogLevel::Fatal), LevelFilter::ERROR);
        assert_eq!(level_filter(LogLevel::Debug), LevelFilter::DEBUG);
    }
}
