//! The `drizzle` command: run a tracker, share a directory, list and get files, run the
//! three reference scenarios over real TCP (`demo`) or in the simulator (`sim`).
//! Its first lines, `--json` events and exit codes are a contract (see README).

mod bench;
mod cleanup;
mod client;
mod demo;
mod exit;
mod http;
mod huge_pages;
mod keys;
mod node;
mod out;
mod progress;
mod serve;
mod sim;
mod status;
mod units;

use clap::{Parser, Subcommand};
use exit::Fail;
use std::net::SocketAddr;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "drizzle",
    version,
    about = "Peer-to-peer file distribution, verified chunk by chunk"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a tracker; prints `listening on IP:PORT`, serves until SIGINT/SIGTERM.
    Tracker {
        /// Address to accept peers on (port 0 picks a free one).
        #[arg(long, default_value = "0.0.0.0:55555", value_parser = units::parse_addr)]
        listen: SocketAddr,
        #[command(flatten)]
        keys: keys::TrackerKeyArgs,
        /// Serve /metrics (Prometheus), /api/swarm (JSON) and a live page at / on this
        /// address (port 0 picks a free one; prints `http on IP:PORT`).
        #[arg(long, value_parser = units::parse_addr)]
        http: Option<SocketAddr>,
    },
    /// Share every regular file under DIR; prints `listening on IP:PORT` first.
    Share(serve::ShareArgs),
    /// List the tracker's files.
    List {
        /// The tracker's address, HOST:PORT or IP:PORT.
        #[arg(long, value_parser = units::parse_addr)]
        tracker: SocketAddr,
        /// One JSON object per file.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        keys: keys::KeyArgs,
    },
    /// A tracker's swarm in the terminal, from the address its `--http` serves on.
    Status(status::StatusArgs),
    /// Download NAME into DIR/NAME, verified chunk by chunk (resumes an interrupted get).
    Get(client::GetArgs),
    /// Run the three reference scenarios on 127.0.0.1 over real TCP.
    Demo {
        #[arg(value_enum, default_value = "all")]
        which: demo::Which,
    },
    /// Measure Drizzle against references on this machine.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Run a scenario in the deterministic simulator (the same seed prints the same bytes).
    #[command(subcommand)]
    Sim(SimCommand),
}

#[derive(Subcommand, Debug)]
enum SimCommand {
    /// 1 tracker, 2 peers exchanging three files; prints the trace.
    Standard(sim::TraceArgs),
    /// A file changed after it was registered is rejected; prints the trace.
    Integrity(sim::TraceArgs),
    /// Rare chunks are fetched first; prints the trace.
    RarestFirst(sim::TraceArgs),
    /// Seeders and N peers all fetching one file; reports completion times against the
    /// lower bound.
    Swarm(Box<sim::SwarmArgs>),
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Time verified transfers between real processes on 127.0.0.1, beside curl, a raw TCP
    /// copy and SHA-256 of the same bytes.
    Transfer(bench::TransferArgs),
    /// Time the simulator on a large swarm: simulated events per second of wall time.
    Sim(bench::SimArgs),
    /// Load one tracker process with many clients registering chunks and locating.
    Tracker(bench::TrackerArgs),
    /// A real swarm of processes, each in its own network namespace with shaped links,
    /// beside the same swarm simulated and the lower bound (root, `ip` and `tc`).
    Swarm(bench::SwarmBenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo and the simulator narrate everything on stdout; logs would only repeat it.
    let quiet = matches!(
        cli.command,
        Command::Demo { .. } | Command::Sim(_) | Command::Bench(_)
    );
    let default_level = if quiet { "off" } else { "warn" };
    // Milliseconds: a transfer's events are seconds apart at most.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
        .format_timestamp_millis()
        .init();
    if matches!(
        cli.command,
        Command::Sim(_) | Command::Bench(BenchCommand::Sim(_))
    ) {
        huge_pages::reexec_for_simulation();
    }
    exit::code(run(cli.command))
}

fn run(command: Command) -> Result<(), Fail> {
    match command {
        Command::Tracker { listen, keys, http } => serve::tracker(listen, &keys, http),
        Command::Share(args) => serve::share(args),
        Command::List {
            tracker,
            json,
            keys,
        } => client::list(tracker, json, &keys),
        Command::Get(args) => client::get(args),
        Command::Status(args) => status::status(&args),
        Command::Demo { which } => demo::demo(which),
        Command::Bench(BenchCommand::Transfer(a)) => bench::transfer(&a),
        Command::Bench(BenchCommand::Sim(a)) => bench::sim(&a),
        Command::Bench(BenchCommand::Tracker(a)) => bench::tracker(&a),
        Command::Bench(BenchCommand::Swarm(a)) => bench::testbed_swarm(&a),
        Command::Sim(SimCommand::Standard(a)) => sim::sim(drizzle_sim::Scenario::Standard, &a),
        Command::Sim(SimCommand::Integrity(a)) => sim::sim(drizzle_sim::Scenario::Integrity, &a),
        Command::Sim(SimCommand::RarestFirst(a)) => {
            sim::sim(drizzle_sim::Scenario::RarestFirst, &a)
        }
        Command::Sim(SimCommand::Swarm(a)) => sim::swarm(&a),
    }
}
