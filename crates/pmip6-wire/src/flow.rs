//! The flow binding mobility options of RFC 6089, which RFC 7864 carries in Update
//! Notifications and Proxy Binding Updates to move flows between a mobile node's attachments:
//! Flow Identification (type 45) with its sub-options (RFC 6089 §4.2.1, RFC 7109 §6.2) and Flow
//! Summary (type 44).
//!
//! Each type here is the option *data*, what follows the mobility option's Type and Length
//! octets; [`crate::option`] owns that outer framing and the padding before the option.
//!
//! Sub-options follow the alignment convention of mobility options (RFC 6089 §4.2.1: multi-octet
//! fields "fall on natural boundaries ... from the start of the header"). To place them without
//! knowing where the option lands in the message, [`FlowIdentification::ALIGNMENT`] pins the
//! option to 8n, so its sub-options start on an 8-octet boundary and `emit` pads before each
//! one from there.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::codepoint::enum_with_unknown;
use crate::error::{EmitError, Error, ErrorKind, Result};
use crate::option::option_type::FLOW_SUMMARY;
use crate::selector::TrafficSelector;

/// Flow Identification sub-option types (IANA "Flow Identification Sub-options").
pub mod sub_option_type {
    /// Pad1: a single zero octet, no length (RFC 6089 §4.2.1.1).
    pub const PAD1: u8 = 0;
    /// PadN (RFC 6089 §4.2.1.2).
    pub const PADN: u8 = 1;
    /// Binding Reference (RFC 6089 §4.2.1.3).
    pub const BID_REFERENCE: u8 = 2;
    /// Traffic Selector (RFC 6089 §4.2.1.4).
    pub const TRAFFIC_SELECTOR: u8 = 3;
    /// Flow Binding Action (RFC 7109 §6.2.1).
    pub const FLOW_BINDING_ACTION: u8 = 4;
    /// Target Care-of Address (RFC 7109 §6.2.2).
    pub const TARGET_CARE_OF_ADDRESS: u8 = 5;
}

/// Action values of the Flow Binding Action sub-option (RFC 7109 §6.2.1).
pub mod flow_binding_action {
    /// Add a flow binding.
    pub const ADD: u8 = 11;
    /// Delete a flow binding.
    pub const DELETE: u8 = 12;
    /// Modify a flow binding.
    pub const MODIFY: u8 = 13;
    /// Refresh a flow binding.
    pub const REFRESH: u8 = 14;
    /// Move a flow binding (the Target Care-of Address sub-option must come with it).
    pub const MOVE: u8 = 15;
    /// Revoke a flow binding.
    pub const REVOKE: u8 = 16;

    /// The RFC's name for `action`, if it has one.
    pub fn name(action: u8) -> Option<&'static str> {
        Some(match action {
            ADD => "Add",
            DELETE => "Delete",
            MODIFY => "Modify",
            REFRESH => "Refresh",
            MOVE => "Move",
            REVOKE => "Revoke",
            _ => return None,
        })
    }
}

enum_with_unknown! {
    /// Status of a Flow Identification option (RFC 6089 §4.2). Values below 128 accept the flow
    /// binding, values from 128 reject it; the field only means something in an
    /// acknowledgement.
    pub enum FlowStatus(u8) {
        /// Flow binding successful.
        Success = 0,
        /// Administratively prohibited.
        AdministrativelyProhibited = 128,
        /// Flow binding rejected, reason unspecified.
        RejectedReasonUnspecified = 129,
        /// Flow identification mobility option malformed.
        FlowIdentificationOptionMalformed = 130,
        /// BID not found.
        BidNotFound = 131,
        /// FID not found.
        FidNotFound = 132,
        /// Traffic selector format not supported.
        TrafficSelectorFormatNotSupported = 133,
    }
}

impl FlowStatus {
    /// Whether the status accepts the flow binding (below 128).
    pub fn is_success(self) -> bool {
        u8::from(self) < 128
    }
}

/// One Flow Identification sub-option (RFC 6089 §4.2.1, RFC 7109 §6.2). Pad1 and PadN are
/// skipped on parse and never stored; `emit` inserts its own.
///
/// ```text
/// Generic (RFC 6089 §4.2.1; Pad1 alone has no length):
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Sub-Opt Type  |Sub-Opt Length |   Sub-Option Data...
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// Binding Reference (2), alignment 2n, Length = 2 x number of BIDs:
/// |Sub-Opt Type=2 |  Sub-Opt Len  |              BID              |
/// |     BID  ........
/// Traffic Selector (3), alignment per RFC 6088 §3 (see TrafficSelector::alignment):
/// |Sub-Opt Type=3 |  Sub-Opt Len  |   TS Format   |   Reserved    |
/// |  Traffic Selector ...
/// Flow Binding Action (4), Length 2:
/// |Sub-opt Type=4 |Sub-opt Len=2  |   Reserved    |    Action     |
/// Target Care-of Address (5), Length 6 (IPv4) or 18 (IPv6):
/// |Sub-opt Type=5 |Sub-opt Length |          Reserved             |
/// |                 Target Care-of Address                        |
/// ```
///
/// Sub-Opt Len never counts the Type and Length octets (RFC 6089 §4.2.1). RFC 6089 §4.2.1.2's
/// own PadN paragraph says "Length field contains the value N" for N octets of padding; this
/// crate follows the general rule and RFC 6275's PadN, writing N − 2.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum FlowSubOption {
    /// Binding Reference: the BIDs (RFC 5648) the flow is bound to; at least one.
    BidReference(Vec<u16>),
    /// Traffic Selector: which packets the flow is.
    TrafficSelector(TrafficSelector),
    /// Flow Binding Action (see [`flow_binding_action`]).
    FlowBindingAction(u8),
    /// Target Care-of Address: where the flow moves to.
    TargetCareOfAddress(IpAddr),
    /// Any other sub-option (type 6 and above), kept byte for byte; receivers skip it
    /// (RFC 6089 §4.2.1).
    Unknown {
        /// Sub-Opt Type; 6 or more (emit refuses the types this module knows).
        sub_type: u8,
        /// Sub-Option Data as received.
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::serde_hex"))]
        data: Vec<u8>,
    },
}

