//! The protocol engines of pmip6: the local mobility anchor ([`lma`]) and the mobile access
//! gateway ([`mag`]) of Proxy Mobile IPv6 (RFC 5213) with the multihoming extensions of
//! draft-bernardos-mif-pmip-02 and the notifications of RFC 7077.
//!
//! Sans-IO and deterministic: the engines never touch a socket, netlink or a clock. The driver
//! feeds inputs as `handle_*(now, ...)` calls and then polls the outputs in a fixed order —
//! `poll_transmit` (messages to send), `poll_intent` (data-plane changes), `poll_event` (for logs
//! and metrics), `poll_timeout` (the next deadline, at which it calls `handle_timeout(now)`).
//! Random values (initial sequence numbers) are injected through the configuration. Given the
//! same inputs, an engine produces the same outputs.
#![forbid(unsafe_code)]

pub mod common;
pub mod flow;
pub mod lma;
pub mod mag;
pub mod timer;

pub use common::{Intent, InterfaceId, Now, Received, Resource, Transmit};
