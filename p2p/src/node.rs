//! Node identity: secp256k1 node keys, 64-byte node ids, enode URLs.

use secp256k1::{PublicKey, SecretKey};
use zeroize::Zeroizing;

/// A node id: the 64-byte uncompressed secp256k1 public key without its 0x04 prefix.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 64]);

impl NodeId {
    /// The node id of a public key.
    pub fn from_pubkey(key: &PublicKey) -> Self {
        let full = key.serialize_uncompressed();
        let mut id = [0u8; 64];
        id.copy_from_slice(&full[1..]);
        NodeId(id)
    }

    /// The node id belonging to a secret key.
    pub fn from_secret(key: &SecretKey) -> Self {
        Self::from_pubkey(&PublicKey::from_secret_key_global(key))
    }

    /// The public key, or `None` if these 64 bytes are not a point on the curve.
    pub fn to_pubkey(&self) -> Option<PublicKey> {
        let mut full = [0u8; 65];
        full[0] = 4;
        full[1..].copy_from_slice(&self.0);
        PublicKey::from_slice(&full).ok()
    }

    /// Raw bytes.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// The first 4 bytes in hex (8 characters): enough to tell peers apart on screen.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl std::fmt::Debug for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeId({}…)", &hex::encode(self.0)[..16])
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Serialized as its [`Display`](std::fmt::Display) form: the full id, 128 lowercase
/// hex characters, the same string an enode URL carries.
impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Why an enode URL could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnodeError {
    /// The URL does not start with `enode://`.
    #[error("enode URL must start with \"enode://\"")]
    BadScheme,
    /// There is no `@<host>:<port>` part (incomplete enodes are not dialable).
    #[error("enode URL has no \"@<ip>:<port>\" part")]
    MissingHost,
    /// The node id is not hexadecimal.
    #[error("enode node id is not valid hex")]
    BadHex,
    /// The node id does not have 128 hex characters (64 bytes).
    #[error("enode node id must be 128 hex characters, got {0}")]
    BadIdLength(usize),
    /// The node id is not a secp256k1 public key.
    #[error("enode node id is not a point on the secp256k1 curve")]
    NotOnCurve,
    /// The host is not an IP literal. Host names are deliberately not resolved here:
    /// parsing must not block or depend on DNS.
    #[error("enode host {0:?} is not an IP address (host names are not resolved; use an IP literal, IPv6 in brackets)")]
    InvalidHost(String),
    /// The TCP or discovery port is missing, not a decimal number, or above 65535.
    #[error("enode port {0:?} is not a number in 0..=65535")]
    BadPort(String),
    /// The query string is not exactly `discport=<port>`.
    #[error("enode query {0:?} is not supported (only \"discport=<port>\")")]
    BadQuery(String),
    /// Not dialable: TCP port 0 cannot be connected to.
    #[error("enode TCP port is 0, which cannot be dialed")]
    PortZero,
    /// Not dialable: the unspecified address (`0.0.0.0`, `::`) names no host; on some
    /// systems connecting to it reaches this machine, which is not what the URL meant.
    #[error("enode address {0} is unspecified and cannot be dialed")]
    UnspecifiedAddress(std::net::IpAddr),
    /// Not dialable: a multicast or broadcast address is not one peer.
    #[error("enode address {0} is multicast or broadcast and cannot be dialed")]
    NotUnicast(std::net::IpAddr),
}

/// A dialable node address: `enode://<128 hex>@<ip>:<tcp>[?discport=<udp>]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Enode {
    /// The node's id (public key).
    pub id: NodeId,
    /// IP address; host names are not supported.
    pub ip: std::net::IpAddr,
    /// RLPx (TCP) port.
    pub tcp_port: u16,
    /// Discovery (UDP) port; equal to `tcp_port` unless `?discport=` says otherwise.
    pub udp_port: u16,
}

impl Enode {
    /// An enode whose UDP port equals its TCP port.
    pub fn new(id: NodeId, addr: std::net::SocketAddr) -> Self {
        Enode {
            id,
            ip: addr.ip(),
            tcp_port: addr.port(),
            udp_port: addr.port(),
        }
    }

