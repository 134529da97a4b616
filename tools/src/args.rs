//! Go-style command lines, as upstream's tools (Go's `flag` package) accept them.
//!
//! * `-flag value`, `-flag=value`, `--flag value` and `--flag=value` are all the same flag:
//!   [`go_style_args`] turns a single-dash long flag into a double-dash one (never a flag's
//!   value, so `--delimiter -` and `--topic-pattern -x` keep their values).
//! * Booleans take `--flag`, `--flag=true` or `--flag=false` ([`parse_go_bool`]; declare them
//!   with `num_args = 0..=1, require_equals = true, default_missing_value = "true"`).
//! * Durations use Go's syntax, `2s`, `1m0s`, `250ms` ([`parse_go_duration`]).

use std::ffi::OsString;
use std::time::Duration;

/// Rewrites `-flag` to `--flag` (leaving values of flags that take one untouched) so that clap
/// parses `command`'s flags the way Go's `flag` package does.
pub fn go_style_args(
    args: impl IntoIterator<Item = OsString>,
    command: &clap::Command,
) -> Vec<OsString> {
    let mut command = command.clone();
    command.build();
    let takes_value = |name: &str| {
        command.get_arguments().any(|arg| {
            arg.get_long() == Some(name)
                && arg
                    .get_num_args()
                    .is_some_and(|range| range.min_values() > 0)
        })
    };
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
        let single_dash_long = text.len() > 2
            && text.starts_with('-')
            && !text.starts_with("--")
            && text[1..].starts_with(|ch: char| ch.is_ascii_alphabetic());
        let long = if single_dash_long {
            format!("-{text}")
        } else {
            text.to_owned()
        };
        if let Some(name) = long.strip_prefix("--") {
            next_is_value = !name.contains('=') && takes_value(name);
        } else if long.len() == 2 && long.starts_with('-') {
            // A short flag such as `-n 5`.
            let short = long.chars().nth(1);
            next_is_value = command.get_arguments().any(|arg| {
                arg.get_short() == short
                    && arg
                        .get_num_args()
                        .is_some_and(|range| range.min_values() > 0)
            });
        }
        rewritten.push(long.into());
    }
    rewritten
}

/// Parses Go's `time.ParseDuration` syntax (`300ms`, `1.5s`, `1m0s`, `2h45m`, `0`); negative
/// durations are refused.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {text:?}");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
            .ok_or_else(invalid)?;
        let number = &rest[..number_len];
        if number.is_empty() || number == "." {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|ch: char| ch.is_ascii_digit() || ch == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(invalid()),
        };
        total += value * nanos_per_unit;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("parse error: invalid boolean value {text:?}")),
    }
}

/// Parses the process arguments the Go way into `T`.
pub fn parse_args<T: clap::Parser>() -> T {
    let command = T::command();
    T::parse_from(go_style_args(std::env::args_os(), &command))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Flags {
        #[arg(long)]
        topic: Vec<String>,
        #[arg(long, allow_hyphen_values = true)]
        delimiter: Option<String>,
        #[arg(short = 'n', long = "n", default_value_t = 0)]
        n: u64,
        #[arg(long, default_value = "2s", value_parser = parse_go_duration)]
        interval: Duration,
        #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true,
            default_missing_value = "true", value_parser = parse_go_bool)]
        gzip: bool,
    }

    fn parse(args: &[&str]) -> Flags {
        let args = std::iter::once("tool")
            .chain(args.iter().copied())
            .map(OsString::from);
        Flags::try_parse_from(go_style_args(args, &Flags::command())).unwrap()
    }

    #[test]
    fn go_style_flags() {
        let flags = parse(&[
            "-topic",
            "a",
            "--topic=b",
            "-topic=c",
            "-delimiter",
            "-",
            "-n",
            "5",
            "-interval=1m0s",
            "-gzip",
        ]);
        assert_eq!(flags.topic, ["a", "b", "c"]);
        assert_eq!(flags.delimiter.as_deref(), Some("-"));
        assert_eq!(flags.n, 5);
        assert_eq!(flags.interval, Duration::from_secs(60));
        assert!(flags.gzip);
        let flags = parse(&["--n=7", "--gzip=false", "--delimiter", "-x"]);
        assert_eq!(flags.n, 7);
        assert!(!flags.gzip);
        assert_eq!(flags.delimiter.as_deref(), Some("-x"));
        assert_eq!(flags.interval, Duration::from_secs(2));
    }

    #[test]
    fn go_durations() {
        for (text, expected) in [
            ("250ms", Duration::from_millis(250)),
            ("1m0s", Duration::from_secs(60)),
            ("1.5s", Duration::from_millis(1500)),
            ("2h45m", Duration::from_secs(9900)),
            ("0", Duration::ZERO),
            ("100us", Duration::from_micros(100)),
        ] {
            assert_eq!(parse_go_duration(text), Ok(expected), "{text}");
        }
        for bad in ["", "10", "1x", "-1s", "s", ".s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn go_bools() {
        assert_eq!(parse_go_bool("T"), Ok(true));
        assert_eq!(parse_go_bool("0"), Ok(false));
        assert!(parse_go_bool("yes").is_err());
    }
}
