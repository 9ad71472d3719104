//! The protocol handshake on an encrypted link: both sides' Hello, identity
//! checks, and turning snappy on for p2p version 5.

use std::time::Duration;

use tracing::debug;

use crate::base::{
    DisconnectReason, Hello, BASE_PROTOCOL_VERSION, DISCONNECT, HELLO, MAX_HELLO_SIZE,
};
use crate::conn::{Conn, ConnError, ConnWriter};
use crate::deadline::within;
use crate::frame::MAX_FRAME_SIZE;

/// Default deadline for the Hello exchange.
pub const DEFAULT_HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// How long we give a Disconnect message to leave before closing anyway.
pub(crate) const DISCONNECT_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Errors of the session (base protocol) layer.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The link failed underneath.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// The Hello exchange did not finish in time.
    #[error("hello exchange timed out after {0:?}")]
    Timeout(Duration),
    /// The remote sent a Disconnect.
    #[error("remote disconnected: {0}")]
    RemoteDisconnect(DisconnectReason),
    /// We refused the remote and told it why (the Disconnect was sent, best effort).
    #[error("disconnected remote ({reason}): {detail}")]
    Refused {
        /// The reason sent to the remote.
        reason: DisconnectReason,
        /// What exactly was wrong.
        detail: String,
    },
}

impl SessionError {
    /// The disconnect reason that describes this error.
    pub fn reason(&self) -> DisconnectReason {
        match self {
            SessionError::Conn(e) => e.disconnect_reason(),
            SessionError::Timeout(_) => DisconnectReason::TcpSubsystemError,
            SessionError::RemoteDisconnect(r) => *r,
            SessionError::Refused { reason, .. } => *reason,
        }
    }
}

/// Send a Disconnect with `reason`, best effort and bounded in time.
pub async fn send_disconnect(writer: &mut ConnWriter, reason: DisconnectReason) {
    let payload = reason.encode();
    match within(DISCONNECT_WRITE_TIMEOUT, writer.write(DISCONNECT, &payload)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => debug!(%reason, error = %e, "could not send disconnect"),
        Err(_) => debug!(%reason, "timed out sending disconnect"),
    }
}

async fn refuse(conn: &mut Conn, reason: DisconnectReason, detail: String) -> SessionError {
    send_disconnect(&mut conn.writer, reason).await;
    SessionError::Refused { reason, detail }
}

/// Exchange Hellos on a fresh link: ours is written while theirs is read, so neither
/// side waits on the other. Checks their identity against the handshake's key and turns
/// snappy on when both sides speak version 5 or more. Returns their Hello.
pub async fn exchange_hello(
    conn: &mut Conn,
    ours: &Hello,
    timeout: Duration,
) -> Result<Hello, SessionError> {
    match tokio::time::timeout(timeout, exchange_hello_inner(conn, ours)).await {
        Ok(result) => result,
        Err(_) => Err(SessionError::Timeout(timeout)),
    }
}

async fn exchange_hello_inner(conn: &mut Conn, ours: &Hello) -> Result<Hello, SessionError> {
    // A Hello is at most 2 KiB: refuse bigger frames from the header, before buffering them.
    conn.reader.set_max_frame_size(MAX_HELLO_SIZE + 9);
    let encoded = ours.encode();
    let (sent, received) = tokio::join!(conn.writer.write(HELLO, &encoded), conn.reader.read());
    let first = match received {
        Ok(msg) => msg,
        Err(e @ ConnError::Frame(crate::frame::FrameError::TooLarge { .. })) => {
            return Err(refuse(conn, DisconnectReason::ProtocolBreach, e.to_string()).await)
        }
        Err(e) => return Err(e.into()),
    };
    sent?;
    if let Some(reason) = first.disconnect {
        return Err(SessionError::RemoteDisconnect(reason));
    }
    let theirs = match first.code {
        HELLO => match Hello::decode(&first.payload) {
            Ok(hello) => hello,
            Err(e) => {
                let detail = format!("invalid hello: {e}");
                return Err(refuse(conn, DisconnectReason::ProtocolBreach, detail).await);
            }
        },
        code => {
            let detail = format!("expected hello, got message code {code:#x}");
            return Err(refuse(conn, DisconnectReason::ProtocolBreach, detail).await);
        }
    };
    let id = match theirs.node_id() {
        Ok(id) => id,
        Err(reason) => {
            let detail = format!("hello node id of {} bytes is invalid", theirs.id.len());
            return Err(refuse(conn, reason, detail).await);
        }
    };
    if id != conn.remote_id {
        let detail = "hello node id differs from the handshake key".to_string();
        return Err(refuse(conn, DisconnectReason::UnexpectedIdentity, detail).await);
    }
    if theirs.protocol_version >= 5 && ours.protocol_version >= 5 {
        conn.reader.enable_snappy();
        conn.writer.enable_snappy();
    }
    conn.reader.set_max_frame_size(MAX_FRAME_SIZE);
    debug!(
        remote = %theirs.client_id,
        version = theirs.protocol_version,
        ours = BASE_PROTOCOL_VERSION,
        snappy = conn.writer.snappy_enabled(),
        "hello exchanged"
    );
    Ok(theirs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameError;

    // The Hello exchange and the running peer name a failed link the same way: a forged
    // MAC is the remote's breach, not a transport failure.
    #[test]
    fn link_errors_map_as_the_peer_maps_them() {
        for (e, want) in [
            (FrameError::HeaderMac, DisconnectReason::ProtocolBreach),
            (FrameError::FrameMac, DisconnectReason::ProtocolBreach),
        ] {
            assert_eq!(SessionError::from(ConnError::Frame(e)).reason(), want);
        }
        assert_eq!(
            SessionError::from(ConnError::Closed).reason(),
            DisconnectReason::TcpSubsystemError
        );
    }
}
