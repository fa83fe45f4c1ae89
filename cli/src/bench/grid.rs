//! `drizzle bench sim --grid`: many swarm shapes in the simulator — peers, file size,
//! latency, equal peers or a mix where a fifth of them have a fifth of the rate — each
//! peer's time against its own lower bound, averaged over seeds; the worst cell first.

use crate::exit::Fail;
use crate::out::{say, warn_user};
use crate::sim::PROGRESS_EVERY;
use crate::units;
use drizzle_core::manifest::default_chunk_size;
use drizzle_sim::{run_swarm, Mix, SwarmConfig};
use serde_json::json;
use std::sync::Mutex;
use std::time::Instant;

/// One cell of the grid and how it went.
struct Cell {
    peers: usize,
    file_size: u64,
    latency_ms: u64,
    mixed: bool,
    /// Median and largest of each peer's time over its own bound (means over the seeds).
    median_ratio: f64,
    last_ratio: f64,
    /// The median and last peer's times over `SwarmConfig::relay_bound_secs` (means).
    median_relay_ratio: f64,
    last_relay_ratio: f64,
    /// Peers that finished, in the seed's run where fewest did.
    finished: usize,
    /// All the seeds' runs together.
    wall_secs: f64,
}

/// The grid's axes.
pub struct Grid {
    pub peers: Vec<usize>,
    pub sizes: Vec<u64>,
    pub latencies_ms: Vec<u64>,
    /// `None`: each file size in its own `default_chunk_size`.
    pub chunk_size: Option<u32>,
    /// Each cell is run with seeds 1 to this: one seed's swarm moves by a few hundredths
    /// when anything changes the random draws, so comparing builds wants several.
    pub seeds: u64,
}

/// Runs every cell, two at a time on a machine with two cores or more, and reports them.
pub fn run_grid(grid: &Grid, json: bool) -> Result<(), Fail> {
    let mut shapes = Vec::new();
    for &peers in &grid.peers {
        for &file_size in &grid.sizes {
            for &latency_ms in &grid.latencies_ms {
                for mixed in [false, true] {
                    shapes.push((peers, file_size, latency_ms, mixed));
                }
            }
        }
    }
    let total = shapes.len();
    let next = Mutex::new(shapes.into_iter());
    let done = Mutex::new(Vec::new());
    // A grid takes minutes and reports only at the end (worst first): it says how far it
    // is on stderr, as a long `sim swarm` does.
    let started = Instant::now();
    let told = Mutex::new(started);
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(2);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let shape = next.lock().ok().and_then(|mut n| n.next());
                let Some((peers, file_size, latency_ms, mixed)) = shape else {
                    return;
                };
                let runs = (1..=grid.seeds.max(1)).map(|seed| {
                    run_cell(peers, file_size, latency_ms, mixed, grid.chunk_size, seed)
                });
                let cell = mean_cell(runs.collect());
                let Ok(mut d) = done.lock() else {
                    return;
                };
                d.push(cell);
                if let Ok(mut t) = told.lock() {
                    if t.elapsed() >= PROGRESS_EVERY && d.len() < total {
                        *t = Instant::now();
                        let secs = started.elapsed().as_secs_f64();
                        warn_user!(
                            "drizzle: grid: {}/{total} cells done in {secs:.0} s",
                            d.len()
                        );
                    }
                }
            });
        }
    });
    let mut cells = done.into_inner().unwrap_or_default();
    cells.sort_by(|a, b| b.last_ratio.total_cmp(&a.last_ratio));
    report(&cells, grid.seeds.max(1), json);
    Ok(())
}

/// One cell's runs (at least one, all of the same shape) as one: ratios averaged.
fn mean_cell(runs: Vec<Cell>) -> Cell {
    let n = runs.len().max(1) as f64;
    let mean = |f: fn(&Cell) -> f64| runs.iter().map(f).sum::<f64>() / n;
    let first = runs.first();
    Cell {
        peers: first.map_or(0, |c| c.peers),
        file_size: first.map_or(0, |c| c.file_size),
        latency_ms: first.map_or(0, |c| c.latency_ms),
        mixed: first.is_some_and(|c| c.mixed),
        median_ratio: mean(|c| c.median_ratio),
        last_ratio: mean(|c| c.last_ratio),
        median_relay_ratio: mean(|c| c.median_relay_ratio),
        last_relay_ratio: mean(|c| c.last_relay_ratio),
        finished: runs.iter().map(|c| c.finished).min().unwrap_or(0),
        wall_secs: runs.iter().map(|c| c.wall_secs).sum(),
    }
}