/// Padding before a sub-option at `pos` (octets from an 8-octet boundary) so its Type octet
/// sits at `x*n + y`.
fn padding(pos: usize, (x, y): (usize, usize)) -> usize {
    (y + x - pos % x) % x
}

impl FlowSubOption {
    /// The Sub-Opt Type.
    pub fn sub_type(&self) -> u8 {
        match self {
            Self::BidReference(_) => sub_option_type::BID_REFERENCE,
            Self::TrafficSelector(_) => sub_option_type::TRAFFIC_SELECTOR,
            Self::FlowBindingAction(_) => sub_option_type::FLOW_BINDING_ACTION,
            Self::TargetCareOfAddress(_) => sub_option_type::TARGET_CARE_OF_ADDRESS,
            Self::Unknown { sub_type, .. } => *sub_type,
        }
    }

    /// Octets of the Sub-Option Data: the Sub-Opt Len.
    pub fn data_len(&self) -> usize {
        match self {
            Self::BidReference(bids) => 2 * bids.len(),
            Self::TrafficSelector(ts) => 2 + ts.buffer_len(),
            Self::FlowBindingAction(_) => 2,
            Self::TargetCareOfAddress(IpAddr::V4(_)) => 6,
            Self::TargetCareOfAddress(IpAddr::V6(_)) => 18,
            Self::Unknown { data, .. } => data.len(),
        }
    }

    /// Alignment `(x, y)` of the sub-option's Type octet, `x*n + y` from the start of the
    /// header: 2n for a Binding Reference (RFC 6089 §4.2.1.3), the selector's for a Traffic
    /// Selector (RFC 6088 §3.1, §3.2), none for a Flow Binding Action or an unknown sub-option.
    /// RFC 7109 states none for the Target Care-of Address; this crate puts the address on its
    /// natural boundary as RFC 6089 §4.2.1 asks: 4n for IPv4, 8n+4 for IPv6.
    pub fn alignment(&self) -> (usize, usize) {
        match self {
            Self::BidReference(_) => (2, 0),
            Self::TrafficSelector(ts) => (ts.alignment(), 0),
            Self::TargetCareOfAddress(IpAddr::V4(_)) => (4, 0),
            Self::TargetCareOfAddress(IpAddr::V6(_)) => (8, 4),
            Self::FlowBindingAction(_) | Self::Unknown { .. } => (1, 0),
        }
    }

    /// Interprets one sub-option whose Type octet is at MH offset `at`.
    fn parse_one(sub_type: u8, data: &[u8], at: usize) -> Result<Self> {
        let length_error = || {
            Error::new(
                ErrorKind::OptionLength { option_type: sub_type, length: u8::try_from(data.len()).unwrap_or(u8::MAX) },
                at,
            )
        };
        Ok(match sub_type {
            sub_option_type::BID_REFERENCE => {
                // RFC 6089 §4.2.1.3: "One or more BID fields", "Number of BIDs = Sub-Opt Len/2".
                if data.is_empty() || data.len() % 2 != 0 {
                    return Err(length_error());
                }
                Self::BidReference(data.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect())
            }
            sub_option_type::TRAFFIC_SELECTOR => match data {
                // RFC 6089 §4.2.1.4: TS Format, Reserved (ignored), then the selector.
                [format, _reserved, selector @ ..] => {
                    Self::TrafficSelector(TrafficSelector::parse(*format, selector, at + 4)?)
                }
                _ => return Err(length_error()),
            },
            sub_option_type::FLOW_BINDING_ACTION => match data {
                // RFC 7109 §6.2.1: Reserved (ignored), Action.
                [_reserved, action] => Self::FlowBindingAction(*action),
                _ => return Err(length_error()),
            },
            sub_option_type::TARGET_CARE_OF_ADDRESS => match data {
                // RFC 7109 §6.2.2: Reserved (16 bits, ignored), then an IPv4 or IPv6 address,
                // told apart by the length alone.
                [_, _, a, b, c, d] => Self::TargetCareOfAddress(IpAddr::V4(Ipv4Addr::new(*a, *b, *c, *d))),
                [_, _, address @ ..] if address.len() == 16 => {
                    let octets = <[u8; 16]>::try_from(address).map_err(|_| length_error())?;
                    Self::TargetCareOfAddress(IpAddr::V6(Ipv6Addr::from(octets)))
                }
                _ => return Err(length_error()),
            },
            sub_type => Self::Unknown { sub_type, data: data.to_vec() },
        })
    }

