//! A `drizzle` child process for benchmarks: started with arguments, its stdout read line
//! by line, its peak memory and CPU time read from /proc.

use crate::cleanup;
use crate::exit::{Exit, Fail};
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A `drizzle` child process whose stdout is read line by line.
pub struct Node {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    /// CPU seconds when the getter said `done`.
    pub cpu_at_done: Option<f64>,
}

impl Node {
    pub fn start(exe: &Path, args: &[&str]) -> Result<Node, Fail> {
        let mut child = cleanup::spawn(
            Command::new(exe)
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        )?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Fail::new(Exit::Failure, "no stdout"))?;
        Ok(Node {
            child,
            lines: BufReader::new(stdout).lines(),
            cpu_at_done: None,
        })
    }

    pub fn listening(&mut self) -> Result<String, Fail> {
        let line = self.wait_for("listening on ")?;
        Ok(line.trim_start_matches("listening on ").to_string())
    }

    pub fn wait_for(&mut self, needle: &str) -> Result<String, Fail> {
        for line in self.lines.by_ref() {
            let line = line?;
            if line.contains(needle) {
                return Ok(line);
            }
        }
        Err(Fail::new(
            Exit::Failure,
            format!("a bench process ended before printing {needle:?}"),
        ))
    }

    fn proc_file(&self, name: &str) -> String {
        fs::read_to_string(format!("/proc/{}/{name}", self.child.id())).unwrap_or_default()
    }

    /// Peak resident set (VmHWM), KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        field(&self.proc_file("status"), "VmHWM:")
    }

    /// User + system CPU seconds so far (/proc ticks are 1/100 s).
    pub fn cpu_secs(&self) -> f64 {
        let stat = self.proc_file("stat");
        let after_name = stat.rsplit(')').next().unwrap_or_default();
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat; after the name, field 3 comes first.
        let ticks: u64 = [14, 15]
            .iter()
            .filter_map(|f| fields.get(f - 3).and_then(|v| v.parse::<u64>().ok()))
            .sum();
        ticks as f64 / 100.0
    }

    /// Reads a getter's `--json` events until `done`, counting verified chunks per peer.
    pub fn verified_until_done(&mut self) -> Result<BTreeMap<String, u64>, Fail> {
        let mut per_peer = BTreeMap::new();
        for line in self.lines.by_ref() {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line?) else {
                continue;
            };
            let text = |key: &str| event.get(key).and_then(serde_json::Value::as_str);
            match text("event") {
                Some("verified") => {
                    let peer = text("peer").unwrap_or_default().to_string();
                    *per_peer.entry(peer).or_default() += 1;
                }
                Some("done") => {
                    self.cpu_at_done = Some(self.cpu_secs());
                    return Ok(per_peer);
                }
                Some("rejected" | "failed") => {
                    return Err(Fail::new(
                        Exit::Failure,
                        format!("a getter failed: {event}"),
                    ))
                }
                _ => {}
            }
        }
        Err(Fail::new(
            Exit::Failure,
            "a getter ended before it was done",
        ))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        cleanup::forget_process(self.child.id());
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
