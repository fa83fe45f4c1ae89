//! `drizzle bench sim --grid`: many swarm shapes in the simulator — peers, file size,
//! latency, equal peers or a mix where a fifth of them have a fifth of the rate — each
//! peer's time against its own lower bound; the worst cell first.

use crate::exit::Fail;
use crate::out::say;
use crate::units;
use drizzle_core::manifest::default_chunk_size;
use drizzle_sim::{run_swarm, Mix, SwarmConfig};
use serde_json::json;
use std::sync::Mutex;

/// One cell of the grid and how it went.
struct Cell {
    peers: usize,
    file_size: u64,
    latency_ms: u64,
    mixed: bool,
    /// Median and largest of each peer's time over its own bound.
    median_ratio: f64,
    last_ratio: f64,
    /// The median and last peer's times over `SwarmConfig::relay_bound_secs`.
    median_relay_ratio: f64,
    last_relay_ratio: f64,
    finished: usize,
    wall_secs: f64,
}

/// The grid's axes.
pub struct Grid {
    pub peers: Vec<usize>,
    pub sizes: Vec<u64>,
    pub latencies_ms: Vec<u64>,
    /// `None`: each file size in its own `default_chunk_size`.
    pub chunk_size: Option<u32>,
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
    let next = Mutex::new(shapes.into_iter());
    let done = Mutex::new(Vec::new());
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
                let cell = run_cell(peers, file_size, latency_ms, mixed, grid.chunk_size);
                if let Ok(mut d) = done.lock() {
                    d.push(cell);
                }
            });
        }
    });
    let mut cells = done.into_inner().unwrap_or_default();
    cells.sort_by(|a, b| b.last_ratio.total_cmp(&a.last_ratio));
    report(&cells, json);
    Ok(())
}

fn run_cell(
    peers: usize,
    file_size: u64,
    latency_ms: u64,
    mixed: bool,
    chunk: Option<u32>,
) -> Cell {
    let fifth_slow = Mix(vec![(10_000_000, 4.0), (2_000_000, 1.0)]);
    let config = SwarmConfig {
        file_size,
        chunk_size: chunk.unwrap_or_else(|| default_chunk_size(file_size)),
        latency_ms,
        up_mix: mixed.then(|| fifth_slow.clone()),
        down_mix: mixed.then_some(fifth_slow),
        ..SwarmConfig::new(peers, 1)
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

fn report(cells: &[Cell], json: bool) {
    let mix = |m: bool| if m { "fifth slow" } else { "equal" };
    for c in cells {
        if json {
            let line = json!({
                "event": "cell", "peers": c.peers, "file_size": c.file_size,
                "latency_ms": c.latency_ms, "mix": mix(c.mixed),
                "median_ratio": c.median_ratio, "last_ratio": c.last_ratio,
                "median_relay_ratio": c.median_relay_ratio,
                "last_relay_ratio": c.last_relay_ratio,
                "finished": c.finished, "wall_secs": c.wall_secs,
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
            "cpu_secs": wall});
        say!("{line}");
    } else {
        say!(
            "{} cells: worst median {median:.2}x, worst last {last:.2}x the bound; counting latency {:.2}x, {:.2}x ({wall:.0} s of simulation)",
            cells.len(),
            relayed.0,
            relayed.1
        );
    }
}
