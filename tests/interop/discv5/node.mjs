#!/usr/bin/env node
// A scriptable discv5 node built on @chainsafe/discv5, used by braid's discovery v5
// interop tests (tests/interop_discv5.rs). Same conventions as ../ethjs/peer.mjs:
//   stdout: one JSON event per line (the only thing ever written to stdout)
//   stdin:  one JSON command per line; closing stdin shuts the node down
//   stderr: human logs
//
// It binds the given loopback IP only and never contacts a node it was not told about.
// Its record carries ip, udp, tcp and a custom entry `jsk` (the bytes of "chainsafe"), so
// braid can check a foreign record field by field.
//
// Usage:
//   node node.mjs --ip 127.0.x.y [--tcp <port>]
//
// Records are described as
//   {"enr":"enr:…","nodeId":"<64 hex>","publicKey":"<66 hex, compressed>","seq":"<decimal>",
//    "ip":S|null,"udp":N|null,"tcp":N|null,"braid":[["name",version],…]|null,"braidError":S|null}
//
// Events (`req` echoes the command's `req`):
//   {"event":"listening","record":<record>}
//   {"event":"pong","req":R,"enrSeq":"<decimal>","addr":{"ip":S,"port":N}}
//   {"event":"nodes","req":R,"records":[<record>…]}       answer to findnode and lookup
//   {"event":"table","req":R,"records":[<record>…]}       answer to table
//   {"event":"added","req":R}                               answer to add
//   {"event":"enr_added","record":<record>}                 a node entered the table
//   {"event":"error","req":R|null,"message":S}              a command failed (not fatal)
// Commands:
//   {"cmd":"add","req":R,"enr":"enr:…"}
//   {"cmd":"ping","req":R,"enr":"enr:…"}
//   {"cmd":"findnode","req":R,"enr":"enr:…","distances":[N…]}
//   {"cmd":"lookup","req":R,"target":"<64 hex node id>"}
//   {"cmd":"table","req":R}
//   {"cmd":"quit"}

import * as dgram from 'node:dgram';
import * as readline from 'node:readline';
import { Discv5 } from '@chainsafe/discv5';
import { ENR, SignableENR } from '@chainsafe/enr';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { multiaddr } from '@multiformats/multiaddr';

const CUSTOM_KEY = 'jsk';
const CUSTOM_VALUE = 'chainsafe';

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function log(...args) {
  console.error('[chainsafe-discv5]', ...args);
}

function fail(message) {
  emit({ event: 'error', req: null, message });
  log(message);
  process.exit(2);
}

function toHex(bytes) {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function parseArgs(argv) {
  const opts = { tcp: undefined };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, val] = [argv[i], argv[i + 1]];
    if (val === undefined) throw new Error(`${flag} needs a value`);
    if (flag === '--ip') opts.ip = val;
    else if (flag === '--tcp') opts.tcp = Number(val);
    else throw new Error(`unknown flag ${flag}`);
  }
  if (!/^127\.\d+\.\d+\.\d+$/.test(opts.ip ?? '')) throw new Error('--ip must be a 127.x.y.z address');
  return opts;
}

/** A free UDP port on `ip`: bound, read and released (the node binds it right after). */
function freePort(ip) {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(0, ip, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The braid entry, `[[name, version], …]` as RLP, decoded from the record's raw value. */
function braidCaps(enr) {
  const raw = enr.kvs.get('braid');
  if (raw === undefined) return { braid: null, braidError: null };
  if (!Array.isArray(raw)) return { braid: null, braidError: 'not a list' };
  const caps = [];
  for (const item of raw) {
    if (!Array.isArray(item) || item.length !== 2 || Array.isArray(item[0]) || Array.isArray(item[1])) {
      return { braid: null, braidError: 'an entry is not [name, version]' };
    }
    const version = item[1].length === 0 ? 0 : Number(BigInt(`0x${toHex(item[1])}`));
    caps.push([Buffer.from(item[0]).toString('utf8'), version]);
  }
  return { braid: caps, braidError: null };
}

function describe(enr) {
  const custom = enr.kvs.get(CUSTOM_KEY);
  return {
    enr: enr.encodeTxt(),
    nodeId: enr.nodeId,
    publicKey: toHex(enr.publicKey),
    seq: enr.seq.toString(),
    ip: enr.ip ?? null,
    udp: enr.udp ?? null,
    tcp: enr.tcp ?? null,
    custom: custom instanceof Uint8Array ? Buffer.from(custom).toString('utf8') : null,
    ...braidCaps(enr),
  };
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    fail(err.message);
  }
  const privateKey = await generateKeyPair('secp256k1');
  const port = await freePort(opts.ip);
  const enr = SignableENR.createFromPrivateKey(privateKey);
  enr.ip = opts.ip;
  enr.udp = port;
  if (opts.tcp !== undefined) enr.tcp = opts.tcp;
  enr.set(CUSTOM_KEY, Buffer.from(CUSTOM_VALUE, 'utf8'));
  const discv5 = Discv5.create({
    enr,
    privateKey,
    bindAddrs: { ip4: multiaddr(`/ip4/${opts.ip}/udp/${port}`) },
    // Loopback peers are all there is: do not let address votes rewrite the record.
    config: { enrUpdate: false, requestTimeout: 1000, lookupTimeout: 10000 },
  });
  discv5.on('enrAdded', (added) => emit({ event: 'enr_added', record: describe(added) }));
  await discv5.start();
  emit({ event: 'listening', record: describe(discv5.enr.toENR()) });

  let quitting = false;
  const quit = async () => {
    if (quitting) return;
    quitting = true;
    try {
      await discv5.stop();
    } catch (err) {
      log('stop:', err.message);
    }
    process.exit(0);
  };

  const run = async (cmd) => {
    switch (cmd.cmd) {
      case 'add':
        discv5.addEnr(cmd.enr);
        return { event: 'added' };
      case 'ping': {
        const pong = await discv5.sendPing(ENR.decodeTxt(cmd.enr));
        // The address braid saw our packets come from (IPv4 octets as a dotted string).
        const ip = pong.addr.ip.type === 4 ? Array.from(pong.addr.ip.octets).join('.') : null;
        return { event: 'pong', enrSeq: pong.enrSeq.toString(), addr: { ip, port: pong.addr.port } };
      }
      case 'findnode': {
        const enrs = await discv5.sendFindNode(ENR.decodeTxt(cmd.enr), cmd.distances);
        return { event: 'nodes', records: enrs.map(describe) };
      }
      case 'lookup': {
        const enrs = await discv5.findNode(cmd.target);
        return { event: 'nodes', records: enrs.map(describe) };
      }
      case 'table':
        return { event: 'table', records: discv5.kadValues().map(describe) };
      case 'quit':
        await quit();
        return null;
      default:
        throw new Error(`unknown command ${cmd.cmd}`);
    }
  };

  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  rl.on('line', (line) => {
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch {
      emit({ event: 'error', req: null, message: `bad command line: ${line}` });
      return;
    }
    const req = cmd.req ?? null;
    run(cmd)
      .then((answer) => answer && emit({ ...answer, req }))
      .catch((err) => emit({ event: 'error', req, message: String(err?.message ?? err) }));
  });
  rl.on('close', quit);
  process.on('uncaughtException', (err) => fail(`uncaught: ${err?.stack ?? err}`));
  process.on('unhandledRejection', (err) => fail(`unhandled rejection: ${err?.stack ?? err}`));
}

main().catch((err) => fail(`start: ${err?.stack ?? err}`));
