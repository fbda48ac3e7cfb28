//! Flow identification (draft §5.3.1): from a raw IP packet, starting at the IP header, the
//! draft's 6-tuple — source and destination address, source and destination port, IPv6 flow
//! label, L4 protocol — as a [`FlowKey`], plus what a policy may also look at on the first
//! packet of a flow (traffic class, IPsec SPI) and the packet's length for the counters.
//!
//! [`classify`] is a pure function of the octets. [`Classifier`] adds the one piece of state
//! flow identification needs: a small, bounded cache that maps the later fragments of a
//! datagram to the flow of its first fragment.
//!
//! ```text
//!  IPv6: 40-octet header ─► Hop-by-Hop (first only) ─► Routing | Destination Options |
//!        Fragment | AH ... ─► upper layer: TCP UDP DCCP SCTP UDP-Lite (ports),
//!        ICMPv6 echo (identifier), ESP (SPI, walk ends), No Next Header, anything else (no ports)
//!  IPv4: header with IHL options ─► [AH] ─► the same upper layers, ICMP echo (identifier)
//! ```
//!
//! Why a parser of our own rather than etherparse: etherparse 0.21 does not slice the transport
//! header of any fragment, the first included (`SlicedPacket` stops at a fragmented payload),
//! so the first fragment's ports would be lost; it also wants a complete TCP header (data
//! offset and options) where the key needs four octets. The walk here reads only what the key
//! needs, with bounds checked at every step (`get`, never indexing), and returns a
//! [`ClassifyError`] for every truncation or malformation.
//!
//! Choices, each documented where it is made:
//! - IPv4 addresses are kept in the key as IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) with
//!   [`IpVersion::V4`]; the version is part of the key, so the two families never collide.
//! - ICMP and ICMPv6 echo request/reply carry their identifier in both port fields
//!   ([`PortSource::EchoId`]); a traffic selector's port ranges never match such a key (ports
//!   are transport ports, RFC 6088 §3).
//! - The byte counter uses the length the IP header declares; octets past it (link padding)
//!   are not part of the packet. A buffer shorter than the declared length (a capture snapshot)
//!   is fine as long as the headers the key needs are inside it.
//! - The SPI and traffic class are not part of the key: the flow is the 6-tuple of the draft.

use core::fmt;
use core::hash::{Hash, Hasher};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::collections::VecDeque;

use foldhash::fast::FixedState;
use std::collections::HashMap;

use crate::common::Now;

/// IP protocol numbers the walk knows.
pub mod protocol {
    /// IPv6 Hop-by-Hop Options (RFC 8200 §4.3).
    pub const HOP_BY_HOP: u8 = 0;
    /// ICMP (RFC 792).
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// DCCP (RFC 4340).
    pub const DCCP: u8 = 33;
    /// IPv6 Routing header (RFC 8200 §4.4).
    pub const ROUTING: u8 = 43;
    /// IPv6 Fragment header (RFC 8200 §4.5).
    pub const FRAGMENT: u8 = 44;
    /// Encapsulating Security Payload (RFC 4303).
    pub const ESP: u8 = 50;
    /// Authentication Header (RFC 4302).
    pub const AH: u8 = 51;
    /// ICMPv6 (RFC 4443).
    pub const ICMPV6: u8 = 58;
    /// No Next Header (RFC 8200 §4.7).
    pub const NO_NEXT_HEADER: u8 = 59;
    /// IPv6 Destination Options (RFC 8200 §4.6).
    pub const DESTINATION_OPTIONS: u8 = 60;
    /// SCTP (RFC 9260).
    pub const SCTP: u8 = 132;
    /// UDP-Lite (RFC 3828).
    pub const UDP_LITE: u8 = 136;
}

/// The most extension headers the IPv6 walk follows before giving up; real packets carry a
/// handful (RFC 8200 §4.1 recommends each at most once, Destination Options at most twice).
pub const MAX_EXTENSION_HEADERS: usize = 16;

/// IP version of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum IpVersion {
    /// IPv4 (addresses kept IPv4-mapped).
    V4,
    /// IPv6.
    V6,
}

/// Where the port fields of a [`FlowKey`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum PortSource {
    /// No ports: a protocol without them, ESP, a later fragment, an ICMP message other than
    /// echo. Both port fields are 0.
    None,
    /// Transport ports (TCP, UDP, DCCP, SCTP, UDP-Lite).
    Transport,
    /// The identifier of an ICMP/ICMPv6 echo request or reply, in both port fields.
    EchoId,
}

