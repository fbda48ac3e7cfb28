//! Capture files and the layers around a Mobility Header or a Router Solicitation/Advertisement.
//!
//! Reading: [`Capture`] holds a pcap or pcapng file (told apart by its magic number) and yields
//! [`RawFrame`]s; [`extract`] peels the link layer and IP off a frame and hands back a
//! [`Packet`]: frame number, time, source, destination, [`Transport`] and the message octets.
//!
//! - Link types: Ethernet (with any number of 802.1Q/802.1ad tags), raw IP (101, 12, 14, 228,
//!   229), Linux cooked capture v1 (113) and v2 (276), BSD null/loopback (0, 108). A frame of any
//!   other link type is [`Extracted::UnsupportedLinkType`].
//! - IPv6: the extension headers (hop-by-hop, routing, fragment, destination options,
//!   authentication) are walked until next header 135 (Mobility Header, RFC 6275 §6.1) or 58
//!   (ICMPv6, kept only for Router Solicitation and Advertisement). Of a fragmented packet only
//!   the first fragment is looked at. The addresses of the checksum pseudo-header follow RFC 8200
//!   §8.1 (final destination of a routing header) and RFC 6275 §6.3 (home address option).
//! - IPv4: a UDP datagram to or from port 5436 carries a Mobility Header (RFC 5844 §7).
//!
//! Writing: [`ethernet_ipv6`], [`ethernet_ipv4_udp`], [`mh_frame`], [`mh_udp_frame`] and
//! [`nd_frame`] build Ethernet frames around a payload; [`PcapFileWriter`] writes them as a
//! pcap file.

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use etherparse::{IpNumber, Ipv6ExtensionSlice, LaxIpv4Slice, LaxIpv6Slice, PacketBuilder};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapParser, PcapWriter};
use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{DataLink, Endianness, TsResolution};
use pmip6_wire::Message;
use pmip6_wire::checksum::{IPPROTO_ICMPV6, IPPROTO_MH};
use pmip6_wire::nd::{ICMPV6_ROUTER_ADVERTISEMENT, ICMPV6_ROUTER_SOLICITATION, NdMessage};
use serde::Serialize;

/// UDP port of Proxy Mobile IPv6 signalling over IPv4 transport (RFC 5844 §7).
pub const MH_UDP_PORT: u16 = 5436;

/// Hop limit of the Mobility Header frames we build.
pub const MH_HOP_LIMIT: u8 = 64;

/// Hop limit of Router Solicitations and Advertisements (RFC 4861 §6.1.1, §6.1.2).
pub const ND_HOP_LIMIT: u8 = 255;

/// Link-layer header types (tcpdump.org "LINKTYPE_" values) this module reads.
pub mod linktype {
    /// BSD loopback: a 4-octet address family in the capturing host's byte order.
    pub const NULL: u32 = 0;
    /// Ethernet II.
    pub const ETHERNET: u32 = 1;
    /// Raw IP as some BSDs number it.
    pub const RAW_12: u32 = 12;
    /// Raw IP as other BSDs number it.
    pub const RAW_14: u32 = 14;
    /// Raw IPv4 or IPv6.
    pub const RAW: u32 = 101;
    /// OpenBSD loopback: like [`NULL`] in network byte order.
    pub const LOOP: u32 = 108;
    /// Linux cooked capture v1.
    pub const LINUX_SLL: u32 = 113;
    /// Raw IPv4.
    pub const IPV4: u32 = 228;
    /// Raw IPv6.
    pub const IPV6: u32 = 229;
    /// Linux cooked capture v2.
    pub const LINUX_SLL2: u32 = 276;
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];

/// How a Mobility Header travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// In an IPv6 packet, next header 135 (or ICMPv6 for RS/RA).
    Ipv6,
    /// In a UDP datagram over IPv4, port 5436 (RFC 5844 §7).
    Ipv4Udp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Ipv6 => "ipv6",
            Transport::Ipv4Udp => "ipv4-udp",
        })
    }
}

/// What the payload of a [`Packet`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Protocol {
    /// A Mobility Header, from its Payload Proto octet.
    #[serde(rename = "mh")]
    MobilityHeader,
    /// An ICMPv6 Router Solicitation or Advertisement, from its Type octet.
    #[serde(rename = "nd")]
    RouterDiscovery,
}

