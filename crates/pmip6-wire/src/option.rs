//! Mobility options (RFC 6275 §6.2): the TLVs after a message's fixed fields.
//!
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+- - - - - - - - -
//! |  Option Type  | Option Length |   Option Data...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+- - - - - - - - -
//! ```
//!
//! Option Length counts the data octets only. Pad1 is a single zero octet without a length;
//! PadN pads N octets. Each option has an alignment requirement `xn+y`: its Type octet sits at a
//! Mobility Header offset that is `y` modulo `x` (RFC 6275 §6.2). [`OptionIter`] walks the raw
//! TLVs without allocating; [`MobilityOption`] is the owned representation, and [`emit_options`]
//! inserts the padding the alignment rules call for.

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};

use crate::codepoint::{AccessTechnologyType, HandoffIndicator, Ipv4HoaReplyStatus, MnIdSubtype};
use crate::error::{EmitError, Error, ErrorKind, Result};
use crate::flow::{FlowIdentification, FlowSummary};
use crate::timestamp::Timestamp;

/// Mobility option type numbers (IANA "Mobility Options").
pub mod option_type {
    /// Pad1 (RFC 6275).
    pub const PAD1: u8 = 0;
    /// PadN (RFC 6275).
    pub const PADN: u8 = 1;
    /// Mobile Node Identifier (RFC 4283).
    pub const MN_IDENTIFIER: u8 = 8;
    /// Mobility Message Authentication (RFC 4285).
    pub const AUTHENTICATION: u8 = 9;
    /// Mobility Message Replay Protection, MESG-ID (RFC 4285).
    pub const MESG_ID: u8 = 10;
    /// Experimental Mobility Option (RFC 5096).
    pub const EXPERIMENTAL: u8 = 18;
    /// Home Network Prefix (RFC 5213).
    pub const HOME_NETWORK_PREFIX: u8 = 22;
    /// Handoff Indicator (RFC 5213).
    pub const HANDOFF_INDICATOR: u8 = 23;
    /// Access Technology Type (RFC 5213).
    pub const ACCESS_TECHNOLOGY_TYPE: u8 = 24;
    /// Mobile Node Link-layer Identifier (RFC 5213).
    pub const MN_LINK_LAYER_IDENTIFIER: u8 = 25;
    /// Link-local Address (RFC 5213).
    pub const LINK_LOCAL_ADDRESS: u8 = 26;
    /// Timestamp (RFC 5213).
    pub const TIMESTAMP: u8 = 27;
    /// Restart Counter (RFC 5847).
    pub const RESTART_COUNTER: u8 = 28;
    /// IPv4 Care-of Address (RFC 5555, used by RFC 5844).
    pub const IPV4_CARE_OF_ADDRESS: u8 = 32;
    /// IPv4 Home Address Request (RFC 5844).
    pub const IPV4_HOME_ADDRESS_REQUEST: u8 = 36;
    /// IPv4 Home Address Reply (RFC 5844).
    pub const IPV4_HOME_ADDRESS_REPLY: u8 = 37;
    /// IPv4 Default-Router Address (RFC 5844).
    pub const IPV4_DEFAULT_ROUTER: u8 = 38;
    /// IPv4 DHCP Support Mode (RFC 5844).
    pub const IPV4_DHCP_SUPPORT_MODE: u8 = 39;
    /// Flow Summary (RFC 6089).
    pub const FLOW_SUMMARY: u8 = 44;
    /// Flow Identification (RFC 6089).
    pub const FLOW_IDENTIFICATION: u8 = 45;
}

/// Choices a receiver makes that the wire does not carry.
///
/// The draft's MuHo option has no assigned type ("MuHo option, TBD", draft §6). By default it
/// travels as the RFC 5096 Experimental Mobility Option (type 18) whose data is the Home Network
/// Prefix layout; a domain may pick an unassigned type (71–255) instead. Every node of a domain
/// must use the same type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseConfig {
    muho_option_type: u8,
}

impl ParseConfig {
    /// The default MuHo type: the Experimental Mobility Option of RFC 5096.
    pub const DEFAULT_MUHO_OPTION_TYPE: u8 = option_type::EXPERIMENTAL;

    /// A configuration carrying MuHo as option `muho_option_type`: 18 (experimental) or an
    /// unassigned type 71–255. Any other type would collide with an assigned option.
    pub const fn with_muho_option_type(muho_option_type: u8) -> Option<Self> {
        match muho_option_type {
            option_type::EXPERIMENTAL | 71..=255 => Some(Self { muho_option_type }),
            _ => None,
        }
    }

    /// The option type MuHo travels as.
    pub const fn muho_option_type(&self) -> u8 {
        self.muho_option_type
    }
}

impl Default for ParseConfig {
    fn default() -> Self {
        Self { muho_option_type: Self::DEFAULT_MUHO_OPTION_TYPE }
    }
}

