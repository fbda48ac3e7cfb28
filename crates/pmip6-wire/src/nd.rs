//! Router Solicitation and Router Advertisement (RFC 4861 §4.1, §4.2): what a MAG receives from
//! and sends to the mobile nodes on its access links, with the options a MAG uses — Source
//! Link-layer Address, Prefix Information, MTU, RA Flags Expansion (RFC 5175) — and any other
//! option kept byte for byte.
//!
//! [`NdMessage::parse`] takes the ICMPv6 message from its Type octet; [`NdMessage::parse_checked`]
//! first verifies the ICMPv6 checksum over the IPv6 pseudo-header (RFC 4443 §2.3).
//! [`NdMessage::emit`] writes the message with its checksum.
//!
//! Validation here covers what the ICMPv6 octets carry (RFC 4861 §6.1.1, §6.1.2): the Code is 0,
//! the message is long enough, every option has a non-zero Length and fits. The checks of the
//! IPv6 header belong to the daemon, which sees it: the IP Hop Limit is 255 (RS and RA), an RA
//! comes from a link-local source, and an RS from the unspecified address carries no Source
//! Link-layer Address option.
//!
//! Reserved fields are ignored when parsing and written as zero (RFC 4861 §4.1, §4.2,
//! §4.6.2), so a message with reserved bits set parses but does not re-emit byte-identically;
//! everything else does.
//!
//! # The weak-host flag
//!
//! The multihoming design (draft-bernardos-mif-pmip-02 §4.1) asks the mobile node to follow the
//! weak host model, and suggests an RA flag (RFC 5175) to tell it so. No such flag is assigned by
//! IANA, so the bit is a configuration item of the daemon; [`DEFAULT_WEAK_HOST_FLAG_BIT`] is the
//! experimental default, and [`RouterAdvertisement::set_flag_bit`],
//! [`RouterAdvertisement::clear_flag_bit`] and [`RouterAdvertisement::flag_bit`] work on any RA
//! flag bit, 0 to [`MAX_FLAG_BIT`].

use core::fmt;
use core::net::Ipv6Addr;

use crate::checksum::{IPPROTO_ICMPV6, pseudo_header_checksum};
use crate::error::{EmitError, Error, ErrorKind, Result};

/// ICMPv6 type of a Router Solicitation (RFC 4861 §4.1).
pub const ICMPV6_ROUTER_SOLICITATION: u8 = 133;
/// ICMPv6 type of a Router Advertisement (RFC 4861 §4.2).
pub const ICMPV6_ROUTER_ADVERTISEMENT: u8 = 134;

/// Octets of a Router Solicitation before its options (RFC 4861 §4.1, §6.1.1).
pub const RS_HEADER_LEN: usize = 8;
/// Octets of a Router Advertisement before its options (RFC 4861 §4.2, §6.1.2).
pub const RA_HEADER_LEN: usize = 16;

/// ND option type: Source Link-layer Address (RFC 4861 §4.6.1).
pub const OPT_SOURCE_LINK_LAYER_ADDRESS: u8 = 1;
/// ND option type: Prefix Information (RFC 4861 §4.6.2).
pub const OPT_PREFIX_INFORMATION: u8 = 3;
/// ND option type: MTU (RFC 4861 §4.6.4).
pub const OPT_MTU: u8 = 5;
/// ND option type: RA Flags Expansion (RFC 5175 §4).
pub const OPT_FLAGS_EXPANSION: u8 = 26;

/// A lifetime of all one bits means infinity (RFC 4861 §4.6.2).
pub const INFINITE_LIFETIME: u32 = 0xffff_ffff;

/// The highest RA flag bit number: bits 0..=7 are the flags octet of the RA header, bits 8..=55
/// the 48 bits of the Flags Expansion option (RFC 5175 §4). Bit 0 is the most significant bit
/// of the header octet (M), bit 8 the most significant bit of the option's first flag octet,
/// bit 55 the least significant bit of its last.
pub const MAX_FLAG_BIT: u8 = 55;

/// Default RA flag bit of the "use the weak host model" indication of
/// draft-bernardos-mif-pmip-02 §4.1 (configurable: the daemon reads the bit from its
/// configuration and passes it to [`RouterAdvertisement::set_flag_bit`]).
///
/// No RA flag is assigned to this indication, so any choice is experimental. Bit 55 is the last
/// bit of the RFC 5175 expansion field:
/// - it lies in the expansion option, not in the eight header bits, six of which are assigned
///   (M, O, H, the two Prf bits, P) and whose last two are the scarcest;
/// - assignments so far have taken the low-numbered bits, so the far end of the field is the one
///   a future assignment is least likely to reach;
/// - a host that does not know the bit does not act on it, and one that does not know the
///   Flags Expansion option skips the whole option (RFC 4861 §4.6), so advertising it is
///   harmless.
///
/// Check the IANA "IPv6 ND Router Advertisement flags" registry before deploying, and configure
/// another bit if this one has been assigned since.
pub const DEFAULT_WEAK_HOST_FLAG_BIT: u8 = 55;

// ---------------------------------------------------------------------------------------------
// Bounds-checked reads and writes.

fn read<const N: usize>(data: &[u8], at: usize) -> Option<[u8; N]> {
    data.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn read_u16(data: &[u8], at: usize) -> Option<u16> {
    read::<2>(data, at).map(u16::from_be_bytes)
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    read::<4>(data, at).map(u32::from_be_bytes)
}

/// Writes `bytes` at `at`, or says the buffer is too small: never panics.
fn put(out: &mut [u8], at: usize, bytes: &[u8]) -> core::result::Result<(), EmitError> {
    let available = out.len();
    let end = at.checked_add(bytes.len()).ok_or(EmitError::TooLong { field: "ND message" })?;
    out.get_mut(at..end).ok_or(EmitError::BufferTooSmall { needed: end, available })?.copy_from_slice(bytes);
    Ok(())
}

/// A field the earlier length check guaranteed: if it were missing, report it as truncation of
/// the structure starting at `start` rather than panic.
fn need<T>(value: Option<T>, start: usize, needed: usize, available: usize) -> Result<T> {
    value.ok_or(Error::new(ErrorKind::Truncated { needed, available }, start))
}

// ---------------------------------------------------------------------------------------------
// Router preference and the RA flags octet.

/// Default Router Preference, the two-bit Prf field of the RA header (RFC 4191 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum RouterPreference {
    /// `11`: low.
    Low,
    /// `00`: medium, the default.
    #[default]
    Medium,
    /// `01`: high.
    High,
    /// `10`: reserved; kept as received, and treated as medium by receivers (RFC 4191 §2.2).
    Reserved,
}

impl RouterPreference {
    /// From the two-bit field value (only the two low-order bits of `bits` are used).
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0b00 => Self::Medium,
            0b01 => Self::High,
            0b10 => Self::Reserved,
            _ => Self::Low,
        }
    }

    /// The two-bit field value.
    pub const fn bits(self) -> u8 {
        match self {
            Self::Medium => 0b00,
            Self::High => 0b01,
            Self::Reserved => 0b10,
            Self::Low => 0b11,
        }
    }

    /// The preference a receiver acts on: Reserved counts as Medium (RFC 4191 §2.2).
    pub const fn effective(self) -> Self {
        match self {
            Self::Reserved => Self::Medium,
            other => other,
        }
    }
}

impl fmt::Display for RouterPreference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Reserved => "reserved",
        })
    }
}

/// The flags octet of a Router Advertisement (RFC 4861 §4.2, RFC 6275 §7.1, RFC 4191 §2.2,
/// RFC 4389):
///
/// ```text
///  0 1 2 3 4 5 6 7
/// +-+-+-+-+-+-+-+-+
/// |M|O|H|Prf|P|Rsv|
/// +-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RaFlags {
    /// M (0x80): addresses are available via DHCPv6 (RFC 4861).
    pub managed: bool,
    /// O (0x40): other configuration is available via DHCPv6 (RFC 4861).
    pub other_config: bool,
    /// H (0x20): the router is a Mobile IPv6 home agent (RFC 6275 §7.1).
    pub home_agent: bool,
    /// Prf (0x18): default router preference (RFC 4191 §2.2).
    pub preference: RouterPreference,
    /// P (0x04): ND proxy (RFC 4389).
    pub nd_proxy: bool,
    /// The two low-order bits (0x03, RA flag bits 6 and 7), unassigned in RFC 4861 and kept as
    /// received so that a bit assigned later survives a round trip. Only values 0..=3 can be
    /// emitted.
    pub unassigned: u8,
}

