//! Binary traffic selectors (RFC 6088): the IPv4 (TS Format 1) and IPv6 (TS Format 2) formats
//! carried in the Traffic Selector sub-option of the Flow Identification mobility option
//! (RFC 6089 §4.2.1.4).
//!
//! This module owns the selector body only, the octets after `TS Format` and `Reserved`:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Sub-opt Type=3 |  Sub-Opt Len  |   TS Format   |   Reserved    |  <- crate::flow
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Traffic Selector ...                                            <- this module
//! +-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Each selector is a flags word followed by only those fields whose flag is set, in flag order.
//! Flags come in Start/End pairs: Start alone matches one value, Start and End match the inclusive
//! range between them. [`FieldRange`] keeps `end` as an `Option` so that "Start only" and "Start
//! and End equal" stay distinct and every parsed selector emits back to the same octets.
//!
//! Receivers ignore reserved bits (RFC 6088 §3.1, §3.2), so they are not kept: a selector whose
//! reserved bits were set re-emits with them cleared. Likewise the high 8 bits of a flow label
//! field (RFC 6088 §3.2).

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};

use crate::error::{EmitError, Error, ErrorKind, Result};

/// TS Format of the IPv4 binary traffic selector (RFC 6088 §3).
pub const TS_FORMAT_IPV4: u8 = 1;
/// TS Format of the IPv6 binary traffic selector (RFC 6088 §3).
pub const TS_FORMAT_IPV6: u8 = 2;

/// Length of the flags word and the reserved bits that follow it, in both formats.
const FLAGS_LEN: usize = 4;

/// The largest flow label value the wire carries: RFC 6088 §3.2 has the sender prefix the label
/// with 8 zero bits in a 32-bit field, leaving 24 bits. (IPv6 flow labels are 20 bits, RFC 8200
/// §6; the RFC's "24 bits" is its own wording, and values above `0xF_FFFF` match no packet.)
pub const FLOW_LABEL_MAX: u32 = 0x00FF_FFFF;

/// One Start/End pair of a selector: `start` alone matches exactly `start`; with `end` the
/// inclusive range `start..=end`.
///
/// `end: Some(start)` and `end: None` match the same values but are different wire encodings
/// (the End field is present or not), and both survive a parse/emit round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FieldRange<T> {
    /// The Start field.
    pub start: T,
    /// The End field, when present.
    pub end: Option<T>,
}

impl<T: Copy + PartialOrd> FieldRange<T> {
    /// A Start field alone: matches exactly `value`.
    pub const fn exact(value: T) -> Self {
        Self { start: value, end: None }
    }

    /// Start and End fields: matches `start..=end`.
    pub const fn new(start: T, end: T) -> Self {
        Self { start, end: Some(end) }
    }

    /// The last value matched: `end`, or `start` when there is no End field.
    pub fn last(&self) -> T {
        self.end.unwrap_or(self.start)
    }

    /// Whether `value` lies in `start..=last()` (RFC 6088: "inclusive of" both fields). A range
    /// whose end is below its start matches nothing.
    pub fn contains(&self, value: T) -> bool {
        self.start <= value && value <= self.last()
    }
}

impl<T: fmt::Display> fmt::Display for FieldRange<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.end {
            Some(end) => write!(f, "{}-{}", self.start, end),
            None => write!(f, "{}", self.start),
        }
    }
}

/// A fixed-width field of a binary traffic selector.
trait Field: Copy {
    const LEN: usize;
    fn read(octets: &[u8]) -> Option<Self>;
    fn write(self, out: &mut [u8]) -> Option<()>;
}

impl Field for Ipv6Addr {
    const LEN: usize = 16;
    fn read(octets: &[u8]) -> Option<Self> {
        <[u8; 16]>::try_from(octets.get(..16)?).ok().map(Ipv6Addr::from)
    }
    fn write(self, out: &mut [u8]) -> Option<()> {
        out.get_mut(..16)?.copy_from_slice(&self.octets());
        Some(())
    }
}

impl Field for Ipv4Addr {
    const LEN: usize = 4;
    fn read(octets: &[u8]) -> Option<Self> {
        <[u8; 4]>::try_from(octets.get(..4)?).ok().map(Ipv4Addr::from)
    }
    fn write(self, out: &mut [u8]) -> Option<()> {
        out.get_mut(..4)?.copy_from_slice(&self.octets());
        Some(())
    }
}

impl Field for u32 {
    const LEN: usize = 4;
    fn read(octets: &[u8]) -> Option<Self> {
        <[u8; 4]>::try_from(octets.get(..4)?).ok().map(u32::from_be_bytes)
    }
    fn write(self, out: &mut [u8]) -> Option<()> {
        out.get_mut(..4)?.copy_from_slice(&self.to_be_bytes());
        Some(())
    }
}

impl Field for u16 {
    const LEN: usize = 2;
    fn read(octets: &[u8]) -> Option<Self> {
        <[u8; 2]>::try_from(octets.get(..2)?).ok().map(u16::from_be_bytes)
    }
    fn write(self, out: &mut [u8]) -> Option<()> {
        out.get_mut(..2)?.copy_from_slice(&self.to_be_bytes());
        Some(())
    }
}

impl Field for u8 {
    const LEN: usize = 1;
    fn read(octets: &[u8]) -> Option<Self> {
        octets.first().copied()
    }
    fn write(self, out: &mut [u8]) -> Option<()> {
        *out.first_mut()? = self;
        Some(())
    }
}

/// Reads the fields of a selector body, once its flags have been checked and its length
/// computed, so a failed read cannot happen (it is still an error, never a panic).
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    truncated: Error,
}