/// The draft's 6-tuple (§5.3.1), the identity of a flow in the flow table.
///
/// IPv4 flows keep their addresses as IPv4-mapped IPv6 addresses and a flow label of 0.
// Aligned so that a key's copies on the stack are aligned words, which the hash then reads back
// without store-forwarding stalls.
#[derive(Debug, Clone, Copy, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[repr(align(16))]
pub struct FlowKey {
    /// Source address (the correspondent node, for downlink).
    pub src: Ipv6Addr,
    /// Destination address (one of the mobile node's addresses, for downlink).
    pub dst: Ipv6Addr,
    /// Source port, or echo identifier; 0 without ports.
    pub src_port: u16,
    /// Destination port, or echo identifier; 0 without ports.
    pub dst_port: u16,
    /// IPv6 flow label (20 bits, RFC 8200 §6); 0 for IPv4. Higher bits are not part of the
    /// flow's identity: keys differing only there are equal (and [`FlowKey::v6`] clears them).
    pub flow_label: u32,
    /// The L4 protocol: the last Next Header of the walk (or IPv4 Protocol).
    pub protocol: u8,
    /// IPv4 or IPv6.
    pub version: IpVersion,
    /// What the port fields hold.
    pub ports: PortSource,
}

// Equality and hashing on whole words: the key is hashed and compared once per packet, and the
// derived forms go through a byte-wise compare of each address.
impl PartialEq for FlowKey {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        u128::from(self.src) == u128::from(other.src)
            && u128::from(self.dst) == u128::from(other.dst)
            && self.packed_tail() == other.packed_tail()
    }
}

/// Ordered by source, destination, ports, flow label, protocol, version and port source: the
/// fields in declaration order, as [`PartialEq`] sees them.
impl Ord for FlowKey {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        (u128::from(self.src), u128::from(self.dst), self.packed_tail()).cmp(&(
            u128::from(other.src),
            u128::from(other.dst),
            other.packed_tail(),
        ))
    }
}

impl PartialOrd for FlowKey {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The 128-bit product of `a` and `b`, its halves folded together.
#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

/// A key (its addresses and [`FlowKey::packed_tail`]) folded into one word with two
/// multiplications.
#[inline]
pub(crate) fn fold_key(src: u128, dst: u128, tail: u64) -> u64 {
    let a = folded_multiply((src >> 64) as u64 ^ 0x243f_6a88_85a3_08d3, src as u64 ^ 0x1319_8a2e_0370_7344);
    let b = folded_multiply((dst >> 64) as u64 ^ 0xa409_3822_299f_31d0, dst as u64 ^ tail);
    a ^ b.rotate_left(29)
}

impl Hash for FlowKey {
    /// Folds the key into one word with two multiplications, then hands that word to the map's
    /// hasher (which mixes it once more).
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(fold_key(u128::from(self.src), u128::from(self.dst), self.packed_tail()));
    }
}

impl FlowKey {
    /// An IPv6 key.
    pub fn v6(src: Ipv6Addr, dst: Ipv6Addr, protocol: u8, ports: Option<(u16, u16)>, flow_label: u32) -> Self {
        let (src_port, dst_port, source) = match ports {
            Some((s, d)) => (s, d, PortSource::Transport),
            None => (0, 0, PortSource::None),
        };
        let flow_label = flow_label & 0xF_FFFF;
        Self { src, dst, src_port, dst_port, flow_label, protocol, version: IpVersion::V6, ports: source }
    }

