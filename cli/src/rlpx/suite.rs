//! `braid rlpx test`: a conformance suite run against any RLPx node.
//!
//! Every case opens its own connection with a fresh node key (so no case is refused as
//! "already connected" because of another) and offers the capabilities the target itself
//! advertised (learnt once, up front), so the target keeps the link up after the Hello.
//! Cases that end a link on purpose are followed by a liveness check: a new link must
//! still complete the handshake and answer a ping, i.e. the node did not crash or lock up.
//!
//! A case passes, fails, or is skipped with the reason (when the target may legally
//! answer differently, the case says what it saw and why that is allowed).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use p2p::base::{DisconnectReason, Hello, DISCONNECT, PING, PONG};
use p2p::message::Snappy;
use p2p::node::{Enode, NodeKey};
use serde::Serialize;

use super::link::{send_bytes_expect_close, AuthStyle, HelloSpec, Link, LinkError};

/// Settings for one run of the suite.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// The node under test.
    pub target: Enode,
    /// Deadline for each single step (connect, handshake, a reply).
    pub step_timeout: Duration,
    /// How long to wait for the target's own ping in the idle case.
    pub idle_wait: Duration,
}

/// What a case concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The target behaved as the protocol requires.
    Pass,
    /// It did not.
    Fail,
    /// The case does not apply to this target.
    Skip,
}

/// One case's result.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// The case's name (`group/case`).
    pub name: &'static str,
    /// Pass, fail or skip.
    pub verdict: Verdict,
    /// What was seen (or why skipped).
    pub detail: String,
    /// How long the case took, in milliseconds.
    pub millis: u64,
}

type CaseFuture<'a> = Pin<Box<dyn Future<Output = (Verdict, String)> + Send + 'a>>;

/// A case: a name, one line on what it checks, and its body.
pub struct Case {
    /// `group/case`, matched by `--run`.
    pub name: &'static str,
    /// What the target must do.
    pub about: &'static str,
    run: for<'a> fn(&'a Ctx) -> CaseFuture<'a>,
}

/// What every case gets: the settings and the target's advertised capabilities.
pub struct Ctx {
    cfg: SuiteConfig,
    caps: Vec<(String, u32)>,
}

macro_rules! case {
    ($name:literal, $about:literal, $body:ident) => {
        Case {
            name: $name,
            about: $about,
            run: |ctx| Box::pin($body(ctx)),
        }
    };
}

/// Every case, in the order they run.
pub fn cases() -> Vec<Case> {
    vec![
        case!(
            "handshake/eip8",
            "EIP-8 auth is answered and a Hello follows",
            handshake_eip8
        ),
        case!(
            "handshake/legacy",
            "a pre-EIP-8 (307-byte) auth is accepted",
            handshake_legacy
        ),
        case!(
            "handshake/eip8-extra-fields",
            "an auth with a higher version and extra list elements is accepted (EIP-8)",
            handshake_extended
        ),
        case!(
            "handshake/garbage-auth",
            "random bytes instead of an auth: closed, node survives",
            garbage_auth
        ),
        case!(
            "handshake/oversized-auth",
            "an auth whose size prefix claims 65535 bytes: closed, node survives",
            oversized_auth
        ),
        case!(
            "hello/v5-snappy",
            "after a v5 Hello both sides compress; ping works",
            hello_v5
        ),
        case!(
            "hello/v4-no-snappy",
            "after a v4 Hello nothing is compressed; ping works",
            hello_v4
        ),
        case!(
            "hello/extra-fields",
            "unknown extra Hello fields are ignored",
            hello_extra
        ),
        case!(
            "hello/wrong-identity",
            "a Hello whose node id differs from the handshake key: 0x09 or close",
            hello_wrong_identity
        ),
        case!(
            "hello/no-shared-capability",
            "a Hello with no capability in common: useless peer (0x03)",
            hello_no_shared_cap
        ),
        case!("ping/pong", "a ping is answered with a pong", ping_pong),
        case!(
            "frame/bad-header-mac",
            "a frame with a forged header MAC: link closed",
            bad_header_mac
        ),
        case!(
            "frame/bad-body-mac",
            "a frame with a forged frame MAC: link closed",
            bad_body_mac
        ),
        case!(
            "frame/oversized-stall",
            "a frame header claiming 16 MiB, then silence: others are still served",
            oversized_stall
        ),
        case!(
            "snappy/bomb",
            "a message whose snappy header claims 4 GiB: link closed, node survives",
            snappy_bomb
        ),
        case!(
            "message/unknown-code",
            "a message outside every protocol's codes: disconnect or ignored, node survives",
            unknown_code
        ),
        case!(
            "disconnect/forms",
            "Disconnect as [reason] and bare, compressed and not: the remote leaves each time",
            disconnect_forms
        ),
        case!(
            "idle/remote-pings",
            "an idle link is pinged by the remote",
            idle_pings
        ),
    ]
}

