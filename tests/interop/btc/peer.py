#!/usr/bin/env python3
"""A scriptable Bitcoin P2P peer built on Bitcoin Core's functional test framework.

The framework comes from the PyPI package `verystable` (Core v28's `test_framework`,
repackaged). This script drives one `P2PInterface` on the framework's single
`NetworkThread`, over v1 framing with the regtest magic, on loopback.

Protocol (one JSON object per line):

* stdout carries events only: `listening`, `connected`, `recv`, `sent`, `error`,
  `disconnected`. Anything the framework prints or logs goes to stderr.
* stdin carries commands (`{"cmd": ...}`); the process exits when stdin closes or on
  `{"cmd":"quit"}`.

Hash convention: hashes in commands and events are hex in Bitcoin Core's *display* order
(the RPC/explorer order: the 32 wire bytes reversed). Events that carry hashes also carry
the same list in wire order under a `*_wire` key. Commands accept `"order":"wire"` to give
hashes in wire order instead.

See the module `tests/support/verystable.rs` for the Rust side that spawns this script.
"""

import argparse
import asyncio
import ipaddress
import json
import logging
import sys
import threading
import time
from io import BytesIO

# The framework print()s diagnostics (e.g. "ERROR delivering ..."); keep stdout for JSON.
JSON_OUT = sys.stdout
sys.stdout = sys.stderr

from verystable.core import messages as vmessages  # noqa: E402
from verystable.core import p2p as vp2p  # noqa: E402
from verystable.core import v2_p2p as vv2  # noqa: E402
from verystable.core.messages import (  # noqa: E402
    CAddress,
    CBlock,
    CBlockHeader,
    CInv,
    CTransaction,
    deser_string,
    msg_addr,
    msg_addrv2,
    msg_getblocks,
    msg_getdata,
    msg_getheaders,
    msg_headers,
    msg_inv,
    msg_notfound,
    msg_ping,
    msg_pong,
    msg_sendheaders,
)

LOG = logging.getLogger("peer.py")
LOOPBACK = "127.0.0.1"
MAX_U64 = (1 << 64) - 1
MAX_U32 = (1 << 32) - 1
# Core's MAX_PROTOCOL_MESSAGE_LENGTH: refuse to build anything a real node would drop unread.
MAX_PAYLOAD = 4_000_000

_out_lock = threading.Lock()


def emit(event):
    """Write one event line to stdout (called from the network thread and the main thread)."""
    line = json.dumps(event, separators=(",", ":"))
    with _out_lock:
        try:
            JSON_OUT.write(line + "\n")
            JSON_OUT.flush()
        except (BrokenPipeError, ValueError, OSError):
            # The reader went away; stdin will close too and the main loop exits.
            pass


# ---------------------------------------------------------------------------------------
# Hash helpers. verystable keeps 256-bit hashes as Python ints decoded little-endian from
# the wire, so "%064x" of the int is Core's display order.


def display_hex(h):
    return "%064x" % h


def wire_hex(h):
    return h.to_bytes(32, "little").hex()


def parse_hash(text, order):
    raw = bytes.fromhex(text)
    if len(raw) != 32:
        raise ValueError("hash must be 32 bytes (64 hex chars), got %d bytes" % len(raw))
    return int.from_bytes(raw, "big" if order == "display" else "little")


def inv_lists(vec):
    return (
        [[i.type, display_hex(i.hash)] for i in vec],
        [[i.type, wire_hex(i.hash)] for i in vec],
    )


# ---------------------------------------------------------------------------------------
# Tolerance for commands the framework does not know.


class msg_unknown:
    """Any message whose command is not in the framework's MESSAGEMAP (e.g. BIP61 `reject`).

    The framework raises on unknown commands and drops the connection; this keeps the raw
    payload so it can be reported instead."""

    __slots__ = ("msgtype", "data")

    def __init__(self, msgtype):
        self.msgtype = msgtype
        self.data = b""

    def deserialize(self, f):
        self.data = f.read()

    def serialize(self):
        return self.data

    def __repr__(self):
        return "msg_unknown(%r, %d bytes)" % (self.msgtype, len(self.data))


