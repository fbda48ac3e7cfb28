//! The signalling of the draft's Figure 4 (draft-bernardos-mif-pmip-02 §3, §5.1–5.3), written
//! as a capture and decoded: one mobile node attaches its WLAN interface through MAG1 and its 3G
//! interface through MAG2, learns both prefixes on both links (the MuHo option, §5.2), and the
//! LMA moves one flow to MAG2 (§5.3).
//!
//! | # | from → to | message |
//! |---|---|---|
//! | 1 | MAG1 → LMA | PBU for if1 (802.11), empty MuHo: "tell me the MN's other prefixes" |
//! | 2 | LMA → MAG1 | PBA, HNP pref1, empty MuHo: no other interface yet (§5.2.2) |
//! | 3 | MAG1 → MN | RA with pref1 and the weak-host flag |
//! | 4 | MAG2 → LMA | PBU for if2 (UTRAN), empty MuHo |
//! | 5 | LMA → MAG2 | PBA, HNP pref2, MuHo pref1 |
//! | 6 | LMA → MAG1 | UPN UPDATE-SESSION-PARAMETERS (RFC 7077) with MuHo pref2 (§5.2.3) |
//! | 7 | MAG1 → LMA | UPA success |
//! | 8 | LMA → MAG2 | UPN FLOW-MOBILITY (RFC 7864) with a Flow Identification (RFC 6089): one 6-tuple |
//! | 9 | MAG2 → LMA | UPA success |
//! | 10 | LMA ↔ MAG1 | Heartbeat request and response with Restart Counter (RFC 5847) |
//!
//! Every time is fixed (from [`EPOCH`]) so the capture is the same octets on every run.

use std::io::Write;
use std::net::Ipv6Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use pmip6_wire::flow::{FlowIdentification, FlowStatus, FlowSubOption, flow_binding_action};
use pmip6_wire::nd::{
    DEFAULT_WEAK_HOST_FLAG_BIT, LinkLayerAddress, NdMessage, NdOption, PrefixInformation, RouterAdvertisement,
};
use pmip6_wire::selector::{Ipv6Selector, TrafficSelector};
use pmip6_wire::{
    AccessTechnologyType, BaFlags, BaStatus, BindingAck, BindingUpdate, BuFlags, HandoffIndicator, Heartbeat,
    HeartbeatFlags, Message, MnIdentifier, MobilityOption, NotificationReason, ParseConfig, Prefix, Timestamp,
    UpaStatus, UpdateNotification, UpdateNotificationAck, UpnFlags,
};

use crate::capture::{EthernetAddrs, mh_frame, nd_frame, write_pcap};
use crate::decode::{self, Decoded, OutputFormat};

/// The LMA.
pub const LMA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
/// MAG1, the WLAN access (IEEE 802.11).
pub const MAG1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xaaaa, 0, 0, 0, 0, 1);
/// MAG2, the 3G access (UTRAN).
pub const MAG2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xbbbb, 0, 0, 0, 0, 1);
/// The mobile node's identifier (an NAI).
pub const MN_ID: &str = "mn1@example.net";
/// Home network prefix of if1 (/64).
pub const PREF1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 1, 0, 0, 0, 0);
/// Home network prefix of if2 (/64).
pub const PREF2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, 0);
/// MAC address of the MN's if1 (WLAN).
pub const MN_IF1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// MAC address of the MN's if2 (3G).
pub const MN_IF2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// MAC address of the LMA.
pub const LMA_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xff, 0x01];
/// MAC address of MAG1.
pub const MAG1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
/// MAC address of MAG2.
pub const MAG2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xbb, 0x01];
/// Link-local address of MAG1 on the access link (the RA's source).
pub const MAG1_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// Link-local address of MAG2 on the access link.
pub const MAG2_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
/// The MN's if1 link-local address (modified EUI-64 of [`MN_IF1_MAC`]).
pub const MN_IF1_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 1);
/// The correspondent node of the moved flow.
pub const CN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 1);
/// The MN's address in pref1 that the moved flow is sent to.
pub const MN_PREF1_ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 1, 0, 0, 0, 1);
/// Seconds since the epoch of the first frame (2023-11-14 22:13:20 UTC).
pub const EPOCH: u64 = 1_700_000_000;
/// Binding lifetime of the PBUs and PBAs, in units of 4 s (one hour).
pub const LIFETIME: u16 = 900;
/// The Restart Counter MAG1 reports in its heartbeat response.
pub const RESTART_COUNTER: u32 = 1;