/// The container format of a capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// libpcap (microsecond or nanosecond, either byte order).
    Pcap,
    /// pcapng.
    PcapNg,
}

/// One frame as stored in the capture.
#[derive(Debug, Clone, Copy)]
pub struct RawFrame<'a> {
    /// 1-based position among the capture's packets.
    pub number: u64,
    /// Time since 1970-01-01 00:00 UTC; pcapng Simple Packet Blocks have none.
    pub time: Option<Duration>,
    /// Link-layer header type (LINKTYPE_ value).
    pub linktype: u32,
    /// The captured octets, link-layer header first.
    pub data: &'a [u8],
}

/// A capture file held in memory.
#[derive(Debug, Clone)]
pub struct Capture {
    bytes: Vec<u8>,
    format: Format,
}

/// The part of a capture file that could not be read, after the frames before it were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureError {
    /// Frames read before the failure.
    pub after_frame: u64,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "capture unreadable after frame {}: {}", self.after_frame, self.message)
    }
}

impl std::error::Error for CaptureError {}

impl Capture {
    /// Reads the file at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_bytes(bytes).with_context(|| format!("{} is not a capture this tool reads", path.display()))
    }

    /// Takes a whole capture file's octets; fails unless they start with a pcap or pcapng header.
    pub fn from_bytes(bytes: Vec<u8>) -> anyhow::Result<Self> {
        let Some(magic) = bytes.get(..4) else {
            bail!("{} octets: too short for a pcap or pcapng header", bytes.len());
        };
        let format = match magic {
            [0xa1, 0xb2, 0xc3, 0xd4]
            | [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x4d, 0x3c, 0xb2, 0xa1] => {
                PcapParser::new(&bytes).map_err(|e| anyhow!("pcap header: {e}"))?;
                Format::Pcap
            }
            [0x0a, 0x0d, 0x0d, 0x0a] => {
                PcapNgParser::new(&bytes).map_err(|e| anyhow!("pcapng section header: {e}"))?;
                Format::PcapNg
            }
            other => bail!("unknown magic number {:02x}{:02x}{:02x}{:02x}", other[0], other[1], other[2], other[3]),
        };
        Ok(Self { bytes, format })
    }

    /// pcap or pcapng.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The frames in file order. After an error the iterator ends.
    pub fn frames(&self) -> Frames<'_> {
        let state = match self.format {
            Format::Pcap => match PcapParser::new(&self.bytes) {
                Ok((rest, parser)) => State::Pcap { parser, rest },
                Err(e) => State::Failed(e.to_string()),
            },
            Format::PcapNg => match PcapNgParser::new(&self.bytes) {
                Ok((rest, parser)) => State::PcapNg { parser: Box::new(parser), rest },
                Err(e) => State::Failed(e.to_string()),
            },
        };
        Frames { state, count: 0 }
    }
}

enum State<'a> {
    Pcap { parser: PcapParser, rest: &'a [u8] },
    PcapNg { parser: Box<PcapNgParser>, rest: &'a [u8] },
    Failed(String),
    Done,
}

/// Iterator over the frames of a [`Capture`].
pub struct Frames<'a> {
    state: State<'a>,
    count: u64,
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<RawFrame<'a>, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        let result = match &mut self.state {
            State::Done => return None,
            State::Failed(message) => Err(message.clone()),
            State::Pcap { parser, rest } => next_pcap(parser, rest),
            State::PcapNg { parser, rest } => next_pcapng(parser, rest),
        };
        match result {
            Ok(Some((time, linktype, data))) => {
                self.count += 1;
                Some(Ok(RawFrame { number: self.count, time, linktype, data }))
            }
            Ok(None) => {
                self.state = State::Done;
                None
            }
            Err(message) => {
                self.state = State::Done;
                Some(Err(CaptureError { after_frame: self.count, message }))
            }
        }
    }
}

type FrameParts<'a> = (Option<Duration>, u32, &'a [u8]);

