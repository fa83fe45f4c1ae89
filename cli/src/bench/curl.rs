//! The references a user would reach for: `curl` fetching the same file from a static
//! server on 127.0.0.1 (Python's `http.server`) — over plain HTTP, nothing verified, and,
//! beside a closed swarm, over HTTPS (TLS with AES-GCM, as a closed swarm's records) —
//! timed as it exits (the bytes may still be only in the page cache) and once they are
//! synced to disk, as a `get` does before it renames. Where a program is missing the bench
//! says so and goes on without that reference.

use crate::cleanup;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
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

/// A static HTTP(S) server serving one directory, and how curl fetches the file from it.
pub struct HttpReference {
    server: Child,
    url: String,
    /// The server's self-signed certificate, which curl is told to trust (HTTPS only).
    ca: Option<PathBuf>,
}

/// `http.server`'s own server, its listening socket wrapped in TLS; it says its port the
/// way `python3 -m http.server` does, so one parser reads both.
const HTTPS_SERVER_PY: &str = r#"
import functools, http.server, ssl, sys
directory, cert, key = sys.argv[1:4]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain(cert, key)
server.socket = tls.wrap_socket(server.socket, server_side=True)
print(f"Serving HTTPS on 127.0.0.1 port {server.server_address[1]}", flush=True)
server.serve_forever()
"#;

impl HttpReference {
    /// Serves `dir` over plain HTTP on 127.0.0.1 (a port the system picks) for `curl` to
    /// fetch `file`; `Err` says why the reference cannot run here.
    pub fn start(dir: &Path, file: &str) -> Result<HttpReference, String> {
        curl_present()?;
        let mut command = Command::new("python3");
        command
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
            .arg("--directory")
            .arg(dir);
        HttpReference::serve(command, "http", file, None)
    }

    /// As `start`, over HTTPS: a certificate for 127.0.0.1 made for the run in `scratch`
    /// (with `openssl`), TLS 1.3 as curl and Python's OpenSSL agree on it.
    pub fn start_tls(dir: &Path, file: &str, scratch: &Path) -> Result<HttpReference, String> {
        curl_present()?;
        let (cert, key) = (
            scratch.join("https-cert.pem"),
            scratch.join("https-key.pem"),
        );
        let made = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !made.is_ok_and(|s| s.success()) {
            return Err("openssl (to make the server's certificate) is missing or failed".into());
        }
        let mut command = Command::new("python3");
        command
            .args(["-u", "-c", HTTPS_SERVER_PY])
            .arg(dir)
            .arg(&cert)
            .arg(&key);
        HttpReference::serve(command, "https", file, Some(cert))
    }

    /// Starts the server `command` and reads the port it says it listens on.
    fn serve(
        mut command: Command,
        scheme: &str,
        file: &str,
        ca: Option<PathBuf>,
    ) -> Result<HttpReference, String> {
        let mut server = cleanup::spawn(command.stdout(Stdio::piped()).stderr(Stdio::null()))
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
            cleanup::forget_process(server.id());
            return Err(format!("python3's {scheme} server did not say its port"));
        };
        Ok(HttpReference {
            server,
            url: format!("{scheme}://127.0.0.1:{port}/{file}"),
            ca,
        })
    }

    /// One `curl -o out` of the file: seconds until the process exits, and until the file
    /// is synced too; `None` if it failed or wrote other than `size` bytes.
    pub fn fetch_secs(&self, out: &Path, size: u64) -> Option<CurlSecs> {
        let started = Instant::now();
        let mut curl = Command::new("curl");
        if let Some(ca) = &self.ca {
            curl.arg("--cacert").arg(ca);
        }
        let status = curl
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

fn curl_present() -> Result<(), String> {
    let curl = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    match curl {
        Ok(s) if s.success() => Ok(()),
        _ => Err("curl is not installed".into()),
    }
}

impl Drop for HttpReference {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        cleanup::forget_process(self.server.id());
    }
}
