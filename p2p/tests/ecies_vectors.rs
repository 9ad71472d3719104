//! ECIES handshake: the public RLPx vectors byte-for-byte, round trips over an
//! in-memory stream, and hostile inputs.

use std::time::Duration;

use p2p::ecies::crypt::{self, ecdh_x};
use p2p::ecies::packets::{self, AuthBody};
use p2p::ecies::{accept, initiate, HandshakeError, Initiator, Recipient, Secrets, WireFormat};
use p2p::keccak::{Digest, Keccak256};
use p2p::node::NodeId;
use secp256k1::{PublicKey, SecretKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---- A.1 keys and nonces -------------------------------------------------------

const STATIC_A: &str = "49a7b37aa6f6645917e7b807e9d1c00d4fa71f18343b0d4122a4d2df64dd6fee";
const STATIC_B: &str = "b71c71a67e1177ad4e901695e1b4b9ee17ae16c6668d313eac2f96dbcda3f291";
const EPH_A: &str = "869d6ecf5211f1cc60418a13b9d870b22959d0c16f02bec714c960dd2298a32d";
const EPH_B: &str = "e238eb8e04fee6511ab04c6dd3c89ce097b11f25d584863ac2b6d5b35b1847e4";
const NONCE_A: &str = "7e968bba13b6c50e2c4cd7f241cc0d64d1ac25c7f5952df231ac6a2bda8ee5d6";
const NONCE_B: &str = "559aead08264d5795d3909718cdd05abd49572e84fe55590eef31a88a08fdffd";
const PUB_A: &str = "fda1cff674c90c9a197539fe3dfb53086ace64f83ed7c6eabec741f7f381cc803e52ab2cd55d5569bce4347107a310dfd5f88a010cd2ffd1005ca406f1842877";
const PUB_B: &str = "ca634cae0d49acb401d8a4c6b6fe8c55b70d115bf400769cc1400f3258cd31387574077f301b421bc84df7266c44e9e6d569fc56be00812904767bf5ccd1fc7f";
const EPH_PUB_A: &str = "654d1044b69c577a44e5f01a1209523adb4026e70c62d1c13a067acabc09d2667a49821a0ad4b634554d330a15a58fe61f8a8e0544b310c6de7b0c8da7528a8d";
const EPH_PUB_B: &str = "b6d82fa3409da933dbf9cb0140c5dde89f4e64aec88d476af648880f4a10e1e49fe35ef3e69e93dd300b4797765a747c6384a6ecf5db9c2690398607a86181e4";
const AUTH_SIG: &str = "299ca6acfd35e3d72d8ba3d1e2b60b5561d5af5218eb5bc182045769eb4226910a301acae3b369fffc4a4899d6b02531e89fd4fe36a2cf0d93607ba470b50f7800";

// ---- A.2 packets ---------------------------------------------------------------

const AUTH1: &str = concat!(
    "048ca79ad18e4b0659fab4853fe5bc58eb83992980f4c9cc147d2aa31532efd29a3d3dc6a3d89eaf",
    "913150cfc777ce0ce4af2758bf4810235f6e6ceccfee1acc6b22c005e9e3a49d6448610a58e98744",
    "ba3ac0399e82692d67c1f58849050b3024e21a52c9d3b01d871ff5f210817912773e610443a9ef14",
    "2e91cdba0bd77b5fdf0769b05671fc35f83d83e4d3b0b000c6b2a1b1bba89e0fc51bf4e460df3105",
    "c444f14be226458940d6061c296350937ffd5e3acaceeaaefd3c6f74be8e23e0f45163cc7ebd7622",
    "0f0128410fd05250273156d548a414444ae2f7dea4dfca2d43c057adb701a715bf59f6fb66b2d1d2",
    "0f2c703f851cbf5ac47396d9ca65b6260bd141ac4d53e2de585a73d1750780db4c9ee4cd4d225173",
    "a4592ee77e2bd94d0be3691f3b406f9bba9b591fc63facc016bfa8",
);

const AUTH2: &str = concat!(
    "01b304ab7578555167be8154d5cc456f567d5ba302662433674222360f08d5f1534499d3678b513b",
    "0fca474f3a514b18e75683032eb63fccb16c156dc6eb2c0b1593f0d84ac74f6e475f1b8d56116b84",
    "9634a8c458705bf83a626ea0384d4d7341aae591fae42ce6bd5c850bfe0b999a694a49bbbaf3ef6c",
    "da61110601d3b4c02ab6c30437257a6e0117792631a4b47c1d52fc0f8f89caadeb7d02770bf999cc",
    "147d2df3b62e1ffb2c9d8c125a3984865356266bca11ce7d3a688663a51d82defaa8aad69da39ab6",
    "d5470e81ec5f2a7a47fb865ff7cca21516f9299a07b1bc63ba56c7a1a892112841ca44b6e0034dee",
    "70c9adabc15d76a54f443593fafdc3b27af8059703f88928e199cb122362a4b35f62386da7caad09",
    "c001edaeb5f8a06d2b26fb6cb93c52a9fca51853b68193916982358fe1e5369e249875bb8d0d0ec3",
    "6f917bc5e1eafd5896d46bd61ff23f1a863a8a8dcd54c7b109b771c8e61ec9c8908c733c0263440e",
    "2aa067241aaa433f0bb053c7b31a838504b148f570c0ad62837129e547678c5190341e4f1693956c",
    "3bf7678318e2d5b5340c9e488eefea198576344afbdf66db5f51204a6961a63ce072c8926c",
);

const AUTH3: &str = concat!(
    "01b8044c6c312173685d1edd268aa95e1d495474c6959bcdd10067ba4c9013df9e40ff45f5bfd6f7",
    "2471f93a91b493f8e00abc4b80f682973de715d77ba3a005a242eb859f9a211d93a347fa64b597bf",
    "280a6b88e26299cf263b01b8dfdb712278464fd1c25840b995e84d367d743f66c0e54a586725b7bb",
    "f12acca27170ae3283c1073adda4b6d79f27656993aefccf16e0d0409fe07db2dc398a1b7e8ee93b",
    "cd181485fd332f381d6a050fba4c7641a5112ac1b0b61168d20f01b479e19adf7fdbfa0905f63352",
    "bfc7e23cf3357657455119d879c78d3cf8c8c06375f3f7d4861aa02a122467e069acaf513025ff19",
    "6641f6d2810ce493f51bee9c966b15c5043505350392b57645385a18c78f14669cc4d960446c1757",
    "1b7c5d725021babbcd786957f3d17089c084907bda22c2b2675b4378b114c601d858802a55345a15",
    "116bc61da4193996187ed70d16730e9ae6b3bb8787ebcaea1871d850997ddc08b4f4ea668fbf3740",
    "7ac044b55be0908ecb94d4ed172ece66fd31bfdadf2b97a8bc690163ee11f5b575a4b44e36e2bfb2",
    "f0fce91676fd64c7773bac6a003f481fddd0bae0a1f31aa27504e2a533af4cef3b623f4791b2cca6",
    "d490",
);

const ACK1: &str = concat!(
    "049f8abcfa9c0dc65b982e98af921bc0ba6e4243169348a236abe9df5f93aa69d99cadddaa387662",
    "b0ff2c08e9006d5a11a278b1b3331e5aaabf0a32f01281b6f4ede0e09a2d5f585b26513cb794d963",
    "5a57563921c04a9090b4f14ee42be1a5461049af4ea7a7f49bf4c97a352d39c8d02ee4acc416388c",
    "1c66cec761d2bc1c72da6ba143477f049c9d2dde846c252c111b904f630ac98e51609b3b1f58168d",
    "dca6505b7196532e5f85b259a20c45e1979491683fee108e9660edbf38f3add489ae73e3dda2c71b",
    "d1497113d5c755e942d1",
);

const ACK2: &str = concat!(
    "01ea0451958701280a56482929d3b0757da8f7fbe5286784beead59d95089c217c9b917788989470",
    "b0e330cc6e4fb383c0340ed85fab836ec9fb8a49672712aeabbdfd1e837c1ff4cace34311cd7f4de",
    "05d59279e3524ab26ef753a0095637ac88f2b499b9914b5f64e143eae548a1066e14cd2f4bd7f814",
    "c4652f11b254f8a2d0191e2f5546fae6055694aed14d906df79ad3b407d94692694e259191cde171",
    "ad542fc588fa2b7333313d82a9f887332f1dfc36cea03f831cb9a23fea05b33deb999e85489e645f",
    "6aab1872475d488d7bd6c7c120caf28dbfc5d6833888155ed69d34dbdc39c1f299be1057810f34fb",
    "e754d021bfca14dc989753d61c413d261934e1a9c67ee060a25eefb54e81a4d14baff922180c395d",
    "3f998d70f46f6b58306f969627ae364497e73fc27f6d17ae45a413d322cb8814276be6ddd13b885b",
    "201b943213656cde498fa0e9ddc8e0b8f8a53824fbd82254f3e2c17e8eaea009c38b4aa0a3f306e8",
    "797db43c25d68e86f262e564086f59a2fc60511c42abfb3057c247a8a8fe4fb3ccbadde17514b7ac",
    "8000cdb6a912778426260c47f38919a91f25f4b5ffb455d6aaaf150f7e5529c100ce62d6d92826a7",
    "1778d809bdf60232ae21ce8a437eca8223f45ac37f6487452ce626f549b3b5fdee26afd2072e4bc7",
    "5833c2464c805246155289f4",
);

const ACK3: &str = concat!(
    "01f004076e58aae772bb101ab1a8e64e01ee96e64857ce82b1113817c6cdd52c09d26f7b90981cd7",
    "ae835aeac72e1573b8a0225dd56d157a010846d888dac7464baf53f2ad4e3d584531fa203658fab0",
    "3a06c9fd5e35737e417bc28c1cbf5e5dfc666de7090f69c3b29754725f84f75382891c561040ea1d",
    "dc0d8f381ed1b9d0d4ad2a0ec021421d847820d6fa0ba66eaf58175f1b235e851c7e2124069fbc20",
    "2888ddb3ac4d56bcbd1b9b7eab59e78f2e2d400905050f4a92dec1c4bdf797b3fc9b2f8e84a482f3",
    "d800386186712dae00d5c386ec9387a5e9c9a1aca5a573ca91082c7d68421f388e79127a5177d4f8",
    "590237364fd348c9611fa39f78dcdceee3f390f07991b7b47e1daa3ebcb6ccc9607811cb17ce51f1",
    "c8c2c5098dbdd28fca547b3f58c01a424ac05f869f49c6a34672ea2cbbc558428aa1fe48bbfd6115",
    "8b1b735a65d99f21e70dbc020bfdface9f724a0d1fb5895db971cc81aa7608baa0920abb0a565c9c",
    "436e2fd13323428296c86385f2384e408a31e104670df0791d93e743a3a5194ee6b076fb6323ca59",
    "3011b7348c16cf58f66b9633906ba54a2ee803187344b394f75dd2e663a57b956cb830dd7a908d4f",
    "39a2336a61ef9fda549180d4ccde21514d117b6c6fd07a9102b5efe710a32af4eeacae2cb3b1dec0",
    "35b9593b48b9d3ca4c13d245d5f04169b0b1",
);

// ---- expected values (A.2, A.6) ------------------------------------------------

const AES_SECRET: &str = "80e8632c05fed6fc2a13b0f8d31a3cf645366239170ea067065aba8e28bac487";
const MAC_SECRET: &str = "2ea74ec5dae199227dff1af715362700e989d889d7a493cb0639691efb8e5f98";
const B_INGRESS_FOO_2: &str = "0c7ec6340062cc46f5e9f1e3cf86f8c8c403c5a0964f5df0ebd34a75ddc86db5";
const B_EGRESS_FOO_2: &str = "64f0b10a107ff6f066a9e0a48a47230e1ab816b85584cdcf3364c42ae6e4c75a";
const B_INGRESS_FOO_1: &str = "127426a406ee8d47653adb5cf3be47a73cc1b28b5355ee99e172c5156eb33636";
const B_INGRESS_FOO_3: &str = "abbe9bf2ef74540e215365de13f2ecb0393248a1755c31597d56a6d8d154b6c5";

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn h32(s: &str) -> [u8; 32] {
    h(s).try_into().unwrap()
}

fn key(s: &str) -> SecretKey {
    SecretKey::from_byte_array(&h32(s)).unwrap()
}

fn id(s: &str) -> NodeId {
    NodeId(h(s).try_into().unwrap())
}

/// `mac("foo")`: clone the running state, absorb "foo", finalize.
fn mac_foo(state: &Keccak256) -> [u8; 32] {
    let mut s = state.clone();
    s.update(b"foo");
    s.finalize().into()
}

/// B with the vector ephemeral key and nonce.
fn recipient_b() -> Recipient {
    Recipient::new(&key(STATIC_B), key(EPH_B), h32(NONCE_B))
}

/// A with the vector ephemeral key and nonce, dialing B.
fn initiator_a() -> Initiator {
    Initiator::new(&key(STATIC_A), &id(PUB_B), key(EPH_A), h32(NONCE_A)).unwrap()
}

// ---- vectors -------------------------------------------------------------------

#[test]
fn vector_keys_match_listed_public_keys() {
    assert_eq!(NodeId::from_secret(&key(STATIC_A)), id(PUB_A));
    assert_eq!(NodeId::from_secret(&key(STATIC_B)), id(PUB_B));
    assert_eq!(NodeId::from_secret(&key(EPH_A)), id(EPH_PUB_A));
    assert_eq!(NodeId::from_secret(&key(EPH_B)), id(EPH_PUB_B));
}

#[test]
fn ecdh_x_only_vector() {
    let sk = key("202a36e24c3eb39513335ec99a7619bad0e7dc68d69401b016253c7d26dc92f8");
    let remote = id("d860a01f9722d78051619d1e2351aba3f43f943f6f00718d1b9baa4101932a1f5011f16bb2b1bb35db20d6fe28fa0bf09636d26a87d31de9ec6203eeedb1f666");
    assert_eq!(
        ecdh_x(&remote.to_pubkey().unwrap(), &sk),
        h32("821ce7e01ea11b111a52b2dafae8a3031a372d83bdf1a78109fa0783c2b9d5d3")
    );
    // A.2 intermediate: x(ECDH(ephB, ephPubA)).
    assert_eq!(
        ecdh_x(&id(EPH_PUB_A).to_pubkey().unwrap(), &key(EPH_B)),
        h32("1a08ef840fa6b55e5b2630351aa45804cc16b48e526b64e6ee667b224967ef24")
    );
}

#[test]
fn auth_signature_vector_and_ours_recover_the_same_ephemeral_key() {
    let b = recipient_b();
    // The vector packets carry geth's listed signature byte-for-byte.
    for packet in [AUTH1, AUTH2, AUTH3] {
        assert_eq!(
            b.read_auth(&h(packet)).unwrap().body.signature.to_vec(),
            h(AUTH_SIG)
        );
    }
    // We sign with RFC 6979 nonces, so our bytes differ from the vector's (ECDSA
    // signatures are not unique), but they must sign the same message with the
    // same key: B recovers ephPubA from them.
    let a = initiator_a();
    let ours = a.auth_body().signature;
    assert_eq!(ours, a.auth_body().signature, "deterministic");
    let auth = b.read_auth(&a.auth_packet().unwrap()).unwrap();
    assert_eq!(auth.body.signature, ours);
    assert_eq!(auth.remote_ephemeral_id(), id(EPH_PUB_A));
    let legacy = b.read_auth(&a.legacy_auth_packet()).unwrap();
    assert_eq!(legacy.format, WireFormat::Legacy);
    assert_eq!(legacy.remote_ephemeral_id(), id(EPH_PUB_A));
}

#[test]
fn auth_vectors_decrypt_and_parse() {
    let b = recipient_b();
    for (packet, format, version, len) in [
        (AUTH1, WireFormat::Legacy, 4, 307),
        (AUTH2, WireFormat::Eip8, 4, 437),
        (AUTH3, WireFormat::Eip8, 56, 442),
    ] {
        let bytes = h(packet);
        assert_eq!(bytes.len(), len);
        let auth = b.read_auth(&bytes).unwrap();
        assert_eq!(auth.format, format);
        assert_eq!(auth.body.version, version);
        assert_eq!(auth.remote_id(), id(PUB_A));
        assert_eq!(auth.body.nonce, h32(NONCE_A));
        assert_eq!(auth.remote_ephemeral_id(), id(EPH_PUB_A));
        assert_eq!(auth.packet(), &bytes[..]);
    }
}

#[test]
fn ack_vectors_decrypt_and_parse() {
    let a = initiator_a();
    for (packet, format, version, len) in [
        (ACK1, WireFormat::Legacy, 4, 210),
        (ACK2, WireFormat::Eip8, 4, 492),
        (ACK3, WireFormat::Eip8, 57, 498),
    ] {
        let bytes = h(packet);
        assert_eq!(bytes.len(), len);
        let ack = a.read_ack(&bytes).unwrap();
        assert_eq!(ack.format, format);
        assert_eq!(ack.body.version, version);
        assert_eq!(ack.body.ephemeral_id, id(EPH_PUB_B));
        assert_eq!(ack.body.nonce, h32(NONCE_B));
    }
}

/// B's secrets for an (auth, ack) vector pair, with B having sent `ack`.
fn b_secrets(auth: &str, ack: &str) -> Secrets {
    let b = recipient_b();
    let auth = b.read_auth(&h(auth)).unwrap();
    b.secrets(&auth, &h(ack))
}

/// A's secrets for an (auth, ack) vector pair, with A having sent `auth`.
fn a_secrets(auth: &str, ack: &str) -> Secrets {
    let a = initiator_a();
    let ack = a.read_ack(&h(ack)).unwrap();
    a.secrets(&h(auth), &ack)
}

#[test]
fn eip8_secrets_for_b_are_byte_exact() {
    let s = b_secrets(AUTH2, ACK2);
    assert_eq!(*s.aes_secret, h32(AES_SECRET));
    assert_eq!(*s.mac_secret, h32(MAC_SECRET));
    assert_eq!(mac_foo(&s.ingress_mac), h32(B_INGRESS_FOO_2));
    assert_eq!(mac_foo(&s.egress_mac), h32(B_EGRESS_FOO_2));
    assert_eq!(s.remote_id, id(PUB_A));
}

#[test]
fn initiator_side_mirrors_b_on_the_vectors() {
    let s = a_secrets(AUTH2, ACK2);
    assert_eq!(*s.aes_secret, h32(AES_SECRET));
    assert_eq!(*s.mac_secret, h32(MAC_SECRET));
    // A's egress is B's ingress and vice versa.
    assert_eq!(mac_foo(&s.egress_mac), h32(B_INGRESS_FOO_2));
    assert_eq!(mac_foo(&s.ingress_mac), h32(B_EGRESS_FOO_2));
    assert_eq!(s.remote_id, id(PUB_B));
}

#[test]
fn legacy_and_extended_pairs_give_listed_ingress_macs() {
    for (auth, ack, expected) in [
        (AUTH1, ACK1, B_INGRESS_FOO_1),
        (AUTH3, ACK3, B_INGRESS_FOO_3),
    ] {
        let s = b_secrets(auth, ack);
        // aes/mac secrets depend only on the ephemeral keys and nonces.
        assert_eq!(*s.aes_secret, h32(AES_SECRET));
        assert_eq!(*s.mac_secret, h32(MAC_SECRET));
        assert_eq!(mac_foo(&s.ingress_mac), h32(expected));
        assert_eq!(mac_foo(&a_secrets(auth, ack).egress_mac), h32(expected));
    }
}

#[test]
fn secrets_debug_hides_key_material() {
    let s = b_secrets(AUTH2, ACK2);
    let shown = format!("{s:?}");
    assert!(!shown.contains(&AES_SECRET[..16]), "{shown}");
    assert!(!shown.contains(&MAC_SECRET[..16]), "{shown}");
    assert!(!shown.contains("80, 232"), "{shown}"); // aes_secret as decimal bytes
    assert!(shown.contains("remote_id"));
}

// ---- round trips -----------------------------------------------------------------

/// Asserts two ends agree: same keys, and each egress state equals the other's ingress.
fn assert_matching(init: &Secrets, resp: &Secrets) {
    assert_eq!(init.aes_secret, resp.aes_secret);
    assert_eq!(init.mac_secret, resp.mac_secret);
    assert_eq!(mac_foo(&init.egress_mac), mac_foo(&resp.ingress_mac));
    assert_eq!(mac_foo(&init.ingress_mac), mac_foo(&resp.egress_mac));
    assert_ne!(mac_foo(&init.egress_mac), mac_foo(&init.ingress_mac));
}

#[tokio::test]
async fn eip8_round_trip_over_duplex() {
    let (ka, kb, b_id) = (key(STATIC_A), key(STATIC_B), id(PUB_B));
    let (mut ca, mut cb) = tokio::io::duplex(4096);
    let (init, resp) = tokio::join!(initiate(&mut ca, &ka, &b_id), accept(&mut cb, &kb));
    let (init, resp) = (init.unwrap(), resp.unwrap());
    assert_matching(&init, &resp);
    assert_eq!(init.remote_id, id(PUB_B));
    assert_eq!(resp.remote_id, id(PUB_A));
}

#[tokio::test]
async fn handshake_reads_no_more_than_its_packet() {
    let (ka, kb) = (key(STATIC_A), key(STATIC_B));
    let (mut ca, mut cb) = tokio::io::duplex(8192);
    let a = Initiator::random(&ka, &id(PUB_B)).unwrap();
    let mut auth = a.auth_packet().unwrap();
    let sent_len = auth.len();
    auth.extend_from_slice(b"first frame bytes");
    ca.write_all(&auth).await.unwrap();

    let resp = accept(&mut cb, &kb).await.unwrap();
    let mut rest = [0u8; 17];
    cb.read_exact(&mut rest).await.unwrap();
    assert_eq!(&rest, b"first frame bytes");

    let mut prefix = [0u8; 2];
    ca.read_exact(&mut prefix).await.unwrap();
    let mut ack = prefix.to_vec();
    ack.resize(2 + usize::from(u16::from_be_bytes(prefix)), 0);
    ca.read_exact(&mut ack[2..]).await.unwrap();
    let init = a.secrets(&auth[..sent_len], &a.read_ack(&ack).unwrap());
    assert_matching(&init, &resp);
}

#[tokio::test]
async fn legacy_auth_gets_legacy_ack() {
    let (ka, kb) = (key(STATIC_A), key(STATIC_B));
    let (mut ca, mut cb) = tokio::io::duplex(4096);
    let a = Initiator::random(&ka, &id(PUB_B)).unwrap();
    let auth = a.legacy_auth_packet();
    assert_eq!(auth.len(), packets::LEGACY_AUTH_LEN);
    let mut wire = auth.clone();
    wire.extend_from_slice(b"next");
    ca.write_all(&wire).await.unwrap();

    let resp = accept(&mut cb, &kb).await.unwrap();
    let mut next = [0u8; 4];
    cb.read_exact(&mut next).await.unwrap();
    assert_eq!(
        &next, b"next",
        "accept must stop after the 307 legacy bytes"
    );

    let mut ack = vec![0u8; packets::LEGACY_ACK_LEN];
    ca.read_exact(&mut ack).await.unwrap();
    let ack = a.read_ack(&ack).unwrap();
    assert_eq!(ack.format, WireFormat::Legacy);
    let init = a.secrets(&auth, &ack);
    assert_matching(&init, &resp);
    assert_eq!(resp.remote_id, id(PUB_A));
}

#[tokio::test]
async fn initiate_accepts_a_legacy_ack() {
    let (ka, kb, b_id) = (key(STATIC_A), key(STATIC_B), id(PUB_B));
    let (mut ca, mut cb) = tokio::io::duplex(4096);
    let b = Recipient::random(&kb);
    let responder = async {
        let mut prefix = [0u8; 2];
        cb.read_exact(&mut prefix).await.unwrap();
        let mut auth = prefix.to_vec();
        auth.resize(2 + usize::from(u16::from_be_bytes(prefix)), 0);
        cb.read_exact(&mut auth[2..]).await.unwrap();
        let mut auth = b.read_auth(&auth).unwrap();
        // Answer an EIP-8 auth in the legacy format, as a pre-EIP-8 peer would.
        auth.format = WireFormat::Legacy;
        let ack = b.ack_packet(&auth).unwrap();
        assert_eq!(ack.len(), packets::LEGACY_ACK_LEN);
        cb.write_all(&ack).await.unwrap();
        b.secrets(&auth, &ack)
    };
    let (init, resp) = tokio::join!(initiate(&mut ca, &ka, &b_id), responder);
    assert_matching(&init.unwrap(), &resp);
}

// ---- hostile input -----------------------------------------------------------------

/// Runs `accept` against `bytes` (then EOF) and returns its error.
async fn accept_bytes(bytes: &[u8]) -> HandshakeError {
    let (mut ca, mut cb) = tokio::io::duplex(8192);
    ca.write_all(bytes).await.unwrap();
    drop(ca);
    tokio::time::timeout(Duration::from_secs(5), accept(&mut cb, &key(STATIC_B)))
        .await
        .expect("accept must not hang on a closed stream")
        .expect_err("hostile input must be refused")
}

/// A valid EIP-8 auth from A to B.
fn valid_auth() -> Vec<u8> {
    Initiator::random(&key(STATIC_A), &id(PUB_B))
        .unwrap()
        .auth_packet()
        .unwrap()
}

#[tokio::test]
async fn garbage_is_a_typed_error() {
    // Deterministic pseudo-random garbage with a plausible size prefix (398).
    let mut garbage: Vec<u8> = (0..400u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    garbage[0] = 0x01;
    garbage[1] = 0x8e;
    let err = accept_bytes(&garbage).await;
    assert!(
        matches!(
            err,
            HandshakeError::InvalidPublicKey | HandshakeError::TagMismatch
        ),
        "{err:?}"
    );
    // The same garbage read as a legacy-looking packet (first byte 0x04).
    garbage[0] = 0x04;
    let err = accept_bytes(&garbage).await;
    assert!(matches!(err, HandshakeError::UnexpectedEof), "{err:?}");
    // All zeros: size 0.
    let err = accept_bytes(&[0u8; 400]).await;
    assert!(matches!(err, HandshakeError::Malformed(_)), "{err:?}");
}

#[tokio::test]
async fn oversized_prefix_is_refused_before_the_body() {
    let (mut ca, mut cb) = tokio::io::duplex(64);
    // Only the prefix, and the writer stays open: if accept waited for the body it would hang.
    ca.write_all(&[0xff, 0xff]).await.unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), accept(&mut cb, &key(STATIC_B)))
        .await
        .expect("must not wait for the claimed body");
    assert!(matches!(
        res,
        Err(HandshakeError::PacketTooLarge {
            size: 0xffff,
            max: 2048
        })
    ));
    // Just over the limit as well.
    let err = accept_bytes(&[0x08, 0x01]).await;
    assert!(
        matches!(err, HandshakeError::PacketTooLarge { size: 2049, .. }),
        "{err:?}"
    );
    drop(ca);
}