    /// The TCP address to dial.
    pub fn socket_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.ip, self.tcp_port)
    }

    /// Whether this enode can be dialed: TCP port not 0, and a unicast address that is
    /// not unspecified (`0.0.0.0`, `::`), multicast (`224.0.0.0/4`, `ff00::/8`) or the
    /// IPv4 broadcast address. IPv4-mapped IPv6 addresses are judged as the IPv4
    /// address they carry.
    ///
    /// [`FromStr`](std::str::FromStr) does not check this, because an enode can be
    /// parsed to be shown or stored (a node listening on `0.0.0.0` may print exactly
    /// that); [`Server::dial`](crate::server::Server::dial) and
    /// [`Enode::parse_dialable`] do.
    pub fn check_dialable(&self) -> Result<(), EnodeError> {
        if self.tcp_port == 0 {
            return Err(EnodeError::PortZero);
        }
        let ip = match self.ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(self.ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        if ip.is_unspecified() {
            return Err(EnodeError::UnspecifiedAddress(self.ip));
        }
        let broadcast = matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast());
        if ip.is_multicast() || broadcast {
            return Err(EnodeError::NotUnicast(self.ip));
        }
        Ok(())
    }

    /// Parses an enode URL that is about to be dialed: [`FromStr`](std::str::FromStr)
    /// followed by [`Enode::check_dialable`].
    pub fn parse_dialable(s: &str) -> Result<Enode, EnodeError> {
        let enode: Enode = s.parse()?;
        enode.check_dialable()?;
        Ok(enode)
    }
}

/// A port as written in a URL: decimal digits only (no sign, no spaces).
fn parse_port(s: &str) -> Result<u16, EnodeError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EnodeError::BadPort(s.to_owned()));
    }
    s.parse().map_err(|_| EnodeError::BadPort(s.to_owned()))
}

impl std::str::FromStr for Enode {
    type Err = EnodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const SCHEME: &str = "enode://";
        let rest = match (s.get(..SCHEME.len()), s.get(SCHEME.len()..)) {
            (Some(prefix), Some(rest)) if prefix.eq_ignore_ascii_case(SCHEME) => rest,
            _ => return Err(EnodeError::BadScheme),
        };
        let (id_hex, addr) = rest.split_once('@').ok_or(EnodeError::MissingHost)?;
        // Length first, so a huge bogus id is rejected before hex decoding touches it.
        if id_hex.len() != 128 {
            return Err(EnodeError::BadIdLength(id_hex.len()));
        }
        let mut id = [0u8; 64];
        hex::decode_to_slice(id_hex, &mut id).map_err(|_| EnodeError::BadHex)?;
        let id = NodeId(id);
        if id.to_pubkey().is_none() {
            return Err(EnodeError::NotOnCurve);
        }

        let (hostport, query) = match addr.split_once('?') {
            Some((hp, q)) => (hp, Some(q)),
            None => (addr, None),
        };
        if hostport.is_empty() {
            return Err(EnodeError::MissingHost);
        }
        let (ip, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| EnodeError::InvalidHost(hostport.to_owned()))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| EnodeError::BadPort(after.to_owned()))?;
            let ip: std::net::Ipv6Addr = host
                .parse()
                .map_err(|_| EnodeError::InvalidHost(host.to_owned()))?;
            (std::net::IpAddr::V6(ip), port)
        } else {
            let (host, port) = hostport
                .rsplit_once(':')
                .ok_or_else(|| EnodeError::BadPort(String::new()))?;
            // Unbracketed IPv6 (several colons) lands here with a bogus host and is refused.
            let ip: std::net::Ipv4Addr = host
                .parse()
                .map_err(|_| EnodeError::InvalidHost(host.to_owned()))?;
            (std::net::IpAddr::V4(ip), port)
        };
        let tcp_port = parse_port(port)?;
        let udp_port = match query {
            None => tcp_port,
            Some(q) => match q.split_once('=') {
                Some(("discport", v)) => {
                    parse_port(v).map_err(|_| EnodeError::BadQuery(q.to_owned()))?
                }
                _ => return Err(EnodeError::BadQuery(q.to_owned())),
            },
        };
        Ok(Enode {
            id,
            ip,
            tcp_port,
            udp_port,
        })
    }
}

impl std::fmt::Display for Enode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SocketAddr's Display brackets IPv6 addresses, as URLs require.
        write!(f, "enode://{}@{}", self.id, self.socket_addr())?;
        if self.udp_port != self.tcp_port {
            write!(f, "?discport={}", self.udp_port)?;
        }
        Ok(())
    }
}

/// Largest node key file we are willing to read (a valid one is 64 bytes plus a newline).
const MAX_KEY_FILE_SIZE: u64 = 1024;

