#!/usr/bin/env node
// A scriptable discv4 node built on @ethereumjs/devp2p's DPT, used by braid's discovery
// interop tests (tests/interop_discv4.rs). Same conventions as peer.mjs:
//   stdout: one JSON event per line (the only thing ever written to stdout)
//   stdin:  one JSON command per line; closing stdin shuts the node down
//   stderr: human logs (set DEBUG=devp2p*,ethjs for ethjs' own traces)
//
// It binds 127.0.0.1 only, never asks DNS for peers, and refreshes quickly (every
// --refresh ms each known peer gets one findneighbours) so tests stay short.
//
// Usage:
//   node dpt.mjs --key <64 hex> [--refresh <ms>] [--timeout <ms>]
//
// Events:
//   {"event":"listening","port":N,"id":"<128 hex>","enode":"enode://<id>@127.0.0.1:N"}
//   {"event":"peer_added","id":"<128 hex>","address":S,"udpPort":N|null,"tcpPort":N|null}
//   {"event":"peer_removed","id":"<128 hex>"}
//   {"event":"bootstrapped","enode":S}       after the bootstrap node answered a ping
//   {"event":"peers","peers":[{"id","address","udpPort","tcpPort"}]}   answer to "peers"
//   {"event":"error","message":S}             ethjs errors (e.g. packet types it does not
//                                             know, such as EIP-868's ENRRequest); not fatal
// Commands:
//   {"cmd":"bootstrap","enode":"enode://<id>@<ip>:<tcp>[?discport=<udp>]"}
//   {"cmd":"peers"}
//   {"cmd":"quit"}

import * as readline from 'node:readline';
import { DPT } from '@ethereumjs/devp2p';

const LOOPBACK = '127.0.0.1';

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function log(...args) {
  console.error('[ethjs-dpt]', ...args);
}

function fail(message) {
  emit({ event: 'error', message });
  log(message);
  process.exit(2);
}

/** Strict hex decoding: Buffer.from(_, 'hex') silently truncates at the first bad digit. */
function fromHex(str, bytes, what) {
  if (typeof str !== 'string' || str.length !== bytes * 2 || !/^[0-9a-fA-F]*$/.test(str)) {
    throw new Error(`${what}: expected ${bytes * 2} hex characters`);
  }
  return Uint8Array.from(Buffer.from(str, 'hex'));
}

function toHex(bytes) {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function parseEnode(url) {
  const m = /^enode:\/\/([0-9a-fA-F]{128})@([0-9.]+):(\d+)(?:\?discport=(\d+))?$/.exec(url);
  if (m === null) throw new Error(`not an IPv4 enode URL: ${url}`);
  const tcpPort = Number(m[3]);
  return {
    id: fromHex(m[1], 64, 'enode id'),
    address: m[2],
    tcpPort,
    udpPort: m[4] === undefined ? tcpPort : Number(m[4]),
  };
}

function parseArgs(argv) {
  const opts = { refresh: 1000, timeout: 1000 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const val = argv[i + 1];
    if (val === undefined) throw new Error(`${flag} needs a value`);
    switch (flag) {
      case '--key':
        opts.key = fromHex(val, 32, '--key');
        break;
      case '--refresh':
        opts.refresh = Number(val);
        break;
      case '--timeout':
        opts.timeout = Number(val);
        break;
      default:
        throw new Error(`unknown flag ${flag}`);
    }
    i++;
  }
  if (opts.key === undefined) throw new Error('--key is required');
  return opts;
}

function peerJson(peer) {
  return {
    id: peer.id === undefined ? null : toHex(peer.id),
    address: peer.address,
    udpPort: peer.udpPort ?? null,
    tcpPort: peer.tcpPort ?? null,
  };
}

function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    fail(err.message);
  }
  const endpoint = { address: LOOPBACK, udpPort: null, tcpPort: null };
  const dpt = new DPT(opts.key, {
    endpoint,
    refreshInterval: opts.refresh,
    timeout: opts.timeout,
    shouldFindNeighbours: true,
    shouldGetDnsPeers: false,
  });
  const id = toHex(dpt.id);
  dpt.events.on('error', (err) => {
    emit({ event: 'error', message: String(err?.message ?? err) });
  });
  dpt.events.on('peer:added', (peer) => emit({ event: 'peer_added', ...peerJson(peer) }));
  dpt.events.on('peer:removed', (peer) =>
    emit({ event: 'peer_removed', id: peer.id === undefined ? null : toHex(peer.id) }),
  );
  dpt.events.once('listening', () => {
    // The `from` endpoint of DPT's pings must name the port actually bound (port 0 was
    // asked for); DPT has no public setter for it.
    const port = dpt._server._socket.address().port;
    endpoint.udpPort = port;
    emit({ event: 'listening', port, id, enode: `enode://${id}@${LOOPBACK}:${port}` });
  });
  dpt.bind(0, LOOPBACK);

  let quitting = false;
  const quit = () => {
    if (quitting) return;
    quitting = true;
    try {
      dpt.destroy();
    } catch (err) {
      log('destroy:', err.message);
    }
    process.exit(0);
  };

  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  rl.on('line', (line) => {
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch {
      emit({ event: 'error', message: `bad command line: ${line}` });
      return;
    }
    switch (cmd.cmd) {
      case 'bootstrap': {
        let peer;
        try {
          peer = parseEnode(cmd.enode);
        } catch (err) {
          emit({ event: 'error', message: err.message });
          return;
        }
        dpt
          .bootstrap(peer)
          .then(() => {
            if (dpt.getPeer(peer) !== null) emit({ event: 'bootstrapped', enode: cmd.enode });
          })
          .catch((err) => emit({ event: 'error', message: String(err?.message ?? err) }));
        break;
      }
      case 'peers':
        emit({ event: 'peers', peers: dpt.getPeers().map(peerJson) });
        break;
      case 'quit':
        quit();
        break;
      default:
        emit({ event: 'error', message: `unknown command ${cmd.cmd}` });
    }
  });
  rl.on('close', quit);
  process.on('uncaughtException', (err) => fail(`uncaught: ${err?.stack ?? err}`));
  process.on('unhandledRejection', (err) => fail(`unhandled rejection: ${err?.stack ?? err}`));
}

main();