    /// Parses a run of sub-options (the rest of a Flow Identification option after its fixed
    /// part), skipping Pad1 and PadN; `offset` is the MH offset of `data[0]`. Framing errors are
    /// reported at the offending sub-option's Type octet.
    pub fn parse_list(data: &[u8], offset: usize) -> Result<Vec<Self>> {
        let mut list = Vec::new();
        let mut pos = 0;
        while let Some(&sub_type) = data.get(pos) {
            // RFC 6089 §4.2.1.1: Pad1 has no length octet.
            if sub_type == sub_option_type::PAD1 {
                pos += 1;
                continue;
            }
            let Some(&length) = data.get(pos + 1) else {
                return Err(Error::new(ErrorKind::OptionHeaderTruncated, offset + pos));
            };
            let start = pos + 2;
            let end = start + usize::from(length);
            let Some(body) = data.get(start..end) else {
                let available = data.len().saturating_sub(start);
                return Err(Error::new(
                    ErrorKind::OptionOverrun { option_type: sub_type, length, available },
                    offset + pos,
                ));
            };
            // RFC 6089 §4.2.1.2: PadN data "MUST be ignored by the receiver".
            if sub_type != sub_option_type::PADN {
                list.push(Self::parse_one(sub_type, body, offset + pos)?);
            }
            pos = end;
        }
        Ok(list)
    }

    /// Octets `emit_list` writes for `list`, padding included.
    pub fn list_buffer_len(list: &[Self]) -> usize {
        list.iter().fold(0, |pos, s| pos + padding(pos, s.alignment()) + 2 + s.data_len())
    }

    /// Writes `list` into the first `list_buffer_len(list)` octets of `buf`, each sub-option
    /// preceded by the Pad1/PadN its alignment needs, counted as if `buf[0]` sat on an 8-octet
    /// boundary (as it does inside a Flow Identification option at 8n).
    pub fn emit_list(list: &[Self], buf: &mut [u8]) -> core::result::Result<(), EmitError> {
        for s in list {
            if s.data_len() > usize::from(u8::MAX) {
                return Err(EmitError::TooLong { field: "flow identification sub-option" });
            }
        }
        let needed = Self::list_buffer_len(list);
        let available = buf.len();
        let too_small = EmitError::BufferTooSmall { needed, available };
        if available < needed {
            return Err(too_small);
        }
        let mut pos = 0;
        for s in list {
            let pad = padding(pos, s.alignment());
            match buf.get_mut(pos..pos + pad).ok_or(too_small)? {
                [] => {}
                [pad1] => *pad1 = sub_option_type::PAD1,
                [ty, len, zeros @ ..] => {
                    *ty = sub_option_type::PADN;
                    *len = u8::try_from(zeros.len()).map_err(|_| too_small)?;
                    zeros.fill(0);
                }
            }
            pos += pad;
            let len = s.data_len();
            let length =
                u8::try_from(len).map_err(|_| EmitError::TooLong { field: "flow identification sub-option" })?;
            let Some([ty, l, data @ ..]) = buf.get_mut(pos..pos + 2 + len) else {
                return Err(too_small);
            };
            *ty = s.sub_type();
            *l = length;
            s.emit(data)?;
            pos += 2 + len;
        }
        Ok(())
    }

    /// Writes the Sub-Option Data (without Type and Length) into the first `data_len()` octets
    /// of `buf`. Reserved fields are written as zero.
    ///
    /// An empty Binding Reference, or an `Unknown` of a type below 6 (padding, or a type this
    /// module parses itself), is [`EmitError::InvalidField`]: neither would parse back as the
    /// same value.
    pub fn emit(&self, buf: &mut [u8]) -> core::result::Result<(), EmitError> {
        let needed = self.data_len();
        let available = buf.len();
        let too_small = EmitError::BufferTooSmall { needed, available };
        let out = buf.get_mut(..needed).ok_or(too_small)?;
        match self {
            Self::BidReference(bids) => {
                if bids.is_empty() {
                    return Err(EmitError::InvalidField { field: "empty Binding Reference" });
                }
                for (chunk, bid) in out.chunks_exact_mut(2).zip(bids) {
                    chunk.copy_from_slice(&bid.to_be_bytes());
                }
            }
            Self::TrafficSelector(ts) => {
                let [format, reserved, selector @ ..] = out else { return Err(too_small) };
                *format = ts.format();
                *reserved = 0;
                ts.emit(selector)?;
            }
            Self::FlowBindingAction(action) => out.copy_from_slice(&[0, *action]),
            Self::TargetCareOfAddress(address) => {
                let [r0, r1, octets @ ..] = out else { return Err(too_small) };
                *r0 = 0;
                *r1 = 0;
                match address {
                    IpAddr::V4(a) => octets.copy_from_slice(&a.octets()),
                    IpAddr::V6(a) => octets.copy_from_slice(&a.octets()),
                }
            }
            Self::Unknown { sub_type, data } => {
                if *sub_type <= sub_option_type::TARGET_CARE_OF_ADDRESS {
                    return Err(EmitError::InvalidField { field: "sub-option type of an unknown sub-option" });
                }
                out.copy_from_slice(data);
            }
        }
        Ok(())
    }
}