/// A prefix as the Home Network Prefix option carries it (RFC 5213 §8.3), also the MuHo layout.
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |      Type     |   Length=18   |   Reserved    | Prefix Length |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// +                    Home Network Prefix (128)                  +
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Prefix {
    /// The prefix (bits beyond `len` are kept as received).
    pub addr: Ipv6Addr,
    /// Prefix length in bits, at most 128.
    pub len: u8,
}

impl Prefix {
    /// ALL_ZERO (`::/0`): in a PBU, "please assign a prefix" (RFC 5213 §6.9.1.1); as an empty
    /// MuHo, "tell me the prefixes of my other interfaces" (draft §5.2.1).
    pub const ALL_ZERO: Prefix = Prefix { addr: Ipv6Addr::UNSPECIFIED, len: 0 };

    /// A prefix of `len` bits.
    pub const fn new(addr: Ipv6Addr, len: u8) -> Self {
        Self { addr, len }
    }

    /// Whether this is the ALL_ZERO value.
    pub fn is_all_zero(&self) -> bool {
        self.len == 0 && self.addr.is_unspecified()
    }

    /// From the 18 octets of option data; `offset` is the MH offset of the first.
    fn parse(data: &[u8; 18], offset: usize) -> Result<Self> {
        // RFC 5213 §8.3: the prefix length is a number of bits of a 128-bit prefix.
        if data[1] > 128 {
            return Err(Error::new(ErrorKind::InvalidField { field: "prefix length" }, offset + 1));
        }
        let mut addr = [0u8; 16];
        addr.copy_from_slice(&data[2..]);
        Ok(Self { addr: Ipv6Addr::from(addr), len: data[1] })
    }

    fn emit(&self, buf: &mut [u8]) -> core::result::Result<(), EmitError> {
        if self.len > 128 {
            return Err(EmitError::InvalidField { field: "prefix length" });
        }
        buf[0] = 0;
        buf[1] = self.len;
        buf[2..18].copy_from_slice(&self.addr.octets());
        Ok(())
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The Mobile Node Identifier option (RFC 4283 §3).
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Option Type  | Option Length |  Subtype      |  Identifier ...
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MnIdentifier {
    /// What kind of identifier (RFC 5213 uses the NAI).
    pub subtype: MnIdSubtype,
    /// The identifier octets (an NAI carries no terminating NUL).
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::serde_text_or_hex"))]
    pub identifier: Vec<u8>,
}

impl MnIdentifier {
    /// A Network Access Identifier such as `mn1@example.net`.
    pub fn nai(nai: &str) -> Self {
        Self { subtype: MnIdSubtype::Nai, identifier: nai.as_bytes().to_vec() }
    }
}

impl fmt::Display for MnIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.subtype, core::str::from_utf8(&self.identifier)) {
            (MnIdSubtype::Nai, Ok(text)) => write!(f, "nai:{text}"),
            (subtype, _) => write!(f, "{}:{}", subtype, crate::Hex(&self.identifier)),
        }
    }
}

/// The Mobility Message Authentication option (RFC 4285 §5): it MUST be the last option.
///
/// ```text
/// |  Option Type  | Option Length |    Subtype    |
/// |                  Mobility SPI                 |
/// |              Authentication Data ....
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Authentication {
    /// 1 = MN-HA, 2 = MN-AAA (RFC 4285 §5).
    pub subtype: u8,
    /// Mobility Security Parameter Index.
    pub spi: u32,
    /// The authenticator.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::serde_hex"))]
    pub data: Vec<u8>,
}