class TolerantMessageMap(dict):
    """MESSAGEMAP replacement that maps every unknown command to `msg_unknown`."""

    def __contains__(self, key):
        return True

    def __missing__(self, key):
        return lambda: msg_unknown(key)


class msg_raw:
    """An outgoing message with a caller-chosen command and payload bytes.

    (verystable's `msg_generic` cannot be used: its `__slots__` lacks `msgtype`.)"""

    __slots__ = ("msgtype", "data")

    def __init__(self, msgtype, data):
        self.msgtype = msgtype
        self.data = data

    def serialize(self):
        return self.data

    def __repr__(self):
        return "msg_raw(%r, %d bytes)" % (self.msgtype, len(self.data))


def install_tolerance(strict_unknown):
    if strict_unknown:
        # Core's own behaviour for everything except `reject`, which btcd-style peers send.
        vp2p.MESSAGEMAP[b"reject"] = lambda: msg_unknown(b"reject")
    else:
        vp2p.MESSAGEMAP = TolerantMessageMap(vp2p.MESSAGEMAP)


def install_input_guards():
    """Make the framework's vector decoders refuse counts the payload cannot hold.

    Upstream loops `count` times even when the payload is exhausted (short reads yield
    zeros), so one bogus CompactSize like 0xffffffff would spin and eat memory for hours.
    Every vector element takes at least one byte, so a count above the bytes left is
    malformed; raising makes the framework drop the link, as Core would."""

    def guarded(orig, min_item):
        def wrapper(f, *args, **kwargs):
            if not (hasattr(f, "tell") and hasattr(f, "seek")):
                return orig(f, *args, **kwargs)
            start = f.tell()
            count = vmessages.deser_compact_size(f)
            after = f.tell()
            end = f.seek(0, 2)
            f.seek(start)
            if count * min_item > end - after:
                raise ValueError("vector count %d exceeds the %d payload bytes left" % (count, end - after))
            return orig(f, *args, **kwargs)
        return wrapper

    vmessages.deser_vector = guarded(vmessages.deser_vector, 1)
    vmessages.deser_uint256_vector = guarded(vmessages.deser_uint256_vector, 32)
    vmessages.deser_string_vector = guarded(vmessages.deser_string_vector, 1)


def decode_reject(data):
    """Best-effort BIP61 decode; the payload may be anything."""
    out = {}
    try:
        f = BytesIO(data)
        out["message"] = deser_string(f).decode("utf-8", "replace")
        code = f.read(1)
        if len(code) != 1:
            raise ValueError("truncated reject")
        out["code"] = code[0]
        out["reason"] = deser_string(f).decode("utf-8", "replace")
        extra = f.read()
        if extra:
            out["data"] = extra.hex()
            if len(extra) == 32:
                out["hash"] = extra[::-1].hex()
    except Exception as e:  # noqa: BLE001 - report whatever could be decoded
        out["decode_error"] = str(e)
    return out


# ---------------------------------------------------------------------------------------
# Received message -> event.


def addr_json(a):
    return {"ip": a.ip, "port": a.port, "services": a.nServices}


