//! How a peer behaves: where it listens and whom it asks, its timeouts, and its fetch and
//! serve policies, each with a documented default. Tuning lives here so that a simulator or
//! a test can vary it per peer; the hard bounds on what remotes can make it do are in
//! `limits.rs`. How the defaults were chosen is told in `docs/swarm.md`.

use crate::secure::Security;
use std::net::SocketAddr;

/// How a peer behaves; times in milliseconds.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    pub tracker: SocketAddr,
    /// Where this peer accepts other peers (`0.0.0.0:p` lets the tracker fill in the IP).
    pub listen: SocketAddr,
    /// Seeds the peer's RNG; the real driver draws it from the OS and logs it.
    pub seed: u64,
    /// A holder that sends nothing for this long while owing chunks is dropped.
    pub request_timeout_ms: u64,
    /// How often a download asks the tracker for a fresh chunk map: soon after a map that
    /// brought news (new holders or chunks), backing off by doubling up to the max when
    /// the maps stop changing. Peers that download together learn of each other quickly.
    pub refresh_min_ms: u64,
    pub refresh_max_ms: u64,
    /// A download that cannot progress for this long fails as unavailable.
    pub unavailable_after_ms: u64,
    /// A holder whose connection failed is left alone this long.
    pub holder_retry_ms: u64,
    /// A holder that said `Busy` is asked again after about this long (jittered) if its
    /// `Ready` has not come first.
    pub busy_retry_ms: u64,
    /// When only holders that sent bad data are left for some chunk, the chunk map is
    /// refreshed and the file rejected if no good holder shows up within this time.
    pub reject_grace_ms: u64,
    /// Tracker reconnect backoff: first delay and cap (each jittered).
    pub reconnect_base_ms: u64,
    pub reconnect_max_ms: u64,
    /// A tracker up for less than this may not have heard from every holder again since
    /// it started (their reconnect backoff is capped; a network fault can delay them more),
    /// so its "no such file" is asked again rather than final.
    pub tracker_settle_ms: u64,
    pub fetch: FetchPolicy,
    pub serve: ServePolicy,
    /// Open, or closed to all but holders of the swarm key.
    pub security: Security,
}

impl PeerConfig {
    /// The default cap of the tracker reconnect backoff: a restarted tracker has heard
    /// from every peer again within about this long (see `tracker_settle_ms`).
    pub const DEFAULT_RECONNECT_MAX_MS: u64 = 5_000;
    /// A second past the default reconnect cap: by then every peer that was connected to a
    /// tracker before it restarted has tried again.
    pub const DEFAULT_TRACKER_SETTLE_MS: u64 = Self::DEFAULT_RECONNECT_MAX_MS + 1_000;

    pub fn new(tracker: SocketAddr, listen: SocketAddr, seed: u64) -> PeerConfig {
        PeerConfig {
            tracker,
            listen,
            seed,
            request_timeout_ms: 20_000,
            refresh_min_ms: 250,
            refresh_max_ms: 5_000,
            unavailable_after_ms: 30_000,
            holder_retry_ms: 2_000,
            busy_retry_ms: 2_000,
            reject_grace_ms: 3_000,
            reconnect_base_ms: 200,
            reconnect_max_ms: Self::DEFAULT_RECONNECT_MAX_MS,
            tracker_settle_ms: Self::DEFAULT_TRACKER_SETTLE_MS,
            fetch: FetchPolicy::default(),
            serve: ServePolicy::default(),
            security: Security::Open,
        }
    }
}