impl RaFlags {
    /// M.
    pub const MANAGED: u8 = 0x80;
    /// O.
    pub const OTHER_CONFIG: u8 = 0x40;
    /// H.
    pub const HOME_AGENT: u8 = 0x20;
    /// Prf (two bits).
    pub const PREFERENCE_MASK: u8 = 0x18;
    /// P.
    pub const ND_PROXY: u8 = 0x04;
    /// The unassigned low-order bits.
    pub const UNASSIGNED_MASK: u8 = 0x03;

    /// From the octet as on the wire.
    pub const fn from_octet(octet: u8) -> Self {
        Self {
            managed: octet & Self::MANAGED != 0,
            other_config: octet & Self::OTHER_CONFIG != 0,
            home_agent: octet & Self::HOME_AGENT != 0,
            preference: RouterPreference::from_bits((octet & Self::PREFERENCE_MASK) >> 3),
            nd_proxy: octet & Self::ND_PROXY != 0,
            unassigned: octet & Self::UNASSIGNED_MASK,
        }
    }

    /// The octet as on the wire (bits of `unassigned` above 0x03 are dropped).
    pub const fn to_octet(self) -> u8 {
        let mut octet = (self.preference.bits() << 3) | (self.unassigned & Self::UNASSIGNED_MASK);
        if self.managed {
            octet |= Self::MANAGED;
        }
        if self.other_config {
            octet |= Self::OTHER_CONFIG;
        }
        if self.home_agent {
            octet |= Self::HOME_AGENT;
        }
        if self.nd_proxy {
            octet |= Self::ND_PROXY;
        }
        octet
    }
}

impl fmt::Display for RaFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        let mut word = |f: &mut fmt::Formatter<'_>, w: fmt::Arguments<'_>| {
            let r = write!(f, "{sep}{w}");
            sep = " ";
            r
        };
        f.write_str("[")?;
        if self.managed {
            word(f, format_args!("M"))?;
        }
        if self.other_config {
            word(f, format_args!("O"))?;
        }
        if self.home_agent {
            word(f, format_args!("H"))?;
        }
        if self.nd_proxy {
            word(f, format_args!("P"))?;
        }
        if self.preference != RouterPreference::Medium {
            word(f, format_args!("prf={}", self.preference))?;
        }
        for bit in [6u8, 7] {
            if self.unassigned & (0x80 >> bit) != 0 {
                word(f, format_args!("bit{bit}"))?;
            }
        }
        f.write_str("]")
    }
}

// ---------------------------------------------------------------------------------------------
// Options.

/// The link-layer address of a Source Link-layer Address option (RFC 4861 §4.6.1).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     Type      |    Length     |    Link-Layer Address ...
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum LinkLayerAddress {
    /// Length 1: an IEEE 802 MAC address (RFC 2464 §6).
    Ethernet([u8; 6]),
    /// Any other Length: the octets after Type and Length, padding included, as received. On
    /// emit they are padded with zeros to a multiple of 8 octets with the option header; six
    /// octets would come back as [`LinkLayerAddress::Ethernet`].
    Other(Vec<u8>),
}

impl fmt::Display for LinkLayerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let octets: &[u8] = match self {
            Self::Ethernet(mac) => mac,
            Self::Other(data) => data,
        };
        for (i, o) in octets.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{o:02x}")?;
        }
        Ok(())
    }
}

/// Prefix Information option (RFC 4861 §4.6.2, R flag from RFC 6275 §7.2):
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     Type      |    Length     | Prefix Length |L|A|R|Reserved1|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         Valid Lifetime                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                       Preferred Lifetime                      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                           Reserved2                           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                                                               |
/// +                                                               +
/// |                                                               |
/// +                            Prefix                             +
/// |                                                               |
/// +                                                               +
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Type 3, Length 4. Reserved1 (five bits) and Reserved2 are ignored on receipt and sent as zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PrefixInformation {
    /// Number of leading bits of `prefix` that are valid, 0..=128.
    pub prefix_len: u8,
    /// L (0x80): the prefix is on-link.
    pub on_link: bool,
    /// A (0x40): the prefix may be used for stateless address autoconfiguration.
    pub autonomous: bool,
    /// R (0x20): `prefix` is the router's full address (RFC 6275 §7.2).
    pub router_address: bool,
    /// Valid lifetime in seconds; [`INFINITE_LIFETIME`] is infinity.
    pub valid_lifetime: u32,
    /// Preferred lifetime in seconds; [`INFINITE_LIFETIME`] is infinity.
    pub preferred_lifetime: u32,
    /// The prefix (bits past `prefix_len` are kept as received; RFC 4861 has receivers ignore
    /// them).
    pub prefix: Ipv6Addr,
}

impl PrefixInformation {
    /// L flag.
    pub const ON_LINK: u8 = 0x80;
    /// A flag.
    pub const AUTONOMOUS: u8 = 0x40;
    /// R flag.
    pub const ROUTER_ADDRESS: u8 = 0x20;
}

/// Writes a lifetime in seconds, `inf` for infinity.
struct Lifetime(u32);

impl fmt::Display for Lifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == INFINITE_LIFETIME { f.write_str("inf") } else { write!(f, "{}", self.0) }
    }
}

impl fmt::Display for PrefixInformation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PIO {}/{} ", self.prefix, self.prefix_len)?;
        if self.on_link || self.autonomous || self.router_address {
            for (set, letter) in [(self.on_link, "L"), (self.autonomous, "A"), (self.router_address, "R")] {
                if set {
                    f.write_str(letter)?;
                }
            }
            f.write_str(" ")?;
        }
        write!(f, "valid={} pref={}", Lifetime(self.valid_lifetime), Lifetime(self.preferred_lifetime))
    }
}

/// A Neighbor Discovery option (RFC 4861 §4.6): Type, Length in units of 8 octets (never 0),
/// data.
///
/// MTU option (RFC 4861 §4.6.4), Type 5, Length 1:
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     Type      |    Length     |           Reserved            |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                              MTU                              |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// RA Flags Expansion option (RFC 5175 §4), Type 26, Length 1:
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     Type      |    Length     |         Bit fields available ..
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ... for assignment                                              |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum NdOption {
    /// Source Link-layer Address (type 1).
    SourceLinkLayerAddress(LinkLayerAddress),
    /// Prefix Information (type 3).
    PrefixInformation(PrefixInformation),
    /// MTU (type 5): the link MTU in octets.
    Mtu(u32),
    /// RA Flags Expansion (type 26): the 48 flag bits, RA flag bits 8..=55 (octet 0's most
    /// significant bit is bit 8).
    FlagsExpansion([u8; 6]),
    /// Any other option, kept byte for byte.
    Unknown {
        /// Option Type.
        option_type: u8,
        /// The octets after Type and Length (Length × 8 − 2 of them). On emit they are padded
        /// with zeros to a multiple of 8 octets with the option header.
        data: Vec<u8>,
    },
}

impl NdOption {
    /// The option's Type.
    pub fn option_type(&self) -> u8 {
        match self {
            Self::SourceLinkLayerAddress(_) => OPT_SOURCE_LINK_LAYER_ADDRESS,
            Self::PrefixInformation(_) => OPT_PREFIX_INFORMATION,
            Self::Mtu(_) => OPT_MTU,
            Self::FlagsExpansion(_) => OPT_FLAGS_EXPANSION,
            Self::Unknown { option_type, .. } => *option_type,
        }
    }

    /// Octets of the option on the wire, Type and Length included.
    pub fn buffer_len(&self) -> usize {
        match self {
            Self::SourceLinkLayerAddress(LinkLayerAddress::Ethernet(_)) => 8,
            Self::SourceLinkLayerAddress(LinkLayerAddress::Other(data)) | Self::Unknown { data, .. } => {
                (data.len() + 2).div_ceil(8) * 8
            }
            Self::PrefixInformation(_) => 32,
            Self::Mtu(_) | Self::FlagsExpansion(_) => 8,
        }
    }

