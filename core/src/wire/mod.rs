//! The wire protocol: the messages peers and trackers exchange, and the framing that carries
//! them (a 4-byte little-endian length, then a postcard-encoded message). Decoding is
//! incremental, bounded, and never panics on hostile bytes.

pub(crate) mod bytes;
pub mod codec;
pub mod message;

pub use codec::{
    encode, encode_chunk_data, encode_chunk_header, encode_with, FrameDecoder, FrameError,
};
pub use message::{
    Complaint, FileSummary, Hello, LocatedHolder, Message, Refusal, RefusedBecause, Role,
    SharedFile, MAGIC, PROTOCOL_VERSION,
};
