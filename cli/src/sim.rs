//! `drizzle sim SCENARIO --seed N [--json]`: a reference scenario in the deterministic
//! simulator; the same seed prints the same bytes.

use crate::exit::{Exit, Fail};
use drizzle_sim::{run_scenario, Scenario};

pub fn sim(scenario: Scenario, seed: u64, json: bool) -> Result<(), Fail> {
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
        Ok(())
    } else {
        let msg = format!(
            "scenario {} failed; reproduce with: {}",
            scenario.name(),
            report.reproduce()
        );
        Err(Fail::new(Exit::Failure, msg))
    }
}

pub fn parse_scenario(s: &str) -> Result<Scenario, String> {
    Scenario::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        format!(
            "unknown scenario {s:?} (expected one of: {})",
            names.join(", ")
        )
    })
}
