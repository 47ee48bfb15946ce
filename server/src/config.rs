//! Configuration (SPEC §0): command-line flags over an optional TOML file over
//! embedded defaults. Validation happens here, before anything touches the
//! system (ripgrep's low-args → high-args split): a bad value is an error that
//! names its key, and nothing has been opened yet.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The most event-loop threads (each has a delivery shard; a connection id
/// keeps an 8-bit loop index, 0 for the event loop and 255 for the C ABI's
/// in-process sessions, [`crate::local::LOCAL_REACTOR`]).
pub const MAX_REACTORS: usize = 254;
const _: () = assert!(MAX_REACTORS < crate::local::LOCAL_REACTOR);
/// Longest parse message of toml (and serde) quoted in a config error.
const MAX_MESSAGE_LEN: usize = 200;

use floorbell_core::echo::{cut, Echo};
use serde::Deserialize;

/// `floorbell serve`'s flags. Each is also a key of the `--config` file,
/// spelled the same without the leading dashes.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below, plus `callback-queue-bytes` and `stream-budget-bytes` (README, "Running it"); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0:8000].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Data directory [default: ./floorbell-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Number of ticket tables, 0 … N-1 [default: 16].
    #[arg(long, value_name = "N")]
    pub tables: Option<u32>,
    /// Most tickets waiting for staff at once; a kiosk's `new` beyond it is
    /// refused [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_waiting_tickets: Option<usize>,
    /// Seconds a QR event is retained [default: 300].
    #[arg(long, value_name = "SECS")]
    pub event_retention: Option<u64>,
    /// Days of order history, closed tickets and their visitors kept [default: 14].
    #[arg(long, value_name = "N")]
    pub history_days: Option<u32>,
    /// Token for the QR-menu poll (generated and stored when absent).
    #[arg(long, value_name = "TOKEN")]
    pub qr_token: Option<String>,
    /// Admin token (generated and stored when absent).
    #[arg(long, value_name = "TOKEN")]
    pub admin_token: Option<String>,
    /// Seconds a WebSocket client has to authenticate [default: 20].
    #[arg(long, value_name = "SECS")]
    pub ws_auth_timeout: Option<u64>,
    /// Bytes queued for one WebSocket client before it is closed [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub ws_max_queue: Option<u64>,
    /// Most simultaneous connections [default: 50000].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Do not announce the server with multicast DNS-SD.
    #[arg(long)]
    pub no_mdns: bool,
    /// Event loops (one per core when 0) [default: 0].
    #[arg(long, value_name = "N")]
    pub reactors: Option<usize>,
    /// Pin event loop i to CPU i (mod the CPUs this process may use), like
    /// nginx's worker_cpu_affinity: lower tail latency on a dedicated
    /// machine, worse on one where other programs keep a core busy.
    #[arg(long)]
    pub pin_reactors: bool,
    /// Log level or filter (off, error, warn, info, debug, trace; RUST_LOG also works) [default: info].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

/// The `--config` file: the flags' names as keys, plus two bounds that have
/// no flag: `callback-queue-bytes` (only a host program's subscribers use
/// it, and a host gives its settings as this file's text) and
/// `stream-budget-bytes` (a memory bound few will change); an unknown key is
/// an error.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    tables: Option<u32>,
    max_waiting_tickets: Option<usize>,
    event_retention: Option<u64>,
    history_days: Option<u32>,
    qr_token: Option<String>,
    admin_token: Option<String>,
    ws_auth_timeout: Option<u64>,
    ws_max_queue: Option<u64>,
    max_connections: Option<usize>,
    no_mdns: Option<bool>,
    reactors: Option<usize>,
    pin_reactors: Option<bool>,
    log_level: Option<String>,
    callback_queue_bytes: Option<usize>,
    stream_budget_bytes: Option<usize>,
}

