//! `drizzle status --tracker ADDR`: a tracker's swarm in a terminal — files with an
//! availability strip, peers, rates — read from the `/api/swarm` its `--http` serves (the
//! one picture the live page and `/metrics` show too).

use crate::exit::{Exit, Fail};
use crate::http::client::{self, GetError};
use crate::http::tracker_view::{FileView, TrackerView};
use crate::out::lines;
use crate::units;
use std::io::Write;
use std::net::SocketAddr;
/// A view bigger than this is refused (a tracker shows at most 1,000 files and 2,000 peers).
const MAX_VIEW_BYTES: u64 = 256 << 20;
/// Columns of the availability strip.
const STRIP: usize = 40;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The address the tracker's `--http` serves on (its `http on IP:PORT` line).
    #[arg(long, value_parser = units::parse_addr)]
    pub tracker: SocketAddr,
    /// The view as one JSON object (as `/api/swarm` serves it).
    #[arg(long)]
    pub json: bool,
}

pub fn status(args: &StatusArgs) -> Result<(), Fail> {
    let view = fetch(args.tracker)?;
    if args.json {
        let json =
            serde_json::to_string(&view).map_err(|e| Fail::new(Exit::Failure, e.to_string()))?;
        lines(|out| writeln!(out, "{json}"));
    } else {
        lines(|out| show(out, args.tracker, &view));
    }
    Ok(())
}

fn fetch(addr: SocketAddr) -> Result<TrackerView, Fail> {
    let not_a_tracker = |e: &dyn std::fmt::Display| {
        let why = format!(
            "{addr} did not answer as a tracker's --http address ({e}); give the address of \
             its `http on` line, not its peer port"
        );
        Fail::new(Exit::Unavailable, why)
    };
    let body = client::get(addr, "/api/swarm", MAX_VIEW_BYTES).map_err(|e| match e {
        GetError::Unreachable(..) | GetError::Timeout(_) => {
            Fail::new(Exit::Unavailable, format!("tracker http {e}"))
        }
        GetError::NotHttp(_, why) => not_a_tracker(&why),
        e @ GetError::Status(..) => not_a_tracker(&e),
    })?;
    serde_json::from_slice(&body).map_err(|e| not_a_tracker(&e))
}

fn show(out: &mut dyn Write, addr: SocketAddr, v: &TrackerView) -> std::io::Result<()> {
    writeln!(
        out,
        "tracker {addr}: up {}, {} peer(s), {} file(s), {} connection(s)",
        uptime(v.uptime_s),
        v.peers_online,
        v.files_total,
        v.connections.open
    )?;
    let r = &v.rates;
    writeln!(
        out,
        "rates: {:.1} registers/s, {:.1} chunks registered/s, {:.1} locates/s",
        r.registers_per_s, r.chunks_registered_per_s, r.locates_per_s
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<32} {:>10} {:>7} {:>7} {:>8}  availability (holders: _ 0, . 1, : 2-3, + 4-7, # 8+)",
        "FILE", "SIZE", "CHUNKS", "HOLDERS", "COMPLETE"
    )?;
    for f in &v.files {
        writeln!(
            out,
            "{:<32} {:>10} {:>7} {:>7} {:>8}  {}",
            f.name,
            units::bytes(f.size),
            f.chunks,
            f.holders,
            f.complete,
            strip(f)
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<24} {:>5} {:>15} {:>10}",
        "PEER", "FILES", "CHUNKS HELD", "LAST SEEN"
    )?;
    for p in &v.peers {
        let total: u32 = (p.held.iter())
            .filter_map(|(i, _)| v.files.get(*i))
            .map(|f| f.chunks)
            .sum();
        let held: u32 = p.held.iter().map(|(_, n)| n).sum();
        let held = format!("{held}/{total}");
        let seen = format!("{:.0} s ago", p.last_seen_s);
        writeln!(
            out,
            "{:<24} {:>5} {:>15} {:>10}",
            p.addr,
            p.held.len(),
            held,
            seen
        )?;
    }
    if v.peers_left_out > 0 {
        writeln!(out, "and {} more peer(s)", v.peers_left_out)?;
    }
    Ok(())
}

/// The file's chunks in `STRIP` columns, each drawn by its rarest chunk's holder count.
fn strip(f: &FileView) -> String {
    let counts = &f.holders_per_chunk;
    let columns = counts.len().min(STRIP);
    (0..columns)
        .map(|x| {
            let (from, to) = (x * counts.len() / columns, (x + 1) * counts.len() / columns);
            let rarest = counts
                .get(from..to.max(from + 1))
                .and_then(|c| c.iter().min());
            match rarest.copied().unwrap_or(0) {
                0 => '_',
                1 => '.',
                2..=3 => ':',
                4..=7 => '+',
                _ => '#',
            }
        })
        .collect()
}

fn uptime(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}
