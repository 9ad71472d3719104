//! Enode URLs and node key files.

use p2p::node::{Enode, EnodeError, NodeId, NodeKey, NodeKeyError};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// A.1 Static Key A and its public key pubA.
const KEY_A: &str = "49a7b37aa6f6645917e7b807e9d1c00d4fa71f18343b0d4122a4d2df64dd6fee";
const PUB_A: &str = "fda1cff674c90c9a197539fe3dfb53086ace64f83ed7c6eabec741f7f381cc803e52ab2cd55d5569bce4347107a310dfd5f88a010cd2ffd1005ca406f1842877";

fn id_a() -> NodeId {
    NodeId(hex::decode(PUB_A).unwrap().try_into().unwrap())
}

// ---------------------------------------------------------------- enode

#[test]
fn enode_ipv4_round_trip() {
    let s = format!("enode://{PUB_A}@10.3.58.6:30303");
    let e: Enode = s.parse().unwrap();
    assert_eq!(e.id, id_a());
    assert_eq!(e.ip, IpAddr::V4(Ipv4Addr::new(10, 3, 58, 6)));
    assert_eq!((e.tcp_port, e.udp_port), (30303, 30303));
    assert_eq!(e.socket_addr(), "10.3.58.6:30303".parse().unwrap());
    assert_eq!(e.to_string(), s);
}

#[test]
fn enode_ipv6_and_discport_round_trip() {
    let s = format!("enode://{PUB_A}@[::1]:30303?discport=30301");
    let e: Enode = s.parse().unwrap();
    assert_eq!(e.ip, IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert_eq!((e.tcp_port, e.udp_port), (30303, 30301));
    assert_eq!(e.to_string(), s);
    assert_eq!(e.socket_addr(), "[::1]:30303".parse().unwrap());

    // discport equal to the TCP port is dropped on display.
    let same: Enode = format!("enode://{PUB_A}@1.2.3.4:5?discport=5")
        .parse()
        .unwrap();
    assert_eq!(same.to_string(), format!("enode://{PUB_A}@1.2.3.4:5"));

    // Upper-case hex and scheme are accepted and normalised.
    let upper: Enode = format!("ENODE://{}@1.2.3.4:5", PUB_A.to_uppercase())
        .parse()
        .unwrap();
    assert_eq!(upper, same);

    let v6: Enode = format!("enode://{PUB_A}@[2001:db8::7]:1?discport=2")
        .parse()
        .unwrap();
    assert_eq!(
        v6.to_string(),
        format!("enode://{PUB_A}@[2001:db8::7]:1?discport=2")
    );
    assert_eq!(Enode::new(id_a(), v6.socket_addr()).udp_port, 1);
}

#[test]
fn enode_malformed_forms_are_typed_errors() {
    let mut off_curve = PUB_A.to_string();
    off_curve.replace_range(126..128, "78"); // flips y: no longer on the curve
    let cases: Vec<(String, EnodeError)> = vec![
        (format!("http://{PUB_A}@1.2.3.4:1"), EnodeError::BadScheme),
        ("enode:/".to_string(), EnodeError::BadScheme),
        (String::new(), EnodeError::BadScheme),
        (format!("enode://{PUB_A}"), EnodeError::MissingHost),
        (format!("enode://{PUB_A}@"), EnodeError::MissingHost),
        (
            format!("enode://{PUB_A}@?discport=1"),
            EnodeError::MissingHost,
        ),
        (
            format!("enode://{}@1.2.3.4:1", &PUB_A[..126]),
            EnodeError::BadIdLength(126),
        ),
        (
            format!("enode://{}zz@1.2.3.4:1", &PUB_A[..126]),
            EnodeError::BadHex,
        ),
        (
            format!("enode://{}@1.2.3.4:1", "00".repeat(64)),
            EnodeError::NotOnCurve,
        ),
        (
            format!("enode://{off_curve}@1.2.3.4:1"),
            EnodeError::NotOnCurve,
        ),
        (
            format!("enode://{PUB_A}@example.com:30303"),
            EnodeError::InvalidHost("example.com".into()),
        ),
        (
            format!("enode://{PUB_A}@::1:30303"),
            EnodeError::InvalidHost("::1".into()),
        ),
        (
            format!("enode://{PUB_A}@[::1:30303"),
            EnodeError::InvalidHost("[::1:30303".into()),
        ),
        (
            format!("enode://{PUB_A}@[1.2.3.4]:1"),
            EnodeError::InvalidHost("1.2.3.4".into()),
        ),
        (
            format!("enode://{PUB_A}@1.2.3.4"),
            EnodeError::BadPort(String::new()),
        ),
        (
            format!("enode://{PUB_A}@1.2.3.4:"),
            EnodeError::BadPort(String::new()),
        ),
        (
            format!("enode://{PUB_A}@1.2.3.4:65536"),
            EnodeError::BadPort("65536".into()),
        ),
        (
            format!("enode://{PUB_A}@1.2.3.4:+80"),
            EnodeError::BadPort("+80".into()),
        ),
        (
            format!("enode://{PUB_A}@[::1]"),
            EnodeError::BadPort(String::new()),
        ),
        (
            format!("enode://{PUB_A}@1.2.3.4:1?discport=x"),
            EnodeError::BadQuery("discport=x".into()),
        ),
        (
            format!("enode://{PUB_A}@1.2.3.4:1?foo=1"),
            EnodeError::BadQuery("foo=1".into()),
        ),
        (
            format!("enode://{PUB_A}@1.2.3.4:1?"),
            EnodeError::BadQuery(String::new()),
        ),
        (
            format!("enode://{PUB_A}@1.2.3.4:1?discport=1&x=2"),
            EnodeError::BadQuery("discport=1&x=2".into()),
        ),
    ];
    for (s, want) in cases {
        assert_eq!(s.parse::<Enode>(), Err(want), "{s}");
    }
    // The host error tells the user why a name was refused.
    let msg = format!("enode://{PUB_A}@localhost:1")
        .parse::<Enode>()
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not resolved"), "{msg}");
}

proptest! {
    #[test]
    fn enode_parse_never_panics(s in "\\PC{0,200}") {
        let _ = s.parse::<Enode>();
    }

    #[test]
    fn enode_mutations_never_panic(tail in "[\\[\\]:?=@0-9a-fA-F.é]{0,40}", cut in 0usize..160) {
        let base = format!("enode://{PUB_A}@1.2.3.4:30303");
        let cut = cut.min(base.len());
        let _ = format!("{}{}", &base[..cut], tail).parse::<Enode>();
    }

    #[test]
    fn enode_display_parses_back(a in any::<[u8; 16]>(), v4 in any::<bool>(), tcp in any::<u16>(), udp in any::<u16>()) {
        let ip = if v4 { IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])) } else { IpAddr::V6(Ipv6Addr::from(a)) };
        let e = Enode { id: id_a(), ip, tcp_port: tcp, udp_port: udp };
        prop_assert_eq!(e.to_string().parse::<Enode>(), Ok(e));
    }
}