/// A mobility option. Pad1 and PadN are not kept: `emit` recomputes them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum MobilityOption {
    /// Mobile Node Identifier (RFC 4283; type 8).
    MnIdentifier(MnIdentifier),
    /// Home Network Prefix (RFC 5213 §8.3; type 22, alignment 8n+4). May repeat.
    HomeNetworkPrefix(Prefix),
    /// The draft's MuHo option: one of the MN's prefixes on its other interfaces, or ALL_ZERO
    /// in a PBU to ask for them (draft §5.2.1, §5.2.2). Home Network Prefix layout and
    /// alignment; the type comes from [`ParseConfig`].
    MuHo {
        /// The option type it travels as.
        option_type: u8,
        /// The prefix.
        prefix: Prefix,
    },
    /// Handoff Indicator (RFC 5213 §8.4; type 23).
    HandoffIndicator(HandoffIndicator),
    /// Access Technology Type (RFC 5213 §8.5; type 24).
    AccessTechnologyType(AccessTechnologyType),
    /// Mobile Node Link-layer Identifier (RFC 5213 §8.6; type 25).
    MnLinkLayerIdentifier(#[cfg_attr(feature = "serde", serde(serialize_with = "crate::serde_hex"))] Vec<u8>),
    /// Link-local Address (RFC 5213 §8.7; type 26, alignment 8n+6). ALL_ZERO in a PBU asks the
    /// LMA for the address kept in the binding.
    LinkLocalAddress(Ipv6Addr),
    /// Timestamp (RFC 5213 §8.8; type 27, alignment 8n+2).
    Timestamp(Timestamp),
    /// Restart Counter (RFC 5847 §5.2; type 28).
    RestartCounter(u32),
    /// IPv4 Home Address Request (RFC 5844 §3.1; type 36, alignment 4n). 0.0.0.0 asks the LMA
    /// to assign one.
    Ipv4HomeAddressRequest {
        /// Requested prefix length (0–32).
        prefix_len: u8,
        /// Requested address.
        address: Ipv4Addr,
    },
    /// IPv4 Home Address Reply (RFC 5844 §3.2; type 37, alignment 4n).
    Ipv4HomeAddressReply {
        /// Result of the request.
        status: Ipv4HoaReplyStatus,
        /// Prefix length of the assigned address (0–32).
        prefix_len: u8,
        /// Assigned address.
        address: Ipv4Addr,
    },
    /// IPv4 Default-Router Address (RFC 5844 §3.3; type 38, alignment 4n).
    Ipv4DefaultRouter(Ipv4Addr),
    /// IPv4 DHCP Support Mode (RFC 5844 §3.4; type 39): `server` = S flag (MAG acts as DHCP
    /// server; clear: DHCP relay).
    Ipv4DhcpSupportMode {
        /// The S flag.
        server: bool,
    },
    /// IPv4 Care-of Address (RFC 5555 §3.1.1, used by RFC 5844 §7; type 32, alignment 4n).
    Ipv4CareOfAddress(Ipv4Addr),
    /// Mobility Message Authentication (RFC 4285 §5; type 9, alignment 4n+1).
    Authentication(Authentication),
    /// Mobility Message Replay Protection: an NTP-format timestamp (RFC 4285 §6; type 10,
    /// alignment 8n+2).
    MesgId(u64),
    /// Flow Identification (RFC 6089 §6.2; type 45).
    FlowIdentification(FlowIdentification),
    /// Flow Summary (RFC 6089 §6.1; type 44).
    FlowSummary(FlowSummary),
    /// Experimental Mobility Option (RFC 5096; type 18) not carrying a MuHo.
    Experimental(#[cfg_attr(feature = "serde", serde(serialize_with = "crate::serde_hex"))] Vec<u8>),
    /// Any other option, kept byte for byte (RFC 6275 §6.2.1: skip and go on).
    Unknown {
        /// Option Type.
        option_type: u8,
        /// Option Data.
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::serde_hex"))]
        data: Vec<u8>,
    },
}

/// One raw option as found in a message: no interpretation beyond its framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawOption<'a> {
    /// Option Type.
    pub option_type: u8,
    /// Option Data (Length octets).
    pub data: &'a [u8],
    /// Offset of the Type octet in the buffer walked.
    pub offset: usize,
}

/// Walks the TLVs of `buf[start..]`, skipping Pad1 and PadN, without allocating.
///
/// Offsets are positions in `buf`, so for a whole Mobility Header they are MH offsets.
#[derive(Debug, Clone)]
pub struct OptionIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> OptionIter<'a> {
    /// The options of `buf` from `start` to its end.
    pub fn new(buf: &'a [u8], start: usize) -> Self {
        Self { buf, pos: start, failed: false }
    }
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = Result<RawOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            let offset = self.pos;
            let option_type = *self.buf.get(offset)?;
            // RFC 6275 §6.2.2: Pad1 has no Length field.
            if option_type == option_type::PAD1 {
                self.pos += 1;
                continue;
            }
            let Some(&length) = self.buf.get(offset + 1) else {
                self.failed = true;
                return Some(Err(Error::new(ErrorKind::OptionHeaderTruncated, offset)));
            };
            let start = offset + 2;
            let end = start + usize::from(length);
            let Some(data) = self.buf.get(start..end) else {
                // RFC 6275 §9.2 (via §6.2.1): an option running past the message is malformed.
                self.failed = true;
                let available = self.buf.len().saturating_sub(start);
                return Some(Err(Error::new(ErrorKind::OptionOverrun { option_type, length, available }, offset)));
            };
            self.pos = end;
            if option_type == option_type::PADN {
                continue;
            }
            return Some(Ok(RawOption { option_type, data, offset }));
        }
    }
}

fn exact<const N: usize>(raw: &RawOption<'_>) -> Result<[u8; N]> {
    raw.data.try_into().map_err(|_| length_error(raw))
}

fn length_error(raw: &RawOption<'_>) -> Error {
    Error::new(ErrorKind::OptionLength { option_type: raw.option_type, length: raw.data.len() as u8 }, raw.offset)
}

fn ipv4_at(data: &[u8; 6]) -> Ipv4Addr {
    Ipv4Addr::new(data[2], data[3], data[4], data[5])
}

