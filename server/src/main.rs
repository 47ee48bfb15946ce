//! `floorbell`: the command line. Everything it runs lives in the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use floorbell_server::config::{Config, ServeArgs};
use floorbell_server::engine::Engine;
use floorbell_server::server::Server;
use tracing_subscriber::prelude::*;

/// floorbell: a restaurant-floor notification engine.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Print the stored QR and admin tokens of a data directory.
    Tokens {
        /// Data directory.
        #[arg(long, value_name = "DIR", default_value = "floorbell-data")]
        data_dir: PathBuf,
    },
    /// Manage the staff accounts of the ticket board (SPEC §2).
    Staff {
        #[command(subcommand)]
        action: StaffAction,
        /// Data directory.
        #[arg(
            long,
            value_name = "DIR",
            default_value = "floorbell-data",
            global = true
        )]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum StaffAction {
    /// Create an account and print its token (shown only now).
    Add {
        /// The staff member's name.
        name: String,
    },
    /// List the accounts (names only).
    List,
    /// Remove an account.
    Remove {
        /// The staff member's name.
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Tokens { data_dir } => tokens(&data_dir),
        Command::Staff { action, data_dir } => staff(action, &data_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floorbell: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// `e` and its causes on one line, each cause only where its text adds to
/// what is already said: our errors quote their source in their message,
/// so `{e:#}` said `store error: file is not a database: file is not a
/// database: Error code 26: …`.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let config = Config::from_args(args)?;
    init_logging(&config.log_level);
    floorbell_server::fdlimit::raise();
    let reactors = config.reactor_count();
    let data_dir = config.data_dir.clone();
    let listen = config.listen;
    // Before the store is opened (replaying it can take a while): a
    // SIGTERM meanwhile still ends the run as SPEC §0 says, with exit 0.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("cannot install signal handlers")?;
    let (engine, generated) = Engine::open(config)?;
    for t in &generated {
        // Shown once, on purpose outside the log (tokens never go to the log).
        eprintln!(
            "floorbell: generated {}: {} (stored in {}; `floorbell tokens --data-dir {}` shows it again)",
            t.name,
            t.value,
            data_dir.display(),
            data_dir.display()
        );
    }
    if let Some(signal) = signals.pending().next() {
        tracing::info!(
            signal,
            "stopping before serving: a signal came while the store opened"
        );
        engine.shutdown();
        return Ok(());
    }
    let mut server = Server::start(engine.clone(), listen, reactors)
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = server.local_addr();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, reactors, data_dir = %data_dir.display(), "floorbell is serving");
    if let Some(signal) = signals.forever().next() {
        tracing::info!(
            signal,
            "stopping: no new connections, finishing pending commits"
        );
    }
    server.stop();
    engine.shutdown();
    // A supervisor restarting on failure sees this run end as one.
    if let Some(reason) = engine.halted() {
        anyhow::bail!("stopped after a store failure: {reason}");
    }
    tracing::info!("stopped");
    Ok(())
}

fn tokens(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let t = Engine::stored_tokens(data_dir)
        .with_context(|| format!("cannot read the tokens in {}", data_dir.display()))?;
    println!("qr-token: {}", t.qr);
    println!("admin-token: {}", t.admin);
    Ok(())
}

/// `floorbell staff …` on the data directory. Changes need the directory to
/// themselves: while a server holds it, the command says so and points to the
/// HTTP call that does the same through the running server (which then sees
/// the change at once). Listing reads the store read-only and works always.
fn staff(action: StaffAction, data_dir: &std::path::Path) -> anyhow::Result<()> {
    use floorbell_core::store::{Store, StoreError, StoreOp};
    use floorbell_core::tickets::StaffAccount;
    let open_for_change = || match Store::open(data_dir) {
        Err(StoreError::Locked(_)) => Err(anyhow::anyhow!(
            "a running floorbell server holds {}; while it runs, change staff through it: \
             POST /api/tickets/staff or DELETE /api/tickets/staff/NAME with the admin token",
            data_dir.display()
        )),
        other => Ok(other?),
    };
    match action {
        StaffAction::List => {
            let store = Store::open_read_only(data_dir)
                .with_context(|| format!("cannot read {}", data_dir.display()))?;
            for account in store.load_staff()? {
                println!("{}", account.name);
            }
        }
        StaffAction::Add { name } => {
            floorbell_server::api::check_staff_name(&name).map_err(|m| anyhow::anyhow!("{m}"))?;
            let mut store = open_for_change()?;
            if store.load_staff()?.iter().any(|a| a.name == name) {
                anyhow::bail!("a staff member named {name:?} already exists");
            }
            let token = floorbell_server::engine::random_token();
            let token_hash = floorbell_server::engine::hash_token(&token);
            store.commit(&[StoreOp::PutStaff(StaffAccount {
                name: name.clone(),
                token_hash,
            })])?;
            println!("name: {name}");
            println!("token: {token}");
        }
        StaffAction::Remove { name } => {
            let mut store = open_for_change()?;
            if !store.load_staff()?.iter().any(|a| a.name == name) {
                anyhow::bail!("no staff member is named {name:?}");
            }
            store.commit(&[StoreOp::DeleteStaff(name.clone())])?;
            println!("removed {name}");
        }
    }
    Ok(())
}

/// Logs to standard error, filtered by `RUST_LOG` when it is set and valid,
/// else by `level` (`--log-level`, already checked). An invalid `RUST_LOG`
/// is said, not silently dropped.
fn init_logging(level: &str) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if floorbell_server::config::is_log_filter(&v) => v,
        Ok(v) => {
            eprintln!("floorbell: RUST_LOG={v:?} is not a log level or filter; using {level:?}");
            level.to_owned()
        }
        Err(_) => level.to_owned(),
    };
    // ureq logs a webhook receiver's whole URL at debug level when trace
    // is on, query included, and a query may carry the receiver's key
    // (README: receivers are logged by scheme, host and path only). So
    // ureq's lines are written at info level and above only, whatever the
    // filter asks.
    let no_urls = tracing_subscriber::filter::filter_fn(|meta| {
        *meta.level() <= tracing::Level::INFO || !meta.target().starts_with("ureq")
    });
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(filter))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_target(false)
                .with_filter(no_urls),
        )
        .init();
}
