//! `drizzle sim SCENARIO --seed N [--json]`: a reference scenario in the deterministic
//! simulator, printing its trace; `drizzle sim swarm ...`: a swarm's completion times
//! against the lower bound, optionally drawn as SVG. The same seed prints the same bytes.

use crate::exit::{Exit, Fail};
use crate::out::{say, warn_user};
use crate::units;
use drizzle_core::limits::{MAX_CHUNKS_PER_FILE, MAX_CHUNK_SIZE};
use drizzle_core::manifest::default_chunk_size;
use drizzle_sim::{
    run_scenario, run_swarm_with, Adversaries, Arrival, Mix, Progress, Scenario, SwarmConfig,
    SwarmReport,
};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A long simulation tells stderr how it stands this often (a 100 GiB swarm runs for hours);
/// a shorter one says nothing there.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct TraceArgs {
    /// Master seed: the same seed prints the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// One JSON object per trace line.
    #[arg(long)]
    json: bool,
    /// Run the swarm open (no key, nothing sealed); scenarios run closed by default.
    #[arg(long)]
    open: bool,
}

#[derive(clap::Args, Debug)]
pub struct SwarmArgs {
    #[arg(long, default_value_t = 100)]
    peers: usize,
    #[arg(long, default_value_t = 1)]
    seeders: usize,
    #[arg(long, default_value = "100MiB", value_parser = units::parse_size)]
    file_size: u64,
    /// Chunk size (default: as `share` chooses for the file, see `default_chunk_size`).
    #[arg(long, value_parser = units::parse_chunk_size)]
    chunk_size: Option<u32>,
    /// The peers' upload rate, e.g. 10MB/s, or a mix: 10MB:80%,2MB:20%.
    #[arg(long, default_value = "10MB", value_parser = units::parse_mix)]
    up: Mix,
    /// The peers' download rate, or a mix.
    #[arg(long, default_value = "10MB", value_parser = units::parse_mix)]
    down: Mix,
    /// The seeders' upload rate, or a mix (default: as --up).
    #[arg(long, value_parser = units::parse_mix)]
    seed_up: Option<Mix>,
    /// One-way latency of every link, milliseconds.
    #[arg(long, default_value_t = 20)]
    latency: u64,
    /// Each peer's own access latency instead, one-way ms, or a mix (5:80%,100:20%): a
    /// link between two peers takes the sum of theirs.
    #[arg(long, value_parser = units::parse_latency_mix)]
    access_latency: Option<Mix>,
    /// Peers leave MS after they are done (default: they stay and serve).
    #[arg(long, value_name = "MS")]
    linger: Option<u64>,
    /// `all` (everyone at once) or `poisson:RATE` (RATE arrivals per second).
    #[arg(long, default_value = "all", value_parser = parse_arrival)]
    arrival: Arrival,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// One JSON object per finished peer, then the summary.
    #[arg(long)]
    json: bool,
    /// Draw the completion curve against the bound into this SVG file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Print every event first (requests, chunks, done); for small swarms.
    #[arg(long)]
    trace: bool,
    /// Sample the swarm every MS of virtual time (peers holding chunks, upload use, slots,
    /// waiting fetchers) and print the timeline: where the time goes.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    timeline_ms: Option<u64>,
    /// Run the swarm closed: keyed handshakes and every byte sealed (slower to simulate).
    #[arg(long)]
    closed: bool,
    /// Adversaries: this many more seeders that register every chunk and never send one.
    #[arg(long, default_value_t = 0)]
    silent_seeders: usize,
    /// Adversaries: this many more seeders that send at a hundredth of the others' rate.
    #[arg(long, default_value_t = 0)]
    trickling_seeders: usize,
    /// Adversaries: fetchers that join with the peers and stop reading MS into the run, one
    /// per value (slot hogs; line fillers, when many), e.g. 200,200,500.
    #[arg(long, value_name = "MS,..", value_delimiter = ',')]
    hogs: Vec<u64>,
}