impl MobilityOption {
    /// Interprets one raw option.
    pub fn parse(raw: &RawOption<'_>, config: &ParseConfig) -> Result<Self> {
        use option_type as t;
        let data_offset = raw.offset + 2;
        let option = match raw.option_type {
            ty if ty == config.muho_option_type && raw.data.len() == 18 => {
                MobilityOption::MuHo { option_type: ty, prefix: Prefix::parse(&exact::<18>(raw)?, data_offset)? }
            }
            // A MuHo of the wrong length under a non-experimental type is malformed; under the
            // experimental type it is some other experiment, kept as it is.
            ty if ty == config.muho_option_type && ty != t::EXPERIMENTAL => return Err(length_error(raw)),
            t::MN_IDENTIFIER => match raw.data {
                // RFC 4283 §3: a Subtype octet and a non-empty identifier.
                [subtype, identifier @ ..] if !identifier.is_empty() => MobilityOption::MnIdentifier(MnIdentifier {
                    subtype: MnIdSubtype::from(*subtype),
                    identifier: identifier.to_vec(),
                }),
                _ => return Err(length_error(raw)),
            },
            t::HOME_NETWORK_PREFIX => {
                // RFC 5213 §8.3: Length is 18.
                MobilityOption::HomeNetworkPrefix(Prefix::parse(&exact::<18>(raw)?, data_offset)?)
            }
            t::HANDOFF_INDICATOR => {
                // RFC 5213 §8.4: Length is 2, Reserved then the indicator.
                let [_, hi] = exact::<2>(raw)?;
                MobilityOption::HandoffIndicator(HandoffIndicator::from(hi))
            }
            t::ACCESS_TECHNOLOGY_TYPE => {
                // RFC 5213 §8.5: Length is 2, Reserved then the type.
                let [_, att] = exact::<2>(raw)?;
                MobilityOption::AccessTechnologyType(AccessTechnologyType::from(att))
            }
            t::MN_LINK_LAYER_IDENTIFIER => match raw.data {
                // RFC 5213 §8.6: two Reserved octets, then a link-layer identifier.
                [_, _, lli @ ..] if !lli.is_empty() => MobilityOption::MnLinkLayerIdentifier(lli.to_vec()),
                _ => return Err(length_error(raw)),
            },
            t::LINK_LOCAL_ADDRESS => {
                // RFC 5213 §8.7: Length is 16.
                MobilityOption::LinkLocalAddress(Ipv6Addr::from(exact::<16>(raw)?))
            }
            t::TIMESTAMP => {
                // RFC 5213 §8.8: Length is 8.
                MobilityOption::Timestamp(Timestamp(u64::from_be_bytes(exact::<8>(raw)?)))
            }
            t::RESTART_COUNTER => {
                // RFC 5847 §5.2: Length is 4.
                MobilityOption::RestartCounter(u32::from_be_bytes(exact::<4>(raw)?))
            }
            t::IPV4_HOME_ADDRESS_REQUEST => {
                // RFC 5844 §3.1: Prefix-len (6 bits) | Reserved (10 bits) | address.
                let data = exact::<6>(raw)?;
                let prefix_len = data[0] >> 2;
                if prefix_len > 32 {
                    return Err(Error::new(ErrorKind::InvalidField { field: "IPv4 prefix length" }, data_offset));
                }
                MobilityOption::Ipv4HomeAddressRequest { prefix_len, address: ipv4_at(&data) }
            }
            t::IPV4_HOME_ADDRESS_REPLY => {
                // RFC 5844 §3.2: Status | Pref-len (6 bits) | Reserved (2 bits) | address.
                let data = exact::<6>(raw)?;
                let prefix_len = data[1] >> 2;
                if prefix_len > 32 {
                    return Err(Error::new(ErrorKind::InvalidField { field: "IPv4 prefix length" }, data_offset + 1));
                }
                MobilityOption::Ipv4HomeAddressReply {
                    status: Ipv4HoaReplyStatus::from(data[0]),
                    prefix_len,
                    address: ipv4_at(&data),
                }
            }
            t::IPV4_DEFAULT_ROUTER => MobilityOption::Ipv4DefaultRouter(ipv4_at(&exact::<6>(raw)?)),
            t::IPV4_CARE_OF_ADDRESS => MobilityOption::Ipv4CareOfAddress(ipv4_at(&exact::<6>(raw)?)),
            t::IPV4_DHCP_SUPPORT_MODE => {
                // RFC 5844 §3.4: Reserved (15 bits) | S.
                let data = exact::<2>(raw)?;
                MobilityOption::Ipv4DhcpSupportMode { server: data[1] & 0x01 != 0 }
            }
            t::AUTHENTICATION => match raw.data {
                // RFC 4285 §5: Subtype, SPI, then the authenticator.
                [subtype, a, b, c, d, auth @ ..] => MobilityOption::Authentication(Authentication {
                    subtype: *subtype,
                    spi: u32::from_be_bytes([*a, *b, *c, *d]),
                    data: auth.to_vec(),
                }),
                _ => return Err(length_error(raw)),
            },
            t::MESG_ID => MobilityOption::MesgId(u64::from_be_bytes(exact::<8>(raw)?)),
            t::FLOW_IDENTIFICATION => {
                MobilityOption::FlowIdentification(FlowIdentification::parse(raw.data, data_offset)?)
            }
            t::FLOW_SUMMARY => MobilityOption::FlowSummary(FlowSummary::parse(raw.data, data_offset)?),
            t::EXPERIMENTAL => MobilityOption::Experimental(raw.data.to_vec()),
            option_type => MobilityOption::Unknown { option_type, data: raw.data.to_vec() },
        };
        Ok(option)
    }

