//! `drizzle bench transfer`: times verified transfers between real `drizzle` processes on
//! 127.0.0.1 and, in the same run on the same bytes, references — `curl` from a static HTTP
//! server (what a user would otherwise run; nothing verified) and, beside a closed swarm,
//! over HTTPS (encrypted as its records are), a raw TCP copy into a file (no hashing) and
//! SHA-256 in memory — so ratios, not absolute numbers, are compared.

use super::curl::{CurlSecs, HttpReference};
use super::process::Node;
use super::{mb_s, median, spread_json};
use crate::cleanup;
use crate::exit::{Exit, Fail};
use crate::out::say;
use crate::units;
use drizzle_sim::{run_swarm, SwarmConfig};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const FILE: &str = "bench.bin";
const BLOCK: usize = 1 << 20;

#[derive(clap::Args, Debug)]
pub struct TransferArgs {
    #[arg(long, default_value = "1GiB", value_parser = units::parse_size)]
    pub size: u64,
    #[arg(long, default_value_t = 1)]
    pub seeders: usize,
    #[arg(long, default_value_t = 1)]
    pub getters: usize,
    /// Upload cap for every sharer and getter, e.g. 25MB/s.
    #[arg(long, value_parser = units::parse_size)]
    pub upload_limit: Option<u64>,
    #[arg(long, default_value = "1MiB", value_parser = units::parse_size)]
    pub chunk_size: u64,
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Threads each getter verifies chunks on (default: one per core but one).
    #[arg(long)]
    pub hash_threads: Option<usize>,
    /// Where to put the test files (default: the system temp directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    /// Also run the same transfer in the simulator and report its prediction beside the
    /// measured time (meaningful with --upload-limit: the sim models rates, not CPUs).
    #[arg(long)]
    pub sim: bool,
    /// Run an open swarm (nothing encrypted) instead of a closed one; alternate runs with
    /// and without it to see what sealing every byte costs.
    #[arg(long)]
    pub open: bool,
}

/// One run's measurements.
#[derive(Debug)]
struct Run {
    secs_per_getter: Vec<f64>,
    secs_all: f64,
    /// `curl` of the same file from a static HTTP server, whole process (and synced).
    curl_secs: Option<CurlSecs>,
    /// The same over HTTPS, measured beside a closed swarm.
    curl_https_secs: Option<CurlSecs>,
    raw_tcp_mb_s: f64,
    sha256_mb_s: f64,
    getter_rss_kib: Vec<u64>,
    sharer_rss_kib: Vec<u64>,
    getter_cpu_s: Vec<f64>,
    /// Sharers' CPU from the moment they shared the file (their directory scan excluded).
    sharer_cpu_s: Vec<f64>,
    /// Chunks each sharer supplied, as counted by the getters' `verified` events.
    sharer_chunks: Vec<u64>,
}

pub fn transfer(args: &TransferArgs) -> Result<(), Fail> {
    if args.seeders == 0 || args.getters == 0 || args.runs == 0 {
        return Err(Fail::new(
            Exit::Usage,
            "--seeders, --getters and --runs must be at least 1",
        ));
    }
    cleanup::on_interrupt();
    let base = match &args.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    };
    let base = base.map_err(|e| {
        let within = args.dir.clone().unwrap_or_else(std::env::temp_dir);
        let msg = format!(
            "cannot make a scratch directory in {}: {e}",
            within.display()
        );
        Fail::new(Exit::Failure, msg)
    })?;
    let _scratch = cleanup::track_dir(base.path());
    let source = base.path().join("source");
    fs::create_dir_all(&source)?;
    write_data(&source.join(FILE), args.size)?;
    for s in 0..args.seeders {
        let dir = base.path().join(format!("seed{s}"));
        fs::create_dir_all(&dir)?;
        if fs::hard_link(source.join(FILE), dir.join(FILE)).is_err() {
            fs::copy(source.join(FILE), dir.join(FILE))?;
        }
    }
    let http = reference(args, ("curl", "curl"), HttpReference::start(&source, FILE));
    // An encrypted swarm is compared with an encrypted download too.
    let https = (!args.open)
        .then(|| {
            let started = HttpReference::start_tls(&source, FILE, base.path());
            reference(args, ("curl_https", "curl over HTTPS"), started)
        })
        .flatten();
    let mut runs = Vec::new();
    for i in 0..args.runs {
        let references = [http.as_ref(), https.as_ref()];
        let run = one_run(args, base.path(), &source.join(FILE), references)?;
        report_run(args, i, &run);
        runs.push(run);
    }
    let predicted = if args.sim {
        Some(simulated(args)?)
    } else {
        None
    };
    report_summary(args, &runs, predicted);
    Ok(())
}