impl Reader<'_> {
    /// The pair whose Start flag is `start` and End flag is `end`.
    fn pair<T: Field>(&mut self, start: bool, end: bool) -> Result<Option<FieldRange<T>>> {
        if !start {
            return Ok(None);
        }
        let first = self.field::<T>()?;
        let last = if end { Some(self.field::<T>()?) } else { None };
        Ok(Some(FieldRange { start: first, end: last }))
    }

    fn field<T: Field>(&mut self) -> Result<T> {
        let value = self.data.get(self.pos..).and_then(T::read).ok_or(self.truncated)?;
        self.pos += T::LEN;
        Ok(value)
    }
}

/// Writes the fields of a selector body.
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn pair<T: Field>(&mut self, range: &Option<FieldRange<T>>) -> core::result::Result<(), EmitError> {
        if let Some(range) = range {
            self.field(range.start)?;
            if let Some(end) = range.end {
                self.field(end)?;
            }
        }
        Ok(())
    }

    fn field<T: Field>(&mut self, value: T) -> core::result::Result<(), EmitError> {
        let needed = self.pos + T::LEN;
        let available = self.buf.len();
        self.buf
            .get_mut(self.pos..)
            .and_then(|out| value.write(out))
            .ok_or(EmitError::BufferTooSmall { needed, available })?;
        self.pos = needed;
        Ok(())
    }
}

/// Octets a pair takes on the wire.
fn pair_len<T: Field>(range: &Option<FieldRange<T>>) -> usize {
    match range {
        Some(FieldRange { end: Some(_), .. }) => 2 * T::LEN,
        Some(FieldRange { end: None, .. }) => T::LEN,
        None => 0,
    }
}

/// Start (bit 0) and End (bit 1) flags of a pair, as a 2-bit value.
fn pair_flags<T>(range: &Option<FieldRange<T>>) -> u16 {
    match range {
        Some(FieldRange { end: Some(_), .. }) => 0b11,
        Some(FieldRange { end: None, .. }) => 0b10,
        None => 0,
    }
}

