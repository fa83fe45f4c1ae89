//! Warnings a remote can cause (a bad frame, a refused connection, a stalled reader) go to
//! the log at most once a minute per address: one hostile address cannot fill an
//! operator's log. The rest are counted, and the next line let through says how many.

use crate::time::Timestamp;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// How long after a warning about an address further ones about it are only counted.
const QUIET_MS: u64 = 60_000;
/// Addresses remembered at once; past them, warnings about new ones are only counted.
const MAX_ADDRESSES: usize = 1024;

/// The once-a-minute rule, per address. Pure: time comes in as a parameter.
#[derive(Debug, Default)]
pub struct LogGate {
    quiet: BTreeMap<IpAddr, Quiet>,
    /// Warnings held back because `quiet` was full, not yet said.
    unlisted: u64,
}

#[derive(Clone, Copy, Debug)]
struct Quiet {
    until: Timestamp,
    held_back: u64,
}

/// What a warning let through adds: how many before it were held back. Displays as ""
/// when none were.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldBack {
    ip: IpAddr,
    same_address: u64,
    others: u64,
}

impl LogGate {
    /// Logs `text`, a warning about the remote at `ip`, under `target` (the caller's
    /// `module_path!()`, so `RUST_LOG` filters it as before): at `warn` if the gate lets
    /// it through at `now`, with how many were held back before it; else at `debug`.
    pub fn warn(&mut self, target: &str, ip: IpAddr, now: Timestamp, text: fmt::Arguments<'_>) {
        match self.admit(ip, now) {
            Some(held) => log::warn!(target: target, "{text}{held}"),
            None => log::debug!(target: target, "{text}"),
        }
    }

    /// Whether a warning about `ip` goes to the log at `now` (`Some`, with what to add to
    /// it), or is only counted (`None`).
    fn admit(&mut self, ip: IpAddr, now: Timestamp) -> Option<HeldBack> {
        let fresh = Quiet {
            until: now.plus_ms(QUIET_MS),
            held_back: 0,
        };
        if let Some(q) = self.quiet.get_mut(&ip) {
            if now < q.until {
                q.held_back += 1;
                return None;
            }
            let same_address = std::mem::replace(q, fresh).held_back;
            return Some(self.let_through(ip, same_address));
        }
        if self.quiet.len() >= MAX_ADDRESSES {
            self.quiet.retain(|_, q| q.until > now);
        }
        if self.quiet.len() >= MAX_ADDRESSES {
            self.unlisted += 1;
            return None;
        }
        self.quiet.insert(ip, fresh);
        Some(self.let_through(ip, 0))
    }

    fn let_through(&mut self, ip: IpAddr, same_address: u64) -> HeldBack {
        HeldBack {
            ip,
            same_address,
            others: std::mem::take(&mut self.unlisted),
        }
    }
}

impl fmt::Display for HeldBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = QUIET_MS / 1000;
        if self.same_address > 0 {
            let n = self.same_address;
            write!(f, " ({n} more about {} in {secs} s not logged)", self.ip)?;
        }
        if self.others > 0 {
            let n = self.others;
            write!(
                f,
                " ({n} about other addresses not logged: too many at once)"
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn one_line_a_minute_per_address_and_the_next_says_how_many_were_held_back() {
        let mut gate = LogGate::default();
        let t = Timestamp::from_ms(5_000);
        let first = gate.admit(ip(1), t).expect("the first is logged");
        assert_eq!(first.to_string(), "");
        for i in 1..=500 {
            assert_eq!(gate.admit(ip(1), t.plus_ms(i)), None, "held back");
        }
        assert!(
            gate.admit(ip(2), t.plus_ms(10)).is_some(),
            "another address is its own"
        );
        assert_eq!(gate.admit(ip(1), t.plus_ms(QUIET_MS - 1)), None);
        let next = gate.admit(ip(1), t.plus_ms(QUIET_MS)).expect("a minute on");
        assert_eq!(
            next.to_string(),
            " (501 more about 10.0.0.1 in 60 s not logged)"
        );
        assert_eq!(
            gate.admit(ip(1), t.plus_ms(QUIET_MS + 1)),
            None,
            "quiet again"
        );
    }

    #[test]
    fn addresses_past_the_table_are_counted_not_remembered_nor_logged() {
        let mut gate = LogGate::default();
        let t = Timestamp::from_ms(0);
        for i in 0..MAX_ADDRESSES as u32 {
            let a = IpAddr::from(i.to_be_bytes());
            assert!(gate.admit(a, t).is_some());
        }
        assert_eq!(
            gate.admit(IpAddr::from([250, 0, 0, 1]), t),
            None,
            "table full"
        );
        assert_eq!(gate.quiet.len(), MAX_ADDRESSES);
        // A minute on, the table makes room, and the next line says what went unsaid.
        let later = gate.admit(IpAddr::from([250, 0, 0, 2]), t.plus_ms(QUIET_MS));
        let said = later.expect("room again").to_string();
        assert_eq!(
            said,
            " (1 about other addresses not logged: too many at once)"
        );
        assert_eq!(gate.quiet.len(), 1);
    }
}
