#!/usr/bin/env node
// A scriptable RLPx peer built on @ethereumjs/devp2p, used by braid's interop tests.
//
// It speaks only on 127.0.0.1, never starts discovery (no DPT), and is driven line by line:
//   stdout: one JSON event per line (the only thing ever written to stdout)
//   stdin:  one JSON command per line; closing stdin shuts the peer down
//   stderr: human logs (set DEBUG=devp2p*,ethjs for ethjs' own traces)
//
// Setup: `npm ci` in this directory (tests/support/ethjs.rs does it once per test process and stamps
// node_modules/.braid-install-stamp with the package-lock.json it installed). Pinned:
// @ethereumjs/devp2p 10.0.0; snappyjs 0.7.0 (same version devp2p uses) for sub-protocol payloads.
//
// Usage:
//   node peer.mjs --key <64 hex> [--listen <port>] [--dial <enode url>]... \
//                 --cap chat/1/2 [--cap kv/1/4]...
//
// Events (every listed field is always present, except the optional "id" of "error"):
//   {"event":"listening","port":N,"id":"<128 hex>","enode":"enode://<id>@127.0.0.1:N"}
//   {"event":"peer_added","id","remote","dialed","protocolVersion","snappy","client","port",
//    "caps":[{"name","version"}],"offsets":{"<cap>":N},"shared":[{"name","version","offset","length"}]}
//   {"event":"message","id","cap","version","code","payload":"<hex>"}
//   {"event":"peer_removed","id","reason":N|null,"reasonName":S|null,"disconnectWe":bool|null}
//   {"event":"socket_closed","remote","handshake":bool}   any TCP link ending, Hello done or not
//   ("snappy" is ethjs' own rule: remote Hello version >= 5; "offsets"/"shared" come from the
//    private Peer._protocols; reason is null when the link closed without a DISCONNECT)
//   {"event":"error","message", optional "id"}
// Commands (optional "id" selects one peer by its 128-hex node id; default: every connected peer):
//   {"cmd":"send","cap":"chat","code":1,"payload":"<hex>"}   code is relative to the capability
//   {"cmd":"send_raw","code":N,"payload":"<hex>","compress":bool}  absolute msg-id, no range check;
//       "compress" defaults to the negotiated snappy state (for negative tests of the other side)
//   {"cmd":"disconnect","reason":8}
//   {"cmd":"quit"}

import * as readline from 'node:readline';
import { DisconnectReasonNames, RLPx } from '@ethereumjs/devp2p';
import * as snappy from 'snappyjs';

const LOOPBACK = '127.0.0.1';
/** How long "quit" waits for DISCONNECT frames to flush before exiting. */
const QUIT_FLUSH_MS = 1000;
/** ethjs' own per-connection timeout (dial, ping); kept explicit so tests can reason about it. */
const RLPX_TIMEOUT_MS = 10000;

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function log(...args) {
  console.error('[ethjs-peer]', ...args);
}

function fail(message) {
  emit({ event: 'error', message });
  log(message);
  process.exit(2);
}

function toHex(bytes) {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Strict hex decoding: Buffer.from(_, 'hex') silently truncates at the first bad digit. */
function fromHex(str, what) {
  if (typeof str !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(str)) {
    throw new Error(`${what} must be an even-length hex string`);
  }
  return Uint8Array.from(Buffer.from(str, 'hex'));
}

function parsePort(str, what) {
  const n = Number(str);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`bad ${what}: ${str}`);
  return n;
}

/** `name/version/length`, e.g. `chat/1/2`. */
function parseCap(spec) {
  const parts = spec.split('/');
  if (parts.length !== 3 || parts[0].length === 0) throw new Error(`bad --cap ${spec}`);
  const [name, v, l] = parts;
  const version = Number(v);
  const length = Number(l);
  if (!Number.isInteger(version) || version < 0 || !Number.isInteger(length) || length < 1) {
    throw new Error(`bad --cap ${spec} (want name/version/length)`);
  }
  return { name, version, length };
}

/** `enode://<128 hex>@127.0.0.1:<port>`; anything but loopback is refused. */
function parseEnode(url) {
  const m = /^enode:\/\/([0-9a-fA-F]{128})@([^:/?]+):(\d+)(\?.*)?$/.exec(url);
  if (!m) throw new Error(`bad enode url: ${url}`);
  if (m[2] !== LOOPBACK) throw new Error(`refusing non-loopback dial target ${m[2]}`);
  return { id: fromHex(m[1], 'enode id'), address: LOOPBACK, tcpPort: parsePort(m[3], 'port') };
}