    /// An IPv4 key.
    pub fn v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, ports: Option<(u16, u16)>) -> Self {
        let mut key = Self::v6(src.to_ipv6_mapped(), dst.to_ipv6_mapped(), protocol, ports, 0);
        key.version = IpVersion::V4;
        key
    }

    /// The source address in its own family.
    pub fn src_ip(&self) -> IpAddr {
        self.family_addr(self.src)
    }

    /// The destination address in its own family.
    pub fn dst_ip(&self) -> IpAddr {
        self.family_addr(self.dst)
    }

    /// The ports, when the key has transport ports.
    pub fn transport_ports(&self) -> Option<(u16, u16)> {
        (self.ports == PortSource::Transport).then_some((self.src_port, self.dst_port))
    }

    /// The same key without ports: what a later fragment is keyed by when its first fragment
    /// was not seen.
    pub fn without_ports(&self) -> Self {
        Self { src_port: 0, dst_port: 0, ports: PortSource::None, ..*self }
    }

    fn family_addr(&self, addr: Ipv6Addr) -> IpAddr {
        match (self.version, addr.to_ipv4_mapped()) {
            (IpVersion::V4, Some(v4)) => IpAddr::V4(v4),
            _ => IpAddr::V6(addr),
        }
    }

    /// Ports, flow label, protocol, version and port source in one word.
    #[inline]
    pub(crate) fn packed_tail(&self) -> u64 {
        (u64::from(self.src_port) << 48)
            | (u64::from(self.dst_port) << 32)
            | (u64::from(self.flow_label & 0xF_FFFF) << 12)
            | (u64::from(self.protocol) << 4)
            | ((self.version as u64) << 2)
            | self.ports as u64
    }
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (src, dst) = (self.src_ip(), self.dst_ip());
        match self.ports {
            PortSource::Transport => {
                write!(f, "[{src}]:{} > [{dst}]:{} proto {}", self.src_port, self.dst_port, self.protocol)?
            }
            PortSource::EchoId => write!(f, "{src} > {dst} proto {} echo id {}", self.protocol, self.src_port)?,
            PortSource::None => write!(f, "{src} > {dst} proto {}", self.protocol)?,
        }
        if self.version == IpVersion::V6 {
            write!(f, " fl {:#x}", self.flow_label)?;
        }
        Ok(())
    }
}

/// Fragmentation of a packet (RFC 8200 §4.5 Fragment header, RFC 791 flags and offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Fragment {
    /// Identification (16 bits for IPv4, 32 for IPv6).
    pub id: u32,
    /// Fragment offset, in 8-octet units.
    pub offset: u16,
    /// More Fragments.
    pub more: bool,
}

impl Fragment {
    /// The first fragment of a fragmented datagram: it carries the upper-layer header.
    pub fn is_first(&self) -> bool {
        self.offset == 0 && self.more
    }

    /// A later fragment: no upper-layer header.
    pub fn is_later(&self) -> bool {
        self.offset != 0
    }

    /// An atomic fragment (RFC 6946): a Fragment header on an unfragmented packet, processed
    /// as if it were not there.
    pub fn is_atomic(&self) -> bool {
        self.offset == 0 && !self.more
    }
}

/// A classified packet: its flow key and the fields a policy may look at on a flow's first
/// packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PacketInfo {
    /// The flow the packet belongs to.
    pub key: FlowKey,
    /// IPv6 Traffic Class, or IPv4 TOS/DS octet.
    pub traffic_class: u8,
    /// The SPI of the first ESP or AH header, if any.
    pub spi: Option<u32>,
    /// The length the IP header declares (IPv6: 40 + Payload Length, or the buffer length for
    /// a jumbogram; IPv4: Total Length).
    pub length: u32,
    /// Fragmentation, when the packet is a fragment (atomic fragments included).
    pub fragment: Option<Fragment>,
}

impl PacketInfo {
    /// A packet of `key` with no traffic class, SPI or fragmentation, of `length` octets: the
    /// input of a policy decision when no packet is at hand.
    pub fn from_key(key: FlowKey, length: u32) -> Self {
        Self { key, traffic_class: 0, spi: None, length, fragment: None }
    }
}

/// Why a packet could not be classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum ClassifyError {
    /// The buffer, or the length the IP header declares, ends inside `header`.
    Truncated {
        /// The header being read.
        header: &'static str,
        /// Octets from the start of the packet needed to read it.
        needed: usize,
        /// Octets available.
        available: usize,
    },
    /// The version nibble is neither 4 nor 6.
    UnknownVersion(u8),
    /// IPv4 IHL below 5 (RFC 791).
    Ipv4HeaderLength(u8),
    /// IPv4 Total Length shorter than the header.
    Ipv4TotalLength {
        /// Total Length.
        total: u16,
        /// Header length (IHL × 4).
        header: usize,
    },
    /// A Hop-by-Hop Options header not immediately after the IPv6 header (RFC 8200 §4.1).
    HopByHopNotFirst {
        /// Its offset.
        offset: usize,
    },
    /// A second Fragment header in one packet.
    RepeatedFragmentHeader {
        /// Its offset.
        offset: usize,
    },
    /// An Authentication Header whose Payload Len is below the fixed part (RFC 4302 §2.2).
    AuthenticationHeaderLength {
        /// Its offset.
        offset: usize,
    },
    /// More than [`MAX_EXTENSION_HEADERS`] extension headers.
    TooManyExtensionHeaders,
}

