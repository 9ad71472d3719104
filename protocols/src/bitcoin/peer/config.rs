//! Peer configuration with btcd's defaults.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::listener::{Listener, NoopListener};
use crate::bitcoin::wire::{pver, Hash256, Network, MAX_USER_AGENT_LEN};

/// Returns our best block (hash, height); an error fails the handshake (as in btcd).
pub type NewestBlockFn = Arc<dyn Fn() -> Result<(Hash256, i32), String> + Send + Sync>;

/// The prefix btcd puts before every user agent (`wire.MsgVersion.AddUserAgent`).
pub const USER_AGENT_PREFIX: &str = "/btcwire:0.5.0/";

/// btcd `DefaultTrickleInterval`.
pub const DEFAULT_TRICKLE_INTERVAL: Duration = Duration::from_secs(10);
/// btcd `negotiateTimeout`.
pub const DEFAULT_NEGOTIATE_TIMEOUT: Duration = Duration::from_secs(30);
/// btcd `idleTimeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// btcd `pingInterval`.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(2 * 60);
/// btcd `stallTickInterval`.
pub const DEFAULT_STALL_TICK: Duration = Duration::from_secs(15);
/// btcd `stallResponseTimeout` (getheaders gets three times this).
pub const DEFAULT_STALL_RESPONSE: Duration = Duration::from_secs(30);
/// btcd has no write deadline; we bound every write so a peer that stops reading is dropped.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `queue_message` waits for room in the 50-slot queue before dropping the message.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(30);
/// btcd `MinAcceptableProtocolVersion` (`wire.MultipleAddressVersion`).
pub const MIN_ACCEPTABLE_PROTOCOL_VERSION: u32 = pver::MULTIPLE_ADDRESS;

/// Configuration of one peer. [`Config::default`] gives btcd's defaults.
#[derive(Clone)]
pub struct Config {
    /// Our best block for `version.start_height`; `None` means height 0.
    pub newest_block: Option<NewestBlockFn>,
    /// User agent name (BIP14 `name`).
    pub user_agent_name: String,
    /// User agent version.
    pub user_agent_version: String,
    /// User agent comments, joined by `"; "` inside parentheses.
    pub user_agent_comments: Vec<String>,
    /// Network whose magic the native transport uses (btcd's default is testnet3).
    pub network: Network,
    /// Service flags we advertise.
    pub services: u64,
    /// Protocol version we advertise (default 70016).
    pub protocol_version: u32,
    /// Ask the remote not to relay transactions (`version.relay = false`).
    pub disable_relay_tx: bool,
    /// Send BIP339 `wtxidrelay` in the handshake (when the negotiated version is >= 70016).
    /// Off by default: once both sides sent it, transactions must be announced and
    /// requested by wtxid (`MSG_WTX`), which the application has to do itself.
    pub wtxid_relay: bool,
    /// Send BIP130 `sendheaders` once the handshake is done (when the negotiated version
    /// is at least 70012), asking the remote to announce new blocks with `headers` instead
    /// of `inv`. Off by default: a peer that asks for headers has to fetch the blocks they
    /// name itself (see [`Listener::on_headers`]).
    pub send_headers: bool,
    /// Callbacks.
    pub listener: Arc<dyn Listener>,
    /// Inventory trickle period (default 10 s).
    pub trickle_interval: Duration,
    /// Accept a version carrying one of our own recent nonces (tests only).
    pub allow_self_conns: bool,
    /// Turn the stall detector off.
    pub disable_stall_handler: bool,
    /// Whole-handshake deadline (default 30 s).
    pub negotiate_timeout: Duration,
    /// Disconnect after this long without receiving anything (default 5 min).
    pub idle_timeout: Duration,
    /// Keep-alive ping period (default 2 min).
    pub ping_interval: Duration,
    /// How often the stall detector looks at its deadlines (default 15 s).
    pub stall_tick_interval: Duration,
    /// Deadline for an expected response (default 30 s; getheaders 3x).
    pub stall_response_timeout: Duration,
    /// Deadline for writing one message.
    pub write_timeout: Duration,
    /// How long `queue_message` waits for queue room.
    pub queue_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            newest_block: None,
            user_agent_name: String::new(),
            user_agent_version: String::new(),
            user_agent_comments: Vec::new(),
            network: Network::Testnet3,
            services: 0,
            protocol_version: pver::PROTOCOL_VERSION,
            disable_relay_tx: false,
            wtxid_relay: false,
            send_headers: false,
            listener: Arc::new(NoopListener),
            trickle_interval: DEFAULT_TRICKLE_INTERVAL,
            allow_self_conns: false,
            disable_stall_handler: false,
            negotiate_timeout: DEFAULT_NEGOTIATE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            stall_tick_interval: DEFAULT_STALL_TICK,
            stall_response_timeout: DEFAULT_STALL_RESPONSE,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("user_agent", &self.user_agent())
            .field("network", &self.network)
            .field("services", &self.services)
            .field("protocol_version", &self.protocol_version)
            .field("disable_relay_tx", &self.disable_relay_tx)
            .field("wtxid_relay", &self.wtxid_relay)
            .field("send_headers", &self.send_headers)
            .field("trickle_interval", &self.trickle_interval)
            .field("allow_self_conns", &self.allow_self_conns)
            .field("disable_stall_handler", &self.disable_stall_handler)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Zero or negative-looking settings fall back to btcd's defaults (as `newPeerBase` does).
    pub(crate) fn normalized(mut self) -> Self {
        if self.protocol_version == 0 {
            self.protocol_version = pver::PROTOCOL_VERSION;
        }
        if self.trickle_interval.is_zero() {
            self.trickle_interval = DEFAULT_TRICKLE_INTERVAL;
        }
        for (d, default) in [
            (&mut self.negotiate_timeout, DEFAULT_NEGOTIATE_TIMEOUT),
            (&mut self.idle_timeout, DEFAULT_IDLE_TIMEOUT),
            (&mut self.ping_interval, DEFAULT_PING_INTERVAL),
            (&mut self.stall_tick_interval, DEFAULT_STALL_TICK),
            (&mut self.stall_response_timeout, DEFAULT_STALL_RESPONSE),
            (&mut self.write_timeout, DEFAULT_WRITE_TIMEOUT),
            (&mut self.queue_timeout, DEFAULT_QUEUE_TIMEOUT),
        ] {
            if d.is_zero() {
                *d = default;
            }
        }
        self
    }

    /// The BIP14 user agent: `/btcwire:0.5.0/name:version(c1; c2)/`. If appending our part
    /// would exceed 256 bytes, only the prefix is used (btcd ignores that error the same way).
    pub fn user_agent(&self) -> String {
        let mut ua = format!(
            "{USER_AGENT_PREFIX}{}:{}",
            self.user_agent_name, self.user_agent_version
        );
        if !self.user_agent_comments.is_empty() {
            ua.push('(');
            ua.push_str(&self.user_agent_comments.join("; "));
            ua.push(')');
        }
        ua.push('/');
        if ua.len() > MAX_USER_AGENT_LEN {
            return USER_AGENT_PREFIX.to_owned();
        }
        ua
    }
}