#[tokio::test]
async fn truncated_auth_then_eof() {
    let auth = valid_auth();
    for cut in [0, 1, 2, 100, auth.len() - 1] {
        let err = accept_bytes(&auth[..cut]).await;
        assert!(
            matches!(err, HandshakeError::UnexpectedEof),
            "cut {cut}: {err:?}"
        );
    }
}

/// An uncompressed encoding of (1, 1), which is not on secp256k1.
fn off_curve_point() -> [u8; 65] {
    let mut p = [0u8; 65];
    p[0] = 0x04;
    p[32] = 1;
    p[64] = 1;
    assert!(PublicKey::from_slice(&p).is_err());
    p
}

#[tokio::test]
async fn off_curve_r_is_invalid_public_key() {
    let mut auth = valid_auth();
    auth[2..67].copy_from_slice(&off_curve_point());
    let b = recipient_b();
    assert!(matches!(
        b.read_auth(&auth),
        Err(HandshakeError::InvalidPublicKey)
    ));
    assert!(matches!(
        accept_bytes(&auth).await,
        HandshakeError::InvalidPublicKey
    ));

    let mut legacy = h(AUTH1);
    legacy[..65].copy_from_slice(&off_curve_point());
    assert!(matches!(
        b.read_auth(&legacy),
        Err(HandshakeError::InvalidPublicKey)
    ));

    let mut ack = h(ACK2);
    ack[2..67].copy_from_slice(&off_curve_point());
    assert!(matches!(
        initiator_a().read_ack(&ack),
        Err(HandshakeError::InvalidPublicKey)
    ));
}