/// One frame of the demo.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// What the frame is, in words.
    pub label: &'static str,
    /// Capture time since the epoch.
    pub time: Duration,
    /// Ethernet addresses.
    pub eth: EthernetAddrs,
    /// IPv6 source.
    pub src: Ipv6Addr,
    /// IPv6 destination.
    pub dst: Ipv6Addr,
    /// The message.
    pub message: Decoded,
}

impl Step {
    /// The Ethernet frame: MH checksum or ICMPv6 checksum filled.
    pub fn frame(&self) -> anyhow::Result<Vec<u8>> {
        match &self.message {
            Decoded::Mobility(m) => mh_frame(self.eth, self.src, self.dst, m),
            Decoded::RouterDiscovery(m) => nd_frame(self.eth, self.src, self.dst, m),
        }
    }
}

fn at(millis: u64) -> Duration {
    Duration::from_secs(EPOCH) + Duration::from_millis(millis)
}

fn eth(src: [u8; 6], dst: [u8; 6]) -> EthernetAddrs {
    EthernetAddrs { src, dst }
}

fn mn_id() -> MobilityOption {
    MobilityOption::MnIdentifier(MnIdentifier::nai(MN_ID))
}

fn muho(prefix: Prefix) -> MobilityOption {
    MobilityOption::MuHo { option_type: ParseConfig::DEFAULT_MUHO_OPTION_TYPE, prefix }
}

fn pbu(att: AccessTechnologyType, mac: [u8; 6], time: Duration) -> Message {
    Message::BindingUpdate(BindingUpdate {
        sequence: 1,
        flags: BuFlags::A | BuFlags::P,
        lifetime: LIFETIME,
        options: vec![
            mn_id(),
            // RFC 5213 §6.9.1.1: ALL_ZERO asks the LMA to assign a prefix.
            MobilityOption::HomeNetworkPrefix(Prefix::ALL_ZERO),
            MobilityOption::HandoffIndicator(HandoffIndicator::NewInterface),
            MobilityOption::AccessTechnologyType(att),
            MobilityOption::MnLinkLayerIdentifier(mac.to_vec()),
            MobilityOption::LinkLocalAddress(Ipv6Addr::UNSPECIFIED),
            MobilityOption::Timestamp(Timestamp::from_unix(time)),
            // Draft §5.2.1: an empty MuHo asks for the prefixes of the MN's other interfaces.
            muho(Prefix::ALL_ZERO),
        ],
    })
}

fn pba(
    att: AccessTechnologyType,
    mac: [u8; 6],
    link_local: Ipv6Addr,
    hnp: Ipv6Addr,
    pbu_time: Duration,
    others: Prefix,
) -> Message {
    Message::BindingAck(BindingAck {
        status: BaStatus::Accepted,
        flags: BaFlags::P,
        sequence: 1,
        lifetime: LIFETIME,
        options: vec![
            mn_id(),
            MobilityOption::HomeNetworkPrefix(Prefix::new(hnp, 64)),
            MobilityOption::HandoffIndicator(HandoffIndicator::NewInterface),
            MobilityOption::AccessTechnologyType(att),
            MobilityOption::MnLinkLayerIdentifier(mac.to_vec()),
            MobilityOption::LinkLocalAddress(link_local),
            MobilityOption::Timestamp(Timestamp::from_unix(pbu_time)),
            // Draft §5.2.2: one MuHo per prefix of the MN's other interfaces, or an empty one.
            muho(others),
        ],
    })
}

fn upa(sequence: u16) -> Message {
    Message::UpdateNotificationAck(UpdateNotificationAck {
        sequence,
        status: UpaStatus::Success,
        options: vec![mn_id()],
    })
}