def recv_fields(m):
    """The useful fields of a received message (everything hex in display order + wire)."""
    cmd = m.msgtype.decode("ascii", "replace")
    if isinstance(m, msg_unknown):
        fields = {"unknown": True, "payload": m.data.hex()}
        if cmd == "reject":
            fields.update(decode_reject(m.data))
        return fields
    if cmd == "version":
        return {
            "nVersion": m.nVersion,
            "nServices": m.nServices,
            "nTime": m.nTime,
            "addrTo": addr_json(m.addrTo),
            "addrFrom": addr_json(m.addrFrom),
            "nNonce": m.nNonce,
            "strSubVer": m.strSubVer,
            "nStartingHeight": m.nStartingHeight,
            "relay": m.relay,
        }
    if cmd in ("ping", "pong"):
        return {"nonce": m.nonce}
    if cmd in ("inv", "getdata", "notfound"):
        vec = m.vec if cmd == "notfound" else m.inv
        disp, wire = inv_lists(vec)
        return {"inv": disp, "inv_wire": wire}
    if cmd in ("addr", "addrv2"):
        return {
            "addrs": [[a.ip, a.port, a.nServices, a.time] for a in m.addrs],
            "nets": [a.net for a in m.addrs],
        }
    if cmd in ("getheaders", "getblocks"):
        return {
            "locator": [display_hex(h) for h in m.locator.vHave],
            "locator_wire": [wire_hex(h) for h in m.locator.vHave],
            "stop": display_hex(m.hashstop),
            "stop_wire": wire_hex(m.hashstop),
        }
    if cmd == "headers":
        hashes = []
        for h in m.headers:
            h.rehash()
            hashes.append(h.hash)
        return {"count": len(m.headers), "hashes": hashes}
    if cmd == "tx":
        tx = m.tx
        tx.rehash()
        return {
            "txid": tx.hash,
            "wtxid": tx.getwtxid(),
            "witness": not tx.wit.is_null(),
            "hex": tx.serialize_with_witness().hex(),
        }
    if cmd == "block":
        b = m.block
        b.rehash()
        return {
            "hash": b.hash,
            "prev": display_hex(b.hashPrevBlock),
            "ntx": len(b.vtx),
        }
    if cmd == "feefilter":
        return {"feerate": m.feerate}
    if cmd == "sendcmpct":
        return {"announce": m.announce, "version": m.version}
    if cmd == "sendtxrcncl":
        return {"version": m.version, "salt": m.salt}
    return {}


# ---------------------------------------------------------------------------------------
# The peer.


class RefuseProtocol(asyncio.Protocol):
    """Closes every connection after the first one: this peer handles a single link."""

    def connection_made(self, transport):
        transport.abort()


class JsonPeer(vp2p.P2PInterface):
    """P2PInterface that reports every received message and link change as a JSON event."""

    def __init__(self, *, auto_getdata, support_addrv2, wtxidrelay):
        super().__init__(support_addrv2=support_addrv2, wtxidrelay=wtxidrelay)
        self.auto_getdata = auto_getdata
        self.server = None  # listening server, closed once a connection arrives
        self.accepted = False
        self.spare_accepts = 0  # further connections accepted after the first closes (--accept-twice)

    def protocol_factory(self):
        if self.accepted:
            if self.spare_accepts > 0 and not self.is_connected:
                # The first link closed (e.g. our v1 framing refused a v2 key): take the retry.
                self.spare_accepts -= 1
                return self
            return RefuseProtocol()
        self.accepted = True
        return self

    def connection_made(self, transport):
        peername = transport.get_extra_info("peername") or ("?", 0)
        if not self.p2p_connected_to_node:
            # Inbound: the framework only knew "0:0"; tell the version message the truth.
            self.dstaddr, self.dstport = peername[0], peername[1]
            if self.on_connection_send_msg is not None:
                self.on_connection_send_msg.addrTo.ip = peername[0]
                self.on_connection_send_msg.addrTo.port = peername[1]
            if self.server is not None and self.spare_accepts == 0:
                self.server.close()
        emit({
            "event": "connected",
            "v2": self.supports_v2_p2p,
            "direction": "outbound" if self.p2p_connected_to_node else "inbound",
            "peer": "%s:%d" % (peername[0], peername[1]),
        })
        super().connection_made(transport)

    def connection_lost(self, exc):
        super().connection_lost(exc)
        emit({"event": "disconnected", "reason": None if exc is None else repr(exc)})

    def on_message(self, message):
        cmd = message.msgtype.decode("ascii", "replace")
        emit({"event": "recv", "command": cmd, "fields": recv_fields(message), "v2": self.supports_v2_p2p})
        if isinstance(message, msg_unknown):
            LOG.info("received unknown message %r (tolerated)", message)
            return
        super().on_message(message)

    def on_inv(self, message):
        if self.auto_getdata:
            super().on_inv(message)


