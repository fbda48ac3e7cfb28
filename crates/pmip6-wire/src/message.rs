//! The Mobility Header (RFC 6275 §6.1) and the messages of Proxy Mobile IPv6.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Payload Proto |  Header Len   |   MH Type     |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Checksum            |                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               |
//! .                       Message Data                            .
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! [`MhPacket`] is the view over raw octets; [`Message`] the owned representation.

use core::fmt;
use core::net::Ipv6Addr;

use bitflags::bitflags;

use crate::checksum::{IPPROTO_MH, pseudo_header_checksum};
use crate::codepoint::{
    BaStatus, BindingErrorStatus, MhType, NotificationReason, RevocationStatus, RevocationTrigger, UpaStatus,
};
use crate::error::{EmitError, Error, ErrorKind, Result};
use crate::option::{MobilityOption, ParseConfig, emit_options, options_len, parse_options};

/// IPPROTO_NONE: the only Payload Proto a sender may use (RFC 6275 §6.1.1).
pub const IPPROTO_NONE: u8 = 59;
/// The largest Mobility Header: Header Len 255.
pub const MAX_LEN: usize = 256 * 8;

mod field {
    pub const PAYLOAD_PROTO: usize = 0;
    pub const HEADER_LEN: usize = 1;
    pub const MH_TYPE: usize = 2;
    pub const CHECKSUM: core::ops::Range<usize> = 4..6;
    /// Message Data starts here.
    pub const DATA: usize = 6;
    /// Options of BU, BA, Heartbeat, Binding Revocation, UPN and UPA start here.
    pub const OPTIONS: usize = 12;
    /// Options of the Binding Error start after Status, Reserved and the Home Address.
    pub const BE_OPTIONS: usize = 24;
}

/// A read-only view over a Mobility Header whose lengths have been checked.
#[derive(Debug, Clone, Copy)]
pub struct MhPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> MhPacket<T> {
    /// Wraps `buffer` after checking that it holds exactly the message its Header Len declares
    /// and at least the fixed part of its MH Type (RFC 6275 §9.2). The Payload Proto and the
    /// checksum are not checked here.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let bytes = buffer.as_ref();
        let Some(&header_len) = bytes.get(field::HEADER_LEN) else {
            return Err(Error::new(ErrorKind::Truncated { needed: 8, available: bytes.len() }, 0));
        };
        let mh_type = bytes.get(field::MH_TYPE).copied().unwrap_or(0);
        let declared = (usize::from(header_len) + 1) * 8;
        if bytes.len() < 8 {
            return Err(Error::new(ErrorKind::Truncated { needed: 8, available: bytes.len() }, 0));
        }
        // RFC 6275 §9.2: Header Len below the minimum for the type: discard.
        let minimum = minimum_header_len(MhType::from(mh_type));
        if header_len < minimum {
            return Err(Error::new(ErrorKind::HeaderLenTooShort { mh_type, header_len, minimum }, field::HEADER_LEN));
        }
        if declared > bytes.len() {
            return Err(Error::new(
                ErrorKind::HeaderLenBeyondBuffer { declared, available: bytes.len() },
                field::HEADER_LEN,
            ));
        }
        if declared < bytes.len() {
            return Err(Error::new(ErrorKind::TrailingData { declared, available: bytes.len() }, declared));
        }
        Ok(Self { buffer })
    }

    /// The raw octets.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Payload Proto.
    pub fn payload_proto(&self) -> u8 {
        self.as_bytes()[field::PAYLOAD_PROTO]
    }

    /// Header Len: length in units of 8 octets, excluding the first 8.
    pub fn header_len(&self) -> u8 {
        self.as_bytes()[field::HEADER_LEN]
    }

    /// MH Type.
    pub fn mh_type(&self) -> MhType {
        MhType::from(self.as_bytes()[field::MH_TYPE])
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        let b = self.as_bytes();
        u16::from_be_bytes([b[field::CHECKSUM.start], b[field::CHECKSUM.start + 1]])
    }

    /// The checksum the contents call for between `src` and `dst` (RFC 6275 §6.1.1).
    pub fn compute_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> u16 {
        let mut copy = self.as_bytes().to_vec();
        copy[field::CHECKSUM].fill(0);
        pseudo_header_checksum(src, dst, IPPROTO_MH, &copy)
    }

    /// Whether the checksum verifies between `src` and `dst`.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        pseudo_header_checksum(src, dst, IPPROTO_MH, self.as_bytes()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> MhPacket<T> {
    /// Writes the checksum for `src` and `dst` (RFC 6275 §6.1.1).
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        let bytes = self.buffer.as_mut();
        bytes[field::CHECKSUM].fill(0);
        let sum = pseudo_header_checksum(src, dst, IPPROTO_MH, bytes);
        bytes[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
    }
}