/// Checks the flags word of a selector with `pairs` Start/End pairs (most significant first) of
/// the given widths, and returns the octets the body must have.
fn checked_len(flags: u16, pairs: &[(usize, &'static str)], offset: usize) -> Result<usize> {
    let mut len = FLAGS_LEN;
    for (i, &(width, end_name)) in pairs.iter().enumerate() {
        let start = flags & (0x8000 >> (2 * i)) != 0;
        let end = flags & (0x4000 >> (2 * i)) != 0;
        // RFC 6088 §3.1, §3.2: each End field "MUST NOT be included unless the Start ... field is
        // included".
        if end && !start {
            return Err(Error::new(ErrorKind::InvalidField { field: end_name }, offset));
        }
        len += width * (usize::from(start) + usize::from(end));
    }
    Ok(len)
}

/// The flags word at the head of `data`, and the reader positioned after it, once the whole
/// body has been checked against the flags.
fn open<'a>(data: &'a [u8], offset: usize, pairs: &[(usize, &'static str)]) -> Result<(u16, Reader<'a>)> {
    let truncated_flags = Error::new(ErrorKind::Truncated { needed: FLAGS_LEN, available: data.len() }, offset);
    let flags = data.get(..2).and_then(u16::read).ok_or(truncated_flags)?;
    if data.len() < FLAGS_LEN {
        return Err(truncated_flags);
    }
    let needed = checked_len(flags, pairs, offset)?;
    if data.len() < needed {
        return Err(Error::new(ErrorKind::Truncated { needed, available: data.len() }, offset));
    }
    if data.len() > needed {
        return Err(Error::new(ErrorKind::TrailingData { declared: needed, available: data.len() }, offset + needed));
    }
    let truncated = Error::new(ErrorKind::Truncated { needed, available: data.len() }, offset);
    Ok((flags, Reader { data, pos: FLAGS_LEN, truncated }))
}

/// Writes the flags word and the reserved bits after it.
fn write_flags(flags: u16, buf: &mut [u8]) -> core::result::Result<(), EmitError> {
    let available = buf.len();
    let out = buf.get_mut(..FLAGS_LEN).ok_or(EmitError::BufferTooSmall { needed: FLAGS_LEN, available })?;
    let [hi, lo] = flags.to_be_bytes();
    out.copy_from_slice(&[hi, lo, 0, 0]);
    Ok(())
}

/// Writes `name=value` for a present pair, a space before every pair but the first.
fn show_pair<T>(
    f: &mut fmt::Formatter<'_>,
    sep: &mut &'static str,
    name: &str,
    range: &Option<FieldRange<T>>,
    show: fn(&T, &mut fmt::Formatter<'_>) -> fmt::Result,
) -> fmt::Result {
    if let Some(range) = range {
        write!(f, "{sep}{name}=")?;
        *sep = " ";
        show(&range.start, f)?;
        if let Some(end) = &range.end {
            f.write_str("-")?;
            show(end, f)?;
        }
    }
    Ok(())
}

fn decimal<T: fmt::Display>(value: &T, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{value}")
}

fn hex(value: &u32, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{value:#x}")
}

/// An IPv6 binary traffic selector (RFC 6088 §3.2, TS Format 2). Every absent pair is a
/// wildcard.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |A|B|C|D|E|F|G|H|I|J|K|L|M|N|O|P|          Reserved             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |            (A)Start Source Address (16 octets)                |
/// |            (B)End Source Address (16 octets)                  |
/// |            (C)Start Destination Address (16 octets)           |
/// |            (D)End Destination Address (16 octets)             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                     (E)Start IPsec SPI                        |
/// |                      (F)End IPsec SPI                         |
/// |                      (G)Start Flow Label                      |
/// |                       (H)End Flow Label                       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   (I)Start Source port        |   (J)End Source port          |
/// |   (K)Start Destination port   |   (L)End Destination port     |
/// |  (M)Start TC  |  (N)End TC    | (O)Start NH   | (P) End NH    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Only the fields whose flag is set are present, in the order A..P. The flow label fields are
/// 32 bits wide: the sender prefixes the label with 8 zero bits and the receiver ignores them
/// (RFC 6088 §3.2), so `flow_label` values are at most [`FLOW_LABEL_MAX`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Ipv6Selector {
    /// Source address (A/B): the correspondent node, as the mobility anchor sees the flow.
    pub src_addr: Option<FieldRange<Ipv6Addr>>,
    /// Destination address (C/D): one of the mobile node's home addresses.
    pub dst_addr: Option<FieldRange<Ipv6Addr>>,
    /// IPsec SPI (E/F).
    pub spi: Option<FieldRange<u32>>,
    /// Flow label (G/H), at most [`FLOW_LABEL_MAX`].
    pub flow_label: Option<FieldRange<u32>>,
    /// Source port (I/J).
    pub src_port: Option<FieldRange<u16>>,
    /// Destination port (K/L).
    pub dst_port: Option<FieldRange<u16>>,
    /// Traffic class (M/N); only its 6 high (DS) bits count in comparisons (RFC 6088 §3.2).
    pub traffic_class: Option<FieldRange<u8>>,
    /// Next header (O/P).
    pub next_header: Option<FieldRange<u8>>,
}

/// Widths and End-flag names of the IPv6 selector's pairs, A/B first.
const IPV6_PAIRS: [(usize, &str); 8] = [
    (16, "End Source Address (B) without Start Source Address (A)"),
    (16, "End Destination Address (D) without Start Destination Address (C)"),
    (4, "End IPsec SPI (F) without Start IPsec SPI (E)"),
    (4, "End Flow Label (H) without Start Flow Label (G)"),
    (2, "End Source Port (J) without Start Source Port (I)"),
    (2, "End Destination Port (L) without Start Destination Port (K)"),
    (1, "End TC (N) without Start TC (M)"),
    (1, "End NH (P) without Start NH (O)"),
];

/// The packet fields a flow-mobility rule matches on (design draft §5.3.1): source and
/// destination address, ports, flow label and L4 protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SixTuple {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Source port (0 for protocols without ports).
    pub sport: u16,
    /// Destination port (0 for protocols without ports).
    pub dport: u16,
    /// Flow label (20 bits).
    pub flow_label: u32,
    /// Next header: the L4 protocol.
    pub next_header: u8,
}

impl Ipv6Selector {
    /// A selector matching exactly one 6-tuple: every field a Start alone, no IPsec SPI or
    /// traffic class.
    pub fn exact_six_tuple(
        src: Ipv6Addr,
        dst: Ipv6Addr,
        sport: u16,
        dport: u16,
        flow_label: u32,
        next_header: u8,
    ) -> Self {
        Self {
            src_addr: Some(FieldRange::exact(src)),
            dst_addr: Some(FieldRange::exact(dst)),
            spi: None,
            flow_label: Some(FieldRange::exact(flow_label)),
            src_port: Some(FieldRange::exact(sport)),
            dst_port: Some(FieldRange::exact(dport)),
            traffic_class: None,
            next_header: Some(FieldRange::exact(next_header)),
        }
    }

    /// Whether `packet` falls in every present pair (ranges inclusive, absent pairs wildcards).
    ///
    /// A [`SixTuple`] carries no IPsec SPI and no traffic class, so a selector that constrains
    /// either cannot be checked against it and does not match.
    pub fn matches(&self, packet: &SixTuple) -> bool {
        fn within<T: Copy + PartialOrd>(range: &Option<FieldRange<T>>, value: T) -> bool {
            range.as_ref().is_none_or(|r| r.contains(value))
        }
        self.spi.is_none()
            && self.traffic_class.is_none()
            && within(&self.src_addr, packet.src)
            && within(&self.dst_addr, packet.dst)
            && within(&self.flow_label, packet.flow_label)
            && within(&self.src_port, packet.sport)
            && within(&self.dst_port, packet.dport)
            && within(&self.next_header, packet.next_header)
    }

    /// Parses a selector body (after TS Format and Reserved); `offset` is the MH offset of
    /// `data[0]`, to which error offsets are relative.
    pub fn parse(data: &[u8], offset: usize) -> Result<Self> {
        let (flags, mut r) = open(data, offset, &IPV6_PAIRS)?;
        let bit = |n: u32| flags & (0x8000 >> n) != 0;
        let mut selector = Self {
            src_addr: r.pair(bit(0), bit(1))?,
            dst_addr: r.pair(bit(2), bit(3))?,
            spi: r.pair(bit(4), bit(5))?,
            flow_label: r.pair(bit(6), bit(7))?,
            src_port: r.pair(bit(8), bit(9))?,
            dst_port: r.pair(bit(10), bit(11))?,
            traffic_class: r.pair(bit(12), bit(13))?,
            next_header: r.pair(bit(14), bit(15))?,
        };
        // RFC 6088 §3.2: "The receiver SHOULD ignore the first 8 bits of this field".
        if let Some(fl) = &mut selector.flow_label {
            fl.start &= FLOW_LABEL_MAX;
            if let Some(end) = &mut fl.end {
                *end &= FLOW_LABEL_MAX;
            }
        }
        Ok(selector)
    }

    /// Octets of the selector body.
    pub fn buffer_len(&self) -> usize {
        FLAGS_LEN
            + pair_len(&self.src_addr)
            + pair_len(&self.dst_addr)
            + pair_len(&self.spi)
            + pair_len(&self.flow_label)
            + pair_len(&self.src_port)
            + pair_len(&self.dst_port)
            + pair_len(&self.traffic_class)
            + pair_len(&self.next_header)
    }

    /// The flags word: A in the most significant bit.
    pub fn flags(&self) -> u16 {
        (pair_flags(&self.src_addr) << 14)
            | (pair_flags(&self.dst_addr) << 12)
            | (pair_flags(&self.spi) << 10)
            | (pair_flags(&self.flow_label) << 8)
            | (pair_flags(&self.src_port) << 6)
            | (pair_flags(&self.dst_port) << 4)
            | (pair_flags(&self.traffic_class) << 2)
            | pair_flags(&self.next_header)
    }

    /// Alignment `xn` of the Traffic Selector sub-option's Type octet (RFC 6088 §3.2): 8n with
    /// an address, else 4n with an SPI or flow label, else 2n with a port, else none (1).
    pub fn alignment(&self) -> usize {
        if self.src_addr.is_some() || self.dst_addr.is_some() {
            8
        } else if self.spi.is_some() || self.flow_label.is_some() {
            4
        } else if self.src_port.is_some() || self.dst_port.is_some() {
            2
        } else {
            1
        }
    }

    /// Writes the selector body into the first `buffer_len()` octets of `buf`.
    ///
    /// A flow label above [`FLOW_LABEL_MAX`] is [`EmitError::InvalidField`]: RFC 6088 §3.2 has
    /// the sender put 8 zero bits before it.
    pub fn emit(&self, buf: &mut [u8]) -> core::result::Result<(), EmitError> {
        let needed = self.buffer_len();
        if buf.len() < needed {
            return Err(EmitError::BufferTooSmall { needed, available: buf.len() });
        }
        // RFC 6088 §3.2: "the sender of this option MUST prefix the flow label value with 8
        // bits of "0"".
        if self.flow_label.is_some_and(|fl| fl.start.max(fl.last()) > FLOW_LABEL_MAX) {
            return Err(EmitError::InvalidField { field: "flow label" });
        }
        write_flags(self.flags(), buf)?;
        let mut w = Writer { buf, pos: FLAGS_LEN };
        w.pair(&self.src_addr)?;
        w.pair(&self.dst_addr)?;
        w.pair(&self.spi)?;
        w.pair(&self.flow_label)?;
        w.pair(&self.src_port)?;
        w.pair(&self.dst_port)?;
        w.pair(&self.traffic_class)?;
        w.pair(&self.next_header)
    }
}

impl fmt::Display for Ipv6Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("v6{")?;
        let mut sep = "";
        show_pair(f, &mut sep, "src", &self.src_addr, decimal)?;
        show_pair(f, &mut sep, "dst", &self.dst_addr, decimal)?;
        show_pair(f, &mut sep, "spi", &self.spi, hex)?;
        show_pair(f, &mut sep, "fl", &self.flow_label, hex)?;
        show_pair(f, &mut sep, "sport", &self.src_port, decimal)?;
        show_pair(f, &mut sep, "dport", &self.dst_port, decimal)?;
        show_pair(f, &mut sep, "tc", &self.traffic_class, decimal)?;
        show_pair(f, &mut sep, "nh", &self.next_header, decimal)?;
        if sep.is_empty() {
            f.write_str("any")?;
        }
        f.write_str("}")
    }
}

/// An IPv4 binary traffic selector (RFC 6088 §3.1, TS Format 1). Every absent pair is a
/// wildcard.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |A|B|C|D|E|F|G|H|I|J|K|L|M|N|          Reserved                 |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                 (A)Start Source Address                       |
/// |                 (B)End Source Address                         |
/// |                 (C)Start Destination Address                  |
/// |                 (D)End Destination Address                    |
/// |                     (E)Start IPsec SPI                        |
/// |                      (F)End IPsec SPI                         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   (G)Start Source port        |   (H)End Source port          |
/// |   (I)Start Destination port   |   (J)End Destination port     |
/// |  (K)Start DS  |  (L)End DS    |(M)Start Prot. | (N) End Prot. |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// 14 flags and 18 reserved bits; only the fields whose flag is set are present, in order A..N.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Ipv4Selector {
    /// Source address (A/B).
    pub src_addr: Option<FieldRange<Ipv4Addr>>,
    /// Destination address (C/D).
    pub dst_addr: Option<FieldRange<Ipv4Addr>>,
    /// IPsec SPI (E/F).
    pub spi: Option<FieldRange<u32>>,
    /// Source port (G/H).
    pub src_port: Option<FieldRange<u16>>,
    /// Destination port (I/J).
    pub dst_port: Option<FieldRange<u16>>,
    /// DS / type of service (K/L); only its 6 high bits count in comparisons (RFC 6088 §3.1).
    pub ds: Option<FieldRange<u8>>,
    /// Protocol (M/N).
    pub protocol: Option<FieldRange<u8>>,
}