fn next_pcap<'a>(parser: &PcapParser, rest: &mut &'a [u8]) -> Result<Option<FrameParts<'a>>, String> {
    if rest.is_empty() {
        return Ok(None);
    }
    // The raw record: pcap-file's checked packet refuses orig_len > snaplen, which tcpdump -s
    // writes routinely.
    let (remaining, raw) = parser.next_raw_packet(rest).map_err(|e| format!("pcap record: {e}"))?;
    *rest = remaining;
    let header = parser.header();
    let nanos = match header.ts_resolution {
        TsResolution::MicroSecond => u64::from(raw.ts_frac) * 1_000,
        TsResolution::NanoSecond => u64::from(raw.ts_frac),
    };
    let time = Duration::from_secs(u64::from(raw.ts_sec)) + Duration::from_nanos(nanos);
    // The upper bits of the link-type field may carry FCS information; the type is the low 16.
    let linktype = u32::from(header.datalink) & 0xffff;
    let std::borrow::Cow::Borrowed(data) = raw.data else {
        return Err("pcap record was copied".into());
    };
    Ok(Some((Some(time), linktype, data)))
}

fn next_pcapng<'a>(parser: &mut PcapNgParser, rest: &mut &'a [u8]) -> Result<Option<FrameParts<'a>>, String> {
    loop {
        if rest.is_empty() {
            return Ok(None);
        }
        let (remaining, block) = parser.next_block(rest).map_err(|e| format!("pcapng block: {e}"))?;
        *rest = remaining;
        let interface = |id: u32| {
            parser
                .interfaces()
                .get(id as usize)
                .ok_or_else(|| format!("packet of interface {id}, which no Interface Description Block declares"))
        };
        match block {
            Block::EnhancedPacket(epb) => {
                let idb = interface(epb.interface_id)?;
                // pcap-file stores the raw timestamp units as nanoseconds; scale them here.
                let units = u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX);
                let std::borrow::Cow::Borrowed(data) = epb.data else {
                    return Err("pcapng packet was copied".into());
                };
                return Ok(Some((Some(pcapng_time(idb, units)), u32::from(idb.linktype), data)));
            }
            Block::SimplePacket(spb) => {
                let idb = interface(0)?;
                let std::borrow::Cow::Borrowed(data) = spb.data else {
                    return Err("pcapng packet was copied".into());
                };
                return Ok(Some((None, u32::from(idb.linktype), data)));
            }
            Block::Packet(pb) => {
                let idb = interface(u32::from(pb.interface_id))?;
                let std::borrow::Cow::Borrowed(data) = pb.data else {
                    return Err("pcapng packet was copied".into());
                };
                return Ok(Some((Some(pcapng_time(idb, pb.timestamp)), u32::from(idb.linktype), data)));
            }
            _ => continue,
        }
    }
}

/// Time of a pcapng packet from its raw timestamp `units` and its interface's `if_tsresol`
/// (default 10^-6 s) and `if_tsoffset` (pcapng §4.2).
fn pcapng_time(idb: &InterfaceDescriptionBlock<'_>, units: u64) -> Duration {
    let mut resolution = 6u8;
    let mut offset = 0u64;
    for option in &idb.options {
        match option {
            InterfaceDescriptionOption::IfTsResol(r) => resolution = *r,
            InterfaceDescriptionOption::IfTsOffset(o) => offset = *o,
            _ => {}
        }
    }
    let units = u128::from(units);
    let nanos = if resolution & 0x80 != 0 {
        // Negative power of two.
        let shift = u32::from(resolution & 0x7f).min(127);
        (units * 1_000_000_000) >> shift
    } else if resolution <= 9 {
        units * 10u128.pow(u32::from(9 - resolution))
    } else {
        units / 10u128.checked_pow(u32::from(resolution - 9)).unwrap_or(u128::MAX)
    };
    let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
    Duration::from_nanos(nanos).checked_add(Duration::from_secs(offset)).unwrap_or(Duration::MAX)
}

