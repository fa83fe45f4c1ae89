//! Chunk-sized buffers kept for reuse by one process's event loop and its machine. A fresh
//! mebibyte costs page faults and zeroing (half of a sharer's CPU, a fifth of a getter's,
//! in a 1 GiB transfer); a buffer whose bytes left on a socket or reached the disk is
//! filled by the next chunk read or received instead. Clones share one pool.

use crate::bytes::Bytes;
use std::sync::{Arc, Mutex};

/// Buffers smaller than this are not worth keeping (frames, small files' chunks).
const MIN_POOLED_BYTES: usize = 64 * 1024;
/// Bytes kept idle at most: the pool never holds more than was in use at once, and never
/// more than this.
const MAX_POOLED_BYTES: usize = 16 << 20;

#[derive(Clone, Debug, Default)]
pub struct BufferPool {
    free: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl BufferPool {
    /// A buffer of `len` bytes whose contents are unspecified (old bytes of a reused one):
    /// the caller overwrites them.
    pub fn take(&self, len: usize) -> Vec<u8> {
        let mut buf = self
            .take_fitting(|b| b.capacity() >= len)
            .unwrap_or_default();
        // Zeroes only what a reused buffer never held (nothing, at one chunk size).
        buf.resize(len, 0);
        buf
    }

    /// A kept buffer that `fits`, as it is (its bytes unspecified) — or none, for a caller
    /// that would rather grow its own as bytes come.
    pub fn take_fitting(&self, fits: impl Fn(&Vec<u8>) -> bool) -> Option<Vec<u8>> {
        let mut free = self.free.lock().ok()?;
        let at = free.iter().rposition(fits)?;
        Some(free.swap_remove(at))
    }

    /// Keeps the buffer under `bytes` for reuse if it is a big one of their own and there
    /// is room.
    pub fn give(&self, bytes: Bytes) {
        let Some(buf) = bytes.into_buffer().filter(|b| b.len() >= MIN_POOLED_BYTES) else {
            return;
        };
        let Ok(mut free) = self.free.lock() else {
            return;
        };
        let idle: usize = free.iter().map(Vec::capacity).sum();
        if idle + buf.capacity() <= MAX_POOLED_BYTES {
            free.push(buf);
        }
    }

    #[cfg(test)]
    fn idle_buffers(&self) -> usize {
        self.free.lock().map_or(0, |f| f.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_is_taken_again_without_reallocating() {
        let pool = BufferPool::default();
        let buf = pool.take(1 << 20);
        assert_eq!(buf.len(), 1 << 20);
        let at = buf.as_ptr();
        pool.give(Bytes::from(buf));
        let again = pool.take(1000 * 1000);
        assert_eq!((again.as_ptr(), again.len()), (at, 1000 * 1000));
        let other = pool.take(1 << 20);
        assert_ne!(
            other.as_ptr(),
            again.as_ptr(),
            "taken buffers are not shared"
        );
    }

    #[test]
    fn a_buffer_comes_back_whole_padding_and_all_and_only_where_it_fits() {
        let pool = BufferPool::default();
        let buf = vec![5u8; 300_000];
        let at = buf.as_ptr();
        pool.give(Bytes::after_padding(buf, 4000));
        let at_least = |len: usize| move |b: &Vec<u8>| b.len() >= len;
        assert!(pool.take_fitting(at_least(300_001)).is_none(), "too small");
        let again = pool.take_fitting(at_least(200_000)).expect("kept");
        assert_eq!((again.as_ptr(), again.len()), (at, 300_000));
        assert!(pool.take_fitting(at_least(1)).is_none(), "taken once");
    }

    #[test]
    fn small_shared_and_surplus_buffers_are_not_kept() {
        let pool = BufferPool::default();
        pool.give(Bytes::from(vec![1; 100]));
        let all: std::sync::Arc<[u8]> = vec![0; 1 << 20].into();
        pool.give(Bytes::shared(&all, 0..(1 << 20)).unwrap_or_default());
        assert_eq!(pool.idle_buffers(), 0);
        for _ in 0..20 {
            pool.give(Bytes::from(vec![0; 1 << 20]));
        }
        assert_eq!(pool.idle_buffers(), MAX_POOLED_BYTES >> 20);
    }
}
