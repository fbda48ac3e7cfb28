//! The MAG engine driven through its public API in virtual time, against a scripted LMA and a
//! fake data plane that fails the test on a double add or on the removal of something absent.
//! Each test names the rule it checks.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use pmip6_engine::mag::{
    ALL_NODES, AccessInterface, BindingKey, BindingState, Mag, MagConfig, MagEvent, MobileNodeEntry, PbuKind,
    eui64_link_local,
};
use pmip6_engine::{Intent, InterfaceId, Now, Received, Resource, Transmit};
use pmip6_wire::nd::{DEFAULT_WEAK_HOST_FLAG_BIT, LinkLayerAddress, NdOption, RouterAdvertisement, RouterSolicitation};
use pmip6_wire::{
    AccessTechnologyType, BaFlags, BaStatus, BindingAck, BindingRevocation, BindingUpdate, BuFlags, HandoffIndicator,
    Heartbeat, HeartbeatFlags, Ipv4HoaReplyStatus, Message, MnIdentifier, MobilityOption, NotificationReason,
    ParseConfig, Prefix, RevocationFlags, RevocationKind, RevocationStatus, RevocationTrigger, Timestamp, UpaStatus,
    UpdateNotification, UpnFlags,
};

// ---------------------------------------------------------------------------------------------
// Fixture.

const T0: u64 = 1_700_000_000;
const WLAN: InterfaceId = InterfaceId(1);
const UTRAN: InterfaceId = InterfaceId(2);
const MAC1: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const MAC2: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const MAC3: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];
const UNKNOWN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
const OUR_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x01];

fn at(seconds: u64) -> Now {
    Duration::from_secs(T0 + seconds)
}

fn at_ms(ms: u64) -> Now {
    Duration::from_millis(T0 * 1000 + ms)
}

fn addr(s: &str) -> Ipv6Addr {
    s.parse().expect("test address")
}

fn proxy_coa() -> Ipv6Addr {
    addr("2001:db8:ffff::2")
}

fn lmaa() -> Ipv6Addr {
    addr("2001:db8:ffff::1")
}

fn p(s: &str) -> Prefix {
    Prefix::new(addr(s), 64)
}

fn mn1() -> MnIdentifier {
    MnIdentifier::nai("mn1@example.net")
}

fn mn2() -> MnIdentifier {
    MnIdentifier::nai("mn2@example.net")
}

fn mn_ll(mac: [u8; 6]) -> Ipv6Addr {
    eui64_link_local(mac)
}

fn config() -> MagConfig {
    let mut c = MagConfig::new(proxy_coa(), lmaa());
    let mut wlan = AccessInterface::new(WLAN, AccessTechnologyType::Ieee80211, addr("fe80::1"));
    wlan.mac = Some(OUR_MAC);
    c.interfaces = vec![wlan, AccessInterface::new(UTRAN, AccessTechnologyType::Utran, addr("fe80::2"))];
    c.mobile_nodes = vec![
        MobileNodeEntry { mn_id: mn1(), macs: vec![MAC1, MAC2], multihoming: true, ipv4: false },
        MobileNodeEntry { mn_id: mn2(), macs: vec![MAC3], multihoming: false, ipv4: false },
    ];
    c.initial_sequence = 1000;
    c.restart_counter = 42;
    c.router_advertisement.weak_host_flag = true;
    c.router_advertisement.retrans_timer_ms = 100;
    c
}

/// Fails on a double add or the removal of something absent.
#[derive(Default)]
struct FakeDataPlane {
    installed: BTreeSet<Resource>,
}

impl FakeDataPlane {
    fn apply(&mut self, intent: &Intent) {
        match intent {
            Intent::Add(r) => assert!(self.installed.insert(r.clone()), "double add of {r:?}"),
            Intent::Remove(r) => assert!(self.installed.remove(r), "removal of absent {r:?}"),
        }
    }
}

struct Harness {
    mag: Mag,
    dp: FakeDataPlane,
    now: Now,
    sent: Vec<(Now, Transmit)>,
    intents: Vec<Intent>,
    events: Vec<MagEvent>,
}

impl Harness {
    fn new(config: MagConfig) -> Self {
        let mut h = Self {
            mag: Mag::new(config),
            dp: FakeDataPlane::default(),
            now: at(0),
            sent: Vec::new(),
            intents: Vec::new(),
            events: Vec::new(),
        };
        h.drain();
        h
    }

    fn drain(&mut self) {
        while let Some(t) = self.mag.poll_transmit() {
            self.sent.push((self.now, t));
        }
        while let Some(i) = self.mag.poll_intent() {
            self.dp.apply(&i);
            self.intents.push(i);
        }
        while let Some(e) = self.mag.poll_event() {
            self.events.push(e);
        }
        // The engine's view of the data plane is the fake's.
        let engine: BTreeSet<Resource> = self.mag.installed_resources().cloned().collect();
        assert_eq!(engine, self.dp.installed, "engine and data plane disagree");
    }

    /// Fires every timer up to `t`, then sets the clock to `t`.
    fn run_until(&mut self, t: Now) {
        while let Some(deadline) = self.mag.poll_timeout() {
            if deadline > t {
                break;
            }
            assert!(deadline >= self.now, "deadline in the past: {deadline:?} < {:?}", self.now);
            self.now = deadline;
            self.mag.handle_timeout(deadline);
            self.drain();
        }
        self.now = t;
    }

    fn rs(&mut self, interface: InterfaceId, src: Ipv6Addr, mac: [u8; 6]) {
        self.rs_with(interface, src, Some(mac), &RouterSolicitation::default());
    }

    fn rs_with(&mut self, interface: InterfaceId, src: Ipv6Addr, mac: Option<[u8; 6]>, rs: &RouterSolicitation) {
        let now = self.now;
        self.mag.handle_router_solicitation(now, interface, src, mac, rs);
        self.drain();
    }

    fn receive(&mut self, message: Message) {
        self.receive_from(lmaa(), message);
    }

    fn receive_from(&mut self, src: Ipv6Addr, message: Message) {
        let now = self.now;
        self.mag.handle_message(now, Received { src, dst: proxy_coa(), message });
        self.drain();
    }

    fn detach(&mut self, interface: InterfaceId, mac: [u8; 6]) {
        let now = self.now;
        self.mag.handle_detach(now, interface, mac);
        self.drain();
    }

    fn take_sent(&mut self) -> Vec<Transmit> {
        self.sent.drain(..).map(|(_, t)| t).collect()
    }

    fn take_intents(&mut self) -> Vec<Intent> {
        std::mem::take(&mut self.intents)
    }

    fn take_events(&mut self) -> Vec<MagEvent> {
        std::mem::take(&mut self.events)
    }

    /// The messages sent to the LMA since the last take, checking their addresses.
    fn take_mobility(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        for t in self.take_sent() {
            match t {
                Transmit::Mobility { src, dst, message } => {
                    assert_eq!((src, dst), (proxy_coa(), lmaa()));
                    out.push(message);
                }
                other => panic!("expected only Mobility Header messages, got {other:?}"),
            }
        }
        out
    }

    fn take_pbus(&mut self) -> Vec<BindingUpdate> {
        self.take_mobility()
            .into_iter()
            .map(|m| match m {
                Message::BindingUpdate(bu) => bu,
                other => panic!("expected a PBU, got {other}"),
            })
            .collect()
    }

    fn take_one_pbu(&mut self) -> BindingUpdate {
        let mut pbus = self.take_pbus();
        assert_eq!(pbus.len(), 1, "expected one PBU: {pbus:?}");
        pbus.remove(0)
    }

    /// Takes the one PBU sent since the last take, leaving everything else.
    fn extract_one_pbu(&mut self) -> BindingUpdate {
        let mut pbus = Vec::new();
        self.sent.retain(|(_, t)| match t {
            Transmit::Mobility { message: Message::BindingUpdate(bu), .. } => {
                pbus.push(bu.clone());
                false
            }
            _ => true,
        });
        assert_eq!(pbus.len(), 1, "expected one PBU: {pbus:?}");
        pbus.remove(0)
    }

    /// RAs sent since the last take: (interface, src, dst, ra).
    fn take_ras(&mut self) -> Vec<(InterfaceId, Ipv6Addr, Ipv6Addr, RouterAdvertisement)> {
        let mut out = Vec::new();
        for t in self.take_sent() {
            match t {
                Transmit::RouterAdvertisement { interface, src, dst, ra } => out.push((interface, src, dst, ra)),
                other => panic!("expected only RAs, got {other:?}"),
            }
        }
        out
    }

    /// Answers `pbu` as the LMA would.
    fn answer(&mut self, pbu: &BindingUpdate, status: BaStatus, lifetime: u16, options: Vec<MobilityOption>) {
        let mut all = vec![MobilityOption::MnIdentifier(mn_id_of(pbu))];
        all.extend(options);
        self.receive(Message::BindingAck(BindingAck {
            status,
            flags: BaFlags::P,
            sequence: pbu.sequence,
            lifetime,
            options: all,
        }));
    }

    /// RS on `interface` from `mac`, PBA accepting with `hnp` and `muho`: the session is bound.
    fn bind(&mut self, interface: InterfaceId, mac: [u8; 6], hnp: Prefix, muho: &[Prefix]) -> BindingUpdate {
        self.rs(interface, mn_ll(mac), mac);
        let pbu = self.extract_one_pbu();
        let mut options = vec![MobilityOption::HomeNetworkPrefix(hnp)];
        options.extend(muho.iter().map(|&prefix| muho_option(prefix)));
        self.answer(&pbu, BaStatus::Accepted, pbu.lifetime, options);
        pbu
    }
}