function parseArgs(argv) {
  const opts = { key: null, listen: null, dial: [], caps: [] };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const val = argv[i + 1];
    if (val === undefined) throw new Error(`missing value for ${flag}`);
    i++;
    switch (flag) {
      case '--key':
        opts.key = fromHex(val, '--key');
        if (opts.key.length !== 32) throw new Error('--key must be 32 bytes');
        break;
      case '--listen':
        opts.listen = parsePort(val, '--listen');
        break;
      case '--dial':
        opts.dial.push(parseEnode(val));
        break;
      case '--cap':
        opts.caps.push(parseCap(val));
        break;
      default:
        throw new Error(`unknown flag ${flag}`);
    }
  }
  if (opts.key === null) throw new Error('--key is required');
  if (opts.caps.length === 0) throw new Error('at least one --cap is required');
  return opts;
}

/**
 * Builds the class ethjs instantiates per shared capability as `new C(version, peer, send)`.
 * Deliberately NOT a subclass of ethjs' `Protocol`: that base arms a 5 s STATUS timer that
 * disconnects with TIMEOUT, which suits `eth` but not an arbitrary raw-bytes protocol.
 * ethjs calls `_handleMessage(code, payload)` with `code` relative to the offset and
 * `payload` already snappy-decompressed (when the remote Hello version is >= 5).
 */
function makeCapClass(name) {
  return class RawCapability {
    constructor(version, peer, send) {
      this.name = name;
      this.version = version;
      this._peer = peer;
      this._send = send;
    }

    _handleMessage(code, payload) {
      emit({
        event: 'message',
        id: toHex(this._peer.getId()),
        cap: this.name,
        version: this.version,
        code,
        payload: toHex(payload),
      });
    }

    /** ethjs leaves compression of sub-protocol payloads to the sub-protocol (see its `ETH`). */
    send(code, payload) {
      this._send(code, maybeCompress(this._peer, payload));
    }
  };
}

/** Snappy is on exactly when the remote Hello version is >= 5: the rule ethjs applies on receive. */
function snappyOn(peer) {
  const hello = peer.getHelloMessage();
  return hello !== null && hello.protocolVersion >= 5;
}

function maybeCompress(peer, payload) {
  return snappyOn(peer) ? snappy.compress(payload) : payload;
}

/** Shared capabilities with their message-id offsets; ethjs keeps them in the private `_protocols`. */
function sharedCaps(peer) {
  return (peer._protocols ?? []).map((p) => ({
    name: p.protocol.name,
    version: p.protocol.version,
    offset: p.offset,
    length: p.length,
  }));
}

/** Sockets whose Hello exchange completed (ethjs emitted `peer:added` for them). */
const handshaken = new WeakSet();

/** Wraps `_onConnect` to report every TCP connection's end, even one that never finished Hello. */
class ObservedRLPx extends RLPx {
  _onConnect(socket, peerId) {
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.once('close', () => {
      emit({ event: 'socket_closed', remote, handshake: handshaken.has(socket) });
    });
    super._onConnect(socket, peerId);
  }
}

