//! Every bound Drizzle enforces, in one place, so that SECURITY-relevant numbers are easy to
//! audit. Anything a remote sends is checked against these before it is allocated or stored.

/// Largest frame (length prefix excluded) accepted once the hello is done.
pub const MAX_FRAME_BYTES: usize = MAX_CHUNK_SIZE as usize + 64 * 1024;
/// Largest frame accepted before the hello: a stranger gets no big buffer.
pub const MAX_HELLO_FRAME_BYTES: usize = 256;
/// Largest frame a fetching peer may send after its hello: it only asks for chunks (or says
/// why it leaves, in a clipped reason), so connecting to a peer earns no big buffer either.
pub const MAX_FETCHER_FRAME_BYTES: usize = 4096;

/// Chunk sizes a manifest may declare.
pub const MIN_CHUNK_SIZE: u32 = 64;
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
pub const DEFAULT_CHUNK_SIZE: u32 = 1024 * 1024;
/// Chunks one file may have (with 1 MiB chunks, 256 GiB).
pub const MAX_CHUNKS_PER_FILE: u32 = 256 * 1024;

/// Bytes in a file name (a relative `/`-separated path) and in one of its components. A
/// component leaves room for the longest suffix of a download's side files
/// (`NAME.part.chunks`, 12 bytes) within the 255 bytes common filesystems allow, so every
/// name that can be shared can be fetched.
pub const MAX_NAME_BYTES: usize = 1024;
pub const MAX_NAME_COMPONENT_BYTES: usize = 255 - ".part.chunks".len();

/// Files one register message may carry, and files a tracker records in all.
pub const MAX_FILES_PER_REGISTER: usize = 4096;
pub const MAX_TRACKER_FILES: usize = 100_000;
/// A file nobody holds is forgotten (with its name) after this long: long enough for its
/// holders to reconnect, short enough that departed sessions leave nothing behind.
pub const ORPHAN_TTL_MS: u64 = 60_000;
/// Files one peer session may register.
pub const MAX_FILES_PER_SESSION: usize = 16_384;
/// Names the sessions from one IP address may pin at a tracker (register first), so that
/// one host cannot fill the tracker for everyone else: a quarter of `MAX_TRACKER_FILES`.
pub const MAX_NAMES_PER_ADDRESS: usize = MAX_TRACKER_FILES / 4;
/// Bad-holder reports (`Message::Report`). A report counts for this long; a fetcher
/// repeats one at most this often.
pub const REPORT_TTL_MS: u64 = 120_000;
/// A holder reported for a file by this many distinct IP addresses (within the TTL) is
/// no longer handed out for it, unless it alone offers some chunk (counting as no source
/// a holder the asker's address reported). So a liar must hold this many addresses to
/// hide an honest holder, and cannot make a chunk unavailable.
pub const REPORTERS_TO_SUSPEND: usize = 3;
/// Reports one tracker session may make (more are ignored), and reporters remembered for
/// one holder of one file (enough to suspend it many times over).
pub const MAX_REPORTS_PER_SESSION: usize = 4096;
pub const MAX_REPORTERS_PER_HOLDER: usize = 64;
/// Bytes of file list one answer carries at most (longer lists are cut, and say so).
pub const MAX_FILE_LIST_BYTES: usize = 4 * 1024 * 1024;
/// Holders a locate answer samples at most.
pub const MAX_LOCATE_HOLDERS: usize = 50;
/// Holders a download's chunk map keeps at most: a locate sample, those it is connected
/// to, and holders introduced between refreshes (more introductions are ignored).
pub const MAX_KNOWN_HOLDERS: usize = 256;
/// A peer tells the tracker of idle upload slots at most this often.
pub const IDLE_REPORT_GAP_MS: u64 = 100;
/// Idle reports that bring nobody are repeated after 2, 4, … times the gap, up to 2^this.
pub const IDLE_REPORT_BACKOFF_STEPS: u32 = 6;
/// Seekers an idle report introduces the holder to per free upload slot: most introduced
/// seekers already have every chunk the holder could give them requested elsewhere (or
/// their request budget spent) and ask nothing, so one per slot leaves slots idle.
/// (Simulated swarms, median / bound, 300 peers: mean of seeds 1–4 1.275 with one, 1.268
/// with two. With `MAX_SHARED_REQUESTS_PER_DOWNLOAD`, 1000 peers, seeds 1–3: 1.264, 1.268,
/// 1.267 with two; 1.260, 1.261, 1.264 with three. With `CALLS_PER_FREE_SLOT` too: 1.251,
/// 1.253, 1.253 with three; 1.249, 1.242, 1.246 with four.)
pub const INTRODUCTIONS_PER_FREE_SLOT: usize = 4;
/// Seekers one idle report may be introduced to.
pub const MAX_INTRODUCTIONS_PER_IDLE: usize = INTRODUCTIONS_PER_FREE_SLOT * UPLOAD_SLOTS;
/// A peer's idle reports closer together than this are ignored by the tracker.
pub const MIN_IDLE_GAP_MS: u64 = 50;
/// Seekers drawn at most to find one to introduce an idle holder to.
pub const SEEKER_DRAWS: usize = 8;
/// Fetchers waiting for an upload slot that hear of each chunk this peer newly obtains
/// (`Have`), besides those it serves: the first in line, called soonest. (Simulated swarms,
/// median / bound, 300 peers, seed 1, measured with one introduction per free slot: 1.31
/// telling none, 1.27 telling 8 or 16 or 32, 1.28 telling all; 1000 peers 1.33 telling 8,
/// 1.32 telling 16 for 10 % more events.)
pub const MAX_WAITERS_TOLD_HAVE: usize = 8;
/// Length of a human-readable reason sent over the wire.
pub const MAX_REASON_BYTES: usize = 512;

