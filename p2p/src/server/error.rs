//! Why the server or one connection attempt failed.

use std::net::SocketAddr;

use crate::base::DisconnectReason;
use crate::conn::ConnError;
use crate::peer::PeerStartError;
use crate::session::SessionError;

/// Errors of the server and of single connection attempts.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address we tried to bind.
        addr: SocketAddr,
        /// The operating system's error (address in use, permission denied…).
        source: std::io::Error,
    },
    /// TCP connect failed or timed out.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address we dialed.
        addr: SocketAddr,
        /// The operating system's error, or `TimedOut` when the dial timeout passed.
        source: std::io::Error,
    },
    /// The address is not on the allow-list.
    #[error("{0} is not on the allow-list")]
    NotAllowed(std::net::IpAddr),
    /// The enode cannot be dialed (port 0, unspecified or multicast address).
    #[error("cannot dial: {0}")]
    NotDialable(#[from] crate::node::EnodeError),
    /// The encryption handshake failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// The Hello exchange failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The admission checkpoint refused the connection (the reason was sent).
    #[error("connection refused: {0}")]
    Refused(DisconnectReason),
    /// No shared capability (useless peer was sent).
    #[error(transparent)]
    Peer(#[from] PeerStartError),
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
    /// Node discovery could not start.
    #[error("discovery: {0}")]
    Discovery(#[from] crate::discover::v4::DiscoveryError),
    /// Discovery v5 could not start.
    #[error("discovery v5: {0}")]
    Discovery5(#[from] crate::discover::v5::Discv5Error),
    /// The configuration asks for a service that opens its own sockets on the host's
    /// network (named here: discovery v5, NAT port mapping), but the server's transport
    /// is another network.
    #[error("{0} needs the host's network, and this server's transport is another one")]
    HostNetworkOnly(&'static str),
}

impl ServerError {
    /// A short, stable name for this kind of failure (a metrics label, a log field):
    /// `connect`, `handshake`, `hello`, the refusal's reason (`too_many_peers`…), etc.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerError::Listen { .. } => "listen",
            ServerError::Connect { .. } => "connect",
            ServerError::NotAllowed(_) => "not_allowed",
            ServerError::NotDialable(_) => "not_dialable",
            ServerError::Conn(_) => "handshake",
            ServerError::Session(SessionError::RemoteDisconnect(r)) => {
                crate::metrics::reason_label(*r)
            }
            ServerError::Session(_) => "hello",
            ServerError::Refused(r) => crate::metrics::reason_label(*r),
            ServerError::Peer(_) => "useless_peer",
            ServerError::ShuttingDown => "shutting_down",
            ServerError::Discovery(_) | ServerError::Discovery5(_) => "discovery",
            ServerError::HostNetworkOnly(_) => "host_network_only",
        }
    }

    /// The reason the *remote* gave when this failure was its Disconnect, else `None`.
    ///
    /// A remote can only say why before it runs as a peer by sending a Disconnect instead
    /// of its Hello (its own admission checkpoint refused us: too many peers, already
    /// connected, …); the Hello exchange reports that as
    /// [`SessionError::RemoteDisconnect`]. Every other failure is local or has no reason:
    /// [`ServerError::Refused`] and [`ServerError::Peer`] carry the reason *we* sent, a
    /// Disconnect cannot precede the encryption handshake, and a link that closes without
    /// one has none.
    pub fn remote_reason(&self) -> Option<DisconnectReason> {
        match self {
            ServerError::Session(SessionError::RemoteDisconnect(r)) => Some(*r),
            _ => None,
        }
    }
}

/// The error for a connection refused locally with `reason`: refusing because the node is
/// quitting is reported as shutting down.
pub(super) fn refused(reason: DisconnectReason) -> ServerError {
    if reason == DisconnectReason::ClientQuitting {
        ServerError::ShuttingDown
    } else {
        ServerError::Refused(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_reason_is_only_what_the_remote_sent() {
        let remote = ServerError::Session(SessionError::RemoteDisconnect(
            DisconnectReason::TooManyPeers,
        ));
        assert_eq!(remote.remote_reason(), Some(DisconnectReason::TooManyPeers));
        assert_eq!(remote.kind(), "too_many_peers");
        let ours = ServerError::Refused(DisconnectReason::TooManyPeers);
        assert_eq!(ours.remote_reason(), None);
        assert_eq!(ours.kind(), "too_many_peers");
        let we_refused_hello = ServerError::Session(SessionError::Refused {
            reason: DisconnectReason::ProtocolBreach,
            detail: String::new(),
        });
        assert_eq!(we_refused_hello.remote_reason(), None);
        assert_eq!(
            ServerError::Peer(PeerStartError::UselessPeer).remote_reason(),
            None
        );
        assert_eq!(ServerError::ShuttingDown.remote_reason(), None);
        assert!(matches!(
            refused(DisconnectReason::ClientQuitting),
            ServerError::ShuttingDown
        ));
    }
}