/// The flow of the draft's flow table (§5.3.1) that the LMA moves to MAG2.
pub fn moved_flow() -> FlowIdentification {
    FlowIdentification {
        fid: 1,
        priority: 1,
        status: FlowStatus::Success,
        suboptions: vec![
            FlowSubOption::TrafficSelector(TrafficSelector::Ipv6(Ipv6Selector::exact_six_tuple(
                CN,
                MN_PREF1_ADDR,
                5004,
                40000,
                0x12345,
                17,
            ))),
            FlowSubOption::FlowBindingAction(flow_binding_action::MOVE),
            FlowSubOption::TargetCareOfAddress(MAG2.into()),
        ],
    }
}

fn router_advertisement() -> NdMessage {
    let mut ra = RouterAdvertisement {
        cur_hop_limit: 64,
        router_lifetime: 1800,
        options: vec![
            NdOption::SourceLinkLayerAddress(LinkLayerAddress::Ethernet(MAG1_MAC)),
            NdOption::Mtu(1500),
            NdOption::PrefixInformation(PrefixInformation {
                prefix_len: 64,
                on_link: true,
                autonomous: true,
                router_address: false,
                valid_lifetime: u32::from(LIFETIME) * 4,
                preferred_lifetime: u32::from(LIFETIME) * 4,
                prefix: PREF1,
            }),
        ],
        ..RouterAdvertisement::default()
    };
    // Draft §4.1: tell the MN to use the weak host model.
    ra.set_flag_bit(DEFAULT_WEAK_HOST_FLAG_BIT);
    NdMessage::RouterAdvertisement(ra)
}

/// The demo's frames, in order.
pub fn steps() -> Vec<Step> {
    use AccessTechnologyType::{Ieee80211, Utran};
    let pref1 = Prefix::new(PREF1, 64);
    let pref2 = Prefix::new(PREF2, 64);
    let mh =
        |label, time, eth, src, dst, message| Step { label, time, eth, src, dst, message: Decoded::Mobility(message) };
    vec![
        mh(
            "1 MAG1→LMA PBU, if1 over WLAN, empty MuHo",
            at(0),
            eth(MAG1_MAC, LMA_MAC),
            MAG1,
            LMA,
            pbu(Ieee80211, MN_IF1_MAC, at(0)),
        ),
        mh(
            "2 LMA→MAG1 PBA, pref1, empty MuHo (no other interface)",
            at(1),
            eth(LMA_MAC, MAG1_MAC),
            LMA,
            MAG1,
            pba(Ieee80211, MN_IF1_MAC, MAG1_LINK_LOCAL, PREF1, at(0), Prefix::ALL_ZERO),
        ),
        Step {
            label: "3 MAG1→MN RA, pref1, weak-host flag",
            time: at(2),
            eth: eth(MAG1_MAC, MN_IF1_MAC),
            src: MAG1_LINK_LOCAL,
            dst: MN_IF1_LINK_LOCAL,
            message: Decoded::RouterDiscovery(router_advertisement()),
        },
        mh(
            "4 MAG2→LMA PBU, if2 over 3G, empty MuHo",
            at(5_000),
            eth(MAG2_MAC, LMA_MAC),
            MAG2,
            LMA,
            pbu(Utran, MN_IF2_MAC, at(5_000)),
        ),
        mh(
            "5 LMA→MAG2 PBA, pref2, MuHo pref1",
            at(5_001),
            eth(LMA_MAC, MAG2_MAC),
            LMA,
            MAG2,
            pba(Utran, MN_IF2_MAC, MAG2_LINK_LOCAL, PREF2, at(5_000), pref1),
        ),
        mh(
            "6 LMA→MAG1 UPN update-session-parameters, MuHo pref2",
            at(5_002),
            eth(LMA_MAC, MAG1_MAC),
            LMA,
            MAG1,
            Message::UpdateNotification(UpdateNotification {
                sequence: 1,
                reason: NotificationReason::UpdateSessionParameters,
                flags: UpnFlags::A,
                options: vec![mn_id(), MobilityOption::HomeNetworkPrefix(pref1), muho(pref2)],
            }),
        ),
        mh("7 MAG1→LMA UPA success", at(5_003), eth(MAG1_MAC, LMA_MAC), MAG1, LMA, upa(1)),
        mh(
            "8 LMA→MAG2 UPN flow-mobility, flow CN:5004 → pref1::1:40000 to MAG2",
            at(10_000),
            eth(LMA_MAC, MAG2_MAC),
            LMA,
            MAG2,
            Message::UpdateNotification(UpdateNotification {
                sequence: 2,
                reason: NotificationReason::FlowMobility,
                flags: UpnFlags::A,
                options: vec![
                    mn_id(),
                    MobilityOption::HomeNetworkPrefix(pref1),
                    MobilityOption::FlowIdentification(moved_flow()),
                ],
            }),
        ),
        mh("9 MAG2→LMA UPA success", at(10_001), eth(MAG2_MAC, LMA_MAC), MAG2, LMA, upa(2)),
        mh(
            "10 LMA→MAG1 heartbeat request",
            at(30_000),
            eth(LMA_MAC, MAG1_MAC),
            LMA,
            MAG1,
            Message::Heartbeat(Heartbeat { flags: HeartbeatFlags::empty(), sequence: 1, options: vec![] }),
        ),
        mh(
            "10 MAG1→LMA heartbeat response, restart counter",
            at(30_001),
            eth(MAG1_MAC, LMA_MAC),
            MAG1,
            LMA,
            Message::Heartbeat(Heartbeat {
                flags: HeartbeatFlags::R,
                sequence: 1,
                options: vec![MobilityOption::RestartCounter(RESTART_COUNTER)],
            }),
        ),
    ]
}

