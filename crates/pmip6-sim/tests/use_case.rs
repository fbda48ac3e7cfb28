//! The draft's use case, end to end over the simulated network: draft-bernardos-mif-pmip-02
//! §3 (Figure 2: one MN, if1 on MAG1 over WLAN, if2 on MAG2 over 3G, one prefix per interface),
//! §5.1 (Figure 4: the routing tables the test bed ends up with) and §5.2.1–§5.2.3 (the MAG's
//! empty MuHo, the LMA's MuHo answer, the notification of the previous MAG).
//!
//! Everything crosses the wire codec; every step is checked against the domain invariants as
//! well as against the draft.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::time::Duration;

use pmip6_engine::lma::{BindingState as LmaState, LmaEvent, NotifyMode};
use pmip6_engine::mag::{BindingState, MagEvent};
use pmip6_engine::{Intent, InterfaceId, Now, Resource};
use pmip6_sim::{AttachmentPoint, CapturePoint, Domain, LMAA, MagId, MnId, Node, PacketRecord, proxy_coa};
use pmip6_wire::{
    AccessTechnologyType as Att, BaStatus, Message, MnIdentifier, MobilityOption, ParseConfig, Prefix, RevocationKind,
    RevocationStatus, UpaStatus,
};

const MAG1: MagId = MagId(0);
const MAG2: MagId = MagId(1);
const ACCESS: InterfaceId = InterfaceId(1);
const MN: MnId = MnId(0);
const IF1: usize = 0;
const IF2: usize = 1;
const SETTLE: Duration = Duration::from_secs(30);

fn muho_type() -> u8 {
    ParseConfig::default().muho_option_type()
}

fn hnps(options: &[MobilityOption]) -> Vec<Prefix> {
    options
        .iter()
        .filter_map(|o| match o {
            MobilityOption::HomeNetworkPrefix(p) => Some(*p),
            _ => None,
        })
        .collect()
}

fn muhos(options: &[MobilityOption]) -> Vec<Prefix> {
    options
        .iter()
        .filter_map(|o| match o {
            MobilityOption::MuHo { option_type, prefix } if *option_type == muho_type() => Some(*prefix),
            _ => None,
        })
        .collect()
}

fn domain(notify: NotifyMode) -> Domain {
    let wlan = AttachmentPoint { mag: MAG1, interface: ACCESS };
    let utran = AttachmentPoint { mag: MAG2, interface: ACCESS };
    Domain::builder(2010)
        .lma_config(move |c| c.notify = notify)
        .mag(&[(ACCESS, Att::Ieee80211)])
        .mag(&[(ACCESS, Att::Utran)])
        .mobile_node("mn@example.net", true, &[wlan, utran])
        .build()
}

fn assert_sound(d: &Domain) {
    let broken = d.check_invariants();
    assert!(broken.is_empty(), "invariants broken at {:?}:\n{}", d.now(), broken.join("\n"));
}

/// Packets sent since `since` from `from` to `to` carrying a Mobility Header message.
fn sent(d: &Domain, since: usize, from: Node, to: Node) -> Vec<&PacketRecord> {
    d.packets()[since..].iter().filter(|p| p.from == from && p.to == Some(to) && p.message().is_some()).collect()
}

