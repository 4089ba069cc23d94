//! The `outpost` command: argument parsing and wiring of the Outpost crates.

mod cloud;
mod dev;
mod edge;
mod loadtest;
mod modes;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: the edge's network path and the load generator
/// allocate a small buffer per datagram on every thread (`docs/PERFORMANCE.md`,
/// "The allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Outpost: real-time game and AR edge platform.
#[derive(Parser)]
#[command(name = "outpost", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an edge and a match of bots on this machine, with a live status line.
    Dev(dev::DevArgs),
    /// Run an edge server.
    Edge(edge::EdgeArgs),
    /// Run the cloud services' HTTP API (auth).
    Cloud(cloud::CloudArgs),
    /// Load-test an edge (or the full stack) with simulated players; reports figures.
    Loadtest(loadtest::LoadtestArgs),
    /// Print the credential an edge presents to the cloud, derived for its id from the
    /// fleet's edge secret.
    EdgeCredential(cloud::EdgeCredentialArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    match &cli.command {
        Command::Loadtest(args) => {
            runtime.worker_threads(args.runtime_threads());
            let nice = args.nice();
            // Only the runtime's threads: a spawned edge is started from this one and
            // keeps its priority.
            runtime.on_thread_start(move || {
                if let Err(e) = edge::lower_thread_priority(nice) {
                    eprintln!("outpost loadtest: cannot lower a thread's priority: {e}");
                }
            });
        }
        Command::Edge(args) => {
            runtime.worker_threads(args.net_threads());
            let nice = args.net_nice();
            // Only the runtime's threads: the simulation threads are spawned from this
            // one and keep its priority.
            runtime.on_thread_start(move || {
                if let Err(e) = edge::lower_thread_priority(nice) {
                    eprintln!("outpost edge: cannot lower a network thread's priority: {e}");
                }
            });
        }
        _ => {}
    }
    let runtime = runtime.enable_all().build()?;
    match cli.command {
        Command::Dev(args) => runtime.block_on(dev::run(args)),
        Command::Edge(args) => runtime.block_on(edge::run(args)),
        Command::Cloud(args) => runtime.block_on(cloud::run(args)),
        Command::Loadtest(args) => runtime.block_on(loadtest::run(args)),
        Command::EdgeCredential(args) => cloud::edge_credential(&args),
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: the given level).
pub(crate) fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM); says which.
pub(crate) async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return ctrl_c().await,
            };
        tokio::select! {
            name = ctrl_c() => name,
            _ = term.recv() => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    ctrl_c().await
}

async fn ctrl_c() -> &'static str {
    match tokio::signal::ctrl_c().await {
        Ok(()) => "Ctrl-C",
        Err(_) => std::future::pending().await,
    }
}

/// A secret kept in a file (surrounding whitespace dropped), at least 16 characters.
pub(crate) fn read_secret(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    let secret = std::fs::read_to_string(path)
        .map_err(|err| anyhow::anyhow!("reading {}: {err}", path.display()))?
        .trim()
        .to_owned();
    anyhow::ensure!(
        secret.chars().count() >= 16,
        "{what} in {} must be at least 16 characters",
        path.display()
    );
    Ok(secret)
}
