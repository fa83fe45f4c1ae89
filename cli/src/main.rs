//! The `drizzle` command. This first cut runs the deterministic simulator
//! (`drizzle sim SCENARIO --seed N [--json]`); the real-network commands of the CLI
//! contract (tracker, share, list, get, demo) build on the mio driver.

use clap::{Parser, Subcommand};
use drizzle_sim::{run_scenario, Scenario};
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
    /// Run a scenario in the deterministic simulator and print its trace.
    Sim {
        /// standard | integrity | rarest-first
        #[arg(value_parser = parse_scenario)]
        scenario: Scenario,
        /// Master seed: the same seed prints the same bytes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// One JSON object per trace line.
        #[arg(long)]
        json: bool,
    },
}

fn parse_scenario(s: &str) -> Result<Scenario, String> {
    Scenario::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        format!(
            "unknown scenario {s:?} (expected one of: {})",
            names.join(", ")
        )
    })
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match cli.command {
        Command::Sim {
            scenario,
            seed,
            json,
        } => sim(scenario, seed, json),
    }
}

fn sim(scenario: Scenario, seed: u64, json: bool) -> ExitCode {
    let report = run_scenario(scenario, seed);
    for line in &report.trace {
        if json {
            println!("{}", line.json());
        } else {
            println!("{}", line.human());
        }
    }
    if json {
        let summary = serde_json::json!({
            "event": "summary",
            "scenario": scenario.name(),
            "seed": seed,
            "passed": report.passed(),
            "failures": report.failures,
            "virtual_ms": report.virtual_ms,
            "steps": report.steps,
        });
        println!("{summary}");
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "drizzle: scenario {} failed; reproduce with: {}",
            scenario.name(),
            report.reproduce()
        );
        ExitCode::from(1)
    }
}
