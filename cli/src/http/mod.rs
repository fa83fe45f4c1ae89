//! The operator's view over HTTP (`--http ADDR`): `/metrics` in the Prometheus text format,
//! a JSON view of the node and, for a tracker, a live page at `/`. `server` serves,
//! `handoff` carries snapshots out of the event loop, `tracker_view` and `peer_view` say
//! what each node shows (`metrics` writes their Prometheus text), `client` fetches (for `drizzle status` and the benches). Metadata only: never a file's contents.

pub mod client;
mod handoff;
mod metrics;
pub mod peer_view;
mod server;
pub mod tracker_view;

pub use handoff::Handoff;
pub use server::View;
use server::{bind, serve};

use crate::exit::Fail;
use crate::out::say;
use std::net::SocketAddr;
use std::sync::Arc;

/// The address `--http` asked for, bound before the command says anything (so a taken
/// port fails it before its first line), served once its loop exists (`start`).
#[derive(Debug)]
pub struct HttpListener {
    listener: std::net::TcpListener,
    local: SocketAddr,
}

impl HttpListener {
    /// Binds `addr` if given (port 0 picks a free one).
    pub fn bind(addr: Option<SocketAddr>) -> Result<Option<HttpListener>, Fail> {
        let Some(addr) = addr else {
            return Ok(None);
        };
        let (listener, local) = bind(addr)?;
        Ok(Some(HttpListener { listener, local }))
    }

    /// Serves a node's view and says where (`http on IP:PORT`, or in NDJSON
    /// `{"event":"http","addr":...}`); returns where the loop publishes its snapshots.
    /// `wake` wakes the loop.
    pub fn start<V: View>(
        self,
        json: bool,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> Result<Arc<Handoff<V>>, Fail> {
        let handoff = Handoff::new(wake);
        serve(self.listener, handoff.clone())?;
        let local = self.local;
        match json {
            true => say!(
                "{}",
                serde_json::json!({"event": "http", "addr": local.to_string()})
            ),
            false => say!("http on {local}"),
        }
        Ok(handoff)
    }
}
