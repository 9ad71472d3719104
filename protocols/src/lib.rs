//! Subprotocols for braid.
#![forbid(unsafe_code)]

pub mod bitcoin;
pub mod chat;
