//! Errors of parsing and emitting.
//!
//! Every malformation has its own variant and carries the octet offset, from the start of the
//! buffer handed to `parse`, where it was found. A rejection the protocol itself defines (a PBA
//! status ≥ 128, an unknown MH type answered with a Binding Error) is not an error of this crate:
//! such messages parse, and the engines decide.

use thiserror::Error;

/// What went wrong while parsing, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{kind} at offset {offset}")]
pub struct Error {
    /// What was wrong.
    pub kind: ErrorKind,
    /// Octet offset from the start of the parsed buffer.
    pub offset: usize,
}

impl Error {
    /// An error of `kind` at `offset`.
    pub const fn new(kind: ErrorKind, offset: usize) -> Self {
        Self { kind, offset }
    }
}

/// The kinds of malformation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The buffer ends before a fixed field does.
    #[error("truncated: {needed} octets needed, {available} available")]
    Truncated {
        /// Octets the structure needs.
        needed: usize,
        /// Octets there are.
        available: usize,
    },
    /// Header Len is below the minimum for the MH Type (RFC 6275 §9.2).
    #[error("Header Len {header_len} is below the minimum {minimum} for MH type {mh_type}")]
    HeaderLenTooShort {
        /// MH Type of the message.
        mh_type: u8,
        /// Header Len as received (units of 8 octets, excluding the first 8).
        header_len: u8,
        /// Smallest Header Len the type allows.
        minimum: u8,
    },
    /// Header Len declares more octets than the buffer holds.
    #[error("Header Len declares {declared} octets, only {available} present")]
    HeaderLenBeyondBuffer {
        /// Octets Header Len declares.
        declared: usize,
        /// Octets present.
        available: usize,
    },
    /// Octets remain after the length a header declares.
    #[error("{declared} octets declared, {available} present: trailing data")]
    TrailingData {
        /// Octets declared.
        declared: usize,
        /// Octets present.
        available: usize,
    },
    /// The Payload Proto field is not IPPROTO_NONE (RFC 6275 §6.1.1, §9.2).
    #[error("Payload Proto {0} is not 59 (IPPROTO_NONE)")]
    PayloadProto(u8),
    /// The Mobility Header or ICMPv6 checksum does not verify.
    #[error("bad checksum: found {found:#06x}, computed {computed:#06x}")]
    BadChecksum {
        /// Checksum in the message.
        found: u16,
        /// Checksum the contents call for.
        computed: u16,
    },
    /// Only one octet is left where an option's Type and Length must be.
    #[error("option header truncated")]
    OptionHeaderTruncated,
    /// An option's Length runs past the end of its message (or container option).
    #[error("option {option_type} of length {length} runs past the end ({available} octets left)")]
    OptionOverrun {
        /// Option Type.
        option_type: u8,
        /// Option Length as received.
        length: u8,
        /// Octets left for the option data.
        available: usize,
    },
    /// A known option with a Length its definition does not allow.
    #[error("option {option_type} has invalid length {length}")]
    OptionLength {
        /// Option Type.
        option_type: u8,
        /// Option Length as received.
        length: u8,
    },
    /// A field holds a value its definition rules out.
    #[error("invalid {field}")]
    InvalidField {
        /// Which field.
        field: &'static str,
    },
    /// The ICMPv6 message is not one this crate parses.
    #[error("ICMPv6 type {0} is not a Router Solicitation or Advertisement")]
    UnexpectedIcmpType(u8),
}

impl ErrorKind {
    /// A stable kebab-case name, for logs, metrics labels and machine-readable output.
    pub fn name(&self) -> &'static str {
        match self {
            ErrorKind::Truncated { .. } => "truncated",
            ErrorKind::HeaderLenTooShort { .. } => "header-len-too-short",
            ErrorKind::HeaderLenBeyondBuffer { .. } => "header-len-beyond-buffer",
            ErrorKind::TrailingData { .. } => "trailing-data",
            ErrorKind::PayloadProto(_) => "payload-proto",
            ErrorKind::BadChecksum { .. } => "bad-checksum",
            ErrorKind::OptionHeaderTruncated => "option-header-truncated",
            ErrorKind::OptionOverrun { .. } => "option-overrun",
            ErrorKind::OptionLength { .. } => "option-length",
            ErrorKind::InvalidField { .. } => "invalid-field",
            ErrorKind::UnexpectedIcmpType(_) => "unexpected-icmp-type",
        }
    }
}

/// Why a representation could not be emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The buffer is shorter than `buffer_len()`.
    #[error("buffer too small: {needed} octets needed, {available} available")]
    BufferTooSmall {
        /// Octets needed.
        needed: usize,
        /// Octets available.
        available: usize,
    },
    /// A field is longer than its length field can express (an option over 255 octets, a
    /// Mobility Header over 2048 octets).
    #[error("{field} is too long for its length field")]
    TooLong {
        /// Which field.
        field: &'static str,
    },
    /// A field holds a value the wire format cannot carry (a prefix length over 128, a
    /// reserved bit of a flag set).
    #[error("{field} cannot be encoded")]
    InvalidField {
        /// Which field.
        field: &'static str,
    },
}

/// Result of parsing.
pub type Result<T> = core::result::Result<T, Error>;
