//! Flow mobility end to end: draft-bernardos-mif-pmip-02 §3 (one MN, if1 on MAG1 over WLAN,
//! if2 on MAG2 over 3G), §4.2 (the LMA's flow routing table beside the binding cache) and §5.3
//! (flows by 6-tuple), over the simulated network. Every step is checked against the domain
//! invariants, which include the LMA's steering entries and their tunnels.

use std::net::Ipv6Addr;
use std::time::Duration;

use pmip6_engine::flow::{OperatorRule, Route, Rule, Scope, Steering, TargetSpec, Verdict};
use pmip6_engine::{Intent, InterfaceId, Resource};
use pmip6_sim::{AttachmentPoint, Domain, MagId, MnId, proxy_coa};
use pmip6_wire::selector::{FieldRange, Ipv6Selector, TrafficSelector};
use pmip6_wire::{AccessTechnologyType as Att, MnIdentifier, Prefix};

const MAG1: MagId = MagId(0);
const MAG2: MagId = MagId(1);
const ACCESS: InterfaceId = InterfaceId(1);
const MN: MnId = MnId(0);
const IF1: usize = 0;
const IF2: usize = 1;
const SETTLE: Duration = Duration::from_secs(30);
const CN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xcccc, 0, 0, 0, 0, 1);

fn domain() -> Domain {
    let wlan = AttachmentPoint { mag: MAG1, interface: ACCESS };
    let utran = AttachmentPoint { mag: MAG2, interface: ACCESS };
    Domain::builder(2010)
        .mag(&[(ACCESS, Att::Ieee80211)])
        .mag(&[(ACCESS, Att::Utran)])
        .mobile_node("mn@example.net", true, &[wlan, utran])
        .build()
}

fn assert_sound(d: &Domain) {
    let broken = d.check_invariants();
    assert!(broken.is_empty(), "invariants broken at {:?}:\n{}", d.now(), broken.join("\n"));
}

fn udp6(dst: Ipv6Addr, sport: u16, dport: u16) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
    p.extend_from_slice(&CN.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 8, 0, 0]);
    p
}

fn host(prefix: Prefix) -> Ipv6Addr {
    let s = prefix.addr.segments();
    Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 1)
}

/// The prefix of the MN's session at `mag`.
fn prefix_at(d: &Domain, mag: MagId) -> Prefix {
    let mn = MnIdentifier::nai("mn@example.net");
    d.lma()
        .binding_cache()
        .sessions(&mn)
        .find(|b| b.attachments().any(|a| a.proxy_coa() == proxy_coa(mag)))
        .map(|b| b.prefixes()[0])
        .expect("a session at the MAG")
}

fn packet(d: &mut Domain, bytes: &[u8]) -> (u16, Route) {
    match d.with_lma(|lma, now| lma.handle_packet(now, bytes)).expect("classified") {
        Verdict::Flow { fid, route, .. } => (fid, route),
        other => panic!("expected a flow, got {other:?}"),
    }
}

fn route_of(d: &Domain, fid: u16) -> Option<Route> {
    let mn = MnIdentifier::nai("mn@example.net");
    d.lma().flow_steering().and_then(|f| f.flow(&mn, fid)).map(|f| f.route)
}