    /// Whether the option can be encoded.
    fn check(&self) -> core::result::Result<(), EmitError> {
        match self {
            Self::SourceLinkLayerAddress(LinkLayerAddress::Other(_)) | Self::Unknown { .. }
                if self.buffer_len() / 8 > usize::from(u8::MAX) =>
            {
                Err(EmitError::TooLong { field: "ND option" })
            }
            Self::PrefixInformation(p) if p.prefix_len > 128 => Err(EmitError::InvalidField { field: "prefix length" }),
            _ => Ok(()),
        }
    }

    /// Parses one option whose `length` (non-zero) and `body` (the `length × 8 − 2` octets after
    /// Type and Length) were already delimited; `at` is the option's offset in the message.
    fn parse_body(option_type: u8, length: u8, body: &[u8], at: usize) -> Result<Self> {
        let bad_length = Error::new(ErrorKind::OptionLength { option_type, length }, at);
        let whole = usize::from(length) * 8;
        let available = body.len() + 2;
        macro_rules! field {
            ($read:expr) => {
                need($read, at, whole, available)
            };
        }
        Ok(match option_type {
            OPT_SOURCE_LINK_LAYER_ADDRESS if length == 1 => {
                // RFC 4861 §4.6.1 with RFC 2464 §6: Length 1 is a 6-octet MAC.
                Self::SourceLinkLayerAddress(LinkLayerAddress::Ethernet(field!(read::<6>(body, 0))?))
            }
            OPT_SOURCE_LINK_LAYER_ADDRESS => Self::SourceLinkLayerAddress(LinkLayerAddress::Other(body.to_vec())),
            OPT_PREFIX_INFORMATION => {
                // RFC 4861 §4.6.2: Length 4.
                if length != 4 {
                    return Err(bad_length);
                }
                let prefix_len = field!(body.first().copied())?;
                if prefix_len > 128 {
                    // RFC 4861 §4.6.2: Prefix Length ranges from 0 to 128.
                    return Err(Error::new(ErrorKind::InvalidField { field: "prefix length" }, at + 2));
                }
                let flags = field!(body.get(1).copied())?;
                Self::PrefixInformation(PrefixInformation {
                    prefix_len,
                    on_link: flags & PrefixInformation::ON_LINK != 0,
                    autonomous: flags & PrefixInformation::AUTONOMOUS != 0,
                    router_address: flags & PrefixInformation::ROUTER_ADDRESS != 0,
                    valid_lifetime: field!(read_u32(body, 2))?,
                    preferred_lifetime: field!(read_u32(body, 6))?,
                    // Reserved2 (body 10..14) is ignored.
                    prefix: Ipv6Addr::from(field!(read::<16>(body, 14))?),
                })
            }
            OPT_MTU => {
                // RFC 4861 §4.6.4: Length 1.
                if length != 1 {
                    return Err(bad_length);
                }
                Self::Mtu(field!(read_u32(body, 2))?)
            }
            OPT_FLAGS_EXPANSION => {
                // RFC 5175 §4: Length 1.
                if length != 1 {
                    return Err(bad_length);
                }
                Self::FlagsExpansion(field!(read::<6>(body, 0))?)
            }
            _ => Self::Unknown { option_type, data: body.to_vec() },
        })
    }

    /// Writes the option at `at` in `out` (which is zeroed) and returns the offset after it.
    fn emit(&self, out: &mut [u8], at: usize) -> core::result::Result<usize, EmitError> {
        let len = self.buffer_len();
        let length = u8::try_from(len / 8).map_err(|_| EmitError::TooLong { field: "ND option" })?;
        put(out, at, &[self.option_type(), length])?;
        let body = at + 2;
        match self {
            Self::SourceLinkLayerAddress(LinkLayerAddress::Ethernet(mac)) => put(out, body, mac)?,
            Self::SourceLinkLayerAddress(LinkLayerAddress::Other(data)) | Self::Unknown { data, .. } => {
                put(out, body, data)?;
            }
            Self::PrefixInformation(p) => {
                let mut flags = 0;
                if p.on_link {
                    flags |= PrefixInformation::ON_LINK;
                }
                if p.autonomous {
                    flags |= PrefixInformation::AUTONOMOUS;
                }
                if p.router_address {
                    flags |= PrefixInformation::ROUTER_ADDRESS;
                }
                put(out, body, &[p.prefix_len, flags])?;
                put(out, body + 2, &p.valid_lifetime.to_be_bytes())?;
                put(out, body + 6, &p.preferred_lifetime.to_be_bytes())?;
                put(out, body + 14, &p.prefix.octets())?;
            }
            Self::Mtu(mtu) => put(out, body + 2, &mtu.to_be_bytes())?,
            Self::FlagsExpansion(bits) => put(out, body, bits)?,
        }
        Ok(at + len)
    }
}

impl fmt::Display for NdOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SourceLinkLayerAddress(lla) => write!(f, "SLLA {lla}"),
            Self::PrefixInformation(p) => p.fmt(f),
            Self::Mtu(mtu) => write!(f, "MTU {mtu}"),
            Self::FlagsExpansion(bits) => {
                f.write_str("EFO [")?;
                let mut sep = "";
                for bit in 8..=MAX_FLAG_BIT {
                    if expansion_bit(bits, bit) {
                        write!(f, "{sep}{bit}")?;
                        sep = " ";
                    }
                }
                f.write_str("]")
            }
            Self::Unknown { option_type, data } => {
                write!(f, "OPT{option_type} {} octets", data.len())
            }
        }
    }
}

/// The octet index in the expansion field and the mask of RA flag bit `bit` (8..=55).
const fn expansion_position(bit: u8) -> (usize, u8) {
    let index = bit.saturating_sub(8);
    ((index / 8) as usize, 0x80 >> (index % 8))
}

fn expansion_bit(bits: &[u8; 6], bit: u8) -> bool {
    let (octet, mask) = expansion_position(bit);
    bits.get(octet).is_some_and(|o| o & mask != 0)
}

/// Parses the options from `start` to the end of `data`.
fn parse_options(data: &[u8], start: usize) -> Result<Vec<NdOption>> {
    let mut options = Vec::new();
    let mut at = start;
    while let Some(&option_type) = data.get(at) {
        let Some(&length) = data.get(at + 1) else {
            return Err(Error::new(ErrorKind::OptionHeaderTruncated, at));
        };
        // RFC 4861 §4.6: "Nodes MUST silently discard an ND packet that contains an option with
        // length zero."
        if length == 0 {
            return Err(Error::new(ErrorKind::OptionLength { option_type, length }, at));
        }
        let end = at + usize::from(length) * 8;
        let Some(body) = data.get(at + 2..end) else {
            let available = data.len().saturating_sub(at + 2);
            return Err(Error::new(ErrorKind::OptionOverrun { option_type, length, available }, at));
        };
        options.push(NdOption::parse_body(option_type, length, body, at)?);
        at = end;
    }
    Ok(options)
}

fn options_len(options: &[NdOption]) -> usize {
    options.iter().map(NdOption::buffer_len).sum()
}

fn fmt_options(f: &mut fmt::Formatter<'_>, options: &[NdOption]) -> fmt::Result {
    options.iter().try_for_each(|o| write!(f, " {o}"))
}

