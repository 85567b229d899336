//! Logging for the Tide services (`tracing`): levels, RFC 3339 timestamps, structured fields,
//! text for people or JSON lines for log collectors, on stderr. `RUST_LOG` (an `EnvFilter`
//! directive such as `info,tide_scheduler=debug`) wins over `--log-level` when set.

use tracing_subscriber::EnvFilter;

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `2026-12-02T19:00:00.000000Z  WARN tide_scheduler: message field=value`.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?}: expected text or json")),
        }
    }
}

/// Checks a `--log-level` value: `off`, `error`, `warn`, `info`, `debug` or `trace` (per-module
/// directives go in `RUST_LOG`), so a typo is a usage error at start, not silence.
pub fn parse_level(s: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let l = s.to_ascii_lowercase();
    if LEVELS.contains(&l.as_str()) {
        Ok(l)
    } else {
        Err(format!("{s:?}: expected one of {}", LEVELS.join(", ")))
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set and valid, replaces `level`; an
/// invalid `RUST_LOG` is an error naming it.
pub fn init(level: &str, format: LogFormat) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::builder()
            .parse(&directives)
            .map_err(|e| format!("RUST_LOG={directives:?}: {e}"))?,
        _ => EnvFilter::builder()
            .parse(level)
            .map_err(|e| format!("--log-level {level:?}: {e}"))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| format!("installing the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_formats_are_checked() {
        for ok in ["info", "DEBUG", "warn", "error", "off", "trace"] {
            assert!(parse_level(ok).is_ok(), "{ok}");
        }
        assert!(parse_level("loud").unwrap_err().contains("expected one of"));
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert!(
            "yaml"
                .parse::<LogFormat>()
                .unwrap_err()
                .contains("text or json")
        );
    }
}
