//! Command-line flags and the `--config` file, resolved into [`Options`].
//!
//! Flags are upstream's names. Go's flag syntax also works: `-tcp-address 127.0.0.1:4160` (one
//! dash, see [`go_style_args`]), `--flag=value`, `--flag value`, and `--verbose=false` for booleans.
//! A value given on the command line beats the config file, which beats the default. Config keys
//! are the flag names with `_` (`inactive_producer_timeout = "300s"`); unknown keys are ignored.
//! Durations use Go syntax (`300s`, `1m0s`, `1h30m`, `250ms`, `1.5h`); a bare number in the config
//! file is milliseconds.

use crate::error::Error;
use clap::Parser;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Resolved settings of one nsqlookupd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `--log-level`.
    pub log_level: LogLevel,
    /// `--log-prefix`, printed at the start of every log line.
    pub log_prefix: String,
    /// `--tcp-address`: where nsqd nodes register (`host:port`; port 0 picks a free port).
    pub tcp_address: String,
    /// `--http-address`: the HTTP API.
    pub http_address: String,
    /// `--broadcast-address`: returned to nsqd in IDENTIFY answers.
    pub broadcast_address: String,
    /// `--inactive-producer-timeout`: a producer silent for longer is hidden.
    pub inactive_producer_timeout: Duration,
    /// `--tombstone-lifetime`: how long a tombstone hides a producer from `/lookup`.
    pub tombstone_lifetime: Duration,
}

impl Default for Options {
    /// Upstream's defaults; the broadcast address is the OS hostname.
    fn default() -> Self {
        Self {
            log_level: LogLevel::Info,
            log_prefix: "[nsqlookupd] ".to_owned(),
            tcp_address: "0.0.0.0:4160".to_owned(),
            http_address: "0.0.0.0:4161".to_owned(),
            broadcast_address: hostname::get()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            inactive_producer_timeout: Duration::from_secs(300),
            tombstone_lifetime: Duration::from_secs(45),
        }
    }
}

/// Upstream's log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `debug`.
    Debug,
    /// `info` (default).
    Info,
    /// `warn`.
    Warn,
    /// `error`.
    Error,
    /// `fatal`: only fatal start-up errors.
    Fatal,
}

impl FromStr for LogLevel {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "debug" => Ok(Self::Debug),
            "info" => Ok(Self::Info),
            "warn" => Ok(Self::Warn),
            "error" => Ok(Self::Error),
            "fatal" => Ok(Self::Fatal),
            _ => Err(format!("invalid log-level '{text}'")),
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

/// The command line. Every value is optional so that the config file can fill the gaps.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "nsqlookupd",
    about = "nsqlookupd: the NSQ directory service",
    disable_version_flag = true,
    args_override_self = true
)]
pub struct Cli {
    /// Path to a TOML config file (keys are flag names with '_').
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    pub config: Option<PathBuf>,

    /// Print version string and exit.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub version: Option<bool>,

    /// Deprecated; has no effect.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub verbose: Option<bool>,

    /// Log level: debug, info, warn, error or fatal [default: info].
    #[arg(long, value_parser = LogLevel::from_str)]
    pub log_level: Option<LogLevel>,

    /// Log message prefix.
    #[arg(
        long,
        allow_hyphen_values = true,
        help = "Log message prefix [default: \"[nsqlookupd] \"]"
    )]
    pub log_prefix: Option<String>,

    /// Address to listen on for TCP clients.
    #[arg(
        long,
        allow_hyphen_values = true,
        help = "<addr>:<port> to listen on for TCP clients [default: 0.0.0.0:4160]"
    )]
    pub tcp_address: Option<String>,

    /// Address to listen on for HTTP clients.
    #[arg(
        long,
        allow_hyphen_values = true,
        help = "<addr>:<port> to listen on for HTTP clients [default: 0.0.0.0:4161]"
    )]
    pub http_address: Option<String>,

    /// Address of this lookupd node, (default to the OS hostname).
    #[arg(long, allow_hyphen_values = true)]
    pub broadcast_address: Option<String>,

    /// Duration of time a producer will remain in the active list since its last ping [default: 5m0s].
    #[arg(long, value_parser = parse_go_duration_arg)]
    pub inactive_producer_timeout: Option<Duration>,

    /// Duration of time a producer will remain tombstoned if registration remains [default: 45s].
    #[arg(long, value_parser = parse_go_duration_arg)]
    pub tombstone_lifetime: Option<Duration>,
}