/// The reference if it started; otherwise says why it is left out (`name` in JSON, `label`
/// in text).
fn reference(
    args: &TransferArgs,
    (name, label): (&str, &str),
    started: Result<HttpReference, String>,
) -> Option<HttpReference> {
    let why = match started {
        Ok(reference) => return Some(reference),
        Err(why) => why,
    };
    if args.json {
        let skipped = json!({"event": "reference_skipped", "reference": name, "reason": why});
        say!("{skipped}");
    } else {
        say!("no {label} reference: {why}");
    }
    None
}

/// Seconds until every getter is done, as the simulator predicts this transfer.
fn simulated(args: &TransferArgs) -> Result<f64, Fail> {
    let chunk_size = u32::try_from(args.chunk_size)
        .map_err(|_| Fail::new(Exit::Usage, "--chunk-size is too large"))?;
    let config = SwarmConfig::loopback(
        args.getters,
        args.seeders,
        args.size,
        chunk_size,
        args.upload_limit,
    );
    let report = run_swarm(&config);
    if let Some(failure) = report.failures.first() {
        let why = format!("the simulated transfer failed: {failure}");
        return Err(Fail::new(Exit::Failure, why));
    }
    Ok(report.spread().max)
}

fn one_run(
    args: &TransferArgs,
    base: &Path,
    source: &Path,
    [http, https]: [Option<&HttpReference>; 2],
) -> Result<Run, Fail> {
    settle_disk();
    let raw_tcp_mb_s = mb_s(args.size, raw_tcp_copy(source, &base.join("raw.out"))?);
    let _ = fs::remove_file(base.join("raw.out"));
    let sha256_mb_s = mb_s(args.size, sha256_secs(source)?);
    // Each measurement starts with no dirty pages of the previous one still being written.
    settle_disk();
    let curl_secs = http.and_then(|h| h.fetch_secs(&base.join("curl.out"), args.size));
    settle_disk();
    let curl_https_secs = https.and_then(|h| h.fetch_secs(&base.join("curl.out"), args.size));
    settle_disk();

    let exe = std::env::current_exe()?;
    let key_file = base.join("swarm.key");
    let keys: Vec<&str> = if args.open {
        vec!["--open"]
    } else {
        vec!["--key-file", path_str(&key_file)?]
    };
    let mut tracker = Node::start(
        &exe,
        &[&["tracker", "--listen", "127.0.0.1:0"], &keys[..]].concat(),
    )?;
    let tracker_addr = tracker.listening()?;
    let chunk = args.chunk_size.to_string();
    let limit = args.upload_limit.map(|l| l.to_string());
    let hash_threads = args.hash_threads.map(|n| n.to_string());
    let mut sharers = Vec::new();
    for s in 0..args.seeders {
        let dir = base.join(format!("seed{s}"));
        let mut a = vec![
            "share",
            path_str(&dir)?,
            "--tracker",
            &tracker_addr,
            "--listen",
            "127.0.0.1:0",
            "--chunk-size",
            &chunk,
        ];
        if let Some(l) = &limit {
            a.extend(["--upload-limit", l.as_str()]);
        }
        a.extend(&keys);
        let mut node = Node::start(&exe, &a)?;
        let addr = node.listening()?;
        node.wait_for(&format!("shared {FILE}"))?;
        // What hashing the directory took is not the transfer's.
        let scan_cpu_s = node.cpu_secs();
        sharers.push((node, addr, scan_cpu_s));
    }
    let started = Instant::now();
    let mut getters = Vec::new();
    for g in 0..args.getters {
        let out = base.join(format!("get{g}"));
        let _ = fs::remove_dir_all(&out);
        let mut a = vec![
            "get",
            FILE,
            "--tracker",
            &tracker_addr,
            "--out",
            path_str(&out)?,
            "--listen",
            "127.0.0.1:0",
            "--serve",
            "--json",
        ];
        if let Some(l) = &limit {
            a.extend(["--upload-limit", l.as_str()]);
        }
        if let Some(n) = &hash_threads {
            a.extend(["--hash-threads", n.as_str()]);
        }
        a.extend(&keys);
        getters.push((Node::start(&exe, &a)?, out));
    }
    // Each getter's output is read on its own thread: a getter whose stdout pipe fills
    // while another is being read would block, and stall the getters it serves.
    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let readers: Vec<_> = getters
            .iter_mut()
            .map(|(node, _)| {
                scope.spawn(move || {
                    let supplied = node.verified_until_done();
                    (supplied, started.elapsed().as_secs_f64())
                })
            })
            .collect();
        readers.into_iter().map(|r| r.join()).collect()
    });
    let mut secs_per_getter = Vec::new();
    let mut supplied: BTreeMap<String, u64> = BTreeMap::new();
    for (outcome, (_, out)) in outcomes.into_iter().zip(&getters) {
        let (per_peer, secs) =
            outcome.map_err(|_| Fail::new(Exit::Failure, "a bench reader thread panicked"))?;
        for (peer, n) in per_peer? {
            *supplied.entry(peer).or_default() += n;
        }
        secs_per_getter.push(secs);
        let got = fs::metadata(out.join(FILE)).map(|m| m.len()).unwrap_or(0);
        if got != args.size {
            return Err(Fail::new(
                Exit::Failure,
                format!("a getter ended with {got} bytes, not {}", args.size),
            ));
        }
    }
    let secs_all = started.elapsed().as_secs_f64();
    let run = Run {
        secs_per_getter,
        secs_all,
        curl_secs,
        curl_https_secs,
        raw_tcp_mb_s,
        sha256_mb_s,
        getter_rss_kib: getters.iter().map(|(n, _)| n.peak_rss_kib()).collect(),
        sharer_rss_kib: sharers.iter().map(|(n, _, _)| n.peak_rss_kib()).collect(),
        getter_cpu_s: getters
            .iter()
            .map(|(n, _)| n.cpu_at_done.unwrap_or_else(|| n.cpu_secs()))
            .collect(),
        sharer_cpu_s: sharers
            .iter()
            .map(|(n, _, scan)| n.cpu_secs() - scan)
            .collect(),
        sharer_chunks: sharers
            .iter()
            .map(|(_, addr, _)| supplied.get(addr).copied().unwrap_or(0))
            .collect(),
    };
    for (_, out) in &getters {
        let _ = fs::remove_dir_all(out);
    }
    drop(getters);
    drop(sharers);
    tracker.kill();
    Ok(run)
}

