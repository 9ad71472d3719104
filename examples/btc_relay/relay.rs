//! The relay loop: fetch each announced item once, announce it to every other peer.

use super::*;

/// One connected peer.
pub(super) struct Link {
    pub(super) side: Side,
    pub(super) peer: Peer,
    pub(super) serving: Serving,
}

/// Running totals for the status line.
#[derive(Default)]
pub(super) struct Totals {
    pub(super) relayed_tx: u64,
    pub(super) relayed_blocks: u64,
    pub(super) relayed_bytes: u64,
    pub(super) served: u64,
    pub(super) served_bytes: u64,
    /// Messages not queued because a peer's queue or serving backlog was full.
    pub(super) dropped: u64,
    /// Wire bytes of peers that already left (live peers are summed on demand).
    pub(super) gone_in: u64,
    pub(super) gone_out: u64,
}

/// All relay state; owned by one task, so no locks.
pub(super) struct Relay {
    /// Whose proof-of-work limit a block header is checked against.
    pub(super) network: Network,
    pub(super) peers: HashMap<u64, Link>,
    pub(super) cache: Cache,
    /// Every item fetched so far (bounded): fetched and announced once only.
    pub(super) seen: LruSet<Item>,
    /// Who announced what, and who was asked for it.
    pub(super) requests: TxRequestTracker<Item>,
    pub(super) totals: Totals,
}

impl Relay {
    pub(super) fn new(network: Network, requests: TxRequestConfig) -> Relay {
        Relay {
            network,
            peers: HashMap::new(),
            cache: Cache::default(),
            seen: LruSet::new(SEEN_ITEMS),
            requests: TxRequestTracker::new(requests),
            totals: Totals::default(),
        }
    }