impl Cli {
    /// Parses Go-style or clap-style arguments (the first one is the program name). Clap errors
    /// (unknown flag, bad value, `--help`) are returned for the caller to print and exit with.
    pub fn parse_go_style<I>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = OsString>,
    {
        Self::try_parse_from(go_style_args(args))
    }

    /// Whether `--version` was given (and not `--version=false`).
    pub fn wants_version(&self) -> bool {
        self.version.unwrap_or(false)
    }

    /// Merges the command line, the config file (if `--config`) and the defaults.
    pub fn into_options(self) -> Result<Options, Error> {
        let config = match &self.config {
            Some(path) => Some(ConfigFile::load(path)?),
            None => None,
        };
        let defaults = Options::default();
        let config = config.as_ref();
        Ok(Options {
            log_level: pick(self.log_level, config, "log_level", |value| {
                config_string(value)?.parse::<LogLevel>()
            })?
            .unwrap_or(defaults.log_level),
            log_prefix: pick(self.log_prefix, config, "log_prefix", config_string)?
                .unwrap_or(defaults.log_prefix),
            tcp_address: pick(self.tcp_address, config, "tcp_address", config_string)?
                .unwrap_or(defaults.tcp_address),
            http_address: pick(self.http_address, config, "http_address", config_string)?
                .unwrap_or(defaults.http_address),
            broadcast_address: pick(
                self.broadcast_address,
                config,
                "broadcast_address",
                config_string,
            )?
            .unwrap_or(defaults.broadcast_address),
            inactive_producer_timeout: pick(
                self.inactive_producer_timeout,
                config,
                "inactive_producer_timeout",
                config_duration,
            )?
            .unwrap_or(defaults.inactive_producer_timeout),
            tombstone_lifetime: pick(
                self.tombstone_lifetime,
                config,
                "tombstone_lifetime",
                config_duration,
            )?
            .unwrap_or(defaults.tombstone_lifetime),
        })
    }
}

/// The flags that take a value, so the next argument is never rewritten.
const VALUE_FLAGS: [&str; 8] = [
    "config",
    "log-level",
    "log-prefix",
    "tcp-address",
    "http-address",
    "broadcast-address",
    "inactive-producer-timeout",
    "tombstone-lifetime",
];

/// Rewrites Go's single-dash long flags (`-tcp-address`, `-help`) to `--…` so clap accepts them.
/// Values of flags that take one are left alone (`-log-prefix -x-`), as is everything after `--`.
pub fn go_style_args<I>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = OsString>,
{
    let mut args = args.into_iter();
    let mut rewritten: Vec<OsString> = args.next().into_iter().collect();
    let mut next_is_value = false;
    while let Some(arg) = args.next() {
        if std::mem::take(&mut next_is_value) {
            rewritten.push(arg);
            continue;
        }
        let Some(text) = arg.to_str() else {
            rewritten.push(arg);
            continue;
        };
        if text == "--" {
            rewritten.push(arg);
            rewritten.extend(args);
            break;
        }
        let long = if text.len() > 2 && text.starts_with('-') && !text.starts_with("--") {
            format!("-{text}")
        } else {
            text.to_owned()
        };
        if let Some(name) = long.strip_prefix("--") {
            next_is_value = !name.contains('=') && VALUE_FLAGS.contains(&name);
        }
        rewritten.push(long.into());
    }
    rewritten
}

/// Parses a Go duration (`time.ParseDuration`): an optional sign, then one or more decimal
/// numbers with a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), e.g. `1m0s`, `1.5h`, `-2s`; `0`
/// needs no unit. Returns nanoseconds.
pub fn parse_go_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration \"{text}\"");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let integer_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (integer, after) = rest.split_at(integer_len);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => {
                let fraction_len = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(fraction_len)
            }
            None => ("", after),
        };
        if integer.is_empty() && fraction.is_empty() {
            return Err(invalid());
        }
        let unit_len = after
            .bytes()
            .take_while(|byte| *byte != b'.' && !byte.is_ascii_digit())
            .count();
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "" => return Err(format!("time: missing unit in duration \"{text}\"")),
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit \"{unit}\" in duration \"{text}\""
                ));
            }
        };
        let whole: u128 = if integer.is_empty() {
            0
        } else {
            integer.parse().map_err(|_| invalid())?
        };
        let mut value = whole.checked_mul(unit_nanos).ok_or_else(invalid)?;
        if !fraction.is_empty() {
            // Go keeps at most the digits that fit and scales in floating point.
            let digits = &fraction[..fraction.len().min(18)];
            let numerator: f64 = digits.parse::<u64>().map_err(|_| invalid())? as f64;
            let scale = 10f64.powi(digits.len() as i32);
            value += (numerator * (unit_nanos as f64 / scale)) as u128;
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > 1 << 63 {
            return Err(invalid());
        }
        rest = after;
    }
    if negative {
        return Ok(-(total as i128) as i64);
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// [`parse_go_duration`] for a flag: a negative duration behaves like zero here.
fn parse_go_duration_arg(text: &str) -> Result<Duration, String> {
    parse_go_duration(text).map(|nanos| Duration::from_nanos(nanos.max(0) as u64))
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("parse error: invalid boolean value {text:?}")),
    }
}