/// Widths and End-flag names of the IPv4 selector's pairs, A/B first.
const IPV4_PAIRS: [(usize, &str); 7] = [
    (4, "End Source Address (B) without Start Source Address (A)"),
    (4, "End Destination Address (D) without Start Destination Address (C)"),
    (4, "End IPsec SPI (F) without Start IPsec SPI (E)"),
    (2, "End Source Port (H) without Start Source Port (G)"),
    (2, "End Destination Port (J) without Start Destination Port (I)"),
    (1, "End DS (L) without Start DS (K)"),
    (1, "End Protocol (N) without Start Protocol (M)"),
];

impl Ipv4Selector {
    /// Parses a selector body (after TS Format and Reserved); `offset` is the MH offset of
    /// `data[0]`, to which error offsets are relative. The two low bits of the flags word are
    /// reserved and ignored.
    pub fn parse(data: &[u8], offset: usize) -> Result<Self> {
        let (flags, mut r) = open(data, offset, &IPV4_PAIRS)?;
        let bit = |n: u32| flags & (0x8000 >> n) != 0;
        Ok(Self {
            src_addr: r.pair(bit(0), bit(1))?,
            dst_addr: r.pair(bit(2), bit(3))?,
            spi: r.pair(bit(4), bit(5))?,
            src_port: r.pair(bit(6), bit(7))?,
            dst_port: r.pair(bit(8), bit(9))?,
            ds: r.pair(bit(10), bit(11))?,
            protocol: r.pair(bit(12), bit(13))?,
        })
    }