/// The network-layer packet inside a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkLayer<'a> {
    /// An IPv4 packet, from its header.
    Ipv4(&'a [u8]),
    /// An IPv6 packet, from its header.
    Ipv6(&'a [u8]),
}

/// Strips the link-layer header of `linktype`. `Ok(None)`: the frame carries no IP packet (or
/// is too short to tell); `Err(linktype)`: the link type is not one this module reads.
pub fn network_layer(linktype: u32, data: &[u8]) -> Result<Option<NetworkLayer<'_>>, u32> {
    let by_ethertype = |ethertype: u16, rest| match ethertype {
        ETHERTYPE_IPV4 => Some(NetworkLayer::Ipv4(rest)),
        ETHERTYPE_IPV6 => Some(NetworkLayer::Ipv6(rest)),
        _ => None,
    };
    let be16 = |at: usize| data.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    Ok(match linktype {
        linktype::ETHERNET => {
            let mut at = 12;
            let mut ethertype = be16(at);
            while ethertype.is_some_and(|t| ETHERTYPE_VLAN.contains(&t)) {
                at += 4;
                ethertype = be16(at);
            }
            ethertype.and_then(|t| by_ethertype(t, data.get(at + 2..)?))
        }
        linktype::LINUX_SLL => be16(14).and_then(|t| by_ethertype(t, data.get(16..)?)),
        linktype::LINUX_SLL2 => be16(0).and_then(|t| by_ethertype(t, data.get(20..)?)),
        linktype::NULL | linktype::LOOP => {
            let Some(family) = data.get(..4) else {
                return Ok(None);
            };
            let family = [family[0], family[1], family[2], family[3]];
            let value = if linktype == linktype::LOOP {
                u32::from_be_bytes(family)
            } else {
                // Host byte order of the capturing machine: whichever reading is small.
                let le = u32::from_le_bytes(family);
                if le & 0xffff_0000 == 0 { le } else { u32::from_be_bytes(family) }
            };
            let rest = &data[4..];
            match value {
                2 => Some(NetworkLayer::Ipv4(rest)),
                // AF_INET6 of Linux, the BSDs and macOS.
                10 | 24 | 28 | 30 => Some(NetworkLayer::Ipv6(rest)),
                _ => None,
            }
        }
        linktype::RAW | linktype::RAW_12 | linktype::RAW_14 | linktype::IPV4 | linktype::IPV6 => {
            match data.first().map(|b| b >> 4) {
                Some(4) => Some(NetworkLayer::Ipv4(data)),
                Some(6) => Some(NetworkLayer::Ipv6(data)),
                _ => None,
            }
        }
        other => return Err(other),
    })
}

/// A Mobility Header or RS/RA found in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// 1-based frame number.
    pub frame: u64,
    /// Capture time, when the capture has one.
    pub time: Option<Duration>,
    /// Source address of the IP header.
    pub src: IpAddr,
    /// Destination address of the IP header.
    pub dst: IpAddr,
    /// How it travelled.
    pub transport: Transport,
    /// What the payload is.
    pub protocol: Protocol,
    /// The Mobility Header or ICMPv6 message, as captured (possibly cut short).
    pub payload: &'a [u8],
    /// Source and destination of the checksum pseudo-header (IPv6 only).
    pub pseudo_header: Option<(Ipv6Addr, Ipv6Addr)>,
    /// IPv6 hop limit or IPv4 TTL.
    pub hop_limit: u8,
    /// Remarks about the layers around the payload (fragmentation, short capture, ...).
    pub notes: Vec<String>,
}

/// What [`extract`] made of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extracted<'a> {
    /// A Mobility Header or Router Solicitation/Advertisement.
    Packet(Packet<'a>),
    /// Anything else.
    Skipped,
    /// The frame's link type is not one [`network_layer`] reads.
    UnsupportedLinkType(u32),
}

/// Finds the Mobility Header or RS/RA in `frame`.
pub fn extract<'a>(frame: &RawFrame<'a>) -> Extracted<'a> {
    let found = match network_layer(frame.linktype, frame.data) {
        Err(linktype) => return Extracted::UnsupportedLinkType(linktype),
        Ok(None) => None,
        Ok(Some(NetworkLayer::Ipv6(ip))) => from_ipv6(ip),
        Ok(Some(NetworkLayer::Ipv4(ip))) => from_ipv4(ip),
    };
    match found {
        Some(found) => Extracted::Packet(Packet {
            frame: frame.number,
            time: frame.time,
            src: found.src,
            dst: found.dst,
            transport: found.transport,
            protocol: found.protocol,
            payload: found.payload,
            pseudo_header: found.pseudo_header,
            hop_limit: found.hop_limit,
            notes: found.notes,
        }),
        None => Extracted::Skipped,
    }
}

struct Found<'a> {
    src: IpAddr,
    dst: IpAddr,
    transport: Transport,
    protocol: Protocol,
    payload: &'a [u8],
    pseudo_header: Option<(Ipv6Addr, Ipv6Addr)>,
    hop_limit: u8,
    notes: Vec<String>,
}