/// A parsed `--config` file.
#[derive(Debug)]
struct ConfigFile {
    path: PathBuf,
    table: toml::Table,
}

impl ConfigFile {
    fn load(path: &Path) -> Result<Self, Error> {
        let failed = |reason: String| Error::Config {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|err| failed(err.to_string()))?;
        let table = toml::from_str(&text).map_err(|err| failed(err.to_string()))?;
        Ok(Self {
            path: path.to_owned(),
            table,
        })
    }
}

/// The command-line value if given, else the config value (converted), else `None`.
fn pick<T>(
    flag: Option<T>,
    config: Option<&ConfigFile>,
    key: &str,
    convert: impl Fn(&toml::Value) -> Result<T, String>,
) -> Result<Option<T>, Error> {
    if flag.is_some() {
        return Ok(flag);
    }
    let Some((config, value)) = config.and_then(|config| Some((config, config.table.get(key)?)))
    else {
        return Ok(None);
    };
    convert(value).map(Some).map_err(|reason| Error::Config {
        path: config.path.clone(),
        reason: format!("{key}: {reason}"),
    })
}

/// Go's options loader turns any scalar into its text form for a string option.
fn config_string(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(number) => Ok(number.to_string()),
        toml::Value::Float(number) => Ok(number.to_string()),
        toml::Value::Boolean(flag) => Ok(flag.to_string()),
        other => Err(format!("expected a string, got {}", other.type_str())),
    }
}