fn muho_option(prefix: Prefix) -> MobilityOption {
    MobilityOption::MuHo { option_type: ParseConfig::default().muho_option_type(), prefix }
}

fn mn_id_of(bu: &BindingUpdate) -> MnIdentifier {
    bu.options
        .iter()
        .find_map(|o| match o {
            MobilityOption::MnIdentifier(id) => Some(id.clone()),
            _ => None,
        })
        .expect("PBU carries an MN-ID")
}

fn hnps_of(bu: &BindingUpdate) -> Vec<Prefix> {
    bu.options
        .iter()
        .filter_map(|o| match o {
            MobilityOption::HomeNetworkPrefix(p) => Some(*p),
            _ => None,
        })
        .collect()
}

fn handoff_of(bu: &BindingUpdate) -> Option<HandoffIndicator> {
    bu.options.iter().find_map(|o| match o {
        MobilityOption::HandoffIndicator(hi) => Some(*hi),
        _ => None,
    })
}

fn timestamp_of(bu: &BindingUpdate) -> Option<Timestamp> {
    bu.options.iter().find_map(|o| match o {
        MobilityOption::Timestamp(t) => Some(*t),
        _ => None,
    })
}

fn own_routes(prefix: Prefix, interface: InterfaceId) -> [Resource; 2] {
    [
        Resource::PrefixToAccess { prefix, interface, next_hop: None },
        Resource::SourceRouteToTunnel { prefix, interface, peer: lmaa() },
    ]
}

fn muho_routes(prefix: Prefix, interface: InterfaceId, next_hop: Ipv6Addr) -> [Resource; 2] {
    [
        Resource::PrefixToAccess { prefix, interface, next_hop: Some(next_hop) },
        Resource::SourceRouteToTunnel { prefix, interface, peer: lmaa() },
    ]
}

fn tunnel() -> Resource {
    Resource::Tunnel { local: proxy_coa(), peer: lmaa() }
}

fn adds(intents: &[Intent]) -> BTreeSet<Resource> {
    intents.iter().filter_map(|i| if let Intent::Add(r) = i { Some(r.clone()) } else { None }).collect()
}

fn removes(intents: &[Intent]) -> BTreeSet<Resource> {
    intents.iter().filter_map(|i| if let Intent::Remove(r) = i { Some(r.clone()) } else { None }).collect()
}

fn pio_prefixes(ra: &RouterAdvertisement) -> Vec<(Prefix, u32, u32)> {
    ra.prefixes().map(|pi| (Prefix::new(pi.prefix, pi.prefix_len), pi.valid_lifetime, pi.preferred_lifetime)).collect()
}

// ---------------------------------------------------------------------------------------------
// Attachment and the PBU.

/// RFC 5213 §6.9.1.1, §6.9.1.5; draft §5.2.1: an RS from a known MAC sends a PBU with A and P,
/// MN-ID, HNP ALL_ZERO, an empty MuHo for a multihoming MN (none otherwise), HI 1, ATT,
/// MN-LL-ID = the MAC, LLA ALL_ZERO, Timestamp = now; nothing is advertised or routed yet.
#[test]
fn rs_from_known_mac_sends_pbu_and_advertises_nothing() {
    struct Case {
        name: &'static str,
        interface: InterfaceId,
        mac: [u8; 6],
        mn_id: MnIdentifier,
        att: AccessTechnologyType,
        multihoming: bool,
    }
    let cases = [
        Case {
            name: "multihoming MN on WLAN",
            interface: WLAN,
            mac: MAC1,
            mn_id: mn1(),
            att: AccessTechnologyType::Ieee80211,
            multihoming: true,
        },
        Case {
            name: "multihoming MN's other MAC on UTRAN",
            interface: UTRAN,
            mac: MAC2,
            mn_id: mn1(),
            att: AccessTechnologyType::Utran,
            multihoming: true,
        },
        Case {
            name: "single-homed MN",
            interface: WLAN,
            mac: MAC3,
            mn_id: mn2(),
            att: AccessTechnologyType::Ieee80211,
            multihoming: false,
        },
    ];
    for case in cases {
        let mut h = Harness::new(config());
        h.now = at_ms(5_250);
        h.rs(case.interface, mn_ll(case.mac), case.mac);
        let pbu = h.take_one_pbu();
        assert_eq!(pbu.flags, BuFlags::A | BuFlags::P, "{}", case.name);
        assert_eq!(pbu.sequence, 1000, "{}: injected initial sequence", case.name);
        assert_eq!(pbu.lifetime, 900, "{}: 3600 s in units of 4 s", case.name);
        let mut expected =
            vec![MobilityOption::MnIdentifier(case.mn_id.clone()), MobilityOption::HomeNetworkPrefix(Prefix::ALL_ZERO)];
        if case.multihoming {
            expected.push(MobilityOption::MuHo { option_type: 18, prefix: Prefix::ALL_ZERO });
        }
        expected.extend([
            MobilityOption::HandoffIndicator(HandoffIndicator::NewInterface),
            MobilityOption::AccessTechnologyType(case.att),
            MobilityOption::MnLinkLayerIdentifier(case.mac.to_vec()),
            MobilityOption::LinkLocalAddress(Ipv6Addr::UNSPECIFIED),
            MobilityOption::Timestamp(Timestamp::from_unix(at_ms(5_250))),
        ]);
        assert_eq!(pbu.options, expected, "{}", case.name);
        // The PBU survives the codec.
        let bytes = Message::BindingUpdate(pbu.clone()).to_vec(&proxy_coa(), &lmaa()).expect("emit");
        assert_eq!(
            Message::parse(&bytes, &ParseConfig::default()).expect("parse"),
            Message::BindingUpdate(pbu),
            "{}",
            case.name
        );
        assert!(h.take_sent().is_empty(), "{}: nothing else sent", case.name);
        assert!(h.dp.installed.is_empty(), "{}: nothing routed", case.name);
        let key = BindingKey { mn_id: case.mn_id, interface: case.interface, mac: case.mac };
        let entry = h.mag.binding_update_list().get(&key).expect("BUL entry");
        assert_eq!(entry.state, BindingState::Registering, "{}", case.name);
        // A second RS before the PBA: still nothing advertised (RFC 5213 §6.9.1.1).
        h.rs(case.interface, mn_ll(case.mac), case.mac);
        assert!(h.take_sent().is_empty(), "{}: no RA before the PBA", case.name);
        assert!(h.take_events().contains(&MagEvent::AttachWhileRegistering { key }), "{}", case.name);
    }
}

/// draft §5.2.1: the MuHo option type comes from the configuration.
#[test]
fn muho_type_follows_the_configuration() {
    let mut c = config();
    c.parse_config = ParseConfig::with_muho_option_type(200).expect("unassigned type");
    let mut h = Harness::new(c);
    h.rs(WLAN, mn_ll(MAC1), MAC1);
    let pbu = h.take_one_pbu();
    assert!(pbu.options.contains(&MobilityOption::MuHo { option_type: 200, prefix: Prefix::ALL_ZERO }));
}

/// draft §5.2.1, RFC 5213 §6.5: what cannot be identified is not served — only an event.
#[test]
fn unidentified_attachments_are_not_served() {
    type Input = fn(&mut Harness);
    type Expected = fn(&MagEvent) -> bool;
    let cases: [(&str, Input, Expected); 4] = [
        (
            "RS from an unknown MAC",
            |h| h.rs(WLAN, mn_ll(UNKNOWN_MAC), UNKNOWN_MAC),
            |e| matches!(e, MagEvent::UnknownMobileNode { interface: WLAN, mac: UNKNOWN_MAC }),
        ),
        (
            "L2 attach of an unknown MAC",
            |h| {
                let now = h.now;
                h.mag.handle_attach(now, UTRAN, UNKNOWN_MAC);
                h.drain();
            },
            |e| matches!(e, MagEvent::UnknownMobileNode { interface: UTRAN, mac: UNKNOWN_MAC }),
        ),
        (
            "RS on an interface that is not an access link",
            |h| h.rs(InterfaceId(9), mn_ll(MAC1), MAC1),
            |e| matches!(e, MagEvent::UnknownInterface { interface: InterfaceId(9) }),
        ),
        (
            "RS from :: with neither a frame MAC nor a Source Link-layer Address option",
            |h| h.rs_with(WLAN, Ipv6Addr::UNSPECIFIED, None, &RouterSolicitation::default()),
            |e| matches!(e, MagEvent::NoLinkLayerAddress { interface: WLAN, .. }),
        ),
    ];
    for (name, input, expected) in cases {
        let mut h = Harness::new(config());
        input(&mut h);
        assert!(h.take_sent().is_empty(), "{name}: nothing sent");
        assert!(h.take_intents().is_empty(), "{name}: no intent");
        assert!(h.mag.binding_update_list().is_empty(), "{name}: no session");
        let events = h.take_events();
        assert_eq!(events.len(), 1, "{name}: {events:?}");
        assert!(expected(&events[0]), "{name}: {events:?}");
        assert_eq!(h.mag.poll_timeout(), None, "{name}: no timer");
    }
}

/// The Source Link-layer Address option identifies the MN when the frame MAC is unavailable;
/// with serving of unknown MACs enabled, the MN-ID is derived from the MAC.
#[test]
fn mac_from_the_rs_option_and_derived_mn_ids() {
    let mut h = Harness::new(config());
    let rs = RouterSolicitation { options: vec![NdOption::SourceLinkLayerAddress(LinkLayerAddress::Ethernet(MAC3))] };
    h.rs_with(WLAN, mn_ll(MAC3), None, &rs);
    assert_eq!(mn_id_of(&h.take_one_pbu()), mn2());

    let mut c = config();
    c.serve_unknown_mobile_nodes = true;
    c.unknown_mobile_node_realm = "guests.example.net".into();
    let mut h = Harness::new(c);
    h.rs(WLAN, mn_ll(UNKNOWN_MAC), UNKNOWN_MAC);
    let pbu = h.take_one_pbu();
    assert_eq!(mn_id_of(&pbu), MnIdentifier::nai("020000000099@guests.example.net"));
    assert!(!pbu.options.iter().any(|o| matches!(o, MobilityOption::MuHo { .. })), "unknown MNs are single-homed");
}