/// Writes the demo capture to `path`; returns the steps written.
pub fn write_capture(path: &Path) -> anyhow::Result<Vec<Step>> {
    let steps = steps();
    let frames = steps
        .iter()
        .map(|s| Ok((s.time, s.frame().with_context(|| format!("frame {}", s.label))?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    write_pcap(path, &frames)?;
    Ok(steps)
}

/// What `tshark -r` made of a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TsharkView {
    /// Its one-line summaries.
    Summaries(String),
    /// tshark is not on PATH.
    NotInstalled,
    /// tshark ran and failed.
    Failed(String),
}

/// Runs `tshark -n -r path` (no name resolution, so the output does not depend on the host).
pub fn tshark_view(path: &Path) -> TsharkView {
    match Command::new("tshark").arg("-n").arg("-r").arg(path).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => TsharkView::NotInstalled,
        Err(e) => TsharkView::Failed(e.to_string()),
        Ok(output) if output.status.success() => {
            TsharkView::Summaries(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        Ok(output) => {
            TsharkView::Failed(format!("{}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim()))
        }
    }
}

/// Writes the capture to `pcap`, then decodes it into `out` with the decoder of `pmip6 decode`.
/// The legend and Wireshark's view go to `info` (the same stream as `out` for text; standard
/// error for JSON, so that `out` stays one JSON object per line).
pub fn run(pcap: &Path, format: OutputFormat, out: &mut dyn Write, info: &mut dyn Write) -> anyhow::Result<()> {
    let steps = write_capture(pcap)?;
    writeln!(info, "Figure 4 of draft-bernardos-mif-pmip-02: {} frames written to {}", steps.len(), pcap.display())?;
    writeln!(info, "  LMA {LMA}   MAG1 {MAG1} (WLAN)   MAG2 {MAG2} (3G)   MN {MN_ID}")?;
    for (i, step) in steps.iter().enumerate() {
        writeln!(info, "  frame {:>2}: step {}", i + 1, step.label)?;
    }
    writeln!(info, "\n== pmip6 decode {}", pcap.display())?;
    info.flush()?;
    decode::run(pcap, &ParseConfig::default(), format, out)?;
    out.flush()?;
    writeln!(info, "\n== Wireshark's view: tshark -n -r {}", pcap.display())?;
    match tshark_view(pcap) {
        TsharkView::Summaries(text) => write!(info, "{text}")?,
        TsharkView::NotInstalled => {
            writeln!(info, "tshark is not installed; to compare with Wireshark: apt-get install -y tshark")?
        }
        TsharkView::Failed(why) => writeln!(info, "tshark failed: {why}")?,
    }
    Ok(())
}