/// A Go duration string, or an integer number of milliseconds.
fn config_duration(value: &toml::Value) -> Result<Duration, String> {
    match value {
        toml::Value::String(text) => parse_go_duration_arg(text),
        toml::Value::Integer(millis) => Ok(Duration::from_millis((*millis).max(0) as u64)),
        other => Err(format!("expected a duration, got {}", other.type_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("nsqlookupd")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn parse(list: &[&str]) -> Result<Options, String> {
        Cli::parse_go_style(args(list))
            .map_err(|err| err.to_string())?
            .into_options()
            .map_err(|err| err.to_string())
    }

    #[test]
    fn go_durations() {
        let cases: &[(&str, Result<i64, ()>)] = &[
            ("0", Ok(0)),
            ("-0", Ok(0)),
            ("300s", Ok(300_000_000_000)),
            ("45s", Ok(45_000_000_000)),
            ("1m0s", Ok(60_000_000_000)),
            ("5m0s", Ok(300_000_000_000)),
            ("1h30m", Ok(5_400_000_000_000)),
            ("250ms", Ok(250_000_000)),
            ("1.5h", Ok(5_400_000_000_000)),
            (".5s", Ok(500_000_000)),
            ("1.s", Ok(1_000_000_000)),
            ("+2s", Ok(2_000_000_000)),
            ("-2s", Ok(-2_000_000_000)),
            ("1us", Ok(1_000)),
            ("1µs", Ok(1_000)),
            ("1μs", Ok(1_000)),
            ("3ns", Ok(3)),
            ("1.000000001s", Ok(1_000_000_001)),
            ("2562047h47m16.854775807s", Ok(i64::MAX)),
            ("2562047h47m16.854775808s", Err(())),
            ("", Err(())),
            ("-", Err(())),
            ("1", Err(())),
            ("s", Err(())),
            (".s", Err(())),
            ("1d", Err(())),
            ("1 s", Err(())),
            ("1s ", Err(())),
            ("99999999999999999999h", Err(())),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_go_duration(text).map_err(drop), *expected, "{text:?}");
        }
        assert_eq!(
            parse_go_duration("1").unwrap_err(),
            "time: missing unit in duration \"1\""
        );
        assert_eq!(parse_go_duration_arg("-5s"), Ok(Duration::ZERO));
    }

    #[test]
    fn go_style_flags_are_rewritten() {
        let cases: &[(&[&str], &[&str])] = &[
            (
                &["-tcp-address", "127.0.0.1:0", "-http-address=127.0.0.1:0"],
                &["--tcp-address", "127.0.0.1:0", "--http-address=127.0.0.1:0"],
            ),
            (
                &["--version", "-h", "-help"],
                &["--version", "-h", "--help"],
            ),
            (
                &["-log-prefix", "-x-", "-verbose"],
                &["--log-prefix", "-x-", "--verbose"],
            ),
            (&["--", "-tcp-address"], &["--", "-tcp-address"]),
        ];
        for (input, expected) in cases {
            assert_eq!(go_style_args(args(input)), args(expected), "{input:?}");
        }
    }

    #[test]
    fn defaults_and_flags() {
        let defaults = parse(&[]).unwrap();
        assert_eq!(defaults, Options::default());
        assert_eq!(defaults.tcp_address, "0.0.0.0:4160");
        assert_eq!(defaults.http_address, "0.0.0.0:4161");
        assert_eq!(defaults.inactive_producer_timeout, Duration::from_secs(300));
        assert_eq!(defaults.tombstone_lifetime, Duration::from_secs(45));
        assert_eq!(defaults.log_prefix, "[nsqlookupd] ");
        assert_eq!(defaults.log_level, LogLevel::Info);

        let options = parse(&[
            "-tcp-address",
            "127.0.0.1:0",
            "--http-address=127.0.0.1:0",
            "--broadcast-address",
            "10.0.0.7",
            "-inactive-producer-timeout=1m0s",
            "-tombstone-lifetime",
            "250ms",
            "-log-level=DEBUG",
            "-log-prefix=",
            "-verbose=false",
        ])
        .unwrap();
        assert_eq!(options.tcp_address, "127.0.0.1:0");
        assert_eq!(options.http_address, "127.0.0.1:0");
        assert_eq!(options.broadcast_address, "10.0.0.7");
        assert_eq!(options.inactive_producer_timeout, Duration::from_secs(60));
        assert_eq!(options.tombstone_lifetime, Duration::from_millis(250));
        assert_eq!(options.log_level, LogLevel::Debug);
        assert_eq!(options.log_prefix, "");

        for bad in [
            &["--bogus"][..],
            &["-tombstone-lifetime", "45"],
            &["--log-level", "loud"],
            &["--verbose=maybe"],
            &["positional"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let version = Cli::parse_go_style(args(&["-version"])).unwrap();
        assert!(version.wants_version());
        let no_version = Cli::parse_go_style(args(&["--version=false"])).unwrap();
        assert!(!no_version.wants_version());
    }

    #[test]
    fn config_file_fills_gaps_and_flags_win() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            r#"
tcp_address = "127.0.0.1:4999"
http_address = "127.0.0.1:5000"
broadcast_address = "from-config"
inactive_producer_timeout = "300s"
tombstone_lifetime = 1500
log_level = "warn"
unknown_key = [1, 2]
"#
        )
        .unwrap();
        let path = file.path().to_str().unwrap();
        let options = parse(&["--config", path, "--http-address=127.0.0.1:0"]).unwrap();
        assert_eq!(options.tcp_address, "127.0.0.1:4999");
        assert_eq!(options.http_address, "127.0.0.1:0");
        assert_eq!(options.broadcast_address, "from-config");
        assert_eq!(options.inactive_producer_timeout, Duration::from_secs(300));
        assert_eq!(options.tombstone_lifetime, Duration::from_millis(1500));
        assert_eq!(options.log_level, LogLevel::Warn);

        let mut bad = tempfile::NamedTempFile::new().unwrap();
        writeln!(bad, "tombstone_lifetime = \"soon\"").unwrap();
        let err = parse(&["-config", bad.path().to_str().unwrap()]).unwrap_err();
        assert!(err.contains("tombstone_lifetime"), "{err}");
        let mut not_toml = tempfile::NamedTempFile::new().unwrap();
        writeln!(not_toml, "this is = = not toml").unwrap();
        assert!(parse(&["--config", not_toml.path().to_str().unwrap()]).is_err());
        assert!(parse(&["--config", "/nonexistent/nsqlookupd.toml"]).is_err());
    }
}
