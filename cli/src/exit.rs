//! The exit codes of the CLI contract, and the one-line error that goes with a failure.

use crate::out::warn_user;
use std::process::ExitCode;

/// How a command ended; the numbers are part of the CLI contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    // 0 is success: `Ok(())`.
    Failure = 1,
    Usage = 2,
    /// A file rejected for hash mismatches, or `--expect` differing from the tracker's root.
    Integrity = 3,
    /// Tracker unreachable, no such file, or no reachable holder for some chunk.
    Unavailable = 4,
    /// A wrong or missing swarm key, or a keyed command meeting an open swarm (or the
    /// reverse).
    NotAuthorised = 5,
}

/// A failure with its exit code and a one-line message for stderr.
#[derive(Debug)]
pub struct Fail {
    pub exit: Exit,
    pub message: String,
}

impl Fail {
    pub fn new(exit: Exit, message: impl Into<String>) -> Fail {
        Fail {
            exit,
            message: message.into(),
        }
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Fail {
        Fail::new(Exit::Failure, e.to_string())
    }
}

pub fn code(result: Result<(), Fail>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            warn_user!("drizzle: {}", f.message);
            ExitCode::from(f.exit as u8)
        }
    }
}