fn run_cell(
    peers: usize,
    file_size: u64,
    latency_ms: u64,
    mixed: bool,
    chunk: Option<u32>,
    seed: u64,
) -> Cell {
    let fifth_slow = Mix(vec![(10_000_000, 4.0), (2_000_000, 1.0)]);
    let config = SwarmConfig {
        file_size,
        chunk_size: chunk.unwrap_or_else(|| default_chunk_size(file_size)),
        latency_ms,
        up_mix: mixed.then(|| fifth_slow.clone()),
        down_mix: mixed.then_some(fifth_slow),
        ..SwarmConfig::new(peers, seed)
    };
    let report = run_swarm(&config);
    let mut ratios: Vec<f64> = report
        .outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| Some(o.secs()? / config.peer_bound_secs(i)))
        .collect();
    ratios.sort_by(f64::total_cmp);
    let (median_relay, last_relay) = report.relay_bounds_secs();
    let spread = report.spread();
    Cell {
        peers,
        file_size,
        latency_ms,
        mixed,
        median_ratio: ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN),
        last_ratio: ratios.last().copied().unwrap_or(f64::NAN),
        median_relay_ratio: spread.median / median_relay,
        last_relay_ratio: spread.max / last_relay,
        finished: report.finished(),
        wall_secs: report.wall_secs,
    }
}

fn report(cells: &[Cell], seeds: u64, json: bool) {
    let mix = |m: bool| if m { "fifth slow" } else { "equal" };
    for c in cells {
        if json {
            let line = json!({
                "event": "cell", "peers": c.peers, "file_size": c.file_size,
                "latency_ms": c.latency_ms, "mix": mix(c.mixed),
                "median_ratio": c.median_ratio, "last_ratio": c.last_ratio,
                "median_relay_ratio": c.median_relay_ratio,
                "last_relay_ratio": c.last_relay_ratio,
                "finished": c.finished, "wall_secs": c.wall_secs, "seeds": seeds,
            });
            say!("{line}");
        } else {
            say!(
                "{:>5} peers {:>9} {:>4} ms {:<10}  median {:.2}x  last {:.2}x  (relayed: {:.2}x, {:.2}x)  ({} finished, {:.1} s)",
                c.peers,
                units::bytes(c.file_size),
                c.latency_ms,
                mix(c.mixed),
                c.median_ratio,
                c.last_ratio,
                c.median_relay_ratio,
                c.last_relay_ratio,
                c.finished,
                c.wall_secs
            );
        }
    }
    let worst = |f: fn(&Cell) -> f64| cells.iter().map(f).fold(f64::NAN, f64::max);
    let (median, last) = (worst(|c| c.median_ratio), worst(|c| c.last_ratio));
    let relayed = (
        worst(|c| c.median_relay_ratio),
        worst(|c| c.last_relay_ratio),
    );
    let wall: f64 = cells.iter().map(|c| c.wall_secs).sum();
    if json {
        let line = json!({"event": "summary", "cells": cells.len(),
            "worst_median_ratio": median, "worst_last_ratio": last,
            "worst_median_relay_ratio": relayed.0, "worst_last_relay_ratio": relayed.1,
            "cpu_secs": wall, "seeds": seeds});
        say!("{line}");
    } else {
        say!(
            "{} cells{}: worst median {median:.2}x, worst last {last:.2}x the bound; counting latency {:.2}x, {:.2}x ({wall:.0} s of simulation)",
            cells.len(),
            if seeds > 1 { format!(", means over seeds 1-{seeds}") } else { String::new() },
            relayed.0,
            relayed.1
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(median: f64, last: f64, finished: usize) -> Cell {
        Cell {
            peers: 5,
            file_size: 1 << 20,
            latency_ms: 20,
            mixed: true,
            median_ratio: median,
            last_ratio: last,
            median_relay_ratio: median / 2.0,
            last_relay_ratio: last / 2.0,
            finished,
            wall_secs: 1.5,
        }
    }

    #[test]
    fn a_cell_over_seeds_is_their_mean_and_its_fewest_finished() {
        let c = mean_cell(vec![
            cell(1.0, 2.0, 5),
            cell(2.0, 4.0, 4),
            cell(3.0, 3.0, 5),
        ]);
        assert_eq!((c.median_ratio, c.last_ratio), (2.0, 3.0));
        assert_eq!((c.median_relay_ratio, c.last_relay_ratio), (1.0, 1.5));
        assert_eq!((c.finished, c.wall_secs), (4, 4.5));
        assert_eq!((c.peers, c.latency_ms, c.mixed), (5, 20, true));
        let one = mean_cell(vec![cell(1.25, 1.5, 5)]);
        assert_eq!(
            (one.median_ratio, one.last_ratio, one.finished),
            (1.25, 1.5, 5)
        );
    }
}