/// Learns the target's capabilities, then runs every case whose name contains `pattern`.
/// `on_result` sees each result as it comes (for progress output).
pub async fn run(
    cfg: SuiteConfig,
    pattern: Option<&str>,
    mut on_start: impl FnMut(&Case),
    mut on_result: impl FnMut(&CaseResult),
) -> Result<Vec<CaseResult>, LinkError> {
    let caps = probe_caps(&cfg).await?;
    let ctx = Ctx { cfg, caps };
    let mut results = Vec::new();
    for case in cases() {
        if pattern.is_some_and(|p| !case.name.contains(p)) {
            continue;
        }
        on_start(&case);
        let started = Instant::now();
        // A case cannot run away: the whole of it is bounded too.
        let bound = ctx.cfg.step_timeout * 6 + ctx.cfg.idle_wait;
        let (verdict, detail) = match tokio::time::timeout(bound, (case.run)(&ctx)).await {
            Ok(outcome) => outcome,
            Err(_) => (
                Verdict::Fail,
                format!("case did not finish within {bound:?}"),
            ),
        };
        let result = CaseResult {
            name: case.name,
            verdict,
            detail,
            millis: started.elapsed().as_millis() as u64,
        };
        on_result(&result);
        results.push(result);
    }
    Ok(results)
}

async fn probe_caps(cfg: &SuiteConfig) -> Result<Vec<(String, u32)>, LinkError> {
    let (link, hello) = open(cfg, AuthStyle::Eip8, &HelloSpec::v5(&[])).await?;
    link.bye(DisconnectReason::DisconnectRequested).await;
    Ok(hello
        .capabilities
        .iter()
        .map(|c| (c.name.clone(), c.version))
        .collect())
}

/// A fresh key, the handshake in `style`, and our Hello `spec`.
async fn open(
    cfg: &SuiteConfig,
    style: AuthStyle,
    spec: &HelloSpec,
) -> Result<(Link, Hello), LinkError> {
    let key = NodeKey::generate();
    let mut link = Link::connect(&cfg.target, key.secret(), style, cfg.step_timeout).await?;
    let hello = link.hello(spec, cfg.step_timeout).await?;
    Ok((link, hello))
}

impl Ctx {
    fn t(&self) -> Duration {
        self.cfg.step_timeout
    }

    fn hello(&self) -> HelloSpec {
        HelloSpec::v5(&self.caps)
    }

    async fn open(&self) -> Result<(Link, Hello), LinkError> {
        open(&self.cfg, AuthStyle::Eip8, &self.hello()).await
    }

    /// A new link still completes the handshake and answers a ping.
    async fn alive(&self) -> Result<Duration, String> {
        let (mut link, _) = self
            .open()
            .await
            .map_err(|e| format!("node no longer serves: {e}"))?;
        let rtt = link
            .ping(self.t())
            .await
            .map_err(|e| format!("node no longer answers pings: {e}"))?;
        link.bye(DisconnectReason::DisconnectRequested).await;
        Ok(rtt)
    }

