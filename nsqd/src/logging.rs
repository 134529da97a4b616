//! Log verbosity that can change at runtime (`PUT /config/log_level`).
//!
//! The binary installs the subscriber with [`init`]: an `EnvFilter` behind a reload layer, so
//! [`set_level`] swaps the filter without restarting. The level is also kept as a number (upstream's
//! 1 debug … 5 fatal) for `GET /config/log_level`. Embedders that install their own subscriber
//! still get the number tracked; only the filter swap needs [`init`].

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// nsqd's log levels, numbered as upstream reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// 1.
    Debug = 1,
    /// 2.
    Info = 2,
    /// 3.
    Warn = 3,
    /// 4.
    Error = 4,
    /// 5 (logged as errors).
    Fatal = 5,
}

/// A level name other than debug, info, warn, error or fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid log level {0:?}")]
pub struct InvalidLogLevel(pub String);

impl FromStr for LogLevel {
    type Err = InvalidLogLevel;

    /// Case-insensitive, as upstream's `lg.ParseLogLevel`.
    fn from_str(raw: &str) -> Result<Self, InvalidLogLevel> {
        match raw.to_ascii_lowercase().as_str() {
            "debug" => Ok(Self::Debug),
            "info" => Ok(Self::Info),
            "warn" => Ok(Self::Warn),
            "error" => Ok(Self::Error),
            "fatal" => Ok(Self::Fatal),
            _ => Err(InvalidLogLevel(raw.to_owned())),
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
            Self::Fatal => "fatal",
        })
    }
}

impl LogLevel {
    /// Upstream's number (`GET /config/log_level`).
    pub fn number(self) -> u8 {
        self as u8
    }

    fn from_number(number: u8) -> Self {
        match number {
            1 => Self::Debug,
            3 => Self::Warn,
            4 => Self::Error,
            5 => Self::Fatal,
            _ => Self::Info,
        }
    }

    fn directive(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error | Self::Fatal => "error",
        }
    }
}

static CURRENT: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);
static RELOAD: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global subscriber (stderr, no colours, no targets) at `level`. `NSQ_LOG`, if set,
/// is an `EnvFilter` directive that overrides the starting filter (until a runtime change).
pub fn init(level: LogLevel) {
    CURRENT.store(level.number(), Ordering::Release);
    let filter =
        EnvFilter::try_from_env("NSQ_LOG").unwrap_or_else(|_| EnvFilter::new(level.directive()));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    if tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok()
    {
        let _ = RELOAD.set(handle);
    }
}

/// Records the starting level without touching the filter (library use, tests).
pub fn note_level(level: LogLevel) {
    CURRENT.store(level.number(), Ordering::Release);
}

/// Changes the verbosity now.
pub fn set_level(level: LogLevel) {
    CURRENT.store(level.number(), Ordering::Release);
    if let Some(handle) = RELOAD.get()
        && let Err(err) = handle.reload(EnvFilter::new(level.directive()))
    {
        tracing::warn!("failed to change the log level - {err}");
    }
}

/// The current level.
pub fn level() -> LogLevel {
    LogLevel::from_number(CURRENT.load(Ordering::Acquire))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_upstream() {
        assert_eq!("WARN".parse::<LogLevel>(), Ok(LogLevel::Warn));
        assert_eq!("debug".parse::<LogLevel>().map(LogLevel::number), Ok(1));
        assert_eq!("fatal".parse::<LogLevel>().map(LogLevel::number), Ok(5));
        assert!("loud".parse::<LogLevel>().is_err());
        assert!("warn\n".parse::<LogLevel>().is_err());
    }
}