/// Option type of the Home Address destination option (RFC 6275 §6.3).
const HOME_ADDRESS_OPTION: u8 = 201;

fn from_ipv6(ip: &[u8]) -> Option<Found<'_>> {
    let (slice, stop) = LaxIpv6Slice::from_slice(ip).ok()?;
    // An extension header that does not parse hides what follows: nothing to decode.
    if stop.is_some() {
        return None;
    }
    let header = slice.header();
    let payload = slice.payload();
    let protocol = match payload.ip_number {
        IpNumber(IPPROTO_MH) => Protocol::MobilityHeader,
        IpNumber(IPPROTO_ICMPV6)
            if matches!(payload.payload.first(), Some(&(ICMPV6_ROUTER_SOLICITATION | ICMPV6_ROUTER_ADVERTISEMENT))) =>
        {
            Protocol::RouterDiscovery
        }
        _ => return None,
    };
    let src = header.source_addr();
    let dst = header.destination_addr();
    let mut pseudo_src = src;
    let mut pseudo_dst = dst;
    let mut notes = Vec::new();
    for ext in slice.extensions().clone().into_iter() {
        match ext {
            Ipv6ExtensionSlice::Fragment(fragment) => {
                // Only the first fragment holds the start of the message.
                if fragment.fragment_offset().value() != 0 {
                    return None;
                }
                if fragment.more_fragments() {
                    notes.push("first fragment of a fragmented packet".into());
                }
            }
            Ipv6ExtensionSlice::Routing(routing) => {
                // RFC 8200 §8.1: the pseudo-header carries the final destination.
                if let Some(last) = routing_final_destination(routing.slice()) {
                    pseudo_dst = last;
                }
            }
            Ipv6ExtensionSlice::DestinationOptions(options) => {
                // RFC 6275 §6.3: the home address replaces the source in the pseudo-header.
                if let Some(home) = home_address_option(options.slice()) {
                    pseudo_src = home;
                }
            }
            Ipv6ExtensionSlice::HopByHop(_) | Ipv6ExtensionSlice::Authentication(_) => {}
        }
    }
    if payload.incomplete {
        notes.push("frame shorter than the IPv6 payload length".into());
    }
    if (pseudo_src, pseudo_dst) != (src, dst) {
        notes.push(format!("checksum pseudo-header {pseudo_src} -> {pseudo_dst}"));
    }
    Some(Found {
        src: IpAddr::V6(src),
        dst: IpAddr::V6(dst),
        transport: Transport::Ipv6,
        protocol,
        payload: payload.payload,
        pseudo_header: Some((pseudo_src, pseudo_dst)),
        hop_limit: header.hop_limit(),
        notes,
    })
}

/// The final destination a routing header names while segments are left: the last address of
/// a type 0 or 2 header, the first segment of a segment routing header (type 4, RFC 8754).
fn routing_final_destination(header: &[u8]) -> Option<Ipv6Addr> {
    let (&routing_type, &segments_left) = (header.get(2)?, header.get(3)?);
    if segments_left == 0 {
        return None;
    }
    let addresses = header.get(8..)?;
    let at = match routing_type {
        0 | 2 => addresses.len().checked_sub(16)? / 16 * 16,
        4 => 0,
        _ => return None,
    };
    let octets: [u8; 16] = addresses.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(octets))
}

/// The home address of a Home Address option in a destination options header.
fn home_address_option(header: &[u8]) -> Option<Ipv6Addr> {
    let mut at = 2;
    while let Some(&option_type) = header.get(at) {
        if option_type == 0 {
            at += 1;
            continue;
        }
        let length = usize::from(*header.get(at + 1)?);
        let data = header.get(at + 2..at + 2 + length)?;
        if option_type == HOME_ADDRESS_OPTION && length == 16 {
            let octets: [u8; 16] = data.try_into().ok()?;
            return Some(Ipv6Addr::from(octets));
        }
        at += 2 + length;
    }
    None
}