    /// Handle events until Ctrl-C (or until every event sender is gone). Nothing here
    /// waits on a peer.
    pub(super) async fn run(
        &mut self,
        mut inbox: mpsc::Receiver<Event>,
        status_interval: Duration,
    ) {
        let mut status =
            tokio::time::interval_at(Instant::now() + status_interval, status_interval);
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweep = tokio::time::interval(REQUEST_TICK);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            tokio::select! {
                event = inbox.recv() => match event {
                    Some(event) => self.handle(event),
                    None => return,
                },
                _ = sweep.tick() => self.sweep(),
                _ = status.tick() => println!("status: {}", self.status()),
                _ = &mut ctrl_c => return,
            }
        }
    }

    pub(super) fn handle(&mut self, event: Event) {
        match event {
            Event::Up(side, peer) => {
                println!(
                    "+ {} peer {} ({}, version {})",
                    side.name(),
                    peer.addr(),
                    common::printable(&peer.user_agent()),
                    peer.protocol_version()
                );
                // Core prefers the peers it chose to connect to.
                self.requests.peer_connected(peer.id(), !peer.inbound());
                let serving = Serving::start(peer.clone());
                self.peers.insert(
                    peer.id(),
                    Link {
                        side,
                        peer,
                        serving,
                    },
                );
            }
            Event::Down(id) => {
                self.requests.peer_disconnected(id);
                if let Some(link) = self.peers.remove(&id) {
                    self.totals.gone_in += link.peer.bytes_received();
                    self.totals.gone_out += link.peer.bytes_sent();
                    let why = link.peer.close_reason().map(|r| r.to_string());
                    println!(
                        "- {} peer {} left: {}",
                        link.side.name(),
                        link.peer.addr(),
                        why.unwrap_or_else(|| "disconnected".into())
                    );
                }
            }
            Event::Inv(from, inv) => self.on_inv(from, &inv),
            Event::Headers(from, headers) => self.on_headers(from, &headers),
            Event::GetData(from, inv) => self.on_get_data(from, &inv),
            Event::NotFound(from, inv) => {
                // Only the items named move on to their next announcer.
                for item in inv.iter().filter_map(Item::of) {
                    self.requests.not_found(from, item);
                }
            }
            Event::Payload(from, payload) => self.on_payload(from, payload),
        }
    }

    /// An announcement: remember every item we do not have yet; the next sweep asks
    /// for it (at most [`REQUEST_TICK`] later).
    pub(super) fn on_inv(&mut self, from: u64, inv: &[InvVect]) {
        let Some(peer) = self.peers.get(&from).map(|l| l.peer.clone()) else {
            return;
        };
        let now = Instant::now();
        for item in inv.iter().filter_map(Item::of) {
            self.announced(from, &peer, item, now);
        }
    }

    /// A BIP130 announcement: each header names a block, fetched (with `getdata`, from
    /// the same request tracker) exactly like one announced by `inv`, whether or not the
    /// headers connect to each other. A header failing its own proof of work costs its
    /// sender nothing to make, so the whole message is dropped and the sender disconnected.
    pub(super) fn on_headers(&mut self, from: u64, headers: &[BlockHeader]) {
        let Some(link) = self.peers.get(&from) else {
            return;
        };
        let peer = link.peer.clone();
        if let Some(bad) = headers
            .iter()
            .find(|h| !h.check_proof_of_work(self.network))
        {
            println!(
                "! {} peer {}: header {} fails proof of work; disconnecting",
                link.side.name(),
                peer.addr(),
                bad.hash()
            );
            peer.disconnect();
            return;
        }
        let now = Instant::now();
        for header in headers {
            let item = Item {
                kind: Kind::Block,
                hash: header.hash(),
            };
            self.announced(from, &peer, item, now);
        }
    }

    /// `from` announced `item`: never announce it back there, and track it unless it was
    /// already fetched.
    pub(super) fn announced(&mut self, from: u64, peer: &Peer, item: Item, now: Instant) {
        peer.add_known_inventory(item.announcement());
        if !self.seen.contains(&item) {
            self.requests.received_inv(from, item, now);
        }
    }

    /// Move timed-out requests on, then ask every peer for what it should be asked
    /// for. A request that cannot be queued counts as failed (the next announcer will
    /// be asked).
    pub(super) fn sweep(&mut self) {
        // Announcements may wait for a delay to pass, so every tick sweeps while any are
        // tracked; a peer at its request cap costs nothing here.
        if self.requests.items() == 0 {
            return;
        }
        let now = Instant::now();
        self.requests.expire(now);
        for id in self.requests.peer_ids() {
            let Some(link) = self.peers.get(&id) else {
                continue;
            };
            let items = self.requests.requestable(id, now);
            if items.is_empty() {
                continue;
            }
            let getdata = items.iter().map(|item| item.request(&link.peer)).collect();
            if !link.peer.try_queue_message(Message::GetData(getdata), None) {
                tracing::debug!(peer = %link.peer, "send queue full; request moves on");
                self.totals.dropped += 1;
                for item in items {
                    self.requests.not_found(id, item);
                }
            }
        }
    }

    /// A transaction or block arrived: if we asked this peer for it, keep it and announce
    /// it to every other peer. (Unrequested payloads are dropped: a relay that does not
    /// validate must not let any peer push data through the whole overlay.)
    pub(super) fn on_payload(&mut self, from: u64, payload: Payload) {
        let item = payload.item();
        let ids = payload.items();
        let Some(source) = self.peers.get(&from) else {
            return;
        };
        for id in &ids {
            source.peer.add_known_inventory(id.announcement());
        }
        let source_side = source.side;
        // The cheap check a relay can make without the chain: a block whose header does
        // not meet its own target (or a target easier than the network allows) is junk
        // that cost its sender nothing. It is dropped, never announced, and the sender
        // disconnected. (Transactions were already bounded in size and parsed by the
        // codec, whose failure disconnects the peer.)
        if let Payload::Block(block) = &payload {
            if !block.header().check_proof_of_work(self.network) {
                println!(
                    "! {} peer {}: block {} fails proof of work; disconnecting",
                    source_side.name(),
                    source.peer.addr(),
                    item.hash
                );
                source.peer.disconnect();
                self.requests.forget(item);
                return;
            }
        }
        // Asked for under either id (the one it was announced by); settle both.
        let mut requested = false;
        for id in &ids {
            requested |= self.requests.received(from, *id);
        }
        if !requested {
            tracing::debug!(%item.hash, "unrequested {}; dropped", item.kind_name());
            return;
        }
        // Announcements of it under its other id (from peers of the other mode) are
        // settled too, so it is fetched and relayed once.
        for id in &ids {
            self.requests.forget(*id);
            self.seen.insert(*id);
        }
        let size = payload.len();
        self.cache.insert(&payload);

        let (mut native, mut overlay) = (0, 0);
        for (id, link) in &self.peers {
            let iv = payload.announcement_for(&link.peer);
            if *id == from || link.peer.is_known_inventory(&iv) {
                continue;
            }
            // Blocks by `headers` to peers that sent `sendheaders`, else by `inv`.
            let queued = match &payload {
                Payload::Block(block) => link.peer.try_announce_block(block.header()),
                Payload::Tx(_) => link.peer.try_queue_inventory(iv),
            };
            if !queued {
                self.totals.dropped += 1;
                continue;
            }
            match link.side {
                Side::Native => native += 1,
                Side::Overlay => overlay += 1,
            }
        }
        match item.kind {
            Kind::Tx | Kind::Wtx => self.totals.relayed_tx += 1,
            Kind::Block => self.totals.relayed_blocks += 1,
        }
        self.totals.relayed_bytes += size as u64;
        println!(
            "relay inv {} {} {} -> {}",
            item.kind_name(),
            item.hash,
            source_side.name(),
            targets(native, overlay)
        );
    }

    /// Serve what we have, `notfound` for the rest, through the peer's serving task.
    /// Items beyond the peer's byte budget are answered `notfound`; a whole answer is
    /// dropped when the peer already has [`SERVE_JOBS`] answers waiting.
    pub(super) fn on_get_data(&mut self, from: u64, inv: &[InvVect]) {
        let Some(link) = self.peers.get(&from) else {
            return;
        };
        let mut backlog = link.serving.backlog.load(Ordering::Relaxed);
        let mut messages = Vec::new();
        let mut missing = Vec::new();
        let (mut served, mut bytes) = (0u64, 0usize);
        for iv in inv {
            let answer = Item::of(iv)
                .and_then(|item| self.cache.get(&item))
                .and_then(|payload| payload.answer(iv.inv_type));
            let Some(payload) = answer else {
                missing.push(*iv);
                continue;
            };
            let size = payload.len();
            if backlog > 0 && backlog + size > SERVE_BYTES {
                missing.push(*iv);
                continue;
            }
            backlog += size;
            bytes += size;
            served += 1;
            messages.push(payload.into_message());
        }
        if !missing.is_empty() {
            messages.push(Message::NotFound(missing));
        }
        if messages.is_empty() {
            return;
        }
        link.serving.backlog.fetch_add(bytes, Ordering::Relaxed);
        match link.serving.jobs.try_send(Job { messages, bytes }) {
            Ok(()) => {
                self.totals.served += served;
                self.totals.served_bytes += bytes as u64;
            }
            Err(_) => {
                link.serving.backlog.fetch_sub(bytes, Ordering::Relaxed);
                tracing::debug!(peer = %link.peer, "serving backlog full; getdata dropped");
                self.totals.dropped += 1;
            }
        }
    }

    /// Peers on each side, items relayed and served, bytes on the wire.
    pub(super) fn status(&self) -> String {
        let count = |side| self.peers.values().filter(|l| l.side == side).count();
        let (mut bytes_in, mut bytes_out) = (self.totals.gone_in, self.totals.gone_out);
        for link in self.peers.values() {
            bytes_in += link.peer.bytes_received();
            bytes_out += link.peer.bytes_sent();
        }
        let t = &self.totals;
        format!(
            "peers native {}, overlay {} | relayed tx {}, blocks {} ({}) | served {} ({}) | wire in {}, out {} | announced {}, dropped {}",
            count(Side::Native),
            count(Side::Overlay),
            t.relayed_tx,
            t.relayed_blocks,
            human_bytes(t.relayed_bytes),
            t.served,
            human_bytes(t.served_bytes),
            human_bytes(bytes_in),
            human_bytes(bytes_out),
            self.requests.items(),
            t.dropped,
        )
    }

    pub(super) fn disconnect_all(&self) {
        for link in self.peers.values() {
            link.peer.disconnect();
        }
    }
}

/// `native + overlay (2 peers)`, for the relay lines.
pub(super) fn targets(native: usize, overlay: usize) -> String {
    let mut parts = Vec::new();
    if native > 0 {
        parts.push("native".to_string());
    }
    if overlay > 0 {
        let s = if overlay == 1 { "" } else { "s" };
        parts.push(format!("overlay ({overlay} peer{s})"));
    }
    if parts.is_empty() {
        return "no other peers yet (kept for getdata)".into();
    }
    parts.join(" + ")
}
