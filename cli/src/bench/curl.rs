//! The reference a user would reach for: `curl` fetching the same file from a static HTTP
//! server on 127.0.0.1 (`python3 -m http.server`), nothing verified — timed as it exits
//! (the bytes may still be only in the page cache) and once they are synced to disk, as a
//! `get` does before it renames. Where either program is missing the bench says so and goes
//! on without it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// One curl run, in seconds from its start.
#[derive(Clone, Copy, Debug)]
pub struct CurlSecs {
    /// Until curl exited.
    pub exited: f64,
    /// Until the file it wrote was synced to disk.
    pub durable: f64,
}

/// A static HTTP server serving one directory, and the URL of the file to fetch.
pub struct HttpReference {
    server: Child,
    url: String,
}

impl HttpReference {
    /// Serves `dir` on 127.0.0.1 (a port the system picks) for `curl` to fetch `file`;
    /// `Err` says why the reference cannot run here.
    pub fn start(dir: &Path, file: &str) -> Result<HttpReference, String> {
        let curl = Command::new("curl")
            .arg("--version")
            .stdout(Stdio::null())
            .status();
        if !curl.is_ok_and(|s| s.success()) {
            return Err("curl is not installed".into());
        }
        let mut server = Command::new("python3")
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("python3 (for its http.server) cannot start: {e}"))?;
        let port = server.stdout.take().and_then(|out| {
            // "Serving HTTP on 127.0.0.1 port 43777 (http://127.0.0.1:43777/) ..."
            let line = BufReader::new(out).lines().next()?.ok()?;
            let rest = line.split(" port ").nth(1)?;
            rest.split_whitespace().next()?.parse::<u16>().ok()
        });
        let Some(port) = port else {
            let _ = server.kill();
            let _ = server.wait();
            return Err("python3's http.server did not say its port".into());
        };
        Ok(HttpReference {
            server,
            url: format!("http://127.0.0.1:{port}/{file}"),
        })
    }

    /// One `curl -o out` of the file: seconds until the process exits, and until the file
    /// is synced too; `None` if it failed or wrote other than `size` bytes.
    pub fn fetch_secs(&self, out: &Path, size: u64) -> Option<CurlSecs> {
        let started = Instant::now();
        let status = Command::new("curl")
            .args(["--silent", "--fail", "--output"])
            .arg(out)
            .arg(&self.url)
            .status()
            .ok()?;
        let exited = started.elapsed().as_secs_f64();
        let synced = std::fs::File::open(out).and_then(|f| f.sync_all());
        let durable = started.elapsed().as_secs_f64();
        let got = std::fs::metadata(out).map(|m| m.len()).ok();
        let _ = std::fs::remove_file(out);
        let good = status.success() && synced.is_ok() && got == Some(size);
        good.then_some(CurlSecs { exited, durable })
    }
}

impl Drop for HttpReference {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