# ---------------------------------------------------------------------------------------
# Commands from stdin -> messages.


class CommandError(Exception):
    pass


def want_int(cmd, key, lo, hi, default=None):
    v = cmd.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise CommandError("%r must be an integer in [%d, %d]" % (key, lo, hi))
    return v


def want_hex(cmd, key):
    v = cmd.get(key)
    if not isinstance(v, str):
        raise CommandError("%r must be a hex string" % key)
    try:
        raw = bytes.fromhex(v)
    except ValueError as e:
        raise CommandError("%r: %s" % (key, e)) from e
    if len(raw) > MAX_PAYLOAD:
        raise CommandError("%r: %d bytes exceeds %d" % (key, len(raw), MAX_PAYLOAD))
    return raw


def hash_order(cmd):
    order = cmd.get("order", "display")
    if order not in ("display", "wire"):
        raise CommandError("order must be 'display' or 'wire'")
    return order


def build_inv(cmd):
    items = cmd.get("items")
    if not isinstance(items, list):
        raise CommandError("items must be a list of [type, hash-hex]")
    order = hash_order(cmd)
    out = []
    for it in items:
        if not (isinstance(it, list) and len(it) == 2 and isinstance(it[0], int) and isinstance(it[1], str)):
            raise CommandError("bad inventory item %r" % (it,))
        if not 0 <= it[0] <= MAX_U32:
            raise CommandError("inventory type out of range: %r" % (it[0],))
        out.append(CInv(it[0], parse_hash(it[1], order)))
    return out


def build_addrs(cmd, v2):
    addrs = cmd.get("addrs")
    if not isinstance(addrs, list):
        raise CommandError("addrs must be a list of [ip, port, services, time]")
    out = []
    for entry in addrs:
        if not (isinstance(entry, list) and 3 <= len(entry) <= 4):
            raise CommandError("bad addr entry %r" % (entry,))
        a = CAddress()
        ip = ipaddress.ip_address(entry[0])
        if ip.version == 6:
            if not v2:
                raise CommandError("addr (v1) carries IPv4 only here; use addrv2")
            a.net = CAddress.NET_IPV6
        a.ip = str(ip)
        a.port = entry[1]
        a.nServices = entry[2]
        a.time = entry[3] if len(entry) == 4 else int(time.time())
        if not (0 <= a.port <= 0xFFFF and 0 <= a.nServices <= MAX_U64 and 0 <= a.time <= MAX_U32):
            raise CommandError("addr entry field out of range: %r" % (entry,))
        out.append(a)
    return out


def build_locator_msg(msg, cmd):
    order = hash_order(cmd)
    locator = cmd.get("locator", [])
    if not isinstance(locator, list):
        raise CommandError("locator must be a list of hash hex")
    msg.locator.vHave = [parse_hash(h, order) for h in locator]
    msg.hashstop = parse_hash(cmd.get("stop", "00" * 32), order)
    return msg


def parse_exact(obj, raw):
    """Deserialize and insist every byte was used (so what we report is what we send)."""
    f = BytesIO(raw)
    obj.deserialize(f)
    if f.read(1):
        raise CommandError("trailing bytes after %s" % type(obj).__name__)
    return obj