// ---------------------------------------------------------------- node key

/// A fresh path in the system temp dir; the directory is removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "braid-h3-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn nodekey_from_hex_matches_vector() {
    let key = NodeKey::from_hex(KEY_A).unwrap();
    assert_eq!(key.id(), id_a());
    assert_eq!(key.to_hex(), KEY_A);
    assert_eq!(NodeKey::from_hex(&KEY_A.to_uppercase()).unwrap(), key);
    assert_eq!(
        key.secret().secret_bytes().to_vec(),
        hex::decode(KEY_A).unwrap()
    );
}

#[test]
fn nodekey_debug_hides_secret() {
    let key = NodeKey::from_hex(KEY_A).unwrap();
    let dbg = format!("{key:?}");
    assert!(!dbg.contains(KEY_A), "{dbg}");
    assert!(!dbg.contains(&KEY_A[..16]), "{dbg}");
    assert!(dbg.contains("NodeKey"));
}

#[test]
fn nodekey_from_hex_errors() {
    assert!(matches!(
        NodeKey::from_hex(""),
        Err(NodeKeyError::BadLength(0))
    ));
    assert!(matches!(
        NodeKey::from_hex(&KEY_A[..62]),
        Err(NodeKeyError::BadLength(62))
    ));
    assert!(matches!(
        NodeKey::from_hex(&format!("{KEY_A}\n")),
        Err(NodeKeyError::BadLength(65))
    ));
    assert!(matches!(
        NodeKey::from_hex(&format!("{}zz", &KEY_A[..62])),
        Err(NodeKeyError::BadHex)
    ));
    assert!(matches!(
        NodeKey::from_hex(&"0".repeat(64)),
        Err(NodeKeyError::InvalidKey)
    ));
    // The curve order n itself is not a valid secret.
    let n = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
    assert!(matches!(
        NodeKey::from_hex(n),
        Err(NodeKeyError::InvalidKey)
    ));
    // Multi-byte characters must not trip the length/hex checks into a panic.
    assert!(matches!(
        NodeKey::from_hex(&"é".repeat(32)),
        Err(NodeKeyError::BadHex)
    ));
}