/// A configuration error, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown key or a wrong type.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message (it names the key and the line).
        message: String,
    },
    /// A value is out of range.
    #[error("invalid value for `{key}`: {message}")]
    Invalid {
        /// The key (flag name without dashes).
        key: &'static str,
        /// Why.
        message: String,
    },
}

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Ticket tables (SPEC §2).
    pub tables: u32,
    /// Most tickets waiting at once (a kiosk flood's bound).
    pub max_waiting_tickets: usize,
    /// QR event retention (SPEC §1).
    pub event_retention: Duration,
    /// Order history (SPEC §3.3).
    pub history_days: u32,
    /// The QR token, when given (else the stored or generated one).
    pub qr_token: Option<String>,
    /// The admin token, when given (else the stored or generated one).
    pub admin_token: Option<String>,
    /// WebSocket authentication window (SPEC §3.4).
    pub ws_auth_timeout: Duration,
    /// WebSocket send-queue bound (SPEC §3.5).
    pub ws_max_queue: u64,
    /// Connection cap (SPEC §0).
    pub max_connections: usize,
    /// Whether to announce by mDNS (SPEC §3.7).
    pub mdns: bool,
    /// Event loops; 0 means one per core.
    pub reactors: usize,
    /// Whether each event loop is pinned to a CPU of its own.
    pub pin_reactors: bool,
    /// Log filter.
    pub log_level: String,
    /// Bound of the changes waiting for C-ABI subscriber callbacks, bytes
    /// (see [`crate::local`]).
    pub callback_queue_bytes: usize,
    /// Bytes of events that the long (streamed) poll answers being sent
    /// may hold at once, all connections together (see
    /// [`crate::http::StreamBudget`]).
    pub stream_budget_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8000)),
            data_dir: PathBuf::from("floorbell-data"),
            tables: 16,
            max_waiting_tickets: floorbell_core::tickets::DEFAULT_MAX_WAITING,
            event_retention: Duration::from_secs(300),
            history_days: 14,
            qr_token: None,
            admin_token: None,
            ws_auth_timeout: Duration::from_secs(20),
            ws_max_queue: 1024 * 1024,
            max_connections: 50_000,
            mdns: true,
            reactors: 0,
            pin_reactors: false,
            log_level: "info".into(),
            callback_queue_bytes: crate::local::DEFAULT_CALLBACK_QUEUE_BYTES,
            stream_budget_bytes: crate::http::MAX_STREAMED_BYTES,
        }
    }
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

fn check_token(key: &'static str, token: &Option<String>) -> Result<(), ConfigError> {
    match token {
        Some(t) if t.is_empty() => Err(invalid(key, "must not be empty")),
        Some(t) if t.len() > 256 => Err(invalid(key, "longer than 256 bytes")),
        // The token travels in a header: printable ASCII without spaces.
        Some(t) if !t.bytes().all(|b| b.is_ascii_graphic()) => {
            Err(invalid(key, "must be printable ASCII without spaces"))
        }
        _ => Ok(()),
    }
}

impl Config {
    /// Merges flags over the file (if any) over the defaults, and validates.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the offending key.
    pub fn from_args(args: &ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    /// The configuration of an engine opened by a host program (the C ABI):
    /// `toml` is the text of a `--config` file (or empty), and `data_dir`
    /// wins over any `data-dir` in it.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the offending key.
    pub fn from_toml_text(toml_text: &str, data_dir: &Path) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(toml_text)
            .map_err(|e| parse_error("<config text>".into(), toml_text, &e))?;
        let args = ServeArgs {
            data_dir: Some(data_dir.to_path_buf()),
            ..Default::default()
        };
        Self::merge(&args, file)
    }

