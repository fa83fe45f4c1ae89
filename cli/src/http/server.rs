//! The HTTP server: hyper on a one-thread tokio runtime of its own, so the mio loop never
//! waits on a client. What a client can make it do is bounded: connections in all and per
//! address, time to send a request's head, a connection's lifetime, GET only.

use super::handoff::Handoff;
use crate::exit::{Exit, Fail};
use drizzle_core::log_gate::LogGate;
use drizzle_core::Timestamp;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Connections served at once; more are closed as they arrive.
const MAX_CONNECTIONS: usize = 64;
/// Connections served at once from one address.
const MAX_CONNECTIONS_PER_ADDRESS: usize = 8;
/// A client has this long to send a request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection (with keep-alive, many requests) lasts at most this long.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// What a node shows: a JSON view at `API`, its metrics, and perhaps a page at `/`.
pub trait View: Serialize + Send + Sync + 'static {
    /// Where the JSON view is served, e.g. `/api/swarm`.
    const API: &'static str;
    /// The page served at `/`, if the node has one.
    const PAGE: Option<&'static str>;
    /// The view in the Prometheus text format.
    fn metrics(&self) -> String;
}

/// Binds `addr` for HTTP (port 0 picks a free one): the listener and the address bound.
pub fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Fail> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| Fail::new(Exit::Failure, format!("cannot serve http on {addr}: {e}")))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves `listener` on a thread of its own until the process ends, with views from
/// `handoff`.
pub fn serve<V: View>(listener: TcpListener, handoff: Arc<Handoff<V>>) -> Result<(), Fail> {
    let cannot = |e: std::io::Error| Fail::new(Exit::Failure, format!("cannot serve http: {e}"));
    listener.set_nonblocking(true).map_err(cannot)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(cannot)?;
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || runtime.block_on(accept(listener, handoff)))
        .map_err(cannot)?;
    Ok(())
}

async fn accept<V: View>(listener: TcpListener, handoff: Arc<Handoff<V>>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return log::error!("http: {e}"),
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_address = Arc::new(Mutex::new(BTreeMap::new()));
    // Refusals are warned of once a minute per address: a flood of connections cannot
    // flood the log.
    let (mut gate, epoch) = (LogGate::default(), Instant::now());
    let mut refusing = |remote: SocketAddr, why: std::fmt::Arguments<'_>| {
        let now = Timestamp::from_ms(epoch.elapsed().as_millis() as u64);
        let text = format_args!("http: refusing {remote}: {why}");
        gate.warn(module_path!(), remote.ip(), now, text);
    };
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, say: wait rather than spin.
                log::warn!("http: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refusing(remote, format_args!("{MAX_CONNECTIONS} connections open"));
            continue;
        };
        let Some(turn) = AddressTurn::take(&per_address, remote.ip()) else {
            refusing(
                remote,
                format_args!("{MAX_CONNECTIONS_PER_ADDRESS} open from it"),
            );
            continue;
        };
        let handoff = handoff.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, handoff.clone()));
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                Ok(Err(e)) => log::debug!("http: {remote}: {e}"),
                Err(_) => log::debug!("http: {remote}: closed after {CONNECTION_LIFETIME:?}"),
                Ok(Ok(())) => {}
            }
            drop((slot, turn));
        });
    }
}

/// One connection's share of its address's budget, given back when dropped.
struct AddressTurn {
    table: Arc<Mutex<BTreeMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl AddressTurn {
    fn take(table: &Arc<Mutex<BTreeMap<IpAddr, usize>>>, ip: IpAddr) -> Option<AddressTurn> {
        let mut open = table.lock().ok()?;
        let n = open.entry(ip).or_insert(0);
        if *n >= MAX_CONNECTIONS_PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(AddressTurn {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for AddressTurn {
    fn drop(&mut self) {
        let Ok(mut open) = self.table.lock() else {
            return;
        };
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

async fn answer<V: View>(
    req: Request<Incoming>,
    handoff: Arc<Handoff<V>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "GET only\n"));
    }
    let path = req.uri().path();
    if path == "/" {
        return Ok(match V::PAGE {
            Some(page) => reply(StatusCode::OK, HTML, page),
            None => reply(
                StatusCode::OK,
                TEXT,
                format!("see /metrics and {}\n", V::API),
            ),
        });
    }
    if path != "/metrics" && path != V::API {
        return Ok(reply(StatusCode::NOT_FOUND, TEXT, "not found\n"));
    }
    let Some(view) = handoff.fresh().await else {
        let busy = "the node has not answered yet; try again\n";
        return Ok(reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, busy));
    };
    Ok(match path {
        "/metrics" => reply(StatusCode::OK, METRICS, view.metrics()),
        _ => match serde_json::to_vec(&*view) {
            Ok(json) => reply(StatusCode::OK, JSON, json),
            Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, e.to_string()),
        },
    })
}

const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json";
const METRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(v) = content_type.parse() {
        headers.insert(CONTENT_TYPE, v);
    }
    if let Ok(v) = "no-store".parse() {
        headers.insert(CACHE_CONTROL, v);
    }
    response
}
