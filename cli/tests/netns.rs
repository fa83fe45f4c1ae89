//! Across hosts, not just loopback: each process runs in its own network namespace, the
//! namespaces joined by veth pairs to a bridge (itself in a namespace of its own, so the
//! machine's own networking is never touched), sharers' uplinks shaped with `tc tbf`.
//! A holder's link goes down mid-transfer, as when a host loses its cable: nothing closes,
//! packets just stop. Skipped, saying why, where `ip` or root is missing.

// Test code: a panic here is how a failure is reported.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// Namespaces `{prefix}h0..` on one bridge in `{prefix}sw`, host i at 10.77.{net}.{i+1}.
struct Net {
    prefix: String,
    net: u32,
    hosts: usize,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn in_ns(ns: &str, args: &[&str]) -> bool {
    let mut all = vec!["netns", "exec", ns, "ip"];
    all.extend_from_slice(args);
    ip(&all)
}

impl Net {
    /// `None` (with the reason printed) where namespaces cannot be made here.
    fn new(tag: u32, hosts: usize) -> Option<Net> {
        let prefix = format!("dz{}{tag}", std::process::id() % 10_000);
        if !ip(&["netns", "add", &format!("{prefix}sw")]) {
            eprintln!("skipped: cannot create a network namespace (needs root and iproute2)");
            return None;
        }
        let net = Net {
            prefix,
            net: std::process::id() % 200 + tag,
            hosts,
        };
        let sw = net.switch();
        assert!(in_ns(&sw, &["link", "add", "br0", "type", "bridge"]));
        assert!(in_ns(&sw, &["link", "set", "br0", "up"]));
        for i in 0..hosts {
            let (host, inner, outer) = (net.host(i), net.inner(i), net.outer(i));
            assert!(ip(&["netns", "add", &host]));
            assert!(ip(&[
                "link", "add", &inner, "type", "veth", "peer", "name", &outer
            ]));
            assert!(ip(&["link", "set", &inner, "netns", &host]));
            assert!(ip(&["link", "set", &outer, "netns", &sw]));
            assert!(in_ns(&sw, &["link", "set", &outer, "master", "br0", "up"]));
            let addr = format!("{}/24", net.addr(i));
            assert!(in_ns(&host, &["addr", "add", &addr, "dev", &inner]));
            assert!(in_ns(&host, &["link", "set", &inner, "up"]));
            assert!(in_ns(&host, &["link", "set", "lo", "up"]));
        }
        Some(net)
    }

    fn switch(&self) -> String {
        format!("{}sw", self.prefix)
    }
    fn host(&self, i: usize) -> String {
        format!("{}h{i}", self.prefix)
    }
    fn inner(&self, i: usize) -> String {
        format!("{}v{i}", self.prefix)
    }
    fn outer(&self, i: usize) -> String {
        format!("{}b{i}", self.prefix)
    }
    fn addr(&self, i: usize) -> String {
        format!("10.77.{}.{}", self.net, i + 1)
    }