    /// Octets of the selector body.
    pub fn buffer_len(&self) -> usize {
        FLAGS_LEN
            + pair_len(&self.src_addr)
            + pair_len(&self.dst_addr)
            + pair_len(&self.spi)
            + pair_len(&self.src_port)
            + pair_len(&self.dst_port)
            + pair_len(&self.ds)
            + pair_len(&self.protocol)
    }

    /// The flags word: A in the most significant bit, the two low bits reserved (zero).
    pub fn flags(&self) -> u16 {
        (pair_flags(&self.src_addr) << 14)
            | (pair_flags(&self.dst_addr) << 12)
            | (pair_flags(&self.spi) << 10)
            | (pair_flags(&self.src_port) << 8)
            | (pair_flags(&self.dst_port) << 6)
            | (pair_flags(&self.ds) << 4)
            | (pair_flags(&self.protocol) << 2)
    }

    /// Alignment `xn` of the Traffic Selector sub-option's Type octet (RFC 6088 §3.1): 4n with
    /// an address or SPI, else 2n with a port, else none (1).
    pub fn alignment(&self) -> usize {
        if self.src_addr.is_some() || self.dst_addr.is_some() || self.spi.is_some() {
            4
        } else if self.src_port.is_some() || self.dst_port.is_some() {
            2
        } else {
            1
        }
    }

    /// Writes the selector body into the first `buffer_len()` octets of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> core::result::Result<(), EmitError> {
        let needed = self.buffer_len();
        if buf.len() < needed {
            return Err(EmitError::BufferTooSmall { needed, available: buf.len() });
        }
        write_flags(self.flags(), buf)?;
        let mut w = Writer { buf, pos: FLAGS_LEN };
        w.pair(&self.src_addr)?;
        w.pair(&self.dst_addr)?;
        w.pair(&self.spi)?;
        w.pair(&self.src_port)?;
        w.pair(&self.dst_port)?;
        w.pair(&self.ds)?;
        w.pair(&self.protocol)
    }
}

impl fmt::Display for Ipv4Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("v4{")?;
        let mut sep = "";
        show_pair(f, &mut sep, "src", &self.src_addr, decimal)?;
        show_pair(f, &mut sep, "dst", &self.dst_addr, decimal)?;
        show_pair(f, &mut sep, "spi", &self.spi, hex)?;
        show_pair(f, &mut sep, "sport", &self.src_port, decimal)?;
        show_pair(f, &mut sep, "dport", &self.dst_port, decimal)?;
        show_pair(f, &mut sep, "ds", &self.ds, decimal)?;
        show_pair(f, &mut sep, "proto", &self.protocol, decimal)?;
        if sep.is_empty() {
            f.write_str("any")?;
        }
        f.write_str("}")
    }
}

/// The Traffic Selector field of a Traffic Selector sub-option (RFC 6089 §4.2.1.4), by TS
/// Format.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum TrafficSelector {
    /// IPv4 binary traffic selector (TS Format 1).
    Ipv4(Ipv4Selector),
    /// IPv6 binary traffic selector (TS Format 2).
    Ipv6(Ipv6Selector),
    /// Any other TS Format (0 is reserved, 3.. unassigned), its body kept byte for byte.
    Unknown {
        /// TS Format code; never 1 or 2 (emit refuses those).
        format: u8,
        /// The selector body as received.
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::serde_hex"))]
        data: Vec<u8>,
    },
}

impl TrafficSelector {
    /// Parses the selector body `data` of TS Format `format`; `offset` is the MH offset of
    /// `data[0]`, to which error offsets are relative.
    pub fn parse(format: u8, data: &[u8], offset: usize) -> Result<Self> {
        match format {
            TS_FORMAT_IPV4 => Ipv4Selector::parse(data, offset).map(Self::Ipv4),
            TS_FORMAT_IPV6 => Ipv6Selector::parse(data, offset).map(Self::Ipv6),
            format => Ok(Self::Unknown { format, data: data.to_vec() }),
        }
    }

    /// The TS Format code.
    pub fn format(&self) -> u8 {
        match self {
            Self::Ipv4(_) => TS_FORMAT_IPV4,
            Self::Ipv6(_) => TS_FORMAT_IPV6,
            Self::Unknown { format, .. } => *format,
        }
    }

    /// Octets of the selector body.
    pub fn buffer_len(&self) -> usize {
        match self {
            Self::Ipv4(s) => s.buffer_len(),
            Self::Ipv6(s) => s.buffer_len(),
            Self::Unknown { data, .. } => data.len(),
        }
    }

    /// Alignment `xn` of the Traffic Selector sub-option's Type octet (RFC 6088 §3.1, §3.2);
    /// 1 (none) for unknown formats.
    pub fn alignment(&self) -> usize {
        match self {
            Self::Ipv4(s) => s.alignment(),
            Self::Ipv6(s) => s.alignment(),
            Self::Unknown { .. } => 1,
        }
    }

    /// Writes the selector body into the first `buffer_len()` octets of `buf`.
    ///
    /// An `Unknown` with format 1 or 2 is [`EmitError::InvalidField`]: it would parse back as a
    /// different value.
    pub fn emit(&self, buf: &mut [u8]) -> core::result::Result<(), EmitError> {
        match self {
            Self::Ipv4(s) => s.emit(buf),
            Self::Ipv6(s) => s.emit(buf),
            Self::Unknown { format: TS_FORMAT_IPV4 | TS_FORMAT_IPV6, .. } => {
                Err(EmitError::InvalidField { field: "TS Format of an unknown traffic selector" })
            }
            Self::Unknown { data, .. } => {
                let available = buf.len();
                buf.get_mut(..data.len())
                    .ok_or(EmitError::BufferTooSmall { needed: data.len(), available })?
                    .copy_from_slice(data);
                Ok(())
            }
        }
    }
}

