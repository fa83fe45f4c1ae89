//! `drizzle bench tracker`: K clients over real TCP against one `drizzle tracker` process,
//! each registered as a holder of one file and then keeping `depth` pairs in flight of
//! "I now hold chunk c" (`HaveChunk`) and "who holds the file?" (`Locate`). Reports
//! operations per second and the round-trip latency of the locates.

use super::median;
use super::page;
use super::process::Node;
use crate::cleanup;
use crate::exit::{Exit, Fail};
use crate::out::say;
use drizzle_core::wire::{encode, FrameDecoder, Hello, Message, Role, SharedFile};
use drizzle_core::{ChunkSet, FileName, Manifest};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const FILE: &str = "bench.bin";

#[derive(clap::Args, Debug)]
pub struct TrackerArgs {
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    #[arg(long, default_value_t = 5.0)]
    pub secs: f64,
    /// Have-chunk + locate pairs each client keeps in flight.
    #[arg(long, default_value_t = 4)]
    pub depth: usize,
    /// Chunks of the file every client holds part of (sizes the locate answers).
    #[arg(long, default_value_t = 1024)]
    pub chunks: u32,
    /// Files each client registers half the chunks of (the first is the one it announces
    /// and locates).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub files: u32,
    /// Run the tracker with `--http` and scrape `/metrics` and `/api/swarm` every second
    /// while the clients run, as Prometheus and an open live page would.
    #[arg(long)]
    pub http: bool,
    /// With `--http`: also load the live page in headless Chromium (through chromedriver)
    /// once every client is online, and time it. The browser shares this machine's cores
    /// with the tracker, so compare ops/s without it.
    #[arg(long, requires = "http")]
    pub page: bool,
    #[arg(long)]
    pub json: bool,
}

/// What one client measured.
#[derive(Debug, Default)]
struct ClientRun {
    haves: u64,
    locates: u64,
    latencies_us: Vec<u32>,
    answer_bytes: u64,
}

pub fn tracker(args: &TrackerArgs) -> Result<(), Fail> {
    if args.clients == 0 || args.depth == 0 || args.chunks == 0 || args.secs <= 0.0 {
        return Err(Fail::new(
            Exit::Usage,
            "--clients, --depth, --chunks and --secs must be positive",
        ));
    }
    let exe = std::env::current_exe()?;
    // Its clients speak the open protocol by hand: the tracker's own work is measured,
    // not the cipher's.
    let mut command = vec!["tracker", "--listen", "127.0.0.1:0", "--open"];
    if args.http {
        command.extend(["--http", "127.0.0.1:0"]);
    }
    cleanup::on_interrupt();
    let mut tracker = Node::start(&exe, &command)?;
    let no_address = || Fail::new(Exit::Failure, "the tracker printed no address");
    let addr: SocketAddr = tracker.listening()?.parse().map_err(|_| no_address())?;
    let http: Option<SocketAddr> = match args.http {
        true => Some(
            tracker
                .wait_for("http on ")?
                .trim_start_matches("http on ")
                .parse()
                .map_err(|_| no_address())?,
        ),
        false => None,
    };
    let files = (0..args.files)
        .map(|k| {
            let name = match k {
                0 => FILE.to_string(),
                k => format!("bench-{k}.bin"),
            };
            let name = FileName::new(name).map_err(|e| Fail::new(Exit::Failure, e.to_string()))?;
            Ok((name, fake_manifest(args.chunks, k)))
        })
        .collect::<Result<Vec<_>, Fail>>()?;
    let duration = Duration::from_secs_f64(args.secs);
    let started = Instant::now();
    let mut scrapes = None;
    let runs: Vec<Result<ClientRun, String>> = std::thread::scope(|scope| {
        let scraper = http.map(|http| {
            let page_after = duration.mul_f64(0.6);
            let peers = args.clients as u64;
            let page = args.page.then_some((peers, page_after));
            scope.spawn(move || page::scrape(http, page, started + duration))
        });
        let clients: Vec<_> = (0..args.clients)
            .map(|i| {
                let files = files.clone();
                scope.spawn(move || {
                    client(addr, i, files, args.depth, duration).map_err(|e| e.to_string())
                })
            })
            .collect();
        scrapes = scraper.and_then(|s| s.join().ok());
        clients
            .into_iter()
            .map(|c| c.join().unwrap_or_else(|_| Err("client panicked".into())))
            .collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let runs: Vec<ClientRun> = runs
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|e| Fail::new(Exit::Failure, format!("a bench client failed: {e}")))?;
    report(args, &runs, secs, &tracker, scrapes.as_ref());
    tracker.kill();
    Ok(())
}

/// The `k`-th file's manifest, of `chunks` 1 MiB chunks; the tracker checks its shape, not
/// its hashes.
fn fake_manifest(chunks: u32, k: u32) -> Manifest {
    let chunk_size: u32 = 1 << 20;
    let hash = |i: u32| {
        let mut h = [(i % 251) as u8; 32];
        h[..4].copy_from_slice(&k.to_le_bytes());
        h
    };
    Manifest {
        size: u64::from(chunks) * u64::from(chunk_size),
        chunk_size,
        hashes: (0..chunks).map(hash).collect(),
    }
}

/// Client `i`'s own loopback address: a hundred clients per address, below the tracker's
/// limit of connections per address.
fn client_ip(i: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(127, 1, (i / 100 % 256) as u8, (1 + i % 100) as u8)
}

fn connect_from(ip: std::net::Ipv4Addr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((ip, 0)).into())?;
    socket.connect(&addr.into())?;
    Ok(socket.into())
}

