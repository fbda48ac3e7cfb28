//! Wireshark conformance: every message and option kind this crate emits goes into one capture
//! (Ethernet + IPv6, one Mobility Header over IPv4/UDP port 5436, Router Solicitations and
//! Advertisements with hop limit 255 from link-local sources) that tshark, Wireshark's
//! command-line decoder and an implementation independent of ours, then decodes. For every frame
//! the test asserts
//!
//! 1. what the shared `tshark-check` script asserts: no malformed packet, no expert item of
//!    severity warning or error (notes such as "IE data not dissected yet" are allowed); a
//!    separate test makes sure that rule does flag broken messages;
//! 2. that the values tshark reports equal the ones we encoded, field by field (the table in
//!    [`cases`]), plus checks derived from the emitted octets by this file's own walkers: Header
//!    Len, checksum, the Length of every mobility option in order (PadN included), each option's
//!    raw octets, the type and Length of every ND option.
//!
//! It runs twice: with MuHo as the Experimental Mobility Option (type 18, the default) and with
//! MuHo under an unassigned type (200), which tshark must show as an unknown option.
//!
//! What tshark 4.0 cannot check, so that our own decoder (the round trip asserted here for every
//! frame, and the crate's unit tests) is the only check for it:
//! - UPN and UPA (MH types 19 and 20): tshark shows "Unknown" and the raw Message Data
//!   (`mip6.unknown_type_data`), compared here octet for octet; their fields and options are not
//!   decoded at all;
//! - Flow Summary (44) and Flow Identification (45), with the RFC 6088 traffic selectors inside,
//!   and MuHo under an unassigned type: shown as "Unknown (n)" with a Note; only the option type
//!   and its raw octets (from tshark's PDML view) are compared;
//! - the Mobility Header checksum: tshark shows it but does not verify it; this file verifies it
//!   with its own one's-complement sum (the ICMPv6 checksum tshark does verify). Over IPv4/UDP
//!   the checksum rule is unsettled; the frame here sums over the IPv4-mapped addresses;
//! - the RA Flags Expansion option beyond its first 16 bits: tshark shows only those (named after
//!   the header flags, so compared as a raw number), so the weak-host bit 55 is invisible to it.
//!
//! Wireshark 4.0 quirks the comparisons allow for (seen in its output; the shortened data also
//! in its dissector source):
//! - status codes are compared as numbers, never names (tshark's names are wrong for BA 143–148,
//!   BRA status and the IPv4 Home Address Reply status);
//! - `mip6.em.data` and `mip6.auth.auth_data` lack the last two octets of the data (the dissector
//!   subtracts the Type and Length octets twice); the option's complete octets are compared
//!   through its protocol field (`mip6.options.em`, `mip6.options.auth`);
//! - the MESG-ID option (RFC 4285, NTP format) is shown as Unix seconds plus nanoseconds, so its
//!   seconds are compared with the high 32 bits we wrote;
//! - for an option it does not know, tshark's "Length" item reads the wrong octet, so the Length
//!   of unknown options is compared through their raw octets only.
//!
//! Needs the Debian package tshark (CI installs it): without it the tests fail, never skip.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use etherparse::{IpNumber, PacketBuilder};
use pcap_file::pcap::{PcapPacket, PcapWriter};
use pmip6_wire::flow::{FlowIdentification, FlowStatus, FlowSubOption, FlowSummary, flow_binding_action};
use pmip6_wire::nd::{
    DEFAULT_WEAK_HOST_FLAG_BIT, LinkLayerAddress, NdMessage, NdOption, PrefixInformation, RaFlags, RouterAdvertisement,
    RouterSolicitation,
};
use pmip6_wire::selector::{FieldRange, Ipv4Selector, Ipv6Selector, TrafficSelector};
use pmip6_wire::{
    AccessTechnologyType, Authentication, BaFlags, BaStatus, BindingAck, BindingError, BindingErrorStatus,
    BindingRevocation, BindingUpdate, BuFlags, HandoffIndicator, Heartbeat, HeartbeatFlags, Ipv4HoaReplyStatus,
    Message, MnIdentifier, MobilityOption, NotificationReason, ParseConfig, Prefix, RevocationFlags, RevocationKind,
    RevocationStatus, RevocationTrigger, Timestamp, UnknownMessage, UpaStatus, UpdateNotification,
    UpdateNotificationAck, UpnFlags,
};

// ---------------------------------------------------------------------------------------------
// The two runs.

#[test]
fn tshark_decodes_every_kind_with_muho_as_experimental_option() {
    let cases = run(ParseConfig::DEFAULT_MUHO_OPTION_TYPE, "muho18");
    // Under type 18 tshark dissects MuHo as the Experimental option (`mip6.em.data`, compared in
    // `run`), never as an unknown one.
    for case in &cases {
        assert!(
            !case.tshark_unknown_types.contains(&18),
            "frame {} ({}): type 18 shown as unknown",
            case.number,
            case.name
        );
    }
}

#[test]
fn tshark_decodes_every_kind_with_muho_as_unassigned_option() {
    let cases = run(200, "muho200");
    // The MuHo-carrying frames show the option as unknown type 200 (checked against the raw
    // octets in `run`; here, explicitly, that tshark saw it at all).
    let mut seen = 0;
    for case in cases.iter().filter(|c| c.visible_muho > 0) {
        let unknown = case.tshark_unknown_types.iter().filter(|t| **t == 200).count();
        seen += unknown;
        assert_eq!(
            unknown, case.visible_muho,
            "frame {} ({}): MuHo under type 200 as unknown options",
            case.number, case.name
        );
    }
    assert_eq!(seen, 3, "MuHo options tshark showed as unknown type 200 (PBU: 1, PBA: 2)");
}

// ---------------------------------------------------------------------------------------------
// Addresses.

const MAG_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0xaa, 0x01];
const LMA_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0xff, 0x01];
const MN_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
/// An IEEE EUI-64 link-layer address (RFC 4861 §4.6.1 with a 16-octet option).
const EUI64: [u8; 8] = [0x02, 0x00, 0x00, 0xff, 0xfe, 0x00, 0x00, 0x01];
/// The IPv6 multicast MAC of ff02::1 / ff02::2.
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0x00, 0x00, 0x00, 0x01];
const ALL_ROUTERS_MAC: [u8; 6] = [0x33, 0x33, 0x00, 0x00, 0x00, 0x02];

fn v6(text: &str) -> Ipv6Addr {
    text.parse().expect("IPv6 literal")
}

/// Proxy-CoA of the MAG.
fn mag() -> Ipv6Addr {
    v6("2001:db8:aaaa::1")
}

/// The LMA address.
fn lma() -> Ipv6Addr {
    v6("2001:db8:ffff::1")
}

/// IPv4 transport (RFC 5844 §7): IPv4 Proxy-CoA and IPv4 LMA address.
const MAG_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const LMA_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// The MN's and the MAG's link-local addresses on the access link.
fn mn_ll() -> Ipv6Addr {
    v6("fe80::200:ff:fe00:1")
}
fn mag_ll() -> Ipv6Addr {
    v6("fe80::1")
}

const NAI: &str = "mn1@example.net";
/// 2023-11-14 22:13:20.5 UTC (protocol-facts §2.5).
const T0: Timestamp = Timestamp::new(1_700_000_000, 0x8000);
/// An NTP timestamp (RFC 4285 MESG-ID): 0xe8a54f00 seconds since 1900, fraction 1/16 s.
const MESG_ID: u64 = 0xe8a5_4f00_1000_0000;