impl fmt::Display for TrafficSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ipv4(s) => s.fmt(f),
            Self::Ipv6(s) => s.fmt(f),
            Self::Unknown { format, data } => {
                write!(f, "ts{{format={format} data=")?;
                for b in data {
                    write!(f, "{b:02x}")?;
                }
                f.write_str("}")
            }
        }
    }
}

/// Strategies generating traffic selectors that survive emit → parse unchanged.
#[cfg(any(test, feature = "proptest"))]
pub mod strategy {
    use super::*;
    use proptest::collection::vec;
    use proptest::option;
    use proptest::prelude::*;

    fn range<T: Copy + PartialOrd + fmt::Debug>(
        value: impl Strategy<Value = T> + Clone,
    ) -> impl Strategy<Value = FieldRange<T>> {
        (value.clone(), option::of(value)).prop_map(|(start, end)| FieldRange { start, end })
    }

    fn v6() -> impl Strategy<Value = Ipv6Addr> + Clone {
        any::<[u8; 16]>().prop_map(Ipv6Addr::from)
    }

    fn v4() -> impl Strategy<Value = Ipv4Addr> + Clone {
        any::<[u8; 4]>().prop_map(Ipv4Addr::from)
    }

    /// Any IPv6 selector whose flow labels fit [`FLOW_LABEL_MAX`].
    pub fn ipv6_selector() -> impl Strategy<Value = Ipv6Selector> {
        (
            option::of(range(v6())),
            option::of(range(v6())),
            option::of(range(any::<u32>())),
            option::of(range(0..=FLOW_LABEL_MAX)),
            option::of(range(any::<u16>())),
            option::of(range(any::<u16>())),
            option::of(range(any::<u8>())),
            option::of(range(any::<u8>())),
        )
            .prop_map(
                |(src_addr, dst_addr, spi, flow_label, src_port, dst_port, traffic_class, next_header)| Ipv6Selector {
                    src_addr,
                    dst_addr,
                    spi,
                    flow_label,
                    src_port,
                    dst_port,
                    traffic_class,
                    next_header,
                },
            )
    }

    /// Any IPv4 selector.
    pub fn ipv4_selector() -> impl Strategy<Value = Ipv4Selector> {
        (
            option::of(range(v4())),
            option::of(range(v4())),
            option::of(range(any::<u32>())),
            option::of(range(any::<u16>())),
            option::of(range(any::<u16>())),
            option::of(range(any::<u8>())),
            option::of(range(any::<u8>())),
        )
            .prop_map(|(src_addr, dst_addr, spi, src_port, dst_port, ds, protocol)| Ipv4Selector {
                src_addr,
                dst_addr,
                spi,
                src_port,
                dst_port,
                ds,
                protocol,
            })
    }