fn from_ipv4(ip: &[u8]) -> Option<Found<'_>> {
    let (slice, _) = LaxIpv4Slice::from_slice(ip).ok()?;
    let header = slice.header();
    if header.protocol() != IpNumber::UDP || header.fragments_offset().value() != 0 {
        return None;
    }
    let udp = slice.payload().payload;
    let ports = udp.get(..8)?;
    let sport = u16::from_be_bytes([ports[0], ports[1]]);
    let dport = u16::from_be_bytes([ports[2], ports[3]]);
    if sport != MH_UDP_PORT && dport != MH_UDP_PORT {
        return None;
    }
    let udp_len = usize::from(u16::from_be_bytes([ports[4], ports[5]]));
    let mut notes = Vec::new();
    let end = if udp_len < 8 {
        udp.len()
    } else if udp_len > udp.len() {
        notes.push("frame shorter than the UDP length".into());
        udp.len()
    } else {
        udp_len
    };
    if header.more_fragments() {
        notes.push("first fragment of a fragmented packet".into());
    }
    Some(Found {
        src: IpAddr::V4(header.source_addr()),
        dst: IpAddr::V4(header.destination_addr()),
        transport: Transport::Ipv4Udp,
        protocol: Protocol::MobilityHeader,
        payload: udp.get(8..end)?,
        pseudo_header: None,
        hop_limit: header.ttl(),
        notes,
    })
}

// ---------------------------------------------------------------------------------------------
// Building frames.

/// The Ethernet addresses of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetAddrs {
    /// Source MAC address.
    pub src: [u8; 6],
    /// Destination MAC address.
    pub dst: [u8; 6],
}

/// An Ethernet II frame carrying an IPv6 packet with `payload` under `next_header`, no
/// extension headers.
pub fn ethernet_ipv6(
    eth: EthernetAddrs,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    next_header: u8,
    payload: &[u8],
) -> anyhow::Result<Vec<u8>> {
    let builder = PacketBuilder::ethernet2(eth.src, eth.dst).ipv6(src.octets(), dst.octets(), hop_limit);
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, IpNumber(next_header), payload).context("building an Ethernet/IPv6 frame")?;
    Ok(frame)
}

/// An Ethernet II frame carrying an IPv4 UDP datagram with `payload` (UDP checksum filled).
pub fn ethernet_ipv4_udp(
    eth: EthernetAddrs,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> anyhow::Result<Vec<u8>> {
    let builder = PacketBuilder::ethernet2(eth.src, eth.dst).ipv4(src.octets(), dst.octets(), ttl).udp(sport, dport);
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, payload).context("building an Ethernet/IPv4/UDP frame")?;
    Ok(frame)
}

/// An Ethernet/IPv6 frame carrying `message` with its checksum for `src` and `dst`, hop limit
/// [`MH_HOP_LIMIT`].
pub fn mh_frame(eth: EthernetAddrs, src: Ipv6Addr, dst: Ipv6Addr, message: &Message) -> anyhow::Result<Vec<u8>> {
    let mh = message.to_vec(&src, &dst).map_err(|e| anyhow!("emitting {message}: {e}"))?;
    ethernet_ipv6(eth, src, dst, MH_HOP_LIMIT, IPPROTO_MH, &mh)
}

/// An Ethernet/IPv4/UDP frame from and to port 5436 carrying `message` (RFC 5844 §7), TTL
/// [`MH_HOP_LIMIT`]. The Mobility Header checksum is left zero: RFC 5844 does not say what
/// pseudo-header it would cover.
pub fn mh_udp_frame(eth: EthernetAddrs, src: Ipv4Addr, dst: Ipv4Addr, message: &Message) -> anyhow::Result<Vec<u8>> {
    let mut mh = vec![0; message.buffer_len()];
    message.emit(&mut mh).map_err(|e| anyhow!("emitting {message}: {e}"))?;
    ethernet_ipv4_udp(eth, src, dst, MH_HOP_LIMIT, MH_UDP_PORT, MH_UDP_PORT, &mh)
}

/// An Ethernet/IPv6 frame carrying a Router Solicitation or Advertisement with its ICMPv6
/// checksum, hop limit [`ND_HOP_LIMIT`].
pub fn nd_frame(eth: EthernetAddrs, src: Ipv6Addr, dst: Ipv6Addr, message: &NdMessage) -> anyhow::Result<Vec<u8>> {
    let mut icmp = vec![0; message.buffer_len()];
    message.emit(&mut icmp, &src, &dst).map_err(|e| anyhow!("emitting {message}: {e}"))?;
    ethernet_ipv6(eth, src, dst, ND_HOP_LIMIT, IPPROTO_ICMPV6, &icmp)
}