    /// The option's type number.
    pub fn option_type(&self) -> u8 {
        use option_type as t;
        match self {
            MobilityOption::MnIdentifier(_) => t::MN_IDENTIFIER,
            MobilityOption::HomeNetworkPrefix(_) => t::HOME_NETWORK_PREFIX,
            MobilityOption::MuHo { option_type, .. } => *option_type,
            MobilityOption::HandoffIndicator(_) => t::HANDOFF_INDICATOR,
            MobilityOption::AccessTechnologyType(_) => t::ACCESS_TECHNOLOGY_TYPE,
            MobilityOption::MnLinkLayerIdentifier(_) => t::MN_LINK_LAYER_IDENTIFIER,
            MobilityOption::LinkLocalAddress(_) => t::LINK_LOCAL_ADDRESS,
            MobilityOption::Timestamp(_) => t::TIMESTAMP,
            MobilityOption::RestartCounter(_) => t::RESTART_COUNTER,
            MobilityOption::Ipv4HomeAddressRequest { .. } => t::IPV4_HOME_ADDRESS_REQUEST,
            MobilityOption::Ipv4HomeAddressReply { .. } => t::IPV4_HOME_ADDRESS_REPLY,
            MobilityOption::Ipv4DefaultRouter(_) => t::IPV4_DEFAULT_ROUTER,
            MobilityOption::Ipv4DhcpSupportMode { .. } => t::IPV4_DHCP_SUPPORT_MODE,
            MobilityOption::Ipv4CareOfAddress(_) => t::IPV4_CARE_OF_ADDRESS,
            MobilityOption::Authentication(_) => t::AUTHENTICATION,
            MobilityOption::MesgId(_) => t::MESG_ID,
            MobilityOption::FlowIdentification(_) => t::FLOW_IDENTIFICATION,
            MobilityOption::FlowSummary(_) => t::FLOW_SUMMARY,
            MobilityOption::Experimental(_) => t::EXPERIMENTAL,
            MobilityOption::Unknown { option_type, .. } => *option_type,
        }
    }

    /// The alignment `(x, y)`: the Type octet must sit at an MH offset `xn+y` (x = 1: none).
    pub fn alignment(&self) -> (usize, usize) {
        match self {
            // RFC 5213 §8.3: 8n+4, so the prefix is 8-aligned; MuHo keeps the HNP layout.
            MobilityOption::HomeNetworkPrefix(_) | MobilityOption::MuHo { .. } => (8, 4),
            // RFC 5213 §8.7: 8n+6.
            MobilityOption::LinkLocalAddress(_) => (8, 6),
            // RFC 5213 §8.8: 8n+2; RFC 4285 §6: 8n+2.
            MobilityOption::Timestamp(_) | MobilityOption::MesgId(_) => (8, 2),
            // RFC 5847 §5.2 states none we could confirm; 4n+2 keeps the counter 4-aligned.
            MobilityOption::RestartCounter(_) => (4, 2),
            // RFC 5844 §3.1–3.3, RFC 5555 §3.1.1: 4n.
            MobilityOption::Ipv4HomeAddressRequest { .. }
            | MobilityOption::Ipv4HomeAddressReply { .. }
            | MobilityOption::Ipv4DefaultRouter(_)
            | MobilityOption::Ipv4CareOfAddress(_) => (4, 0),
            // RFC 4285 §5: 4n+1, so the SPI is 4-aligned.
            MobilityOption::Authentication(_) => (4, 1),
            MobilityOption::FlowIdentification(_) => FlowIdentification::ALIGNMENT,
            MobilityOption::FlowSummary(_) => FlowSummary::ALIGNMENT,
            _ => (1, 0),
        }
    }

