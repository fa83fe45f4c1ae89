//! `drizzle bench`: measurements of this machine, each beside a reference measured in the
//! same run. `transfer` times verified transfers between real processes, `tracker` loads
//! one tracker with many clients (`page` scrapes its `--http` meanwhile), `sim` times the simulator on a large swarm.

mod curl;
mod grid;
mod page;
mod process;
mod sim;
mod testbed;
mod tracker;
mod transfer;

pub use sim::{sim, SimArgs};
pub use testbed::{swarm as testbed_swarm, SwarmBenchArgs};
pub use tracker::{tracker, TrackerArgs};
pub use transfer::{transfer, TransferArgs};

fn mb_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs.max(1e-9) / 1e6
}

/// (median, min, max).
fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let mid = v.get(v.len() / 2).copied().unwrap_or(0.0);
    (
        mid,
        v.first().copied().unwrap_or(0.0),
        v.last().copied().unwrap_or(0.0),
    )
}

/// `median`'s three figures as the JSON object the benches print.
fn spread_json((median, min, max): (f64, f64, f64)) -> serde_json::Value {
    serde_json::json!({"median": median, "min": min, "max": max})
}
