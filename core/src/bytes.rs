//! [`Bytes`]: chunk payloads and frames as they pass between a machine and its driver —
//! owned bytes, or a window into immutable shared bytes, held or [`Lazy`] (made the first
//! time anyone reads them). Drivers that hold content once (the simulator's thousand copies
//! of one file) hand it around by reference; a simulated 100 GiB file is never made at all.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::ops::{Deref, Range};
use std::sync::{Arc, OnceLock};

/// Bytes owned here, or `len` bytes at `start` of shared bytes nobody can change.
#[derive(Clone, Default)]
pub struct Bytes {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    /// `vec[start..]`: a buffer may begin with padding that places the bytes where a
    /// driver wants them (a chunk payload on a page boundary).
    Owned { vec: Vec<u8>, start: usize },
    Shared {
        all: Backing,
        start: usize,
        len: usize,
    },
}

/// What a shared window looks into.
#[derive(Clone)]
enum Backing {
    Held(Arc<[u8]>),
    Lazy(Arc<Lazy>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Held(all) => all,
            Backing::Lazy(lazy) => lazy.bytes(),
        }
    }

    fn same(&self, other: &Backing) -> bool {
        match (self, other) {
            (Backing::Held(a), Backing::Held(b)) => Arc::ptr_eq(a, b),
            (Backing::Lazy(a), Backing::Lazy(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// Makes the bytes a driver names by a tag of its own (see [`Lazy`]).
pub trait Source: Send + Sync {
    /// The `len` bytes named `tag`; always the same bytes for the same tag.
    fn make(&self, tag: u64, len: usize) -> Vec<u8>;
}

/// `len` bytes a driver names without holding them: made by its [`Source`] the first time
/// anyone reads them, then kept while a window of them lives. Until then a payload costs
/// a tag, and a driver that knows the tag (the simulator's hasher) need never look.
pub struct Lazy {
    source: Arc<dyn Source>,
    tag: u64,
    len: usize,
    made: OnceLock<Box<[u8]>>,
}

impl fmt::Debug for Lazy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lazy(tag {}, {} bytes)", self.tag, self.len)
    }
}

impl Lazy {
    pub fn tag(&self) -> u64 {
        self.tag
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether anyone has read the bytes yet.
    pub fn is_made(&self) -> bool {
        self.made.get().is_some()
    }

    fn bytes(&self) -> &[u8] {
        self.made.get_or_init(|| {
            let mut made = self.source.make(self.tag, self.len);
            made.resize(self.len, 0);
            made.into_boxed_slice()
        })
    }
}

impl Default for Repr {
    fn default() -> Repr {
        Repr::Owned {
            vec: Vec::new(),
            start: 0,
        }
    }
}

impl Bytes {
    /// `range` of `all`, by reference; `None` if the range lies outside it.
    pub fn shared(all: &Arc<[u8]>, range: Range<usize>) -> Option<Bytes> {
        all.get(range.clone())?;
        let repr = Repr::Shared {
            all: Backing::Held(all.clone()),
            start: range.start,
            len: range.len(),
        };
        Some(Bytes { repr })
    }

    /// The `len` bytes `source` makes for `tag`, made only when someone reads them.
    pub fn lazy(source: Arc<dyn Source>, tag: u64, len: usize) -> Bytes {
        let lazy = Lazy {
            source,
            tag,
            len,
            made: OnceLock::new(),
        };
        Bytes {
            repr: Repr::Shared {
                all: Backing::Lazy(Arc::new(lazy)),
                start: 0,
                len,
            },
        }
    }

    /// The bytes of `vec` from `start` on, kept where they are (the padding before them is
    /// never seen).
    pub fn after_padding(vec: Vec<u8>, start: usize) -> Bytes {
        let start = start.min(vec.len());
        Bytes {
            repr: Repr::Owned { vec, start },
        }
    }

    /// The length, known without reading lazy bytes (which `[u8]`'s `len` would make).
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Owned { vec, start } => vec.len().saturating_sub(*start),
            Repr::Shared { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        match &self.repr {
            Repr::Owned { vec, start } => vec.get(*start..).unwrap_or_default(),
            // An empty window never makes lazy bytes (a decoder looks at what is left).
            Repr::Shared { len: 0, .. } => &[],
            Repr::Shared { all, start, len } => {
                all.bytes().get(*start..start + len).unwrap_or_default()
            }
        }
    }

    /// The held shared bytes this is a window of and where the window starts, if it is one.
    pub fn window(&self) -> Option<(&Arc<[u8]>, usize)> {
        match &self.repr {
            Repr::Shared {
                all: Backing::Held(all),
                start,
                ..
            } => Some((all, *start)),
            _ => None,
        }
    }

    /// The lazy bytes this is a window of and where the window starts, if it is one.
    pub fn lazy_window(&self) -> Option<(&Lazy, usize)> {
        match &self.repr {
            Repr::Shared {
                all: Backing::Lazy(lazy),
                start,
                ..
            } => Some((lazy, *start)),
            _ => None,
        }
    }

    /// Whether these bytes are a window of shared bytes (held or lazy), handed on by
    /// reference rather than copied.
    pub fn is_shared(&self) -> bool {
        matches!(self.repr, Repr::Shared { .. })
    }

    /// The bytes as a vector of their own: a copy when they are shared; when padding
    /// precedes them, they are moved to the front of their own buffer.
    pub fn into_vec(self) -> Vec<u8> {
        match self.repr {
            Repr::Owned { mut vec, start } => {
                vec.drain(..start.min(vec.len()));
                vec
            }
            Repr::Shared { .. } => self.as_slice().to_vec(),
        }
    }

    /// The buffer these bytes are owned in, padding and all (its contents are not theirs
    /// alone): for reuse by whoever fills it next. `None` for shared bytes.
    pub fn into_buffer(self) -> Option<Vec<u8>> {
        match self.repr {
            Repr::Owned { vec, .. } => Some(vec),
            Repr::Shared { .. } => None,
        }
    }

    /// `range` of these bytes (clipped to them): a narrower window of shared bytes, or a
    /// copy of just that range of owned ones.
    pub fn slice(&self, range: Range<usize>) -> Bytes {
        let end = range.end.min(self.len());
        let start = range.start.min(end);
        match &self.repr {
            Repr::Owned { .. } => {
                Bytes::from(self.as_slice().get(start..end).unwrap_or_default().to_vec())
            }
            Repr::Shared { all, start: at, .. } => Bytes {
                repr: Repr::Shared {
                    all: all.clone(),
                    start: at + start,
                    len: end - start,
                },
            },
        }
    }

    /// These bytes followed by `next`, when both are adjacent windows of the same shared
    /// bytes (a payload handed over in pieces): one window, nothing copied.
    pub fn joined(&self, next: &Bytes) -> Option<Bytes> {
        match (&self.repr, &next.repr) {
            (
                Repr::Shared { all, start, len },
                Repr::Shared {
                    all: other,
                    start: next_start,
                    len: next_len,
                },
            ) if all.same(other) && start + len == *next_start => Some(Bytes {
                repr: Repr::Shared {
                    all: all.clone(),
                    start: *start,
                    len: len + next_len,
                },
            }),
            _ => None,
        }
    }

    /// The bytes from `from` on, cheaply (a shared window stays shared); `from` past the
    /// end gives nothing.
    pub fn split_off(&mut self, from: usize) -> Bytes {
        let from = from.min(self.len());
        match &mut self.repr {
            Repr::Owned { vec, start } => Bytes::from(vec.split_off(*start + from)),
            Repr::Shared { all, start, len } => {
                let rest = Repr::Shared {
                    all: all.clone(),
                    start: *start + from,
                    len: *len - from,
                };
                *len = from;
                Bytes { repr: rest }
            }
        }
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(vec: Vec<u8>) -> Bytes {
        Bytes::after_padding(vec, 0)
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Bytes) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Bytes {}

impl fmt::Debug for Bytes {
    // Chunk payloads are a mebibyte: a length says what matters in logs and test failures.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match &self.repr {
            Repr::Owned { .. } => "owned",
            Repr::Shared {
                all: Backing::Held(_),
                ..
            } => "shared",
            Repr::Shared {
                all: Backing::Lazy(_),
                ..
            } => "lazy",
        };
        write!(f, "Bytes({} {how})", self.len())
    }
}

/// One length-prefixed run on the wire (postcard would otherwise write each byte as an
/// element of a sequence).
impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.as_slice())
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        crate::wire::bytes::deserialize(d).map(Bytes::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_windows_read_and_split_like_owned_bytes() {
        let all: Arc<[u8]> = (0..100u8).collect::<Vec<_>>().into();
        assert!(Bytes::shared(&all, 90..101).is_none(), "past the end");
        let mut shared = Bytes::shared(&all, 10..30).unwrap_or_default();
        let mut owned = Bytes::from(all[10..30].to_vec());
        assert_eq!(shared, owned);
        assert_eq!(shared.window().map(|(_, at)| at), Some(10));
        let (rest_shared, rest_owned) = (shared.split_off(5), owned.split_off(5));
        assert_eq!((&shared, &rest_shared), (&owned, &rest_owned));
        assert_eq!(rest_shared.window().map(|(_, at)| at), Some(15));
        assert_eq!(rest_shared.into_vec(), all[15..30].to_vec());
        assert!(shared.clone().split_off(99).is_empty());
        let all_shared = Bytes::shared(&all, 0..100).unwrap_or_default();
        let narrow = all_shared.slice(20..30);
        assert_eq!(
            (narrow.window().map(|(_, at)| at), &narrow[..]),
            (Some(20), &all[20..30])
        );
        let owned = Bytes::from(all.to_vec()).slice(95..200);
        assert_eq!((owned.window(), &owned[..]), (None, &all[95..]));
        assert!(all_shared.slice(120..130).is_empty());
    }

    /// Makes tag-numbered bytes and counts how often it was asked.
    struct Counting(std::sync::atomic::AtomicUsize);

    impl Source for Counting {
        fn make(&self, tag: u64, len: usize) -> Vec<u8> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            (0..len).map(|i| (tag as usize + i) as u8).collect()
        }
    }

    #[test]
    fn lazy_bytes_are_made_once_and_only_when_read() {
        let source = Arc::new(Counting(0.into()));
        let made = || source.0.load(std::sync::atomic::Ordering::Relaxed);
        let expected: Vec<u8> = (7..107u8).collect();
        let mut head = Bytes::lazy(source.clone(), 7, 100);
        let tail = head.split_off(40);
        let narrow = tail.slice(10..20);
        let whole = head.joined(&tail).unwrap_or_default();
        let origin = |b: &Bytes| b.lazy_window().map(|(l, at)| (l.tag(), l.len(), at));
        assert_eq!(origin(&whole), Some((7, 100, 0)));
        assert_eq!(origin(&narrow), Some((7, 100, 50)));
        assert!(whole.is_shared() && whole.window().is_none());
        assert_eq!(
            (made(), whole.len(), format!("{whole:?}")),
            (0, 100, "Bytes(100 lazy)".into())
        );
        assert!(whole.lazy_window().is_some_and(|(l, _)| !l.is_made()));
        assert_eq!(&whole[..], &expected[..]);
        assert_eq!(&narrow[..], &expected[50..60]);
        assert_eq!(tail.into_vec(), expected[40..].to_vec());
        assert_eq!(made(), 1, "one making serves every window");
        assert!(Bytes::lazy(source.clone(), 1, 10).joined(&narrow).is_none());
        let mut untouched = Bytes::lazy(source.clone(), 2, 10);
        let nothing = untouched.split_off(10);
        assert_eq!((nothing.len(), &nothing[..], made()), (0, &[][..], 1));
    }

    #[test]
    fn padded_bytes_read_split_and_convert_like_plain_ones() {
        let mut padded = Bytes::after_padding((0..40u8).collect(), 8);
        let mut plain = Bytes::from((8..40u8).collect::<Vec<_>>());
        assert_eq!((padded.len(), &padded), (32, &plain));
        assert_eq!(padded.slice(4..10), plain.slice(4..10));
        let (rest_padded, rest_plain) = (padded.split_off(10), plain.split_off(10));
        assert_eq!((&padded, &rest_padded), (&plain, &rest_plain));
        assert_eq!(padded.into_vec(), (8..18u8).collect::<Vec<_>>());
        assert!(
            Bytes::after_padding(vec![1, 2], 5).is_empty(),
            "padding past the end"
        );
    }
}