/// Smallest Header Len of each type: its fixed fields, rounded up to 8 octets (RFC 6275 §6.1.2
/// to §6.1.9, RFC 5846 §6, RFC 5847 §5.1, RFC 7077 §4).
fn minimum_header_len(mh_type: MhType) -> u8 {
    match mh_type {
        MhType::BindingUpdate
        | MhType::BindingAck
        | MhType::Heartbeat
        | MhType::BindingRevocation
        | MhType::UpdateNotification
        | MhType::UpdateNotificationAck => 1,
        MhType::BindingError => 2,
        _ => 0,
    }
}

bitflags! {
    /// Flags of the Binding Update (RFC 6275 §6.1.7 and the RFCs that added bits).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "serde", derive(serde::Serialize))]
    #[cfg_attr(feature = "serde", serde(transparent))]
    pub struct BuFlags: u16 {
        /// Acknowledge (RFC 6275).
        const A = 0x8000;
        /// Home Registration (RFC 6275).
        const H = 0x4000;
        /// Link-Local Address Compatibility (RFC 6275).
        const L = 0x2000;
        /// Key Management Mobility Capability (RFC 6275).
        const K = 0x1000;
        /// MAP Registration (RFC 5380).
        const M = 0x0800;
        /// Mobile Router (RFC 3963).
        const R = 0x0400;
        /// Proxy Registration (RFC 5213).
        const P = 0x0200;
        /// Forcing UDP encapsulation (RFC 5555).
        const F = 0x0100;
        /// TLV-header format (RFC 5845).
        const T = 0x0080;
        /// Bulk Binding Update (RFC 6602).
        const B = 0x0040;
        /// Mobility service subscription (RFC 7161).
        const S = 0x0020;
        /// Distributed mobility (RFC 8885).
        const D = 0x0010;
    }
}

bitflags! {
    /// Flags of the Binding Acknowledgement (RFC 6275 §6.1.8 and later RFCs).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "serde", derive(serde::Serialize))]
    #[cfg_attr(feature = "serde", serde(transparent))]
    pub struct BaFlags: u8 {
        /// Key Management Mobility Capability (RFC 6275).
        const K = 0x80;
        /// Mobile Router (RFC 3963).
        const R = 0x40;
        /// Proxy Registration (RFC 5213).
        const P = 0x20;
        /// TLV-header format (RFC 5845).
        const T = 0x10;
        /// Bulk Binding Update (RFC 6602).
        const B = 0x08;
        /// Mobility service subscription (RFC 7161).
        const S = 0x04;
        /// Distributed mobility (RFC 8885).
        const D = 0x02;
    }
}

bitflags! {
    /// Flags of the Heartbeat message (RFC 5847 §5.1).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "serde", derive(serde::Serialize))]
    #[cfg_attr(feature = "serde", serde(transparent))]
    pub struct HeartbeatFlags: u16 {
        /// Unsolicited heartbeat response.
        const U = 0x0002;
        /// Response (clear: request).
        const R = 0x0001;
    }
}