/// Flushes dirty pages system-wide, so one measurement's writeback does not slow the next.
fn settle_disk() {
    let _ = Command::new("sync").status();
}

fn path_str(p: &Path) -> Result<&str, Fail> {
    p.to_str()
        .ok_or_else(|| Fail::new(Exit::Failure, "bench directory is not UTF-8"))
}

/// Pseudo-random bytes (xorshift), written in 1 MiB blocks: cheap to make, not compressible.
fn write_data(path: &Path, size: u64) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; BLOCK];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(BLOCK as u64) as usize;
        f.write_all(block.get(..n).unwrap_or_default())?;
        left -= n as u64;
    }
    f.sync_all()
}

/// The reference: the same bytes over loopback TCP into a file, no hashing.
fn raw_tcp_copy(source: &Path, out: &Path) -> std::io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let src = source.to_path_buf();
    let started = Instant::now();
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let mut stream = TcpStream::connect(addr)?;
        let mut file = File::open(src)?;
        let mut buf = vec![0u8; BLOCK];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            stream.write_all(buf.get(..n).unwrap_or_default())?;
        }
    });
    let (mut stream, _) = listener.accept()?;
    let mut file = File::create(out)?;
    let mut buf = vec![0u8; BLOCK];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        file.write_all(buf.get(..n).unwrap_or_default())?;
    }
    let secs = started.elapsed().as_secs_f64();
    sender
        .join()
        .map_err(|_| std::io::Error::other("sender panicked"))??;
    Ok(secs)
}

