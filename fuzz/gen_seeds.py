#!/usr/bin/env python3
"""Writes fuzz/seeds/<target>/ from the public vectors (shared/vectors/rlpx.md and
shared/vectors/discv4.md).

Usage: python3 fuzz/gen_seeds.py [path/to/rlpx.md]   (default: ../shared/vectors/rlpx.md
relative to the repository root; discv4.md is read from the same directory). The seeds are
committed; rerun only if the vectors change.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "vectors", "rlpx.md")
OUT = os.path.join(ROOT, "fuzz", "seeds")
text = open(SRC).read()


def block_after(title):
    """Hex of the first ``` block after a line starting with `title`."""
    at = text.index(title)
    start = text.index("```", at) + 3
    end = text.index("```", start)
    return bytes.fromhex("".join(text[start:end].split()))


def value(label):
    m = re.search(re.escape(label) + r"\s*[:=]\s*([0-9a-f]+)", text)
    return m.group(1)


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


for i in (1, 2, 3):
    write("ecies_auth", f"auth{i}", block_after(f"Auth{chr(0x2080 + i)} "))
    write("ecies_ack", f"ack{i}", block_after(f"Ack{chr(0x2080 + i)} "))

frames = {}
for label in ("A→B frame #1", "A→B frame #2"):
    frames[label] = bytes.fromhex(value(label))
both = frames["A→B frame #1"] + frames["A→B frame #2"]
for ctl in (0x3F, 0x0F, 0x00, 0xBF):
    write("frame_open", f"a_to_b_ctl{ctl:02x}", bytes([ctl]) + both)

write("hello", "eip8_hello", block_after("### A.3"))

for name, label in (("ping", "Ping"), ("pong", "Pong")):
    m = re.search(label + r" `([0-9a-f ]+)`", text)
    write("message_snappy", name, bytes.fromhex(m.group(1).replace(" ", "")))

disc = re.search(r"Disconnect frame-data that must decode.*?:\s*`([0-9a-f ]+)`", text, re.S)
for i, item in enumerate(disc.group(1).split()):
    data = bytes.fromhex(item)
    write("disconnect", f"d{i:02d}", data[1:])  # without the message id
    write("message_snappy", f"disconnect{i:02d}", data)

pub_a = value("pubA    ")
for i, url in enumerate((
    f"enode://{pub_a}@127.0.0.1:30303",
    f"enode://{pub_a}@10.3.58.6:30303?discport=30301",
    f"enode://{pub_a}@[::1]:30303",
)):
    write("enode", f"e{i}", url.encode())

for name in ("Static Key A", "Static Key B", "Ephemeral Key A"):
    write("nodekey", name.replace(" ", "_").lower(), value(name).encode())
write("nodekey", "with_newline", (value("Static Key A") + "\n").encode())

# Bitcoin: no bitcoin vectors in rlpx.md; well-known mainnet frames and tiny payloads.
verack = bytes.fromhex("f9beb4d9" + "76657261636b000000000000" + "00000000" + "5df6e0e2")
write("btc_frame", "verack", verack)
write("btc_message", "verack", bytes([1, 7]))
write("btc_message", "ping", bytes([2, 7]) + bytes(range(8)))
write("btc_message", "inv1", bytes([7, 7, 1, 1, 0, 0, 0]) + bytes(32))
write("btc_message", "feefilter", bytes([17, 7]) + (1000).to_bytes(8, "little"))
# discv4: the four EIP-8 test packets, one seed each.
discv4 = open(os.path.join(os.path.dirname(SRC), "discv4.md")).read()
for i, name in enumerate(("ping", "ping_enr_seq", "find_node", "neighbors"), start=1):
    at = discv4.index(f"## {i}. ")
    start = discv4.index("```", at) + 3
    end = discv4.index("```", start)
    write("discv4_packet", name, bytes.fromhex("".join(discv4[start:end].split())))
print("seeds written to", OUT)
