//! The harness shared by the binary's end-to-end tests: running `drizzle` processes,
//! reading their stdout lines and `--json` events, and making test files.

// Not every test file uses every helper.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_drizzle");
pub const CHUNK: usize = 64 * 1024;
pub const WAIT: Duration = Duration::from_secs(30);

/// A running `drizzle` process whose stdout lines arrive on a channel.
pub struct Proc {
    pub child: Child,
    lines: Receiver<String>,
    pub seen: Vec<String>,
}

/// Where this test binary's processes keep and find their swarm key: its own config
/// directory (XDG_CONFIG_HOME), so every tracker makes or reuses one key there and every
/// client finds it, as on one machine.
/// The key is made here, once, before any process starts, so that a client started before
/// any tracker finds it too.
pub fn key_home() -> PathBuf {
    static HOME: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    HOME.get_or_init(|| {
        let home = std::env::temp_dir().join(format!("drizzle-tests-{}", std::process::id()));
        let dir = home.join("drizzle");
        std::fs::create_dir_all(&dir).unwrap();
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(dir.join("swarm.key"), hex + "\n").unwrap();
        let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
        std::fs::set_permissions(dir.join("swarm.key"), private).unwrap();
        home
    })
    .clone()
}

/// The swarm key every tracker of this test binary uses (after one has started).
pub fn swarm_key() -> String {
    let file = key_home().join("drizzle/swarm.key");
    std::fs::read_to_string(file).unwrap().trim().to_string()
}

/// `drizzle`, with the environment of this test binary (see `key_home`).
pub fn drizzle() -> Command {
    let mut c = Command::new(BIN);
    c.env("XDG_CONFIG_HOME", key_home())
        .env_remove("DRIZZLE_KEY");
    c
}

impl Proc {
    pub fn start(args: &[&str]) -> Proc {
        let mut child = drizzle()
            .args(args)
            .stdout(Stdio::piped())
            // TEST_STDERR=1 shows the processes' logs (with RUST_LOG) when a test fails.
            .stderr(if std::env::var_os("TEST_STDERR").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stdout line satisfying `pred`, returning it.
    pub fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("timed out waiting for {what}; saw {:?}", self.seen),
            }
        }
    }

    /// The address from the contract's first line, `listening on IP:PORT`.
    pub fn listening(&mut self) -> String {
        let first = self.wait_line("listening line", |_| true);
        first
            .strip_prefix("listening on ")
            .expect("first line is 'listening on IP:PORT'")
            .to_string()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tracker of a closed swarm (the key in `key_home`), and its address.
pub fn tracker() -> (Proc, String) {
    tracker_with(&[])
}

/// A tracker with `extra` arguments (`--open`, `--key-file F`); its address, after its
/// second line (`swarm key KEY` or `swarm open (no key)`) has come.
pub fn tracker_with(extra: &[&str]) -> (Proc, String) {
    let mut args = vec!["tracker", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut t = Proc::start(&args);
    let addr = t.listening();
    t.wait_line("the swarm line", |l| l.starts_with("swarm "));
    (t, addr)
}

/// Shares `dir` and waits until every name in `names` is registered.
pub fn share(dir: &Path, tracker: &str, names: &[&str], extra: &[&str]) -> (Proc, String) {
    share_at("127.0.0.1:0", dir, tracker, names, extra)
}

/// Like `share`, listening at `listen` (a 127.0.0.x address stands for another host).
pub fn share_at(
    listen: &str,
    dir: &Path,
    tracker: &str,
    names: &[&str],
    extra: &[&str],
) -> (Proc, String) {
    let mut args = vec![
        "share",
        dir.to_str().unwrap(),
        "--tracker",
        tracker,
        "--listen",
        listen,
        "--chunk-size",
        "64KiB",
    ];
    args.extend_from_slice(extra);
    let mut p = Proc::start(&args);
    let addr = p.listening();
    let mut missing: std::collections::BTreeSet<String> =
        names.iter().map(|n| format!("shared {n}")).collect();
    while !missing.is_empty() {
        let line = p.wait_line("shared lines", |l| l.starts_with("shared "));
        missing.remove(&line);
    }
    (p, addr)
}

/// `drizzle get NAME --json` into `out`, listening at `listen`.
fn get_args(name: &str, tracker: &str, out: &Path, listen: &str) -> Vec<String> {
    let out = out.to_str().unwrap();
    [
        "get",
        name,
        "--tracker",
        tracker,
        "--out",
        out,
        "--listen",
        listen,
        "--json",
    ]
    .map(String::from)
    .to_vec()
}

/// Starts `drizzle get NAME --json` in the background (see `get` for one run to its end).
pub fn start_get(name: &str, tracker: &str, out: &Path) -> Proc {
    let args = get_args(name, tracker, out, "127.0.0.1:0");
    Proc::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

pub fn get(name: &str, tracker: &str, out: &Path, extra: &[&str]) -> Output {
    get_at("127.0.0.1:0", name, tracker, out, extra)
}

/// Like `get`, listening at `listen` (a 127.0.0.x address stands for another host: the
/// tracker tells peers apart by the address they connect from).
pub fn get_at(listen: &str, name: &str, tracker: &str, out: &Path, extra: &[&str]) -> Output {
    drizzle()
        .args(get_args(name, tracker, out, listen))
        .args(extra)
        .output()
        .unwrap()
}

pub fn events(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

pub fn data(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2654435761)
                .rotate_left(u32::from(salt)) as u8
                ^ salt
        })
        .collect()
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Asserts that `name` has the same bytes under both directories (and exists in both).
pub fn assert_same_file(a: &Path, b: &Path, name: &str) {
    let read = |dir: &Path| std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(read(a) == read(b), "{name} differs between {a:?} and {b:?}");
}
