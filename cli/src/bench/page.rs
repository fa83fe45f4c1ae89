//! What an operator's view costs and how fast it shows: `/metrics` and `/api/swarm` scraped
//! every second while a bench runs (as Prometheus and an open live page would), and the live
//! page loaded in headless Chromium through WebDriver (`chromedriver`), timed by the page
//! itself from navigation start to its first complete render.

use super::median;
use crate::http::client::{self, GetError};
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the scraper saw.
#[derive(Debug)]
pub struct Scrapes {
    pub metrics_ms: Vec<f64>,
    pub api_ms: Vec<f64>,
    pub api_bytes: usize,
    pub failures: Vec<String>,
    /// Page loads (ms), or why none was measured.
    pub page_ms: Result<Vec<f64>, String>,
    /// Peers online when the page was loaded.
    pub page_peers: u64,
}

impl Scrapes {
    pub fn summary(&self) -> Value {
        let ms = |v: &[f64]| {
            let (med, min, max) = median(v.to_vec());
            json!({"n": v.len(), "median": med, "min": min, "max": max})
        };
        json!({
            "metrics_ms": ms(&self.metrics_ms), "api_swarm_ms": ms(&self.api_ms),
            "api_swarm_bytes": self.api_bytes, "failures": self.failures,
            "page_load_ms": match &self.page_ms { Ok(v) => ms(v), Err(why) => json!(why) },
            "page_peers_online": self.page_peers,
        })
    }
}

/// Until `deadline`: every second GETs `/metrics` and `/api/swarm` from `http`; with
/// `page` = (peers, after), once that many peers are online (or `after` at the latest),
/// loads the page three times in a browser.
pub fn scrape(http: SocketAddr, page: Option<(u64, Duration)>, deadline: Instant) -> Scrapes {
    let mut s = Scrapes {
        metrics_ms: Vec::new(),
        api_ms: Vec::new(),
        api_bytes: 0,
        failures: Vec::new(),
        page_ms: Err(match page {
            Some(_) => "the run ended before the page was loaded".into(),
            None => "not asked (--page)".into(),
        }),
        page_peers: 0,
    };
    let mut online = 0;
    let started = Instant::now();
    let mut page_done = page.is_none();
    let (peers, page_after) = page.unwrap_or_default();
    while Instant::now() < deadline {
        let tick = Instant::now();
        for (path, times) in [
            ("/metrics", &mut s.metrics_ms),
            ("/api/swarm", &mut s.api_ms),
        ] {
            let at = Instant::now();
            match client::get(http, path, 1 << 30) {
                Ok(body) => {
                    times.push(at.elapsed().as_secs_f64() * 1e3);
                    if path == "/api/swarm" {
                        s.api_bytes = body.len();
                        let view: Value = serde_json::from_slice(&body).unwrap_or_default();
                        online = view
                            .get("peers_online")
                            .and_then(Value::as_u64)
                            .unwrap_or(0);
                    }
                }
                Err(e) => s.failures.push(e.to_string()),
            }
        }
        if !page_done && (online >= peers || started.elapsed() >= page_after) {
            page_done = true;
            s.page_peers = online;
            s.page_ms = (0..3).map(|_| page_load_ms(http)).collect();
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
    }
    s
}

/// Loads `http`'s page in headless Chromium: milliseconds from navigation start to the
/// page's first render of the swarm (`data-rendered`, set by the page).
pub fn page_load_ms(http: SocketAddr) -> Result<f64, String> {
    let driver = Driver::start()?;
    let result = driver.time_page(http);
    drop(driver);
    result
}

/// A chromedriver process, killed when dropped.
struct Driver {
    child: Child,
    addr: SocketAddr,
}

impl Driver {
    fn start() -> Result<Driver, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("no chromedriver ({e}); apt-get install chromium-driver"))?;
        let driver = Driver {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while client::get(driver.addr, "/status", 1 << 20).is_err() {
            if Instant::now() > deadline {
                return Err("chromedriver did not start within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(driver)
    }

    fn call(&self, path: &str, body: Value) -> Result<Value, String> {
        let answer =
            client::post_json(self.addr, path, &body).map_err(|e: GetError| e.to_string())?;
        let answer: Value = serde_json::from_slice(&answer).map_err(|e| e.to_string())?;
        let value = answer.get("value").cloned().unwrap_or_default();
        match value.get("error") {
            Some(error) => Err(format!("webdriver {path}: {error}")),
            None => Ok(value),
        }
    }

    fn time_page(&self, http: SocketAddr) -> Result<f64, String> {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1280,900",
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "goog:chromeOptions": {"args": args}}}});
        let session = self.call("/session", capabilities)?;
        let id = session
            .get("sessionId")
            .and_then(Value::as_str)
            .ok_or("no webdriver session")?
            .to_string();
        self.call(
            &format!("/session/{id}/url"),
            json!({"url": format!("http://{http}/")}),
        )?;
        let script = json!({"script": "return document.body.dataset.rendered || null", "args": []});
        let deadline = Instant::now() + Duration::from_secs(30);
        let rendered = loop {
            let value = self.call(&format!("/session/{id}/execute/sync"), script.clone())?;
            if let Some(ms) = value.as_str().and_then(|v| v.parse::<f64>().ok()) {
                break Ok(ms);
            }
            if Instant::now() > deadline {
                break Err("the page did not render the swarm within 30 s".to_string());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = client::delete(self.addr, &format!("/session/{id}"));
        rendered
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