/// The reference: SHA-256 over the same bytes in memory (read time excluded).
fn sha256_secs(source: &Path) -> std::io::Result<f64> {
    let mut file = File::open(source)?;
    let mut buf = vec![0u8; 64 * BLOCK];
    let mut secs = 0.0;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(secs);
        }
        let t = Instant::now();
        for piece in buf.get(..n).unwrap_or_default().chunks(BLOCK) {
            std::hint::black_box(Sha256::digest(piece));
        }
        secs += t.elapsed().as_secs_f64();
    }
}

fn report_run(args: &TransferArgs, i: usize, r: &Run) {
    let overall = mb_s(args.size * args.getters as u64, r.secs_all);
    let per: Vec<f64> = r
        .secs_per_getter
        .iter()
        .map(|s| mb_s(args.size, *s))
        .collect();
    if args.json {
        let line = json!({
            "event": "run", "run": i, "size": args.size, "seeders": args.seeders, "getters": args.getters,
            "secs_all": r.secs_all, "mb_s_per_getter": per, "mb_s_overall": overall,
            "curl_secs": r.curl_secs.map(|c| c.exited),
            "curl_synced_secs": r.curl_secs.map(|c| c.durable),
            "curl_https_secs": r.curl_https_secs.map(|c| c.exited),
            "curl_https_synced_secs": r.curl_https_secs.map(|c| c.durable),
            "raw_tcp_mb_s": r.raw_tcp_mb_s, "sha256_mb_s": r.sha256_mb_s,
            "getter_peak_rss_kib": r.getter_rss_kib, "sharer_peak_rss_kib": r.sharer_rss_kib,
            "getter_cpu_s": r.getter_cpu_s, "sharer_cpu_s": r.sharer_cpu_s,
            "sharer_chunks_supplied": r.sharer_chunks,
        });
        say!("{line}");
    } else {
        let per: Vec<String> = per.iter().map(|v| format!("{v:.0}")).collect();
        let secs = |v: &[f64]| {
            let each: Vec<String> = v.iter().map(|s| format!("{s:.2}")).collect();
            format!("[{}]", each.join(", "))
        };
        let timed = |c: CurlSecs| format!("{:.2} s ({:.2} s synced)", c.exited, c.durable);
        let https = r
            .curl_https_secs
            .map_or(String::new(), |c| format!(", curl over HTTPS {}", timed(c)));
        let curl = r.curl_secs.map_or("-".into(), timed);
        say!(
            "run {i}: {:.2} s, {overall:.0} MB/s overall (per getter: {} MB/s) | curl {curl}{https}, raw TCP copy {:.0} MB/s, SHA-256 {:.0} MB/s | peak RSS getters {:?} KiB, sharers {:?} KiB | CPU getters {} s, sharers {} s | chunks supplied by sharers {:?}",
            r.secs_all, per.join(", "), r.raw_tcp_mb_s, r.sha256_mb_s, r.getter_rss_kib, r.sharer_rss_kib,
            secs(&r.getter_cpu_s), secs(&r.sharer_cpu_s), r.sharer_chunks
        );
    }
}

/// The median, least and most of one reference's runs: until curl exited, and until synced.
#[derive(Clone, Copy)]
struct CurlMedians {
    exited: (f64, f64, f64),
    durable: (f64, f64, f64),
}

impl CurlMedians {
    fn of(runs: &[Run], pick: impl Fn(&Run) -> Option<CurlSecs>) -> Option<CurlMedians> {
        let secs: Vec<CurlSecs> = runs.iter().filter_map(pick).collect();
        (!secs.is_empty()).then(|| CurlMedians {
            exited: median(secs.iter().map(|c| c.exited).collect()),
            durable: median(secs.iter().map(|c| c.durable).collect()),
        })
    }

    /// One line: this reference (one download) beside drizzle's `measured` median, the
    /// time until all `getters` were done.
    fn compared(&self, what: &str, measured: f64, getters: usize) -> String {
        let ((c, lo, hi), (s, _, _)) = (self.exited, self.durable);
        let all = match getters {
            1 => String::new(),
            n => format!(", all {n} getters"),
        };
        format!(
            "{what}: median {c:.2} s (min {lo:.2}, max {hi:.2}), {s:.2} s with the file synced; drizzle (verified, synced{all}) median {measured:.2} s = {:.2}x its time, {:.2}x its synced time",
            measured / c.max(1e-9),
            measured / s.max(1e-9)
        )
    }
}

