//! `drizzle bench swarm`: a real swarm on one machine — every seeder and getter a `drizzle`
//! process in its own network namespace on one bridge, its upload and download shaped with
//! `tc tbf` — beside the same swarm in the simulator and the lower bound. Needs root and
//! `ip`/`tc`; without them it says so and exits 2.

use super::process::Node;
use crate::cleanup;
use crate::exit::{Exit, Fail};
use crate::out::say;
use crate::units;
use drizzle_core::manifest::default_chunk_size;
use drizzle_sim::{run_swarm, Mix, SwarmConfig};
use serde_json::json;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const FILE: &str = "swarm.bin";
const BRIDGE: &str = "drzbr0";
/// The bridge's network; the tracker listens on .1, node i on .(i + 2).
const NET: &str = "10.77.0";
/// tc shapes whole frames: of each full one on the bridge (1,514 bytes at its 1,500-byte
/// MTU) TCP carries 1,448 bytes of payload, the rest being Ethernet, IP and TCP headers
/// (with timestamps, Linux's default). Payload is what a download moves.
const PAYLOAD_PER_FRAME: (u64, u64) = (1448, 1514);

#[derive(clap::Args, Debug)]
pub struct SwarmBenchArgs {
    /// Getters.
    #[arg(long, default_value_t = 4)]
    pub peers: usize,
    #[arg(long, default_value_t = 1)]
    pub seeders: usize,
    #[arg(long, default_value = "20MiB", value_parser = units::parse_size)]
    pub file_size: u64,
    /// Chunk size (default: as `share` chooses for the file, see `default_chunk_size`).
    #[arg(long, value_parser = units::parse_chunk_size)]
    pub chunk_size: Option<u32>,
    /// The getters' upload rate in bytes per second (e.g. 5MB), or a mix (5MB:80%,1MB:20%).
    #[arg(long, default_value = "5MB", value_parser = units::parse_mix)]
    pub up: Mix,
    /// The getters' download rate, or a mix.
    #[arg(long, default_value = "50MB", value_parser = units::parse_mix)]
    pub down: Mix,
    /// The seeders' upload rate, or a mix (default: as --up).
    #[arg(long, value_parser = units::parse_mix)]
    pub seed_up: Option<Mix>,
    /// How long a shaped link may queue what it cannot send yet (tbf's `latency`): the
    /// depth of its buffer, which short messages wait behind.
    #[arg(long, default_value_t = 400)]
    pub queue_ms: u64,
    #[arg(long)]
    pub json: bool,
}

/// The namespaces and the bridge, removed when dropped (or when the bench is interrupted).
struct Testbed {
    spaces: Vec<String>,
    _interrupted: cleanup::TrackedTeardown,
}

impl Drop for Testbed {
    fn drop(&mut self) {
        cleanup::run_quietly(&teardown(self.spaces.len()));
    }
}

/// The commands that remove `nodes` namespaces and the bridge: the links first (a
/// namespace's own go with it, but not at once).
fn teardown(nodes: usize) -> Vec<Vec<String>> {
    let ip = |args: &[&str]| {
        [&["ip"][..], args]
            .concat()
            .iter()
            .map(|a| a.to_string())
            .collect()
    };
    let links = (0..nodes).map(|i| ip(&["link", "del", &format!("drzv{i}")]));
    let spaces = (0..nodes).map(|i| ip(&["netns", "del", &format!("drz{i}")]));
    links
        .chain(spaces)
        .chain([ip(&["link", "del", BRIDGE])])
        .collect()
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(format!("{program} {}: {}", args.join(" "), err.trim()))
}

/// tbf at `rate` bytes per second on `dev` (in `ns`, or the root namespace), queueing up
/// to `queue_ms` of it.
fn shape(ns: Option<&str>, dev: &str, rate: u64, queue_ms: u64) -> Result<(), String> {
    let rate = format!("{}bit", rate.saturating_mul(8));
    let latency = format!("{queue_ms}ms");
    let mut args = vec![];
    if let Some(ns) = ns {
        args.extend(["netns", "exec", ns, "tc"]);
    }
    args.extend(["qdisc", "replace", "dev", dev, "root", "tbf", "rate", &rate]);
    args.extend(["burst", "256kb", "latency", &latency]);
    match ns {
        Some(_) => run("ip", &args),
        None => run("tc", &args),
    }
}