impl fmt::Display for FlowSubOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BidReference(bids) => {
                f.write_str("bid=")?;
                for (i, bid) in bids.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{bid}")?;
                }
                Ok(())
            }
            Self::TrafficSelector(ts) => write!(f, "ts={ts}"),
            Self::FlowBindingAction(action) => match flow_binding_action::name(*action) {
                Some(name) => write!(f, "action={name}({action})"),
                None => write!(f, "action={action}"),
            },
            Self::TargetCareOfAddress(address) => write!(f, "tcoa={address}"),
            Self::Unknown { sub_type, data } => {
                write!(f, "sub{sub_type}=")?;
                for b in data {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
    }
}

/// Flow Identification mobility option data (RFC 6089 §4.2; type 45).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Option Type   |  Option Len   |              FID              |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |              FID-PRI          |   Reserved    |     Status    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Sub-options (optional) ...
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// FID 0 and FID-PRI 0 are reserved ("MUST NOT be used", RFC 6089 §4.2) but parse and emit
/// like any other value: rejecting them is the engines' call (status 130). The Reserved octet
/// is ignored on parse and written as zero.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FlowIdentification {
    /// Flow identifier.
    pub fid: u16,
    /// FID-PRI: lower is higher priority; unique per mobile node.
    pub priority: u16,
    /// Status; meaningful in acknowledgements only.
    pub status: FlowStatus,
    /// Sub-options in order, padding left out.
    pub suboptions: Vec<FlowSubOption>,
}

/// Octets of the Flow Identification fixed part (FID, FID-PRI, Reserved, Status).
const FI_FIXED_LEN: usize = 6;

impl FlowIdentification {
    /// Alignment `(x, y)` of the option's Type octet. RFC 6089 §4.2 asks for 2n; this crate
    /// uses 8n, which is 2n too, so that the sub-options start on an 8-octet boundary and
    /// `emit` can align them (RFC 6089 §4.2.1) without knowing the option's position.
    pub const ALIGNMENT: (usize, usize) = (8, 0);

    /// The first Traffic Selector sub-option's selector, if any (RFC 6089 §4.2.1.4 allows at
    /// most one).
    pub fn traffic_selector(&self) -> Option<&TrafficSelector> {
        self.suboptions.iter().find_map(|s| match s {
            FlowSubOption::TrafficSelector(ts) => Some(ts),
            _ => None,
        })
    }

    /// Parses the option data; `offset` is the MH offset of `data[0]`.
    pub fn parse(data: &[u8], offset: usize) -> Result<Self> {
        let [f0, f1, p0, p1, _reserved, status, suboptions @ ..] = data else {
            return Err(Error::new(ErrorKind::Truncated { needed: FI_FIXED_LEN, available: data.len() }, offset));
        };
        Ok(Self {
            fid: u16::from_be_bytes([*f0, *f1]),
            priority: u16::from_be_bytes([*p0, *p1]),
            status: FlowStatus::from(*status),
            suboptions: FlowSubOption::parse_list(suboptions, offset + FI_FIXED_LEN)?,
        })
    }

    /// Octets of the option data, sub-option padding included.
    pub fn buffer_len(&self) -> usize {
        FI_FIXED_LEN + FlowSubOption::list_buffer_len(&self.suboptions)
    }

    /// Writes the option data into the first `buffer_len()` octets of `buf`, assuming the
    /// option's Type octet sits at [`Self::ALIGNMENT`].
    ///
    /// [`EmitError::TooLong`] if a sub-option's data or the whole option data exceeds 255
    /// octets.
    pub fn emit(&self, buf: &mut [u8]) -> core::result::Result<(), EmitError> {
        let needed = self.buffer_len();
        if self.suboptions.iter().any(|s| s.data_len() > usize::from(u8::MAX)) {
            return Err(EmitError::TooLong { field: "flow identification sub-option" });
        }
        if needed > usize::from(u8::MAX) {
            return Err(EmitError::TooLong { field: "Flow Identification option" });
        }
        let available = buf.len();
        let too_small = EmitError::BufferTooSmall { needed, available };
        if available < needed {
            return Err(too_small);
        }
        let [f0, f1, p0, p1, reserved, status, suboptions @ ..] = buf else { return Err(too_small) };
        [*f0, *f1] = self.fid.to_be_bytes();
        [*p0, *p1] = self.priority.to_be_bytes();
        *reserved = 0;
        *status = self.status.into();
        FlowSubOption::emit_list(&self.suboptions, suboptions)
    }
}

impl fmt::Display for FlowIdentification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FI fid={} pri={} status={}", self.fid, self.priority, self.status)?;
        for s in &self.suboptions {
            write!(f, " {s}")?;
        }
        Ok(())
    }
}

/// Flow Summary mobility option data (RFC 6089 §4.2.2; type 44): the FIDs whose bindings a
/// Binding Update refreshes.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Option Type   |  Option Len   |              FID              |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     FID  ........
/// +-+-+-+-+-+-+-+-+-+-
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FlowSummary {
    /// The FIDs, at least one (at most 127 fit the Length octet).
    pub fids: Vec<u16>,
}