pub fn sim(scenario: Scenario, args: &TraceArgs) -> Result<(), Fail> {
    let report = run_scenario(scenario, args.seed, !args.open);
    for line in &report.trace {
        if args.json {
            say!("{}", line.json());
        } else {
            say!("{}", line.human());
        }
    }
    if args.json {
        let summary = serde_json::json!({
            "event": "summary",
            "scenario": scenario.name(),
            "seed": args.seed,
            "passed": report.passed(),
            "failures": report.failures,
            "virtual_ms": report.virtual_ms,
            "steps": report.steps,
        });
        say!("{summary}");
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

fn parse_arrival(s: &str) -> Result<Arrival, String> {
    if s == "all" {
        return Ok(Arrival::All);
    }
    let rate = s
        .strip_prefix("poisson:")
        .and_then(|r| r.parse::<f64>().ok())
        .filter(|r| *r > 0.0 && r.is_finite())
        .ok_or_else(|| format!("{s:?}: expected all or poisson:RATE (arrivals per second)"))?;
    Ok(Arrival::Poisson { per_sec: rate })
}

pub fn swarm(args: &SwarmArgs) -> Result<(), Fail> {
    let chunk_size = (args.chunk_size).unwrap_or_else(|| default_chunk_size(args.file_size));
    if args.peers == 0 || args.seeders == 0 {
        return Err(Fail::new(
            Exit::Usage,
            "--peers and --seeders must be positive",
        ));
    }
    // One rate for everyone is the plain case; a mix sets each peer's own.
    let single = |m: &Mix| match m.0.as_slice() {
        [(rate, _)] => (*rate, None),
        _ => (m.0.first().map_or(1, |(r, _)| *r), Some(m.clone())),
    };
    let (up, up_mix) = single(&args.up);
    let (down, down_mix) = single(&args.down);
    let config = SwarmConfig {
        seeders: args.seeders,
        file_size: args.file_size,
        chunk_size,
        up_bytes_per_sec: up,
        down_bytes_per_sec: down,
        up_mix,
        down_mix,
        seed_up: args.seed_up.clone(),
        access_latency_ms: args.access_latency.clone(),
        linger_ms: args.linger,
        latency_ms: args.latency,
        arrival: args.arrival,
        trace: args.trace,
        timeline_ms: args.timeline_ms,
        closed: args.closed,
        adversaries: Adversaries {
            silent_seeders: args.silent_seeders,
            trickling_seeders: args.trickling_seeders,
            hogs_stop_at_ms: args.hogs.clone(),
        },
        ..SwarmConfig::new(args.peers, args.seed)
    };
    refuse_arrivals_over_days(&config)?;
    refuse_too_many_chunks(&config)?;
    refuse_what_cannot_fit(&config)?;
    // Opened before the run, which may take hours, so that a path it cannot write to is
    // said at once rather than after.
    let cannot_write = |path: &PathBuf, e: std::io::Error| {
        Fail::new(
            Exit::Failure,
            format!("cannot write {}: {e}", path.display()),
        )
    };
    let svg = (args.svg.as_ref())
        .map(|path| std::fs::File::create(path).map_err(|e| cannot_write(path, e)))
        .transpose()?;
    let report = run_swarm_with(&config, &mut progress_on_stderr());
    for line in &report.trace {
        if args.json {
            say!("{}", line.json());
        } else {
            say!("{}", line.human());
        }
    }
    print_timeline(args, &report);
    print_swarm(args, &report);
    if let (Some(mut file), Some(path)) = (svg, &args.svg) {
        std::io::Write::write_all(&mut file, completion_svg(&report).as_bytes())
            .map_err(|e| cannot_write(path, e))?;
    }
    if report.failures.is_empty() {
        Ok(())
    } else {
        let msg = format!(
            "{}; reproduce with: {}",
            report.failures.join("; "),
            report.reproduce()
        );
        Err(Fail::new(Exit::Failure, msg))
    }
}

/// What each simulated node costs in memory, as measured: about 300 KiB (connections,
/// buffers, its machine), and for each chunk of the file its share of the chunk maps and
/// manifests every node keeps. The file's bytes cost nothing: they are made only where read.
/// `sim swarm --peers 100 --file-size 4GiB` peaks at 84 MB: about 130 bytes per node and
/// chunk beside the 300 KiB (counted as 160, for the holders' chunk maps that grow with
/// the swarm).
const PER_NODE_BYTES: u64 = 300 << 10;
const PER_NODE_CHUNK_BYTES: u64 = 160;

/// Peak memory of a swarm run of `nodes` nodes sharing a file of `chunks` chunks, bytes.
fn needed_bytes(nodes: u64, chunks: u64) -> u64 {
    nodes.saturating_mul(PER_NODE_BYTES.saturating_add(chunks.saturating_mul(PER_NODE_CHUNK_BYTES)))
}

/// Memory the kernel says can be had without swapping (`MemAvailable`), if it says.
fn available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// Lines on stderr, one per `PROGRESS_EVERY` of wall time: virtual time, peers done,
/// events and their rate.
fn progress_on_stderr() -> impl FnMut(Progress) {
    let started = Instant::now();
    let mut told = started;
    move |p: Progress| {
        if told.elapsed() < PROGRESS_EVERY {
            return;
        }
        told = Instant::now();
        let secs = started.elapsed().as_secs_f64();
        warn_user!(
            "drizzle: simulating: {:.0} s of virtual time, {}/{} peers done, {:.1} M events in {secs:.0} s ({:.0} events/s)",
            p.virtual_ms as f64 / 1000.0,
            p.ended,
            p.peers,
            p.events as f64 / 1e6,
            p.events as f64 / secs.max(1e-9),
        );
    }
}

/// The longest that arrivals may take, virtual seconds: a rate of `1e-9` typed for `1e9`
/// would otherwise simulate keepalives for decades before the first peers met.
const MOST_ARRIVAL_SECS: f64 = 86_400.0;

/// Arrivals too slow to end within a day of virtual time are refused, naming the rate
/// that would.
fn refuse_arrivals_over_days(config: &SwarmConfig) -> Result<(), Fail> {
    let Arrival::Poisson { per_sec } = config.arrival else {
        return Ok(());
    };
    let span_secs = config.peers as f64 / per_sec;
    if span_secs <= MOST_ARRIVAL_SECS {
        return Ok(());
    }
    let least = config.peers as f64 / MOST_ARRIVAL_SECS;
    let why = format!(
        "{} peers arriving at {per_sec} a second take about {span_secs:.0} s of virtual time, \
         more than a day: --arrival poisson:{least:.4} at least",
        config.peers
    );
    Err(Fail::new(Exit::Usage, why))
}

/// A file in more chunks than a manifest may have is refused before the run starts (its
/// seeder could not share it), saying the chunk size that would do.
fn refuse_too_many_chunks(config: &SwarmConfig) -> Result<(), Fail> {
    let chunk_size = u64::from(config.chunk_size.max(1));
    let chunks = config.file_size.div_ceil(chunk_size);
    if chunks <= MOST_CHUNKS {
        return Ok(());
    }
    let least = config.file_size.div_ceil(MOST_CHUNKS).next_power_of_two();
    let why = format!(
        "a file of {} in chunks of {} has {chunks} chunks, more than {MOST_CHUNKS}: \
         --chunk-size {} at least",
        units::bytes(config.file_size),
        units::bytes(chunk_size),
        size_flag(least),
    );
    Err(Fail::new(Exit::Usage, why))
}

/// A run that would not fit in this machine's memory is refused before it starts (it
/// would otherwise take the machine down with it: before payloads were made only where
/// read, 16 GiB was killed at 24 GB), saying what would fit.
fn refuse_what_cannot_fit(config: &SwarmConfig) -> Result<(), Fail> {
    let Some(available) = available_bytes() else {
        return Ok(());
    };
    let (peers, seeders) = config.nodes_run();
    let nodes = (peers + seeders) as u64;
    let chunk_size = u64::from(config.chunk_size.max(1));
    let chunks = config.file_size.div_ceil(chunk_size);
    let needed = needed_bytes(nodes, chunks);
    if needed <= available {
        return Ok(());
    }
    let per_node = needed_bytes(1, chunks);
    let fits = what_would_fit(available, (peers, seeders), config.file_size, chunk_size);
    let fits = match fits.is_empty() {
        true => "nothing of this shape would fit".to_string(),
        false => format!("{} would fit", fits.join(" or ")),
    };
    let msg = format!(
        "this swarm needs about {} of memory and {} is available (each of its {nodes} nodes \
         about {}: {} and {PER_NODE_CHUNK_BYTES} bytes per chunk); {fits}",
        units::bytes(needed),
        units::bytes(available),
        units::bytes(per_node),
        units::bytes(PER_NODE_BYTES),
    );
    Err(Fail::new(Exit::Usage, msg))
}

/// Flags that would make a swarm of `peers` and `seeders` sharing `file_size` bytes in
/// `chunk_size` chunks fit in `available` bytes, each a change of one flag, written as a
/// user would type it: fewer peers (at least one), a smaller file, or larger chunks (never
/// more chunks than a manifest may have).
fn what_would_fit(
    available: u64,
    (peers, seeders): (usize, usize),
    file_size: u64,
    chunk_size: u64,
) -> Vec<String> {
    let nodes = (peers + seeders).max(1) as u64;
    let per_node = needed_bytes(1, file_size.div_ceil(chunk_size.max(1)));
    let mut fits = Vec::new();
    let peers_fit = (available / per_node.max(1)).saturating_sub(seeders as u64);
    if (1..peers as u64).contains(&peers_fit) {
        fits.push(format!("--peers {peers_fit}"));
    }
    let chunks_fit = ((available / nodes).saturating_sub(PER_NODE_BYTES) / PER_NODE_CHUNK_BYTES)
        .min(MOST_CHUNKS);
    if chunks_fit > 0 {
        let smaller = chunks_fit.saturating_mul(chunk_size);
        fits.push(format!("--file-size {}", size_flag(smaller)));
        let larger = file_size.div_ceil(chunks_fit).next_power_of_two();
        if larger > chunk_size && larger <= u64::from(MAX_CHUNK_SIZE) {
            fits.push(format!("--chunk-size {}", size_flag(larger)));
        }
    }
    fits
}

/// The most chunks a file may have (a manifest's limit), as a byte count's type.
const MOST_CHUNKS: u64 = MAX_CHUNKS_PER_FILE as u64;

/// A size as a flag takes it, rounded down to whole mebibytes or kibibytes (exact for the
/// powers of two chunk sizes are).
fn size_flag(size: u64) -> String {
    match size {
        s if s >= 1 << 20 => format!("{}MiB", s >> 20),
        s if s >= 1 << 10 => format!("{}KiB", s >> 10),
        s => s.to_string(),
    }
}

fn print_timeline(args: &SwarmArgs, r: &SwarmReport) {
    if args.json {
        for row in &r.timeline {
            let mut line = serde_json::json!(row);
            if let Some(obj) = line.as_object_mut() {
                obj.insert("event".into(), "timeline".into());
            }
            say!("{line}");
        }
        return;
    }
    if r.timeline.is_empty() {
        return;
    }
    say!("    time   done  holding   held  upload  slots  waiting");
    for row in &r.timeline {
        say!(
            "{:7.2}s {:6} {:8} {:5.1}% {:6.1}% {:6} {:8}",
            row.t_secs,
            row.done,
            row.holding,
            row.held_pct,
            row.upload_pct,
            row.slots_in_use,
            row.waiting
        );
    }
}

fn print_swarm(args: &SwarmArgs, r: &SwarmReport) {
    let bound = r.config.bound_secs();
    let s = r.spread();
    let (median_relay, last_relay) = r.relay_bounds_secs();
    if args.json {
        let mut done: Vec<_> = r.outcomes.iter().filter(|o| o.done_ms.is_some()).collect();
        done.sort_by_key(|o| (o.done_ms, o.node));
        for o in done {
            let line = serde_json::json!({
                "event": "peer_done", "peer": o.node, "arrived_secs": o.arrived_ms as f64 / 1000.0,
                "secs": o.secs(),
            });
            say!("{line}");
        }
        // Wall time is the one thing that varies between runs of a seed: it is last.
        let mut summary = serde_json::json!({
            "event": "summary", "peers": r.config.peers, "seeders": r.config.seeders,
            "finished": r.finished(), "bound_secs": bound,
            "min_secs": s.min, "median_secs": s.median, "p99_secs": s.p99, "max_secs": s.max,
            "median_ratio": s.median / bound, "max_ratio": s.max / bound,
            "median_relay_bound_secs": median_relay, "relay_bound_secs": last_relay,
            "seeder_uploads": r.seeder_uploads,
            "events": r.events, "failures": r.failures, "wall_secs": r.wall_secs,
            "closed": r.config.closed,
        });
        let a = &r.config.adversaries;
        if let (false, Some(obj)) = (a.is_empty(), summary.as_object_mut()) {
            obj.insert("silent_seeders".into(), a.silent_seeders.into());
            obj.insert("trickling_seeders".into(), a.trickling_seeders.into());
            obj.insert("hogs".into(), a.hogs_stop_at_ms.len().into());
        }
        say!("{summary}");
    } else {
        let c = &r.config;
        say!(
            "swarm: {} peers, {} seeder(s), {} file in {} chunks, up {} / down {} per node, {} ms latency, seed {}",
            c.peers, c.seeders, units::bytes(c.file_size),
            c.file_size.div_ceil(u64::from(c.chunk_size.max(1))),
            describe_mix(c.up_mix.as_ref(), c.up_bytes_per_sec),
            describe_mix(c.down_mix.as_ref(), c.down_bytes_per_sec),
            c.latency_ms, c.seed
        );
        let a = &c.adversaries;
        if !a.is_empty() {
            say!(
                "beside adversaries (not counted below, nor in the bound): {} silent seeder(s), {} trickling seeder(s), {} fetcher(s) that stop reading",
                a.silent_seeders,
                a.trickling_seeders,
                a.hogs_stop_at_ms.len()
            );
        }
        if r.finished() == 0 {
            say!("finished 0/{}", c.peers);
            say!("lower bound {bound:.2} s: no peer finished, so no ratio to it");
        } else {
            say!(
                "finished {}/{}: min {:.2} s, median {:.2} s, p99 {:.2} s, max {:.2} s",
                r.finished(),
                c.peers,
                s.min,
                s.median,
                s.p99,
                s.max
            );
            if bound > 0.0 {
                say!(
                    "lower bound {:.2} s: median {:.3}x, max {:.3}x the bound",
                    bound,
                    s.median / bound,
                    s.max / bound
                );
                say!(
                    "counting latency (whole chunks relayed): median {:.3}x of {:.2} s, max {:.3}x of {:.2} s",
                    s.median / median_relay,
                    median_relay,
                    s.max / last_relay,
                    last_relay
                );
            } else {
                say!("lower bound 0 s: an empty file has nothing to move, so no ratio to it");
            }
        }
        say!(
            "seeders uploaded {} chunks ({:.2} copies of the file); {} events in {:.1} s of wall time; {} swarm",
            r.seeder_uploads,
            r.seeder_uploads as f64 / c.file_size.div_ceil(u64::from(c.chunk_size.max(1))).max(1) as f64,
            r.events,
            r.wall_secs,
            if c.closed { "closed (every byte sealed)" } else { "open" }
        );
    }
}

/// Peers done over time (a step curve) against the bound (a dashed line).
fn completion_svg(r: &SwarmReport) -> String {
    let (w, h, left, bottom, top, right) = (720.0, 420.0, 60.0, 50.0, 30.0, 20.0);
    let times = r.times();
    let bound = r.config.bound_secs();
    let t_max = times.last().copied().unwrap_or(bound).max(bound) * 1.05;
    let n = r.config.peers.max(1) as f64;
    let x = |t: f64| left + (t / t_max) * (w - left - right);
    let y = |k: f64| h - bottom - (k / n) * (h - bottom - top);
    let mut path = format!("M{:.1},{:.1}", x(0.0), y(0.0));
    for (i, t) in times.iter().enumerate() {
        path.push_str(&format!(
            " L{:.1},{:.1} L{:.1},{:.1}",
            x(*t),
            y(i as f64),
            x(*t),
            y(i as f64 + 1.0)
        ));
    }
    let mut ticks = String::new();
    let step = nice_step(t_max);
    let mut t = 0.0;
    while t <= t_max {
        ticks.push_str(&format!(
            r##"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="#ccc"/><text x="{0:.1}" y="{3:.1}" text-anchor="middle">{4}</text>"##,
            x(t), y(0.0), y(n), y(0.0) + 18.0, t
        ));
        t += step;
    }
    let s = r.spread();
    let title = format!(
        "{} peers, {} seeder(s): median {:.2} s ({:.2}x bound), last {:.2} s ({:.2}x)",
        r.config.peers,
        r.config.seeders,
        s.median,
        s.median / bound,
        s.max,
        s.max / bound
    );
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{left}" y="18" font-size="14">{title}</text>
{ticks}
<line x1="{x0:.1}" y1="{y0:.1}" x2="{x1:.1}" y2="{y0:.1}" stroke="black"/>
<line x1="{x0:.1}" y1="{y0:.1}" x2="{x0:.1}" y2="{yn:.1}" stroke="black"/>
<text x="{x0:.1}" y="{yn:.1}" dx="-6" text-anchor="end">{n}</text>
<text x="{x0:.1}" y="{y0:.1}" dx="-6" text-anchor="end">0</text>
<text x="{xm:.1}" y="{h:.1}" dy="-8" text-anchor="middle">seconds since the peers asked</text>
<text transform="translate(16,{ym:.1}) rotate(-90)" text-anchor="middle">peers done</text>
<line x1="{xb:.1}" y1="{y0:.1}" x2="{xb:.1}" y2="{yn:.1}" stroke="#d33" stroke-dasharray="6,4"/>
<text x="{xb:.1}" y="{yn:.1}" dx="4" dy="12" fill="#d33">lower bound {bound:.2} s</text>
<path d="{path}" fill="none" stroke="#1f5fbf" stroke-width="2"/>
</svg>
"##,
        x0 = x(0.0),
        x1 = x(t_max),
        y0 = y(0.0),
        yn = y(n),
        xm = (left + w - right) / 2.0,
        ym = (top + h - bottom) / 2.0,
        xb = x(bound),
    )
}

/// A tick spacing of 1, 2 or 5 times a power of ten giving about 5–10 ticks.
fn nice_step(span: f64) -> f64 {
    let raw = (span / 8.0).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// A rate or a mix, for people: `10.0 MB/s`, or `10.0 MB/s (80%), 2.0 MB/s (20%)`.
fn describe_mix(mix: Option<&Mix>, one: u64) -> String {
    let Some(Mix(parts)) = mix else {
        return units::rate(one as f64);
    };
    let total: f64 = parts.iter().map(|(_, s)| s).sum();
    let each: Vec<String> = parts
        .iter()
        .map(|(r, s)| format!("{} ({:.0}%)", units::rate(*r as f64), s / total * 100.0))
        .collect();
    each.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn what_would_fit_names_only_flags_that_fit() {
        // 10,000 peers of 16 GiB in 64 KiB chunks: a smaller file or larger chunks fit.
        let fits = what_would_fit(23 * GIB, (10_000, 1), 16 * GIB, 64 << 10);
        assert!(fits.contains(&"--chunk-size 2MiB".to_string()), "{fits:?}");
        let Some(file) = fits.iter().find_map(|f| f.strip_prefix("--file-size ")) else {
            panic!("no smaller file in {fits:?}");
        };
        let size = units::parse_size(file).unwrap_or(u64::MAX);
        assert!(
            needed_bytes(10_001, size.div_ceil(64 << 10)) <= 23 * GIB,
            "{file}"
        );
        // 10 peers of 100 GiB in 64-byte chunks: no number of peers fits (one node alone
        // needs 250 GiB); what is suggested never has more chunks than a file may.
        let fits = what_would_fit(23 * GIB, (10, 1), 100 * GIB, 64);
        assert!(!fits.iter().any(|f| f.starts_with("--peers")), "{fits:?}");
        assert!(
            fits.contains(&"--chunk-size 512KiB".to_string()),
            "{fits:?}"
        );
        assert!(fits.contains(&"--file-size 16MiB".to_string()), "{fits:?}");
        for flag in &fits {
            let (_, value) = flag.split_once(' ').unwrap_or_default();
            assert!(
                units::parse_size(value).is_ok(),
                "{flag} is not typed as given"
            );
        }
        // Too many peers of a small file: fewer peers fit, and each suggestion does.
        let fits = what_would_fit(23 * GIB, (100_000, 1), GIB, 1 << 20);
        let peers: Option<u64> = (fits.first())
            .and_then(|f| f.strip_prefix("--peers "))
            .and_then(|n| n.parse().ok());
        let Some(peers) = peers else {
            panic!("no fewer peers in {fits:?}");
        };
        assert!(needed_bytes(peers + 1, 1024) <= 23 * GIB, "{peers}");
        assert!(
            needed_bytes(peers + 2, 1024) > 23 * GIB,
            "{peers} is not the most"
        );
        // Nothing of this shape fits: no suggestion at all rather than a wrong one.
        assert!(what_would_fit(1 << 10, (10, 1), GIB, 1 << 20).is_empty());
    }
}