#[test]
fn nodekey_generate_is_random() {
    let a = NodeKey::generate();
    let b = NodeKey::generate();
    assert_ne!(a, b);
    assert_eq!(NodeKey::from_hex(&a.to_hex()).unwrap(), a);
    assert!(a.id().to_pubkey().is_some());
}

#[test]
fn nodekey_create_then_load() {
    let dir = TempDir::new("create");
    let path = dir.file("nodekey");
    let key = NodeKey::load_or_create(&path).unwrap();
    let contents = std::fs::read_to_string(&path).unwrap();
    assert_eq!(contents.len(), 64);
    assert!(contents.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(contents, key.to_hex());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(NodeKey::load_or_create(&path).unwrap(), key);
    assert_eq!(NodeKey::load(&path).unwrap(), key);
}

#[test]
fn nodekey_load_tolerates_trailing_whitespace() {
    let dir = TempDir::new("ws");
    let path = dir.file("nodekey");
    std::fs::write(&path, format!("{KEY_A}\n  \r\n")).unwrap();
    assert_eq!(NodeKey::load_or_create(&path).unwrap().id(), id_a());
    // File untouched (no rewrite).
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{KEY_A}\n  \r\n")
    );
}

#[test]
fn nodekey_malformed_files_name_the_path() {
    let dir = TempDir::new("bad");
    for (name, contents) in [
        ("short", &KEY_A[..63]),
        (
            "nothex",
            "g9a7b37aa6f6645917e7b807e9d1c00d4fa71f18343b0d4122a4d2df64dd6fee",
        ),
        (
            "zero",
            "0000000000000000000000000000000000000000000000000000000000000000",
        ),
        (
            "leading",
            " 49a7b37aa6f6645917e7b807e9d1c00d4fa71f18343b0d4122a4d2df64dd6fe",
        ),
        ("empty", ""),
    ] {
        let path = dir.file(name);
        std::fs::write(&path, contents).unwrap();
        match NodeKey::load_or_create(&path) {
            Err(err @ NodeKeyError::Malformed { .. }) => {
                assert!(
                    err.to_string().contains(&path.display().to_string()),
                    "{err}"
                );
            }
            other => panic!("{name}: expected Malformed, got {other:?}"),
        }
        // A malformed key is never silently replaced.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), contents);
    }
    let raw = dir.file("binary");
    std::fs::write(&raw, [0xff, 0xfe, 0x00]).unwrap();
    assert!(matches!(
        NodeKey::load_or_create(&raw),
        Err(NodeKeyError::Malformed { .. })
    ));
}

#[test]
fn nodekey_oversized_file_refused() {
    let dir = TempDir::new("big");
    let path = dir.file("nodekey");
    std::fs::write(&path, format!("{KEY_A}{}", " ".repeat(2000))).unwrap();
    assert!(matches!(
        NodeKey::load_or_create(&path),
        Err(NodeKeyError::FileTooLarge {
            size: 2064,
            max: 1024,
            ..
        })
    ));
}

#[test]
fn nodekey_unreadable_and_uncreatable() {
    let dir = TempDir::new("io");
    // A directory opens on unix but cannot be read as a file.
    let sub = dir.file("is-a-dir");
    std::fs::create_dir(&sub).unwrap();
    let err = NodeKey::load_or_create(&sub).unwrap_err();
    assert!(
        matches!(err, NodeKeyError::Read { ref path, .. } if *path == sub),
        "{err:?}"
    );
    // Missing parent directory: creation fails with a typed error naming the path.
    let orphan = dir.file("missing/nodekey");
    let err = NodeKey::load_or_create(&orphan).unwrap_err();
    assert!(
        matches!(err, NodeKeyError::Create { ref path, .. } if *path == orphan),
        "{err:?}"
    );
}
