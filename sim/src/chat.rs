//! Chat flooding on the simulated network: every node runs `chat/1` (protocols::chat),
//! and each line a node delivers for the first time is recorded with the peer it came
//! through.

use std::sync::Arc;

use protocols::chat::{ChatEvent, ChatRoom};

use crate::net::{NodeCtx, Protocols};
use crate::trace::Event;

/// The protocols of a chat node: a fresh room per start, its deliveries recorded.
pub fn chat() -> Protocols {
    Arc::new(|ctx: &NodeCtx| {
        let (room, mut events) = ChatRoom::new(&format!("n{}", ctx.index));
        ctx.state().chat = Some(room.clone());
        let recorder = ctx.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let ChatEvent::Line { via, text, .. } = event {
                    if let Some(via) = recorder.shared.index(&via) {
                        recorder.record(Event::Delivered { via, what: text });
                    }
                }
            }
        });
        vec![room.protocol()]
    })
}