impl FlowSummary {
    /// Alignment `(x, y)` of the option's Type octet: 2n (RFC 6089 §4.2.2).
    pub const ALIGNMENT: (usize, usize) = (2, 0);

    /// Parses the option data; `offset` is the MH offset of `data[0]`. A length that is zero or
    /// odd is [`ErrorKind::OptionLength`], reported like every option length error of this
    /// crate at the option's Type octet (`offset - 2`).
    pub fn parse(data: &[u8], offset: usize) -> Result<Self> {
        // RFC 6089 §4.2.2: "One or more FID fields", "Number of FIDs = Option Len/2".
        if data.is_empty() || data.len() % 2 != 0 {
            return Err(Error::new(
                ErrorKind::OptionLength {
                    option_type: FLOW_SUMMARY,
                    length: u8::try_from(data.len()).unwrap_or(u8::MAX),
                },
                offset.saturating_sub(2),
            ));
        }
        Ok(Self { fids: data.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect() })
    }

    /// Octets of the option data.
    pub fn buffer_len(&self) -> usize {
        2 * self.fids.len()
    }

    /// Writes the option data into the first `buffer_len()` octets of `buf`.
    ///
    /// No FID is [`EmitError::InvalidField`]; more than 127 is [`EmitError::TooLong`].
    pub fn emit(&self, buf: &mut [u8]) -> core::result::Result<(), EmitError> {
        if self.fids.is_empty() {
            return Err(EmitError::InvalidField { field: "empty Flow Summary" });
        }
        let needed = self.buffer_len();
        if needed > usize::from(u8::MAX) {
            return Err(EmitError::TooLong { field: "Flow Summary option" });
        }
        let available = buf.len();
        let out = buf.get_mut(..needed).ok_or(EmitError::BufferTooSmall { needed, available })?;
        for (chunk, fid) in out.chunks_exact_mut(2).zip(&self.fids) {
            chunk.copy_from_slice(&fid.to_be_bytes());
        }
        Ok(())
    }
}

impl fmt::Display for FlowSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FS fids=")?;
        for (i, fid) in self.fids.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{fid}")?;
        }
        Ok(())
    }
}

/// Strategies generating flow options that survive emit → parse unchanged.
#[cfg(any(test, feature = "proptest"))]
pub mod strategy {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// Any sub-option but padding: unknown ones of type 6 and above.
    pub fn flow_sub_option() -> impl Strategy<Value = FlowSubOption> {
        prop_oneof![
            vec(any::<u16>(), 1..8).prop_map(FlowSubOption::BidReference),
            crate::selector::strategy::traffic_selector().prop_map(FlowSubOption::TrafficSelector),
            any::<u8>().prop_map(FlowSubOption::FlowBindingAction),
            any::<[u8; 4]>().prop_map(|o| FlowSubOption::TargetCareOfAddress(IpAddr::V4(o.into()))),
            any::<[u8; 16]>().prop_map(|o| FlowSubOption::TargetCareOfAddress(IpAddr::V6(o.into()))),
            (6u8..=255, vec(any::<u8>(), 0..32)).prop_map(|(sub_type, data)| FlowSubOption::Unknown { sub_type, data }),
        ]
    }

    /// Any Flow Identification option whose data fits the Length octet.
    pub fn flow_identification() -> impl Strategy<Value = FlowIdentification> {
        (any::<u16>(), any::<u16>(), any::<u8>(), vec(flow_sub_option(), 0..4))
            .prop_map(|(fid, priority, status, suboptions)| FlowIdentification {
                fid,
                priority,
                status: FlowStatus::from(status),
                suboptions,
            })
            .prop_filter("option data over 255 octets", |fi| fi.buffer_len() <= usize::from(u8::MAX))
    }

    /// Any Flow Summary option: 1 to 127 FIDs.
    pub fn flow_summary() -> impl Strategy<Value = FlowSummary> {
        vec(any::<u16>(), 1..=127).prop_map(|fids| FlowSummary { fids })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::{FieldRange, Ipv6Selector};
    use proptest::prelude::*;

    const HOA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const TARGET: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xaaaa, 0, 0, 0, 0, 2);

    /// Emits into a larger buffer and checks nothing past `buffer_len()` was touched.
    fn emitted_fi(fi: &FlowIdentification) -> Vec<u8> {
        let len = fi.buffer_len();
        let mut buf = vec![0xee; len + 8];
        fi.emit(&mut buf).expect("emit");
        assert!(buf[len..].iter().all(|&b| b == 0xee), "emit wrote past buffer_len()");
        buf.truncate(len);
        buf
    }

    fn ts_dst_dport_nh() -> TrafficSelector {
        TrafficSelector::Ipv6(Ipv6Selector {
            dst_addr: Some(FieldRange::exact(HOA)),
            dst_port: Some(FieldRange::exact(80)),
            next_header: Some(FieldRange::exact(6)),
            ..Ipv6Selector::default()
        })
    }

