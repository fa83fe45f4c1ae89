//! The simulator against the real thing: the throttled loopback transfer that
//! `drizzle bench transfer` measures, predicted by the sim. The real side is a constant
//! measured on the reference machine; `cli/tests/e2e.rs` re-measures it with wide margins.

use drizzle_sim::{run_swarm, SwarmConfig};

/// `drizzle bench transfer --size 32MiB --seeders 2 --getters 2 --upload-limit 4MB
/// --runs 3 --sim` on the reference machine (README, "The simulator"): every getter held
/// the file after 8.24 s (median; runs 8.16 to 8.34 s).
const MEASURED_SECS: f64 = 8.24;

#[test]
fn the_sim_predicts_a_throttled_loopback_transfer_within_a_fifth() {
    let config = SwarmConfig::loopback(2, 2, 32 << 20, 1 << 20, Some(4_000_000));
    let report = run_swarm(&config);
    assert!(
        report.failures.is_empty(),
        "{:?}\nreproduce: {}",
        report.failures,
        report.reproduce()
    );
    let predicted = report.spread().max;
    let off = predicted / MEASURED_SECS - 1.0;
    assert!(
        off.abs() <= 0.20,
        "the sim predicts {predicted:.2} s, measured {MEASURED_SECS} s ({:+.0}%): the sim \
         and the real transfer drifted apart\nreproduce: {}",
        off * 100.0,
        report.reproduce()
    );
}
