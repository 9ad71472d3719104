//! The `btc` capability: the same peer logic over a braid (RLPx) link.
//!
//! One bitcoin message per braid message: the message code (relative to the capability's
//! offset) is [`Command::code`] and the body is the bitcoin wire payload, unframed (the
//! link already frames, authenticates and encrypts). The code table is fixed and
//! published in [`crate::bitcoin::wire`]; the capability is `btc` version 1 with
//! [`Command::COUNT`] codes.

use std::net::SocketAddr;
use std::sync::Arc;

use p2p::peer::{Direction, ProtoRw, ProtoWriter};
use p2p::protocol::{Protocol, ProtocolError};

use super::transport::{
    Inbound, LinkClosed, Received, RecvError, SendError, Transport, TransportReader,
    TransportWriter,
};
use super::{Config, Peer};
use crate::bitcoin::wire::{Command, Message};

/// Capability name.
pub const NAME: &str = "btc";
/// Capability version.
pub const VERSION: u32 = 1;
/// Number of message codes.
pub const LENGTH: u64 = Command::COUNT as u64;

/// A bitcoin transport over one braid peer's `btc` capability.
pub struct BraidTransport {
    rw: ProtoRw,
}

impl BraidTransport {
    /// Wrap the handle a protocol's `run` receives.
    pub fn new(rw: ProtoRw) -> Self {
        BraidTransport { rw }
    }
}

impl Transport for BraidTransport {
    type Reader = BraidReader;
    type Writer = BraidWriter;

    fn remote_addr(&self) -> Option<SocketAddr> {
        self.rw.peer().remote_addr()
    }

    fn split(self) -> (BraidReader, BraidWriter) {
        let writer = self.rw.writer();
        (BraidReader { rw: self.rw }, BraidWriter { writer })
    }
}

/// Receiving half of a [`BraidTransport`].
pub struct BraidReader {
    rw: ProtoRw,
}

impl TransportReader for BraidReader {
    async fn recv(&mut self, pver: u32) -> Result<Received, RecvError> {
        let msg = self.rw.read().await.map_err(|e| {
            tracing::debug!(error = %e, "braid link ended");
            RecvError::Closed(LinkClosed::Braid)
        })?;
        let bytes = msg.payload.len();
        let cmd = u8::try_from(msg.code).ok().and_then(Command::from_code);
        let Some(cmd) = cmd else {
            // The link only delivers codes below our length, but stay total.
            return Ok(Received {
                inbound: Inbound::Unknown(format!("code {}", msg.code)),
                bytes,
            });
        };
        match Message::decode_payload_bytes(cmd, msg.payload, pver) {
            Ok(m) => Ok(Received {
                inbound: Inbound::Message(m),
                bytes,
            }),
            Err(error) => Err(RecvError::Malformed { error, bytes }),
        }
    }
}

/// Sending half of a [`BraidTransport`].
pub struct BraidWriter {
    writer: ProtoWriter,
}

impl TransportWriter for BraidWriter {
    async fn send(&mut self, msg: &Message, pver: u32) -> Result<usize, SendError> {
        let payload = msg.to_payload(pver)?;
        self.writer
            .write(u64::from(msg.command().code()), &payload)
            .await
            .map_err(|e| {
                tracing::debug!(error = %e, "braid link ended");
                SendError::Closed(LinkClosed::Braid)
            })?;
        Ok(payload.len())
    }
}

/// The `btc` protocol: for every braid peer sharing the capability, run a bitcoin
/// [`Peer`] with `config` (dialer = outbound, so it sends version first) and hand it to
/// `on_peer`. The braid peer ends when the bitcoin peer does.
pub fn protocol(config: Config, on_peer: impl Fn(&Peer) + Send + Sync + 'static) -> Protocol {
    let on_peer = Arc::new(on_peer);
    Protocol::new(NAME, VERSION, LENGTH, move |link, rw: ProtoRw| {
        let config = config.clone();
        let on_peer = on_peer.clone();
        async move {
            let transport = BraidTransport::new(rw);
            let peer = match link.direction() {
                Direction::Inbound => Peer::start_inbound(config, transport),
                Direction::Outbound => Peer::start_outbound(config, transport),
            };
            on_peer(&peer);
            peer.wait_for_disconnect().await;
            match peer.close_reason() {
                None | Some(super::PeerError::Disconnected) => Ok(()),
                Some(e) => Err(ProtocolError::other(e)),
            }
        }
    })
}
