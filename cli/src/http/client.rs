//! The client side: one GET with a bounded wait and a bounded body, for `drizzle status`
//! and the benches (which scrape what Prometheus and the live page would).

use std::net::SocketAddr;
use std::time::Duration;

/// The whole exchange, connect to last byte.
pub const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("{0} is unreachable: {1}")]
    Unreachable(SocketAddr, std::io::Error),
    #[error("{0} did not answer within {TIMEOUT:?}")]
    Timeout(SocketAddr),
    /// Something answered, but not as HTTP (or with a body past the bound).
    #[error("{0} did not answer as HTTP ({1})")]
    NotHttp(SocketAddr, String),
    #[error("GET {1} from {0}: {2}")]
    Status(SocketAddr, String, u16),
}

/// GETs `path` from `addr`: the body, at most `limit` bytes.
pub fn get(addr: SocketAddr, path: &str, limit: u64) -> Result<Vec<u8>, GetError> {
    request(addr, path, limit, Method::Get)
}

/// POSTs `json` (WebDriver speaks JSON over HTTP): the body of the answer, whatever its
/// status.
pub fn post_json(
    addr: SocketAddr,
    path: &str,
    json: &serde_json::Value,
) -> Result<Vec<u8>, GetError> {
    request(addr, path, 16 << 20, Method::Post(json))
}

/// DELETEs `path` (a WebDriver session).
pub fn delete(addr: SocketAddr, path: &str) -> Result<Vec<u8>, GetError> {
    request(addr, path, 1 << 20, Method::Delete)
}

enum Method<'a> {
    Get,
    Post(&'a serde_json::Value),
    Delete,
}

fn request(addr: SocketAddr, path: &str, limit: u64, method: Method) -> Result<Vec<u8>, GetError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://{addr}{path}");
    let answer = match method {
        Method::Get => agent.get(&url).call(),
        Method::Post(json) => (agent.post(&url))
            .header("content-type", "application/json")
            .send(json.to_string()),
        Method::Delete => agent.delete(&url).call(),
    };
    let mut response = answer.map_err(|e| match e {
        ureq::Error::Io(e) => GetError::Unreachable(addr, e),
        ureq::Error::Timeout(_) => GetError::Timeout(addr),
        e => GetError::NotHttp(addr, e.to_string()),
    })?;
    let status = response.status().as_u16();
    if matches!(method, Method::Get) && !response.status().is_success() {
        return Err(GetError::Status(addr, path.to_string(), status));
    }
    let body = response.body_mut().with_config().limit(limit).read_to_vec();
    body.map_err(|e| GetError::NotHttp(addr, e.to_string()))
}
