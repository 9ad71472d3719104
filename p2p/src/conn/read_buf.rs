//! The link's read buffer, which holds memory only while data streams in.
//!
//! A quiet peer (a ping every few seconds) should cost next to nothing, yet a busy one
//! should read many small frames per system call. So reads go through a small buffer
//! kept inline; when a read fills it completely (more data is likely waiting), the next
//! reads use a large heap buffer, which is freed again once drained after a read the
//! small buffer could have taken.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// The inline buffer: a small frame (header, body and MAC of a short message) in one read.
const SMALL: usize = 512;
/// The heap buffer used during bursts.
const LARGE: usize = 16 * 1024;

/// A buffered reader whose large buffer exists only during bursts.
pub(super) struct LazyBufReader<R> {
    inner: R,
    small: [u8; SMALL],
    /// Empty (unallocated) unless a burst is under way.
    large: Vec<u8>,
    /// Whether the buffered bytes `pos..end` are in `large` (else in `small`).
    in_large: bool,
    pos: usize,
    end: usize,
    /// Whether the next fill should use the large buffer.
    bursting: bool,
}

impl<R: AsyncRead + Unpin> LazyBufReader<R> {
    pub(super) fn new(inner: R) -> Self {
        LazyBufReader {
            inner,
            small: [0; SMALL],
            large: Vec::new(),
            in_large: false,
            pos: 0,
            end: 0,
            bursting: false,
        }
    }

    /// Bytes of heap this reader holds now (for tests).
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        self.large.capacity()
    }

    /// Refill the empty buffer with one read of the inner stream; 0 bytes means end of
    /// stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let use_large = self.bursting;
        let buf: &mut [u8] = if use_large {
            if self.large.len() < LARGE {
                self.large = vec![0; LARGE];
            }
            &mut self.large
        } else {
            &mut self.small
        };
        let capacity = buf.len();
        let mut read = ReadBuf::new(buf);
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        self.in_large = use_large;
        self.pos = 0;
        self.end = n;
        // A full buffer says more is waiting; a read the small buffer could have taken
        // says the burst is over.
        self.bursting = n == capacity || (use_large && n > SMALL);
        Poll::Ready(Ok(n))
    }

    /// The large buffer goes back to the allocator once drained, unless a burst goes on.
    fn release_if_quiet(&mut self) {
        if self.pos == self.end && !self.bursting && self.large.capacity() > 0 {
            self.large = Vec::new();
            self.in_large = false;
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for LazyBufReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.end {
            let buffer = if this.bursting { LARGE } else { SMALL };
            // Nothing buffered and the caller wants at least a buffer's worth: read
            // straight into its memory (a frame body sized by its header).
            if dst.remaining() >= buffer {
                return Pin::new(&mut this.inner).poll_read(cx, dst);
            }
            if ready!(this.poll_fill(cx))? == 0 {
                return Poll::Ready(Ok(()));
            }
        }
        let buffered = if this.in_large {
            &this.large[this.pos..this.end]
        } else {
            &this.small[this.pos..this.end]
        };
        let n = buffered.len().min(dst.remaining());
        dst.put_slice(&buffered[..n]);
        this.pos += n;
        this.release_if_quiet();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Bytes come out exactly as written, whatever mix of read sizes asks for them.
    #[tokio::test]
    async fn delivers_the_stream_in_order_across_modes() {
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            // Bursts and trickles.
            for chunk in sent.chunks(9_973) {
                tx.write_all(chunk).await.expect("write");
                tokio::task::yield_now().await;
            }
        });
        let mut reader = LazyBufReader::new(rx);
        let mut got = Vec::with_capacity(data.len());
        let sizes = [32usize, 1, 100, 4_000, 17, 20_000, 600];
        let mut i = 0;
        while got.len() < data.len() {
            let want = sizes[i % sizes.len()].min(data.len() - got.len());
            let mut buf = vec![0u8; want];
            reader.read_exact(&mut buf).await.expect("read");
            got.extend_from_slice(&buf);
            i += 1;
        }
        writer.await.expect("writer");
        assert_eq!(got, data);
        let mut rest = [0u8; 1];
        assert_eq!(
            reader.read(&mut rest).await.expect("eof"),
            0,
            "end of stream"
        );
    }

    /// A burst takes the large buffer; once quiet again and drained it is freed.
    #[tokio::test]
    async fn frees_the_large_buffer_after_a_burst() {
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        let mut reader = LazyBufReader::new(rx);
        tx.write_all(&[1u8; 40_000]).await.expect("burst");
        let mut header = [0u8; 32];
        reader.read_exact(&mut header).await.expect("read");
        // The first fill filled the small buffer: the next one is large.
        let mut rest = vec![0u8; 40_000 - 32];
        for chunk in rest.chunks_mut(100) {
            reader.read_exact(chunk).await.expect("read");
        }
        tx.write_all(&[2u8; 60]).await.expect("trickle");
        let mut small = [0u8; 60];
        reader.read_exact(&mut small).await.expect("read");
        assert_eq!(small, [2u8; 60]);
        assert_eq!(reader.heap_bytes(), 0, "quiet again: no heap buffer");
    }

    /// A quiet link never allocates the large buffer.
    #[tokio::test]
    async fn quiet_link_stays_inline() {
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        let mut reader = LazyBufReader::new(rx);
        for round in 0..10u8 {
            tx.write_all(&[round; 80]).await.expect("write");
            let mut msg = [0u8; 80];
            reader.read_exact(&mut msg).await.expect("read");
            assert_eq!(msg, [round; 80]);
            assert_eq!(reader.heap_bytes(), 0);
        }
    }
}