/// Writes frames of one link type as a pcap file (microsecond timestamps, little endian).
pub struct PcapFileWriter<W: Write> {
    writer: PcapWriter<W>,
}

impl<W: Write> PcapFileWriter<W> {
    /// Writes the pcap header for `linktype` (a LINKTYPE_ value, see [`linktype`]).
    pub fn new(writer: W, linktype: u32) -> anyhow::Result<Self> {
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: 65535,
            datalink: DataLink::from(linktype),
            ts_resolution: TsResolution::MicroSecond,
            endianness: Endianness::Little,
        };
        let writer = PcapWriter::with_header(writer, header).context("writing the pcap header")?;
        Ok(Self { writer })
    }

    /// Appends one frame captured at `time` since the epoch.
    pub fn write(&mut self, time: Duration, frame: &[u8]) -> anyhow::Result<()> {
        let len = u32::try_from(frame.len()).context("frame longer than 4 GiB")?;
        self.writer.write_packet(&PcapPacket::new(time, len, frame)).context("writing a pcap record")?;
        Ok(())
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.writer.into_writer()
    }
}

/// Writes `frames` (time, Ethernet frame) as a pcap file at `path`, creating its directory.
pub fn write_pcap(path: &Path, frames: &[(Duration, Vec<u8>)]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut writer = PcapFileWriter::new(std::io::BufWriter::new(file), linktype::ETHERNET)?;
    for (time, frame) in frames {
        writer.write(*time, frame)?;
    }
    writer.into_inner().flush().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_header_final_destination() {
        let last: Ipv6Addr = "2001:db8::99".parse().unwrap();
        let mut type2 = vec![135, 2, 2, 1, 0, 0, 0, 0];
        type2.extend_from_slice(&last.octets());
        assert_eq!(routing_final_destination(&type2), Some(last));
        type2[3] = 0;
        assert_eq!(routing_final_destination(&type2), None);
        let first: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut srh = vec![135, 4, 4, 1, 1, 0, 0, 0];
        srh.extend_from_slice(&first.octets());
        srh.extend_from_slice(&last.octets());
        assert_eq!(routing_final_destination(&srh), Some(first));
    }

    #[test]
    fn home_address_option_after_padding() {
        let home: Ipv6Addr = "2001:db8:1:1::5".parse().unwrap();
        let mut dst_opts = vec![135, 2, 1, 2, 0, 0, 201, 16];
        dst_opts.extend_from_slice(&home.octets());
        assert_eq!(home_address_option(&dst_opts), Some(home));
        assert_eq!(home_address_option(&[135, 0, 1, 4, 0, 0, 0, 0]), None);
    }

    #[test]
    fn pcapng_resolutions() {
        let idb = |options| InterfaceDescriptionBlock { linktype: DataLink::ETHERNET, snaplen: 0, options };
        assert_eq!(pcapng_time(&idb(vec![]), 1_500_000), Duration::from_millis(1_500));
        assert_eq!(pcapng_time(&idb(vec![InterfaceDescriptionOption::IfTsResol(9)]), 7), Duration::from_nanos(7));
        assert_eq!(
            pcapng_time(&idb(vec![InterfaceDescriptionOption::IfTsResol(0x80 | 10)]), 1536),
            Duration::from_millis(1_500)
        );
        assert_eq!(
            pcapng_time(&idb(vec![InterfaceDescriptionOption::IfTsOffset(100)]), 1),
            Duration::from_secs(100) + Duration::from_micros(1)
        );
    }

    #[test]
    fn null_link_reads_either_byte_order() {
        let mut frame = vec![24, 0, 0, 0, 0x60];
        assert!(matches!(network_layer(linktype::NULL, &frame), Ok(Some(NetworkLayer::Ipv6(_)))));
        frame[..4].copy_from_slice(&[0, 0, 0, 30]);
        assert!(matches!(network_layer(linktype::NULL, &frame), Ok(Some(NetworkLayer::Ipv6(_)))));
        frame[..4].copy_from_slice(&[0, 0, 0, 2]);
        assert!(matches!(network_layer(linktype::NULL, &frame), Ok(Some(NetworkLayer::Ipv4(_)))));
        assert_eq!(network_layer(147, &frame), Err(147));
    }
}