    fn merge(args: &ServeArgs, file: FileConfig) -> Result<Config, ConfigError> {
        let d = Config::default();
        let listen_text = args.listen.clone().or(file.listen);
        let listen = match listen_text {
            Some(text) => text.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "listen",
                    format!(
                        "{} is not HOST:PORT (an IP address and a port)",
                        Echo(&text)
                    ),
                )
            })?,
            None => d.listen,
        };
        let tables = args.tables.or(file.tables).unwrap_or(d.tables);
        if tables == 0 || tables > 10_000 {
            return Err(invalid("tables", "must be between 1 and 10000"));
        }
        let max_waiting_tickets = args
            .max_waiting_tickets
            .or(file.max_waiting_tickets)
            .unwrap_or(d.max_waiting_tickets);
        if max_waiting_tickets == 0 || max_waiting_tickets > 1_000_000 {
            return Err(invalid(
                "max-waiting-tickets",
                "must be between 1 and 1000000",
            ));
        }
        let retention = args.event_retention.or(file.event_retention).unwrap_or(300);
        if retention == 0 || retention > 7 * 24 * 3600 {
            return Err(invalid(
                "event-retention",
                "must be between 1 and 604800 seconds",
            ));
        }
        let history_days = args
            .history_days
            .or(file.history_days)
            .unwrap_or(d.history_days);
        if history_days == 0 || history_days > 3650 {
            return Err(invalid("history-days", "must be between 1 and 3650"));
        }
        let ws_auth = args.ws_auth_timeout.or(file.ws_auth_timeout).unwrap_or(20);
        if ws_auth == 0 || ws_auth > 3600 {
            return Err(invalid(
                "ws-auth-timeout",
                "must be between 1 and 3600 seconds",
            ));
        }
        let ws_max_queue = args
            .ws_max_queue
            .or(file.ws_max_queue)
            .unwrap_or(d.ws_max_queue);
        if !(1024..=1 << 30).contains(&ws_max_queue) {
            return Err(invalid(
                "ws-max-queue",
                "must be between 1024 and 1073741824 bytes",
            ));
        }
        let max_connections = args
            .max_connections
            .or(file.max_connections)
            .unwrap_or(d.max_connections);
        if max_connections == 0 {
            return Err(invalid("max-connections", "must be at least 1"));
        }
        let reactors = args.reactors.or(file.reactors).unwrap_or(0);
        if reactors > MAX_REACTORS {
            return Err(invalid(
                "reactors",
                "must be between 0 (one per core) and 254",
            ));
        }
        let callback_queue_bytes = file.callback_queue_bytes.unwrap_or(d.callback_queue_bytes);
        if !(1024..=1 << 40).contains(&callback_queue_bytes) {
            return Err(invalid(
                "callback-queue-bytes",
                "must be between 1024 and 1099511627776 bytes",
            ));
        }
        let stream_budget_bytes = file.stream_budget_bytes.unwrap_or(d.stream_budget_bytes);
        if !(1024..=1 << 40).contains(&stream_budget_bytes) {
            return Err(invalid(
                "stream-budget-bytes",
                "must be between 1024 and 1099511627776 bytes",
            ));
        }
        let qr_token = args.qr_token.clone().or(file.qr_token);
        check_token("qr-token", &qr_token)?;
        let admin_token = args.admin_token.clone().or(file.admin_token);
        check_token("admin-token", &admin_token)?;
        let log_level = args
            .log_level
            .clone()
            .or(file.log_level)
            .unwrap_or(d.log_level);
        if !is_log_filter(&log_level) {
            return Err(invalid(
                "log-level",
                format!("{} is not a level or filter", Echo(&log_level)),
            ));
        }
        Ok(Config {
            listen,
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or(d.data_dir),
            tables,
            max_waiting_tickets,
            event_retention: Duration::from_secs(retention),
            history_days,
            qr_token,
            admin_token,
            ws_auth_timeout: Duration::from_secs(ws_auth),
            ws_max_queue,
            max_connections,
            mdns: !(args.no_mdns || file.no_mdns.unwrap_or(false)),
            reactors,
            pin_reactors: args.pin_reactors || file.pin_reactors.unwrap_or(false),
            log_level,
            callback_queue_bytes,
            stream_budget_bytes,
        })
    }

    /// The number of event loops to run.
    pub fn reactor_count(&self) -> usize {
        if self.reactors > 0 {
            self.reactors
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(MAX_REACTORS)
        }
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| parse_error(path.into(), &text, &e))
}

/// toml's error for `text`, without the source line it would quote: that
/// line may hold a token (`admin_token = "…"` misspelt is an unknown key),
/// and the message goes to standard error or back to a host program. Said
/// instead: where (line and column), the key on that line, and toml's
/// message, unless the key names a token and the message could quote its
/// value (a wrong type does).
fn parse_error(path: PathBuf, text: &str, e: &toml::de::Error) -> ConfigError {
    // toml and serde quote the offending value or key whole (a 10 MB
    // string in config text handed to the C ABI would be a 10 MB message).
    let whole = e.message().trim_end();
    let message = if let Some((field, expected)) = unknown_field(whole) {
        // The list of keys is ours and whole; only the key is echoed.
        format!("unknown field {}, expected one of {expected}", Echo(field))
    } else {
        let message = cut(whole, MAX_MESSAGE_LEN);
        if message.len() < whole.len() {
            format!("{message}…")
        } else {
            message.to_owned()
        }
    };
    let Some(span) = e.span() else {
        return ConfigError::Parse { path, message };
    };
    // toml's spans fall on character boundaries; a wrong one must not
    // panic here.
    let mut start = span.start.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let before = &text[..start];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_no = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line
        .split('=')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches(|c| c == '"' || c == '\'');
    let message: &str =
        if key.to_ascii_lowercase().contains("token") && !message.starts_with("unknown field") {
            "its value is not valid there (not shown: it may be a secret)"
        } else {
            &message
        };
    let message = if key.is_empty() || key.len() > 64 {
        format!("line {line_no}, column {column}: {message}")
    } else {
        format!("line {line_no}, column {column}, `{key}`: {message}")
    };
    ConfigError::Parse { path, message }
}

