//! `drizzle bench sim`: how fast the simulator runs a large swarm — simulated events per
//! second of wall time — with the swarm's own outcome beside it.

use crate::exit::{Exit, Fail};
use crate::out::say;
use crate::units;
use drizzle_core::manifest::default_chunk_size;
use drizzle_sim::{run_swarm, SwarmConfig};
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct SimArgs {
    #[arg(long, default_value_t = 1000)]
    pub peers: usize,
    #[arg(long, default_value = "100MiB", value_parser = units::parse_size)]
    pub file_size: u64,
    /// Chunk size (default: as `share` chooses for the file, see `default_chunk_size`).
    #[arg(long, value_parser = units::parse_chunk_size)]
    pub chunk_size: Option<u32>,
    /// Runs, with seeds 1, 2, …; with `--grid`, the seeds each cell is run with (its ratios
    /// are their means).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    #[arg(long)]
    pub json: bool,
    /// Run a grid of swarm shapes instead: every peer's time over its own bound, per cell
    /// (peers x file size x latency x equal peers or a fifth of them at a fifth of the
    /// rate), the worst cell first.
    #[arg(long)]
    pub grid: bool,
    /// The grid's peer counts.
    #[arg(long, value_delimiter = ',', default_value = "10,100,500")]
    pub grid_peers: Vec<usize>,
    /// The grid's file sizes.
    #[arg(long, value_delimiter = ',', default_value = "20MiB,100MiB", value_parser = units::parse_size)]
    pub grid_sizes: Vec<u64>,
    /// The grid's one-way latencies, milliseconds.
    #[arg(long, value_delimiter = ',', default_value = "1,20,100")]
    pub grid_latencies: Vec<u64>,
}

pub fn sim(args: &SimArgs) -> Result<(), Fail> {
    if args.peers == 0 || args.runs == 0 {
        return Err(Fail::new(
            Exit::Usage,
            "--peers and --runs must be positive",
        ));
    }
    if args.grid {
        if args.grid_peers.contains(&0) {
            return Err(Fail::new(Exit::Usage, "--grid-peers must be positive"));
        }
        let grid = super::grid::Grid {
            peers: args.grid_peers.clone(),
            sizes: args.grid_sizes.clone(),
            latencies_ms: args.grid_latencies.clone(),
            chunk_size: args.chunk_size,
            seeds: args.runs as u64,
        };
        return super::grid::run_grid(&grid, args.json);
    }
    let mut rates = Vec::new();
    for run in 0..args.runs {
        let config = SwarmConfig {
            file_size: args.file_size,
            chunk_size: (args.chunk_size).unwrap_or_else(|| default_chunk_size(args.file_size)),
            ..SwarmConfig::new(args.peers, run as u64 + 1)
        };
        let r = run_swarm(&config);
        let rate = r.events as f64 / r.wall_secs.max(1e-9);
        rates.push(rate);
        let s = r.spread();
        if args.json {
            let line = json!({
                "event": "run", "run": run, "peers": args.peers, "events": r.events,
                "wall_secs": r.wall_secs, "events_per_sec": rate,
                "virtual_secs": r.virtual_ms as f64 / 1000.0,
                "finished": r.finished(), "median_ratio": s.median / config.bound_secs(),
            });
            say!("{line}");
        } else {
            say!(
                "run {run}: {} peers, {} events in {:.1} s wall ({:.0} events/s), {:.1} s simulated; {} finished, median {:.2}x the bound",
                args.peers, r.events, r.wall_secs, rate, r.virtual_ms as f64 / 1000.0,
                r.finished(), s.median / config.bound_secs()
            );
        }
    }
    let (median, min, max) = super::median(rates);
    if args.json {
        let events_per_sec = super::spread_json((median, min, max));
        let line = json!({"event": "summary", "runs": args.runs, "events_per_sec": events_per_sec});
        say!("{line}");
    } else {
        say!(
            "median of {} runs: {median:.0} events/s (min {min:.0}, max {max:.0})",
            args.runs
        );
    }
    Ok(())
}
