#!/usr/bin/env bash
# What the network-namespace tests (tests/netns.rs) need from the OS: iproute2 (ip netns,
# veth), nftables and miniupnpd's nftables build. Run as root. Exit 0 when everything is
# there; with CI set, missing packages are installed with apt-get first; otherwise exit 2
# naming what is missing (the tests then skip loudly).
set -euo pipefail

missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v miniupnpd >/dev/null 2>&1 || missing+=(miniupnpd-nftables)

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ -z "${CI:-}" ]; then
    echo "missing packages: ${missing[*]} (set CI to install them with apt-get)" >&2
    exit 2
fi
if [ "$(id -u)" != 0 ]; then
    echo "missing packages: ${missing[*]}, and not root to install them" >&2
    exit 1
fi
# One installer at a time, whatever runs this concurrently.
exec 9>/tmp/braid-netns-setup.lock
flock -w 600 9
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
command -v ip >/dev/null && command -v nft >/dev/null && command -v miniupnpd >/dev/null