// ---------------------------------------------------------------------------------------------
// The table: frame, what we emit, what tshark must show.

/// How a message travels.
enum Wire {
    /// Ethernet / IPv6 (Next Header 135) / Mobility Header, checksum for `src` and `dst`.
    Mh { src: Ipv6Addr, dst: Ipv6Addr, msg: Message },
    /// Ethernet / IPv4 / UDP 5436 / Mobility Header (RFC 5844 §7).
    MhOverUdp { src: Ipv4Addr, dst: Ipv4Addr, msg: Message },
    /// Ethernet / IPv6 with hop limit 255 / ICMPv6 Router Solicitation or Advertisement.
    Nd { src: Ipv6Addr, dst: Ipv6Addr, dst_mac: [u8; 6], msg: NdMessage },
}

/// One frame of the capture.
struct Case {
    name: &'static str,
    wire: Wire,
    /// (tshark field, the value it must show). A field repeated in the frame is written with its
    /// occurrences joined by `|`; `*` matches any one occurrence.
    expect: Vec<(&'static str, String)>,
}

/// `expect![field => value, ...]`: the expectations of one frame, values through `ToString`.
macro_rules! expect {
    ($($field:literal => $value:expr),* $(,)?) => {
        vec![$(($field, $value.to_string())),*]
    };
}

/// Occurrences of a repeated field, as `-E aggregator=|` joins them.
fn all<T: ToString>(values: impl IntoIterator<Item = T>) -> String {
    values.into_iter().map(|v| v.to_string()).collect::<Vec<_>>().join("|")
}

/// tshark's rendering of a flag: 1 or 0.
fn bit(set: bool) -> u8 {
    u8::from(set)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn nai() -> MobilityOption {
    MobilityOption::MnIdentifier(MnIdentifier::nai(NAI))
}

fn hnp(text: &str, len: u8) -> MobilityOption {
    MobilityOption::HomeNetworkPrefix(Prefix::new(v6(text), len))
}

fn muho(option_type: u8, text: &str, len: u8) -> MobilityOption {
    MobilityOption::MuHo { option_type, prefix: Prefix::new(v6(text), len) }
}

/// The 18 data octets of a MuHo: Reserved, Prefix Length, prefix (the HNP layout).
fn muho_data(text: &str, len: u8) -> Vec<u8> {
    let mut data = vec![0, len];
    data.extend_from_slice(&v6(text).octets());
    data
}

/// What tshark shows of the MuHo options of a frame: under type 18 the Experimental option's
/// data; under another type only the unknown option (checked through its raw octets).
fn muho_expect(option_type: u8, prefixes: &[(&str, u8)]) -> Vec<(&'static str, String)> {
    if option_type == ParseConfig::DEFAULT_MUHO_OPTION_TYPE {
        expect!["mip6.em.data" => all(prefixes.iter().map(|(p, l)| hex(&muho_data(p, *l))))]
    } else {
        Vec::new()
    }
}

fn lli() -> MobilityOption {
    MobilityOption::MnLinkLayerIdentifier(MN_MAC.to_vec())
}

/// A flow of the MN moved by the LMA (RFC 7864): IPv6 selector on source, destination, ports and
/// next header, action Move, target the MAG.
fn flow_identification_v6() -> FlowIdentification {
    FlowIdentification {
        fid: 1,
        priority: 10,
        status: FlowStatus::Success,
        suboptions: vec![
            FlowSubOption::BidReference(vec![1, 2]),
            FlowSubOption::TrafficSelector(TrafficSelector::Ipv6(Ipv6Selector {
                src_addr: Some(FieldRange::exact(v6("2001:db8:cafe::1"))),
                dst_addr: Some(FieldRange::new(v6("2001:db8:1:1::"), v6("2001:db8:1:1:ffff:ffff:ffff:ffff"))),
                flow_label: Some(FieldRange::exact(0x12345)),
                src_port: Some(FieldRange::new(1024, 65535)),
                dst_port: Some(FieldRange::exact(443)),
                next_header: Some(FieldRange::exact(6)),
                ..Ipv6Selector::default()
            })),
            FlowSubOption::FlowBindingAction(flow_binding_action::MOVE),
            FlowSubOption::TargetCareOfAddress(IpAddr::V6(mag())),
        ],
    }
}

/// An IPv4 flow (RFC 6088 format 1) with an IPv4 target.
fn flow_identification_v4() -> FlowIdentification {
    FlowIdentification {
        fid: 2,
        priority: 20,
        status: FlowStatus::from(132),
        suboptions: vec![
            FlowSubOption::TrafficSelector(TrafficSelector::Ipv4(Ipv4Selector {
                dst_addr: Some(FieldRange::exact(Ipv4Addr::new(10, 1, 0, 7))),
                dst_port: Some(FieldRange::new(5000, 5100)),
                protocol: Some(FieldRange::exact(17)),
                ..Ipv4Selector::default()
            })),
            FlowSubOption::TargetCareOfAddress(IpAddr::V4(MAG_V4)),
        ],
    }
}

/// Every frame. `m` is the option type MuHo travels as.
fn cases(m: u8) -> Vec<Case> {
    let pbu_flags = BuFlags::A | BuFlags::H | BuFlags::L | BuFlags::P;
    let other_bu_flags =
        BuFlags::K | BuFlags::M | BuFlags::R | BuFlags::F | BuFlags::T | BuFlags::B | BuFlags::S | BuFlags::D;
    let all_ba_flags = BaFlags::all();
    let mut weak_host_ra = RouterAdvertisement {
        cur_hop_limit: 64,
        flags: RaFlags::default(),
        router_lifetime: 1800,
        reachable_time: 0,
        retrans_timer: 0,
        options: vec![
            NdOption::SourceLinkLayerAddress(LinkLayerAddress::Ethernet(MAG_MAC)),
            NdOption::Mtu(1500),
            NdOption::PrefixInformation(PrefixInformation {
                prefix_len: 64,
                on_link: true,
                autonomous: true,
                router_address: false,
                valid_lifetime: u32::MAX,
                preferred_lifetime: u32::MAX,
                prefix: v6("2001:db8:1:1::"),
            }),
            NdOption::PrefixInformation(PrefixInformation {
                prefix_len: 64,
                on_link: true,
                autonomous: true,
                router_address: false,
                valid_lifetime: 86_400,
                preferred_lifetime: 14_400,
                prefix: v6("2001:db8:2:1::"),
            }),
        ],
    };
    weak_host_ra.set_flag_bit(DEFAULT_WEAK_HOST_FLAG_BIT);
    let mut busy_ra = RouterAdvertisement {
        cur_hop_limit: 255,
        flags: RaFlags::from_octet(0xff),
        router_lifetime: 9000,
        reachable_time: 30_000,
        retrans_timer: 1000,
        options: vec![
            NdOption::PrefixInformation(PrefixInformation {
                prefix_len: 128,
                on_link: false,
                autonomous: false,
                router_address: true,
                valid_lifetime: 0,
                preferred_lifetime: 0,
                prefix: v6("2001:db8:1:1::1"),
            }),
            // RDNSS (RFC 8106), which this crate keeps as an unknown option: Reserved, Lifetime,
            // one server.
            NdOption::Unknown {
                option_type: 25,
                data: [&[0u8, 0][..], &600u32.to_be_bytes(), &v6("2001:db8::53").octets()].concat(),
            },
            NdOption::SourceLinkLayerAddress(LinkLayerAddress::Ethernet(MAG_MAC)),
        ],
    };
    // Bits 8, 10, 15, 16, 23 (the first 16 expansion bits tshark shows: 0xa181) and 55.
    for b in [8, 10, 15, 16, 23, DEFAULT_WEAK_HOST_FLAG_BIT] {
        busy_ra.set_flag_bit(b);
    }

    vec![
        Case {
            name: "PBU (initial attach, asks for prefixes and MuHo)",
            wire: Wire::Mh {
                src: mag(),
                dst: lma(),
                msg: Message::BindingUpdate(BindingUpdate {
                    sequence: 0x1234,
                    flags: pbu_flags,
                    lifetime: 900,
                    options: vec![
                        nai(),
                        MobilityOption::HomeNetworkPrefix(Prefix::ALL_ZERO),
                        muho(m, "::", 0),
                        MobilityOption::HandoffIndicator(HandoffIndicator::NewInterface),
                        MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee80211),
                        lli(),
                        MobilityOption::LinkLocalAddress(Ipv6Addr::UNSPECIFIED),
                        MobilityOption::Timestamp(T0),
                    ],
                }),
            },
            expect: [
                expect![
                    "mip6.mhtype" => 5,
                    "mip6.bu.seqnr" => 0x1234,
                    "mip6.bu.a_flag" => 1, "mip6.bu.h_flag" => 1, "mip6.bu.l_flag" => 1,
                    "mip6.bu.k_flag" => 0, "mip6.bu.m_flag" => 0, "mip6.nemo.bu.r_flag" => 0,
                    "mip6.bu.p_flag" => 1, "mip6.bu.f_flag" => 0, "mip6.bu.t_flag" => 0,
                    "mip6.bu.b_flag" => 0,
                    "mip6.bu.lifetime" => 900,
                    "mip6.mnid.subtype" => 1,
                    "mip6.mnid.identifier" => NAI,
                    "mip6.nemo.mnp.pfl" => 0,
                    "mip6.nemo.mnp.mnp" => "::",
                    "mip6.hi" => 1,
                    "mip6.att" => 4,
                    "mip6.mnlli.lli" => hex(&MN_MAC),
                    "mip6.lila_lla" => "::",
                    "mip6.timestamp_tmp" => T0.seconds(),
                ],
                muho_expect(m, &[("::", 0)]),
            ]
            .concat(),
        },
        Case {
            name: "PBA (accepted, two HNPs, the other interface's prefixes as MuHo)",
            wire: Wire::Mh {
                src: lma(),
                dst: mag(),
                msg: Message::BindingAck(BindingAck {
                    status: BaStatus::Accepted,
                    flags: BaFlags::P,
                    sequence: 0x1234,
                    lifetime: 900,
                    options: vec![
                        nai(),
                        hnp("2001:db8:1:1::", 64),
                        hnp("2001:db8:1:2::", 64),
                        muho(m, "2001:db8:2:1::", 64),
                        muho(m, "2001:db8:3::", 48),
                        MobilityOption::HandoffIndicator(HandoffIndicator::NewInterface),
                        MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee80211),
                        lli(),
                        MobilityOption::LinkLocalAddress(mag_ll()),
                        MobilityOption::Timestamp(T0),
                    ],
                }),
            },
            expect: [
                expect![
                    "mip6.mhtype" => 6,
                    "mip6.ba.status" => 0,
                    "mip6.ba.k_flag" => 0, "mip6.nemo.ba.r_flag" => 0, "mip6.ba.p_flag" => 1,
                    "mip6.ba.t_flag" => 0, "mip6.ba.b_flag" => 0,
                    "mip6.ba.seqnr" => 0x1234,
                    "mip6.ba.lifetime" => 900,
                    "mip6.mnid.subtype" => 1,
                    "mip6.mnid.identifier" => NAI,
                    "mip6.nemo.mnp.pfl" => "64|64",
                    "mip6.nemo.mnp.mnp" => "2001:db8:1:1::|2001:db8:1:2::",
                    "mip6.hi" => 1,
                    "mip6.att" => 4,
                    "mip6.mnlli.lli" => hex(&MN_MAC),
                    "mip6.lila_lla" => "fe80::1",
                    "mip6.timestamp_tmp" => T0.seconds(),
                ],
                muho_expect(m, &[("2001:db8:2:1::", 64), ("2001:db8:3::", 48)]),
            ]
            .concat(),
        },
        Case {
            name: "PBA (rejected 162, every flag set)",
            wire: Wire::Mh {
                src: lma(),
                dst: mag(),
                msg: Message::BindingAck(BindingAck {
                    status: BaStatus::MissingAccessTechTypeOption,
                    flags: all_ba_flags,
                    sequence: 0x1235,
                    lifetime: 0,
                    options: vec![nai(), MobilityOption::Timestamp(Timestamp::new(1_700_000_100, 1))],
                }),
            },
            expect: expect![
                "mip6.mhtype" => 6,
                "mip6.ba.status" => 162,
                "mip6.ba.k_flag" => 1, "mip6.nemo.ba.r_flag" => 1, "mip6.ba.p_flag" => 1,
                "mip6.ba.t_flag" => 1, "mip6.ba.b_flag" => 1,
                "mip6.ba.seqnr" => 0x1235,
                "mip6.ba.lifetime" => 0,
                "mip6.mnid.identifier" => NAI,
                "mip6.timestamp_tmp" => 1_700_000_100,
            ],
        },
        Case {
            name: "BU (the other flags, RFC 4285 MESG-ID and AUTH last)",
            wire: Wire::Mh {
                src: mag(),
                dst: lma(),
                msg: Message::BindingUpdate(BindingUpdate {
                    sequence: 0xfffe,
                    flags: other_bu_flags,
                    lifetime: 0xffff,
                    options: vec![
                        nai(),
                        MobilityOption::MesgId(MESG_ID),
                        MobilityOption::Authentication(Authentication {
                            subtype: 1,
                            spi: 0x0001_0000,
                            data: (1..=12).collect(),
                        }),
                    ],
                }),
            },
            expect: expect![
                "mip6.mhtype" => 5,
                "mip6.bu.seqnr" => 0xfffe,
                "mip6.bu.a_flag" => 0, "mip6.bu.h_flag" => 0, "mip6.bu.l_flag" => 0,
                "mip6.bu.k_flag" => 1, "mip6.bu.m_flag" => 1, "mip6.nemo.bu.r_flag" => 1,
                "mip6.bu.p_flag" => 0, "mip6.bu.f_flag" => 1, "mip6.bu.t_flag" => 1,
                "mip6.bu.b_flag" => 1,
                "mip6.bu.lifetime" => 0xffff,
                "mip6.mnid.identifier" => NAI,
                "mip6.mseg_id.timestamp" => MESG_ID >> 32,
                "mip6.auth.subtype" => 1,
                "mip6.auth.mobility_spi" => 0x0001_0000,
                "mip6.auth.auth_data" => hex(&(1..=12).collect::<Vec<u8>>()),
            ],
        },
        Case {
            name: "PBA (IPv4 home address reply, default router, DHCP server mode)",
            wire: Wire::Mh {
                src: lma(),
                dst: mag(),
                msg: Message::BindingAck(BindingAck {
                    status: BaStatus::Accepted,
                    flags: BaFlags::P,
                    sequence: 10,
                    lifetime: 450,
                    options: vec![
                        nai(),
                        hnp("2001:db8:1:1::", 64),
                        MobilityOption::Ipv4HomeAddressReply {
                            status: Ipv4HoaReplyStatus::Success,
                            prefix_len: 24,
                            address: Ipv4Addr::new(10, 1, 0, 7),
                        },
                        MobilityOption::Ipv4DefaultRouter(Ipv4Addr::new(10, 1, 0, 1)),
                        MobilityOption::Ipv4DhcpSupportMode { server: true },
                    ],
                }),
            },
            expect: expect![
                "mip6.mhtype" => 6,
                "mip6.ba.status" => 0,
                "mip6.ba.seqnr" => 10,
                "mip6.ba.lifetime" => 450,
                "mip6.nemo.mnp.pfl" => 64,
                "mip6.nemo.mnp.mnp" => "2001:db8:1:1::",
                "mip6.ipv4aa.sts" => 0,
                "mip6.ipv4ha.preflen" => 24,
                "mip6.ipv4ha.ha" => "10.1.0.7",
                "mip6.ipv4dra.dra" => "10.1.0.1",
                "mip6.ipv4dsm.s_flag" => 1,
            ],
        },
        Case {
            name: "PBA (IPv4 home address refused 132, DHCP relay mode)",
            wire: Wire::Mh {
                src: lma(),
                dst: mag(),
                msg: Message::BindingAck(BindingAck {
                    status: BaStatus::NotAuthorizedForIpv4HomeAddress,
                    flags: BaFlags::P,
                    sequence: 11,
                    lifetime: 0,
                    options: vec![
                        nai(),
                        MobilityOption::Ipv4HomeAddressReply {
                            status: Ipv4HoaReplyStatus::DynamicAssignmentNotAvailable,
                            prefix_len: 32,
                            address: Ipv4Addr::UNSPECIFIED,
                        },
                        MobilityOption::Ipv4DhcpSupportMode { server: false },
                    ],
                }),
            },
            expect: expect![
                "mip6.mhtype" => 6,
                "mip6.ba.status" => 171,
                "mip6.ipv4aa.sts" => 132,
                "mip6.ipv4ha.preflen" => 32,
                "mip6.ipv4ha.ha" => "0.0.0.0",
                "mip6.ipv4dsm.s_flag" => 0,
            ],
        },
        Case {
            name: "PBU over IPv4/UDP 5436 (IPv4 HoA request, IPv4 CoA)",
            wire: Wire::MhOverUdp {
                src: MAG_V4,
                dst: LMA_V4,
                msg: Message::BindingUpdate(BindingUpdate {
                    sequence: 9,
                    flags: BuFlags::A | BuFlags::P,
                    lifetime: 900,
                    options: vec![
                        nai(),
                        MobilityOption::HomeNetworkPrefix(Prefix::ALL_ZERO),
                        MobilityOption::HandoffIndicator(HandoffIndicator::BetweenMags),
                        MobilityOption::AccessTechnologyType(AccessTechnologyType::Eutran),
                        MobilityOption::Ipv4HomeAddressRequest { prefix_len: 0, address: Ipv4Addr::UNSPECIFIED },
                        MobilityOption::Ipv4CareOfAddress(MAG_V4),
                        MobilityOption::Timestamp(T0),
                    ],
                }),
            },
            expect: expect![
                "udp.dstport" => 5436,
                "mip6.mhtype" => 5,
                "mip6.bu.seqnr" => 9,
                "mip6.bu.a_flag" => 1, "mip6.bu.h_flag" => 0, "mip6.bu.p_flag" => 1,
                "mip6.bu.lifetime" => 900,
                "mip6.mnid.identifier" => NAI,
                "mip6.nemo.mnp.pfl" => 0,
                "mip6.hi" => 3,
                "mip6.att" => 8,
                "mip6.ipv4ha.preflen" => 0,
                "mip6.ipv4ha.ha" => "0.0.0.0",
                "mip6.ipv4coa.addr" => "192.0.2.1",
                "mip6.timestamp_tmp" => T0.seconds(),
            ],
        },
        Case {
            name: "PBU (flow mobility: Flow Summary, Flow Identification, experiment, unknown option)",
            wire: Wire::Mh {
                src: mag(),
                dst: lma(),
                msg: Message::BindingUpdate(BindingUpdate {
                    sequence: 0x1236,
                    flags: pbu_flags,
                    lifetime: 900,
                    options: vec![
                        nai(),
                        hnp("2001:db8:1:1::", 64),
                        MobilityOption::HandoffIndicator(HandoffIndicator::NewInterfaceSharingPrefixes),
                        MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee80211),
                        MobilityOption::FlowSummary(FlowSummary { fids: vec![1, 2, 3] }),
                        MobilityOption::FlowIdentification(flow_identification_v6()),
                        MobilityOption::FlowIdentification(flow_identification_v4()),
                        // An experiment that is not a MuHo (not 18 octets long).
                        MobilityOption::Experimental(vec![0xde, 0xad, 0xbe, 0xef, 0x01]),
                        // An option type nobody has assigned, kept byte for byte.
                        MobilityOption::Unknown { option_type: 250, data: vec![1, 2, 3] },
                        MobilityOption::Timestamp(T0),
                    ],
                }),
            },
            expect: expect![
                "mip6.mhtype" => 5,
                "mip6.bu.seqnr" => 0x1236,
                "mip6.hi" => 6,
                "mip6.att" => 4,
                "mip6.em.data" => "deadbeef01",
                "mip6.timestamp_tmp" => T0.seconds(),
            ],
        },
        Case {
            name: "BE (unrecognized MH type, an option after the Home Address)",
            wire: Wire::Mh {
                src: lma(),
                dst: mag(),
                msg: Message::BindingError(BindingError {
                    status: BindingErrorStatus::UnrecognizedMhType,
                    home_address: v6("2001:db8:1:1::100"),
                    options: vec![MobilityOption::RestartCounter(7)],
                }),
            },
            expect: expect![
                "mip6.mhtype" => 7,
                "mip6.be.status" => 2,
                "mip6.be.haddr" => "2001:db8:1:1::100",
                "mip6.rc" => 7,
            ],
        },
        Case {
            name: "Heartbeat request",
            wire: Wire::Mh {
                src: mag(),
                dst: lma(),
                msg: Message::Heartbeat(Heartbeat { flags: HeartbeatFlags::empty(), sequence: 1, options: vec![] }),
            },
            expect: expect!["mip6.mhtype" => 13, "mip6.hb.u_flag" => 0, "mip6.hb.r_flag" => 0, "mip6.hb.seqnr" => 1],
        },
        Case {
            name: "Heartbeat response (Restart Counter)",
            wire: Wire::Mh {
                src: lma(),
                dst: mag(),
                msg: Message::Heartbeat(Heartbeat {
                    flags: HeartbeatFlags::R,
                    sequence: 1,
                    options: vec![MobilityOption::RestartCounter(3)],
                }),
            },
            expect: expect![
                "mip6.mhtype" => 13, "mip6.hb.u_flag" => 0, "mip6.hb.r_flag" => 1, "mip6.hb.seqnr" => 1,
                "mip6.rc" => 3,
            ],
        },
        Case {
            name: "Heartbeat unsolicited response",
            wire: Wire::Mh {
                src: lma(),
                dst: mag(),
                msg: Message::Heartbeat(Heartbeat {
                    flags: HeartbeatFlags::U | HeartbeatFlags::R,
                    sequence: 0xdead_beef,
                    options: vec![MobilityOption::RestartCounter(0xffff_fffe)],
                }),
            },
            expect: expect![
                "mip6.mhtype" => 13, "mip6.hb.u_flag" => 1, "mip6.hb.r_flag" => 1,
                "mip6.hb.seqnr" => 0xdead_beef_u32, "mip6.rc" => 0xffff_fffe_u32,
            ],
        },
        Case {
            name: "BRI (P, V and G set)",
            wire: Wire::Mh {
                src: lma(),
                dst: mag(),
                msg: Message::BindingRevocation(BindingRevocation {
                    kind: RevocationKind::Indication(RevocationTrigger::InterMagHandoverDifferentAccessType),
                    sequence: 66,
                    flags: RevocationFlags::P | RevocationFlags::V | RevocationFlags::G,
                    options: vec![nai(), hnp("2001:db8:1:1::", 64)],
                }),
            },
            expect: expect![
                "mip6.mhtype" => 16,
                "mip6.bri_br.type" => 1,
                "mip6.bri_r.trigger" => 3,
                "mip6.bri_seqnr" => 66,
                "mip6.bri_ip" => 1, "mip6.bri_iv" => 1, "mip6.bri_ig" => 1, "mip6.bri_res" => "0x0000",
                "mip6.mnid.identifier" => NAI,
                "mip6.nemo.mnp.pfl" => 64,
                "mip6.nemo.mnp.mnp" => "2001:db8:1:1::",
            ],
        },
        Case {
            name: "BRA (status 132, P and G)",
            wire: Wire::Mh {
                src: mag(),
                dst: lma(),
                msg: Message::BindingRevocation(BindingRevocation {
                    kind: RevocationKind::Acknowledgement(RevocationStatus::RevocationFailedMnAttached),
                    sequence: 66,
                    flags: RevocationFlags::P | RevocationFlags::G,
                    options: vec![nai()],
                }),
            },
            expect: expect![
                "mip6.mhtype" => 16,
                "mip6.bri_br.type" => 2,
                "mip6.bri_status" => 132,
                "mip6.bri_seqnr" => 66,
                "mip6.bri_ap" => 1, "mip6.bri_av" => 0, "mip6.bri_ag" => 1, "mip6.bri_res" => "0x0000",
                "mip6.mnid.identifier" => NAI,
            ],
        },
        Case {
            name: "UPN (flow mobility: HNP, MuHo, Flow Identification)",
            wire: Wire::Mh {
                src: lma(),
                dst: mag(),
                msg: Message::UpdateNotification(UpdateNotification {
                    sequence: 7,
                    reason: NotificationReason::FlowMobility,
                    flags: UpnFlags::A,
                    options: vec![
                        nai(),
                        hnp("2001:db8:1:1::", 64),
                        muho(m, "2001:db8:2:1::", 64),
                        MobilityOption::FlowIdentification(flow_identification_v6()),
                    ],
                }),
            },
            // tshark 4.0 does not dissect MH 19: only the raw data, compared in `run`.
            expect: expect!["mip6.mhtype" => 19],
        },
        Case {
            name: "UPA (MN not attached)",
            wire: Wire::Mh {
                src: mag(),
                dst: lma(),
                msg: Message::UpdateNotificationAck(UpdateNotificationAck {
                    sequence: 7,
                    status: UpaStatus::MnNotAttached,
                    options: vec![nai()],
                }),
            },
            expect: expect!["mip6.mhtype" => 20],
        },
        Case {
            name: "MH of an unassigned type (kept byte for byte)",
            wire: Wire::Mh {
                src: mag(),
                dst: lma(),
                msg: Message::Unknown(UnknownMessage { mh_type: 200, data: (1..=10).collect() }),
            },
            expect: expect!["mip6.mhtype" => 200],
        },
        Case {
            name: "RS (from a link-local address, Source Link-layer Address)",
            wire: Wire::Nd {
                src: mn_ll(),
                dst: v6("ff02::2"),
                dst_mac: ALL_ROUTERS_MAC,
                msg: NdMessage::RouterSolicitation(RouterSolicitation {
                    options: vec![NdOption::SourceLinkLayerAddress(LinkLayerAddress::Ethernet(MN_MAC))],
                }),
            },
            expect: expect!["icmpv6.type" => 133, "icmpv6.opt.src_linkaddr" => "02:00:00:00:00:01"],
        },
        Case {
            name: "RS (EUI-64 link-layer address: an option of Length 2)",
            wire: Wire::Nd {
                src: mn_ll(),
                dst: v6("ff02::2"),
                dst_mac: ALL_ROUTERS_MAC,
                msg: NdMessage::RouterSolicitation(RouterSolicitation {
                    options: vec![NdOption::SourceLinkLayerAddress(LinkLayerAddress::Other(
                        [&EUI64[..], &[0; 6]].concat(),
                    ))],
                }),
            },
            expect: expect!["icmpv6.type" => 133, "icmpv6.opt.src_linkaddr_eui64" => "02:00:00:ff:fe:00:00:01"],
        },
        Case {
            name: "RS (from the unspecified address, no option)",
            wire: Wire::Nd {
                src: Ipv6Addr::UNSPECIFIED,
                dst: v6("ff02::2"),
                dst_mac: ALL_ROUTERS_MAC,
                msg: NdMessage::RouterSolicitation(RouterSolicitation { options: vec![] }),
            },
            expect: expect!["icmpv6.type" => 133],
        },
        Case {
            name: "RA (MAG: two prefixes, MTU, weak-host flag bit 55)",
            wire: Wire::Nd {
                src: mag_ll(),
                dst: v6("ff02::1"),
                dst_mac: ALL_NODES_MAC,
                msg: NdMessage::RouterAdvertisement(weak_host_ra),
            },
            expect: expect![
                "icmpv6.type" => 134,
                "icmpv6.nd.ra.cur_hop_limit" => 64,
                "icmpv6.nd.ra.flag" => "0x00",
                "icmpv6.nd.ra.router_lifetime" => 1800,
                "icmpv6.nd.ra.reachable_time" => 0,
                "icmpv6.nd.ra.retrans_timer" => 0,
                "icmpv6.opt.src_linkaddr" => "02:00:00:00:aa:01",
                "icmpv6.opt.mtu" => 1500,
                "icmpv6.opt.prefix.length" => "64|64",
                "icmpv6.opt.prefix.flag.l" => "1|1",
                "icmpv6.opt.prefix.flag.a" => "1|1",
                "icmpv6.opt.prefix.flag.r" => "0|0",
                "icmpv6.opt.prefix.valid_lifetime" => all([u32::MAX, 86_400]),
                "icmpv6.opt.prefix.preferred_lifetime" => all([u32::MAX, 14_400]),
                "icmpv6.opt.prefix" => "2001:db8:1:1::|2001:db8:2:1::",
                // Bit 55 is the last octet of the option; tshark shows the first two only.
                "icmpv6.opt.efo" => "0x0000",
            ],
        },
        Case {
            name: "RA (every header flag, R-flag prefix, RDNSS kept as unknown, expansion bits)",
            wire: Wire::Nd {
                src: mag_ll(),
                dst: v6("ff02::1"),
                dst_mac: ALL_NODES_MAC,
                msg: NdMessage::RouterAdvertisement(busy_ra),
            },
            expect: expect![
                "icmpv6.type" => 134,
                "icmpv6.nd.ra.cur_hop_limit" => 255,
                "icmpv6.nd.ra.flag" => "0xff",
                "icmpv6.nd.ra.flag.m" => bit(true),
                "icmpv6.nd.ra.flag.o" => bit(true),
                "icmpv6.nd.ra.flag.h" => bit(true),
                "icmpv6.nd.ra.flag.prf" => 3,
                "icmpv6.nd.ra.flag.p" => bit(true),
                "icmpv6.nd.ra.flag.rsv" => 3,
                "icmpv6.nd.ra.router_lifetime" => 9000,
                "icmpv6.nd.ra.reachable_time" => 30_000,
                "icmpv6.nd.ra.retrans_timer" => 1000,
                "icmpv6.opt.prefix.length" => 128,
                "icmpv6.opt.prefix.flag.l" => 0,
                "icmpv6.opt.prefix.flag.a" => 0,
                "icmpv6.opt.prefix.flag.r" => 1,
                "icmpv6.opt.prefix.valid_lifetime" => 0,
                "icmpv6.opt.prefix.preferred_lifetime" => 0,
                "icmpv6.opt.prefix" => "2001:db8:1:1::1",
                "icmpv6.opt.rdnss.lifetime" => 600,
                "icmpv6.opt.rdnss" => "2001:db8::53",
                "icmpv6.opt.src_linkaddr" => "02:00:00:00:aa:01",
                "icmpv6.opt.efo" => "0xa181",
            ],
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Encoding into the capture, and what the octets themselves say tshark must show.

/// A frame as written, with what is checked beyond the table.
struct Encoded {
    /// The Ethernet frame.
    frame: Vec<u8>,
    /// Expectations derived from the emitted octets by this file's own walkers.
    derived: Vec<(&'static str, String)>,
    /// Raw octets (hex) of each mobility option tshark does not know, in order.
    unknown_options: Vec<String>,
    /// How many MuHo options the frame carries where tshark dissects options (not in UPN/UPA).
    visible_muho: usize,
}

/// `_ws.expert.severity` of a Note (PI_NOTE); warnings start at 6291456.
const EXPERT_NOTE: u32 = 4_194_304;

/// Mobility option types tshark 4.0 dissects, with the protocol field holding the option's octets.
const OPTION_FIELDS: &[(u8, &str)] = &[
    (0, "mip6.options.pad1"),
    (1, "mip6.options.padn"),
    (8, "mip6.options.mnid"),
    (9, "mip6.options.auth"),
    (10, "mip6.options.mseg_id"),
    (18, "mip6.options.em"),
    (22, "mip6.options.hnp"),
    (23, "mip6.options.hi"),
    (24, "mip6.options.att"),
    (25, "mip6.options.mnlli"),
    (26, "mip6.options.lla"),
    (27, "mip6.options.ts"),
    (28, "mip6.options.rc"),
    (32, "mip6.options.ipv4coa"),
    (36, "mip6.options.ipv4hareq"),
    (37, "mip6.options.ipv4harep"),
    (38, "mip6.options.ipv4dra"),
    (39, "mip6.options.ipv4dsm"),
];

/// Option types tshark 4.0 shows as "Unknown (n)": 43–45, 53, 54 and everything from 56 (its
/// dissector's table ends at 55).
fn tshark_knows_option(option_type: u8) -> bool {
    !matches!(option_type, 43..=45 | 53 | 54 | 56..)
}

/// MH types whose fields and options tshark 4.0 dissects (it knows 0–18).
fn tshark_knows_mh_type(mh_type: u8) -> bool {
    mh_type <= 18
}

fn encode(case: &Case, config: &ParseConfig) -> Encoded {
    let name = case.name;
    match &case.wire {
        Wire::Mh { src, dst, msg } => {
            let bytes = msg.to_vec(src, dst).unwrap_or_else(|e| panic!("{name}: emit: {e}"));
            assert_eq!(
                Message::parse_checked(&bytes, src, dst, config).as_ref(),
                Ok(msg),
                "{name}: our decoder reads back what we emitted"
            );
            assert_eq!(
                internet_checksum(&[&pseudo_header(src, dst, bytes.len(), 135), &bytes]),
                0,
                "{name}: MH checksum {:#06x} does not verify (own sum over the pseudo-header)",
                u16::from_be_bytes([bytes[4], bytes[5]])
            );
            let mut frame = Vec::new();
            PacketBuilder::ethernet2(MAG_MAC, LMA_MAC)
                .ipv6(src.octets(), dst.octets(), 64)
                .write(&mut frame, IpNumber(135), &bytes)
                .expect("Ethernet/IPv6 frame");
            let mut encoded = mh_derived(msg, &bytes, "eth:ethertype:ipv6:mipv6");
            encoded.frame = frame;
            encoded
        }
        Wire::MhOverUdp { src, dst, msg } => {
            // The MH checksum rule over IPv4 transport is unsettled (protocol-facts §13); tshark
            // does not verify it. We sum over the IPv4-mapped addresses.
            let (src6, dst6) = (src.to_ipv6_mapped(), dst.to_ipv6_mapped());
            let bytes = msg.to_vec(&src6, &dst6).unwrap_or_else(|e| panic!("{name}: emit: {e}"));
            assert_eq!(
                Message::parse_checked(&bytes, &src6, &dst6, config).as_ref(),
                Ok(msg),
                "{name}: our decoder reads back what we emitted"
            );
            let mut frame = Vec::new();
            PacketBuilder::ethernet2(MAG_MAC, LMA_MAC)
                .ipv4(src.octets(), dst.octets(), 64)
                .udp(5436, 5436)
                .write(&mut frame, &bytes)
                .expect("Ethernet/IPv4/UDP frame");
            let mut encoded = mh_derived(msg, &bytes, "eth:ethertype:ip:udp:mipv6");
            encoded.frame = frame;
            encoded
        }
        Wire::Nd { src, dst, dst_mac, msg } => {
            let mut icmp = vec![0; msg.buffer_len()];
            let len = msg.emit(&mut icmp, src, dst).unwrap_or_else(|e| panic!("{name}: emit: {e}"));
            assert_eq!(len, icmp.len(), "{name}: emit writes buffer_len() octets");
            assert_eq!(
                NdMessage::parse_checked(&icmp, src, dst).as_ref(),
                Ok(msg),
                "{name}: our decoder reads it back"
            );
            let src_mac = if matches!(msg, NdMessage::RouterSolicitation(_)) { MN_MAC } else { MAG_MAC };
            let mut frame = Vec::new();
            // RFC 4861 §6.1.1, §6.1.2: hop limit 255.
            PacketBuilder::ethernet2(src_mac, *dst_mac)
                .ipv6(src.octets(), dst.octets(), 255)
                .write(&mut frame, IpNumber(58), &icmp)
                .expect("Ethernet/IPv6 frame");
            Encoded { frame, derived: nd_derived(msg, &icmp), unknown_options: Vec::new(), visible_muho: 0 }
        }
    }
}

/// What the Mobility Header octets say tshark must show (`frame` left empty).
fn mh_derived(msg: &Message, bytes: &[u8], protocols: &str) -> Encoded {
    let mh_type = bytes[2];
    let mut derived = vec![
        ("frame.protocols", protocols.to_string()),
        ("mip6.proto", "59".to_string()),
        ("mip6.hlen", (bytes.len() / 8 - 1).to_string()),
        ("mip6.reserved", "0x00".to_string()),
        ("mip6.csum", format!("{:#06x}", u16::from_be_bytes([bytes[4], bytes[5]]))),
    ];
    let mut unknown_options = Vec::new();
    if !tshark_knows_mh_type(mh_type) {
        // Everything after the checksum, shown as raw Message Data, without any expert item.
        derived.push(("mip6.unknown_type_data", hex(&bytes[6..])));
        derived.push(("_ws.expert.message", String::new()));
        return Encoded { frame: Vec::new(), derived, unknown_options, visible_muho: 0 };
    }
    let visible_muho = msg.options().iter().filter(|o| matches!(o, MobilityOption::MuHo { .. })).count();
    let start = if mh_type == 7 { 24 } else { 12 };
    let mut lengths = Vec::new();
    let mut raw: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut unknown_types = Vec::new();
    for (option_type, tlv) in mobility_tlvs(&bytes[start..]) {
        if option_type != 0 {
            // tshark's Length item of an unknown option reads the wrong octet: not compared.
            lengths.push(if tshark_knows_option(option_type) { tlv[1].to_string() } else { "*".to_string() });
        }
        if tshark_knows_option(option_type) {
            let field = OPTION_FIELDS
                .iter()
                .find(|(t, _)| *t == option_type)
                .map(|(_, f)| *f)
                .unwrap_or_else(|| panic!("option type {option_type}: add its tshark field to OPTION_FIELDS"));
            raw.entry(field).or_default().push(hex(tlv));
        } else {
            unknown_types.push(option_type);
            unknown_options.push(hex(tlv));
        }
    }
    derived.push(("mip6.mobility_opt.len", lengths.join("|")));
    derived.push(("mip6.mobility_opt", all(&unknown_types)));
    // One Note per unknown option, and no other expert item.
    derived.push(("_ws.expert.message", all(unknown_types.iter().map(|_| "IE data not dissected yet"))));
    derived.push(("_ws.expert.severity", all(unknown_types.iter().map(|_| EXPERT_NOTE))));
    for (_, field) in OPTION_FIELDS {
        derived.push((field, raw.get(field).map(|v| v.join("|")).unwrap_or_default()));
    }
    // PadN contents: N-2 zero octets each (a PadN of length 0 shows no `mip6.padn` item).
    let padn = raw.get("mip6.options.padn").into_iter().flatten().filter(|t| t.len() > 4).map(|t| t[4..].to_string());
    derived.push(("mip6.padn", all(padn)));
    Encoded { frame: Vec::new(), derived, unknown_options, visible_muho }
}

/// What the ICMPv6 octets say tshark must show.
fn nd_derived(msg: &NdMessage, icmp: &[u8]) -> Vec<(&'static str, String)> {
    let header = if matches!(msg, NdMessage::RouterSolicitation(_)) { 8 } else { 16 };
    let mut types = Vec::new();
    let mut lengths = Vec::new();
    let mut at = header;
    while at + 1 < icmp.len() {
        let length = icmp[at + 1];
        assert_ne!(length, 0, "ND option of length 0 at {at}");
        types.push(icmp[at]);
        lengths.push(length);
        at += usize::from(length) * 8;
    }
    assert_eq!(at, icmp.len(), "ND options end with the message");
    vec![
        ("frame.protocols", "eth:ethertype:ipv6:icmpv6".to_string()),
        ("ipv6.hlim", "255".to_string()),
        ("icmpv6.code", "0".to_string()),
        ("icmpv6.checksum", format!("{:#06x}", u16::from_be_bytes([icmp[2], icmp[3]]))),
        // tshark verifies the ICMPv6 checksum: 1 = good.
        ("icmpv6.checksum.status", "1".to_string()),
        ("icmpv6.opt.type", all(types)),
        ("_ws.expert.message", String::new()),
        ("icmpv6.opt.length", all(lengths)),
    ]
}

/// The mobility option TLVs of `options` (Pad1 included), as (type, whole TLV).
fn mobility_tlvs(options: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < options.len() {
        let option_type = options[at];
        let end = if option_type == 0 { at + 1 } else { at + 2 + usize::from(options[at + 1]) };
        assert!(end <= options.len(), "option {option_type} at {at} runs past the message");
        out.push((option_type, &options[at..end]));
        at = end;
    }
    out
}

/// The IPv6 pseudo-header (RFC 8200 §8.1).
fn pseudo_header(src: &Ipv6Addr, dst: &Ipv6Addr, len: usize, next_header: u8) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&u32::try_from(len).expect("length").to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, next_header]);
    p
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts` (each of even length but
/// the last): 0 when a filled-in checksum verifies.
fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        for pair in part.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

// ---------------------------------------------------------------------------------------------
// Running tshark.

/// The capture in the temporary directory, removed when dropped (also when an assertion fails).
struct TempCapture(PathBuf);

impl TempCapture {
    fn new(test: &str) -> Self {
        Self(std::env::temp_dir().join(format!("pmip6-wire-wireshark-{}-{test}.pcap", std::process::id())))
    }
}

impl Drop for TempCapture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs tshark; a missing tshark fails the test (CI installs it; a skipped check must not look
/// green).
fn tshark(args: &[&str]) -> String {
    let output = Command::new("tshark").args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run tshark ({e}). This test checks the codec against Wireshark and needs it: \
             apt-get install -y tshark"
        )
    });
    assert!(
        output.status.success(),
        "tshark {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("tshark writes UTF-8")
}

/// The `tshark-check` rule: frames tshark finds malformed or with an expert item of severity
/// warning or more, one line each (frame number, messages); empty when all is well.
fn malformed_or_warnings(file: &str) -> String {
    tshark(&[
        "-n",
        "-r",
        file,
        "-Y",
        "_ws.malformed || _ws.expert.severity >= 6291456",
        "-T",
        "fields",
        "-e",
        "frame.number",
        "-e",
        "_ws.expert.message",
    ])
}

fn write_capture(path: &Path, frames: &[Vec<u8>]) {
    let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut writer = PcapWriter::new(file).expect("pcap header");
    for (i, frame) in frames.iter().enumerate() {
        let time = Duration::from_secs(1_700_000_000) + Duration::from_millis(i as u64);
        let len = u32::try_from(frame.len()).expect("frame length");
        writer.write_packet(&PcapPacket::new(time, len, frame)).expect("pcap record");
    }
}

/// One frame's outcome, for the per-run assertions of the tests.
struct Outcome {
    number: usize,
    name: &'static str,
    visible_muho: usize,
    tshark_unknown_types: Vec<u8>,
}

/// Writes every case with MuHo as `muho_type`, decodes the capture with tshark and asserts.
fn run(muho_type: u8, test: &str) -> Vec<Outcome> {
    let version = tshark(&["-v"]);
    assert!(version.contains("TShark"), "unexpected `tshark -v` output: {version}");
    let config = ParseConfig::with_muho_option_type(muho_type).expect("MuHo type");
    let cases = cases(muho_type);
    let encoded: Vec<Encoded> = cases.iter().map(|c| encode(c, &config)).collect();
    let capture = TempCapture::new(test);
    write_capture(&capture.0, &encoded.iter().map(|e| e.frame.clone()).collect::<Vec<_>>());
    let file = capture.0.to_str().expect("UTF-8 temporary path");

    // 1. Exactly the tshark-check rule.
    let bad = malformed_or_warnings(file);
    assert!(bad.trim().is_empty(), "tshark finds malformed packets or expert warnings (frame, message):\n{bad}");

    // 2. Field values, frame by frame. `|` joins repeated fields: dates contain commas.
    let fields: BTreeSet<&str> = cases
        .iter()
        .flat_map(|c| c.expect.iter().map(|(f, _)| *f))
        .chain(encoded.iter().flat_map(|e| e.derived.iter().map(|(f, _)| *f)))
        .collect();
    let mut args =
        vec!["-n", "-r", file, "-T", "fields", "-E", "separator=/t", "-E", "aggregator=|", "-e", "frame.number"];
    for field in &fields {
        args.extend(["-e", field]);
    }
    let table = tshark(&args);
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), cases.len(), "tshark read {} frames, we wrote {}:\n{table}", rows.len(), cases.len());
    let unknown_raw = unknown_options_by_frame(&tshark(&["-n", "-r", file, "-T", "pdml"]));
    assert_eq!(unknown_raw.len(), cases.len(), "PDML packets");

    let mut failures = Vec::new();
    let mut outcomes = Vec::new();
    for (i, ((case, enc), row)) in cases.iter().zip(&encoded).zip(&rows).enumerate() {
        let number = i + 1;
        assert_eq!(row.len(), fields.len() + 1, "frame {number}: columns");
        assert_eq!(row[0], number.to_string(), "frame numbers in order");
        let got: BTreeMap<&str, &str> = fields.iter().copied().zip(row[1..].iter().copied()).collect();
        for (field, want) in case.expect.iter().chain(&enc.derived) {
            if let Err(why) = compare(field, got[field], want) {
                failures.push(format!(
                    "frame {number} ({}), {field}: tshark shows {:?}, we encoded {want:?}{why}",
                    case.name, got[field]
                ));
            }
        }
        if unknown_raw[i] != enc.unknown_options {
            failures.push(format!(
                "frame {number} ({}), raw octets of the options tshark does not know: tshark shows {:?}, we encoded {:?}",
                case.name, unknown_raw[i], enc.unknown_options
            ));
        }
        let tshark_unknown_types = got
            .get("mip6.mobility_opt")
            .map(|v| v.split('|').filter(|t| !t.is_empty()).map(|t| t.parse().expect("option type")).collect())
            .unwrap_or_default();
        outcomes.push(Outcome { number, name: case.name, visible_muho: enc.visible_muho, tshark_unknown_types });
    }
    assert!(failures.is_empty(), "tshark disagrees with what we encoded:\n{}", failures.join("\n"));
    outcomes
}

/// Compares one field: occurrences one by one, `*` matching any; the Wireshark 4.0 quirks listed
/// at the top of this file allowed for.
fn compare(field: &str, got: &str, want: &str) -> Result<(), String> {
    let got_items: Vec<&str> = got.split('|').collect();
    let want_items: Vec<&str> = want.split('|').collect();
    if got_items.len() != want_items.len() {
        return Err(format!(" ({} occurrences, {} expected)", got_items.len(), want_items.len()));
    }
    for (g, w) in got_items.iter().zip(&want_items) {
        let ok = match field {
            _ if *w == "*" => true,
            // Absolute times: compare the seconds.
            "mip6.timestamp_tmp" | "mip6.mseg_id.timestamp" => {
                tshark_date_seconds(g).map(|s| s.to_string()).as_deref() == Some(*w)
            }
            // Data shown without its last two octets (see the top of this file).
            "mip6.em.data" | "mip6.auth.auth_data" => g == w || (w.len() >= 4 && *g == &w[..w.len() - 4]),
            _ => g == w,
        };
        if !ok {
            return Err(String::new());
        }
    }
    Ok(())
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Seconds since 1970 of a date as tshark prints absolute times: `Nov 14, 2023 22:13:20.5… UTC`.
fn tshark_date_seconds(text: &str) -> Option<i64> {
    let mut parts = text.split_whitespace();
    let month_name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as i64 + 1;
    let day: i64 = parts.next()?.trim_end_matches(',').parse().ok()?;
    let year: i64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split('.').next()?.split(':').map(str::parse::<i64>);
    let (h, m, s) = (clock.next()?.ok()?, clock.next()?.ok()?, clock.next()?.ok()?);
    if parts.next()? != "UTC" {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// From tshark's PDML: per packet, the raw octets (hex) of each mobility option it shows as
/// "Unknown (0x..)", in order. These items have no field name, so `-T fields` cannot reach them.
fn unknown_options_by_frame(pdml: &str) -> Vec<Vec<String>> {
    pdml.split("<packet>")
        .skip(1)
        .map(|packet| {
            packet
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("<field name=\"\" show=\"Unknown (0x"))
                .map(|l| {
                    let value = l.split(" value=\"").nth(1).expect("value attribute");
                    value[..value.find('"').expect("closing quote")].to_string()
                })
                .collect()
        })
        .collect()
}

/// The rule must bite: a Home Network Prefix option of Length 2 (RFC 5213 §8.3 says 18) and an
/// option running past the end of the message are what tshark reports.
#[test]
fn the_tshark_check_rule_catches_broken_messages() {
    let (src, dst) = (mag(), lma());
    let mut bad_length = vec![59, 1, 13, 0, 0, 0, 0, 0, 0, 0, 0, 1, 22, 2, 0, 0];
    let mut overrun = vec![59, 1, 13, 0, 0, 0, 0, 0, 0, 0, 0, 1, 22, 18, 0, 64];
    let mut frames = Vec::new();
    for mh in [&mut bad_length, &mut overrun] {
        let sum = internet_checksum(&[&pseudo_header(&src, &dst, mh.len(), 135), mh]);
        mh[4..6].copy_from_slice(&sum.to_be_bytes());
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(MAG_MAC, LMA_MAC)
            .ipv6(src.octets(), dst.octets(), 64)
            .write(&mut frame, IpNumber(135), mh)
            .expect("Ethernet/IPv6 frame");
        frames.push(frame);
    }
    let capture = TempCapture::new("broken");
    write_capture(&capture.0, &frames);
    let bad = malformed_or_warnings(capture.0.to_str().expect("UTF-8 temporary path"));
    let flagged: Vec<&str> = bad.lines().filter_map(|l| l.split('\t').next()).collect();
    assert_eq!(flagged, ["1", "2"], "frames the rule flags:\n{bad}");
}

#[test]
fn own_helpers_agree_with_known_values() {
    // protocol-facts §2.5's date, and the MESG-ID date tshark 4.0 printed for 0xe8a54f00.
    assert_eq!(tshark_date_seconds("Nov 14, 2023 22:13:20.500000000 UTC"), Some(1_700_000_000));
    assert_eq!(tshark_date_seconds("Sep  7, 2093 07:42:56.-2147483648 UTC"), Some(0xe8a5_4f00));
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(internet_checksum(&[&[0x45, 0x00, 0x00, 0x73], &[0xff, 0xff]]), !0x4573);
    assert_eq!(compare("mip6.em.data", "0001", "00010203"), Ok(()));
    assert!(compare("mip6.hi", "1|2", "1").is_err());
    assert_eq!(compare("mip6.mobility_opt.len", "16|12", "16|*"), Ok(()));
}