    /// Octets of Option Data (without Type and Length).
    pub fn data_len(&self) -> usize {
        match self {
            MobilityOption::MnIdentifier(id) => 1 + id.identifier.len(),
            MobilityOption::HomeNetworkPrefix(_) | MobilityOption::MuHo { .. } => 18,
            MobilityOption::HandoffIndicator(_) | MobilityOption::AccessTechnologyType(_) => 2,
            MobilityOption::MnLinkLayerIdentifier(lli) => 2 + lli.len(),
            MobilityOption::LinkLocalAddress(_) => 16,
            MobilityOption::Timestamp(_) | MobilityOption::MesgId(_) => 8,
            MobilityOption::RestartCounter(_) => 4,
            MobilityOption::Ipv4HomeAddressRequest { .. }
            | MobilityOption::Ipv4HomeAddressReply { .. }
            | MobilityOption::Ipv4DefaultRouter(_)
            | MobilityOption::Ipv4CareOfAddress(_) => 6,
            MobilityOption::Ipv4DhcpSupportMode { .. } => 2,
            MobilityOption::Authentication(auth) => 5 + auth.data.len(),
            MobilityOption::FlowIdentification(fi) => fi.buffer_len(),
            MobilityOption::FlowSummary(fs) => fs.buffer_len(),
            MobilityOption::Experimental(data) | MobilityOption::Unknown { data, .. } => data.len(),
        }
    }

    /// Writes Type, Length and Data into `buf`, which holds exactly `2 + data_len()` octets.
    fn emit(&self, buf: &mut [u8]) -> core::result::Result<(), EmitError> {
        let len = self.data_len();
        let length = u8::try_from(len).map_err(|_| EmitError::TooLong { field: "mobility option" })?;
        if matches!(self.option_type(), option_type::PAD1 | option_type::PADN) {
            // Padding is ours to place: an Unknown option of type 0 or 1 would change meaning.
            return Err(EmitError::InvalidField { field: "option type (Pad1/PadN)" });
        }
        buf[0] = self.option_type();
        buf[1] = length;
        let data = &mut buf[2..];
        match self {
            MobilityOption::MnIdentifier(id) => {
                if id.identifier.is_empty() {
                    return Err(EmitError::InvalidField { field: "empty MN identifier" });
                }
                data[0] = id.subtype.into();
                data[1..].copy_from_slice(&id.identifier);
            }
            MobilityOption::HomeNetworkPrefix(prefix) | MobilityOption::MuHo { prefix, .. } => prefix.emit(data)?,
            MobilityOption::HandoffIndicator(hi) => data.copy_from_slice(&[0, (*hi).into()]),
            MobilityOption::AccessTechnologyType(att) => data.copy_from_slice(&[0, (*att).into()]),
            MobilityOption::MnLinkLayerIdentifier(lli) => {
                if lli.is_empty() {
                    return Err(EmitError::InvalidField { field: "empty MN link-layer identifier" });
                }
                data[..2].fill(0);
                data[2..].copy_from_slice(lli);
            }
            MobilityOption::LinkLocalAddress(addr) => data.copy_from_slice(&addr.octets()),
            MobilityOption::Timestamp(ts) => data.copy_from_slice(&ts.0.to_be_bytes()),
            MobilityOption::MesgId(ts) => data.copy_from_slice(&ts.to_be_bytes()),
            MobilityOption::RestartCounter(counter) => data.copy_from_slice(&counter.to_be_bytes()),
            MobilityOption::Ipv4HomeAddressRequest { prefix_len, address } => {
                if *prefix_len > 32 {
                    return Err(EmitError::InvalidField { field: "IPv4 prefix length" });
                }
                data[..2].copy_from_slice(&[prefix_len << 2, 0]);
                data[2..].copy_from_slice(&address.octets());
            }
            MobilityOption::Ipv4HomeAddressReply { status, prefix_len, address } => {
                if *prefix_len > 32 {
                    return Err(EmitError::InvalidField { field: "IPv4 prefix length" });
                }
                data[..2].copy_from_slice(&[(*status).into(), prefix_len << 2]);
                data[2..].copy_from_slice(&address.octets());
            }
            MobilityOption::Ipv4DefaultRouter(address) | MobilityOption::Ipv4CareOfAddress(address) => {
                data[..2].fill(0);
                data[2..].copy_from_slice(&address.octets());
            }
            MobilityOption::Ipv4DhcpSupportMode { server } => data.copy_from_slice(&[0, u8::from(*server)]),
            MobilityOption::Authentication(auth) => {
                data[0] = auth.subtype;
                data[1..5].copy_from_slice(&auth.spi.to_be_bytes());
                data[5..].copy_from_slice(&auth.data);
            }
            MobilityOption::FlowIdentification(fi) => fi.emit(data)?,
            MobilityOption::FlowSummary(fs) => fs.emit(data)?,
            MobilityOption::Experimental(bytes) | MobilityOption::Unknown { data: bytes, .. } => {
                data.copy_from_slice(bytes)
            }
        }
        Ok(())
    }
}

/// Parses every option of `buf[start..]` (a whole Mobility Header, so that alignment and error
/// offsets are MH offsets).
pub fn parse_options(buf: &[u8], start: usize, config: &ParseConfig) -> Result<Vec<MobilityOption>> {
    let mut options = Vec::with_capacity(8);
    for raw in OptionIter::new(buf, start) {
        options.push(MobilityOption::parse(&raw?, config)?);
    }
    Ok(options)
}