    /// Any traffic selector: IPv4, IPv6, or an unknown format (never 1 or 2) with a body of up
    /// to 48 octets.
    pub fn traffic_selector() -> impl Strategy<Value = TrafficSelector> {
        prop_oneof![
            ipv4_selector().prop_map(TrafficSelector::Ipv4),
            ipv6_selector().prop_map(TrafficSelector::Ipv6),
            (
                any::<u8>().prop_filter("known format", |f| *f != TS_FORMAT_IPV4 && *f != TS_FORMAT_IPV6),
                vec(any::<u8>(), 0..48),
            )
                .prop_map(|(format, data)| TrafficSelector::Unknown { format, data }),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x10);

    /// Emits into a larger buffer and checks nothing past `buffer_len()` was touched.
    fn emitted(ts: &TrafficSelector) -> Vec<u8> {
        let len = ts.buffer_len();
        let mut buf = vec![0xee; len + 8];
        ts.emit(&mut buf).expect("emit");
        assert!(buf[len..].iter().all(|&b| b == 0xee), "emit wrote past buffer_len()");
        buf.truncate(len);
        buf
    }

    // RFC 6088 §3.2 layout: flags C (0x2000), K (0x0020), O (0x0002), reserved 16 bits, then
    // Start Destination Address, Start Destination Port, Start NH.
    fn v6_dst_dport_nh() -> Vec<u8> {
        let mut v = vec![0x20, 0x22, 0x00, 0x00];
        v.extend_from_slice(&DST.octets());
        v.extend_from_slice(&[0x00, 0x50, 0x06]);
        v
    }

    #[test]
    fn ipv6_exact_fields_parse_and_emit() {
        let bytes = v6_dst_dport_nh();
        let ts = TrafficSelector::parse(2, &bytes, 100).unwrap();
        let expected = Ipv6Selector {
            dst_addr: Some(FieldRange::exact(DST)),
            dst_port: Some(FieldRange::exact(80)),
            next_header: Some(FieldRange::exact(6)),
            ..Ipv6Selector::default()
        };
        assert_eq!(ts, TrafficSelector::Ipv6(expected));
        assert_eq!(ts.format(), 2);
        assert_eq!(ts.buffer_len(), 23);
        assert_eq!(ts.alignment(), 8);
        assert_eq!(emitted(&ts), bytes);
        assert_eq!(ts.to_string(), "v6{dst=2001:db8::1 dport=80 nh=6}");
    }

    #[test]
    fn ipv6_all_sixteen_fields() {
        let mut v = vec![0xff, 0xff, 0x00, 0x00];
        v.extend_from_slice(&SRC.octets());
        v.extend_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x1f).octets());
        v.extend_from_slice(&DST.octets());
        v.extend_from_slice(&DST.octets()); // End equal to Start: kept as a present End field
        v.extend_from_slice(&[0, 0, 0x10, 0x00, 0, 0, 0x1f, 0xff]); // SPI 0x1000-0x1fff
        v.extend_from_slice(&[0, 0x01, 0x23, 0x45, 0, 0x0f, 0xff, 0xff]); // flow label
        v.extend_from_slice(&[0x04, 0x00, 0x04, 0xff]); // sport 1024-1279
        v.extend_from_slice(&[0x00, 0x50, 0x00, 0x51]); // dport 80-81
        v.extend_from_slice(&[0x20, 0x3f, 0x06, 0x11]); // tc 32-63, nh 6-17
        let ts = TrafficSelector::parse(2, &v, 0).unwrap();
        let TrafficSelector::Ipv6(s) = &ts else { panic!("not v6") };
        assert_eq!(s.dst_addr, Some(FieldRange::new(DST, DST)));
        assert_ne!(s.dst_addr, Some(FieldRange::exact(DST)));
        assert_eq!(s.spi, Some(FieldRange::new(0x1000, 0x1fff)));
        assert_eq!(s.flow_label, Some(FieldRange::new(0x12345, 0xfffff)));
        assert_eq!(s.src_port, Some(FieldRange::new(1024, 1279)));
        assert_eq!(s.traffic_class, Some(FieldRange::new(32, 63)));
        assert_eq!(s.next_header, Some(FieldRange::new(6, 17)));
        assert_eq!(s.flags(), 0xffff);
        assert_eq!(ts.buffer_len(), 4 + 64 + 16 + 8 + 4);
        assert_eq!(v.len(), ts.buffer_len());
        assert_eq!(emitted(&ts), v);
    }

    #[test]
    fn ipv6_flow_label_is_32_bits_with_high_octet_ignored() {
        // RFC 6088 §3.2: G is a 32-bit field; the receiver ignores its first 8 bits.
        let v = [0x02, 0x00, 0x00, 0x00, 0xab, 0x01, 0x23, 0x45];
        let ts = TrafficSelector::parse(2, &v, 0).unwrap();
        let TrafficSelector::Ipv6(s) = &ts else { panic!("not v6") };
        assert_eq!(s.flow_label, Some(FieldRange::exact(0x01_2345)));
        assert_eq!(emitted(&ts), [0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x23, 0x45]);
        assert_eq!(ts.alignment(), 4);
    }

    #[test]
    fn ipv6_flow_label_over_24_bits_is_not_emitted() {
        let s = Ipv6Selector { flow_label: Some(FieldRange::new(1, FLOW_LABEL_MAX + 1)), ..Ipv6Selector::default() };
        let mut buf = [0u8; 12];
        assert_eq!(s.emit(&mut buf), Err(EmitError::InvalidField { field: "flow label" }));
    }

    #[test]
    fn reserved_bits_are_ignored() {
        let mut bytes = v6_dst_dport_nh();
        bytes[2] = 0xff;
        bytes[3] = 0x01;
        let ts = TrafficSelector::parse(2, &bytes, 0).unwrap();
        assert_eq!(emitted(&ts), v6_dst_dport_nh());
        // IPv4: the two low bits of the flags word are reserved too.
        let ts = TrafficSelector::parse(1, &[0x00, 0x03, 0xff, 0xff], 0).unwrap();
        assert_eq!(ts, TrafficSelector::Ipv4(Ipv4Selector::default()));
        assert_eq!(emitted(&ts), [0, 0, 0, 0]);
        assert_eq!(ts.to_string(), "v4{any}");
    }

    #[test]
    fn ipv4_parse_and_emit() {
        // RFC 6088 §3.1: A (0x8000), C|D (0x3000), E (0x0800), I (0x0080), M (0x0008).
        let mut v = vec![0xb8, 0x88, 0x00, 0x00];
        v.extend_from_slice(&[192, 0, 2, 1]);
        v.extend_from_slice(&[198, 51, 100, 0, 198, 51, 100, 255]);
        v.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        v.extend_from_slice(&[0x01, 0xbb, 17]);
        let ts = TrafficSelector::parse(1, &v, 0).unwrap();
        let expected = Ipv4Selector {
            src_addr: Some(FieldRange::exact(Ipv4Addr::new(192, 0, 2, 1))),
            dst_addr: Some(FieldRange::new(Ipv4Addr::new(198, 51, 100, 0), Ipv4Addr::new(198, 51, 100, 255))),
            spi: Some(FieldRange::exact(0xdead_beef)),
            dst_port: Some(FieldRange::exact(443)),
            protocol: Some(FieldRange::exact(17)),
            ..Ipv4Selector::default()
        };
        assert_eq!(ts, TrafficSelector::Ipv4(expected));
        assert_eq!(ts.format(), 1);
        assert_eq!(ts.alignment(), 4);
        assert_eq!(emitted(&ts), v);
        assert_eq!(
            ts.to_string(),
            "v4{src=192.0.2.1 dst=198.51.100.0-198.51.100.255 spi=0xdeadbeef dport=443 proto=17}"
        );
    }

    #[test]
    fn end_without_start_is_invalid() {
        // D (0x1000) without C.
        let mut v = vec![0x10, 0x00, 0x00, 0x00];
        v.extend_from_slice(&DST.octets());
        let err = TrafficSelector::parse(2, &v, 40).unwrap_err();
        assert_eq!(err.offset, 40);
        assert_eq!(
            err.kind,
            ErrorKind::InvalidField { field: "End Destination Address (D) without Start Destination Address (C)" }
        );
        // IPv4 N (0x0004) without M.
        let err = TrafficSelector::parse(1, &[0x00, 0x04, 0, 0, 6], 7).unwrap_err();
        assert_eq!(
            err,
            Error::new(ErrorKind::InvalidField { field: "End Protocol (N) without Start Protocol (M)" }, 7)
        );
    }

    #[test]
    fn truncated_flags_word() {
        for len in 0..4 {
            let err = Ipv6Selector::parse(&[0u8; 4][..len], 12).unwrap_err();
            assert_eq!(err, Error::new(ErrorKind::Truncated { needed: 4, available: len }, 12));
            let err = Ipv4Selector::parse(&[0u8; 4][..len], 12).unwrap_err();
            assert_eq!(err, Error::new(ErrorKind::Truncated { needed: 4, available: len }, 12));
        }
    }

    #[test]
    fn truncated_fields() {
        let bytes = v6_dst_dport_nh();
        let err = TrafficSelector::parse(2, &bytes[..22], 30).unwrap_err();
        assert_eq!(err, Error::new(ErrorKind::Truncated { needed: 23, available: 22 }, 30));
        let err = TrafficSelector::parse(1, &[0x80, 0, 0, 0, 1, 2, 3], 5).unwrap_err();
        assert_eq!(err, Error::new(ErrorKind::Truncated { needed: 8, available: 7 }, 5));
    }

    #[test]
    fn trailing_octets_after_the_fields() {
        let mut bytes = v6_dst_dport_nh();
        bytes.push(0);
        let err = TrafficSelector::parse(2, &bytes, 30).unwrap_err();
        assert_eq!(err, Error::new(ErrorKind::TrailingData { declared: 23, available: 24 }, 53));
    }

    #[test]
    fn unknown_format_kept_byte_for_byte() {
        let ts = TrafficSelector::parse(7, &[1, 2, 3], 0).unwrap();
        assert_eq!(ts, TrafficSelector::Unknown { format: 7, data: vec![1, 2, 3] });
        assert_eq!(ts.format(), 7);
        assert_eq!(emitted(&ts), [1, 2, 3]);
        assert_eq!(ts.to_string(), "ts{format=7 data=010203}");
        let bad = TrafficSelector::Unknown { format: 2, data: vec![] };
        assert!(matches!(bad.emit(&mut []), Err(EmitError::InvalidField { .. })));
    }

    #[test]
    fn emit_into_short_buffer() {
        for ts in [
            TrafficSelector::parse(2, &v6_dst_dport_nh(), 0).unwrap(),
            TrafficSelector::Ipv4(Ipv4Selector { protocol: Some(FieldRange::exact(6)), ..Default::default() }),
            TrafficSelector::Unknown { format: 9, data: vec![1; 5] },
        ] {
            let needed = ts.buffer_len();
            for len in 0..needed {
                let mut buf = vec![0; len];
                assert_eq!(ts.emit(&mut buf), Err(EmitError::BufferTooSmall { needed, available: len }));
            }
        }
    }

    #[test]
    fn six_tuple_matching() {
        let tuple = SixTuple { src: SRC, dst: DST, sport: 40000, dport: 443, flow_label: 0x12345, next_header: 6 };
        let sel = Ipv6Selector::exact_six_tuple(SRC, DST, 40000, 443, 0x12345, 6);
        assert!(sel.matches(&tuple));
        assert!(!sel.matches(&SixTuple { sport: 40001, ..tuple }));
        assert!(!sel.matches(&SixTuple { flow_label: 0, ..tuple }));
        assert!(!sel.matches(&SixTuple { next_header: 17, ..tuple }));
        assert!(!sel.matches(&SixTuple { dst: SRC, ..tuple }));
        assert_eq!(sel.to_string(), "v6{src=2001:db8:ffff::10 dst=2001:db8::1 fl=0x12345 sport=40000 dport=443 nh=6}");

        // Absent fields are wildcards; ranges include both ends.
        let any = Ipv6Selector::default();
        assert!(any.matches(&tuple));
        assert_eq!(any.to_string(), "v6{any}");
        let ports = Ipv6Selector { dst_port: Some(FieldRange::new(440, 443)), ..Default::default() };
        assert!(ports.matches(&tuple));
        assert!(ports.matches(&SixTuple { dport: 440, ..tuple }));
        assert!(!ports.matches(&SixTuple { dport: 444, ..tuple }));
        assert!(!ports.matches(&SixTuple { dport: 439, ..tuple }));
        let backwards = Ipv6Selector { dst_port: Some(FieldRange::new(443, 440)), ..Default::default() };
        assert!(!backwards.matches(&tuple));

        // SPI and traffic class cannot be checked on a 6-tuple.
        let spi = Ipv6Selector { spi: Some(FieldRange::exact(1)), ..Default::default() };
        assert!(!spi.matches(&tuple));
        let tc = Ipv6Selector { traffic_class: Some(FieldRange::exact(0)), ..Default::default() };
        assert!(!tc.matches(&tuple));

        // The selector survives the wire.
        let ts = TrafficSelector::Ipv6(sel.clone());
        let back = TrafficSelector::parse(2, &emitted(&ts), 0).unwrap();
        assert_eq!(back, ts);
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(ts in strategy::traffic_selector()) {
            let bytes = emitted(&ts);
            prop_assert_eq!(bytes.len(), ts.buffer_len());
            let back = TrafficSelector::parse(ts.format(), &bytes, 0).unwrap();
            prop_assert_eq!(back, ts);
        }

        #[test]
        fn random_bytes_never_panic(
            format in prop_oneof![Just(1u8), Just(2u8), any::<u8>()],
            data in proptest::collection::vec(any::<u8>(), 0..128),
            offset in 0usize..4096,
        ) {
            match TrafficSelector::parse(format, &data, offset) {
                Ok(ts) => {
                    // What parses re-emits to the same length and parses to the same value.
                    let bytes = emitted(&ts);
                    prop_assert_eq!(bytes.len(), data.len());
                    prop_assert_eq!(TrafficSelector::parse(format, &bytes, offset).unwrap(), ts);
                }
                Err(e) => prop_assert!(e.offset >= offset && e.offset <= offset + data.len()),
            }
        }
    }
}