impl fmt::Display for ClassifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { header, needed, available } => {
                write!(f, "truncated {header}: {needed} octets needed, {available} available")
            }
            Self::UnknownVersion(v) => write!(f, "IP version {v} is neither 4 nor 6"),
            Self::Ipv4HeaderLength(ihl) => write!(f, "IPv4 header length {ihl} below 5 words"),
            Self::Ipv4TotalLength { total, header } => {
                write!(f, "IPv4 total length {total} shorter than its {header}-octet header")
            }
            Self::HopByHopNotFirst { offset } => {
                write!(f, "Hop-by-Hop Options header at offset {offset}, not right after the IPv6 header")
            }
            Self::RepeatedFragmentHeader { offset } => {
                write!(f, "second Fragment header at offset {offset}")
            }
            Self::AuthenticationHeaderLength { offset } => {
                write!(f, "Authentication Header at offset {offset} shorter than 12 octets")
            }
            Self::TooManyExtensionHeaders => {
                write!(f, "more than {MAX_EXTENSION_HEADERS} extension headers")
            }
        }
    }
}

impl std::error::Error for ClassifyError {}

/// Bounds-checked reads over the part of the buffer the IP header declares.
struct Octets<'a> {
    data: &'a [u8],
}

impl Octets<'_> {
    fn truncated(&self, header: &'static str, needed: usize) -> ClassifyError {
        ClassifyError::Truncated { header, needed, available: self.data.len() }
    }

    #[inline]
    fn need(&self, header: &'static str, at: usize, len: usize) -> Result<(), ClassifyError> {
        let needed = at.saturating_add(len);
        if needed > self.data.len() {
            return Err(self.truncated(header, needed));
        }
        Ok(())
    }

    #[inline]
    fn u8(&self, header: &'static str, at: usize) -> Result<u8, ClassifyError> {
        self.data.get(at).copied().ok_or_else(|| self.truncated(header, at.saturating_add(1)))
    }

    #[inline]
    fn u16(&self, header: &'static str, at: usize) -> Result<u16, ClassifyError> {
        self.data
            .get(at..)
            .and_then(|s| s.first_chunk::<2>())
            .map(|b| u16::from_be_bytes(*b))
            .ok_or_else(|| self.truncated(header, at.saturating_add(2)))
    }

    #[inline]
    fn u32(&self, header: &'static str, at: usize) -> Result<u32, ClassifyError> {
        self.data
            .get(at..)
            .and_then(|s| s.first_chunk::<4>())
            .map(|b| u32::from_be_bytes(*b))
            .ok_or_else(|| self.truncated(header, at.saturating_add(4)))
    }

    #[inline]
    fn array4(&self, header: &'static str, at: usize) -> Result<[u8; 4], ClassifyError> {
        self.data
            .get(at..)
            .and_then(|s| s.first_chunk::<4>())
            .copied()
            .ok_or_else(|| self.truncated(header, at.saturating_add(4)))
    }
}

/// What the upper-layer header at `at` adds to the key: ports (or echo identifier) and SPI.
#[inline]
fn upper_layer(
    o: &Octets<'_>,
    protocol: u8,
    at: usize,
    v6: bool,
) -> Result<(u16, u16, PortSource, Option<u32>), ClassifyError> {
    use protocol::*;
    Ok(match protocol {
        TCP | UDP | DCCP | SCTP | UDP_LITE => {
            let header = match protocol {
                TCP => "TCP header",
                UDP => "UDP header",
                _ => "transport header",
            };
            (o.u16(header, at)?, o.u16(header, at + 2)?, PortSource::Transport, None)
        }
        ICMPV6 if v6 => {
            let kind = o.u8("ICMPv6 header", at)?;
            // RFC 4443 §4.1, §4.2: Echo Request 128, Echo Reply 129; Identifier at octet 4.
            if kind == 128 || kind == 129 {
                let id = o.u16("ICMPv6 echo", at + 4)?;
                (id, id, PortSource::EchoId, None)
            } else {
                (0, 0, PortSource::None, None)
            }
        }
        ICMP if !v6 => {
            let kind = o.u8("ICMP header", at)?;
            // RFC 792: Echo 8, Echo Reply 0; Identifier at octet 4.
            if kind == 8 || kind == 0 {
                let id = o.u16("ICMP echo", at + 4)?;
                (id, id, PortSource::EchoId, None)
            } else {
                (0, 0, PortSource::None, None)
            }
        }
        // RFC 4303 §2: the SPI is the first word; everything after it is encrypted.
        ESP => (0, 0, PortSource::None, Some(o.u32("ESP header", at)?)),
        _ => (0, 0, PortSource::None, None),
    })
}

