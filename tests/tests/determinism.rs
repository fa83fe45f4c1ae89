//! Same seed, same trace, byte for byte; different seeds, different runs; and the three
//! reference scenarios behave as specified across many seeds.

// Test code: a panic here is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use drizzle_sim::{run_scenario, Scenario};

fn rendered(scenario: Scenario, seed: u64) -> String {
    let report = run_scenario(scenario, seed, true);
    let mut out = String::new();
    for line in &report.trace {
        out.push_str(&line.human());
        out.push('\n');
        out.push_str(&line.json());
        out.push('\n');
    }
    out
}

#[test]
fn same_seed_gives_identical_traces() {
    for scenario in Scenario::ALL {
        for seed in [0, 7, 12345] {
            assert_eq!(
                rendered(scenario, seed),
                rendered(scenario, seed),
                "trace differs between two runs: drizzle sim {} --seed {seed}",
                scenario.name()
            );
        }
    }
}

#[test]
fn different_seeds_give_different_traces() {
    for scenario in Scenario::ALL {
        assert_ne!(
            rendered(scenario, 1),
            rendered(scenario, 2),
            "{} ignores its seed",
            scenario.name()
        );
    }
}

#[test]
fn scenarios_pass_for_many_seeds_open_and_closed() {
    for scenario in Scenario::ALL {
        for (seed, closed) in (0..40).flat_map(|s| [(s, true), (s, false)]) {
            let report = run_scenario(scenario, seed, closed);
            assert!(
                report.passed(),
                "{:?}; reproduce with: {}",
                report.failures,
                report.reproduce()
            );
        }
    }
}