/// One client: registers as a holder of half the chunks of each file, then keeps `depth`
/// have+locate pairs in flight (of the first file) until `duration` has passed, timing
/// each locate's answer.
fn client(
    addr: SocketAddr,
    i: usize,
    files: Vec<(FileName, Manifest)>,
    depth: usize,
    duration: Duration,
) -> std::io::Result<ClientRun> {
    let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
    let (name, first) = files.first().ok_or(std::io::ErrorKind::InvalidInput)?;
    let (name, root, count) = (name.clone(), first.root(), first.chunk_count());
    let shared = files.into_iter().map(|(name, manifest)| {
        let chunks = manifest.chunk_count();
        let have = ChunkSet::from_indices(chunks, (0..chunks).filter(|_| rng.gen_bool(0.5)));
        SharedFile {
            name,
            manifest,
            have,
        }
    });
    let shared: Vec<SharedFile> = shared.collect();
    let mut stream = connect_from(client_ip(i), addr)?;
    stream.set_nodelay(true)?;
    let mut hello = encode(&Message::Hello(Hello::new(Role::Peer)));
    hello.extend(encode(&Message::Register {
        peer_id: i as u64,
        listen: SocketAddr::from(([127, 0, 0, 1], 20_000 + (i % 40_000) as u16)),
        files: shared,
    }));
    stream.write_all(&hello)?;
    let mut reader = Reader::new();
    while !matches!(reader.next(&mut stream)?, Message::Registered { .. }) {}

    let mut run = ClientRun::default();
    let mut sent_at: VecDeque<(u32, Instant)> = VecDeque::new();
    let mut next_req = 0u32;
    let deadline = Instant::now() + duration;
    loop {
        let now = Instant::now();
        let mut batch = Vec::new();
        while sent_at.len() < depth && now < deadline {
            let chunk = rng.gen_range(0..count);
            batch.extend(encode(&Message::HaveChunk { root, chunk }));
            batch.extend(encode(&Message::Locate {
                req: next_req,
                name: name.clone(),
                known: Some(root),
            }));
            sent_at.push_back((next_req, now));
            next_req = next_req.wrapping_add(1);
            run.haves += 1;
        }
        if !batch.is_empty() {
            stream.write_all(&batch)?;
        }
        let Some((req, at)) = sent_at.pop_front() else {
            return Ok(run);
        };
        let before = reader.consumed;
        match reader.next(&mut stream)? {
            Message::Holders { req: got, .. } if got == req => {
                run.locates += 1;
                run.answer_bytes += (reader.consumed - before) as u64;
                let us = at.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                run.latencies_us.push(us);
            }
            other => {
                return Err(std::io::Error::other(format!(
                    "expected the answer to locate {req}, got {}",
                    other.kind()
                )))
            }
        }
    }
}

/// Reads whole messages from a blocking stream.
struct Reader {
    decoder: FrameDecoder,
    buf: Vec<u8>,
    hello_seen: bool,
    /// Bytes read so far.
    consumed: usize,
}

impl Reader {
    fn new() -> Reader {
        Reader {
            decoder: FrameDecoder::new(),
            buf: vec![0; 64 * 1024],
            hello_seen: false,
            consumed: 0,
        }
    }

    /// The next message after the tracker's hello.
    fn next(&mut self, stream: &mut TcpStream) -> std::io::Result<Message> {
        loop {
            match self.decoder.next_message() {
                Ok(Some(Message::Hello(_))) if !self.hello_seen => {
                    self.hello_seen = true;
                    self.decoder.hello_done();
                }
                Ok(Some(msg)) => return Ok(msg),
                Ok(None) => {
                    let n = stream.read(&mut self.buf)?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    self.consumed += n;
                    self.decoder.push(self.buf.get(..n).unwrap_or_default());
                }
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

fn report(
    args: &TrackerArgs,
    runs: &[ClientRun],
    secs: f64,
    tracker: &Node,
    scrapes: Option<&page::Scrapes>,
) {
    let scraped = scrapes.map(page::Scrapes::summary);
    let haves: u64 = runs.iter().map(|r| r.haves).sum();
    let locates: u64 = runs.iter().map(|r| r.locates).sum();
    let answer_bytes: u64 = runs.iter().map(|r| r.answer_bytes).sum();
    let mut lat: Vec<u32> = runs.iter().flat_map(|r| r.latencies_us.clone()).collect();
    lat.sort_unstable();
    let ops_s = (haves + locates) as f64 / secs;
    let (p50, p99, max) = (
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0),
    );
    let per_client = median(
        runs.iter()
            .map(|r| (r.haves + r.locates) as f64 / secs)
            .collect(),
    );
    let answer_bytes_avg = answer_bytes / locates.max(1);
    let (rss, cpu) = (tracker.peak_rss_kib(), tracker.cpu_secs());
    if args.json {
        let line = json!({
            "event": "summary", "clients": args.clients, "depth": args.depth,
            "chunks": args.chunks, "secs": secs, "ops_per_sec": ops_s,
            "locates": locates, "haves": haves,
            "locate_latency_us": {"p50": p50, "p99": p99, "max": max},
            "ops_per_sec_per_client": super::spread_json(per_client),
            "locate_answer_bytes": answer_bytes_avg,
            "tracker_peak_rss_kib": rss, "tracker_cpu_s": cpu, "files": args.files,
            "http": scraped,
        });
        say!("{line}");
    } else {
        say!(
            "{} clients × {} in flight, {:.1} s: {:.0} ops/s ({} have-chunk + {} locate); locate round trip p50 {} µs, p99 {} µs, max {} µs; answers {} bytes each ({} chunks, up to 50 holders); tracker peak RSS {} KiB, CPU {:.2} s",
            args.clients, args.depth, secs, ops_s, haves, locates, p50, p99, max,
            answer_bytes_avg, args.chunks, rss, cpu
        );
        if let Some(s) = scraped {
            say!("http while it ran: {s}");
        }
    }
}
