//! drizzle-sim: runs Drizzle's real core machines in one deterministic in-memory world.
//! One event queue ordered by (time, seq), TCP-like byte streams with latency and bandwidth,
//! in-memory storage, explicit faults, and checkers after every step; one seed fixes it all.

// The simulator's inputs come from its own scenarios, not from strangers; a link has exactly
// two ends, indexed 0 and 1.
#![allow(clippy::indexing_slicing)]

pub mod checkers;
pub mod faults;
pub mod scenarios;
pub mod storage;
pub mod swarm;
pub mod trace;
pub mod truth;
pub mod world;

pub use faults::{Adversaries, Fault};
pub use scenarios::{run_scenario, Scenario, ScenarioReport};
pub use swarm::{
    run_swarm, run_swarm_with, Arrival, Mix, Progress, SwarmConfig, SwarmReport, TimelineRow,
};
pub use trace::TraceLine;
pub use world::{DiskModel, NodeId, World, WorldConfig};