impl Testbed {
    /// A bridge with the tracker's address, and `nodes` namespaces on it.
    fn build(nodes: usize) -> Result<Testbed, String> {
        let _ = run("ip", &["link", "del", BRIDGE]);
        let interrupted = cleanup::track_teardown(teardown(nodes));
        run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        let mut bed = Testbed {
            spaces: Vec::new(),
            _interrupted: interrupted,
        };
        run(
            "ip",
            &["addr", "add", &format!("{NET}.1/24"), "dev", BRIDGE],
        )?;
        run("ip", &["link", "set", BRIDGE, "up"])?;
        for i in 0..nodes {
            let ns = format!("drz{i}");
            let host = format!("drzv{i}");
            // What an interrupted run may have left.
            let _ = run("ip", &["link", "del", &host]);
            let _ = run("ip", &["netns", "del", &ns]);
            run("ip", &["netns", "add", &ns])?;
            bed.spaces.push(ns.clone());
            run(
                "ip",
                &[
                    "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            )?;
            run("ip", &["link", "set", &host, "master", BRIDGE, "up"])?;
            let addr = format!("{NET}.{}/24", i + 2);
            run("ip", &["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(bed)
    }
}

pub fn swarm(args: &SwarmBenchArgs) -> Result<(), Fail> {
    if args.peers == 0 || args.seeders == 0 {
        return Err(Fail::new(
            Exit::Usage,
            "--peers and --seeders must be positive",
        ));
    }
    let chunk_size = (args.chunk_size).unwrap_or_else(|| default_chunk_size(args.file_size));
    let cannot =
        |why: String| Fail::new(Exit::Usage, format!("the testbed cannot run here: {why}"));
    let nodes = args.seeders + args.peers;
    cleanup::on_interrupt();
    let bed = Testbed::build(nodes).map_err(cannot)?;
    let config = SwarmConfig {
        seeders: args.seeders,
        file_size: args.file_size,
        chunk_size,
        up_mix: Some(args.up.clone()),
        down_mix: Some(args.down.clone()),
        seed_up: Some(args.seed_up.clone().unwrap_or_else(|| args.up.clone())),
        latency_ms: 1,
        ..SwarmConfig::new(args.peers, 1)
    };
    // Uploads shaped inside each namespace, downloads on the bridge side of its link.
    let (seed_ups, ups, downs) = (config.seeder_ups(), config.peer_ups(), config.peer_downs());
    for i in 0..nodes {
        let (up, down) = match i.checked_sub(args.seeders) {
            None => (seed_ups.get(i).copied(), None),
            Some(p) => (ups.get(p).copied(), downs.get(p).copied()),
        };
        let ns = format!("drz{i}");
        if let Some(up) = up {
            shape(Some(&ns), "eth0", up, args.queue_ms).map_err(cannot)?;
        }
        if let Some(down) = down {
            shape(None, &format!("drzv{i}"), down, args.queue_ms).map_err(cannot)?;
        }
    }
    let dir = tempfile::tempdir()?;
    let _scratch = cleanup::track_dir(dir.path());
    let real = run_real(args, chunk_size, &bed, dir.path())?;
    drop(bed);
    // The twin runs at the rates payload crosses these links, as does the bound.
    let twin = SwarmConfig {
        up_mix: config.up_mix.as_ref().map(payload_rates),
        down_mix: config.down_mix.as_ref().map(payload_rates),
        seed_up: config.seed_up.as_ref().map(payload_rates),
        ..config.clone()
    };
    let predicted = run_swarm(&twin);
    report(args, &twin, config.bound_secs(), &real, &predicted.times());
    Ok(())
}

/// A mix of link rates as the payload rates TCP gets through them.
fn payload_rates(mix: &Mix) -> Mix {
    let (payload, frame) = PAYLOAD_PER_FRAME;
    Mix(mix
        .0
        .iter()
        .map(|(rate, share)| (rate * payload / frame, *share))
        .collect())
}

/// Seconds each getter took, in order.
fn run_real(
    args: &SwarmBenchArgs,
    chunk_size: u32,
    _bed: &Testbed,
    dir: &Path,
) -> Result<Vec<f64>, Fail> {
    let exe = std::env::current_exe()?;
    let exe = exe
        .to_str()
        .ok_or_else(|| Fail::new(Exit::Failure, "binary path is not UTF-8"))?;
    let source = dir.join("source");
    fs::create_dir_all(&source)?;
    let data: Vec<u8> = (0..args.file_size)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    fs::write(source.join(FILE), &data)?;
    drop(data);
    let ip = Path::new("ip");
    // A closed swarm of its own, as users run them.
    let key_file = dir.join("swarm.key");
    let key_file = key_file.to_str().unwrap_or_default();
    let mut tracker = Node::start(
        Path::new(exe),
        &[
            "tracker",
            "--listen",
            &format!("{NET}.1:0"),
            "--key-file",
            key_file,
        ],
    )?;
    let tracker_addr = tracker.listening()?;
    let chunk = chunk_size.to_string();
    let mut seeders = Vec::new();
    for s in 0..args.seeders {
        let ns = format!("drz{s}");
        let listen = format!("{NET}.{}:0", s + 2);
        let src = source.to_str().unwrap_or_default();
        let a = [
            "netns",
            "exec",
            &ns,
            exe,
            "share",
            src,
            "--tracker",
            &tracker_addr,
            "--listen",
            &listen,
            "--chunk-size",
            &chunk,
            "--key-file",
            key_file,
        ];
        let mut node = Node::start(ip, &a)?;
        node.wait_for(&format!("shared {FILE}"))?;
        seeders.push(node);
    }
    let started = Instant::now();
    let mut getters = Vec::new();
    for p in 0..args.peers {
        let i = args.seeders + p;
        let ns = format!("drz{i}");
        let listen = format!("{NET}.{}:0", i + 2);
        let out = dir.join(format!("get{p}"));
        let out = out.to_str().unwrap_or_default().to_string();
        let a = [
            "netns",
            "exec",
            &ns,
            exe,
            "get",
            FILE,
            "--tracker",
            &tracker_addr,
            "--out",
            &out,
            "--listen",
            &listen,
            "--serve",
            "--json",
            "--key-file",
            key_file,
        ];
        getters.push(Node::start(ip, &a)?);
    }
    let times: Vec<Result<f64, Fail>> = std::thread::scope(|scope| {
        let readers: Vec<_> = getters
            .iter_mut()
            .map(|node| {
                scope.spawn(move || {
                    node.verified_until_done()?;
                    Ok(started.elapsed().as_secs_f64())
                })
            })
            .collect();
        readers
            .into_iter()
            .map(|r| {
                r.join()
                    .unwrap_or_else(|_| Err(Fail::new(Exit::Failure, "a reader panicked")))
            })
            .collect()
    });
    drop(getters);
    drop(seeders);
    tracker.kill();
    times.into_iter().collect()
}

/// `config` is the twin (payload rates); `line_bound` the bound at the links' own rates.
fn report(args: &SwarmBenchArgs, config: &SwarmConfig, line_bound: f64, real: &[f64], sim: &[f64]) {
    let bound = config.bound_secs();
    let (rm, _, rl) = super::median(real.to_vec());
    let (sm, _, sl) = super::median(sim.to_vec());
    if args.json {
        let line = json!({"event": "summary", "peers": args.peers, "seeders": args.seeders,
            "bound_secs": bound, "line_bound_secs": line_bound, "real_secs": real,
            "real_median_secs": rm, "real_last_secs": rl,
            "sim_median_secs": sm, "sim_last_secs": sl,
            "real_median_to_bound": rm / bound, "real_median_to_sim": rm / sm});
        say!("{line}");
    } else {
        say!(
            "testbed: {} getter(s), {} seeder(s), {} in {} chunks; bound {bound:.2} s at the \
             links' payload rates ({line_bound:.2} s at their line rates)",
            args.peers,
            args.seeders,
            units::bytes(args.file_size),
            args.file_size.div_ceil(u64::from(config.chunk_size.max(1)))
        );
        say!(
            "real:      median {rm:.2} s ({:.2}x the bound), last {rl:.2} s ({:.2}x)",
            rm / bound,
            rl / bound
        );
        say!(
            "simulated: median {sm:.2} s ({:.2}x the bound), last {sl:.2} s ({:.2}x)",
            sm / bound,
            sl / bound
        );
        say!("real median / simulated median: {:.2}", rm / sm);
    }
}