    /// Option data of an FI laid out by hand from RFC 6089 §4.2, §4.2.1 and RFC 7109 §6.2,
    /// with the option Type at 8n so the sub-options start at 8n.
    fn fi_vector() -> Vec<u8> {
        let mut v = vec![0x00, 0x03, 0x00, 0x0a, 0x00, 0x00]; // FID 3, FID-PRI 10, Status 0
        // [0] Traffic Selector at 8n (addresses present): len 2 + 23.
        v.extend_from_slice(&[3, 25, 2, 0, 0x20, 0x22, 0x00, 0x00]);
        v.extend_from_slice(&HOA.octets());
        v.extend_from_slice(&[0x00, 0x50, 0x06]);
        // [27] Pad1, then Binding Reference at 2n: BIDs 1 and 2.
        v.extend_from_slice(&[0, 2, 4, 0x00, 0x01, 0x00, 0x02]);
        // [34] Flow Binding Action "Move".
        v.extend_from_slice(&[4, 2, 0, 15]);
        // [38] PadN of 6, then Target Care-of Address (IPv6) at 8n+4.
        v.extend_from_slice(&[1, 4, 0, 0, 0, 0, 5, 18, 0, 0]);
        v.extend_from_slice(&TARGET.octets());
        // [64] unknown sub-option 9.
        v.extend_from_slice(&[9, 2, 0xaa, 0xbb]);
        v
    }

    fn fi_value() -> FlowIdentification {
        FlowIdentification {
            fid: 3,
            priority: 10,
            status: FlowStatus::Success,
            suboptions: vec![
                FlowSubOption::TrafficSelector(ts_dst_dport_nh()),
                FlowSubOption::BidReference(vec![1, 2]),
                FlowSubOption::FlowBindingAction(flow_binding_action::MOVE),
                FlowSubOption::TargetCareOfAddress(IpAddr::V6(TARGET)),
                FlowSubOption::Unknown { sub_type: 9, data: vec![0xaa, 0xbb] },
            ],
        }
    }

    #[test]
    fn flow_identification_vector_parses_and_emits() {
        let bytes = fi_vector();
        let fi = FlowIdentification::parse(&bytes, 16).unwrap();
        assert_eq!(fi, fi_value());
        assert_eq!(fi.buffer_len(), bytes.len());
        assert_eq!(emitted_fi(&fi), bytes);
        assert_eq!(fi.traffic_selector(), Some(&ts_dst_dport_nh()));
        assert_eq!(
            fi.to_string(),
            "FI fid=3 pri=10 status=Success(0) ts=v6{dst=2001:db8::1 dport=80 nh=6} bid=1,2 \
             action=Move(15) tcoa=2001:db8:aaaa::2 sub9=aabb"
        );
    }

    #[test]
    fn fixed_part_only_and_reserved_ignored() {
        let fi = FlowIdentification::parse(&[0, 0, 0, 0, 0xff, 132], 0).unwrap();
        // FID 0 and FID-PRI 0 are reserved but accepted, and emitted as they are.
        assert_eq!(fi, FlowIdentification { fid: 0, priority: 0, status: FlowStatus::FidNotFound, suboptions: vec![] });
        assert!(!fi.status.is_success());
        assert_eq!(emitted_fi(&fi), [0, 0, 0, 0, 0, 132]);
        assert_eq!(fi.to_string(), "FI fid=0 pri=0 status=FidNotFound(132)");
        let odd = FlowIdentification::parse(&[0, 1, 0, 1, 0, 77], 0).unwrap();
        assert_eq!(odd.status, FlowStatus::Unknown(77));
        assert!(odd.status.is_success());
    }

    #[test]
    fn padding_anywhere_is_skipped() {
        let mut v = vec![0x00, 0x07, 0x00, 0x01, 0x00, 0x80];
        v.extend_from_slice(&[0, 0, 1, 0, 1, 3, 0, 0, 0]); // Pad1, Pad1, PadN(2), PadN(5)
        v.extend_from_slice(&[4, 2, 0, 11, 0]); // Flow Binding Action "Add", trailing Pad1
        let fi = FlowIdentification::parse(&v, 0).unwrap();
        assert_eq!(fi.suboptions, vec![FlowSubOption::FlowBindingAction(flow_binding_action::ADD)]);
        assert_eq!(fi.status, FlowStatus::AdministrativelyProhibited);
        // Re-emitted without the padding, which this sub-option does not need.
        assert_eq!(emitted_fi(&fi), [0x00, 0x07, 0x00, 0x01, 0x00, 0x80, 4, 2, 0, 11]);
    }