/// How a download asks for chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchPolicy {
    /// A download that knows more holders than this is in a swarm: it keeps shallow
    /// pipelines and a small request budget (below); with fewer, deep ones.
    pub few_holders: usize,
    /// Requests outstanding to one holder with few holders (16): nobody else could take
    /// the chunks, and depth hides latency.
    pub requests_per_holder: usize,
    /// Requests outstanding to one holder in a swarm (2): a chunk queued at one holder
    /// waits there while another (one that frees a slot, a newcomer) could send it at once.
    pub shared_requests_per_holder: usize,
    /// Requests one download keeps outstanding with few holders (64).
    pub requests_per_download: usize,
    /// Requests one download keeps outstanding in a swarm (6). Chunks asked of several
    /// holders at once arrive one after another on our downlink, so past a few, more
    /// requests only wait longer, and a chunk waiting its turn is one that no idle holder
    /// can be asked for.
    pub shared_requests_per_download: usize,
    /// The two shared depths above count chunks of this size (1 MiB): a file in smaller
    /// chunks keeps as many bytes in flight, with proportionally more requests (up to the
    /// few-holders depths). Counted in chunks alone, a 20 MiB file in 512 KiB chunks kept
    /// half the bytes in flight and lost to round trips what its chunks gained in
    /// spreading: 500 peers at 100 ms one way, 2.83x -> 3.03x the bound (2.66x in bytes).
    pub shared_depth_chunk_bytes: u32,
    /// ...and cover round trips up to this long (100 ms; the shortest wait in the download
    /// from a request leaving to the first bytes of its answer, data or `Busy`): on a
    /// longer path they keep proportionally more bytes in flight, up to four times as many. Deeper pipelines
    /// everywhere (12 / 4) helped at 100 ms one way and cost at 20 ms (100 peers x 100 MiB
    /// 1.157x -> 1.175x the bound).
    pub shared_depth_round_trip_ms: u64,
    /// Endgame: when every missing chunk is in flight and at most this many are missing,
    /// stragglers are asked of a second holder too (earlier, duplicates would waste
    /// bandwidth on chunks that are merely queued)...
    pub endgame_max_missing: usize,
    /// ...up to this many holders at once per chunk.
    pub copies_in_flight: usize,
    /// A download waiting in this many holders' lines (3: each said `Busy`, and will call
    /// with `Ready` when a slot frees) opens no new connection; it asks the holders it is
    /// connected to, or waits to be called. A call holds a slot for a round trip, and a
    /// fetcher that had sprayed requests over every holder it knew was mostly served
    /// elsewhere by the time it was called: at 1,000 peers four requests in five were
    /// answered `Busy` and each peer opened 193 connections in a 13-second download.
    pub most_lines_waiting: usize,
    /// A download that receives nothing says what it waits on this often.
    pub stall_note_every_ms: u64,
}

impl Default for FetchPolicy {
    fn default() -> FetchPolicy {
        FetchPolicy {
            few_holders: 4,
            requests_per_holder: 16,
            shared_requests_per_holder: 2,
            requests_per_download: 64,
            shared_requests_per_download: 6,
            shared_depth_chunk_bytes: 1 << 20,
            shared_depth_round_trip_ms: 100,
            endgame_max_missing: 4,
            copies_in_flight: 2,
            most_lines_waiting: 3,
            stall_note_every_ms: 5_000,
        }
    }
}

/// How a peer serves the chunks it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServePolicy {
    /// Fetchers uploaded to at once on a short path (3); the others are told `Busy` and go
    /// elsewhere or wait, so the upload is not spread so thin that every copy arrives late.
    pub upload_slots: usize,
    /// On a path whose round trip holds whole chunk transfers, one more slot for each,
    /// up to this many (6): there a slot waits on round trips for most of a turn,
    /// and a chunk's every generation of spread is mostly latency, so more children per
    /// holder fill both (see `UploadSlots::count`).
    pub most_upload_slots: usize,
    /// Waiting fetchers called (`Ready`) for each slot that comes free (3): the first to ask
    /// takes it, the others go back to the front of the line. Most of those called ask
    /// nothing (they found the chunks elsewhere meanwhile); calling one at a time left the
    /// slot idle for a hold per refusal.
    pub calls_per_free_slot: usize,
    /// A slot offered with `Ready` is kept this long for those called (60 ms), so that a
    /// newcomer asking first cannot take it and send the waiter to the back again. Long
    /// enough for a round trip nearby; on longer paths the hold lapses and the slot goes to
    /// whoever asks first.
    pub ready_hold_ms: u64,
    /// Chunks a fetcher is served in one turn at a slot while others wait for one (2).
    pub slot_turn_chunks: u32,
    /// Fetchers waiting for a slot that hear of each chunk this peer newly obtains (`Have`),
    /// besides those it serves: the first in line, called soonest (8).
    pub waiters_told_have: usize,
    /// The tracker hears of idle slots at most this often (100 ms)...
    pub idle_report_gap_ms: u64,
    /// ...and reports that bring nobody are repeated after 2, 4, … times the gap, up to
    /// 2^this times.
    pub idle_report_backoff_steps: u32,
    /// The next chunk for a connection is read only when less than this is unsent on it
    /// (1 MiB), so connections share the uplink in turn rather than in request order.
    pub unsent_low_bytes: usize,
}

impl Default for ServePolicy {
    fn default() -> ServePolicy {
        ServePolicy {
            upload_slots: 3,
            most_upload_slots: 6,
            calls_per_free_slot: 3,
            ready_hold_ms: 60,
            slot_turn_chunks: 2,
            waiters_told_have: 8,
            idle_report_gap_ms: 100,
            idle_report_backoff_steps: 6,
            unsent_low_bytes: 1 << 20,
        }
    }
}