/// serde's ``unknown field `KEY`, expected one of `a`, `b`…``, split into
/// the key and the list.
fn unknown_field(message: &str) -> Option<(&str, &str)> {
    const EXPECTED: &str = "`, expected one of ";
    let rest = message.strip_prefix("unknown field `")?;
    let at = rest.rfind(EXPECTED)?;
    Some((&rest[..at], &rest[at + EXPECTED.len()..]))
}

/// Whether `filter` is a log level (`error` … `trace`, `off`) or a
/// `tracing` filter whose every directive ends in one (`floorbell=debug`).
/// `EnvFilter` alone takes a bare unknown word as a target name, so a
/// misspelt level (`warning`) would silently log nothing.
pub fn is_log_filter(filter: &str) -> bool {
    use tracing_subscriber::filter::LevelFilter;
    tracing_subscriber::EnvFilter::try_new(filter).is_ok()
        && filter
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .all(|d| {
                // Span and field filters (`target[span{f=1}]=debug`) are
                // left to EnvFilter.
                let level = d.rsplit_once('=').map_or(d, |(_, level)| level);
                d.contains('[') || level.parse::<LevelFilter>().is_ok()
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_file(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("floorbell.toml");
        std::fs::write(&path, text).unwrap();
        Config::from_args(&ServeArgs {
            config: Some(path),
            ..Default::default()
        })
    }

    #[test]
    fn defaults_are_the_spec_s() {
        let c = Config::from_args(&ServeArgs::default()).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:8000");
        assert_eq!(c.data_dir, PathBuf::from("floorbell-data"));
        assert_eq!(
            (c.tables, c.history_days, c.max_connections),
            (16, 14, 50_000)
        );
        assert_eq!(c.event_retention, Duration::from_secs(300));
        assert_eq!(c.ws_auth_timeout, Duration::from_secs(20));
        assert_eq!(c.ws_max_queue, 1_048_576);
        assert_eq!(c.max_waiting_tickets, 10_000);
        assert!(c.mdns);
    }

    #[test]
    fn file_values_and_flag_overrides() {
        let c = with_file("listen = \"127.0.0.1:9000\"\nevent-retention = 60\nno-mdns = true\n")
            .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.event_retention, Duration::from_secs(60));
        assert!(!c.mdns);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(&path, "event-retention = 60\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            event_retention: Some(5),
            ..Default::default()
        };
        assert_eq!(
            Config::from_args(&args).unwrap().event_retention,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn config_text_for_the_c_abi() {
        let dir = Path::new("/tmp/x");
        let c = Config::from_toml_text("event-retention = 7\ndata-dir = \"/elsewhere\"\n", dir)
            .unwrap();
        assert_eq!(
            (c.event_retention, c.data_dir.as_path()),
            (Duration::from_secs(7), dir)
        );
        assert!(Config::from_toml_text("", dir).is_ok());
        let e = Config::from_toml_text("nope = 1", dir)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
        assert_eq!(c.callback_queue_bytes, 64 << 20);
        let c = Config::from_toml_text("callback-queue-bytes = 4096", dir).unwrap();
        assert_eq!(c.callback_queue_bytes, 4096);
        for bad in ["callback-queue-bytes = 1023", "callback-queue-bytes = -1"] {
            let e = Config::from_toml_text(bad, dir).unwrap_err().to_string();
            assert!(e.contains("callback-queue-bytes"), "{bad}: {e}");
        }
        assert_eq!(c.stream_budget_bytes, 256 << 20);
        let c = Config::from_toml_text("stream-budget-bytes = 1048576", dir).unwrap();
        assert_eq!(c.stream_budget_bytes, 1 << 20);
        for bad in ["stream-budget-bytes = 10", "stream-budget-bytes = \"big\""] {
            let e = Config::from_toml_text(bad, dir).unwrap_err().to_string();
            assert!(e.contains("stream-budget-bytes"), "{bad}: {e}");
        }
        // A huge value or key is never quoted whole (toml's message does).
        let huge = "x".repeat(1 << 20);
        for bad in [
            format!("tables = \"{huge}\""),
            format!("{huge} = 1"),
            format!("listen = \"{huge}\""),
            format!("log-level = \"{huge}\""),
        ] {
            let e = Config::from_toml_text(&bad, dir).unwrap_err().to_string();
            assert!(e.len() < 1000 && e.contains("xxx"), "{}: {e}", &bad[..20]);
        }
        // An unknown key's error lists every key, the last one included,
        // however long the key.
        for key in ["bogus-key".to_owned(), format!("\"{huge}\"")] {
            let e = Config::from_toml_text(&format!("{key} = 1"), dir)
                .unwrap_err()
                .to_string();
            assert!(e.len() < 1000, "{e}");
            assert!(
                e.contains("unknown field \"") && e.ends_with("`stream-budget-bytes`"),
                "{e}"
            );
        }
    }

    #[test]
    fn reactor_indices_stay_below_the_local_sessions_one() {
        let dir = Path::new("/tmp/x");
        let c = Config::from_toml_text("reactors = 254", dir).unwrap();
        assert_eq!(c.reactor_count(), 254);
        for n in [255, 256, 1000] {
            let e = Config::from_toml_text(&format!("reactors = {n}"), dir)
                .unwrap_err()
                .to_string();
            assert!(e.contains("reactors"), "{e}");
        }
        let c = Config::from_toml_text("", dir).unwrap();
        assert!((1..=MAX_REACTORS).contains(&c.reactor_count()));
    }

    /// toml quotes the offending line in its message; a misspelt or
    /// mistyped token line would put the token on standard error.
    #[test]
    fn a_config_error_never_shows_a_token() {
        let dir = Path::new("/tmp/x");
        for (text, key) in [
            ("admin_token = \"hunter2hunter2\"\n", "admin_token"),
            ("\nadmin-token = 1234567890\n", "admin-token"),
            ("qr-token = hunter2hunter2\n", "qr-token"),
            ("qr-token = [\"hunter2hunter2\"]\n", "qr-token"),
        ] {
            let e = Config::from_toml_text(text, dir).unwrap_err().to_string();
            assert!(
                !e.contains("hunter2") && !e.contains("1234567890"),
                "{text}: {e}"
            );
            assert!(e.contains(key) && e.contains("line "), "{text}: {e}");
        }
        let e = with_file("tables = 16\nevent-retention = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("event-retention"), "{e}");
    }

    /// EnvFilter takes an unknown bare word for a target name: `warning`
    /// would log nothing at all.
    #[test]
    fn a_misspelt_log_level_is_refused() {
        let dir = Path::new("/tmp/x");
        for good in ["info", "WARN", "off", "floorbell=debug,warn", "trace"] {
            assert!(
                Config::from_toml_text(&format!("log-level = {good:?}"), dir).is_ok(),
                "{good}"
            );
        }
        for bad in ["warning", "verbose", "floorbell=loud", "info,chatty"] {
            let e = Config::from_toml_text(&format!("log-level = {bad:?}"), dir)
                .unwrap_err()
                .to_string();
            assert!(e.contains("log-level"), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_name_the_key() {
        let e = with_file("bogus-key = 1\n").unwrap_err().to_string();
        assert!(e.contains("bogus-key"), "{e}");
        let e = with_file("event-retention = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("event-retention"), "{e}");
        let e = with_file("event-retention = 0\n").unwrap_err().to_string();
        assert!(e.contains("event-retention"), "{e}");
        let e = with_file("listen = \"nowhere\"\n").unwrap_err().to_string();
        assert!(e.contains("listen"), "{e}");
        let e = with_file("qr-token = \"has space\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("qr-token"), "{e}");
        for bad in ["0", "1000001"] {
            let e = with_file(&format!("max-waiting-tickets = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("max-waiting-tickets"), "{e}");
        }
        let c = with_file("max-waiting-tickets = 3\n").unwrap();
        assert_eq!(c.max_waiting_tickets, 3);
    }
}