/// Octets of padding to put at MH offset `at` so that the next option sits at `xn+y`.
fn padding_before(at: usize, (x, y): (usize, usize)) -> usize {
    (x + y - at % x) % x
}

/// Octets `options` take when emitted from MH offset `start`, padding included, up to the end
/// of the message (a multiple of 8 octets, RFC 6275 §6.1.1).
pub fn options_len(options: &[MobilityOption], start: usize) -> usize {
    let mut at = start;
    for option in options {
        at += padding_before(at, option.alignment()) + 2 + option.data_len();
    }
    at += padding_before(at, (8, 0));
    at - start
}

/// Writes Pad1 or PadN filling `buf` (RFC 6275 §6.2.2, §6.2.3: padding data is zero).
fn emit_padding(buf: &mut [u8]) {
    match buf.len() {
        0 => {}
        1 => buf[0] = option_type::PAD1,
        n => {
            buf[0] = option_type::PADN;
            buf[1] = (n - 2) as u8;
            buf[2..].fill(0);
        }
    }
}

/// Emits `options` into `buf`, whose first octet is at MH offset `start`, inserting Pad1/PadN
/// before each option to meet its alignment and after the last to end on a multiple of 8.
/// `buf` must hold `options_len(options, start)` octets; returns that length.
pub fn emit_options(
    options: &[MobilityOption],
    start: usize,
    buf: &mut [u8],
) -> core::result::Result<usize, EmitError> {
    // One pass: each write is bounds-checked, so a short buffer fails without a second walk.
    fn slot(buf: &mut [u8], from: usize, len: usize) -> core::result::Result<&mut [u8], EmitError> {
        let available = buf.len();
        buf.get_mut(from..from + len).ok_or(EmitError::BufferTooSmall { needed: from + len, available })
    }
    let mut at = 0;
    for option in options {
        let pad = padding_before(start + at, option.alignment());
        emit_padding(slot(buf, at, pad)?);
        at += pad;
        let len = 2 + option.data_len();
        option.emit(slot(buf, at, len)?)?;
        at += len;
    }
    let pad = padding_before(start + at, (8, 0));
    emit_padding(slot(buf, at, pad)?);
    Ok(at + pad)
}