/// draft §5.2.1 (L2 attach path), RFC 5213 §5.4.1, §8.4: the L2 event registers too, with
/// the interface's or the event's Handoff Indicator; without an RS the MN's link-local address
/// is the modified EUI-64 of its MAC (the MuHo next hop) and RAs go to all-nodes.
#[test]
fn l2_attach_registers_with_the_handoff_hint() {
    let mut c = config();
    c.interfaces[1].attach_handoff = HandoffIndicator::StateUnknown;
    // (event, interface, mac, expected Handoff Indicator)
    type Attach = fn(&mut Mag, Now);
    let cases: [(&str, Attach, InterfaceId, [u8; 6], HandoffIndicator); 3] = [
        ("plain attach", |m, now| m.handle_attach(now, WLAN, MAC1), WLAN, MAC1, HandoffIndicator::NewInterface),
        (
            "attach with the L2 handoff hint",
            |m, now| m.handle_attach_with_handoff(now, WLAN, MAC1, HandoffIndicator::BetweenMags),
            WLAN,
            MAC1,
            HandoffIndicator::BetweenMags,
        ),
        (
            "interface configured for HI 4",
            |m, now| m.handle_attach(now, UTRAN, MAC2),
            UTRAN,
            MAC2,
            HandoffIndicator::StateUnknown,
        ),
    ];
    for (name, attach, interface, mac, hi) in cases {
        let mut h = Harness::new(c.clone());
        let now = h.now;
        attach(&mut h.mag, now);
        h.drain();
        let pbu = h.take_one_pbu();
        assert_eq!(handoff_of(&pbu), Some(hi), "{name}");
        h.answer(
            &pbu,
            BaStatus::Accepted,
            900,
            vec![MobilityOption::HomeNetworkPrefix(p("2001:db8:1::")), muho_option(p("2001:db8:2::"))],
        );
        let ras = h.take_ras();
        assert_eq!(ras.len(), 1, "{name}");
        assert_eq!(ras[0].2, ALL_NODES, "{name}: the MN's address is not known yet");
        assert!(h.dp.installed.contains(&muho_routes(p("2001:db8:2::"), interface, mn_ll(mac))[0]), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// The PBA.

/// RFC 5213 §6.9.1.2, §6.7, §6.10.5; draft §4.1, §4.3, Figure 4: an accepting PBA brings an RA
/// with only the MN's own prefix (L, A, lifetimes within the binding), from the PBA's
/// link-local address, with MTU, SLLA, Retrans Timer and the weak-host bit; routes for the own
/// prefix on-link and for the MuHo prefix via the MN's link-local address.
#[test]
fn accepted_pba_advertises_own_prefixes_and_routes_all() {
    let mut h = Harness::new(config());
    h.now = at(10);
    let rs_src = addr("fe80::1234");
    h.rs(WLAN, rs_src, MAC1);
    let pbu = h.take_one_pbu();
    h.now = at(11);
    h.answer(
        &pbu,
        BaStatus::Accepted,
        900,
        vec![
            MobilityOption::HomeNetworkPrefix(p("2001:db8:1::")),
            muho_option(p("2001:db8:2::")),
            MobilityOption::LinkLocalAddress(addr("fe80::99")),
        ],
    );
    let ras = h.take_ras();
    assert_eq!(ras.len(), 1);
    let (interface, src, dst, ra) = &ras[0];
    assert_eq!((*interface, *src, *dst), (WLAN, addr("fe80::99"), rs_src));
    assert_eq!(pio_prefixes(ra), [(p("2001:db8:1::"), 3600, 3600)], "MuHo prefix not advertised");
    assert!(ra.prefixes().all(|pi| pi.on_link && pi.autonomous));
    assert_eq!(ra.router_lifetime, 1800);
    assert_eq!(ra.mtu(), Some(1460), "tunnel MTU: 1500 - 40");
    assert_eq!(ra.source_link_layer_address(), Some(&LinkLayerAddress::Ethernet(OUR_MAC)));
    assert_eq!(ra.retrans_timer, 100);
    assert_eq!(ra.cur_hop_limit, 64);
    assert!(ra.flag_bit(DEFAULT_WEAK_HOST_FLAG_BIT), "weak-host bit for a multihoming MN");

    let mut expected: BTreeSet<Resource> = [tunnel()].into();
    expected.extend(own_routes(p("2001:db8:1::"), WLAN));
    expected.extend(muho_routes(p("2001:db8:2::"), WLAN, rs_src));
    assert_eq!(h.dp.installed, expected);
    let intents = h.take_intents();
    assert_eq!(intents.first(), Some(&Intent::Add(tunnel())), "tunnel before the routes");

    let key = BindingKey { mn_id: mn1(), interface: WLAN, mac: MAC1 };
    let entry = h.mag.binding_update_list().get(&key).expect("entry");
    assert_eq!(entry.state, BindingState::Bound);
    assert_eq!(entry.expires_at, Some(at(11 + 3600)));
    assert!(h.take_events().iter().any(|e| matches!(e, MagEvent::BindingAccepted { kind: PbuKind::Registration, .. })));
}

/// RFC 5213 §6.9.1.2 / §6.8: without a Link-local Address option, the interface's configured
/// link-local address is the RA source; no weak-host bit for a single-homed MN or when disabled;
/// an MN that solicited from :: gets its RAs on all-nodes (RFC 4861 §6.2.6).
#[test]
fn ra_defaults_without_lla_option_and_for_single_homed_mns() {
    let mut h = Harness::new(config());
    let rs = RouterSolicitation::default();
    h.rs_with(WLAN, Ipv6Addr::UNSPECIFIED, Some(MAC3), &rs);
    let pbu = h.take_one_pbu();
    h.answer(&pbu, BaStatus::Accepted, 900, vec![MobilityOption::HomeNetworkPrefix(p("2001:db8:3::"))]);
    let ras = h.take_ras();
    let (_, src, dst, ra) = &ras[0];
    assert_eq!((*src, *dst), (addr("fe80::1"), ALL_NODES));
    assert!(!ra.flag_bit(DEFAULT_WEAK_HOST_FLAG_BIT), "single-homed MN");
    // The MuHo next hop falls back to the EUI-64 link-local address (none here: single-homed).
    assert_eq!(h.dp.installed.len(), 3);

    let mut c = config();
    c.router_advertisement.weak_host_flag = false;
    c.router_advertisement.core_link_mtu = None;
    let mut h = Harness::new(c);
    h.bind(WLAN, MAC1, p("2001:db8:1::"), &[]);
    let ras = h.take_ras();
    assert!(!ras[0].3.flag_bit(DEFAULT_WEAK_HOST_FLAG_BIT), "weak-host flag disabled");
    assert_eq!(ras[0].3.mtu(), None);
}

/// RFC 6275 §11.7.3, RFC 5213 §6.7: the granted lifetime is at most the requested one, and
/// prefix and router lifetimes never exceed what remains of it; refresh at 80 % of it.
#[test]
fn granted_lifetime_bounds_advertised_lifetimes() {
    // (granted units in the PBA, expected binding seconds, expected router lifetime)
    let cases = [(2000u16, 3600u32, 1800u16), (900, 3600, 1800), (100, 400, 400)];
    for (granted, seconds, router_lifetime) in cases {
        let mut h = Harness::new(config());
        h.rs(WLAN, mn_ll(MAC1), MAC1);
        let pbu = h.take_one_pbu();
        h.answer(&pbu, BaStatus::Accepted, granted, vec![MobilityOption::HomeNetworkPrefix(p("2001:db8:1::"))]);
        let ras = h.take_ras();
        assert_eq!(pio_prefixes(&ras[0].3), [(p("2001:db8:1::"), seconds, seconds)], "granted {granted}");
        assert_eq!(ras[0].3.router_lifetime, router_lifetime, "granted {granted}");
        // The next unsolicited RA (initial interval 16 s) carries what remains.
        h.run_until(at(16));
        let ras = h.take_ras();
        assert_eq!(pio_prefixes(&ras[0].3), [(p("2001:db8:1::"), seconds - 16, seconds - 16)], "granted {granted}");
        // Refresh at 80 %.
        let refresh_at = u64::from(seconds) * 8 / 10;
        h.run_until(at(refresh_at - 1));
        assert!(h.take_pbus_ignoring_ras().is_empty(), "granted {granted}: no PBU before {refresh_at}");
        h.run_until(at(refresh_at));
        let pbus = h.take_pbus_ignoring_ras();
        assert_eq!(pbus.len(), 1, "granted {granted}: refresh at {refresh_at}");
    }
}

impl Harness {
    /// PBUs sent since the last take; RAs and heartbeats are dropped.
    fn take_pbus_ignoring_ras(&mut self) -> Vec<BindingUpdate> {
        self.take_sent()
            .into_iter()
            .filter_map(|t| match t {
                Transmit::Mobility { message: Message::BindingUpdate(bu), .. } => Some(bu),
                _ => None,
            })
            .collect()
    }
}

/// RFC 5213 §6.10.4: one tunnel to the LMA shared by every MN — added with the first binding,
/// removed with the last; RFC 5213 §6.9.1.4 for the detachments.
#[test]
fn tunnel_is_shared_and_reference_counted() {
    let mut h = Harness::new(config());
    h.bind(WLAN, MAC1, p("2001:db8:1::"), &[]);
    h.bind(WLAN, MAC3, p("2001:db8:3::"), &[]);
    let intents = h.take_intents();
    assert_eq!(intents.iter().filter(|i| **i == Intent::Add(tunnel())).count(), 1, "{intents:?}");
    h.take_sent();

    h.detach(WLAN, MAC1);
    let intents = h.take_intents();
    assert_eq!(removes(&intents), own_routes(p("2001:db8:1::"), WLAN).into(), "tunnel stays");
    assert!(h.dp.installed.contains(&tunnel()));

    h.detach(WLAN, MAC3);
    let intents = h.take_intents();
    assert_eq!(intents.last(), Some(&Intent::Remove(tunnel())), "tunnel removed after the routes");
    assert!(h.dp.installed.is_empty());
}

/// RFC 5213 §6.9.1.2: a status of 128 or more denies the service — no RA, no routes, no
/// retries; TIMESTAMP_MISMATCH (156) is only reported.
#[test]
fn rejected_pba_denies_service() {
    let statuses = [
        BaStatus::ReasonUnspecified,
        BaStatus::ProxyRegNotEnabled,
        BaStatus::NotAuthorizedForHomeNetworkPrefix,
        BaStatus::TimestampMismatch,
        BaStatus::Unknown(250),
    ];
    for status in statuses {
        let mut h = Harness::new(config());
        h.rs(WLAN, mn_ll(MAC1), MAC1);
        let pbu = h.take_one_pbu();
        h.answer(&pbu, status, 0, vec![MobilityOption::HomeNetworkPrefix(p("2001:db8:1::"))]);
        assert!(h.take_sent().is_empty(), "{status}: no RA");
        assert!(h.take_intents().is_empty(), "{status}: no intents");
        assert!(h.mag.binding_update_list().is_empty(), "{status}");
        let key = BindingKey { mn_id: mn1(), interface: WLAN, mac: MAC1 };
        assert!(
            h.take_events().contains(&MagEvent::BindingRejected { key, kind: PbuKind::Registration, status }),
            "{status}"
        );
        h.run_until(at(100));
        assert!(h.take_sent().is_empty(), "{status}: no retransmission");
        assert_eq!(h.mag.poll_timeout(), None, "{status}: no timer left");
    }
}

/// RFC 6275 §6.1.8, §11.7.3: status 135 carries the LMA's last accepted Sequence Number; the
/// PBU goes again at once, numbered after it.
#[test]
fn sequence_out_of_window_retries_after_the_lma_sequence() {
    let mut h = Harness::new(config());
    h.rs(WLAN, mn_ll(MAC1), MAC1);
    let pbu = h.take_one_pbu();
    h.receive(Message::BindingAck(BindingAck {
        status: BaStatus::SequenceNumberOutOfWindow,
        flags: BaFlags::P,
        sequence: 5000,
        lifetime: 0,
        options: vec![MobilityOption::MnIdentifier(mn1()), MobilityOption::MnLinkLayerIdentifier(MAC1.to_vec())],
    }));
    let retry = h.take_one_pbu();
    assert_eq!(retry.sequence, 5001);
    assert_eq!(hnps_of(&retry), [Prefix::ALL_ZERO]);
    assert_ne!(retry.sequence, pbu.sequence);
    // The retry is accepted by its own number.
    h.answer(&retry, BaStatus::Accepted, 900, vec![MobilityOption::HomeNetworkPrefix(p("2001:db8:1::"))]);
    assert_eq!(h.take_ras().len(), 1);
}

/// RFC 6275 §11.7.3: a PBA whose Sequence Number is not the outstanding PBU's is ignored —
/// unknown numbers, answers to an earlier transmission, and a mismatching MN-ID.
#[test]
fn stale_and_foreign_pbas_are_ignored() {
    let mut h = Harness::new(config());
    h.rs(WLAN, mn_ll(MAC1), MAC1);
    let first = h.take_one_pbu();
    h.run_until(at(1));
    let second = h.take_one_pbu();
    assert_ne!(first.sequence, second.sequence);
    // The answer to the first transmission comes late.
    h.answer(&first, BaStatus::Accepted, 900, vec![MobilityOption::HomeNetworkPrefix(p("2001:db8:1::"))]);
    // An unknown number.
    h.receive(Message::BindingAck(BindingAck {
        status: BaStatus::Accepted,
        flags: BaFlags::P,
        sequence: 7,
        lifetime: 900,
        options: vec![MobilityOption::HomeNetworkPrefix(p("2001:db8:1::"))],
    }));
    // The right number for another MN.
    h.receive(Message::BindingAck(BindingAck {
        status: BaStatus::Accepted,
        flags: BaFlags::P,
        sequence: second.sequence,
        lifetime: 900,
        options: vec![MobilityOption::MnIdentifier(mn2()), MobilityOption::HomeNetworkPrefix(p("2001:db8:1::"))],
    }));
    // A PBA from someone other than the LMA.
    h.receive_from(
        addr("2001:db8:bad::1"),
        Message::BindingAck(BindingAck {
            status: BaStatus::Accepted,
            flags: BaFlags::P,
            sequence: second.sequence,
            lifetime: 900,
            options: vec![MobilityOption::HomeNetworkPrefix(p("2001:db8:1::"))],
        }),
    );
    assert!(h.take_sent().is_empty());
    assert!(h.dp.installed.is_empty());
    let events = h.take_events();
    assert_eq!(events.iter().filter(|e| matches!(e, MagEvent::StaleAck { .. })).count(), 3, "{events:?}");
    assert!(events.iter().any(|e| matches!(e, MagEvent::UnknownPeer { .. })), "{events:?}");
    // The current one is accepted.
    h.answer(&second, BaStatus::Accepted, 900, vec![MobilityOption::HomeNetworkPrefix(p("2001:db8:1::"))]);
    assert_eq!(h.take_ras().len(), 1);
}

/// RFC 5213 §5.3.6, §6.9.1.2: an accepting PBA without a prefix, or granting no lifetime,
/// cannot be served: treated as a rejection.
#[test]
fn unusable_accepting_pbas_deny_service() {
    let cases: [(&str, u16, Vec<MobilityOption>); 3] = [
        ("no HNP option", 900, vec![]),
        ("ALL_ZERO HNP only", 900, vec![MobilityOption::HomeNetworkPrefix(Prefix::ALL_ZERO)]),
        ("lifetime 0", 0, vec![MobilityOption::HomeNetworkPrefix(p("2001:db8:1::"))]),
    ];
    for (name, lifetime, options) in cases {
        let mut h = Harness::new(config());
        h.rs(WLAN, mn_ll(MAC1), MAC1);
        let pbu = h.take_one_pbu();
        h.answer(&pbu, BaStatus::Accepted, lifetime, options);
        assert!(h.take_sent().is_empty(), "{name}");
        assert!(h.dp.installed.is_empty(), "{name}");
        assert!(h.mag.binding_update_list().is_empty(), "{name}");
        assert!(h.take_events().iter().any(|e| matches!(e, MagEvent::UnusableAck { .. })), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Retransmission, refresh, de-registration.

/// RFC 5213 §6.9.4, RFC 6275 §11.8: timeouts 1, 2, 4, 8, 16 s, capped at 32 s (or from 1.5 s
/// with InitialBindackTimeoutFirstReg), each retransmission with a new Sequence Number and
/// Timestamp; after the configured number of transmissions, give up: no service.
#[test]
fn retransmissions_back_off_and_give_up() {
    // (max transmissions, first-registration timeout, send times in ms, give-up time in ms)
    let cases: [(u32, Option<u64>, Vec<u64>, u64); 3] = [
        (5, None, vec![0, 1_000, 3_000, 7_000, 15_000], 31_000),
        (8, None, vec![0, 1_000, 3_000, 7_000, 15_000, 31_000, 63_000, 95_000], 127_000),
        (4, Some(1_500), vec![0, 1_500, 4_500, 10_500], 22_500),
    ];
    for (max, first_reg, times, give_up) in cases {
        let mut c = config();
        c.registration.max_transmissions = max;
        c.registration.initial_bindack_timeout_first_reg = first_reg.map(Duration::from_millis);
        let mut h = Harness::new(c);
        h.rs(WLAN, mn_ll(MAC1), MAC1);
        h.run_until(at(1_000));
        let sent: Vec<(Now, BindingUpdate)> = h
            .sent
            .drain(..)
            .filter_map(|(t, tx)| match tx {
                Transmit::Mobility { message: Message::BindingUpdate(bu), .. } => Some((t, bu)),
                // Heartbeats run while the session exists.
                Transmit::Mobility { message: Message::Heartbeat(_), .. } => None,
                other => panic!("{other:?}"),
            })
            .collect();
        let sent_at: Vec<Now> = sent.iter().map(|(t, _)| *t).collect();
        let expected: Vec<Now> = times.iter().map(|&ms| at_ms(ms)).collect();
        assert_eq!(sent_at, expected, "max {max}, first {first_reg:?}");
        let sequences: BTreeSet<u16> = sent.iter().map(|(_, bu)| bu.sequence).collect();
        assert_eq!(sequences.len(), sent.len(), "a new Sequence Number each time");
        for (t, bu) in &sent {
            assert_eq!(timestamp_of(bu), Some(Timestamp::from_unix(*t)), "a fresh Timestamp each time");
            assert_eq!(hnps_of(bu), [Prefix::ALL_ZERO]);
        }
        let events = h.take_events();
        let key = BindingKey { mn_id: mn1(), interface: WLAN, mac: MAC1 };
        assert!(
            events.contains(&MagEvent::GaveUp { key, kind: PbuKind::Registration, transmissions: max }),
            "{events:?}"
        );
        assert!(h.mag.binding_update_list().is_empty());
        assert!(h.dp.installed.is_empty());
        assert_eq!(h.mag.poll_timeout(), None, "gave up at {give_up} ms, nothing left");
        // The give-up happened at the last timeout, not before.
        let mut h2 = Harness::new({
            let mut c = config();
            c.registration.max_transmissions = max;
            c.registration.initial_bindack_timeout_first_reg = first_reg.map(Duration::from_millis);
            c
        });
        h2.rs(WLAN, mn_ll(MAC1), MAC1);
        h2.run_until(at_ms(give_up - 1));
        assert_eq!(h2.mag.binding_update_list().len(), 1, "still trying just before {give_up} ms");
        h2.run_until(at_ms(give_up));
        assert!(h2.mag.binding_update_list().is_empty(), "given up at {give_up} ms");
    }
}

/// RFC 5213 §6.9.1.3: refresh at 80 % of the granted lifetime with HI 5 and the assigned
/// prefixes (and the empty MuHo again); an accepted refresh changes no route and re-advertises.
#[test]
fn refresh_at_80_percent_with_handoff_indicator_5() {
    let mut h = Harness::new(config());
    h.bind(WLAN, MAC1, p("2001:db8:1::"), &[p("2001:db8:2::")]);
    h.take_sent();
    h.take_intents();
    h.run_until(at(2879));
    assert!(h.take_pbus_ignoring_ras().is_empty());
    h.run_until(at(2880));
    let refresh = h.take_pbus_ignoring_ras();
    assert_eq!(refresh.len(), 1);
    let refresh = &refresh[0];
    assert_eq!(handoff_of(refresh), Some(HandoffIndicator::NotChanged));
    assert_eq!(hnps_of(refresh), [p("2001:db8:1::")]);
    assert!(refresh.options.contains(&muho_option(Prefix::ALL_ZERO)));
    assert_eq!(refresh.lifetime, 900);
    h.answer(
        refresh,
        BaStatus::Accepted,
        900,
        vec![MobilityOption::HomeNetworkPrefix(p("2001:db8:1::")), muho_option(p("2001:db8:2::"))],
    );
    assert!(h.take_intents().is_empty(), "same prefixes, same routes");
    let ras = h.take_ras();
    assert_eq!(pio_prefixes(&ras[0].3), [(p("2001:db8:1::"), 3600, 3600)]);
    let key = BindingKey { mn_id: mn1(), interface: WLAN, mac: MAC1 };
    assert_eq!(h.mag.binding_update_list().get(&key).and_then(|e| e.expires_at), Some(at(2880 + 3600)));
}

/// RFC 5213 §6.9.1.3, §6.9.4: an unanswered refresh gives up, the binding lives out its
/// lifetime and then its state is removed.
#[test]
fn unanswered_refresh_lets_the_binding_expire() {
    let mut h = Harness::new(config());
    h.bind(WLAN, MAC1, p("2001:db8:1::"), &[]);
    h.run_until(at(3599));
    assert!(!h.dp.installed.is_empty(), "still bound after the refresh gave up");
    let key = BindingKey { mn_id: mn1(), interface: WLAN, mac: MAC1 };
    assert!(h.take_events().contains(&MagEvent::GaveUp { key: key.clone(), kind: PbuKind::Refresh, transmissions: 5 }));
    h.run_until(at(3600));
    assert!(h.dp.installed.is_empty());
    assert!(h.take_events().contains(&MagEvent::BindingExpired { key }));
    assert!(h.mag.binding_update_list().is_empty());
}

/// RFC 5213 §6.9.1.2: a rejected refresh ends the service; the MN is told its prefix and router
/// are gone.
#[test]
fn rejected_refresh_withdraws_the_prefix() {
    let mut h = Harness::new(config());
    h.bind(WLAN, MAC1, p("2001:db8:1::"), &[]);
    h.take_sent();
    h.run_until(at(2880));
    let refresh = h.take_pbus_ignoring_ras();
    h.answer(&refresh[0], BaStatus::AdministrativelyProhibited, 0, vec![]);
    let ras = h.take_ras();
    assert_eq!(ras.len(), 1);
    assert_eq!(ras[0].3.router_lifetime, 0);
    assert_eq!(pio_prefixes(&ras[0].3), [(p("2001:db8:1::"), 0, 0)]);
    assert!(h.dp.installed.is_empty());
}

/// RFC 5213 §6.9.1.4: on detach, a PBU with lifetime 0 and the same options, the data-plane
/// state removed at once (before the PBA); the PBA ends the session.
#[test]
fn a_clean_shutdown_deregisters_every_session_once() {
    let mut h = Harness::new(config());
    h.bind(WLAN, MAC1, p("2001:db8:1::"), &[]);
    h.bind(UTRAN, MAC2, p("2001:db8:2::"), &[]);
    h.take_sent();
    h.now = at(100);
    h.mag.deregister_all(h.now);
    h.drain();
    let pbus = h.take_pbus();
    assert_eq!(pbus.len(), 2, "one de-registration per session: {pbus:?}");
    assert!(pbus.iter().all(|pbu| pbu.lifetime == 0));
    assert!(h.dp.installed.is_empty(), "routes and tunnel removed at once: {:?}", h.dp.installed);
    // Twice is harmless: sessions already leaving are not de-registered again.
    h.mag.deregister_all(h.now);
    h.drain();
    assert!(h.take_pbus().is_empty());
}

#[test]
fn detach_deregisters_and_removes_all_intents_at_once() {
    let mut h = Harness::new(config());
    let registration = h.bind(WLAN, MAC1, p("2001:db8:1::"), &[p("2001:db8:2::")]);
    h.take_sent();
    h.take_intents();
    h.now = at(100);
    h.detach(WLAN, MAC1);
    let intents = h.take_intents();
    let mut expected: BTreeSet<Resource> = [tunnel()].into();
    expected.extend(own_routes(p("2001:db8:1::"), WLAN));
    expected.extend(muho_routes(p("2001:db8:2::"), WLAN, mn_ll(MAC1)));
    assert_eq!(removes(&intents), expected);
    assert!(adds(&intents).is_empty());
    assert!(h.dp.installed.is_empty());
    let dereg = h.take_one_pbu();
    assert_eq!(dereg.lifetime, 0);
    assert_eq!(dereg.flags, BuFlags::A | BuFlags::P);
    assert_eq!(hnps_of(&dereg), [p("2001:db8:1::")]);
    assert_eq!(mn_id_of(&dereg), mn_id_of(&registration));
    assert!(dereg.options.contains(&MobilityOption::MnLinkLayerIdentifier(MAC1.to_vec())));
    assert!(dereg.options.contains(&muho_option(Prefix::ALL_ZERO)));
    assert_eq!(timestamp_of(&dereg), Some(Timestamp::from_unix(at(100))));
    let key = BindingKey { mn_id: mn1(), interface: WLAN, mac: MAC1 };
    assert_eq!(h.mag.binding_update_list().get(&key).map(|e| e.state), Some(BindingState::Deregistering));
    h.answer(&dereg, BaStatus::Accepted, 0, vec![]);
    assert!(h.mag.binding_update_list().is_empty());
    assert!(h.take_events().contains(&MagEvent::Deregistered { key, status: BaStatus::Accepted }));
    assert_eq!(h.mag.poll_timeout(), None, "no session: no timer, no heartbeat");
    // A second detach is only an event.
    h.detach(WLAN, MAC1);
    assert!(h.take_sent().is_empty());
}

/// RFC 5213 §6.9.1.4 with §6.9.4: an unanswered de-registration is retransmitted, then given
/// up; a re-attachment meanwhile starts a fresh registration.
#[test]
fn deregistration_retransmits_and_reattachment_starts_over() {
    let mut h = Harness::new(config());
    h.bind(WLAN, MAC1, p("2001:db8:1::"), &[]);
    h.take_sent();
    h.detach(WLAN, MAC1);
    let dereg = h.take_one_pbu();
    h.run_until(at(1));
    let again = h.take_one_pbu();
    assert_eq!(again.lifetime, 0);
    assert_ne!(again.sequence, dereg.sequence);
    h.rs(WLAN, mn_ll(MAC1), MAC1);
    let fresh = h.take_one_pbu();
    assert_eq!(fresh.lifetime, 900);
    assert_eq!(hnps_of(&fresh), [Prefix::ALL_ZERO]);
    // The late de-registration PBA does not touch the new registration.
    h.answer(&again, BaStatus::Accepted, 0, vec![]);
    let key = BindingKey { mn_id: mn1(), interface: WLAN, mac: MAC1 };
    assert_eq!(h.mag.binding_update_list().get(&key).map(|e| e.state), Some(BindingState::Registering));
}

// ---------------------------------------------------------------------------------------------
// Router Solicitations while bound.

/// RFC 4861 §6.2.6 (a delay of 0), RFC 5213 §6.9.2: an RS while bound is answered at once, to
/// its source; a new link-local source moves the MuHo routes' next hop, by difference.
#[test]
fn rs_while_bound_is_answered_at_once() {
    let mut h = Harness::new(config());
    h.bind(WLAN, MAC1, p("2001:db8:1::"), &[p("2001:db8:2::")]);
    h.take_sent();
    h.take_intents();
    h.now = at(300);
    h.rs(WLAN, mn_ll(MAC1), MAC1);
    let ras = h.take_ras();
    assert_eq!(ras.len(), 1, "answered without waiting for a timer");
    assert_eq!(ras[0].2, mn_ll(MAC1));
    assert_eq!(pio_prefixes(&ras[0].3), [(p("2001:db8:1::"), 3300, 3300)]);
    assert!(h.take_intents().is_empty());

    // The MN now uses another link-local address (e.g. stable privacy).
    let new_ll = addr("fe80::abcd");
    h.rs(WLAN, new_ll, MAC1);
    assert_eq!(h.take_ras()[0].2, new_ll);
    let intents = h.take_intents();
    assert_eq!(
        intents,
        [
            Intent::Remove(Resource::PrefixToAccess {
                prefix: p("2001:db8:2::"),
                interface: WLAN,
                next_hop: Some(mn_ll(MAC1)),
            }),
            Intent::Add(Resource::PrefixToAccess {
                prefix: p("2001:db8:2::"),
                interface: WLAN,
                next_hop: Some(new_ll),
            }),
        ]
    );
    // An L2 re-attachment is answered at once too.
    h.now = at(301);
    let now = h.now;
    h.mag.handle_attach(now, WLAN, MAC1);
    h.drain();
    assert_eq!(h.take_ras().len(), 1);
}

/// RFC 4861 §6.2.4: after acceptance, the first RAs at 16 s intervals, then every 600 s.
#[test]
fn unsolicited_ras_follow_the_initial_then_periodic_schedule() {
    let mut h = Harness::new(config());
    h.bind(WLAN, MAC1, p("2001:db8:1::"), &[]);
    let mut times = Vec::new();
    h.run_until(at(1300));
    for (t, tx) in h.sent.drain(..) {
        if matches!(tx, Transmit::RouterAdvertisement { .. }) {
            times.push(t.as_secs() - T0);
        }
    }
    assert_eq!(times, [0, 16, 32, 632, 1232]);
}

// ---------------------------------------------------------------------------------------------
// Multihoming.

/// draft §5.2.1, Figure 4: the MN on two interfaces of this MAG — its prefixes are routed
/// on-link where they are own; the MuHo downlink route is not duplicated for a prefix that is
/// own here; uplink source routes exist on both links.
#[test]
fn multihomed_mn_on_two_links_of_one_mag() {
    let mut h = Harness::new(config());
    h.bind(WLAN, MAC1, p("2001:db8:1::"), &[]);
    h.bind(UTRAN, MAC2, p("2001:db8:2::"), &[p("2001:db8:1::")]);
    let mut expected: BTreeSet<Resource> = [tunnel()].into();
    expected.extend(own_routes(p("2001:db8:1::"), WLAN));
    expected.extend(own_routes(p("2001:db8:2::"), UTRAN));
    expected.insert(Resource::SourceRouteToTunnel { prefix: p("2001:db8:1::"), interface: UTRAN, peer: lmaa() });
    assert_eq!(h.dp.installed, expected);
    // When the WLAN session goes, the UTRAN link takes over the downlink for 2001:db8:1::/64.
    h.detach(WLAN, MAC1);
    let mut expected: BTreeSet<Resource> = [tunnel()].into();
    expected.extend(own_routes(p("2001:db8:2::"), UTRAN));
    expected.extend(muho_routes(p("2001:db8:1::"), UTRAN, mn_ll(MAC2)));
    assert_eq!(h.dp.installed, expected);
}

fn upn(sequence: u16, reason: NotificationReason, flags: UpnFlags, options: Vec<MobilityOption>) -> Message {
    Message::UpdateNotification(UpdateNotification { sequence, reason, flags, options })
}

fn upa_of(message: &Message) -> (u16, UpaStatus) {
    match message {
        Message::UpdateNotificationAck(upa) => {
            assert!(upa.options.iter().all(|o| matches!(o, MobilityOption::MnIdentifier(_))));
            (upa.sequence, upa.status)
        }
        other => panic!("expected a UPA, got {other}"),
    }
}

/// RFC 7077 §4.1, §4.2; draft §5.2.3: an Update Notification replaces the MuHo set; only the
/// difference reaches the data plane; the UPA echoes the sequence when A is set; an empty MuHo
/// means none.
#[test]
fn update_notification_changes_routes_by_difference() {
    let mut h = Harness::new(config());
    h.bind(WLAN, MAC1, p("2001:db8:1::"), &[p("2001:db8:2::"), p("2001:db8:3::")]);
    h.take_sent();
    h.take_intents();
    let ll = mn_ll(MAC1);
    /// (name, options after the MN-ID, flags, routes added, routes removed, UPA expected)
    type Step = (&'static str, Vec<MobilityOption>, UpnFlags, Vec<Resource>, Vec<Resource>, Option<UpaStatus>);
    let steps: [Step; 4] = [
        (
            "one prefix replaced",
            vec![muho_option(p("2001:db8:2::")), muho_option(p("2001:db8:4::"))],
            UpnFlags::A,
            muho_routes(p("2001:db8:4::"), WLAN, ll).into(),
            muho_routes(p("2001:db8:3::"), WLAN, ll).into(),
            Some(UpaStatus::Success),
        ),
        (
            "same set: nothing",
            vec![muho_option(p("2001:db8:2::")), muho_option(p("2001:db8:4::"))],
            UpnFlags::A,
            vec![],
            vec![],
            Some(UpaStatus::Success),
        ),
        (
            "empty MuHo: none, no acknowledgement requested",
            vec![muho_option(Prefix::ALL_ZERO)],
            UpnFlags::empty(),
            vec![],
            [muho_routes(p("2001:db8:2::"), WLAN, ll), muho_routes(p("2001:db8:4::"), WLAN, ll)].concat(),
            None,
        ),
        (
            "narrowed by MN-LL-ID and HNP",
            vec![
                MobilityOption::MnLinkLayerIdentifier(MAC1.to_vec()),
                MobilityOption::HomeNetworkPrefix(p("2001:db8:1::")),
                muho_option(p("2001:db8:5::")),
            ],
            UpnFlags::A,
            muho_routes(p("2001:db8:5::"), WLAN, ll).into(),
            vec![],
            Some(UpaStatus::Success),
        ),
    ];
    for (i, (name, options, flags, added, removed, upa)) in steps.into_iter().enumerate() {
        let sequence = 77 + i as u16;
        let mut all = vec![MobilityOption::MnIdentifier(mn1())];
        all.extend(options);
        h.receive(upn(sequence, NotificationReason::UpdateSessionParameters, flags, all));
        let intents = h.take_intents();
        assert_eq!(adds(&intents), added.into_iter().collect(), "{name}");
        assert_eq!(removes(&intents), removed.into_iter().collect(), "{name}");
        let sent = h.take_mobility();
        match upa {
            Some(status) => assert_eq!(sent.iter().map(upa_of).collect::<Vec<_>>(), [(sequence, status)], "{name}"),
            None => assert!(sent.is_empty(), "{name}"),
        }
    }
    // Own prefixes and advertisement are untouched.
    assert!(h.dp.installed.is_superset(&own_routes(p("2001:db8:1::"), WLAN).into()));
}

/// RFC 7864 (UPA status 132), RFC 7077 §4.1: a notification for an MN without a session here is
/// answered "MN not attached"; one without MN-ID fails.
#[test]
fn update_notification_for_unknown_mn_is_answered_132() {
    let mut h = Harness::new(config());
    h.bind(WLAN, MAC1, p("2001:db8:1::"), &[]);
    h.take_sent();
    h.take_intents();
    let cases: [(&str, Vec<MobilityOption>, UpaStatus); 3] = [
        (
            "unknown MN",
            vec![MobilityOption::MnIdentifier(mn2()), muho_option(p("2001:db8:9::"))],
            UpaStatus::MnNotAttached,
        ),
        (
            "known MN, other MAC",
            vec![MobilityOption::MnIdentifier(mn1()), MobilityOption::MnLinkLayerIdentifier(MAC2.to_vec())],
            UpaStatus::MnNotAttached,
        ),
        ("no MN-ID", vec![muho_option(p("2001:db8:9::"))], UpaStatus::FailedToUpdateSessionParameters),
    ];
    for (name, options, status) in cases {
        h.receive(upn(5, NotificationReason::UpdateSessionParameters, UpnFlags::A, options));
        assert_eq!(h.take_mobility().iter().map(upa_of).collect::<Vec<_>>(), [(5, status)], "{name}");
        assert!(h.take_intents().is_empty(), "{name}");
    }
}

/// RFC 7077 §4.1 (FORCE-REREGISTRATION): a PBU at once with HI 5 and the assigned prefixes.
#[test]
fn force_reregistration_sends_a_pbu_at_once() {
    let mut h = Harness::new(config());
    h.bind(WLAN, MAC1, p("2001:db8:1::"), &[]);
    h.take_sent();
    h.now = at(50);
    h.receive(upn(9, NotificationReason::ForceReregistration, UpnFlags::A, vec![MobilityOption::MnIdentifier(mn1())]));
    let sent = h.take_mobility();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let Message::BindingUpdate(pbu) = &sent[0] else { panic!("{}", sent[0]) };
    assert_eq!(handoff_of(pbu), Some(HandoffIndicator::NotChanged));
    assert_eq!(hnps_of(pbu), [p("2001:db8:1::")]);
    assert_eq!(pbu.lifetime, 900);
    assert_eq!(upa_of(&sent[1]), (9, UpaStatus::Success));
    // Its PBA renews the binding from now.
    h.answer(pbu, BaStatus::Accepted, 900, vec![MobilityOption::HomeNetworkPrefix(p("2001:db8:1::"))]);
    let key = BindingKey { mn_id: mn1(), interface: WLAN, mac: MAC1 };
    assert_eq!(h.mag.binding_update_list().get(&key).and_then(|e| e.expires_at), Some(at(50 + 3600)));
}

/// RFC 7077 §4.1 (D flag): the LMA asks for de-registration — lifetime-0 PBU, routes removed,
/// acknowledged.
#[test]
fn update_notification_with_d_flag_deregisters() {
    let mut h = Harness::new(config());
    h.bind(WLAN, MAC1, p("2001:db8:1::"), &[]);
    h.take_sent();
    h.receive(upn(
        3,
        NotificationReason::UpdateSessionParameters,
        UpnFlags::A | UpnFlags::D,
        vec![MobilityOption::MnIdentifier(mn1())],
    ));
    let sent = h.take_mobility();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let Message::BindingUpdate(dereg) = &sent[0] else { panic!("{}", sent[0]) };
    assert_eq!(dereg.lifetime, 0);
    assert_eq!(upa_of(&sent[1]), (3, UpaStatus::Success));
    assert!(h.dp.installed.is_empty());
}

fn bri(sequence: u16, flags: RevocationFlags, options: Vec<MobilityOption>) -> Message {
    Message::BindingRevocation(BindingRevocation {
        kind: RevocationKind::Indication(RevocationTrigger::AdministrativeReason),
        sequence,
        flags,
        options,
    })
}

fn bra_of(message: &Message) -> (u16, RevocationStatus, RevocationFlags) {
    match message {
        Message::BindingRevocation(BindingRevocation {
            kind: RevocationKind::Acknowledgement(status),
            sequence,
            flags,
            ..
        }) => (*sequence, *status, *flags),
        other => panic!("expected a BRA, got {other}"),
    }
}

/// draft §5.2.3: a BRI carrying MuHo is the multihoming update (the session stays); RFC 5846
/// §6: without MuHo it revokes (state removed, prefixes withdrawn, no de-registration PBU); the
/// BRA echoes sequence and flags; unknown sessions get 128, a missing MN-ID 131.
#[test]
fn revocation_with_muho_updates_and_without_revokes() {
    let mut h = Harness::new(config());
    h.bind(WLAN, MAC1, p("2001:db8:1::"), &[]);
    h.bind(WLAN, MAC3, p("2001:db8:3::"), &[]);
    h.take_sent();
    h.take_intents();
    let p_flag = RevocationFlags::P;

    // Update.
    h.receive(bri(1, p_flag, vec![MobilityOption::MnIdentifier(mn1()), muho_option(p("2001:db8:2::"))]));
    assert_eq!(bra_of(&h.take_mobility()[0]), (1, RevocationStatus::Success, p_flag));
    assert_eq!(adds(&h.take_intents()), muho_routes(p("2001:db8:2::"), WLAN, mn_ll(MAC1)).into());
    assert_eq!(h.mag.binding_update_list().len(), 2);

    // Unknown MN, update or revocation.
    h.receive(bri(
        2,
        p_flag,
        vec![MobilityOption::MnIdentifier(MnIdentifier::nai("x@y")), muho_option(p("2001:db8:2::"))],
    ));
    assert_eq!(bra_of(&h.take_mobility()[0]).1, RevocationStatus::BindingDoesNotExist);
    h.receive(bri(3, p_flag, vec![MobilityOption::MnIdentifier(MnIdentifier::nai("x@y"))]));
    assert_eq!(bra_of(&h.take_mobility()[0]).1, RevocationStatus::BindingDoesNotExist);
    // No MN-ID and no G flag.
    h.receive(bri(4, p_flag, vec![]));
    assert_eq!(bra_of(&h.take_mobility()[0]).1, RevocationStatus::RevokedMobileNodesIdentityRequired);
    assert!(h.take_intents().is_empty());

    // Revocation of mn1.
    h.receive(bri(5, p_flag, vec![MobilityOption::MnIdentifier(mn1())]));
    let sent = h.take_sent();
    assert_eq!(sent.len(), 2, "withdrawal RA and BRA, no PBU: {sent:?}");
    let Transmit::RouterAdvertisement { ra, .. } = &sent[0] else { panic!("{:?}", sent[0]) };
    assert_eq!(pio_prefixes(ra), [(p("2001:db8:1::"), 0, 0)]);
    let Transmit::Mobility { message, .. } = &sent[1] else { panic!("{:?}", sent[1]) };
    assert_eq!(bra_of(message), (5, RevocationStatus::Success, p_flag));
    let mut left: BTreeSet<Resource> = [tunnel()].into();
    left.extend(own_routes(p("2001:db8:3::"), WLAN));
    assert_eq!(h.dp.installed, left);

    // Global revocation takes the rest.
    h.receive(bri(6, p_flag | RevocationFlags::G, vec![]));
    let sent = h.take_mobility_ignoring_ras();
    assert_eq!(bra_of(&sent[0]), (6, RevocationStatus::Success, p_flag | RevocationFlags::G));
    assert!(h.dp.installed.is_empty());
    assert!(h.mag.binding_update_list().is_empty());
}

impl Harness {
    fn take_mobility_ignoring_ras(&mut self) -> Vec<Message> {
        self.take_sent()
            .into_iter()
            .filter_map(|t| match t {
                Transmit::Mobility { message, .. } => Some(message),
                _ => None,
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Heartbeats.

fn heartbeat(flags: HeartbeatFlags, sequence: u32, options: Vec<MobilityOption>) -> Message {
    Message::Heartbeat(Heartbeat { flags, sequence, options })
}

/// RFC 5847 §5.1: a request is answered with the same sequence and our Restart Counter.
#[test]
fn heartbeat_request_is_answered_with_the_restart_counter() {
    let mut h = Harness::new(config());
    h.receive(heartbeat(HeartbeatFlags::empty(), 0xdead_beef, vec![]));
    assert_eq!(
        h.take_mobility(),
        [heartbeat(HeartbeatFlags::R, 0xdead_beef, vec![MobilityOption::RestartCounter(42)])]
    );
}

/// RFC 5847 failure detection: requests every 60 s while sessions exist; three unanswered in a row: LMA
/// unreachable; an answer: reachable again; no requests without sessions.
#[test]
fn missing_heartbeats_report_the_lma_unreachable() {
    let mut h = Harness::new(config());
    h.bind(WLAN, MAC1, p("2001:db8:1::"), &[]);
    h.run_until(at(59));
    assert!(h.take_mobility_ignoring_ras().is_empty());
    let mut requests = Vec::new();
    for t in [60, 120, 180, 240] {
        h.run_until(at(t));
        let sent = h.take_mobility_ignoring_ras();
        assert_eq!(sent.len(), 1, "one request at {t}");
        let Message::Heartbeat(hb) = &sent[0] else { panic!("{}", sent[0]) };
        assert_eq!(hb.flags, HeartbeatFlags::empty());
        requests.push(hb.sequence);
        let unreachable = h.take_events().iter().any(|e| matches!(e, MagEvent::LmaUnreachable { .. }));
        assert_eq!(unreachable, t == 240, "unreachable only after 3 misses (t = {t})");
    }
    h.receive(heartbeat(HeartbeatFlags::R, requests[3], vec![MobilityOption::RestartCounter(7)]));
    assert!(h.take_events().contains(&MagEvent::LmaReachable));
    // The session goes: requests stop.
    h.detach(WLAN, MAC1);
    let dereg = h.take_one_pbu();
    h.answer(&dereg, BaStatus::Accepted, 0, vec![]);
    h.run_until(at(1000));
    assert!(h.take_mobility_ignoring_ras().is_empty());
}

/// RFC 5847 §5.2: a changed Restart Counter means the LMA lost its bindings: every bound
/// session is registered again at once (HI 5, assigned prefixes).
#[test]
fn lma_restart_triggers_reregistration() {
    let mut h = Harness::new(config());
    h.bind(WLAN, MAC1, p("2001:db8:1::"), &[]);
    h.bind(WLAN, MAC3, p("2001:db8:3::"), &[]);
    h.run_until(at(60));
    let request = match h.take_mobility_ignoring_ras().as_slice() {
        [Message::Heartbeat(hb)] => hb.sequence,
        other => panic!("{other:?}"),
    };
    h.receive(heartbeat(HeartbeatFlags::R, request, vec![MobilityOption::RestartCounter(7)]));
    assert!(h.take_sent().is_empty(), "first counter seen: nothing to do");
    h.run_until(at(120));
    let request = match h.take_mobility_ignoring_ras().as_slice() {
        [Message::Heartbeat(hb)] => hb.sequence,
        other => panic!("{other:?}"),
    };
    h.receive(heartbeat(HeartbeatFlags::R, request, vec![MobilityOption::RestartCounter(8)]));
    assert!(h.take_events().contains(&MagEvent::LmaRestarted { previous: 7, current: 8 }));
    let pbus = h.take_pbus();
    let mut registered: Vec<(MnIdentifier, Vec<Prefix>, Option<HandoffIndicator>)> =
        pbus.iter().map(|bu| (mn_id_of(bu), hnps_of(bu), handoff_of(bu))).collect();
    registered.sort();
    assert_eq!(
        registered,
        [
            (mn1(), vec![p("2001:db8:1::")], Some(HandoffIndicator::NotChanged)),
            (mn2(), vec![p("2001:db8:3::")], Some(HandoffIndicator::NotChanged)),
        ]
    );
    // Routes stay while re-registering.
    assert_eq!(h.dp.installed.len(), 5);
}

// ---------------------------------------------------------------------------------------------
// Robustness.

/// Messages a MAG does not act on are reported and change nothing.
#[test]
fn other_messages_are_reported_and_ignored() {
    let mut h = Harness::new(config());
    h.bind(WLAN, MAC1, p("2001:db8:1::"), &[]);
    h.take_sent();
    h.take_intents();
    let messages = [
        Message::BindingUpdate(BindingUpdate {
            sequence: 1,
            flags: BuFlags::A | BuFlags::P,
            lifetime: 1,
            options: vec![],
        }),
        Message::BindingRevocation(BindingRevocation {
            kind: RevocationKind::Acknowledgement(RevocationStatus::Success),
            sequence: 1,
            flags: RevocationFlags::P,
            options: vec![],
        }),
        Message::Heartbeat(Heartbeat { flags: HeartbeatFlags::R, sequence: 12345, options: vec![] }),
    ];
    for message in messages {
        let text = message.to_string();
        h.receive(message);
        assert!(h.take_sent().is_empty(), "{text}");
        assert!(h.take_intents().is_empty(), "{text}");
        assert!(h.take_events().iter().any(|e| matches!(e, MagEvent::Ignored { .. })), "{text}");
    }
    assert_eq!(h.mag.binding_update_list().len(), 1);
}

/// Out-of-range configuration values are replaced, reported, and never stall the engine.
#[test]
fn bad_configuration_is_adjusted() {
    let mut c = config();
    c.registration.max_transmissions = 0;
    c.registration.refresh_percent = 0;
    c.registration.requested_lifetime = Duration::ZERO;
    c.router_advertisement.interval = Duration::ZERO;
    c.router_advertisement.weak_host_flag_bit = 200;
    c.mobile_nodes.push(MobileNodeEntry {
        mn_id: MnIdentifier::nai("dup@x"),
        macs: vec![MAC1],
        multihoming: false,
        ipv4: false,
    });
    let mut h = Harness::new(c);
    let adjusted = h.take_events().iter().filter(|e| matches!(e, MagEvent::ConfigAdjusted { .. })).count();
    assert_eq!(adjusted, 6);
    h.rs(WLAN, mn_ll(MAC1), MAC1);
    let pbu = h.take_one_pbu();
    assert_eq!(pbu.lifetime, 1, "never lifetime 0 in a registration");
    assert_eq!(mn_id_of(&pbu), mn1(), "first entry of a duplicate MAC kept");
    h.run_until(at(10));
    assert!(h.mag.binding_update_list().is_empty(), "one transmission, then given up");
}

/// RFC 7864 §3.1: a FLOW-MOBILITY notification names, in HNP options, a prefix of the MN's
/// session elsewhere: this MAG routes it to the MN (like a MuHo prefix) and acknowledges; the
/// MN's own prefix and a repeat change nothing.
#[test]
fn flow_mobility_notification_routes_the_other_sessions_prefix() {
    let mut h = Harness::new(config());
    h.bind(WLAN, MAC1, p("2001:db8:1::"), &[]);
    h.take_sent();
    h.take_intents();
    let ll = mn_ll(MAC1);
    let options = vec![MobilityOption::MnIdentifier(mn1()), MobilityOption::HomeNetworkPrefix(p("2001:db8:2::"))];
    h.receive(upn(21, NotificationReason::FlowMobility, UpnFlags::A, options.clone()));
    let intents = h.take_intents();
    assert_eq!(adds(&intents), muho_routes(p("2001:db8:2::"), WLAN, ll).into_iter().collect());
    assert!(removes(&intents).is_empty());
    assert_eq!(h.take_mobility().iter().map(upa_of).collect::<Vec<_>>(), [(21, UpaStatus::Success)]);
    h.receive(upn(22, NotificationReason::FlowMobility, UpnFlags::A, options));
    assert!(h.take_intents().is_empty());
    assert_eq!(h.take_mobility().iter().map(upa_of).collect::<Vec<_>>(), [(22, UpaStatus::Success)]);
    // An MN without a session here: 132.
    let other = vec![MobilityOption::MnIdentifier(mn2()), MobilityOption::HomeNetworkPrefix(p("2001:db8:2::"))];
    h.receive(upn(23, NotificationReason::FlowMobility, UpnFlags::A, other));
    assert_eq!(h.take_mobility().iter().map(upa_of).collect::<Vec<_>>(), [(23, UpaStatus::MnNotAttached)]);
}

// ---- RFC 5844: IPv4 home addresses -----------------------------------------------------------

fn ipv4_request_of(bu: &BindingUpdate) -> Vec<(u8, Ipv4Addr)> {
    bu.options
        .iter()
        .filter_map(|o| match o {
            MobilityOption::Ipv4HomeAddressRequest { prefix_len, address } => Some((*prefix_len, *address)),
            _ => None,
        })
        .collect()
}

fn ipv4_config() -> MagConfig {
    let mut c = config();
    c.mobile_nodes[1].ipv4 = true;
    c
}

const HOME_V4: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 2);
const ROUTER_V4: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 1);

fn ipv4_routes(interface: InterfaceId) -> [Resource; 3] {
    [
        Resource::Ipv4HomeAddressToAccess { address: HOME_V4, interface },
        Resource::Ipv4SourceRouteToTunnel { address: HOME_V4, interface, peer: lmaa() },
        // RFC 5844 §3.3.3: the default router the PBA named, on the link.
        Resource::Ipv4DefaultRouterOnAccess { address: ROUTER_V4, interface },
    ]
}

#[test]
fn rfc5844_3_2_the_mag_asks_for_an_ipv4_home_address_routes_it_and_names_it_again() {
    let mut h = Harness::new(ipv4_config());
    h.rs(UTRAN, mn_ll(MAC3), MAC3);
    let pbu = h.extract_one_pbu();
    // RFC 5844 §3.2.1: 0.0.0.0 asks the LMA to assign.
    assert_eq!(ipv4_request_of(&pbu), [(0, Ipv4Addr::UNSPECIFIED)]);
    h.answer(
        &pbu,
        BaStatus::Accepted,
        900,
        vec![
            MobilityOption::HomeNetworkPrefix(p("2001:db8:3::")),
            MobilityOption::Ipv4HomeAddressReply {
                status: Ipv4HoaReplyStatus::Success,
                prefix_len: 24,
                address: HOME_V4,
            },
            MobilityOption::Ipv4DefaultRouter(ROUTER_V4),
        ],
    );
    let mut expected: BTreeSet<Resource> = [tunnel()].into();
    expected.extend(own_routes(p("2001:db8:3::"), UTRAN));
    expected.extend(ipv4_routes(UTRAN));
    assert_eq!(h.dp.installed, expected);
    let key = BindingKey { mn_id: mn2(), interface: UTRAN, mac: MAC3 };
    let entry = h.mag.binding_update_list().get(&key).unwrap();
    assert_eq!((entry.ipv4_home_address, entry.ipv4_default_router), (Some((HOME_V4, 24)), Some(ROUTER_V4)));

    // The refresh names the address held.
    h.take_sent();
    h.run_until(at(2880));
    let refresh = h.take_pbus_ignoring_ras();
    assert_eq!(ipv4_request_of(&refresh[0]), [(24, HOME_V4)]);
    // A refresh the LMA answers without the address withdraws its routes; the IPv6 ones stay.
    h.take_intents();
    h.answer(&refresh[0], BaStatus::Accepted, 900, vec![MobilityOption::HomeNetworkPrefix(p("2001:db8:3::"))]);
    assert_eq!(removes(&h.take_intents()), ipv4_routes(UTRAN).into());
    assert!(h.dp.installed.contains(&own_routes(p("2001:db8:3::"), UTRAN)[0]));

    // Detach: everything goes.
    h.detach(UTRAN, MAC3);
    h.take_sent();
    assert!(h.dp.installed.is_empty(), "{:?}", h.dp.installed);
}

#[test]
fn rfc5844_3_2_a_refused_ipv4_request_leaves_the_ipv6_session() {
    let mut h = Harness::new(ipv4_config());
    h.rs(UTRAN, mn_ll(MAC3), MAC3);
    let pbu = h.extract_one_pbu();
    h.answer(
        &pbu,
        BaStatus::Accepted,
        900,
        vec![
            MobilityOption::HomeNetworkPrefix(p("2001:db8:3::")),
            MobilityOption::Ipv4HomeAddressReply {
                status: Ipv4HoaReplyStatus::DynamicAssignmentNotAvailable,
                prefix_len: 0,
                address: Ipv4Addr::UNSPECIFIED,
            },
        ],
    );
    let key = BindingKey { mn_id: mn2(), interface: UTRAN, mac: MAC3 };
    assert_eq!(h.mag.binding_update_list().get(&key).unwrap().state, BindingState::Bound);
    assert!(!h.dp.installed.iter().any(|r| matches!(r, Resource::Ipv4HomeAddressToAccess { .. })));
    assert!(h.take_events().contains(&MagEvent::Ipv4HomeAddressRefused {
        key,
        status: Ipv4HoaReplyStatus::DynamicAssignmentNotAvailable
    }));
    // A mobile node not configured for IPv4 asks nothing, and an unasked reply is ignored.
    h.rs(WLAN, mn_ll(MAC1), MAC1);
    let pbu = h.extract_one_pbu();
    assert!(ipv4_request_of(&pbu).is_empty());
    h.answer(
        &pbu,
        BaStatus::Accepted,
        900,
        vec![
            MobilityOption::HomeNetworkPrefix(p("2001:db8:1::")),
            MobilityOption::Ipv4HomeAddressReply {
                status: Ipv4HoaReplyStatus::Success,
                prefix_len: 24,
                address: HOME_V4,
            },
        ],
    );
    assert!(!h.dp.installed.iter().any(|r| matches!(r, Resource::Ipv4HomeAddressToAccess { .. })));
}
