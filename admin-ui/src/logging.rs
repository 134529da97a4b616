//! Log lines in upstream's shape: `<prefix><YYYY/MM/DD HH:MM:SS.micros> <LEVEL>: <message>`, on
//! stderr, e.g. `[nsqadmin] 2026/11/22 03:12:00.123456 INFO: HTTP: listening on 127.0.0.1:4171`.
//! Times are UTC. Test harnesses scrape the `listening on` line. The level can be changed while
//! running (`PUT /config/log_level`) through the returned [`LevelControl`].

use crate::options::LogLevel;
use std::fmt;
use std::time::SystemTime;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Changes the level of the installed subscriber.
pub type LevelControl = std::sync::Arc<dyn Fn(LogLevel) + Send + Sync>;

/// Installs the global subscriber. Fails if one is already installed.
pub fn init(
    level: LogLevel,
    prefix: &str,
) -> Result<LevelControl, Box<dyn std::error::Error + Send + Sync>> {
    let (filter, handle) = reload::Layer::new(level_filter(level));
    let format = tracing_subscriber::fmt::layer()
        .event_format(GoLogFormat {
            prefix: prefix.to_owned(),
        })
        .with_writer(std::io::stderr);
    tracing_subscriber::registry()
        .with(filter)
        .with(format)
        .try_init()?;
    Ok(std::sync::Arc::new(move |level: LogLevel| {
        if let Err(err) = handle.reload(level_filter(level)) {
            tracing::error!("failed to change the log level - {err}");
        }
    }))
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
