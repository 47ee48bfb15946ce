//! `floorbell`: the command line. Everything it runs lives in the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use floorbell_server::config::{Config, ServeArgs};
use floorbell_server::engine::Engine;
use floorbell_server::server::Server;

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
    Serve(ServeArgs),
    /// Print the stored QR and admin tokens of a data directory.
    Tokens {
        /// Data directory.
        #[arg(long, value_name = "DIR", default_value = "floorbell-data")]
        data_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Tokens { data_dir } => tokens(&data_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floorbell: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let config = Config::from_args(args)?;
    init_logging(&config.log_level);
    let reactors = config.reactor_count();
    let data_dir = config.data_dir.clone();
    let listen = config.listen;
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
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("cannot install signal handlers")?;
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

fn init_logging(level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