/// Classifies one packet starting at its IP header.
#[inline]
pub fn classify(packet: &[u8]) -> Result<PacketInfo, ClassifyError> {
    let first = *packet.first().ok_or(ClassifyError::Truncated { header: "IP header", needed: 1, available: 0 })?;
    match first >> 4 {
        6 => classify_v6(packet),
        4 => classify_v4(packet),
        v => Err(ClassifyError::UnknownVersion(v)),
    }
}

#[inline]
fn classify_v6(packet: &[u8]) -> Result<PacketInfo, ClassifyError> {
    use protocol::*;
    // The fixed header as an array: its fields are read without further checks.
    let Some(h) = packet.first_chunk::<40>() else {
        return Err(ClassifyError::Truncated { header: "IPv6 header", needed: 40, available: packet.len() });
    };
    let word = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let payload_len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    // A Payload Length of 0 is a jumbogram (RFC 2675) or an empty payload: the buffer decides.
    let (declared, length) = if payload_len == 0 {
        (packet.len(), u32::try_from(packet.len()).unwrap_or(u32::MAX))
    } else {
        (40 + payload_len, (40 + payload_len) as u32)
    };
    let o = Octets { data: packet.get(..declared.min(packet.len())).unwrap_or(packet) };
    let traffic_class = ((word >> 20) & 0xff) as u8;
    let flow_label = word & 0xF_FFFF;
    // Through integers, not byte arrays: the key is then stored as words, which reading it back
    // for the hash can forward (a 16-octet copy followed by 8-octet reads stalls).
    let word128 = |at: usize| h.get(at..).and_then(|s| s.first_chunk::<16>()).map_or(0, |b| u128::from_be_bytes(*b));
    let (src, dst) = (Ipv6Addr::from_bits(word128(8)), Ipv6Addr::from_bits(word128(24)));

    let mut next = h[6];
    let mut at = 40;
    let mut fragment: Option<Fragment> = None;
    let mut spi = None;
    let mut count = 0usize;
    while let HOP_BY_HOP | ROUTING | DESTINATION_OPTIONS | FRAGMENT | AH = next {
        count += 1;
        if count > MAX_EXTENSION_HEADERS {
            return Err(ClassifyError::TooManyExtensionHeaders);
        }
        match next {
            HOP_BY_HOP | ROUTING | DESTINATION_OPTIONS => {
                // RFC 8200 §4.3: "The Hop-by-Hop Options header, when present, must immediately
                // follow the IPv6 header".
                if next == HOP_BY_HOP && at != 40 {
                    return Err(ClassifyError::HopByHopNotFirst { offset: at });
                }
                let header = match next {
                    HOP_BY_HOP => "Hop-by-Hop Options header",
                    ROUTING => "Routing header",
                    _ => "Destination Options header",
                };
                let len = (usize::from(o.u8(header, at + 1)?) + 1) * 8;
                o.need(header, at, len)?;
                next = o.u8(header, at)?;
                at += len;
            }
            FRAGMENT => {
                if fragment.is_some() {
                    return Err(ClassifyError::RepeatedFragmentHeader { offset: at });
                }
                o.need("Fragment header", at, 8)?;
                let field = o.u16("Fragment header", at + 2)?;
                let frag = Fragment { id: o.u32("Fragment header", at + 4)?, offset: field >> 3, more: field & 1 != 0 };
                next = o.u8("Fragment header", at)?;
                at += 8;
                fragment = Some(frag);
                if frag.is_later() {
                    // RFC 8200 §4.5: only the first fragment carries the upper-layer header.
                    let key = FlowKey::v6(src, dst, next, None, flow_label);
                    return Ok(PacketInfo { key, traffic_class, spi, length, fragment });
                }
            }
            _ => {
                // AH (RFC 4302 §2.2): Payload Len is the length in 32-bit words minus 2.
                o.need("Authentication Header", at, 12)?;
                let len = (usize::from(o.u8("Authentication Header", at + 1)?) + 2) * 4;
                if len < 12 {
                    return Err(ClassifyError::AuthenticationHeaderLength { offset: at });
                }
                o.need("Authentication Header", at, len)?;
                spi = spi.or(Some(o.u32("Authentication Header", at + 4)?));
                next = o.u8("Authentication Header", at)?;
                at += len;
            }
        }
    }
    let (src_port, dst_port, ports, upper_spi) = upper_layer(&o, next, at, true)?;
    let key = FlowKey { src, dst, src_port, dst_port, flow_label, protocol: next, version: IpVersion::V6, ports };
    Ok(PacketInfo { key, traffic_class, spi: spi.or(upper_spi), length, fragment })
}