def build_message(cmd):
    """Returns (message, extra fields for the `sent` event)."""
    name = cmd.get("cmd")
    if name in ("ping", "pong"):
        nonce = want_int(cmd, "nonce", 0, MAX_U64)
        return (msg_ping if name == "ping" else msg_pong)(nonce), {"nonce": nonce}
    if name in ("inv", "getdata", "notfound"):
        inv = build_inv(cmd)
        msg = {"inv": msg_inv, "getdata": msg_getdata, "notfound": msg_notfound}[name](inv)
        return msg, {"count": len(inv)}
    if name in ("addr", "addrv2"):
        msg = msg_addrv2() if name == "addrv2" else msg_addr()
        msg.addrs = build_addrs(cmd, name == "addrv2")
        return msg, {"count": len(msg.addrs)}
    if name == "sendheaders":
        # BIP130: ask to have new blocks announced with `headers` instead of `inv`.
        return msg_sendheaders(), {}
    if name == "getheaders":
        return build_locator_msg(msg_getheaders(), cmd), {}
    if name == "getblocks":
        return build_locator_msg(msg_getblocks(), cmd), {}
    if name == "headers":
        hexes = cmd.get("headers")
        if not isinstance(hexes, list):
            raise CommandError("headers must be a list of 80-byte header hex strings")
        headers = []
        for h in hexes:
            raw = want_hex({"h": h}, "h")
            if len(raw) != 80:
                raise CommandError("a header is 80 bytes, got %d" % len(raw))
            headers.append(parse_exact(CBlockHeader(), raw))
        hashes = []
        for h in headers:
            h.rehash()
            hashes.append(h.hash)
        return msg_headers(headers), {"count": len(headers), "hashes": hashes}
    if name == "tx":
        raw = want_hex(cmd, "hex")
        tx = parse_exact(CTransaction(), raw)
        tx.rehash()
        # Send the caller's bytes verbatim: re-serialising could normalise them.
        return msg_raw(b"tx", raw), {"txid": tx.hash, "wtxid": tx.getwtxid()}
    if name == "block":
        raw = want_hex(cmd, "hex")
        block = parse_exact(CBlock(), raw)
        block.rehash()
        return msg_raw(b"block", raw), {"hash": block.hash, "ntx": len(block.vtx)}
    if name == "raw":
        command = cmd.get("command")
        if not isinstance(command, str) or not command.isascii() or not 0 < len(command) <= 12:
            raise CommandError("command must be 1..12 ASCII characters")
        payload = want_hex(cmd, "payload") if "payload" in cmd else b""
        return msg_raw(command.encode("ascii"), payload), {"len": len(payload)}
    raise CommandError("unknown cmd %r" % (name,))


def handle_command(peer, cmd):
    """Returns False when the process should exit."""
    if not isinstance(cmd, dict):
        raise CommandError("a command is a JSON object")
    name = cmd.get("cmd")
    if name == "quit":
        return False
    if name == "disconnect":
        peer.peer_disconnect()
        return True
    msg, extra = build_message(cmd)
    if not peer.is_connected:
        raise CommandError("not connected")
    peer.send_message(msg)
    event = {"event": "sent", "command": msg.msgtype.decode("ascii")}
    event.update(extra)
    if "id" in cmd:
        event["id"] = cmd["id"]
    emit(event)
    return True


# ---------------------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dial", metavar="HOST:PORT", help="connect out (Core's framework as the inbound-to-node side)")
    mode.add_argument("--listen", metavar="PORT", type=int, help="accept one connection on 127.0.0.1:PORT (0 = any free port)")
    ap.add_argument("--host", default=LOOPBACK,
                    help="address --listen binds (default 127.0.0.1; another one inside a test's network namespace)")
    ap.add_argument("--services", type=int, default=vp2p.P2P_SERVICES, help="nServices in our version (default NETWORK|WITNESS)")
    ap.add_argument("--subver", default=vp2p.P2P_SUBVERSION, help="strSubVer in our version")
    ap.add_argument("--start-height", type=int, default=-1, help="nStartingHeight in our version")
    ap.add_argument("--no-addrv2", action="store_true", help="do not send sendaddrv2 in the handshake")
    ap.add_argument("--no-wtxidrelay", action="store_true", help="do not send wtxidrelay in the handshake")
    ap.add_argument("--no-auto-getdata", action="store_true", help="do not answer inv with getdata")
    ap.add_argument("--strict-unknown", action="store_true",
                    help="like Core's framework, drop the link on unknown commands (reject stays tolerated)")
    ap.add_argument("--v2", action="store_true",
                    help="BIP324: dial with a v2 handshake; when listening, accept v2 or v1 (detected like Core)")
    ap.add_argument("--accept-twice", action="store_true",
                    help="when listening, accept a second connection after the first closes (v1 retry after a failed v2 attempt)")
    ap.add_argument("--connect-timeout", type=float, default=10.0, help="seconds for dial/bind")
    ap.add_argument("-v", "--verbose", action="store_true", help="framework debug logs on stderr")
    return ap.parse_args(argv)