fn source_lla(options: &[NdOption]) -> Option<&LinkLayerAddress> {
    options.iter().find_map(|o| match o {
        NdOption::SourceLinkLayerAddress(lla) => Some(lla),
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------------
// Messages.

/// Router Solicitation (RFC 4861 §4.1), ICMPv6 type 133:
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     Type      |     Code      |          Checksum             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                            Reserved                           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Options ...
/// +-+-+-+-+-+-+-+-+-+-+-+-
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RouterSolicitation {
    /// Options, in order.
    pub options: Vec<NdOption>,
}

impl RouterSolicitation {
    /// The first Source Link-layer Address option's address.
    pub fn source_link_layer_address(&self) -> Option<&LinkLayerAddress> {
        source_lla(&self.options)
    }

    /// Octets of the message on the wire.
    pub fn buffer_len(&self) -> usize {
        RS_HEADER_LEN + options_len(&self.options)
    }
}

impl fmt::Display for RouterSolicitation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RS")?;
        fmt_options(f, &self.options)
    }
}

/// Router Advertisement (RFC 4861 §4.2), ICMPv6 type 134, with the flags of RFC 6275 (H),
/// RFC 4191 (Prf) and RFC 4389 (P):
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     Type      |     Code      |          Checksum             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Cur Hop Limit |M|O|H|Prf|P|Rsv|       Router Lifetime         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         Reachable Time                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                          Retrans Timer                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Options ...
/// +-+-+-+-+-+-+-+-+-+-+-+-
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RouterAdvertisement {
    /// Default IPv6 Hop Limit for the hosts; 0 = unspecified.
    pub cur_hop_limit: u8,
    /// The flags octet.
    pub flags: RaFlags,
    /// Lifetime as a default router, in seconds; 0 = not a default router.
    pub router_lifetime: u16,
    /// Reachable Time in milliseconds; 0 = unspecified.
    pub reachable_time: u32,
    /// Retrans Timer in milliseconds; 0 = unspecified.
    pub retrans_timer: u32,
    /// Options, in order.
    pub options: Vec<NdOption>,
}

impl RouterAdvertisement {
    /// The first Source Link-layer Address option's address.
    pub fn source_link_layer_address(&self) -> Option<&LinkLayerAddress> {
        source_lla(&self.options)
    }

    /// Octets of the message on the wire.
    pub fn buffer_len(&self) -> usize {
        RA_HEADER_LEN + options_len(&self.options)
    }

    /// Whether RA flag bit `bit` is set: bits 0..=7 are the header's flags octet (bit 0 = M),
    /// bits 8..=55 the Flags Expansion option (RFC 5175 §4), where a bit counts as set if any
    /// expansion option carries it. Bits above [`MAX_FLAG_BIT`] are never set.
    pub fn flag_bit(&self, bit: u8) -> bool {
        match bit {
            0..=7 => self.flags.to_octet() & (0x80 >> bit) != 0,
            8..=MAX_FLAG_BIT => self.options.iter().any(|o| match o {
                NdOption::FlagsExpansion(bits) => expansion_bit(bits, bit),
                _ => false,
            }),
            _ => false,
        }
    }

    /// Sets RA flag bit `bit`. Bits 0..=7 set the matching bit of the header's flags octet
    /// (3 and 4 are the two bits of Prf); bits 8..=55 set it in the first Flags Expansion option,
    /// which is appended to the options if there is none. Bits above [`MAX_FLAG_BIT`] do not
    /// exist and are ignored: validate a configured bit number against `MAX_FLAG_BIT`.
    ///
    /// This is how the weak-host indication is sent, with the bit number from the configuration
    /// ([`DEFAULT_WEAK_HOST_FLAG_BIT`] by default):
    ///
    /// ```
    /// use pmip6_wire::nd::{DEFAULT_WEAK_HOST_FLAG_BIT, RouterAdvertisement};
    ///
    /// let mut ra = RouterAdvertisement::default();
    /// ra.set_flag_bit(DEFAULT_WEAK_HOST_FLAG_BIT);
    /// assert!(ra.flag_bit(DEFAULT_WEAK_HOST_FLAG_BIT));
    /// assert_eq!(ra.to_string(), "RA hop=0 flags=[] lifetime=0s reach=0ms retrans=0ms EFO [55]");
    /// ```
    pub fn set_flag_bit(&mut self, bit: u8) {
        match bit {
            0..=7 => self.flags = RaFlags::from_octet(self.flags.to_octet() | (0x80 >> bit)),
            8..=MAX_FLAG_BIT => {
                let (octet, mask) = expansion_position(bit);
                let existing = self.options.iter_mut().find_map(|o| match o {
                    NdOption::FlagsExpansion(bits) => Some(bits),
                    _ => None,
                });
                match existing {
                    Some(bits) => {
                        if let Some(o) = bits.get_mut(octet) {
                            *o |= mask;
                        }
                    }
                    None => {
                        let mut bits = [0u8; 6];
                        if let Some(o) = bits.get_mut(octet) {
                            *o = mask;
                        }
                        self.options.push(NdOption::FlagsExpansion(bits));
                    }
                }
            }
            _ => {}
        }
    }

    /// Clears RA flag bit `bit` in the header (0..=7) or in every Flags Expansion option
    /// (8..=55); an expansion option this leaves without any bit set is removed, so that
    /// `set_flag_bit` then `clear_flag_bit` restores the options. Bits above [`MAX_FLAG_BIT`]
    /// are ignored.
    pub fn clear_flag_bit(&mut self, bit: u8) {
        match bit {
            0..=7 => self.flags = RaFlags::from_octet(self.flags.to_octet() & !(0x80 >> bit)),
            8..=MAX_FLAG_BIT => {
                let (octet, mask) = expansion_position(bit);
                self.options.retain_mut(|o| match o {
                    NdOption::FlagsExpansion(bits) => match bits.get_mut(octet) {
                        Some(o) if *o & mask != 0 => {
                            *o &= !mask;
                            bits.iter().any(|&b| b != 0)
                        }
                        _ => true,
                    },
                    _ => true,
                });
            }
            _ => {}
        }
    }

    /// The Prefix Information options, in order.
    pub fn prefixes(&self) -> impl Iterator<Item = &PrefixInformation> {
        self.options.iter().filter_map(|o| match o {
            NdOption::PrefixInformation(p) => Some(p),
            _ => None,
        })
    }

    /// The first MTU option's value.
    pub fn mtu(&self) -> Option<u32> {
        self.options.iter().find_map(|o| match o {
            NdOption::Mtu(mtu) => Some(*mtu),
            _ => None,
        })
    }
}

impl fmt::Display for RouterAdvertisement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RA hop={} flags={} lifetime={}s reach={}ms retrans={}ms",
            self.cur_hop_limit, self.flags, self.router_lifetime, self.reachable_time, self.retrans_timer
        )?;
        fmt_options(f, &self.options)
    }
}

/// A Router Solicitation or Router Advertisement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum NdMessage {
    /// ICMPv6 type 133.
    RouterSolicitation(RouterSolicitation),
    /// ICMPv6 type 134.
    RouterAdvertisement(RouterAdvertisement),
}

impl From<RouterSolicitation> for NdMessage {
    fn from(rs: RouterSolicitation) -> Self {
        Self::RouterSolicitation(rs)
    }
}

impl From<RouterAdvertisement> for NdMessage {
    fn from(ra: RouterAdvertisement) -> Self {
        Self::RouterAdvertisement(ra)
    }
}

impl NdMessage {
    /// Parses an ICMPv6 message, from its Type octet to the end of `icmp`, without looking at
    /// the checksum.
    ///
    /// Errors: [`ErrorKind::UnexpectedIcmpType`] for a type other than 133 or 134;
    /// [`ErrorKind::Truncated`] for an RS under 8 octets or an RA under 16;
    /// [`ErrorKind::InvalidField`] `"ICMPv6 code"` for a Code other than 0; the option errors
    /// ([`ErrorKind::OptionLength`] for a Length of 0 or a known option's wrong Length,
    /// [`ErrorKind::OptionHeaderTruncated`], [`ErrorKind::OptionOverrun`]) and
    /// [`ErrorKind::InvalidField`] `"prefix length"` for a Prefix Length over 128.
    pub fn parse(icmp: &[u8]) -> Result<Self> {
        let available = icmp.len();
        let Some(&icmp_type) = icmp.first() else {
            return Err(Error::new(ErrorKind::Truncated { needed: RS_HEADER_LEN, available }, 0));
        };
        let header_len = match icmp_type {
            ICMPV6_ROUTER_SOLICITATION => RS_HEADER_LEN,
            ICMPV6_ROUTER_ADVERTISEMENT => RA_HEADER_LEN,
            other => return Err(Error::new(ErrorKind::UnexpectedIcmpType(other), 0)),
        };
        // RFC 4861 §6.1.1 / §6.1.2: ICMP length (derived from the IP length) is 8 or more for an
        // RS, 16 or more for an RA.
        if available < header_len {
            return Err(Error::new(ErrorKind::Truncated { needed: header_len, available }, 0));
        }
        macro_rules! field {
            ($read:expr) => {
                need($read, 0, header_len, available)
            };
        }
        // RFC 4861 §6.1.1 / §6.1.2: ICMP Code is 0.
        if field!(icmp.get(1).copied())? != 0 {
            return Err(Error::new(ErrorKind::InvalidField { field: "ICMPv6 code" }, 1));
        }
        let options = parse_options(icmp, header_len)?;
        Ok(match icmp_type {
            // RFC 4861 §4.1: Reserved is ignored by the receiver.
            ICMPV6_ROUTER_SOLICITATION => Self::RouterSolicitation(RouterSolicitation { options }),
            _ => Self::RouterAdvertisement(RouterAdvertisement {
                cur_hop_limit: field!(icmp.get(4).copied())?,
                flags: RaFlags::from_octet(field!(icmp.get(5).copied())?),
                router_lifetime: field!(read_u16(icmp, 6))?,
                reachable_time: field!(read_u32(icmp, 8))?,
                retrans_timer: field!(read_u32(icmp, 12))?,
                options,
            }),
        })
    }