/// Why a node key could not be parsed, loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum NodeKeyError {
    /// The key is not exactly 64 hex characters.
    #[error("node key must be 64 hex characters, got {0}")]
    BadLength(usize),
    /// The key contains non-hex characters.
    #[error("node key is not valid hex")]
    BadHex,
    /// The 32 bytes are not a valid secp256k1 secret (zero, or not below the curve order).
    #[error("node key is not a valid secp256k1 secret key")]
    InvalidKey,
    /// The key file exists but could not be read.
    #[error("cannot read node key file {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file is larger than any valid key file; it was not read.
    #[error("node key file {path} is {size} bytes, more than the {max} a key file can be")]
    FileTooLarge {
        /// The file.
        path: std::path::PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The key file was read but does not hold a valid key.
    #[error("node key file {path} is malformed: {reason}")]
    Malformed {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with its contents.
        #[source]
        reason: Box<NodeKeyError>,
    },
    /// A new key file could not be created or written.
    #[error("cannot create node key file {path}: {source}")]
    Create {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// This node's secp256k1 identity key. The key is overwritten when the `NodeKey` is
/// dropped (secp256k1's volatile `non_secure_erase`); copies handed out through
/// [`NodeKey::secret`] are the holder's to look after.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeKey(SecretKey);

impl Drop for NodeKey {
    fn drop(&mut self) {
        self.erase();
    }
}

impl From<SecretKey> for NodeKey {
    fn from(secret: SecretKey) -> Self {
        NodeKey::from_secret(secret)
    }
}

impl NodeKey {
    /// A fresh random key from the thread-local CSPRNG.
    pub fn generate() -> Self {
        NodeKey(SecretKey::new(&mut rand::thread_rng()))
    }

    /// Overwrites the key in place; what `Drop` runs.
    fn erase(&mut self) {
        self.0.non_secure_erase();
    }

    /// Wraps an existing secret key.
    pub fn from_secret(secret: SecretKey) -> Self {
        NodeKey(secret)
    }

    /// Parses exactly 64 hex characters (either case, no `0x` prefix, no whitespace).
    pub fn from_hex(s: &str) -> Result<NodeKey, NodeKeyError> {
        Self::from_hex_bytes(s.as_bytes())
    }

    fn from_hex_bytes(s: &[u8]) -> Result<NodeKey, NodeKeyError> {
        if s.len() != 64 {
            return Err(NodeKeyError::BadLength(s.len()));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(s, &mut *bytes).map_err(|_| NodeKeyError::BadHex)?;
        SecretKey::from_byte_array(&bytes)
            .map(NodeKey)
            .map_err(|_| NodeKeyError::InvalidKey)
    }

    /// The key as 64 lowercase hex characters (go-ethereum's `nodekey` file format).
    /// The string is the secret: wipe it when done (e.g. hold it in `Zeroizing`).
    pub fn to_hex(&self) -> String {
        let bytes = Zeroizing::new(self.0.secret_bytes());
        hex::encode(*bytes)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        NodeId::from_secret(&self.0)
    }

    /// The secret key, for the handshake.
    pub fn secret(&self) -> &SecretKey {
        &self.0
    }

    /// Loads the key stored at `path`, or creates one there if the file does not exist.
    ///
    /// File format as go-ethereum's `nodekey`: 64 hex characters; trailing whitespace
    /// is tolerated on read, none is written. A new file is created with
    /// `create_new` (so two processes racing cannot overwrite each other's key; the
    /// loser loads the winner's) and, on unix, mode 0600. Parent directories are not
    /// created.
    pub fn load_or_create(path: impl AsRef<std::path::Path>) -> Result<NodeKey, NodeKeyError> {
        let path = path.as_ref();
        match Self::load(path) {
            Err(NodeKeyError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                match Self::create(path) {
                    Err(NodeKeyError::Create { source, .. })
                        if source.kind() == std::io::ErrorKind::AlreadyExists =>
                    {
                        Self::load(path)
                    }
                    other => other,
                }
            }
            other => other,
        }
    }

    /// Loads the key stored at `path` (see [`NodeKey::load_or_create`] for the format).
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<NodeKey, NodeKeyError> {
        use std::io::Read;
        let path = path.as_ref();
        let read_err = |source| NodeKeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        // Checked before opening: opening a FIFO for reading would block until a
        // writer appears, and a directory would only fail later, less clearly.
        let not_a_file = || {
            read_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            ))
        };
        if !std::fs::metadata(path).map_err(read_err)?.is_file() {
            return Err(not_a_file());
        }
        let file = std::fs::File::open(path).map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(not_a_file());
        }
        let size = meta.len();
        if size > MAX_KEY_FILE_SIZE {
            return Err(NodeKeyError::FileTooLarge {
                path: path.to_path_buf(),
                size,
                max: MAX_KEY_FILE_SIZE,
            });
        }
        // `take` bounds the read even if the file grows after the size check.
        // The file's bytes are the key: wiped when this returns, whatever the outcome.
        // Sized for the largest file accepted, so the read never reallocates and
        // leaves an unwiped copy behind in a freed buffer.
        let mut contents = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_SIZE as usize + 1));
        file.take(MAX_KEY_FILE_SIZE + 1)
            .read_to_end(&mut contents)
            .map_err(read_err)?;
        if contents.len() as u64 > MAX_KEY_FILE_SIZE {
            return Err(NodeKeyError::FileTooLarge {
                path: path.to_path_buf(),
                size: contents.len() as u64,
                max: MAX_KEY_FILE_SIZE,
            });
        }
        warn_if_readable_by_others(path, file_mode(&meta));
        Self::from_hex_bytes(contents.trim_ascii_end()).map_err(|reason| NodeKeyError::Malformed {
            path: path.to_path_buf(),
            reason: Box::new(reason),
        })
    }

    fn create(path: &std::path::Path) -> Result<NodeKey, NodeKeyError> {
        use std::io::Write;
        let create_err = |source| NodeKeyError::Create {
            path: path.to_path_buf(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(create_err)?;
        let key = NodeKey::generate();
        let hex = Zeroizing::new(key.to_hex());
        let written = file
            .write_all(hex.as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(source) = written {
            // A half-written key file would fail every later start; remove it so the
            // next attempt starts clean.
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(create_err(source));
        }
        tracing::info!(path = %path.display(), id = %key.id(), "created new node key");
        Ok(key)
    }
}

#[cfg(unix)]
fn file_mode(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(meta.permissions().mode())
}

#[cfg(not(unix))]
fn file_mode(_meta: &std::fs::Metadata) -> Option<u32> {
    None
}

fn warn_if_readable_by_others(path: &std::path::Path, mode: Option<u32>) {
    if let Some(mode) = mode {
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777),
                "node key file is accessible to group/others; consider chmod 600");
        }
    }
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only the public id: a key in a log line is a key lost.
        f.debug_struct("NodeKey").field("id", &self.id()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "b71c71a67e1177ad4e901695e1b4b9ee17ae16c6668d313eac2f96dbcda3f291";

    /// The overwrite `Drop` runs, observed on a live key (reading a dropped one's
    /// memory would be undefined behaviour).
    #[test]
    fn erase_overwrites_the_key() {
        let mut key = NodeKey::from_hex(KEY).unwrap();
        assert_eq!(key.to_hex(), KEY);
        key.erase();
        assert_ne!(key.to_hex(), KEY);
    }

    #[test]
    fn node_id_serializes_as_its_full_hex() {
        let id = NodeKey::from_hex(KEY).unwrap().id();
        let json = serde_json::to_value(id).unwrap();
        assert_eq!(json, serde_json::Value::String(hex::encode(id.0)));
        assert_eq!(json.as_str().unwrap().len(), 128);
    }

    fn enode(ip: &str, port: u16) -> Enode {
        let id = NodeKey::from_hex(KEY).unwrap().id();
        let ip: std::net::IpAddr = ip.parse().unwrap();
        Enode::new(id, std::net::SocketAddr::new(ip, port))
    }

    #[test]
    fn undialable_enodes_are_refused_with_typed_errors() {
        assert_eq!(
            enode("127.0.0.1", 0).check_dialable(),
            Err(EnodeError::PortZero)
        );
        for ip in ["0.0.0.0", "::", "::ffff:0.0.0.0"] {
            assert!(
                matches!(
                    enode(ip, 30303).check_dialable(),
                    Err(EnodeError::UnspecifiedAddress(_))
                ),
                "{ip}"
            );
        }
        for ip in [
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "ff02::1",
            "::ffff:224.0.0.1",
        ] {
            assert!(
                matches!(
                    enode(ip, 30303).check_dialable(),
                    Err(EnodeError::NotUnicast(_))
                ),
                "{ip}"
            );
        }
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
        ] {
            assert_eq!(enode(ip, 30303).check_dialable(), Ok(()), "{ip}");
        }
    }

    #[test]
    fn parse_dialable_refuses_what_from_str_accepts() {
        let id = NodeKey::from_hex(KEY).unwrap().id();
        for (url, want) in [
            (format!("enode://{id}@127.0.0.1:0"), EnodeError::PortZero),
            (
                format!("enode://{id}@0.0.0.0:30303"),
                EnodeError::UnspecifiedAddress("0.0.0.0".parse().unwrap()),
            ),
            (
                format!("enode://{id}@[::]:30303"),
                EnodeError::UnspecifiedAddress("::".parse().unwrap()),
            ),
            (
                format!("enode://{id}@224.0.0.1:30303"),
                EnodeError::NotUnicast("224.0.0.1".parse().unwrap()),
            ),
            (
                format!("enode://{id}@[ff02::1]:30303"),
                EnodeError::NotUnicast("ff02::1".parse().unwrap()),
            ),
        ] {
            // Displaying or storing such an enode is fine; dialing it is not.
            assert!(url.parse::<Enode>().is_ok(), "{url}");
            assert_eq!(Enode::parse_dialable(&url), Err(want), "{url}");
        }
        let ok = format!("enode://{id}@127.0.0.1:30303");
        assert_eq!(Enode::parse_dialable(&ok), ok.parse::<Enode>());
    }
}