bitflags! {
    /// Flags of the Binding Revocation message (RFC 5846 §6.1, §6.2).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "serde", derive(serde::Serialize))]
    #[cfg_attr(feature = "serde", serde(transparent))]
    pub struct RevocationFlags: u16 {
        /// Proxy binding.
        const P = 0x8000;
        /// IPv4 Home Address binding only.
        const V = 0x4000;
        /// Global: all bindings of the peer (BRI) or acknowledged as such (BRA).
        const G = 0x2000;
    }
}

bitflags! {
    /// Flags of the Update Notification (RFC 7077 §4.1), in the 16-bit word after the
    /// Notification Reason.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "serde", derive(serde::Serialize))]
    #[cfg_attr(feature = "serde", serde(transparent))]
    pub struct UpnFlags: u16 {
        /// Acknowledgement requested.
        const A = 0x8000;
        /// Deregistration requested (RFC 7077 §4.1).
        const D = 0x4000;
    }
}

/// Binding Update, a Proxy Binding Update when P is set (RFC 6275 §6.1.7, RFC 5213 §8.1).
///
/// ```text
///                                 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///                                 |          Sequence #           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |A|H|L|K|M|R|P|F|T|B|S|D|Reservd|            Lifetime           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// .                        Mobility options                       .
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct BindingUpdate {
    /// Sequence Number.
    pub sequence: u16,
    /// Flags (reserved bits kept as received).
    pub flags: BuFlags,
    /// Lifetime in units of 4 seconds; 0 de-registers.
    pub lifetime: u16,
    /// Mobility options.
    pub options: Vec<MobilityOption>,
}

/// Binding Acknowledgement, a Proxy Binding Acknowledgement when P is set (RFC 6275 §6.1.8,
/// RFC 5213 §8.2).
///
/// ```text
///                                 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///                                 |    Status     |K|R|P|T|B|S|D|r|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |         Sequence #            |           Lifetime            |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// .                        Mobility options                       .
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct BindingAck {
    /// Status: below 128 accepted.
    pub status: BaStatus,
    /// Flags.
    pub flags: BaFlags,
    /// Sequence Number of the Binding Update answered.
    pub sequence: u16,
    /// Granted lifetime in units of 4 seconds.
    pub lifetime: u16,
    /// Mobility options.
    pub options: Vec<MobilityOption>,
}

/// Binding Error (RFC 6275 §6.1.9).
///
/// ```text
///                                 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///                                 |     Status    |   Reserved    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// +                          Home Address                         +
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// .                        Mobility options                       .
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct BindingError {
    /// Status.
    pub status: BindingErrorStatus,
    /// Home Address of the offending packet.
    pub home_address: Ipv6Addr,
    /// Mobility options.
    pub options: Vec<MobilityOption>,
}

/// Heartbeat (RFC 5847 §5.1).
///
/// ```text
///                                 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///                                 |         Reserved          |U|R|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                        Sequence Number                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// .                        Mobility options                       .
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Heartbeat {
    /// Flags (reserved bits kept as received).
    pub flags: HeartbeatFlags,
    /// Sequence Number; a response echoes the request's.
    pub sequence: u32,
    /// Mobility options (a response carries the Restart Counter).
    pub options: Vec<MobilityOption>,
}

/// Which Binding Revocation message (RFC 5846 §6): the B.R. Type and the octet after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum RevocationKind {
    /// Binding Revocation Indication (B.R. Type 1) with its Revocation Trigger.
    Indication(RevocationTrigger),
    /// Binding Revocation Acknowledgement (B.R. Type 2) with its Status.
    Acknowledgement(RevocationStatus),
    /// Another B.R. Type, kept as received.
    Unknown {
        /// B.R. Type.
        br_type: u8,
        /// The octet after it.
        code: u8,
    },
}