#[test]
fn draft_3_flows_follow_policy_move_and_fail_over_and_nothing_is_left_behind() {
    let mut d = domain();
    let mn = MnIdentifier::nai("mn@example.net");
    d.attach(MN, IF1);
    d.run_for(SETTLE);
    d.attach(MN, IF2);
    d.run_for(SETTLE);
    assert_sound(&d);
    let (pref1, pref2) = (prefix_at(&d, MAG1), prefix_at(&d, MAG2));

    // Policy (draft §4.4, LMA-driven): UDP to port 5004 over 3G.
    let selector = TrafficSelector::Ipv6(Ipv6Selector {
        dst_port: Some(FieldRange::exact(5004)),
        next_header: Some(FieldRange::exact(17)),
        ..Ipv6Selector::default()
    });
    let rule = OperatorRule {
        rule: Rule::new(selector, TargetSpec::AccessTechnology(Att::Utran)),
        scope: Scope::AllMobileNodes,
        locked: false,
    };
    d.with_lma(|lma, now| lma.set_operator_rules(now, vec![rule])).unwrap();

    // Two flows to pref1::1 leave through different MAGs.
    let (video, r) = packet(&mut d, &udp6(host(pref1), 40000, 5004));
    assert_eq!(r, Route::Tunnel(proxy_coa(MAG2)));
    let (web, r) = packet(&mut d, &udp6(host(pref1), 40001, 80));
    assert_eq!(r, Route::PrefixRoute, "pref1's own route: MAG1");
    // And one to pref2::1, on its per-prefix route through MAG2.
    let (other, r) = packet(&mut d, &udp6(host(pref2), 40002, 80));
    assert_eq!(r, Route::PrefixRoute);
    d.run_for(SETTLE);
    assert_sound(&d);

    // A move switches one of them: the pref2 flow over WLAN (MAG1 learned pref2 by MuHo).
    let moved = d.with_lma(|lma, now| lma.move_flow(now, &mn, other, TargetSpec::Mag(proxy_coa(MAG1))));
    assert_eq!(moved, Ok(Route::Tunnel(proxy_coa(MAG1))));
    assert_eq!(route_of(&d, video), Some(Route::Tunnel(proxy_coa(MAG2))));
    assert_eq!(route_of(&d, web), Some(Route::PrefixRoute));
    d.run_for(SETTLE);
    assert_sound(&d);

    // if1 leaves: pref1 goes with its session, and the flow steered into MAG1 moves back to
    // if2 at the instant the LMA learns of it, before MAG1's tunnel goes.
    let mark = d.lma_data_plane().history().len();
    d.detach(MN, IF1);
    d.run_for(SETTLE);
    assert_sound(&d);
    assert_eq!(route_of(&d, other), Some(Route::PrefixRoute), "failover to if2");
    assert_eq!(route_of(&d, video), None, "pref1 left with if1");
    let history = &d.lma_data_plane().history()[mark..];
    let at = |pred: &dyn Fn(&Intent) -> bool| history.iter().find(|(_, i)| pred(i)).map(|(t, _)| *t);
    let route_gone = at(&|i| matches!(i, Intent::Remove(Resource::PrefixToTunnel { prefix, .. }) if *prefix == pref1));
    let steered_back = at(&|i| {
        matches!(i, Intent::Add(Resource::Steering(Steering::Flow { route: Route::PrefixRoute, key }))
            if key.dst == host(pref2))
    });
    assert!(route_gone.is_some());
    assert_eq!(steered_back, route_gone, "the flow moves within the step that removes if1");
    assert!(
        !d.lma_data_plane().resources().iter().any(
            |r| matches!(r, Resource::Steering(Steering::Flow { route: Route::Tunnel(p), .. }) if *p == proxy_coa(MAG1))
        ),
        "nothing steered into MAG1"
    );

    // if2 leaves too: nothing is left behind, steering included.
    d.detach(MN, IF2);
    d.run_for(Duration::from_secs(600));
    assert_sound(&d);
    let left = d.check_empty();
    assert!(left.is_empty(), "left behind:\n{}", left.join("\n"));
}

/// A domain whose LMA has the IPv4 home network 10.64.0.0/24; `ipv4_at` says which MAGs ask for
/// home addresses, `shared` selects the draft's virtual interface (§5.4).
fn ipv4_domain(seed: u64, ipv4_at: &'static [MagId], shared: bool) -> Domain {
    use pmip6_engine::lma::Ipv4HomeNetwork;
    use std::net::Ipv4Addr;
    let wlan = AttachmentPoint { mag: MAG1, interface: ACCESS };
    let utran = AttachmentPoint { mag: MAG2, interface: ACCESS };
    Domain::builder(seed)
        .lma_config(move |c| {
            c.virtual_interface = shared;
            c.ipv4_home_network = Some(Ipv4HomeNetwork {
                network: Ipv4Addr::new(10, 64, 0, 0),
                prefix_len: 24,
                default_router: Ipv4Addr::new(10, 64, 0, 1),
            });
        })
        .mag(&[(ACCESS, Att::Ieee80211)])
        .mag(&[(ACCESS, Att::Utran)])
        .mag_config(move |mag, c| {
            for mn in &mut c.mobile_nodes {
                mn.ipv4 = ipv4_at.contains(&mag);
            }
        })
        .mobile_node("mn@example.net", true, &[wlan, utran])
        .build()
}

fn udp4(home: std::net::Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 10];
    p.extend_from_slice(&home.octets());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 8, 0, 0]);
    p
}

fn ipv4_video_rule(d: &mut Domain) {
    use pmip6_wire::selector::Ipv4Selector;
    let video = TrafficSelector::Ipv4(Ipv4Selector {
        dst_port: Some(FieldRange::exact(5004)),
        protocol: Some(FieldRange::exact(17)),
        ..Ipv4Selector::default()
    });
    let rule = OperatorRule {
        rule: Rule::new(video, TargetSpec::AccessTechnology(Att::Utran)),
        scope: Scope::AllMobileNodes,
        locked: false,
    };
    d.with_lma(|lma, now| lma.set_operator_rules(now, vec![rule])).unwrap();
}

fn ipv4_resource(r: &Resource) -> bool {
    matches!(
        r,
        Resource::Ipv4HomeAddressToTunnel { .. }
            | Resource::Ipv4HomeAddressToAccess { .. }
            | Resource::Ipv4SourceRouteToTunnel { .. }
            | Resource::Ipv4DefaultRouterOnAccess { .. }
    )
}