    /// `detail` as a pass when the node is still alive, else a failure saying so.
    async fn pass_if_alive(&self, detail: String) -> (Verdict, String) {
        match self.alive().await {
            Ok(_) => (Verdict::Pass, format!("{detail}; node still serving")),
            Err(e) => (Verdict::Fail, format!("{detail}; {e}")),
        }
    }
}

fn fail(e: impl std::fmt::Display) -> (Verdict, String) {
    (Verdict::Fail, e.to_string())
}

fn caps_text(hello: &Hello) -> String {
    hello
        .capabilities
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

async fn handshake(ctx: &Ctx, style: AuthStyle) -> (Verdict, String) {
    match open(&ctx.cfg, style, &ctx.hello()).await {
        Ok((mut link, hello)) => {
            let ping = link.ping(ctx.t()).await;
            link.bye(DisconnectReason::DisconnectRequested).await;
            match ping {
                Ok(rtt) => (
                    Verdict::Pass,
                    format!(
                        "hello from {:?} (p2p v{}, caps {}), pong in {rtt:.1?}",
                        hello.client_id,
                        hello.protocol_version,
                        caps_text(&hello)
                    ),
                ),
                Err(e) => fail(format!("hello ok, then {e}")),
            }
        }
        Err(e) => fail(e),
    }
}

async fn handshake_eip8(ctx: &Ctx) -> (Verdict, String) {
    handshake(ctx, AuthStyle::Eip8).await
}

async fn handshake_legacy(ctx: &Ctx) -> (Verdict, String) {
    handshake(ctx, AuthStyle::Legacy).await
}

async fn handshake_extended(ctx: &Ctx) -> (Verdict, String) {
    handshake(ctx, AuthStyle::Eip8Extended).await
}

async fn garbage_auth(ctx: &Ctx) -> (Verdict, String) {
    // Starts like neither a legacy auth (0x04) nor a plausible EIP-8 size.
    let mut bytes = vec![0u8; 400];
    rand::Rng::fill(&mut rand::thread_rng(), &mut bytes[..]);
    bytes[0] = 0x01;
    bytes[1] = 0x60;
    match send_bytes_expect_close(ctx.cfg.target.socket_addr(), &bytes, ctx.t()).await {
        Ok(after) => ctx.pass_if_alive(format!("closed after {after:.1?}")).await,
        Err(e) => fail(e),
    }
}

async fn oversized_auth(ctx: &Ctx) -> (Verdict, String) {
    let mut bytes = vec![0xff, 0xff];
    bytes.extend(std::iter::repeat_n(0x42u8, 2048));
    match send_bytes_expect_close(ctx.cfg.target.socket_addr(), &bytes, ctx.t()).await {
        Ok(after) => ctx.pass_if_alive(format!("closed after {after:.1?}")).await,
        Err(LinkError::Timeout(..)) => {
            // Reading all 65535 claimed bytes and then failing is slower but not wrong:
            // what must not happen is the node hanging or dying.
            ctx.pass_if_alive("kept the connection open while waiting for the claimed bytes".into())
                .await
        }
        Err(e) => fail(e),
    }
}

async fn hello_v5(ctx: &Ctx) -> (Verdict, String) {
    let (mut link, hello) = match ctx.open().await {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    if hello.protocol_version < 5 {
        link.bye(DisconnectReason::DisconnectRequested).await;
        return (
            Verdict::Skip,
            format!("target speaks p2p v{}, not 5", hello.protocol_version),
        );
    }
    let result = link.ping(ctx.t()).await;
    link.bye(DisconnectReason::DisconnectRequested).await;
    match result {
        Ok(rtt) => (
            Verdict::Pass,
            format!("snappy on both ways, pong in {rtt:.1?}"),
        ),
        Err(e) => fail(e),
    }
}

async fn hello_v4(ctx: &Ctx) -> (Verdict, String) {
    let mut spec = ctx.hello();
    spec.version = 4;
    let key = NodeKey::generate();
    let mut link =
        match Link::connect(&ctx.cfg.target, key.secret(), AuthStyle::Eip8, ctx.t()).await {
            Ok(l) => l,
            Err(e) => return fail(e),
        };
    match link.hello(&spec, ctx.t()).await {
        Ok(_) => {}
        Err(LinkError::Disconnected(DisconnectReason::IncompatibleP2PVersion)) => {
            return (
                Verdict::Skip,
                "target refuses p2p v4 peers (0x06), which it may".into(),
            )
        }
        Err(e) => return fail(e),
    }
    // Our pings go out uncompressed; the pong must come back uncompressed too, and the
    // link's reader has snappy off, so a compressed pong would not read as a pong.
    let rtt = link.ping(ctx.t()).await;
    link.bye(DisconnectReason::DisconnectRequested).await;
    match rtt {
        Ok(rtt) => (
            Verdict::Pass,
            format!("no snappy after a v4 hello, pong in {rtt:.1?}"),
        ),
        Err(e) => fail(format!("after a v4 hello: {e}")),
    }
}

async fn hello_extra(ctx: &Ctx) -> (Verdict, String) {
    let mut spec = ctx.hello();
    spec.extra_fields = true;
    match open(&ctx.cfg, AuthStyle::Eip8, &spec).await {
        Ok((mut link, _)) => {
            let ping = link.ping(ctx.t()).await;
            link.bye(DisconnectReason::DisconnectRequested).await;
            match ping {
                Ok(_) => (Verdict::Pass, "accepted; pong received".into()),
                Err(e) => fail(e),
            }
        }
        Err(e) => fail(e),
    }
}

async fn hello_wrong_identity(ctx: &Ctx) -> (Verdict, String) {
    let mut spec = ctx.hello();
    spec.claimed_id = Some(NodeKey::generate().id());
    let key = NodeKey::generate();
    let mut link =
        match Link::connect(&ctx.cfg.target, key.secret(), AuthStyle::Eip8, ctx.t()).await {
            Ok(l) => l,
            Err(e) => return fail(e),
        };
    match link.hello(&spec, ctx.t()).await {
        Err(LinkError::Disconnected(r)) => judge_identity(ctx, Some(r)).await,
        Err(LinkError::Conn(_)) => judge_identity(ctx, None).await,
        Err(e) => fail(e),
        // The target sent its Hello before checking ours: it must end the link now.
        Ok(_) => match link.closed(ctx.t()).await {
            Ok(reason) => judge_identity(ctx, reason).await,
            Err(e) => fail(format!("link kept up with a wrong identity ({e})")),
        },
    }
}

async fn judge_identity(ctx: &Ctx, reason: Option<DisconnectReason>) -> (Verdict, String) {
    match reason {
        Some(DisconnectReason::UnexpectedIdentity) | None => {
            let seen = reason.map_or("closed without a reason".into(), |r| {
                format!("disconnect {:#04x}", r.code())
            });
            ctx.pass_if_alive(seen).await
        }
        Some(other) => {
            ctx.pass_if_alive(format!(
                "disconnect {:#04x} ({other}); 0x09 expected, but it did refuse",
                other.code()
            ))
            .await
        }
    }
}

async fn hello_no_shared_cap(ctx: &Ctx) -> (Verdict, String) {
    let spec = HelloSpec::v5(&[("braidconformance".into(), 1)]);
    let key = NodeKey::generate();
    let mut link =
        match Link::connect(&ctx.cfg.target, key.secret(), AuthStyle::Eip8, ctx.t()).await {
            Ok(l) => l,
            Err(e) => return fail(e),
        };
    let reason = match link.hello(&spec, ctx.t()).await {
        Err(LinkError::Disconnected(r)) => Some(r),
        Err(e) => return fail(e),
        Ok(_) => match link.closed(ctx.t()).await {
            Ok(reason) => reason,
            Err(e) => return fail(format!("link kept up without a shared capability ({e})")),
        },
    };
    match reason {
        Some(DisconnectReason::UselessPeer) => {
            (Verdict::Pass, "disconnect 0x03 (useless peer)".into())
        }
        Some(r) => fail(format!("disconnect {:#04x} ({r}), expected 0x03", r.code())),
        None => fail("closed without a Disconnect, expected 0x03"),
    }
}

async fn ping_pong(ctx: &Ctx) -> (Verdict, String) {
    let (mut link, _) = match ctx.open().await {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let mut rtts = Vec::new();
    for _ in 0..3 {
        match link.ping(ctx.t()).await {
            Ok(rtt) => rtts.push(rtt),
            Err(e) => return fail(e),
        }
    }
    link.bye(DisconnectReason::DisconnectRequested).await;
    rtts.sort();
    (
        Verdict::Pass,
        format!("3 pongs, median RTT {:.1?}", rtts[1]),
    )
}

/// Sends a ping whose sealed frame has one byte flipped at `offset`; the target must end
/// the link (with or without a Disconnect) instead of answering.
async fn forged(ctx: &Ctx, offset: usize, what: &str) -> (Verdict, String) {
    let (mut link, _) = match ctx.open().await {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    link.flip_next_write(offset);
    if let Err(e) = link.send(PING, &[0xc0]).await {
        return fail(format!("could not send the forged frame: {e}"));
    }
    let deadline = Instant::now() + ctx.t();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match link.read(left).await {
            Ok(msg) if msg.code == PONG => {
                return fail(format!("answered a ping with a forged {what}"))
            }
            Ok(msg) if msg.code == DISCONNECT => {
                let reason = super::link::reason_of(&msg);
                return ctx
                    .pass_if_alive(format!("disconnect {:#04x} ({reason})", reason.code()))
                    .await;
            }
            Ok(_) => {}
            Err(LinkError::Timeout(..)) => {
                return fail(format!("link still open after a forged {what}"))
            }
            Err(_) => return ctx.pass_if_alive("closed".into()).await,
        }
    }
}

async fn bad_header_mac(ctx: &Ctx) -> (Verdict, String) {
    forged(ctx, 20, "header MAC").await
}

async fn bad_body_mac(ctx: &Ctx) -> (Verdict, String) {
    // A ping's body is one 16-byte block: header 16, header MAC 16, body 16, then the MAC.
    forged(ctx, 50, "frame MAC").await
}

async fn oversized_stall(ctx: &Ctx) -> (Verdict, String) {
    let (mut link, _) = match ctx.open().await {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    // A whole frame just under the 16 MiB limit is sealed, and only its first KiB sent.
    // Only the raw writer is used: a compressed payload would shrink.
    link.truncate_next_write(1024);
    let claim = vec![0u8; p2p::frame::MAX_FRAME_SIZE - 64];
    let code = 0x10 + 0x7ff0;
    if let Err(e) = link.send_raw(code, &claim).await {
        return fail(format!("could not send: {e}"));
    }
    // While that link holds its partial frame, a second peer must be served at once.
    let seen = match ctx.alive().await {
        Ok(rtt) => format!("another peer was served during the stall (pong in {rtt:.1?})"),
        Err(e) => return fail(format!("during the stall: {e}")),
    };
    drop(link);
    ctx.pass_if_alive(seen).await
}

async fn snappy_bomb(ctx: &Ctx) -> (Verdict, String) {
    let (mut link, _) = match ctx.open().await {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    if !link.snappy {
        link.bye(DisconnectReason::DisconnectRequested).await;
        return (
            Verdict::Skip,
            "snappy is not on for this link (p2p v4 target)".into(),
        );
    }
    // A snappy block is a varint of its decompressed length, then the data: claim
    // 4 GiB - 1 and carry a few bytes. It goes to a ping code, which every node reads.
    let bomb = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x00, 0x00];
    if let Err(e) = link.send_raw(PING, &bomb).await {
        return fail(format!("could not send: {e}"));
    }
    match link.closed(ctx.t()).await {
        Ok(Some(r)) => {
            ctx.pass_if_alive(format!("disconnect {:#04x} ({r})", r.code()))
                .await
        }
        Ok(None) => ctx.pass_if_alive("closed".into()).await,
        Err(e) => fail(format!("link kept up after a snappy bomb ({e})")),
    }
}

async fn unknown_code(ctx: &Ctx) -> (Verdict, String) {
    let (mut link, _) = match ctx.open().await {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    // Past every matched capability: base codes 0x10+ are shared, so this is beyond all.
    let code = 0x10 + 0x7000;
    if let Err(e) = link.send(code, &[0xc0]).await {
        return fail(format!("could not send: {e}"));
    }
    let seen = match link.ping(ctx.t()).await {
        Ok(_) => "ignored (pong still answered)".to_string(),
        Err(LinkError::Disconnected(r)) => format!("disconnect {:#04x} ({r})", r.code()),
        Err(LinkError::Timeout(..)) => return fail("neither answered nor closed"),
        Err(_) => "closed".to_string(),
    };
    link.bye(DisconnectReason::DisconnectRequested).await;
    ctx.pass_if_alive(format!("{code:#x}: {seen}")).await
}

async fn disconnect_forms(ctx: &Ctx) -> (Verdict, String) {
    let reason = DisconnectReason::ClientQuitting.code();
    let forms: [(&str, Vec<u8>, bool); 4] = [
        ("[reason] compressed", vec![0xc1, reason], true),
        ("[reason] uncompressed", vec![0xc1, reason], false),
        ("bare compressed", vec![reason], true),
        ("bare uncompressed", vec![reason], false),
    ];
    let mut seen = Vec::new();
    for (name, payload, compress) in forms {
        let (mut link, _) = match ctx.open().await {
            Ok(x) => x,
            Err(e) => return fail(format!("{name}: {e}")),
        };
        let sent = if compress && link.snappy {
            let data = match Snappy::new().compress(&payload) {
                Ok(d) => d.to_vec(),
                Err(e) => return fail(e),
            };
            link.send_raw(DISCONNECT, &data).await
        } else if compress {
            continue;
        } else {
            link.send_raw(DISCONNECT, &payload).await
        };
        if let Err(e) = sent {
            return fail(format!("{name}: could not send: {e}"));
        }
        match link.closed(ctx.t()).await {
            Ok(_) => seen.push(name),
            Err(e) => return fail(format!("{name}: the remote did not leave ({e})")),
        }
    }
    ctx.pass_if_alive(format!("left after each of: {}", seen.join(", ")))
        .await
}

async fn idle_pings(ctx: &Ctx) -> (Verdict, String) {
    let (mut link, _) = match ctx.open().await {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let started = Instant::now();
    let deadline = started + ctx.cfg.idle_wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match link.read(left).await {
            Ok(msg) if msg.code == PING => {
                let _ = link.send(PONG, &[0xc0]).await;
                link.bye(DisconnectReason::DisconnectRequested).await;
                return (
                    Verdict::Pass,
                    format!("pinged after {:.1?} idle", started.elapsed()),
                );
            }
            Ok(msg) if msg.code == DISCONNECT => {
                let r = super::link::reason_of(&msg);
                return fail(format!("disconnected {:#04x} ({r}) while idle", r.code()));
            }
            Ok(_) => {}
            Err(LinkError::Timeout(..)) => {
                return (
                    Verdict::Skip,
                    format!(
                        "no ping within {:?} (raise --idle-wait above the target's ping interval)",
                        ctx.cfg.idle_wait
                    ),
                )
            }
            Err(e) => return fail(format!("link ended while idle: {e}")),
        }
    }
}
