//! Time as the machines see it: milliseconds since an arbitrary epoch, passed in by the driver.
//! Core never reads a clock; the mio driver converts from `Instant`, the simulator owns
//! virtual time.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since an arbitrary, driver-chosen epoch.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(0);

    pub fn from_ms(ms: u64) -> Self {
        Timestamp(ms)
    }

    pub fn as_ms(self) -> u64 {
        self.0
    }

    pub fn plus_ms(self, ms: u64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn since_ms(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0 / 1000, self.0 % 1000)
    }
}