/// Binding Revocation Indication or Acknowledgement (RFC 5846 §6.1, §6.2).
///
/// ```text
///                                 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///                                 |   B.R. Type   | R. Trigger or |
///                                 |               |    Status     |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |         Sequence #            |P|V|G|        Reserved         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// .                        Mobility options                       .
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct BindingRevocation {
    /// Indication or acknowledgement.
    pub kind: RevocationKind,
    /// Sequence Number; the acknowledgement echoes the indication's.
    pub sequence: u16,
    /// Flags.
    pub flags: RevocationFlags,
    /// Mobility options.
    pub options: Vec<MobilityOption>,
}

/// Update Notification (RFC 7077 §4.1).
///
/// ```text
///                                 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///                                 |       Sequence Number         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     Notification Reason       |A|D|        Reserved           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// .                        Mobility options                       .
/// ```
///
/// The Reason is read as 16 bits with A and D heading the next word, as two independent
/// parsers do; the field widths live in this type's parse and emit only.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct UpdateNotification {
    /// Sequence Number.
    pub sequence: u16,
    /// Notification Reason.
    pub reason: NotificationReason,
    /// Flags.
    pub flags: UpnFlags,
    /// Mobility options (MN-ID is mandatory, RFC 7077 §4.1).
    pub options: Vec<MobilityOption>,
}

/// Update Notification Acknowledgement (RFC 7077 §4.2).
///
/// ```text
///                                 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///                                 |       Sequence Number         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |    Status     |                   Reserved                    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// .                        Mobility options                       .
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct UpdateNotificationAck {
    /// Sequence Number of the notification answered.
    pub sequence: u16,
    /// Status.
    pub status: UpaStatus,
    /// Mobility options.
    pub options: Vec<MobilityOption>,
}

/// A message of a type this crate does not interpret, kept byte for byte (RFC 6275 §9.2: the
/// receiver answers an unknown type with a Binding Error, status 2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct UnknownMessage {
    /// MH Type.
    pub mh_type: u8,
    /// Message Data: every octet after the checksum. `emit` pads it with zeros to a multiple of
    /// 8 octets.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::serde_hex"))]
    pub data: Vec<u8>,
}