/// Chunk requests a downloader keeps outstanding to one holder, and for one download.
pub const MAX_REQUESTS_PER_HOLDER: usize = 16;
/// Requests per holder when a download knows more than `FEW_HOLDERS`: a chunk queued at one
/// holder waits there while another (one that frees a slot, a newcomer) could send it at
/// once. (Simulated swarms, median / bound: 1000 peers 1.57 with 16, 1.46 with 2; 300
/// peers 1.43 with 16, 1.41 with 8, 1.39 with 4, 1.38 with 2.)
pub const MAX_SHARED_REQUESTS_PER_HOLDER: usize = 2;
pub const FEW_HOLDERS: usize = 4;
pub const MAX_REQUESTS_PER_DOWNLOAD: usize = 64;
/// Requests a download keeps outstanding when it knows more than `FEW_HOLDERS`. Chunks
/// asked of several holders at once arrive one after another on our downlink, so past a
/// few, more requests only wait longer; and a chunk waiting its turn is one that no idle
/// holder can be asked for (at 300 peers, seven in eight seekers introduced to an idle
/// holder had every chunk it could send them requested elsewhere, a request waited 376 ms
/// on average for its first byte). (Simulated swarms, median / bound, seed 1, two
/// introductions per free slot: 300 peers 1.246 with 64, 1.227 with 6; with the budget
/// applied at any number of holders, 1.235 with 8, 1.226 with 7, 1.220 with 6, 1.220 with
/// 5, 1.280 with 4, and 1000 peers 1.284 with 64, 1.260 with 6, 1.261 with 5.)
pub const MAX_SHARED_REQUESTS_PER_DOWNLOAD: usize = 6;
/// Chunks a peer holds received but not yet hashed and written: past it the peer reads no
/// more from holders, so a slow disk or hasher bounds memory (the rest waits in TCP).
pub const MAX_CHUNKS_STORING: usize = 8;
/// Fetchers a peer uploads to at once; the others are told `Busy` and go elsewhere, so
/// its upload is not spread so thin that every copy it makes arrives late. (Simulated
/// swarms, median / max over the bound, with idle holders introduced: 1000 peers 1.45 / 1.54
/// with 2 slots, 1.44 / 1.51 with 3, 1.45 / 1.51 with 4; 300 peers 1.37 / 1.47, 1.35 / 1.42,
/// 1.36 / 1.41; 1 slot 1.84 / 1.95. Before introductions, 100 peers: 1 slot 2.00, 2 slots
/// 1.93, 4 slots 2.18, 8 slots 2.62.)
pub const UPLOAD_SLOTS: usize = 3;
/// Waiting fetchers called (`Ready`) for each upload slot that comes free: the first to ask
/// takes it, and the others go back to the front of the line. Most fetchers called ask
/// nothing (at 300 peers, two in three: they found the chunks elsewhere while they waited),
/// and calling one at a time left the slot idle for a hold per refusal. (Simulated swarms,
/// median / bound, seed 1: 300 peers 1.221 with one, 1.207 with three; 1000 peers 1.260
/// with one, 1.251 with three (seeds 2 and 3: 1.261 → 1.253, 1.264 → 1.253). A first cut
/// that put the others back in another order: 300 peers 1.209 with two, 1.205 with three,
/// 1.206 with four; 1000 peers 1.251, 1.244, 1.247. Calling more without putting the
/// others back in front: 300 peers 1.213 with two, 1.209 with three, 1000 peers 1.253 with
/// two, 1.256 with three, 1.271 with four.)
pub const CALLS_PER_FREE_SLOT: usize = 3;
/// Chunks a fetcher is served in one turn at a slot while others wait for one. (Simulated
/// swarms, median / max over the bound: 1000 peers 1.50 / 1.58 with 4, 1.47 / 1.56 with
/// 2; 300 peers 1.39 / 1.45 with 4, 1.38 / 1.45 with 2, 1.39 / 1.48 with 1, 1.41 / 1.48 with 8.)
pub const SLOT_TURN_CHUNKS: u32 = 2;
/// A server reads the next chunk for a connection only when less than this is still
/// unsent on it, so connections share an uplink in turn rather than in request order.
pub const SERVE_UNSENT_LOW_BYTES: usize = 1 << 20;
/// Chunk requests a server queues for one connection before refusing more.
pub const MAX_QUEUED_REQUESTS_PER_CONN: usize = 64;
/// Chunk loads a server has outstanding for one connection (bounds its send buffer).
pub const MAX_LOADS_PER_CONN: usize = 2;
/// Outbound peer connections a peer keeps at once.
pub const MAX_PEER_CONNECTIONS: usize = 64;

/// Unsent bytes a machine lets pile up for one connection before it stops decoding that
/// connection's requests (a few bytes of request can ask for megabytes of answer). Drivers
/// stop reading a connection at the same mark, so its receive buffer stays bounded too.
pub const MAX_UNSENT_BYTES_PER_CONN: usize = 2 * 1024 * 1024;

/// A connection must say its hello within this time.
pub const HELLO_TIMEOUT_MS: u64 = 10_000;
/// A frame that has started must keep arriving: no byte for this long closes the connection.
pub const FRAME_TIMEOUT_MS: u64 = 30_000;
/// A tracker connection must register within this time.
pub const REGISTER_TIMEOUT_MS: u64 = 30_000;
/// A fetching peer that asks for nothing for this long is disconnected.
pub const FETCHER_IDLE_TIMEOUT_MS: u64 = 120_000;
/// A connection to a holder that we ask nothing of for this long is closed.
pub const HOLDER_IDLE_TIMEOUT_MS: u64 = 30_000;
/// With every outbound connection in use, one idle this long is closed to reach a holder
/// with something we want (sooner would churn connections to holders that said `Busy`).
pub const HOLDER_EVICTABLE_AFTER_MS: u64 = 2_000;