impl fmt::Display for MobilityOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MobilityOption::MnIdentifier(id) => write!(f, "MN-ID {id}"),
            MobilityOption::HomeNetworkPrefix(p) => write!(f, "HNP {p}"),
            MobilityOption::MuHo { option_type, prefix } => write!(f, "MuHo({option_type}) {prefix}"),
            MobilityOption::HandoffIndicator(hi) => write!(f, "HI {hi}"),
            MobilityOption::AccessTechnologyType(att) => write!(f, "ATT {att}"),
            MobilityOption::MnLinkLayerIdentifier(lli) => write!(f, "MN-LL-ID {}", crate::Hex(lli)),
            MobilityOption::LinkLocalAddress(a) => write!(f, "LLA {a}"),
            MobilityOption::Timestamp(ts) => write!(f, "TS {ts}"),
            MobilityOption::RestartCounter(c) => write!(f, "RC {c}"),
            MobilityOption::Ipv4HomeAddressRequest { prefix_len, address } => {
                write!(f, "IPv4-HoA-Req {address}/{prefix_len}")
            }
            MobilityOption::Ipv4HomeAddressReply { status, prefix_len, address } => {
                write!(f, "IPv4-HoA-Rep {status} {address}/{prefix_len}")
            }
            MobilityOption::Ipv4DefaultRouter(a) => write!(f, "IPv4-DR {a}"),
            MobilityOption::Ipv4DhcpSupportMode { server } => {
                write!(f, "IPv4-DHCP {}", if *server { "server" } else { "relay" })
            }
            MobilityOption::Ipv4CareOfAddress(a) => write!(f, "IPv4-CoA {a}"),
            MobilityOption::Authentication(a) => {
                write!(f, "AUTH subtype={} spi={} {}", a.subtype, a.spi, crate::Hex(&a.data))
            }
            MobilityOption::MesgId(ts) => write!(f, "MESG-ID {ts:#018x}"),
            MobilityOption::FlowIdentification(fi) => write!(f, "{fi}"),
            MobilityOption::FlowSummary(fs) => write!(f, "{fs}"),
            MobilityOption::Experimental(d) => write!(f, "EXP {}", crate::Hex(d)),
            MobilityOption::Unknown { option_type, data } => write!(f, "OPT{option_type} {}", crate::Hex(data)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Result<Vec<MobilityOption>> {
        parse_options(bytes, 0, &ParseConfig::default())
    }

    #[test]
    fn padding_meets_every_alignment() {
        for at in 0..32 {
            for (x, y) in [(8, 4), (8, 6), (8, 2), (4, 2), (4, 0), (4, 1), (1, 0)] {
                assert_eq!((at + padding_before(at, (x, y))) % x, y, "at {at} for {x}n+{y}");
                assert!(padding_before(at, (x, y)) < x);
            }
        }
    }

    #[test]
    fn pad1_and_padn_are_skipped() {
        let bytes = [0, 1, 2, 0, 0, 23, 2, 0, 3];
        assert_eq!(parse_all(&bytes), Ok(vec![MobilityOption::HandoffIndicator(HandoffIndicator::BetweenMags)]));
    }

    #[test]
    fn rejects_option_running_past_the_end() {
        let bytes = [23, 2, 0, 3, 22, 18, 0, 64];
        let err = parse_all(&bytes).unwrap_err();
        assert_eq!(err, Error::new(ErrorKind::OptionOverrun { option_type: 22, length: 18, available: 2 }, 4));
    }

    #[test]
    fn rejects_lone_type_octet() {
        let err = parse_all(&[23, 2, 0, 3, 24]).unwrap_err();
        assert_eq!(err, Error::new(ErrorKind::OptionHeaderTruncated, 4));
    }

    #[test]
    fn rejects_wrong_fixed_lengths_and_zero_length_tlvs() {
        for (bytes, ty) in [
            (&[22u8, 0][..], 22u8),
            (&[23, 1, 0][..], 23),
            (&[26, 4, 0, 0, 0, 0][..], 26),
            (&[27, 0][..], 27),
            (&[8, 1, 1][..], 8),
            (&[25, 2, 0, 0][..], 25),
            (&[9, 4, 1, 0, 0, 0][..], 9),
        ] {
            let err = parse_all(bytes).unwrap_err();
            assert_eq!(err.kind, ErrorKind::OptionLength { option_type: ty, length: bytes[1] });
            assert_eq!(err.offset, 0);
        }
    }

    #[test]
    fn rejects_prefix_length_over_128() {
        let mut bytes = vec![22, 18, 0, 129];
        bytes.extend_from_slice(&[0; 16]);
        let err = parse_all(&bytes).unwrap_err();
        assert_eq!(err, Error::new(ErrorKind::InvalidField { field: "prefix length" }, 3));
    }

    #[test]
    fn unknown_and_zero_length_unknown_options_are_kept() {
        let bytes = [200, 0, 201, 3, 1, 2, 3];
        assert_eq!(
            parse_all(&bytes),
            Ok(vec![
                MobilityOption::Unknown { option_type: 200, data: vec![] },
                MobilityOption::Unknown { option_type: 201, data: vec![1, 2, 3] },
            ])
        );
    }

    #[test]
    fn muho_type_is_configurable() {
        let mut body = vec![0u8, 64];
        body.extend_from_slice(&"2001:db8:1:2::".parse::<Ipv6Addr>().unwrap().octets());
        let prefix = Prefix::new("2001:db8:1:2::".parse().unwrap(), 64);
        let as_type = |ty: u8| {
            let mut b = vec![ty, 18];
            b.extend_from_slice(&body);
            b
        };
        assert_eq!(parse_all(&as_type(18)), Ok(vec![MobilityOption::MuHo { option_type: 18, prefix }]));
        assert_eq!(
            parse_all(&as_type(200)),
            Ok(vec![MobilityOption::Unknown { option_type: 200, data: body.clone() }])
        );
        let config = ParseConfig::with_muho_option_type(200).unwrap();
        assert_eq!(
            parse_options(&as_type(200), 0, &config),
            Ok(vec![MobilityOption::MuHo { option_type: 200, prefix }])
        );
        assert_eq!(parse_options(&as_type(18), 0, &config), Ok(vec![MobilityOption::Experimental(body)]));
        // An experimental option of another length is another experiment, not a MuHo.
        assert_eq!(parse_all(&[18, 2, 7, 7]), Ok(vec![MobilityOption::Experimental(vec![7, 7])]));
        // Assigned types cannot carry MuHo.
        assert_eq!(ParseConfig::with_muho_option_type(22), None);
        assert_eq!(ParseConfig::with_muho_option_type(70), None);
    }

    #[test]
    fn emit_refuses_what_the_wire_cannot_carry() {
        let too_long = [MobilityOption::Unknown { option_type: 200, data: vec![0; 256] }];
        let mut buf = vec![0; options_len(&too_long, 12)];
        assert_eq!(emit_options(&too_long, 12, &mut buf), Err(EmitError::TooLong { field: "mobility option" }));
        let pad = [MobilityOption::Unknown { option_type: 1, data: vec![0; 2] }];
        let mut buf = vec![0; options_len(&pad, 12)];
        assert!(matches!(emit_options(&pad, 12, &mut buf), Err(EmitError::InvalidField { .. })));
        let small = [MobilityOption::RestartCounter(1)];
        assert!(matches!(emit_options(&small, 12, &mut [0; 4]), Err(EmitError::BufferTooSmall { .. })));
    }
}