/// A Mobility Header message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Message {
    /// Binding Update / Proxy Binding Update.
    BindingUpdate(BindingUpdate),
    /// Binding Acknowledgement / Proxy Binding Acknowledgement.
    BindingAck(BindingAck),
    /// Binding Error.
    BindingError(BindingError),
    /// Heartbeat request or response.
    Heartbeat(Heartbeat),
    /// Binding Revocation Indication or Acknowledgement.
    BindingRevocation(BindingRevocation),
    /// Update Notification.
    UpdateNotification(UpdateNotification),
    /// Update Notification Acknowledgement.
    UpdateNotificationAck(UpdateNotificationAck),
    /// Any other MH type.
    Unknown(UnknownMessage),
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Message {
    /// Parses a whole Mobility Header (no checksum check: the kernel's raw MH socket verifies
    /// it, RFC 6275 §6.1.1; see [`Message::parse_checked`]).
    pub fn parse(bytes: &[u8], config: &ParseConfig) -> Result<Self> {
        let packet = MhPacket::new_checked(bytes)?;
        Self::parse_packet(&packet, config)
    }

    /// Parses a whole Mobility Header after verifying its checksum between `src` and `dst`.
    pub fn parse_checked(bytes: &[u8], src: &Ipv6Addr, dst: &Ipv6Addr, config: &ParseConfig) -> Result<Self> {
        let packet = MhPacket::new_checked(bytes)?;
        // RFC 6275 §9.2: a message whose checksum does not verify is silently discarded.
        if !packet.verify_checksum(src, dst) {
            return Err(Error::new(
                ErrorKind::BadChecksum { found: packet.checksum(), computed: packet.compute_checksum(src, dst) },
                field::CHECKSUM.start,
            ));
        }
        Self::parse_packet(&packet, config)
    }

    /// Parses a checked view.
    pub fn parse_packet<T: AsRef<[u8]>>(packet: &MhPacket<T>, config: &ParseConfig) -> Result<Self> {
        // RFC 6275 §9.2: Payload Proto other than IPPROTO_NONE: discard.
        if packet.payload_proto() != IPPROTO_NONE {
            return Err(Error::new(ErrorKind::PayloadProto(packet.payload_proto()), field::PAYLOAD_PROTO));
        }
        let b = packet.as_bytes();
        let options = |start| parse_options(b, start, config);
        let message = match packet.mh_type() {
            MhType::BindingUpdate => Message::BindingUpdate(BindingUpdate {
                sequence: u16_at(b, 6),
                flags: BuFlags::from_bits_retain(u16_at(b, 8)),
                lifetime: u16_at(b, 10),
                options: options(field::OPTIONS)?,
            }),
            MhType::BindingAck => Message::BindingAck(BindingAck {
                status: BaStatus::from(b[6]),
                flags: BaFlags::from_bits_retain(b[7]),
                sequence: u16_at(b, 8),
                lifetime: u16_at(b, 10),
                options: options(field::OPTIONS)?,
            }),
            MhType::BindingError => {
                let mut home = [0u8; 16];
                home.copy_from_slice(&b[8..24]);
                Message::BindingError(BindingError {
                    status: BindingErrorStatus::from(b[6]),
                    home_address: Ipv6Addr::from(home),
                    options: options(field::BE_OPTIONS)?,
                })
            }
            MhType::Heartbeat => Message::Heartbeat(Heartbeat {
                flags: HeartbeatFlags::from_bits_retain(u16_at(b, 6)),
                sequence: u32_at(b, 8),
                options: options(field::OPTIONS)?,
            }),
            MhType::BindingRevocation => Message::BindingRevocation(BindingRevocation {
                kind: match b[6] {
                    1 => RevocationKind::Indication(RevocationTrigger::from(b[7])),
                    2 => RevocationKind::Acknowledgement(RevocationStatus::from(b[7])),
                    br_type => RevocationKind::Unknown { br_type, code: b[7] },
                },
                sequence: u16_at(b, 8),
                flags: RevocationFlags::from_bits_retain(u16_at(b, 10)),
                options: options(field::OPTIONS)?,
            }),
            MhType::UpdateNotification => Message::UpdateNotification(UpdateNotification {
                sequence: u16_at(b, 6),
                reason: NotificationReason::from(u16_at(b, 8)),
                flags: UpnFlags::from_bits_retain(u16_at(b, 10)),
                options: options(field::OPTIONS)?,
            }),
            MhType::UpdateNotificationAck => Message::UpdateNotificationAck(UpdateNotificationAck {
                sequence: u16_at(b, 6),
                status: UpaStatus::from(b[8]),
                options: options(field::OPTIONS)?,
            }),
            other => Message::Unknown(UnknownMessage { mh_type: other.into(), data: b[field::DATA..].to_vec() }),
        };
        Ok(message)
    }

    /// The MH Type.
    pub fn mh_type(&self) -> MhType {
        match self {
            Message::BindingUpdate(_) => MhType::BindingUpdate,
            Message::BindingAck(_) => MhType::BindingAck,
            Message::BindingError(_) => MhType::BindingError,
            Message::Heartbeat(_) => MhType::Heartbeat,
            Message::BindingRevocation(_) => MhType::BindingRevocation,
            Message::UpdateNotification(_) => MhType::UpdateNotification,
            Message::UpdateNotificationAck(_) => MhType::UpdateNotificationAck,
            Message::Unknown(m) => MhType::from(m.mh_type),
        }
    }

    /// The mobility options (none for an unknown message).
    pub fn options(&self) -> &[MobilityOption] {
        match self {
            Message::BindingUpdate(m) => &m.options,
            Message::BindingAck(m) => &m.options,
            Message::BindingError(m) => &m.options,
            Message::Heartbeat(m) => &m.options,
            Message::BindingRevocation(m) => &m.options,
            Message::UpdateNotification(m) => &m.options,
            Message::UpdateNotificationAck(m) => &m.options,
            Message::Unknown(_) => &[],
        }
    }

    fn options_start(&self) -> usize {
        match self {
            Message::BindingError(_) => field::BE_OPTIONS,
            Message::Unknown(_) => field::DATA,
            _ => field::OPTIONS,
        }
    }

    /// Octets `emit` writes: a multiple of 8.
    pub fn buffer_len(&self) -> usize {
        let start = self.options_start();
        match self {
            Message::Unknown(m) => {
                let len = field::DATA + m.data.len();
                len.div_ceil(8) * 8
            }
            _ => start + options_len(self.options(), start),
        }
    }

    /// Emits the message into `buf` with a zero checksum; returns the length written.
    pub fn emit(&self, buf: &mut [u8]) -> core::result::Result<usize, EmitError> {
        let len = self.buffer_len();
        if len > MAX_LEN {
            return Err(EmitError::TooLong { field: "Mobility Header" });
        }
        let available = buf.len();
        let Some(b) = buf.get_mut(..len) else {
            return Err(EmitError::BufferTooSmall { needed: len, available });
        };
        b[..field::DATA].copy_from_slice(&[IPPROTO_NONE, (len / 8 - 1) as u8, self.mh_type().into(), 0, 0, 0]);
        match self {
            Message::BindingUpdate(m) => {
                b[6..8].copy_from_slice(&m.sequence.to_be_bytes());
                b[8..10].copy_from_slice(&m.flags.bits().to_be_bytes());
                b[10..12].copy_from_slice(&m.lifetime.to_be_bytes());
            }
            Message::BindingAck(m) => {
                b[6] = m.status.into();
                b[7] = m.flags.bits();
                b[8..10].copy_from_slice(&m.sequence.to_be_bytes());
                b[10..12].copy_from_slice(&m.lifetime.to_be_bytes());
            }
            Message::BindingError(m) => {
                b[6] = m.status.into();
                b[7] = 0;
                b[8..24].copy_from_slice(&m.home_address.octets());
            }
            Message::Heartbeat(m) => {
                b[6..8].copy_from_slice(&m.flags.bits().to_be_bytes());
                b[8..12].copy_from_slice(&m.sequence.to_be_bytes());
            }
            Message::BindingRevocation(m) => {
                let (br_type, code) = match m.kind {
                    RevocationKind::Indication(trigger) => (1, trigger.into()),
                    RevocationKind::Acknowledgement(status) => (2, status.into()),
                    RevocationKind::Unknown { br_type, code } => (br_type, code),
                };
                b[6] = br_type;
                b[7] = code;
                b[8..10].copy_from_slice(&m.sequence.to_be_bytes());
                b[10..12].copy_from_slice(&m.flags.bits().to_be_bytes());
            }
            Message::UpdateNotification(m) => {
                b[6..8].copy_from_slice(&m.sequence.to_be_bytes());
                b[8..10].copy_from_slice(&u16::from(m.reason).to_be_bytes());
                b[10..12].copy_from_slice(&m.flags.bits().to_be_bytes());
            }
            Message::UpdateNotificationAck(m) => {
                b[6..8].copy_from_slice(&m.sequence.to_be_bytes());
                b[8] = m.status.into();
                b[9..12].fill(0);
            }
            Message::Unknown(m) => {
                let end = field::DATA + m.data.len();
                b[field::DATA..end].copy_from_slice(&m.data);
                b[end..].fill(0);
                return Ok(len);
            }
        }
        let start = self.options_start();
        emit_options(self.options(), start, &mut b[start..])?;
        Ok(len)
    }

    /// Emits the message with its checksum for `src` and `dst`; returns the length written.
    pub fn emit_with_checksum(
        &self,
        buf: &mut [u8],
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
    ) -> core::result::Result<usize, EmitError> {
        let len = self.emit(buf)?;
        let mut packet = MhPacket { buffer: &mut buf[..len] };
        packet.fill_checksum(src, dst);
        Ok(len)
    }

    /// The message as a new vector, with its checksum for `src` and `dst`.
    pub fn to_vec(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> core::result::Result<Vec<u8>, EmitError> {
        let mut buf = vec![0; self.buffer_len()];
        self.emit_with_checksum(&mut buf, src, dst)?;
        Ok(buf)
    }
}

fn write_options(f: &mut fmt::Formatter<'_>, options: &[MobilityOption]) -> fmt::Result {
    for option in options {
        write!(f, " [{option}]")?;
    }
    Ok(())
}

fn flags_text<B: bitflags::Flags>(flags: &B) -> String
where
    B::Bits: bitflags::parser::WriteHex,
{
    let mut text = String::new();
    let _ = bitflags::parser::to_writer_strict(flags, &mut text);
    if text.is_empty() { "-".into() } else { text.replace(" | ", "|") }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::BindingUpdate(m) => {
                let name = if m.flags.contains(BuFlags::P) { "PBU" } else { "BU" };
                write!(
                    f,
                    "{name} seq={} flags={} lifetime={}s",
                    m.sequence,
                    flags_text(&m.flags),
                    u32::from(m.lifetime) * 4
                )?;
                write_options(f, &m.options)
            }
            Message::BindingAck(m) => {
                let name = if m.flags.contains(BaFlags::P) { "PBA" } else { "BA" };
                write!(
                    f,
                    "{name} status={} seq={} flags={} lifetime={}s",
                    m.status,
                    m.sequence,
                    flags_text(&m.flags),
                    u32::from(m.lifetime) * 4
                )?;
                write_options(f, &m.options)
            }
            Message::BindingError(m) => {
                write!(f, "BE status={} home={}", m.status, m.home_address)?;
                write_options(f, &m.options)
            }
            Message::Heartbeat(m) => {
                let name = if m.flags.contains(HeartbeatFlags::R) { "HB-response" } else { "HB-request" };
                write!(f, "{name} seq={} flags={}", m.sequence, flags_text(&m.flags))?;
                write_options(f, &m.options)
            }
            Message::BindingRevocation(m) => {
                match m.kind {
                    RevocationKind::Indication(t) => write!(f, "BRI trigger={t}")?,
                    RevocationKind::Acknowledgement(s) => write!(f, "BRA status={s}")?,
                    RevocationKind::Unknown { br_type, code } => write!(f, "BR type={br_type} code={code}")?,
                }
                write!(f, " seq={} flags={}", m.sequence, flags_text(&m.flags))?;
                write_options(f, &m.options)
            }
            Message::UpdateNotification(m) => {
                write!(f, "UPN seq={} reason={} flags={}", m.sequence, m.reason, flags_text(&m.flags))?;
                write_options(f, &m.options)
            }
            Message::UpdateNotificationAck(m) => {
                write!(f, "UPA seq={} status={}", m.sequence, m.status)?;
                write_options(f, &m.options)
            }
            Message::Unknown(m) => write!(f, "MH type={} data={}", m.mh_type, crate::Hex(&m.data)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Message> {
        Message::parse(bytes, &ParseConfig::default())
    }

    fn heartbeat() -> Vec<u8> {
        vec![59, 1, 13, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 0, 0]
    }

    #[test]
    fn rejects_buffers_shorter_than_the_common_header() {
        for len in 0..8 {
            let err = parse(&heartbeat()[..len]).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Truncated { needed: 8, available: len }, "len {len}");
        }
    }

    #[test]
    fn rejects_header_len_beyond_buffer() {
        let mut b = heartbeat();
        b[1] = 2;
        assert_eq!(
            parse(&b).unwrap_err(),
            Error::new(ErrorKind::HeaderLenBeyondBuffer { declared: 24, available: 16 }, 1)
        );
    }

    #[test]
    fn rejects_header_len_below_the_type_minimum() {
        let b = [59, 0, 13, 0, 0, 0, 0, 0];
        assert_eq!(
            parse(&b).unwrap_err(),
            Error::new(ErrorKind::HeaderLenTooShort { mh_type: 13, header_len: 0, minimum: 1 }, 1)
        );
        let mut be = vec![59, 1, 7, 0, 0, 0];
        be.resize(16, 0);
        assert_eq!(
            parse(&be).unwrap_err().kind,
            ErrorKind::HeaderLenTooShort { mh_type: 7, header_len: 1, minimum: 2 }
        );
    }

    #[test]
    fn rejects_trailing_octets() {
        let mut b = heartbeat();
        b.extend_from_slice(&[0; 8]);
        assert_eq!(parse(&b).unwrap_err(), Error::new(ErrorKind::TrailingData { declared: 16, available: 24 }, 16));
    }

    #[test]
    fn rejects_payload_proto_other_than_none() {
        let mut b = heartbeat();
        b[0] = 6;
        assert_eq!(parse(&b).unwrap_err(), Error::new(ErrorKind::PayloadProto(6), 0));
    }

    #[test]
    fn checksum_is_verified_when_asked() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let msg = parse(&heartbeat()).unwrap();
        let mut bytes = msg.to_vec(&src, &dst).unwrap();
        assert_eq!(Message::parse_checked(&bytes, &src, &dst, &ParseConfig::default()), Ok(msg));
        let good = u16::from_be_bytes([bytes[4], bytes[5]]);
        bytes[11] ^= 1;
        let err = Message::parse_checked(&bytes, &src, &dst, &ParseConfig::default()).unwrap_err();
        assert_eq!(err.offset, 4);
        let ErrorKind::BadChecksum { found, computed } = err.kind else { panic!("{err:?}") };
        assert_eq!(found, good);
        assert_ne!(computed, good);
        // The computed value is the one that verifies.
        bytes[4..6].copy_from_slice(&computed.to_be_bytes());
        assert!(Message::parse_checked(&bytes, &src, &dst, &ParseConfig::default()).is_ok());
    }

    #[test]
    fn unknown_types_keep_their_octets() {
        let b = [59, 1, 23, 0, 0xaa, 0xbb, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        let msg = parse(&b).unwrap();
        assert_eq!(msg, Message::Unknown(UnknownMessage { mh_type: 23, data: b[6..].to_vec() }));
        let mut out = vec![0; msg.buffer_len()];
        msg.emit(&mut out).unwrap();
        assert_eq!(out[6..], b[6..]);
    }

    #[test]
    fn bad_option_reports_its_mh_offset() {
        // Heartbeat with an HNP of length 2 at offset 12.
        let b = [59, 1, 13, 0, 0, 0, 0, 0, 0, 0, 0, 1, 22, 2, 0, 0];
        assert_eq!(parse(&b).unwrap_err(), Error::new(ErrorKind::OptionLength { option_type: 22, length: 2 }, 12));
    }

    #[test]
    fn emit_into_short_buffer_fails_without_panic() {
        let msg = parse(&heartbeat()).unwrap();
        let mut buf = [0u8; 15];
        assert_eq!(msg.emit(&mut buf), Err(EmitError::BufferTooSmall { needed: 16, available: 15 }));
    }

    #[test]
    fn emit_refuses_messages_over_2048_octets() {
        let options = vec![MobilityOption::Unknown { option_type: 200, data: vec![0; 200] }; 11];
        let msg = Message::Heartbeat(Heartbeat { flags: HeartbeatFlags::empty(), sequence: 1, options });
        let mut buf = vec![0; msg.buffer_len()];
        assert_eq!(msg.emit(&mut buf), Err(EmitError::TooLong { field: "Mobility Header" }));
    }
}
