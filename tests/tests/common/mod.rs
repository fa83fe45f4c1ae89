//! Helpers shared by the property tests.
// Each test crate includes this module and uses part of it.
#![allow(dead_code)]

use drizzle_core::PeerConfig;
use proptest::test_runner::{Config, FileFailurePersistence};

/// `cases` cases, failures saved beside the test as `<file>.regressions` (committed, and
/// replayed first on every run).
pub fn persisted(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..Config::default()
    }
}

/// Peers whose patience outlasts the generated faults (which all heal within ~10 s, tracker
/// reconnect backoff included): liveness is promised only for such peers.
pub fn patient(config: &mut PeerConfig) {
    config.request_timeout_ms = 5_000;
    config.refresh_max_ms = 1_000;
    config.unavailable_after_ms = 120_000;
    config.reject_grace_ms = 30_000;
    // A tracker restarted during a partition hears from a holder only once it heals.
    config.tracker_settle_ms = 20_000;
}
