//! What a link runs on: any ordered, reliable byte stream, and how it splits into the
//! reading and the writing half.

use std::any::Any;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A boxed reading half, so the layers above need no generics.
pub(super) type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// A boxed writing half.
pub(super) type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// An ordered, reliable, bidirectional byte stream: what a link runs on. Every
/// `AsyncRead + AsyncWrite + Send + Unpin + 'static` type is one.
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    /// Split into the reading and the writing half, which the link's reader and writer
    /// use from different tasks.
    ///
    /// A TCP stream (also behind a [`BoxedStream`]) splits into tokio's owned halves, which
    /// share the socket without a lock; any other stream into halves around a shared lock.
    /// The lock matters on a busy link: a read and a write on different cores contend for
    /// it, and a contended lock is a pair of futex calls, each a trip to the kernel.
    fn split_halves(self: Box<Self>) -> (BoxRead, BoxWrite);
}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> ByteStream for T {
    fn split_halves(self: Box<Self>) -> (BoxRead, BoxWrite) {
        let any: Box<dyn Any> = self;
        let any = match any.downcast::<TcpStream>() {
            Ok(tcp) => {
                let (r, w) = tcp.into_split();
                return (Box::new(r), Box::new(w));
            }
            Err(any) => any,
        };
        let any = match any.downcast::<BoxedStream>() {
            Ok(inner) => return (*inner).split_halves(),
            Err(any) => any,
        };
        match any.downcast::<T>() {
            Ok(io) => {
                let (r, w) = tokio::io::split(*io);
                (Box::new(r), Box::new(w))
            }
            Err(_) => unreachable!("a value of type T downcasts to T"),
        }
    }
}

/// A byte stream of any transport.
pub type BoxedStream = Box<dyn ByteStream>;

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Both halves work whatever the stream, and a boxed TCP stream takes the lock-free split
    /// (its write half is tokio's owned half, which shuts the socket's write side when dropped:
    /// the peer reads end of stream while our read half is still open).
    #[tokio::test]
    async fn halves_carry_bytes_and_boxed_tcp_splits_into_owned_halves() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (ours, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let boxed: BoxedStream = Box::new(ours.expect("connect"));
        let (mut theirs, _) = theirs.expect("accept");
        let (mut r, mut w) = Box::new(boxed).split_halves();
        w.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        theirs.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");
        theirs.write_all(b"pong").await.expect("write back");
        r.read_exact(&mut buf).await.expect("read back");
        assert_eq!(&buf, b"pong");
        drop(w);
        let eof = tokio::time::timeout(std::time::Duration::from_secs(5), theirs.read(&mut buf))
            .await
            .expect("end of stream in time")
            .expect("read");
        assert_eq!(
            eof, 0,
            "dropping an owned write half ends our side of the stream"
        );

        let (a, mut b) = tokio::io::duplex(64);
        let (mut r, mut w) = Box::new(a).split_halves();
        w.write_all(b"hi").await.expect("duplex write");
        let mut two = [0u8; 2];
        b.read_exact(&mut two).await.expect("duplex read");
        b.write_all(b"yo").await.expect("duplex write back");
        r.read_exact(&mut two).await.expect("duplex read back");
        assert_eq!(&two, b"yo");
    }
}
