//! What is waiting to be written to one socket: the buffers the machine handed over, kept
//! as they are (never copied together) and written with vectored writes. A chunk of
//! payload thus goes from the disk read to the kernel without another copy.

use drizzle_core::BufferPool;
use drizzle_core::Bytes;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

/// Buffers handed to one vectored write at most.
const MAX_SLICES: usize = 16;

#[derive(Debug, Default)]
pub struct OutQueue {
    bufs: VecDeque<Bytes>,
    /// Bytes of the front buffer already written.
    front_pos: usize,
    unsent: usize,
}

impl OutQueue {
    pub fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.unsent += bytes.len();
            self.bufs.push_back(bytes);
        }
    }

    pub fn unsent(&self) -> usize {
        self.unsent
    }

    /// Writes at most `max` bytes with one vectored write; how many were written. Buffers
    /// written out go back to `pool`.
    pub fn write_to(
        &mut self,
        w: &mut impl Write,
        max: usize,
        pool: &BufferPool,
    ) -> io::Result<usize> {
        let mut slices = Vec::with_capacity(MAX_SLICES);
        let mut budget = max;
        for (i, buf) in self.bufs.iter().enumerate().take(MAX_SLICES) {
            let from = if i == 0 { self.front_pos } else { 0 };
            let rest = buf.get(from..).unwrap_or_default();
            let take = rest.len().min(budget);
            if take == 0 {
                break;
            }
            slices.push(IoSlice::new(rest.get(..take).unwrap_or_default()));
            budget -= take;
        }
        if slices.is_empty() {
            return Ok(0);
        }
        let n = w.write_vectored(&slices)?;
        self.consume(n, pool);
        Ok(n)
    }

    fn consume(&mut self, mut n: usize, pool: &BufferPool) {
        self.unsent = self.unsent.saturating_sub(n);
        while n > 0 {
            let Some(front) = self.bufs.front() else {
                return;
            };
            let left = front.len() - self.front_pos;
            if n < left {
                self.front_pos += n;
                return;
            }
            n -= left;
            if let Some(sent) = self.bufs.pop_front() {
                pool.give(sent);
            }
            self.front_pos = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `cap` bytes per call, like a socket with little room.
    struct Trickle {
        got: Vec<u8>,
        cap: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.cap);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.cap - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bytes_leave_in_order_across_partial_writes_and_limits() {
        let mut q = OutQueue::default();
        let pool = BufferPool::default();
        let mut expected = Vec::new();
        for i in 0..40u8 {
            let buf = vec![i; usize::from(i) * 3];
            expected.extend_from_slice(&buf);
            q.push(buf.into());
        }
        assert_eq!(q.unsent(), expected.len());
        let mut w = Trickle {
            got: Vec::new(),
            cap: 7,
        };
        let mut limit = 1;
        while q.unsent() > 0 {
            let n = q.write_to(&mut w, limit, &pool).unwrap();
            assert!(n <= limit);
            limit = limit % 11 + 1;
        }
        assert_eq!(w.got, expected);
        assert_eq!(q.write_to(&mut w, 100, &pool).unwrap(), 0);
    }
}