    /// Verifies the ICMPv6 checksum over the IPv6 pseudo-header of `src` and `dst` (RFC 4443
    /// §2.3), then parses as [`NdMessage::parse`] does. A bad checksum is
    /// [`ErrorKind::BadChecksum`] at offset 2. A message too short to hold a checksum gets the
    /// error `parse` gives it.
    pub fn parse_checked(icmp: &[u8], src: &Ipv6Addr, dst: &Ipv6Addr) -> Result<Self> {
        if let Some(found) = read_u16(icmp, 2) {
            // RFC 4443 §2.3 and RFC 4861 §6.1.1 / §6.1.2: the ICMP checksum is valid.
            if pseudo_header_checksum(src, dst, IPPROTO_ICMPV6, icmp) != 0 {
                let mut zeroed = icmp.to_vec();
                if let Some(c) = zeroed.get_mut(2..4) {
                    c.fill(0);
                }
                let computed = pseudo_header_checksum(src, dst, IPPROTO_ICMPV6, &zeroed);
                return Err(Error::new(ErrorKind::BadChecksum { found, computed }, 2));
            }
        }
        Self::parse(icmp)
    }

    /// Octets of the message on the wire.
    pub fn buffer_len(&self) -> usize {
        match self {
            Self::RouterSolicitation(rs) => rs.buffer_len(),
            Self::RouterAdvertisement(ra) => ra.buffer_len(),
        }
    }

    /// The options, in order.
    pub fn options(&self) -> &[NdOption] {
        match self {
            Self::RouterSolicitation(rs) => &rs.options,
            Self::RouterAdvertisement(ra) => &ra.options,
        }
    }

    /// Writes the message into the start of `buf` with Code 0, reserved fields zero and the
    /// ICMPv6 checksum for the pseudo-header of `src` and `dst`, and returns its length
    /// ([`NdMessage::buffer_len`]).
    ///
    /// Errors: [`EmitError::BufferTooSmall`] if `buf` is shorter than `buffer_len()`;
    /// [`EmitError::TooLong`] for an option over 255 × 8 octets; [`EmitError::InvalidField`] for
    /// a prefix length over 128 or RA flags with `unassigned` above 0x03. Nothing is written
    /// then.
    pub fn emit(&self, buf: &mut [u8], src: &Ipv6Addr, dst: &Ipv6Addr) -> core::result::Result<usize, EmitError> {
        if let Self::RouterAdvertisement(ra) = self
            && ra.flags.unassigned & !RaFlags::UNASSIGNED_MASK != 0
        {
            return Err(EmitError::InvalidField { field: "RA flags" });
        }
        self.options().iter().try_for_each(NdOption::check)?;
        let len = self.buffer_len();
        let available = buf.len();
        let out = buf.get_mut(..len).ok_or(EmitError::BufferTooSmall { needed: len, available })?;
        out.fill(0);
        let mut at = match self {
            Self::RouterSolicitation(_) => {
                put(out, 0, &[ICMPV6_ROUTER_SOLICITATION])?;
                RS_HEADER_LEN
            }
            Self::RouterAdvertisement(ra) => {
                put(out, 0, &[ICMPV6_ROUTER_ADVERTISEMENT])?;
                put(out, 4, &[ra.cur_hop_limit, ra.flags.to_octet()])?;
                put(out, 6, &ra.router_lifetime.to_be_bytes())?;
                put(out, 8, &ra.reachable_time.to_be_bytes())?;
                put(out, 12, &ra.retrans_timer.to_be_bytes())?;
                RA_HEADER_LEN
            }
        };
        for option in self.options() {
            at = option.emit(out, at)?;
        }
        let checksum = pseudo_header_checksum(src, dst, IPPROTO_ICMPV6, out);
        put(out, 2, &checksum.to_be_bytes())?;
        Ok(len)
    }
}

impl fmt::Display for NdMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RouterSolicitation(rs) => rs.fmt(f),
            Self::RouterAdvertisement(ra) => ra.fmt(f),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Property-test strategies.