function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    fail(err.message);
  }

  const capabilities = opts.caps.map((c) => ({ ...c, constructor: makeCapClass(c.name) }));
  const rlpx = new ObservedRLPx(opts.key, {
    capabilities,
    maxPeers: 25,
    timeout: RLPX_TIMEOUT_MS,
    listenPort: opts.listen,
  });
  const selfId = toHex(rlpx.id);
  const dialed = new Set(opts.dial.map((d) => toHex(d.id)));

  rlpx.events.on('error', (err) => emit({ event: 'error', message: `rlpx: ${err.message ?? err}` }));
  rlpx.events.on('peer:error', (peer, err) => {
    const id = peer.getId();
    emit({
      event: 'error',
      ...(id ? { id: toHex(id) } : {}),
      message: `peer: ${err?.message ?? err}`,
    });
  });
  rlpx.events.on('peer:added', (peer) => {
    handshaken.add(peer._socket);
    const hello = peer.getHelloMessage();
    const id = toHex(peer.getId());
    const shared = sharedCaps(peer);
    emit({
      event: 'peer_added',
      id,
      remote: `${peer._socket.remoteAddress}:${peer._socket.remotePort}`,
      dialed: dialed.has(id),
      protocolVersion: hello.protocolVersion,
      snappy: snappyOn(peer),
      client: hello.clientId,
      port: hello.port,
      caps: hello.capabilities,
      offsets: Object.fromEntries(shared.map((c) => [c.name, c.offset])),
      shared,
    });
  });
  rlpx.events.on('peer:removed', (peer, reason, disconnectWe) => {
    const known = typeof reason === 'number';
    emit({
      event: 'peer_removed',
      id: toHex(peer.getId()),
      reason: known ? reason : null,
      reasonName: known ? (DisconnectReasonNames[reason] ?? null) : null,
      disconnectWe: typeof disconnectWe === 'boolean' ? disconnectWe : null,
    });
  });

  if (opts.listen !== null) {
    rlpx.events.once('listening', () => {
      const port = rlpx._server.address().port;
      // The Hello carries the listen port; with --listen 0 it is known only now.
      rlpx._listenPort = port;
      emit({ event: 'listening', port, id: selfId, enode: `enode://${selfId}@${LOOPBACK}:${port}` });
    });
    rlpx.listen(opts.listen, LOOPBACK);
  }

  for (const target of opts.dial) {
    rlpx.connect(target).catch((err) => {
      emit({
        event: 'error',
        id: toHex(target.id),
        message: `dial ${target.address}:${target.tcpPort}: ${err?.message ?? err}`,
      });
    });
  }

  let quitting = false;
  const quit = () => {
    if (quitting) return;
    quitting = true;
    const sockets = rlpx.getPeers().map((p) => p._socket);
    // destroy() sends DISCONNECT(CLIENT_QUITTING) to every peer; ethjs would only close the
    // sockets 2 s later, so end them now (end() flushes the frame first) and exit once closed.
    try {
      rlpx.destroy();
    } catch (err) {
      log(`destroy: ${err.message}`);
    }
    for (const s of sockets) s.end();
    const open = sockets.filter((s) => !s.closed);
    const timer = setTimeout(() => process.exit(0), QUIT_FLUSH_MS);
    if (open.length === 0) {
      clearTimeout(timer);
      process.exit(0);
    }
    let left = open.length;
    for (const s of open) {
      s.once('close', () => {
        left -= 1;
        if (left === 0) {
          clearTimeout(timer);
          process.exit(0);
        }
      });
    }
  };

  const pick = (cmd) => {
    const peers = rlpx.getPeers();
    if (cmd.id === undefined) return peers;
    return peers.filter((p) => toHex(p.getId()) === String(cmd.id).toLowerCase());
  };

  const handle = (cmd) => {
    switch (cmd.cmd) {
      case 'send': {
        if (!Number.isInteger(cmd.code) || cmd.code < 0) throw new Error('send: bad code');
        const payload = fromHex(cmd.payload ?? '', 'payload');
        const peers = pick(cmd);
        if (peers.length === 0) throw new Error('send: no matching peer');
        for (const peer of peers) {
          const entry = (peer._protocols ?? []).find((p) => p.protocol.name === cmd.cap);
          if (entry === undefined) throw new Error(`send: capability ${cmd.cap} not shared`);
          // ethjs' own check is `code > length` (off by one); keep tests honest here.
          if (cmd.code >= entry.length) throw new Error(`send: code ${cmd.code} out of range`);
          entry.protocol.send(cmd.code, payload);
        }
        break;
      }
      case 'send_raw': {
        if (!Number.isInteger(cmd.code) || cmd.code < 0) throw new Error('send_raw: bad code');
        const payload = fromHex(cmd.payload ?? '', 'payload');
        const peers = pick(cmd);
        if (peers.length === 0) throw new Error('send_raw: no matching peer');
        for (const peer of peers) {
          const compress = typeof cmd.compress === 'boolean' ? cmd.compress : snappyOn(peer);
          peer._sendMessage(cmd.code, compress ? snappy.compress(payload) : payload);
        }
        break;
      }
      case 'disconnect': {
        const reason = cmd.reason ?? 0;
        if (!Number.isInteger(reason) || reason < 0 || reason > 255) {
          throw new Error('disconnect: bad reason');
        }
        const peers = pick(cmd);
        if (peers.length === 0) throw new Error('disconnect: no matching peer');
        for (const peer of peers) peer.disconnect(reason);
        break;
      }
      case 'quit':
        quit();
        break;
      default:
        throw new Error(`unknown cmd ${JSON.stringify(cmd.cmd)}`);
    }
  };

  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  rl.on('line', (line) => {
    if (line.trim() === '') return;
    try {
      const cmd = JSON.parse(line);
      if (cmd === null || typeof cmd !== 'object') throw new Error('command must be an object');
      handle(cmd);
    } catch (err) {
      emit({ event: 'error', message: `command ${line}: ${err.message}` });
    }
  });
  rl.on('close', quit);

  // A test harness must hear about every failure instead of a silent hang.
  process.on('uncaughtException', (err) => {
    emit({ event: 'error', message: `uncaught: ${err?.stack ?? err}` });
  });
  process.on('unhandledRejection', (err) => {
    emit({ event: 'error', message: `unhandled rejection: ${err?.stack ?? err}` });
  });
}

main();