def fail(message):
    emit({"event": "error", "message": message})
    return 1


def main(argv):
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    install_tolerance(args.strict_unknown)
    install_input_guards()

    net = vp2p.NetworkThread()
    net.start()
    loop = vp2p.NetworkThread.network_event_loop
    peer = JsonPeer(auto_getdata=not args.no_auto_getdata, support_addrv2=not args.no_addrv2,
                    wtxidrelay=not args.no_wtxidrelay)

    try:
        if args.dial is not None:
            host, _, port_text = args.dial.rpartition(":")
            try:
                port = int(port_text)
            except ValueError:
                return fail("--dial wants HOST:PORT")
            peer.p2p_connected_to_node = True
            peer.peer_connect_helper(host, port, "regtest", 1)
            if args.v2:
                peer.v2_state = vv2.EncryptedP2PState(initiating=True, net="regtest")
        else:
            host, port = args.host, args.listen
            peer.p2p_connected_to_node = False
            peer.peer_connect_helper("0", 0, "regtest", 1)
            if args.v2:
                # Responder: falls back to v1 when the first 16 bytes are magic + "version".
                peer.v2_state = vv2.EncryptedP2PState(initiating=False, net="regtest")
            if args.accept_twice:
                peer.spare_accepts = 1
        peer.peer_connect_send_version(args.services)
        version = peer.on_connection_send_msg
        version.strSubVer = args.subver
        version.nStartingHeight = args.start_height

        if args.dial is not None:
            fut = asyncio.run_coroutine_threadsafe(
                loop.create_connection(lambda: peer, host=host, port=port), loop)
            try:
                fut.result(timeout=args.connect_timeout)
            except Exception as e:  # noqa: BLE001 - report any connect failure as an event
                fut.cancel()
                return fail("dial %s:%d failed: %r" % (host, port, e))
        else:
            fut = asyncio.run_coroutine_threadsafe(
                loop.create_server(peer.protocol_factory, host=host, port=port), loop)
            try:
                peer.server = fut.result(timeout=args.connect_timeout)
            except Exception as e:  # noqa: BLE001
                fut.cancel()
                return fail("listen on %s:%d failed: %r" % (host, port, e))
            emit({"event": "listening", "port": peer.server.sockets[0].getsockname()[1]})

        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            cmd = None
            try:
                cmd = json.loads(line)
                if not handle_command(peer, cmd):
                    break
            except Exception as e:  # noqa: BLE001 - a bad command must not kill the peer
                event = {"event": "error", "message": str(e) or repr(e)}
                if isinstance(cmd, dict) and "id" in cmd:
                    event["id"] = cmd["id"]
                emit(event)
        return 0
    finally:
        shutdown(peer, net)


def shutdown(peer, net):
    """Close the link (so the remote sees a clean FIN/RST) and stop the network thread."""
    loop = vp2p.NetworkThread.network_event_loop
    if peer.server is not None:
        # asyncio objects belong to the network thread.
        loop.call_soon_threadsafe(peer.server.close)
    if peer.is_connected:
        peer.peer_disconnect()
        deadline = time.monotonic() + 2.0
        while peer.is_connected and time.monotonic() < deadline:
            time.sleep(0.02)
    try:
        net.close(timeout=5)
    except Exception as e:  # noqa: BLE001 - exiting anyway
        LOG.warning("network thread did not close cleanly: %r", e)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