    /// Shapes host i's uplink to `rate` (tc's units, e.g. `16mbit`).
    fn shape(&self, i: usize, rate: &str) {
        let ok = Command::new("ip")
            .args(["netns", "exec", &self.host(i), "tc", "qdisc", "add", "dev"])
            .args([&self.inner(i), "root", "tbf", "rate", rate])
            .args(["burst", "32kbit", "latency", "400ms"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "tc tbf on host {i}");
    }

    /// Host i's cable is pulled: its port on the bridge goes down, and nothing closes.
    fn unplug(&self, i: usize) {
        assert!(in_ns(
            &self.switch(),
            &["link", "set", &self.outer(i), "down"]
        ));
    }

    /// Runs `drizzle ARGS` on host i; its stdout lines arrive on the channel.
    fn run(&self, i: usize, args: &[&str]) -> (Child, Receiver<String>) {
        let mut child = Command::new("ip")
            .env("XDG_CONFIG_HOME", key_home())
            .env_remove("DRIZZLE_KEY")
            .args(["netns", "exec", &self.host(i), BIN])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (child, rx)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.hosts {
            ip(&["netns", "del", &self.host(i)]);
        }
        ip(&["netns", "del", &self.switch()]);
    }
}

fn wait_for(rx: &Receiver<String>, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if pred(&line) => return line,
            Ok(_) => {}
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

/// Ends a child that is still running, so no process outlives the test.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Tracker on host 0, sharers on hosts 1.., each shaped to 16 Mbit/s; returns the
/// tracker's address and the processes.
fn swarm(net: &Net, sharers: usize, dir: &std::path::Path) -> (String, Vec<Reaped>) {
    let listen = format!("{}:7000", net.addr(0));
    let (t, rx) = net.run(0, &["tracker", "--listen", &listen]);
    let tracker = wait_for(&rx, "listening", |l| l.starts_with("listening on "))
        .trim_start_matches("listening on ")
        .to_string();
    let mut procs = vec![Reaped(t)];
    for i in 1..=sharers {
        net.shape(i, "16mbit");
        let listen = format!("{}:0", net.addr(i));
        let (p, rx) = net.run(
            i,
            &[
                "share",
                dir.to_str().unwrap(),
                "--tracker",
                &tracker,
                "--listen",
                &listen,
                "--chunk-size",
                "64KiB",
            ],
        );
        wait_for(&rx, "shared", |l| l == "shared big");
        procs.push(Reaped(p));
    }
    (tracker, procs)
}

/// `drizzle get big --json` on host i into `out`, with `extra` flags.
fn get_big(
    net: &Net,
    i: usize,
    tracker: &str,
    out: &std::path::Path,
    extra: &[&str],
) -> (Reaped, Receiver<String>) {
    let mut args = vec!["get", "big", "--tracker", tracker];
    args.extend(["--out", out.to_str().unwrap(), "--json"]);
    args.extend_from_slice(extra);
    let (child, rx) = net.run(i, &args);
    (Reaped(child), rx)
}

#[test]
fn a_holder_whose_link_goes_down_mid_transfer() {
    let (d1, d2, d3) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    write(d1.path(), "big", &data(6 << 20, 9));
    // Two holders: the download completes from the one left.
    let two = std::thread::spawn({
        let (src, out) = (d1.path().to_path_buf(), d2.path().to_path_buf());
        move || {
            let Some(net) = Net::new(1, 4) else { return };
            let (tracker, _procs) = swarm(&net, 2, &src);
            let (mut getter, rx) = get_big(&net, 3, &tracker, &out, &[]);
            let from_1 = format!("\"peer\":\"{}:", net.addr(1));
            wait_for(&rx, "a chunk from host 1", |l| {
                l.contains("\"event\":\"verified\"") && l.contains(&from_1)
            });
            net.unplug(1);
            let status = getter.0.wait().unwrap();
            assert!(status.success(), "get ended {status:?}");
            assert_same_file(&src, &out, "big");
        }
    });
    // One holder: the download ends, exit 4, within the stall timeout.
    let one = std::thread::spawn({
        let (src, out) = (d1.path().to_path_buf(), d3.path().to_path_buf());
        move || {
            let Some(net) = Net::new(2, 3) else { return };
            let (tracker, _procs) = swarm(&net, 1, &src);
            let (mut getter, rx) = get_big(&net, 2, &tracker, &out, &["--stall-timeout", "8"]);
            wait_for(&rx, "a verified chunk", |l| {
                l.contains("\"event\":\"verified\"")
            });
            net.unplug(1);
            let unplugged = Instant::now();
            let status = getter.0.wait().unwrap();
            assert_eq!(status.code(), Some(4), "get ended {status:?}");
            let took = unplugged.elapsed();
            assert!(took < Duration::from_secs(20), "exit 4 after {took:?}");
            assert!(!out.join("big").exists());
        }
    });
    two.join().unwrap();
    one.join().unwrap();
}
