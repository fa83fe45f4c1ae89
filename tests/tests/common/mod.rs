//! Helpers shared by the simulator property tests.

use drizzle_core::PeerConfig;

/// Peers whose patience outlasts the generated faults (which all heal within ~10 s, tracker
/// reconnect backoff included): liveness is promised only for such peers.
pub fn patient(config: &mut PeerConfig) {
    config.request_timeout_ms = 5_000;
    config.refresh_max_ms = 1_000;
    config.unavailable_after_ms = 120_000;
    config.reject_grace_ms = 30_000;
}
