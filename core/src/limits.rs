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
/// Chunk hashes a tracker keeps (32 bytes each, in manifests of distinct content), in all
/// and for content first registered from one IP address: a manifest of the largest file
/// costs 8 MiB of hashes (and about as much again of holder bookkeeping), so one host can
/// make the tracker keep at most 8 of them, and it stays well under 512 MiB whatever comes.
/// At the default 1 MiB chunks, one address may register 2 TiB of distinct content.
pub const MAX_MANIFEST_BYTES_PER_ADDRESS: u64 = 64 << 20;
pub const MAX_MANIFEST_BYTES: u64 = 4 * MAX_MANIFEST_BYTES_PER_ADDRESS;
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
/// Seekers drawn at most to find one to introduce an idle holder to (bounds the work
/// one idle report costs).
pub const SEEKER_DRAWS: usize = 8;
/// Seekers one idle report may be introduced to, however many free slots it claims.
pub const MAX_INTRODUCTIONS_PER_IDLE: usize = 16;
/// A peer's idle reports closer together than this are ignored by the tracker.
pub const MIN_IDLE_GAP_MS: u64 = 50;
/// Length of a human-readable reason sent over the wire.
pub const MAX_REASON_BYTES: usize = 512;

/// Chunks a peer holds received but not yet hashed and written: past it the peer reads no
/// more from holders, so a slow disk or hasher bounds memory (the rest waits in TCP).
pub const MAX_CHUNKS_STORING: usize = 8;
/// Chunk requests a server queues for one connection before refusing more.
pub const MAX_QUEUED_REQUESTS_PER_CONN: usize = 64;
/// Chunk loads a server has outstanding for one connection (bounds its send buffer).
pub const MAX_LOADS_PER_CONN: usize = 2;
/// Fetchers a peer remembers as waiting for an upload slot; one that does not fit polls.
pub const MAX_WAITING_FETCHERS: usize = 256;
/// Places in that line one IP address may hold, so one host (or a handful) cannot fill it
/// and keep every other fetcher polling.
pub const MAX_WAITING_PER_ADDRESS: usize = 16;
/// Fetchers a peer tells of its chunks of one file without serving them (`Watch`: its
/// neighbours); more are ignored.
pub const MAX_WATCHERS_PER_FILE: usize = 16;
/// A fetcher holding an upload slot that takes none of the data sent to it for this long
/// (longer when the uplink is the bottleneck: `Peer::slot_stall_ms`) loses the slot (what it asked for beyond what was sent is refused `Busy`), and its
/// address is called after every other address waiting for `SLOT_STALL_PENALTY_MS`:
/// slots go to those who read.
pub const SLOT_STALL_MS: u64 = 1_000;
/// A fetcher holding an upload slot that takes less than this over a window of
/// `SLOT_PACE_WINDOW_MS` (with data waiting for it the whole time) loses the slot the same
/// way, when a fetcher from another address waits: slots go to those who read at a useful
/// rate, not to whoever trickles.
pub const SLOT_MIN_BYTES_PER_SEC: u64 = 64 * 1024;
pub const SLOT_PACE_WINDOW_MS: u64 = 2_000;
pub const SLOT_STALL_PENALTY_MS: u64 = 30_000;
/// Chunks remembered per fetcher as steered elsewhere (a bound on memory; forgetting one
/// only means it may be steered once more).
pub const MAX_STEERED_PER_CONN: usize = 4096;
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
/// A peer that has heard nothing from its tracker for this long sends a `Keepalive` (the
/// tracker answers one).
pub const KEEPALIVE_MS: u64 = 15_000;
/// A registered session from which nothing came for this long (four keepalives missed) is
/// dropped by the tracker — a crashed host, a dropped NAT mapping, or an idle squatter of
/// the session budget — and a peer whose tracker went this silent connects again.
pub const SESSION_SILENT_MS: u64 = 4 * KEEPALIVE_MS;
/// A fetching peer that asks for nothing for this long is disconnected.
pub const FETCHER_IDLE_TIMEOUT_MS: u64 = 120_000;
/// A connection to a holder that we ask nothing of for this long is closed.
pub const HOLDER_IDLE_TIMEOUT_MS: u64 = 30_000;
/// With every outbound connection in use, one idle this long is closed to reach a holder
/// with something we want (sooner would churn connections to holders that said `Busy`).
pub const HOLDER_EVICTABLE_AFTER_MS: u64 = 2_000;