/// Strategies generating ND messages that round-trip exactly through `emit` and `parse`: no
/// reserved bits set, variable-length data already padded, no `Unknown` option with a type this
/// module decodes.
#[cfg(any(test, feature = "proptest"))]
pub mod strategy {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// Octets of data after Type and Length for an option of `units` × 8 octets.
    fn padded_data(units: core::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<u8>> {
        units.prop_flat_map(|n| vec(any::<u8>(), n * 8 - 2))
    }

    /// A link-layer address: a MAC, or other octets padded to an option of 16 to 32 octets.
    pub fn link_layer_address() -> impl Strategy<Value = LinkLayerAddress> {
        prop_oneof![
            any::<[u8; 6]>().prop_map(LinkLayerAddress::Ethernet),
            padded_data(2..=4).prop_map(LinkLayerAddress::Other),
        ]
    }

    /// A Prefix Information option with any valid field values.
    pub fn prefix_information() -> impl Strategy<Value = PrefixInformation> {
        (0u8..=128, any::<[bool; 3]>(), any::<u32>(), any::<u32>(), any::<u128>()).prop_map(
            |(prefix_len, [on_link, autonomous, router_address], valid_lifetime, preferred_lifetime, prefix)| {
                PrefixInformation {
                    prefix_len,
                    on_link,
                    autonomous,
                    router_address,
                    valid_lifetime,
                    preferred_lifetime,
                    prefix: Ipv6Addr::from(prefix),
                }
            },
        )
    }

    /// Any option, `Unknown` ones with a type other than 1, 3, 5 and 26.
    pub fn nd_option() -> impl Strategy<Value = NdOption> {
        let unknown_type = any::<u8>().prop_filter("decoded option type", |t| {
            ![OPT_SOURCE_LINK_LAYER_ADDRESS, OPT_PREFIX_INFORMATION, OPT_MTU, OPT_FLAGS_EXPANSION].contains(t)
        });
        prop_oneof![
            link_layer_address().prop_map(NdOption::SourceLinkLayerAddress),
            prefix_information().prop_map(NdOption::PrefixInformation),
            any::<u32>().prop_map(NdOption::Mtu),
            any::<[u8; 6]>().prop_map(NdOption::FlagsExpansion),
            (unknown_type, padded_data(1..=4)).prop_map(|(option_type, data)| NdOption::Unknown { option_type, data }),
        ]
    }

    /// RA header flags, the two unassigned bits included.
    pub fn ra_flags() -> impl Strategy<Value = RaFlags> {
        any::<u8>().prop_map(RaFlags::from_octet)
    }

    /// A Router Solicitation with up to 4 options.
    pub fn router_solicitation() -> impl Strategy<Value = RouterSolicitation> {
        vec(nd_option(), 0..=4).prop_map(|options| RouterSolicitation { options })
    }

    /// A Router Advertisement with up to 6 options.
    pub fn router_advertisement() -> impl Strategy<Value = RouterAdvertisement> {
        (any::<u8>(), ra_flags(), any::<u16>(), any::<u32>(), any::<u32>(), vec(nd_option(), 0..=6)).prop_map(
            |(cur_hop_limit, flags, router_lifetime, reachable_time, retrans_timer, options)| RouterAdvertisement {
                cur_hop_limit,
                flags,
                router_lifetime,
                reachable_time,
                retrans_timer,
                options,
            },
        )
    }

    /// A Router Solicitation or Advertisement.
    pub fn nd_message() -> impl Strategy<Value = NdMessage> {
        prop_oneof![
            router_solicitation().prop_map(NdMessage::RouterSolicitation),
            router_advertisement().prop_map(NdMessage::RouterAdvertisement),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LL_ROUTER: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    const LL_HOST: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
    const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

    // RA from fe80::1 to ff02::1 laid out from RFC 4861 §4.2, §4.6.2, §4.6.4, §4.6.1 and
    // RFC 5175 §4. Checksum 0x6312 computed independently of this crate:
    //   python3 -c 'import struct,ipaddress as i
    //   m=bytes.fromhex("86000000400023280000000000000064030440c000000e1000000e1000000000"
    //     "20010db800010001000000000000000005010000000005b40101020000000001"
    //     "1a01000000000001")
    //   a=lambda x:i.IPv6Address(x).packed
    //   d=a("fe80::1")+a("ff02::1")+struct.pack("!I3xB",len(m),58)+m
    //   s=sum(struct.unpack("!%dH"%(len(d)//2),d))
    //   while s>>16: s=(s&0xffff)+(s>>16)
    //   print(hex(~s&0xffff))'
    // and confirmed by tshark 4.0 ("Checksum: 0x6312 [correct]") on a pcap of the packet.
    const GOLDEN_RA: [u8; 72] = [
        0x86, 0x00, 0x63, 0x12, // Type 134, Code 0, Checksum
        0x40, 0x00, 0x23, 0x28, // Cur Hop Limit 64, flags 0, Router Lifetime 9000
        0x00, 0x00, 0x00, 0x00, // Reachable Time 0
        0x00, 0x00, 0x00, 0x64, // Retrans Timer 100
        0x03, 0x04, 0x40, 0xc0, // PIO: Type 3, Length 4, /64, L|A
        0x00, 0x00, 0x0e, 0x10, // Valid Lifetime 3600
        0x00, 0x00, 0x0e, 0x10, // Preferred Lifetime 3600
        0x00, 0x00, 0x00, 0x00, // Reserved2
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x01, // Prefix 2001:db8:1:1::
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0x05, 0x01, 0x00, 0x00, 0x00, 0x00, 0x05, 0xb4, // MTU 1460
        0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // SLLA 02:00:00:00:00:01
        0x1a, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // Flags Expansion, bit 55
    ];

    // RS from fe80::2 to ff02::2 (RFC 4861 §4.1) with SLLA 02:00:00:00:00:02; checksum 0x7a2a by
    // the same python3 computation (source and destination changed), confirmed by tshark.
    const GOLDEN_RS: [u8; 16] = [
        0x85, 0x00, 0x7a, 0x2a, // Type 133, Code 0, Checksum
        0x00, 0x00, 0x00, 0x00, // Reserved
        0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // SLLA 02:00:00:00:00:02
    ];

    fn golden_ra() -> RouterAdvertisement {
        RouterAdvertisement {
            cur_hop_limit: 64,
            flags: RaFlags::default(),
            router_lifetime: 9000,
            reachable_time: 0,
            retrans_timer: 100,
            options: vec![
                NdOption::PrefixInformation(PrefixInformation {
                    prefix_len: 64,
                    on_link: true,
                    autonomous: true,
                    router_address: false,
                    valid_lifetime: 3600,
                    preferred_lifetime: 3600,
                    prefix: "2001:db8:1:1::".parse().unwrap(),
                }),
                NdOption::Mtu(1460),
                NdOption::SourceLinkLayerAddress(LinkLayerAddress::Ethernet([2, 0, 0, 0, 0, 1])),
                NdOption::FlagsExpansion([0, 0, 0, 0, 0, 1]),
            ],
        }
    }

    fn err(bytes: &[u8]) -> Error {
        NdMessage::parse(bytes).unwrap_err()
    }

    /// An RA header (16 octets, Code 0, checksum 0) followed by `options`.
    fn ra_with(options: &[u8]) -> Vec<u8> {
        let mut v = vec![134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        v.extend_from_slice(options);
        v
    }

    #[test]
    fn golden_ra_parses_and_re_emits() {
        let msg = NdMessage::parse_checked(&GOLDEN_RA, &LL_ROUTER, &ALL_NODES).unwrap();
        let NdMessage::RouterAdvertisement(ra) = &msg else { panic!("not an RA: {msg:?}") };
        assert_eq!(*ra, golden_ra());
        assert!(ra.flag_bit(DEFAULT_WEAK_HOST_FLAG_BIT));
        assert!(!ra.flag_bit(54));
        assert_eq!(ra.mtu(), Some(1460));
        assert_eq!(ra.prefixes().count(), 1);
        assert_eq!(ra.source_link_layer_address(), Some(&LinkLayerAddress::Ethernet([2, 0, 0, 0, 0, 1])));

        let mut buf = [0xaa; 80];
        assert_eq!(msg.buffer_len(), GOLDEN_RA.len());
        assert_eq!(msg.emit(&mut buf, &LL_ROUTER, &ALL_NODES), Ok(GOLDEN_RA.len()));
        assert_eq!(buf[..GOLDEN_RA.len()], GOLDEN_RA);
        assert!(buf[GOLDEN_RA.len()..].iter().all(|&b| b == 0xaa), "wrote past the message");
    }

    #[test]
    fn golden_ra_built_by_set_flag_bit() {
        let mut ra = golden_ra();
        ra.options.pop();
        ra.set_flag_bit(DEFAULT_WEAK_HOST_FLAG_BIT);
        let mut buf = [0; 72];
        NdMessage::from(ra).emit(&mut buf, &LL_ROUTER, &ALL_NODES).unwrap();
        assert_eq!(buf, GOLDEN_RA);
    }

    #[test]
    fn golden_rs_parses_and_re_emits() {
        let msg = NdMessage::parse_checked(&GOLDEN_RS, &LL_HOST, &ALL_ROUTERS).unwrap();
        let mac = LinkLayerAddress::Ethernet([2, 0, 0, 0, 0, 2]);
        assert_eq!(
            msg,
            NdMessage::RouterSolicitation(RouterSolicitation {
                options: vec![NdOption::SourceLinkLayerAddress(mac.clone())]
            })
        );
        let NdMessage::RouterSolicitation(rs) = &msg else { unreachable!() };
        assert_eq!(rs.source_link_layer_address(), Some(&mac));
        let mut buf = [0; 16];
        assert_eq!(msg.emit(&mut buf, &LL_HOST, &ALL_ROUTERS), Ok(16));
        assert_eq!(buf, GOLDEN_RS);
        assert_eq!(msg.to_string(), "RS SLLA 02:00:00:00:00:02");
    }

    #[test]
    fn display_is_one_compact_line() {
        let mut ra = golden_ra();
        assert_eq!(
            ra.to_string(),
            "RA hop=64 flags=[] lifetime=9000s reach=0ms retrans=100ms PIO 2001:db8:1:1::/64 LA \
             valid=3600 pref=3600 MTU 1460 SLLA 02:00:00:00:00:01 EFO [55]"
        );
        ra.flags = RaFlags::from_octet(0xff);
        ra.options = vec![
            NdOption::PrefixInformation(PrefixInformation {
                prefix_len: 0,
                on_link: false,
                autonomous: false,
                router_address: true,
                valid_lifetime: INFINITE_LIFETIME,
                preferred_lifetime: 0,
                prefix: Ipv6Addr::UNSPECIFIED,
            }),
            NdOption::Unknown { option_type: 25, data: vec![0; 22] },
            NdOption::SourceLinkLayerAddress(LinkLayerAddress::Other(vec![1, 2, 3])),
        ];
        assert_eq!(
            NdMessage::from(ra).to_string(),
            "RA hop=64 flags=[M O H P prf=low bit6 bit7] lifetime=9000s reach=0ms retrans=100ms \
             PIO ::/0 R valid=inf pref=0 OPT25 22 octets SLLA 01:02:03"
        );
        assert_eq!(NdMessage::from(RouterSolicitation::default()).to_string(), "RS");
    }

    #[test]
    fn ra_flags_octet() {
        let f = RaFlags::from_octet(0x80 | 0x20 | 0x08 | 0x04 | 0x01);
        assert!(f.managed && !f.other_config && f.home_agent && f.nd_proxy);
        assert_eq!(f.preference, RouterPreference::High);
        assert_eq!(f.unassigned, 0x01);
        assert_eq!(f.to_octet(), 0xad);
        for octet in 0..=255u8 {
            assert_eq!(RaFlags::from_octet(octet).to_octet(), octet);
        }
        // RFC 4191 §2.2 encodings.
        assert_eq!(RaFlags::from_octet(0x18).preference, RouterPreference::Low);
        assert_eq!(RaFlags::from_octet(0x10).preference, RouterPreference::Reserved);
        assert_eq!(RouterPreference::Reserved.effective(), RouterPreference::Medium);
        assert_eq!(RouterPreference::Low.effective(), RouterPreference::Low);
    }

    #[test]
    fn flag_bits_map_onto_header_and_expansion() {
        let mut ra = RouterAdvertisement::default();
        ra.set_flag_bit(0);
        assert!(ra.flags.managed);
        ra.set_flag_bit(2);
        assert!(ra.flags.home_agent);
        ra.set_flag_bit(4);
        assert_eq!(ra.flags.preference, RouterPreference::High);
        ra.set_flag_bit(5);
        assert!(ra.flags.nd_proxy);
        ra.set_flag_bit(7);
        assert_eq!(ra.flags.unassigned, 0x01);
        assert!(ra.options.is_empty(), "header bits need no option");
        for bit in [0, 2, 4, 5, 7] {
            assert!(ra.flag_bit(bit));
        }
        assert!(!ra.flag_bit(1) && !ra.flag_bit(3) && !ra.flag_bit(6));
        ra.clear_flag_bit(0);
        assert!(!ra.flags.managed);

        ra.set_flag_bit(8);
        ra.set_flag_bit(17);
        assert_eq!(ra.options, vec![NdOption::FlagsExpansion([0x80, 0x40, 0, 0, 0, 0])]);
        assert!(ra.flag_bit(8) && ra.flag_bit(17) && !ra.flag_bit(9));

        // Bits that do not exist are never set and never written.
        ra.set_flag_bit(56);
        ra.set_flag_bit(255);
        assert!(!ra.flag_bit(56) && !ra.flag_bit(255));
        assert_eq!(ra.options.len(), 1);

        ra.clear_flag_bit(8);
        assert_eq!(ra.options, vec![NdOption::FlagsExpansion([0, 0x40, 0, 0, 0, 0])]);
        ra.clear_flag_bit(17);
        assert!(ra.options.is_empty(), "an expansion option left empty is removed");
        // An expansion option that did not carry the bit is left alone.
        ra.options.push(NdOption::FlagsExpansion([0; 6]));
        ra.clear_flag_bit(30);
        assert_eq!(ra.options.len(), 1);
    }

    #[test]
    fn unknown_options_and_other_link_layer_addresses_are_kept() {
        // RDNSS (type 25, Length 3) and a 14-octet link-layer address (Length 2).
        let mut options = vec![25, 3, 0, 0, 0, 0, 0x0e, 0x10];
        options.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53]);
        options.extend_from_slice(&[1, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
        let bytes = ra_with(&options);
        let msg = NdMessage::parse(&bytes).unwrap();
        assert_eq!(
            msg.options(),
            [
                NdOption::Unknown { option_type: 25, data: bytes[18..40].to_vec() },
                NdOption::SourceLinkLayerAddress(LinkLayerAddress::Other((1..=14).collect())),
            ]
        );
        let mut buf = vec![0; msg.buffer_len()];
        msg.emit(&mut buf, &LL_ROUTER, &ALL_NODES).unwrap();
        assert_eq!(buf[4..], bytes[4..]);
        assert!(NdMessage::parse_checked(&buf, &LL_ROUTER, &ALL_NODES).is_ok());
    }

    #[test]
    fn reserved_fields_are_ignored_and_emitted_as_zero() {
        // RS Reserved, PIO Reserved1 and Reserved2, MTU Reserved all set.
        let rs = [133, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(NdMessage::parse(&rs), Ok(NdMessage::RouterSolicitation(RouterSolicitation::default())));
        let mut pio = vec![3, 4, 48, 0xff, 0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff];
        pio.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        pio.extend_from_slice(&[5, 1, 0xff, 0xff, 0, 0, 0x05, 0xdc]);
        let msg = NdMessage::parse(&ra_with(&pio)).unwrap();
        let NdOption::PrefixInformation(p) = msg.options()[0] else { panic!() };
        assert!(p.on_link && p.autonomous && p.router_address);
        assert_eq!(msg.options()[1], NdOption::Mtu(1500));
        let mut buf = vec![0; msg.buffer_len()];
        msg.emit(&mut buf, &LL_ROUTER, &ALL_NODES).unwrap();
        assert_eq!(buf[19], 0xe0, "Reserved1 sent as zero");
        assert_eq!(buf[28..32], [0; 4], "Reserved2 sent as zero");
        assert_eq!(buf[50..52], [0; 2], "MTU Reserved sent as zero");
    }

    #[test]
    fn empty_buffer_is_truncated() {
        assert_eq!(err(&[]), Error::new(ErrorKind::Truncated { needed: 8, available: 0 }, 0));
    }

    #[test]
    fn other_icmpv6_types_are_rejected() {
        // Neighbor Solicitation, Echo Request.
        assert_eq!(err(&[135, 0, 0, 0, 0, 0, 0, 0]), Error::new(ErrorKind::UnexpectedIcmpType(135), 0));
        assert_eq!(err(&[128]), Error::new(ErrorKind::UnexpectedIcmpType(128), 0));
    }

    #[test]
    fn short_messages_are_truncated() {
        // RFC 4861 §6.1.1: RS 8 octets or more; §6.1.2: RA 16 or more.
        assert_eq!(err(&[133, 0, 0, 0, 0, 0, 0]), Error::new(ErrorKind::Truncated { needed: 8, available: 7 }, 0));
        assert_eq!(err(&ra_with(&[])[..15]), Error::new(ErrorKind::Truncated { needed: 16, available: 15 }, 0));
        assert_eq!(err(&[134]), Error::new(ErrorKind::Truncated { needed: 16, available: 1 }, 0));
    }

    #[test]
    fn non_zero_code_is_rejected() {
        let code = ErrorKind::InvalidField { field: "ICMPv6 code" };
        assert_eq!(err(&[133, 1, 0, 0, 0, 0, 0, 0]), Error::new(code, 1));
        let mut ra = ra_with(&[]);
        ra[1] = 0xff;
        assert_eq!(err(&ra), Error::new(code, 1));
    }

    #[test]
    fn zero_length_option_is_rejected() {
        // RFC 4861 §4.6: an option of Length 0 discards the packet. Here after a valid MTU.
        let bytes = ra_with(&[5, 1, 0, 0, 0, 0, 5, 0xdc, 1, 0, 2, 0, 0, 0, 0, 1]);
        assert_eq!(err(&bytes), Error::new(ErrorKind::OptionLength { option_type: 1, length: 0 }, 24));
        // And in an RS, for an unknown option type too.
        let rs = [133, 0, 0, 0, 0, 0, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(err(&rs), Error::new(ErrorKind::OptionLength { option_type: 200, length: 0 }, 8));
    }

    #[test]
    fn lone_trailing_octet_is_a_truncated_option_header() {
        assert_eq!(err(&ra_with(&[1])), Error::new(ErrorKind::OptionHeaderTruncated, 16));
        assert_eq!(err(&[133, 0, 0, 0, 0, 0, 0, 0, 1]), Error::new(ErrorKind::OptionHeaderTruncated, 8));
    }

    #[test]
    fn option_running_past_the_end_is_an_overrun() {
        let bytes = ra_with(&[1, 2, 2, 0, 0, 0, 0, 1]);
        let kind = ErrorKind::OptionOverrun { option_type: 1, length: 2, available: 6 };
        assert_eq!(err(&bytes), Error::new(kind, 16));
        let bytes = ra_with(&[5, 1, 0, 0]);
        let kind = ErrorKind::OptionOverrun { option_type: 5, length: 1, available: 2 };
        assert_eq!(err(&bytes), Error::new(kind, 16));
    }

    #[test]
    fn known_options_with_wrong_length_are_rejected() {
        let mut pio = vec![3, 3];
        pio.resize(24, 0);
        assert_eq!(err(&ra_with(&pio)), Error::new(ErrorKind::OptionLength { option_type: 3, length: 3 }, 16));
        let mtu = [5, 2, 0, 0, 0, 0, 5, 0xdc, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(err(&ra_with(&mtu)), Error::new(ErrorKind::OptionLength { option_type: 5, length: 2 }, 16));
        let mut efo = vec![5, 1, 0, 0, 0, 0, 5, 0xdc, 26, 2];
        efo.resize(24, 0);
        assert_eq!(err(&ra_with(&efo)), Error::new(ErrorKind::OptionLength { option_type: 26, length: 2 }, 24));
    }

    #[test]
    fn prefix_length_over_128_is_rejected() {
        let mut pio = vec![3, 4, 129, 0xc0];
        pio.resize(32, 0);
        let kind = ErrorKind::InvalidField { field: "prefix length" };
        assert_eq!(err(&ra_with(&pio)), Error::new(kind, 18));
        pio[2] = 128;
        assert!(NdMessage::parse(&ra_with(&pio)).is_ok());
    }

    #[test]
    fn bad_checksum_is_rejected_with_the_right_value() {
        let mut bytes = GOLDEN_RA;
        bytes[3] ^= 0x01;
        let kind = ErrorKind::BadChecksum { found: 0x6313, computed: 0x6312 };
        assert_eq!(NdMessage::parse_checked(&bytes, &LL_ROUTER, &ALL_NODES), Err(Error::new(kind, 2)));
        // The same octets from another source do not verify either.
        let other = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 3);
        let e = NdMessage::parse_checked(&GOLDEN_RA, &other, &ALL_NODES).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::BadChecksum { found: 0x6312, .. }) && e.offset == 2);
        // A changed field does not verify.
        let mut bytes = GOLDEN_RS;
        bytes[15] = 3;
        assert!(matches!(
            NdMessage::parse_checked(&bytes, &LL_HOST, &ALL_ROUTERS).unwrap_err().kind,
            ErrorKind::BadChecksum { found: 0x7a2a, computed: 0x7a29 }
        ));
        // Without the check the message still parses.
        assert!(NdMessage::parse(&bytes).is_ok());
        // Too short to carry a checksum: the parse error.
        assert_eq!(
            NdMessage::parse_checked(&[133, 0], &LL_HOST, &ALL_ROUTERS),
            Err(Error::new(ErrorKind::Truncated { needed: 8, available: 2 }, 0))
        );
    }

    #[test]
    fn emit_into_short_buffer_fails_without_writing() {
        let msg = NdMessage::from(golden_ra());
        let mut buf = [0xaa; 71];
        assert_eq!(
            msg.emit(&mut buf, &LL_ROUTER, &ALL_NODES),
            Err(EmitError::BufferTooSmall { needed: 72, available: 71 })
        );
        assert!(buf.iter().all(|&b| b == 0xaa));
        assert_eq!(
            msg.emit(&mut [], &LL_ROUTER, &ALL_NODES),
            Err(EmitError::BufferTooSmall { needed: 72, available: 0 })
        );
    }

    #[test]
    fn emit_rejects_what_the_wire_cannot_carry() {
        let mut buf = [0; 4096];
        // 255 × 8 octets is the longest option: 2038 octets of data; one more needs Length 256.
        let ok = RouterSolicitation { options: vec![NdOption::Unknown { option_type: 99, data: vec![0; 2038] }] };
        assert_eq!(NdMessage::from(ok).emit(&mut buf, &LL_HOST, &ALL_ROUTERS), Ok(8 + 2040));
        let long = RouterSolicitation { options: vec![NdOption::Unknown { option_type: 99, data: vec![0; 2039] }] };
        let too_long = EmitError::TooLong { field: "ND option" };
        assert_eq!(NdMessage::from(long).emit(&mut buf, &LL_HOST, &ALL_ROUTERS), Err(too_long));
        let lla = LinkLayerAddress::Other(vec![0; 3000]);
        let long = RouterSolicitation { options: vec![NdOption::SourceLinkLayerAddress(lla)] };
        assert_eq!(NdMessage::from(long).emit(&mut buf, &LL_HOST, &ALL_ROUTERS), Err(too_long));

        let mut ra = golden_ra();
        let NdOption::PrefixInformation(p) = &mut ra.options[0] else { unreachable!() };
        p.prefix_len = 129;
        let invalid = EmitError::InvalidField { field: "prefix length" };
        assert_eq!(NdMessage::from(ra).emit(&mut buf, &LL_ROUTER, &ALL_NODES), Err(invalid));

        let mut ra = golden_ra();
        ra.flags.unassigned = 0x04;
        let invalid = EmitError::InvalidField { field: "RA flags" };
        assert_eq!(NdMessage::from(ra).emit(&mut buf, &LL_ROUTER, &ALL_NODES), Err(invalid));
    }

    #[test]
    fn short_data_is_padded_on_emit() {
        let rs = RouterSolicitation { options: vec![NdOption::Unknown { option_type: 14, data: vec![0xab; 3] }] };
        let mut buf = [0xff; 16];
        assert_eq!(NdMessage::from(rs).emit(&mut buf, &LL_HOST, &ALL_ROUTERS), Ok(16));
        assert_eq!(buf[8..], [14, 1, 0xab, 0xab, 0xab, 0, 0, 0]);
    }

    proptest! {
        #[test]
        fn round_trip(msg in strategy::nd_message(), src in any::<u128>(), dst in any::<u128>()) {
            let (src, dst) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
            let mut buf = vec![0; msg.buffer_len()];
            prop_assert_eq!(msg.emit(&mut buf, &src, &dst), Ok(buf.len()));
            prop_assert_eq!(NdMessage::parse_checked(&buf, &src, &dst), Ok(msg.clone()));
            // One octet less never fits and never panics.
            let short = buf.len() - 1;
            prop_assert!(msg.emit(&mut buf[..short], &src, &dst).is_err());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = NdMessage::parse(&bytes);
            let _ = NdMessage::parse_checked(&bytes, &LL_ROUTER, &ALL_NODES);
        }

        #[test]
        fn random_options_after_a_valid_header_never_panic(
            ra in any::<bool>(),
            options in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let mut bytes = if ra { ra_with(&[]) } else { vec![133, 0, 0, 0, 0, 0, 0, 0] };
            bytes.extend_from_slice(&options);
            if let Ok(msg) = NdMessage::parse(&bytes) {
                // What parses re-emits to a message that parses to the same value.
                let mut buf = vec![0; msg.buffer_len()];
                msg.emit(&mut buf, &LL_ROUTER, &ALL_NODES).unwrap();
                prop_assert_eq!(NdMessage::parse_checked(&buf, &LL_ROUTER, &ALL_NODES), Ok(msg));
            }
        }

        #[test]
        fn set_then_clear_restores(
            ra in strategy::router_advertisement(),
            bit in 8u8..=MAX_FLAG_BIT,
        ) {
            let mut ra = ra;
            ra.clear_flag_bit(bit);
            prop_assert!(!ra.flag_bit(bit));
            let mut changed = ra.clone();
            changed.set_flag_bit(bit);
            prop_assert!(changed.flag_bit(bit));
            changed.clear_flag_bit(bit);
            prop_assert!(!changed.flag_bit(bit));
            prop_assert_eq!(changed, ra);
        }
    }
}