#[inline]
fn classify_v4(packet: &[u8]) -> Result<PacketInfo, ClassifyError> {
    use protocol::*;
    let whole = Octets { data: packet };
    let first = whole.u8("IPv4 header", 0)?;
    let ihl = first & 0x0f;
    if ihl < 5 {
        return Err(ClassifyError::Ipv4HeaderLength(ihl));
    }
    let header_len = usize::from(ihl) * 4;
    whole.need("IPv4 header", 0, header_len)?;
    let total = whole.u16("IPv4 header", 2)?;
    if usize::from(total) < header_len {
        return Err(ClassifyError::Ipv4TotalLength { total, header: header_len });
    }
    let o = Octets { data: packet.get(..usize::from(total).min(packet.len())).unwrap_or(packet) };
    let traffic_class = o.u8("IPv4 header", 1)?;
    let id = o.u16("IPv4 header", 4)?;
    let field = o.u16("IPv4 header", 6)?;
    let more = field & 0x2000 != 0;
    let offset = field & 0x1fff;
    let mut next = o.u8("IPv4 header", 9)?;
    let src = Ipv4Addr::from(o.array4("IPv4 header", 12)?);
    let dst = Ipv4Addr::from(o.array4("IPv4 header", 16)?);
    let fragment = (more || offset != 0).then_some(Fragment { id: u32::from(id), offset, more });
    let length = u32::from(total);
    if offset != 0 {
        // RFC 791: only the fragment at offset 0 carries the upper-layer header.
        return Ok(PacketInfo { key: FlowKey::v4(src, dst, next, None), traffic_class, spi: None, length, fragment });
    }
    let mut at = header_len;
    let mut spi = None;
    let mut count = 0;
    while next == AH {
        count += 1;
        if count > MAX_EXTENSION_HEADERS {
            return Err(ClassifyError::TooManyExtensionHeaders);
        }
        o.need("Authentication Header", at, 12)?;
        let len = (usize::from(o.u8("Authentication Header", at + 1)?) + 2) * 4;
        if len < 12 {
            return Err(ClassifyError::AuthenticationHeaderLength { offset: at });
        }
        o.need("Authentication Header", at, len)?;
        spi = spi.or(Some(o.u32("Authentication Header", at + 4)?));
        next = o.u8("Authentication Header", at)?;
        at += len;
    }
    let (src_port, dst_port, ports, upper_spi) = upper_layer(&o, next, at, false)?;
    let mut key = FlowKey::v4(src, dst, next, None);
    key.src_port = src_port;
    key.dst_port = dst_port;
    key.ports = ports;
    Ok(PacketInfo { key, traffic_class, spi: spi.or(upper_spi), length, fragment })
}

/// What identifies a fragmented datagram: RFC 8200 §4.5 (source, destination, Identification)
/// and RFC 791 (source, destination, protocol, Identification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DatagramId {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    id: u32,
    /// The IPv4 protocol; 0 for IPv6.
    protocol: u8,
    version: IpVersion,
}

impl Hash for DatagramId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from(self.src));
        state.write_u128(u128::from(self.dst));
        state.write_u64(u64::from(self.id) << 16 | u64::from(self.protocol) << 8 | self.version as u64);
    }
}

impl DatagramId {
    fn of(info: &PacketInfo, fragment: &Fragment) -> Self {
        let protocol = match info.key.version {
            IpVersion::V4 => info.key.protocol,
            IpVersion::V6 => 0,
        };
        Self { src: info.key.src, dst: info.key.dst, id: fragment.id, protocol, version: info.key.version }
    }
}