    #[test]
    fn emit_aligns_sub_options() {
        let fi = FlowIdentification {
            fid: 1,
            priority: 1,
            status: FlowStatus::Success,
            suboptions: vec![
                FlowSubOption::FlowBindingAction(flow_binding_action::ADD),
                FlowSubOption::TargetCareOfAddress(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
                FlowSubOption::FlowBindingAction(flow_binding_action::ADD),
                FlowSubOption::BidReference(vec![5]),
                FlowSubOption::TrafficSelector(ts_dst_dport_nh()),
            ],
        };
        let bytes = emitted_fi(&fi);
        // FBA at 0 (no alignment), TCoA v4 at 4n: already at 4. FBA at 12, BID at 2n: at 16.
        // TS at 8n: 20 -> PadN(4) to 24.
        let subs = &bytes[6..];
        assert_eq!(&subs[..4], [4, 2, 0, 11]);
        assert_eq!(&subs[4..12], [5, 6, 0, 0, 192, 0, 2, 7]);
        assert_eq!(&subs[12..16], [4, 2, 0, 11]);
        assert_eq!(&subs[16..20], [2, 2, 0, 5]);
        assert_eq!(&subs[20..24], [1, 2, 0, 0]);
        assert_eq!(&subs[24..26], [3, 25]);
        assert_eq!(subs.len(), 24 + 27);
        assert_eq!(FlowIdentification::parse(&bytes, 0).unwrap(), fi);
    }

    #[test]
    fn truncated_fixed_part() {
        for len in 0..6 {
            let err = FlowIdentification::parse(&[0u8; 6][..len], 14).unwrap_err();
            assert_eq!(err, Error::new(ErrorKind::Truncated { needed: 6, available: len }, 14));
        }
    }

    #[test]
    fn sub_option_running_past_the_end() {
        let v = [0, 1, 0, 1, 0, 0, 4, 2, 0, 11, 2, 4, 0, 1];
        let err = FlowIdentification::parse(&v, 20).unwrap_err();
        assert_eq!(err, Error::new(ErrorKind::OptionOverrun { option_type: 2, length: 4, available: 2 }, 30));
    }

    #[test]
    fn lone_sub_option_type_octet() {
        let v = [0, 1, 0, 1, 0, 0, 4, 2, 0, 11, 9];
        let err = FlowIdentification::parse(&v, 20).unwrap_err();
        assert_eq!(err, Error::new(ErrorKind::OptionHeaderTruncated, 30));
        // A lone Pad1 at the end is fine.
        assert!(FlowIdentification::parse(&[0, 1, 0, 1, 0, 0, 0], 20).is_ok());
    }

    #[test]
    fn wrong_fixed_sub_option_lengths() {
        for (sub, ty, len) in [
            (&[2u8, 0][..], 2u8, 0u8),    // no BID
            (&[2, 3, 0, 1, 0][..], 2, 3), // half a BID
            (&[3, 1, 2][..], 3, 1),       // no room for TS Format and Reserved
            (&[4, 1, 11][..], 4, 1),      // Flow Binding Action is 2 octets
            (&[4, 3, 0, 11, 0][..], 4, 3),
            (&[5, 4, 0, 0, 1, 2][..], 5, 4), // Target CoA is 6 or 18 octets
            (&[5, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..], 5, 10),
        ] {
            let mut v = vec![0, 1, 0, 1, 0, 0, 0]; // fixed part, then Pad1
            v.extend_from_slice(sub);
            let err = FlowIdentification::parse(&v, 100).unwrap_err();
            assert_eq!(err, Error::new(ErrorKind::OptionLength { option_type: ty, length: len }, 107), "{sub:?}");
        }
    }

    #[test]
    fn selector_errors_carry_their_offset() {
        // TS sub-option at data offset 6 (MH 106): selector starts at MH 110, End Source
        // Address flag without Start.
        let mut v = vec![0, 1, 0, 1, 0, 0, 3, 6, 2, 0, 0x40, 0, 0, 0];
        let err = FlowIdentification::parse(&v, 100).unwrap_err();
        assert_eq!(err.offset, 110);
        assert!(matches!(err.kind, ErrorKind::InvalidField { .. }));
        v[10] = 0x80; // Start Source Address flag, but no address follows
        let err = FlowIdentification::parse(&v, 100).unwrap_err();
        assert_eq!(err, Error::new(ErrorKind::Truncated { needed: 20, available: 4 }, 110));
    }

    #[test]
    fn target_care_of_address_ipv4_and_unknown_ts_format() {
        let v = [0, 9, 0, 2, 0, 0, 5, 6, 0, 0, 198, 51, 100, 9, 3, 5, 200, 0, 1, 2, 3];
        let fi = FlowIdentification::parse(&v, 0).unwrap();
        assert_eq!(
            fi.suboptions,
            vec![
                FlowSubOption::TargetCareOfAddress(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9))),
                FlowSubOption::TrafficSelector(TrafficSelector::Unknown { format: 200, data: vec![1, 2, 3] }),
            ]
        );
        assert_eq!(emitted_fi(&fi), v);
        assert_eq!(fi.to_string(), "FI fid=9 pri=2 status=Success(0) tcoa=198.51.100.9 ts=ts{format=200 data=010203}");
    }

    #[test]
    fn emit_refuses_what_would_not_parse_back() {
        let base = FlowIdentification { fid: 1, priority: 1, status: FlowStatus::Success, suboptions: vec![] };
        for (sub, field) in [
            (FlowSubOption::BidReference(vec![]), "empty Binding Reference"),
            (FlowSubOption::Unknown { sub_type: 1, data: vec![0] }, "sub-option type of an unknown sub-option"),
            (FlowSubOption::Unknown { sub_type: 3, data: vec![0, 0] }, "sub-option type of an unknown sub-option"),
        ] {
            let fi = FlowIdentification { suboptions: vec![sub], ..base.clone() };
            let mut buf = vec![0; fi.buffer_len()];
            assert_eq!(fi.emit(&mut buf), Err(EmitError::InvalidField { field }));
        }
    }

    #[test]
    fn emit_too_long() {
        let base = FlowIdentification { fid: 1, priority: 1, status: FlowStatus::Success, suboptions: vec![] };
        let huge = FlowIdentification {
            suboptions: vec![FlowSubOption::Unknown { sub_type: 9, data: vec![0; 256] }],
            ..base.clone()
        };
        let mut buf = vec![0; huge.buffer_len()];
        assert_eq!(huge.emit(&mut buf), Err(EmitError::TooLong { field: "flow identification sub-option" }));
        let many = FlowIdentification {
            suboptions: vec![FlowSubOption::Unknown { sub_type: 9, data: vec![0; 200] }; 2],
            ..base
        };
        let mut buf = vec![0; many.buffer_len()];
        assert_eq!(many.emit(&mut buf), Err(EmitError::TooLong { field: "Flow Identification option" }));
    }

    #[test]
    fn emit_into_short_buffer() {
        let fi = fi_value();
        let needed = fi.buffer_len();
        for len in 0..needed {
            let mut buf = vec![0; len];
            assert_eq!(fi.emit(&mut buf), Err(EmitError::BufferTooSmall { needed, available: len }));
        }
        let fs = FlowSummary { fids: vec![1, 2] };
        for len in 0..4 {
            let mut buf = vec![0; len];
            assert_eq!(fs.emit(&mut buf), Err(EmitError::BufferTooSmall { needed: 4, available: len }));
        }
    }

    #[test]
    fn flow_summary_parse_and_emit() {
        let fs = FlowSummary::parse(&[0x00, 0x03, 0x01, 0x00], 10).unwrap();
        assert_eq!(fs, FlowSummary { fids: vec![3, 256] });
        let mut buf = [0u8; 4];
        fs.emit(&mut buf).unwrap();
        assert_eq!(buf, [0x00, 0x03, 0x01, 0x00]);
        assert_eq!(fs.to_string(), "FS fids=3,256");
        assert_eq!(FlowSummary::parse(&[0, 0], 0).unwrap().fids, vec![0]);
    }

    #[test]
    fn flow_summary_needs_whole_fids() {
        let err = FlowSummary::parse(&[], 10).unwrap_err();
        assert_eq!(err, Error::new(ErrorKind::OptionLength { option_type: 44, length: 0 }, 8));
        let err = FlowSummary::parse(&[0, 1, 2], 10).unwrap_err();
        assert_eq!(err, Error::new(ErrorKind::OptionLength { option_type: 44, length: 3 }, 8));
    }

    #[test]
    fn flow_summary_emit_limits() {
        let mut buf = [0u8; 256];
        assert_eq!(
            FlowSummary { fids: vec![] }.emit(&mut buf),
            Err(EmitError::InvalidField { field: "empty Flow Summary" })
        );
        assert!(FlowSummary { fids: vec![7; 127] }.emit(&mut buf).is_ok());
        assert_eq!(
            FlowSummary { fids: vec![7; 128] }.emit(&mut buf),
            Err(EmitError::TooLong { field: "Flow Summary option" })
        );
    }

    #[test]
    fn alignment_constants() {
        // Type at 8n puts the first sub-option at 8n: FI data starts at Type + 2, the
        // sub-options 6 octets later.
        assert_eq!(FlowIdentification::ALIGNMENT, (8, 0));
        assert_eq!(FlowSummary::ALIGNMENT, (2, 0));
    }

    proptest! {
        #[test]
        fn flow_identification_round_trips(fi in strategy::flow_identification()) {
            let bytes = emitted_fi(&fi);
            prop_assert_eq!(bytes.len(), fi.buffer_len());
            prop_assert_eq!(FlowIdentification::parse(&bytes, 8).unwrap(), fi);
        }

        #[test]
        fn flow_summary_round_trips(fs in strategy::flow_summary()) {
            let mut buf = vec![0; fs.buffer_len()];
            fs.emit(&mut buf).unwrap();
            prop_assert_eq!(FlowSummary::parse(&buf, 2).unwrap(), fs);
        }

        #[test]
        fn random_flow_identification_never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..255),
            offset in 0usize..2048,
        ) {
            match FlowIdentification::parse(&data, offset) {
                Ok(fi) => {
                    // Whatever parses is re-emitted, modulo padding, to the same value.
                    let mut buf = vec![0; fi.buffer_len()];
                    if fi.emit(&mut buf).is_ok() {
                        prop_assert_eq!(FlowIdentification::parse(&buf, offset).unwrap(), fi);
                    }
                }
                Err(e) => prop_assert!(e.offset >= offset && e.offset <= offset + data.len()),
            }
        }

        #[test]
        fn random_flow_summary_never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..255),
            offset in 2usize..2048,
        ) {
            match FlowSummary::parse(&data, offset) {
                Ok(fs) => {
                    let mut buf = vec![0; fs.buffer_len()];
                    fs.emit(&mut buf).unwrap();
                    prop_assert_eq!(buf, data);
                }
                Err(e) => prop_assert_eq!(e.offset, offset - 2),
            }
        }
    }
}
