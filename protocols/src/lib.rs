//! Subprotocols for braid.
#![forbid(unsafe_code)]