/// RFC 5844 end to end, one session per interface: MAG1 asks for an IPv4 home address for
/// if1's session, the LMA grants one and routes it into MAG1's tunnel, MAG1 routes it on the
/// access link and source-routes its uplink. An IPv4 rule would send the video flow over 3G,
/// but MAG2 does not route if1's home address (no signalling can teach it), so the flow stays
/// on its base route, on a fallback. When if1 leaves, nothing of the address is left.
#[test]
fn rfc5844_ipv4_home_address_end_to_end_and_flows_only_where_it_is_routed() {
    let mut d = ipv4_domain(5844, &[MAG1], false);
    d.attach(MN, IF1);
    d.run_for(SETTLE);
    d.attach(MN, IF2);
    d.run_for(SETTLE);
    assert_sound(&d);
    let mn = MnIdentifier::nai("mn@example.net");
    let home = d.lma().binding_cache().sessions(&mn).find_map(|b| b.ipv4_home_address()).expect("a home address");
    assert_eq!(home, std::net::Ipv4Addr::new(10, 64, 0, 2));
    assert!(
        d.lma_data_plane()
            .resources()
            .contains(&Resource::Ipv4HomeAddressToTunnel { address: home, peer: proxy_coa(MAG1) })
    );
    let at_mag1 = d.mag_data_plane(MAG1).resources();
    assert!(at_mag1.contains(&Resource::Ipv4HomeAddressToAccess { address: home, interface: ACCESS }));
    assert!(at_mag1.contains(&Resource::Ipv4SourceRouteToTunnel {
        address: home,
        interface: ACCESS,
        peer: pmip6_sim::LMAA
    }));
    assert!(!d.mag_data_plane(MAG2).resources().iter().any(ipv4_resource), "MAG2 did not ask");

    ipv4_video_rule(&mut d);
    let (video, r) = packet(&mut d, &udp4(home, 40000, 5004));
    assert_eq!(r, Route::PrefixRoute, "MAG2 cannot deliver to if1's home address");
    let summary = d.lma().flow_steering().and_then(|f| f.flow(&mn, video)).expect("the flow");
    assert!(!summary.preferred, "on a fallback");
    d.run_for(SETTLE);
    assert_sound(&d);

    d.detach(MN, IF1);
    d.run_for(SETTLE);
    assert_sound(&d);
    assert!(!d.lma_data_plane().resources().iter().any(ipv4_resource));
    assert!(!d.mag_data_plane(MAG1).resources().iter().any(ipv4_resource));
    assert!(d.lma().binding_cache().sessions(&mn).all(|b| b.ipv4_home_address().is_none()));
}

/// With the draft's virtual interface (§5.4) both MAGs route the entry's one IPv4 home address,
/// so an IPv4 rule moves the video flow to if2 while another IPv4 flow stays; when if2 leaves,
/// the video flow fails over to if1 in the same step.
#[test]
fn rfc5844_ipv4_flow_moves_to_if2_with_a_shared_home_address_and_fails_over() {
    let mut d = ipv4_domain(5845, &[MAG1, MAG2], true);
    d.attach(MN, IF1);
    d.run_for(SETTLE);
    d.attach(MN, IF2);
    d.run_for(SETTLE);
    assert_sound(&d);
    let mn = MnIdentifier::nai("mn@example.net");
    let home = d.lma().binding_cache().sessions(&mn).find_map(|b| b.ipv4_home_address()).expect("a home address");
    for mag in [MAG1, MAG2] {
        assert!(
            d.mag_data_plane(mag)
                .resources()
                .contains(&Resource::Ipv4HomeAddressToAccess { address: home, interface: ACCESS }),
            "{mag:?} routes the shared home address"
        );
    }
    ipv4_video_rule(&mut d);
    let (video, r) = packet(&mut d, &udp4(home, 40000, 5004));
    assert_eq!(r, Route::Tunnel(proxy_coa(MAG2)));
    let (web, r) = packet(&mut d, &udp4(home, 40001, 80));
    assert_eq!(r, Route::PrefixRoute);
    d.run_for(SETTLE);
    assert_sound(&d);

    d.detach(MN, IF2);
    d.run_for(SETTLE);
    assert_sound(&d);
    assert_eq!(route_of(&d, video), Some(Route::PrefixRoute), "failover to if1");
    assert_eq!(route_of(&d, web), Some(Route::PrefixRoute));
    assert!(
        d.lma_data_plane()
            .resources()
            .contains(&Resource::Ipv4HomeAddressToTunnel { address: home, peer: proxy_coa(MAG1) })
    );
    assert!(!d.mag_data_plane(MAG2).resources().iter().any(ipv4_resource));
}
