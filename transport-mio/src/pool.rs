//! Chunk-sized buffers kept for reuse by one event loop. A fresh mebibyte costs page
//! faults, zeroing and unmapping (half of a sharer's CPU in a 1 GiB transfer); a buffer
//! whose bytes have left on a socket is filled by the next chunk read instead.

use drizzle_core::Bytes;

/// Buffers smaller than this are not worth keeping (frames, small files' chunks).
const MIN_POOLED_BYTES: usize = 64 * 1024;
/// Bytes kept idle at most: the pool never holds more than was in use at once, and never
/// more than this.
const MAX_POOLED_BYTES: usize = 16 << 20;

#[derive(Debug, Default)]
pub struct BufferPool {
    free: Vec<Vec<u8>>,
}

impl BufferPool {
    /// A buffer of `len` bytes whose contents are unspecified (old bytes of a reused one):
    /// the caller overwrites them.
    pub fn take(&mut self, len: usize) -> Vec<u8> {
        let mut buf = match self.free.iter().rposition(|b| b.capacity() >= len) {
            Some(at) => self.free.swap_remove(at),
            None => Vec::new(),
        };
        // Zeroes only what a reused buffer never held (nothing, at one chunk size).
        buf.resize(len, 0);
        buf
    }

    /// Keeps `bytes` for reuse if they are a big buffer of their own and there is room.
    pub fn give(&mut self, bytes: Bytes) {
        if bytes.is_shared() || bytes.len() < MIN_POOLED_BYTES {
            return;
        }
        let buf = bytes.into_vec();
        let idle: usize = self.free.iter().map(Vec::capacity).sum();
        if idle + buf.capacity() <= MAX_POOLED_BYTES {
            self.free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_is_taken_again_without_reallocating() {
        let mut pool = BufferPool::default();
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
    fn small_shared_and_surplus_buffers_are_not_kept() {
        let mut pool = BufferPool::default();
        pool.give(Bytes::from(vec![1; 100]));
        let all: std::sync::Arc<[u8]> = vec![0; 1 << 20].into();
        pool.give(Bytes::shared(&all, 0..(1 << 20)).unwrap_or_default());
        assert!(pool.free.is_empty());
        for _ in 0..20 {
            pool.give(Bytes::from(vec![0; 1 << 20]));
        }
        assert_eq!(pool.free.len(), MAX_POOLED_BYTES >> 20);
    }
}