/// The one registration PBU `mag` sent since `since`, and the PBA answering it.
fn registration(d: &Domain, since: usize, mag: MagId) -> (Vec<MobilityOption>, Vec<MobilityOption>) {
    let pbus: Vec<_> = sent(d, since, Node::Mag(mag), Node::Lma)
        .into_iter()
        .filter_map(|p| match p.message() {
            Some(Message::BindingUpdate(bu)) if bu.lifetime > 0 => Some(bu.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(pbus.len(), 1, "one registration PBU from MAG {}: {pbus:?}", mag.0);
    let pbas: Vec<_> = sent(d, since, Node::Lma, Node::Mag(mag))
        .into_iter()
        .filter_map(|p| match p.message() {
            Some(Message::BindingAck(ba)) => Some(ba.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(pbas.len(), 1, "one PBA to MAG {}: {pbas:?}", mag.0);
    assert_eq!(pbas[0].sequence, pbus[0].sequence);
    assert_eq!(pbas[0].status, BaStatus::Accepted);
    (pbus[0].options.clone(), pbas[0].options.clone())
}

/// The notifications (UPN or BRI, by mode) the LMA sent to `mag` since `since`: their options,
/// and the time each was delivered.
fn notifications(d: &Domain, since: usize, mag: MagId, notify: NotifyMode) -> Vec<(Vec<MobilityOption>, Now)> {
    sent(d, since, Node::Lma, Node::Mag(mag))
        .into_iter()
        .filter_map(|p| {
            let options = match (p.message(), notify) {
                (Some(Message::UpdateNotification(upn)), NotifyMode::UpdateNotification) => upn.options.clone(),
                (Some(Message::BindingRevocation(br)), NotifyMode::Revocation)
                    if matches!(br.kind, RevocationKind::Indication(_)) =>
                {
                    br.options.clone()
                }
                _ => return None,
            };
            Some((options, *p.deliveries.first().expect("delivered on a lossless network")))
        })
        .collect()
}

/// Whether `mag` answered a notification with success since `since`.
fn acknowledged(d: &Domain, since: usize, mag: MagId) -> bool {
    sent(d, since, Node::Mag(mag), Node::Lma).iter().any(|p| match p.message() {
        Some(Message::UpdateNotificationAck(upa)) => upa.status == UpaStatus::Success,
        Some(Message::BindingRevocation(br)) => br.kind == RevocationKind::Acknowledgement(RevocationStatus::Success),
        _ => false,
    })
}

fn set(resources: &[Resource]) -> BTreeSet<Resource> {
    resources.iter().cloned().collect()
}

fn tunnel(local: Ipv6Addr, peer: Ipv6Addr) -> Resource {
    Resource::Tunnel { local, peer }
}

fn on_link(prefix: Prefix) -> Resource {
    Resource::PrefixToAccess { prefix, interface: ACCESS, next_hop: None }
}

fn via(prefix: Prefix, next_hop: Ipv6Addr) -> Resource {
    Resource::PrefixToAccess { prefix, interface: ACCESS, next_hop: Some(next_hop) }
}

fn uplink(prefix: Prefix) -> Resource {
    Resource::SourceRouteToTunnel { prefix, interface: ACCESS, peer: LMAA }
}

fn to_mag(prefix: Prefix, mag: MagId) -> Resource {
    Resource::PrefixToTunnel { prefix, peer: proxy_coa(mag) }
}

/// The prefixes every RA received on `interface` advertised, one list per RA.
fn advertised(d: &Domain, interface: usize) -> Vec<Vec<Prefix>> {
    d.mobile_node(MN).interface(interface).advertisements.iter().map(|ra| ra.advertised()).collect()
}

/// When the last intent touching `prefix` was applied at `mag`.
fn last_change(d: &Domain, mag: MagId, prefix: Prefix) -> Option<Now> {
    d.mag_data_plane(mag)
        .history()
        .iter()
        .rev()
        .find(|(_, i)| match i {
            Intent::Add(r) | Intent::Remove(r) => matches!(
                r,
                Resource::PrefixToAccess { prefix: p, .. } | Resource::SourceRouteToTunnel { prefix: p, .. } if *p == prefix
            ),
        })
        .map(|(t, _)| *t)
}

fn use_case(notify: NotifyMode) {
    let mut d = domain(notify);
    let mn_id = MnIdentifier::nai("mn@example.net");
    let if1_ll = d.mobile_node(MN).interface(IF1).link_local;
    let if2_ll = d.mobile_node(MN).interface(IF2).link_local;
    let mag1 = proxy_coa(MAG1);
    let mag2 = proxy_coa(MAG2);

    // ---- if1 attaches to MAG1 (WLAN) ------------------------------------------------------
    d.attach(MN, IF1);
    assert!(d.run_until_idle(SETTLE), "signalling settles");
    assert_sound(&d);
    let (pbu, pba) = registration(&d, 0, MAG1);
    // draft §5.2.1: the MAG adds an empty MuHo option for a multihoming MN.
    assert_eq!(muhos(&pbu), vec![Prefix::ALL_ZERO], "PBU from MAG1 carries one empty MuHo");
    assert_eq!(hnps(&pbu), vec![Prefix::ALL_ZERO], "and asks for a prefix");
    // RFC 5213 §5.3.2: one prefix assigned; draft §5.2.2: no other session, an empty MuHo.
    let pba_hnps = hnps(&pba);
    assert_eq!(pba_hnps.len(), 1, "one HNP in {pba:?}");
    let pref1 = pba_hnps[0];
    assert_eq!(muhos(&pba), vec![Prefix::ALL_ZERO], "PBA to MAG1 carries an empty MuHo");
    // The MN's RA on if1 carries pref1 only.
    assert!(!advertised(&d, IF1).is_empty(), "if1 got an RA");
    assert!(advertised(&d, IF1).iter().all(|p| *p == vec![pref1]), "RAs on if1: {:?}", advertised(&d, IF1));
    assert_eq!(d.mobile_node(MN).interface(IF1).valid_prefixes(d.now()), vec![pref1]);
    assert!(d.mobile_node(MN).interface(IF1).router_at(d.now()).is_some());
    assert_eq!(d.lma_data_plane().resources(), &set(&[tunnel(LMAA, mag1), to_mag(pref1, MAG1)]));
    assert_eq!(d.mag_data_plane(MAG1).resources(), &set(&[tunnel(mag1, LMAA), on_link(pref1), uplink(pref1)]));
    assert!(d.mag_data_plane(MAG2).is_empty());

    // ---- if2 attaches to MAG2 (3G) --------------------------------------------------------
    let mark = d.packets().len();
    d.attach(MN, IF2);
    assert!(d.run_until_idle(SETTLE), "signalling settles");
    assert_sound(&d);
    let (pbu, pba) = registration(&d, mark, MAG2);
    assert_eq!(muhos(&pbu), vec![Prefix::ALL_ZERO], "PBU from MAG2 carries one empty MuHo");
    let pba_hnps = hnps(&pba);
    assert_eq!(pba_hnps.len(), 1, "one HNP in {pba:?}");
    let pref2 = pba_hnps[0];
    assert_ne!(pref1, pref2, "one prefix per interface (draft §3)");
    // draft §5.2.2: one MuHo option per prefix of the MN's other interfaces.
    assert_eq!(muhos(&pba), vec![pref1], "PBA to MAG2 carries MuHo pref1");
    // Figure 4, MAG2's routing table: pref2 directly connected, pref1 via the MN on if2; both
    // source-routed into the tunnel (draft §3: either source over either interface).
    assert_eq!(
        d.mag_data_plane(MAG2).resources(),
        &set(&[tunnel(mag2, LMAA), on_link(pref2), uplink(pref2), via(pref1, if2_ll), uplink(pref1)])
    );
    // draft §5.2.3: the LMA tells the previous MAG of the new prefix, and it routes it to the
    // MN over if1.
    let told = notifications(&d, mark, MAG1, notify);
    assert_eq!(told.len(), 1, "one notification to MAG1: {told:?}");
    assert_eq!(hnps(&told[0].0), vec![pref1], "it names MAG1's session by its prefix");
    assert_eq!(muhos(&told[0].0), vec![pref2], "and carries pref2 as MuHo");
    assert!(acknowledged(&d, mark, MAG1), "MAG1 acknowledged it");
    assert_eq!(
        d.mag_data_plane(MAG1).resources(),
        &set(&[tunnel(mag1, LMAA), on_link(pref1), uplink(pref1), via(pref2, if1_ll), uplink(pref2)])
    );
    // Figure 2's binding cache: MN:if1, pref1, MAG1 / :if2, pref2, MAG2, grouped by MN-ID.
    let sessions: Vec<_> = d.lma().binding_cache().sessions(&mn_id).collect();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0].prefixes(), &[pref1]);
    assert_eq!(sessions[0].route_peer(), Some(mag1));
    assert_eq!(sessions[1].prefixes(), &[pref2]);
    assert_eq!(sessions[1].route_peer(), Some(mag2));
    assert_eq!(sessions[0].siblings().map(|s| s.id()).collect::<Vec<_>>(), vec![sessions[1].id()]);
    assert_eq!(
        d.lma_data_plane().resources(),
        &set(&[tunnel(LMAA, mag1), tunnel(LMAA, mag2), to_mag(pref1, MAG1), to_mag(pref2, MAG2)])
    );
    // draft §4.3: the RA on if2 carries only pref2; nothing on if1 ever advertised pref2.
    assert!(!advertised(&d, IF2).is_empty(), "if2 got an RA");
    assert!(advertised(&d, IF2).iter().all(|p| *p == vec![pref2]), "RAs on if2: {:?}", advertised(&d, IF2));
    assert!(advertised(&d, IF1).iter().all(|p| *p == vec![pref1]), "RAs on if1: {:?}", advertised(&d, IF1));
    assert_eq!(d.mobile_node(MN).interface(IF2).valid_prefixes(d.now()), vec![pref2]);
    let converged = d.check_converged();
    assert!(converged.is_empty(), "{}", converged.join("\n"));

    // ---- if1 detaches ----------------------------------------------------------------------
    let mark = d.packets().len();
    d.detach(MN, IF1);
    assert!(d.run_until_idle(SETTLE), "signalling settles");
    assert_sound(&d);
    // RFC 5213 §5.3.5: routes and the tunnel to MAG1 go at once, the entry stays de-registered.
    assert_eq!(d.lma_data_plane().resources(), &set(&[tunnel(LMAA, mag2), to_mag(pref2, MAG2)]));
    let sessions: Vec<_> = d.lma().binding_cache().sessions(&mn_id).collect();
    assert_eq!(sessions.iter().map(|s| s.state()).collect::<Vec<_>>(), vec![LmaState::Deregistered, LmaState::Active]);
    assert!(d.mag_data_plane(MAG1).is_empty(), "MAG1 keeps nothing: {:?}", d.mag_data_plane(MAG1).resources());
    // draft §5.2.3: MAG2 hears that pref1 is gone (an empty MuHo) and drops its route.
    let told = notifications(&d, mark, MAG2, notify);
    assert_eq!(told.len(), 1, "one notification to MAG2: {told:?}");
    assert_eq!(hnps(&told[0].0), vec![pref2]);
    assert_eq!(muhos(&told[0].0), vec![Prefix::ALL_ZERO], "an empty MuHo: no other prefix left");
    assert!(acknowledged(&d, mark, MAG2), "MAG2 acknowledged it");
    assert_eq!(d.mag_data_plane(MAG2).resources(), &set(&[tunnel(mag2, LMAA), on_link(pref2), uplink(pref2)]));
    let removed_at = last_change(&d, MAG2, pref1).expect("MAG2 changed its pref1 routes");
    assert!(removed_at >= told[0].1, "MAG2 removed pref1 ({removed_at:?}) after the notification ({:?})", told[0].1);
    assert!(d.mobile_node(MN).interface(IF1).valid_prefixes(d.now()).is_empty());
    let converged = d.check_converged();
    assert!(converged.is_empty(), "{}", converged.join("\n"));

    // ---- if2 detaches; MinDelayBeforeBCEDelete passes ------------------------------------------
    d.detach(MN, IF2);
    assert!(d.run_until_idle(SETTLE), "signalling settles");
    assert_sound(&d);
    assert!(d.lma_data_plane().is_empty() && d.mag_data_plane(MAG2).is_empty());
    let delay = d.lma_config().min_delay_before_bce_delete;
    d.run_for(delay + Duration::from_secs(1));
    assert!(d.lma().binding_cache().is_empty(), "both entries deleted after MinDelayBeforeBCEDelete");
    assert!(d.lma_events().any(|(_, e)| matches!(e, LmaEvent::BindingDeleted { .. })));
    // Heartbeats and RA timers stop with the last session: nothing is left armed.
    assert!(d.run_until_quiet(Duration::from_secs(600)), "every timer ran out");
    let left = d.check_empty();
    assert!(left.is_empty(), "left behind:\n{}", left.join("\n"));
    assert_sound(&d);
    for mag in [MAG1, MAG2] {
        assert!(d.mag_events(mag).any(|(_, e)| matches!(e, MagEvent::Deregistered { .. })));
        assert!(d.mag(mag).binding_update_list().iter().all(|e| e.state != BindingState::Bound));
    }

    // The whole exchange as a capture: every packet once at the senders, every delivery at the
    // receivers (nothing was lost or duplicated).
    let sender = pmip6::capture::Capture::from_bytes(d.pcap(CapturePoint::Sender).expect("capture")).expect("pcap");
    let receiver = pmip6::capture::Capture::from_bytes(d.pcap(CapturePoint::Receiver).expect("capture")).expect("pcap");
    let frames = |c: &pmip6::capture::Capture| c.frames().filter(Result::is_ok).count();
    assert_eq!(frames(&sender), d.packets().len());
    assert_eq!(frames(&receiver), d.packets().iter().map(|p| p.deliveries.len()).sum::<usize>());
}

#[test]
fn draft_3_and_5_2_use_case_with_update_notifications() {
    use_case(NotifyMode::UpdateNotification);
}

#[test]
fn draft_3_and_5_2_use_case_with_revocation_as_notification() {
    use_case(NotifyMode::Revocation);
}

/// The use case on a network that loses, duplicates and reorders core packets: whatever the
/// network did, once it heals and the MN solicits again, every node agrees (retransmissions,
/// and the refreshes whose PBAs carry MuHo, repair what was lost).
#[test]
fn draft_3_use_case_converges_after_a_lossy_network_heals() {
    let mut lost = 0;
    let mut retransmitted = 0;
    for seed in 0..20 {
        let wlan = AttachmentPoint { mag: MAG1, interface: ACCESS };
        let utran = AttachmentPoint { mag: MAG2, interface: ACCESS };
        let mut d = Domain::builder(seed)
            .mag(&[(ACCESS, Att::Ieee80211)])
            .mag(&[(ACCESS, Att::Utran)])
            .mobile_node("mn@example.net", true, &[wlan, utran])
            .build();
        d.set_loss(0.3);
        d.set_duplication(0.2);
        d.set_reordering(0.3, Duration::from_millis(30));
        d.attach(MN, IF1);
        d.run_for(Duration::from_millis(500));
        d.attach(MN, IF2);
        d.run_for(Duration::from_secs(60));
        d.detach(MN, IF1);
        d.run_for(Duration::from_secs(5));
        d.attach(MN, IF1);
        d.run_for(Duration::from_secs(60));
        assert_sound(&d);
        lost += d.packets().iter().filter(|p| p.dropped == Some(pmip6_sim::Drop::Lost)).count();
        retransmitted += d
            .events()
            .iter()
            .filter(|(_, e)| matches!(e, pmip6_sim::NodeEvent::Mag(_, MagEvent::PbuSent { transmission: 2.., .. })))
            .count();
        d.set_loss(0.0);
        d.set_duplication(0.0);
        d.set_reordering(0.0, Duration::ZERO);
        // A registration may have given up (every transmission lost): the MN solicits again.
        for i in [IF1, IF2] {
            d.send_rs(MN, i);
        }
        d.run_for(Duration::from_secs(3700));
        assert_sound(&d);
        let converged = d.check_converged();
        assert!(converged.is_empty(), "seed {seed}:\n{}", converged.join("\n"));
    }
    assert!(lost > 100 && retransmitted > 20, "the network was lossy: {lost} lost, {retransmitted} retransmitted");
}
