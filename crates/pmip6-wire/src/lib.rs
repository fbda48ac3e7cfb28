//! The wire formats of pmip6: the Mobility Header (RFC 6275 §6.1) with the messages and mobility
//! options of Proxy Mobile IPv6 (RFC 5213) and its extensions, the traffic selectors of flow
//! mobility (RFC 6088, RFC 6089), and the Router Solicitation and Advertisement a MAG exchanges
//! with mobile nodes (RFC 4861, RFC 5175).
//!
//! This crate owns bytes only: no sockets, no clock. Two levels, as in smoltcp:
//! - views over raw octets ([`MhPacket`], [`option::OptionIter`]) that check lengths before
//!   exposing fields;
//! - owned representations ([`Message`], [`MobilityOption`], ...) with `parse`, `buffer_len`
//!   and `emit`.
//!
//! `parse` never panics: every malformation is an [`Error`] with its [`ErrorKind`] and offset.
//! `emit` never panics either: it writes into a buffer of at least `buffer_len()` octets and
//! inserts Pad1/PadN so each option meets its alignment and the message is a multiple of 8
//! octets. A message with unknown options or of an unknown type still parses, and what is
//! unknown is kept byte for byte.
//!
//! Where to add things: a message type in [`message`] (a struct, a [`Message`] variant, its
//! minimum Header Len, parse and emit arms); an option in [`option`] (a [`MobilityOption`]
//! variant, its type number, alignment, length, parse and emit arms); a code point in
//! [`codepoint`].
#![forbid(unsafe_code)]

pub mod checksum;
pub mod codepoint;
pub mod error;
pub mod flow;
pub mod message;
pub mod nd;
pub mod option;
pub mod selector;
#[cfg(any(test, feature = "proptest"))]
pub mod strategy;
pub mod timestamp;

pub use codepoint::*;
pub use error::{EmitError, Error, ErrorKind, Result};
pub use message::{
    BaFlags, BindingAck, BindingError, BindingRevocation, BindingUpdate, BuFlags, Heartbeat, HeartbeatFlags, Message,
    MhPacket, RevocationFlags, RevocationKind, UnknownMessage, UpdateNotification, UpdateNotificationAck, UpnFlags,
};
pub use option::{Authentication, MnIdentifier, MobilityOption, ParseConfig, Prefix};
pub use timestamp::Timestamp;

/// Octets shown as lowercase hex, `:`-separated for six or eight octets (a link-layer address).
pub(crate) struct Hex<'a>(pub &'a [u8]);

impl core::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let sep = if matches!(self.0.len(), 6 | 8) { ":" } else { "" };
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(sep)?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(feature = "serde")]
pub(crate) fn serde_hex<S: serde::Serializer>(bytes: &[u8], s: S) -> core::result::Result<S::Ok, S::Error> {
    s.collect_str(&Hex(bytes))
}

#[cfg(feature = "serde")]
pub(crate) fn serde_text_or_hex<S: serde::Serializer>(bytes: &[u8], s: S) -> core::result::Result<S::Ok, S::Error> {
    match core::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(char::is_control) => s.serialize_str(text),
        _ => s.collect_str(&Hex(bytes)),
    }
}