#[tokio::test]
async fn flipped_bytes_are_tag_mismatch() {
    let b = recipient_b();
    for vector in [AUTH1, AUTH2, AUTH3] {
        let good = h(vector);
        let last = good.len() - 1;
        // Tag byte, ciphertext byte, IV byte.
        for at in [last, last - 40, 70] {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            assert!(
                matches!(b.read_auth(&bad), Err(HandshakeError::TagMismatch)),
                "{at}"
            );
        }
    }
    // The size prefix is authenticated too: the same ciphertext under another
    // (consistent) prefix must fail, not decrypt.
    let mut bad = h(AUTH2);
    bad.push(0);
    bad[1] += 1;
    let err = b.read_auth(&bad).unwrap_err();
    assert!(matches!(err, HandshakeError::TagMismatch), "{err:?}");

    let mut auth = valid_auth();
    *auth.last_mut().unwrap() ^= 0x80;
    assert!(matches!(
        accept_bytes(&auth).await,
        HandshakeError::TagMismatch
    ));
}

#[test]
fn wrong_recipient_key_is_tag_mismatch() {
    let other = Recipient::new(&key(STATIC_A), key(EPH_B), h32(NONCE_B));
    assert!(matches!(
        other.read_auth(&h(AUTH2)),
        Err(HandshakeError::TagMismatch)
    ));
}