fn report_summary(args: &TransferArgs, runs: &[Run], predicted: Option<f64>) {
    let measured = median(runs.iter().map(|r| r.secs_all).collect()).0;
    let overall = median(
        runs.iter()
            .map(|r| mb_s(args.size * args.getters as u64, r.secs_all))
            .collect(),
    );
    let raw = median(runs.iter().map(|r| r.raw_tcp_mb_s).collect());
    let sha = median(runs.iter().map(|r| r.sha256_mb_s).collect());
    let curl = CurlMedians::of(runs, |r| r.curl_secs);
    let https = CurlMedians::of(runs, |r| r.curl_https_secs);
    let gib = args.size as f64 / (1u64 << 30) as f64;
    let cpu_per_gib = |cpu: fn(&Run) -> &Vec<f64>| {
        let all = runs.iter().flat_map(|r| cpu(r).iter().copied()).collect();
        median(all).0 / gib.max(1e-9)
    };
    let getter_cpu_per_gib = cpu_per_gib(|r| &r.getter_cpu_s);
    let sharer_cpu_per_gib = cpu_per_gib(|r| &r.sharer_cpu_s);
    let swarm = if args.open { "open" } else { "closed" };
    if args.json {
        let line = json!({
            "event": "summary", "runs": runs.len(), "swarm": swarm,
            "mb_s_overall": spread_json(overall),
            "raw_tcp_mb_s": spread_json(raw),
            "sha256_mb_s": spread_json(sha),
            "ratio_to_raw_tcp": overall.0 / raw.0.max(1e-9),
            "ratio_to_sha256": overall.0 / sha.0.max(1e-9),
            "secs_all": measured,
            "curl_secs": curl.map(|c| spread_json(c.exited)),
            "secs_to_curl": curl.map(|c| measured / c.exited.0.max(1e-9)),
            "curl_synced_secs": curl.map(|c| spread_json(c.durable)),
            "secs_to_curl_synced": curl.map(|c| measured / c.durable.0.max(1e-9)),
            "curl_https_secs": https.map(|c| spread_json(c.exited)),
            "secs_to_curl_https": https.map(|c| measured / c.exited.0.max(1e-9)),
            "curl_https_synced_secs": https.map(|c| spread_json(c.durable)),
            "secs_to_curl_https_synced": https.map(|c| measured / c.durable.0.max(1e-9)),
            "getter_cpu_s_per_gib": getter_cpu_per_gib,
            "sharer_cpu_s_per_gib": sharer_cpu_per_gib,
            "sim_secs": predicted,
            "measured_to_sim": predicted.map(|p| measured / p.max(1e-9)),
        });
        say!("{line}");
    } else {
        say!(
            "median of {} runs, {swarm} swarm: {:.0} MB/s overall (min {:.0}, max {:.0}); raw TCP copy {:.0} MB/s (ratio {:.2}); SHA-256 {:.0} MB/s (ratio {:.2})",
            runs.len(), overall.0, overall.1, overall.2, raw.0, overall.0 / raw.0.max(1e-9), sha.0, overall.0 / sha.0.max(1e-9)
        );
        if let Some(c) = curl {
            let what = "curl (HTTP from python3's http.server, nothing verified)";
            say!("{}", c.compared(what, measured, args.getters));
        }
        if let Some(c) = https {
            let what = "curl over HTTPS (TLS from python3's http.server, encrypted as a closed swarm is, nothing verified beyond it)";
            say!("{}", c.compared(what, measured, args.getters));
        }
        say!(
            "CPU per GiB (median): getter {getter_cpu_per_gib:.2} s, sharer {sharer_cpu_per_gib:.2} s"
        );
        if let Some(p) = predicted {
            say!(
                "simulator predicts {p:.2} s for this transfer; measured median {measured:.2} s ({:.2}x the prediction)",
                measured / p.max(1e-9)
            );
        }
    }
}