/// Sizes of the fragment reassociation cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentCacheConfig {
    /// Datagrams remembered at most; the oldest is forgotten first.
    pub capacity: usize,
    /// How long after its first fragment a datagram is remembered (the reassembly time of
    /// RFC 8200 §4.5 is 60 s; fragments of one datagram normally arrive within milliseconds).
    pub lifetime: Now,
}

impl Default for FragmentCacheConfig {
    fn default() -> Self {
        Self { capacity: 4096, lifetime: Now::from_secs(30) }
    }
}

/// Counters of the fragment cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FragmentStats {
    /// Later fragments given the flow of their first fragment.
    pub reassociated: u64,
    /// Later fragments whose first fragment was not seen (or forgotten): keyed without ports.
    pub unmatched: u64,
    /// Datagrams forgotten to make room.
    pub evicted: u64,
}

/// Flow identification with fragment reassociation.
///
/// The first fragment of a datagram carries its ports; the classifier remembers (source,
/// destination, Identification[, protocol]) → its flow key, and gives that key to the later
/// fragments of the same datagram. A later fragment whose first fragment was not seen (it was
/// reordered behind it, or forgotten) is keyed without ports ([`FlowKey::without_ports`]).
/// Memory is bounded by [`FragmentCacheConfig::capacity`]: when full, the oldest datagram is
/// forgotten.
#[derive(Debug, Clone)]
pub struct Classifier {
    config: FragmentCacheConfig,
    datagrams: HashMap<DatagramId, (FlowKey, Now), FixedState>,
    order: VecDeque<(DatagramId, Now)>,
    stats: FragmentStats,
}

impl Default for Classifier {
    fn default() -> Self {
        Self::new(FragmentCacheConfig::default())
    }
}

impl Classifier {
    /// A classifier with an empty fragment cache.
    pub fn new(config: FragmentCacheConfig) -> Self {
        Self { config, datagrams: HashMap::default(), order: VecDeque::new(), stats: FragmentStats::default() }
    }

    /// Classifies `packet`, giving a later fragment the key of its datagram's first fragment
    /// when that was seen within the cache's lifetime.
    #[inline]
    pub fn classify(&mut self, now: Now, packet: &[u8]) -> Result<PacketInfo, ClassifyError> {
        let mut info = classify(packet)?;
        if let Some(fragment) = info.fragment {
            self.fragment(now, &mut info, &fragment);
        }
        Ok(info)
    }

    /// Gives a classified fragment the key of its datagram's first fragment (or remembers a
    /// first fragment); a packet that is no fragment is left alone.
    #[cold]
    pub fn reassociate(&mut self, now: Now, info: &mut PacketInfo) {
        if let Some(fragment) = info.fragment {
            self.fragment(now, info, &fragment);
        }
    }

    /// Counters.
    pub fn stats(&self) -> FragmentStats {
        self.stats
    }

    /// Datagrams remembered now.
    pub fn remembered(&self) -> usize {
        self.datagrams.len()
    }

    fn fragment(&mut self, now: Now, info: &mut PacketInfo, fragment: &Fragment) {
        let id = DatagramId::of(info, fragment);
        if fragment.is_first() {
            self.forget_expired(now);
            if let Some(entry) = self.datagrams.get_mut(&id) {
                // A repeated first fragment: same datagram, keep its age.
                entry.0 = info.key;
                return;
            }
            if self.config.capacity == 0 {
                return;
            }
            while self.datagrams.len() >= self.config.capacity {
                match self.order.pop_front() {
                    Some((old, _)) => {
                        self.datagrams.remove(&old);
                        self.stats.evicted += 1;
                    }
                    None => break,
                }
            }
            self.datagrams.insert(id, (info.key, now));
            self.order.push_back((id, now));
        } else if fragment.is_later() {
            match self.datagrams.get(&id) {
                Some((key, seen)) if now.saturating_sub(*seen) <= self.config.lifetime => {
                    info.key = *key;
                    self.stats.reassociated += 1;
                }
                _ => self.stats.unmatched += 1,
            }
        }
    }

    fn forget_expired(&mut self, now: Now) {
        while let Some((id, seen)) = self.order.front().copied() {
            if now.saturating_sub(seen) <= self.config.lifetime {
                break;
            }
            self.order.pop_front();
            self.datagrams.remove(&id);
        }
    }
}