/// Seals a custom EIP-8 auth body to B (authentic ECIES, hostile contents).
fn seal_to_b(plaintext: &[u8]) -> Vec<u8> {
    packets::seal_eip8(&id(PUB_B).to_pubkey().unwrap(), plaintext).unwrap()
}

#[test]
fn authentic_but_bad_contents_are_typed_errors() {
    let b = recipient_b();
    let good = initiator_a().auth_body();

    let mut bad_recid = good.clone();
    bad_recid.signature[64] = 7;
    assert!(matches!(
        b.read_auth(&seal_to_b(&bad_recid.to_rlp())),
        Err(HandshakeError::InvalidSignature)
    ));

    let mut zero_sig = good.clone();
    zero_sig.signature = [0; 65];
    assert!(matches!(
        b.read_auth(&seal_to_b(&zero_sig.to_rlp())),
        Err(HandshakeError::InvalidSignature)
    ));

    let mut bad_id = good.clone();
    bad_id.initiator_id = NodeId([0; 64]);
    assert!(matches!(
        b.read_auth(&seal_to_b(&bad_id.to_rlp())),
        Err(HandshakeError::InvalidPublicKey)
    ));

    for junk in [&b""[..], b"\xc0", b"\x80", b"\xf8\xff"] {
        let err = b.read_auth(&seal_to_b(junk)).unwrap_err();
        assert!(
            matches!(err, HandshakeError::Malformed(_)),
            "{junk:?}: {err:?}"
        );
    }

    // A body signed over a different nonce than it carries still recovers *a* key,
    // but not A's ephemeral one, so the derived secrets cannot match A's.
    let mut wrong_nonce = good.clone();
    wrong_nonce.nonce[0] ^= 1;
    let auth = b.read_auth(&seal_to_b(&wrong_nonce.to_rlp())).unwrap();
    assert_ne!(auth.remote_ephemeral_id(), id(EPH_PUB_A));

    // Legacy body whose ephemeral-key hash does not match the signature.
    let legacy = good.to_legacy(&[0xaa; 32]);
    let packet = packets::seal_legacy(&id(PUB_B).to_pubkey().unwrap(), &legacy);
    assert!(matches!(
        b.read_auth(&packet),
        Err(HandshakeError::Malformed(_))
    ));
}

#[test]
fn decoders_never_panic_on_arbitrary_bytes() {
    let b = recipient_b();
    let a = initiator_a();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for len in (0..700).step_by(7) {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        assert!(b.read_auth(&bytes).is_err());
        assert!(a.read_ack(&bytes).is_err());
        assert!(AuthBody::from_rlp(&bytes).is_err() || bytes.first().is_some_and(|&x| x >= 0xc0));
        let _ = crypt::decrypt(&key(STATIC_B), &bytes, &[]);
    }
}
