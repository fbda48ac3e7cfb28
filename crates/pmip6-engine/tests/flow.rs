//! The flow-mobility core against the draft (§4.2, §4.4, §5.3) and RFC 6088/6089/7864.
//!
//! Packets are built by hand here, byte by byte from the RFC layouts, independently of the
//! classifier. Every test drives a [`FlowSteering`] through a `World` that applies each batch
//! of steering intents to a set model of the data plane, which fails the test on an add of what
//! is installed or a remove of what is not, and after every step checks that the model equals
//! what the engine says is installed.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use pmip6_engine::flow::{
    AttachmentView, Choice, Classifier, ClassifyError, Fallback, FlowConfig, FlowKey, FlowSteering, IpVersion,
    MnRuleLimits, MobileNodeError, MobileNodeView, MoveError, OperatorRule, PortSource, PrefixRequest, Route, Rule,
    RuleError, Scope, Steering, SteeringIntent, SteeringMode, TargetSpec, Tier, Verdict, classify,
};
use pmip6_engine::lma::LinkLayerId;
use pmip6_wire::selector::{FieldRange, Ipv4Selector, Ipv6Selector, TrafficSelector};
use pmip6_wire::{AccessTechnologyType as Att, MnIdentifier, Prefix};

// ---- packets, from the RFC layouts --------------------------------------------------------------

const CN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 1);
const CN2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 2);
const MN_ADDR1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 1, 0, 0, 0, 0x11);
const MN_ADDR2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, 0x22);
const OTHER_ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 1, 0, 0, 0, 0x33);
const MAG1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1);
const MAG2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 2);
const MAG3: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 3);
const HOA: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 7);
const CN4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);

fn pref1() -> Prefix {
    Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, 1, 1, 0, 0, 0, 0), 64)
}
fn pref2() -> Prefix {
    Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, 0), 64)
}
fn other_pref() -> Prefix {
    Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, 2, 1, 0, 0, 0, 0), 64)
}

/// An IPv6 extension header in a test packet: (Next Header code of this header, body after its
/// two first octets).
enum Ext {
    HopByHop,
    Routing,
    DestOpts(usize),
    Fragment { offset: u16, more: bool, id: u32 },
    Ah { spi: u32 },
}

/// IPv6 header (RFC 8200 §3) + extension headers + upper layer.
fn v6(src: Ipv6Addr, dst: Ipv6Addr, tc: u8, flow_label: u32, exts: &[Ext], proto: u8, upper: &[u8]) -> Vec<u8> {
    let code = |e: &Ext| match e {
        Ext::HopByHop => 0u8,
        Ext::Routing => 43,
        Ext::DestOpts(_) => 60,
        Ext::Fragment { .. } => 44,
        Ext::Ah { .. } => 51,
    };
    let mut body = Vec::new();
    for (i, e) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(proto, code);
        match e {
            Ext::HopByHop => body.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]), // PadN
            Ext::Routing => body.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 0]),  // type 0, segs left 0
            Ext::DestOpts(words) => {
                body.extend_from_slice(&[next, *words as u8, 1, 4, 0, 0, 0, 0]);
                body.extend(std::iter::repeat_n(0, words * 8));
            }
            Ext::Fragment { offset, more, id } => {
                let field = (offset << 3) | u16::from(*more);
                body.extend_from_slice(&[next, 0]);
                body.extend_from_slice(&field.to_be_bytes());
                body.extend_from_slice(&id.to_be_bytes());
            }
            Ext::Ah { spi } => {
                // RFC 4302 §2: Payload Len = 4 (6 words − 2): 12 fixed octets + 12 of ICV.
                body.extend_from_slice(&[next, 4, 0, 0]);
                body.extend_from_slice(&spi.to_be_bytes());
                body.extend_from_slice(&[0, 0, 0, 1]);
                body.extend_from_slice(&[0xaa; 12]);
            }
        }
    }
    body.extend_from_slice(upper);
    let mut p = Vec::new();
    let word = (6u32 << 28) | (u32::from(tc) << 20) | (flow_label & 0xf_ffff);
    p.extend_from_slice(&word.to_be_bytes());
    p.extend_from_slice(&(body.len() as u16).to_be_bytes());
    p.push(exts.first().map_or(proto, code));
    p.push(64);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&body);
    p
}

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&[0, 16, 0, 0]);
    u.extend_from_slice(&[0x55; 8]);
    u
}

fn tcp(sport: u16, dport: u16) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    t
}

fn udp6(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16) -> Vec<u8> {
    v6(src, dst, 0, 0, &[], 17, &udp(sport, dport))
}

/// IPv4 header (RFC 791) with `options` words of options.
fn v4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    tos: u8,
    proto: u8,
    frag: (u16, u16, bool),
    options: usize,
    upper: &[u8],
) -> Vec<u8> {
    let ihl = 5 + options;
    let total = ihl * 4 + upper.len();
    let mut p = vec![0x40 | ihl as u8, tos];
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&frag.0.to_be_bytes());
    let field = frag.1 | if frag.2 { 0x2000 } else { 0 };
    p.extend_from_slice(&field.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    for _ in 0..options {
        p.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
    }
    p.extend_from_slice(upper);
    p
}

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

// ---- flow identification ------------------------------------------------------------------------

#[test]
fn ipv6_six_tuple_with_flow_label_and_traffic_class() {
    let p = v6(CN, MN_ADDR1, 0xb8, 0x12345, &[], 6, &tcp(40000, 443));
    let info = classify(&p).unwrap();
    assert_eq!(info.key, FlowKey::v6(CN, MN_ADDR1, 6, Some((40000, 443)), 0x12345));
    assert_eq!(info.traffic_class, 0xb8);
    assert_eq!(info.length as usize, p.len());
    assert_eq!(info.fragment, None);
    assert_eq!(info.key.to_string(), "[2001:db8:c::1]:40000 > [2001:db8:1:1::11]:443 proto 6 fl 0x12345");
    // Octets past the declared length (link padding) are not part of the packet.
    let mut padded = p.clone();
    padded.extend_from_slice(&[0; 6]);
    assert_eq!(classify(&padded).unwrap().length as usize, p.len());
}

#[test]
fn ipv6_extension_headers_are_walked() {
    let exts = [Ext::HopByHop, Ext::Routing, Ext::DestOpts(1), Ext::Ah { spi: 0x1000 }, Ext::DestOpts(0)];
    let p = v6(CN, MN_ADDR1, 0, 7, &exts, 17, &udp(5004, 5006));
    let info = classify(&p).unwrap();
    assert_eq!(info.key, FlowKey::v6(CN, MN_ADDR1, 17, Some((5004, 5006)), 7));
    assert_eq!(info.spi, Some(0x1000));

    // ESP ends the walk (RFC 4303): no ports, the SPI kept.
    let p = v6(CN, MN_ADDR1, 0, 0, &[Ext::DestOpts(0)], 50, &[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1, 0x99, 0x99]);
    let info = classify(&p).unwrap();
    assert_eq!(info.key.protocol, 50);
    assert_eq!(info.key.ports, PortSource::None);
    assert_eq!(info.spi, Some(0xdead_beef));

    // ICMPv6 echo: the identifier in place of ports; other ICMPv6 messages have none.
    let p = v6(CN, MN_ADDR1, 0, 0, &[], 58, &[128, 0, 0, 0, 0x12, 0x34, 0, 1]);
    let key = classify(&p).unwrap().key;
    assert_eq!((key.src_port, key.dst_port, key.ports), (0x1234, 0x1234, PortSource::EchoId));
    let p = v6(CN, MN_ADDR1, 0, 0, &[], 58, &[1, 4, 0, 0, 0, 0, 0, 0]);
    assert_eq!(classify(&p).unwrap().key.ports, PortSource::None);

    // RFC 8200 §4.3: Hop-by-Hop only right after the IPv6 header.
    let p = v6(CN, MN_ADDR1, 0, 0, &[Ext::Routing, Ext::HopByHop], 17, &udp(1, 2));
    assert_eq!(classify(&p), Err(ClassifyError::HopByHopNotFirst { offset: 48 }));
    // A chain longer than the walk accepts.
    let many: Vec<Ext> = (0..17).map(|_| Ext::DestOpts(0)).collect();
    assert_eq!(classify(&v6(CN, MN_ADDR1, 0, 0, &many, 17, &udp(1, 2))), Err(ClassifyError::TooManyExtensionHeaders));
    // Two Fragment headers.
    let two = [Ext::Fragment { offset: 0, more: true, id: 1 }, Ext::Fragment { offset: 0, more: true, id: 1 }];
    assert!(matches!(
        classify(&v6(CN, MN_ADDR1, 0, 0, &two, 17, &udp(1, 2))),
        Err(ClassifyError::RepeatedFragmentHeader { .. })
    ));
}

#[test]
fn ipv6_fragments_first_carries_ports_later_are_reassociated() {
    let mut c = Classifier::default();
    let first = v6(CN, MN_ADDR1, 0, 9, &[Ext::Fragment { offset: 0, more: true, id: 77 }], 17, &udp(5004, 5006));
    let later = v6(CN, MN_ADDR1, 0, 9, &[Ext::Fragment { offset: 185, more: false, id: 77 }], 17, &[0x55; 64]);
    let stray = v6(CN, MN_ADDR1, 0, 9, &[Ext::Fragment { offset: 185, more: false, id: 78 }], 17, &[0x55; 64]);

    // Pure classification: the later fragment has no ports.
    assert_eq!(classify(&later).unwrap().key, FlowKey::v6(CN, MN_ADDR1, 17, None, 9));

    // A later fragment before its first: keyed without ports.
    let early = c.classify(s(0), &later).unwrap();
    assert_eq!(early.key.ports, PortSource::None);
    let f = c.classify(s(1), &first).unwrap();
    assert_eq!(f.key, FlowKey::v6(CN, MN_ADDR1, 17, Some((5004, 5006)), 9));
    assert!(f.fragment.unwrap().is_first());
    let l = c.classify(s(1), &later).unwrap();
    assert_eq!(l.key, f.key, "a later fragment takes the flow of its first fragment");
    assert!(l.fragment.unwrap().is_later());
    assert_eq!(c.classify(s(1), &stray).unwrap().key.ports, PortSource::None, "another datagram");
    // Past the cache lifetime, forgotten.
    assert_eq!(c.classify(s(100), &later).unwrap().key.ports, PortSource::None);
    let st = c.stats();
    assert_eq!((st.reassociated, st.unmatched), (1, 3));

    // An atomic fragment (RFC 6946) is an ordinary packet.
    let atomic = v6(CN, MN_ADDR1, 0, 0, &[Ext::Fragment { offset: 0, more: false, id: 5 }], 6, &tcp(1, 2));
    let a = c.classify(s(2), &atomic).unwrap();
    assert_eq!(a.key.transport_ports(), Some((1, 2)));
    assert!(a.fragment.unwrap().is_atomic());
    assert_eq!(c.remembered(), 1, "the atomic fragment is not remembered, datagram 77 still is");
}

#[test]
fn fragment_cache_is_bounded() {
    let mut c = Classifier::new(pmip6_engine::flow::classify::FragmentCacheConfig { capacity: 8, lifetime: s(30) });
    for id in 0..100u32 {
        let p = v6(CN, MN_ADDR1, 0, 0, &[Ext::Fragment { offset: 0, more: true, id }], 17, &udp(id as u16, 1));
        c.classify(s(0), &p).unwrap();
        assert!(c.remembered() <= 8);
    }
    assert_eq!(c.stats().evicted, 92);
    // The newest are remembered, the oldest not.
    let later = |id| v6(CN, MN_ADDR1, 0, 0, &[Ext::Fragment { offset: 8, more: false, id }], 17, &[0; 8]);
    assert_eq!(c.classify(s(0), &later(99)).unwrap().key.src_port, 99);
    assert_eq!(c.classify(s(0), &later(0)).unwrap().key.ports, PortSource::None);
}

#[test]
fn ipv4_flows_options_echo_and_fragments() {
    let p = v4(CN4, HOA, 0x2e, 6, (1, 0, false), 2, &tcp(1234, 80));
    let info = classify(&p).unwrap();
    assert_eq!(info.key, FlowKey::v4(CN4, HOA, 6, Some((1234, 80))));
    assert_eq!(info.key.version, IpVersion::V4);
    assert_eq!(info.key.dst_ip(), std::net::IpAddr::V4(HOA));
    assert_eq!(info.traffic_class, 0x2e);
    // ICMP echo (RFC 792).
    let p = v4(CN4, HOA, 0, 1, (2, 0, false), 0, &[8, 0, 0, 0, 0xab, 0xcd, 0, 1]);
    assert_eq!(classify(&p).unwrap().key.src_port, 0xabcd);
    // Fragments: first with ports, later reassociated by (src, dst, protocol, id).
    let mut c = Classifier::default();
    let first = v4(CN4, HOA, 0, 17, (900, 0, true), 0, &udp(53, 3333));
    let later = v4(CN4, HOA, 0, 17, (900, 3, false), 0, &[0; 24]);
    assert_eq!(classify(&later).unwrap().key.ports, PortSource::None);
    let f = c.classify(s(0), &first).unwrap();
    assert_eq!(c.classify(s(0), &later).unwrap().key, f.key);
    let other_proto = v4(CN4, HOA, 0, 6, (900, 3, false), 0, &[0; 24]);
    assert_eq!(c.classify(s(0), &other_proto).unwrap().key.ports, PortSource::None);
    // Malformed headers.
    let mut bad = p.clone();
    bad[0] = 0x44;
    assert_eq!(classify(&bad), Err(ClassifyError::Ipv4HeaderLength(4)));
    let mut bad = p.clone();
    bad[2..4].copy_from_slice(&10u16.to_be_bytes());
    assert_eq!(classify(&bad), Err(ClassifyError::Ipv4TotalLength { total: 10, header: 20 }));
    assert_eq!(classify(&[0x50; 40]), Err(ClassifyError::UnknownVersion(5)));
    assert!(matches!(classify(&[]), Err(ClassifyError::Truncated { .. })));
}

#[test]
fn every_truncation_is_a_typed_error() {
    let exts = [Ext::HopByHop, Ext::DestOpts(2), Ext::Ah { spi: 1 }, Ext::Fragment { offset: 0, more: true, id: 3 }];
    // With the octets the key needs: through the ports (TCP, UDP) or the echo identifier.
    let packets = [
        (v6(CN, MN_ADDR1, 0, 0, &exts, 6, &tcp(1, 2)), 40 + 8 + 24 + 24 + 8 + 4),
        (v6(CN, MN_ADDR1, 0, 0, &[], 58, &[128, 0, 0, 0, 0, 1, 0, 1]), 40 + 6),
        (v4(CN4, HOA, 0, 17, (1, 0, true), 3, &udp(1, 2)), 32 + 4),
    ];
    for (p, needed) in packets {
        // The headers the key needs end within the first octets of the upper layer; cut
        // anywhere before that, the packet is refused, never accepted with a wrong key.
        for len in 0..needed {
            let mut cut = p[..len].to_vec();
            // Keep the declared lengths consistent with the cut, as a real short packet has.
            if len >= 6 && p[0] >> 4 == 6 {
                let pl = len.saturating_sub(40) as u16;
                cut[4..6].copy_from_slice(&pl.to_be_bytes());
            }
            if len >= 4 && p[0] >> 4 == 4 {
                cut[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            }
            assert!(classify(&cut).is_err(), "length {len} of {} accepted", p.len());
        }
        let mut exact = p[..needed].to_vec();
        if p[0] >> 4 == 6 {
            exact[4..6].copy_from_slice(&((needed - 40) as u16).to_be_bytes());
        } else {
            exact[2..4].copy_from_slice(&(needed as u16).to_be_bytes());
        }
        assert!(classify(&exact).is_ok(), "the key's octets alone suffice");
        assert!(classify(&p).is_ok());
    }
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..200), version in prop_oneof![Just(0x45u8), Just(0x60u8), any::<u8>()]) {
            let mut data = data;
            if let Some(b) = data.first_mut() { *b = version; }
            let _ = classify(&data);
            let mut c = Classifier::default();
            let _ = c.classify(s(0), &data);
        }

        #[test]
        fn mutated_valid_packets(pos in 0usize..120, value in any::<u8>(), cut in 0usize..130) {
            let exts = [Ext::HopByHop, Ext::DestOpts(1), Ext::Fragment { offset: 0, more: true, id: 3 }];
            let mut p = v6(CN, MN_ADDR1, 0, 0, &exts, 6, &tcp(1, 2));
            if let Some(b) = p.get_mut(pos) { *b = value; }
            p.truncate(cut);
            let mut engine = FlowSteering::new(FlowConfig::default());
            let _ = engine.handle_packet(s(0), &p);
        }
    }
}

// ---- the world: engine + a set model of the data plane -----------------------------------------

struct World {
    engine: FlowSteering,
    installed: HashSet<Steering>,
    requests: Vec<PrefixRequest>,
    batches: usize,
    now: Duration,
}

fn mn1() -> MnIdentifier {
    MnIdentifier::nai("mn1@example.net")
}
fn mn2() -> MnIdentifier {
    MnIdentifier::nai("mn2@example.net")
}
fn lli(last: u8) -> LinkLayerId {
    LinkLayerId::new(&[2, 0, 0, 0, 0, last]).unwrap()
}

/// if1: WLAN at MAG1 (pref1); if2: 3G at MAG2 (pref2). With `muho`, each MAG also routes the
/// other prefix (draft §5.2.1), as in the draft's Figure 4.
fn wlan(muho: bool) -> AttachmentView {
    AttachmentView {
        proxy_coa: MAG1,
        access_technology: Att::Ieee80211,
        mn_link_layer_id: Some(lli(1)),
        prefixes: if muho { vec![pref1(), pref2()] } else { vec![pref1()] },
        ipv4_home_address: Some(HOA),
    }
}
fn umts(muho: bool) -> AttachmentView {
    AttachmentView {
        proxy_coa: MAG2,
        access_technology: Att::Utran,
        mn_link_layer_id: Some(lli(2)),
        prefixes: if muho { vec![pref2(), pref1()] } else { vec![pref2()] },
        ipv4_home_address: Some(HOA),
    }
}

fn view(attachments: Vec<AttachmentView>) -> MobileNodeView {
    MobileNodeView { prefixes: vec![pref1(), pref2()], ipv4_home_addresses: vec![HOA], attachments }
}

impl World {
    fn new(config: FlowConfig) -> Self {
        Self {
            engine: FlowSteering::new(config),
            installed: HashSet::new(),
            requests: Vec::new(),
            batches: 0,
            now: s(0),
        }
    }

    /// The draft's Figure 4: mn1 with both interfaces attached, MuHo on.
    fn figure4(config: FlowConfig) -> Self {
        let mut w = Self::new(config);
        w.engine.update_mobile_node(&mn1(), view(vec![wlan(true), umts(true)])).unwrap();
        w.sync();
        w
    }

    /// Applies every pending batch to the model; returns how many batches there were.
    fn sync(&mut self) -> usize {
        let mut n = 0;
        while let Some(batch) = self.engine.poll_batch() {
            assert!(!batch.intents.is_empty() || !batch.prefix_requests.is_empty(), "empty batch");
            n += 1;
            for intent in batch.intents {
                match intent {
                    SteeringIntent::Add(st) => assert!(self.installed.insert(st.clone()), "double add of {st:?}"),
                    SteeringIntent::Remove(st) => assert!(self.installed.remove(&st), "remove of absent {st:?}"),
                }
            }
            self.requests.extend(batch.prefix_requests);
        }
        let engine: HashSet<Steering> = self.engine.installed().into_iter().collect();
        assert_eq!(engine.len(), self.engine.installed().len(), "engine reports a duplicate");
        assert_eq!(self.installed, engine, "data plane and engine disagree");
        // Per-flow mode: exactly one entry per flow key.
        let keys: HashSet<FlowKey> = self
            .installed
            .iter()
            .filter_map(|s| match s {
                Steering::Flow { key, .. } => Some(*key),
                _ => None,
            })
            .collect();
        assert_eq!(keys.len(), self.installed.iter().filter(|s| matches!(s, Steering::Flow { .. })).count());
        self.batches += n;
        n
    }

    fn packet(&mut self, p: &[u8]) -> Verdict {
        let v = self.engine.handle_packet(self.now, p).unwrap();
        self.sync();
        v
    }

    fn route_of(&self, p: &[u8]) -> Route {
        let key = classify(p).unwrap().key;
        self.engine.flow_by_key(&key).expect("flow").route
    }

    fn fid_of(&self, p: &[u8]) -> u16 {
        let key = classify(p).unwrap().key;
        self.engine.flow_by_key(&key).expect("flow").fid
    }
}

fn sel6() -> Ipv6Selector {
    Ipv6Selector::default()
}

fn dport(port: u16) -> TrafficSelector {
    TrafficSelector::Ipv6(Ipv6Selector { dst_port: Some(FieldRange::exact(port)), ..sel6() })
}

fn op(selector: TrafficSelector, target: TargetSpec) -> OperatorRule {
    OperatorRule { rule: Rule::new(selector, target), scope: Scope::AllMobileNodes, locked: false }
}

fn locked(selector: TrafficSelector, target: TargetSpec) -> OperatorRule {
    OperatorRule { locked: true, ..op(selector, target) }
}

const VIDEO: u16 = 554;
const VOIP: u16 = 5060;

// ---- decisions: who decides (draft §4.4) --------------------------------------------------------

#[test]
fn lma_driven_video_over_wlan_voip_over_3g() {
    let mut w = World::figure4(FlowConfig::default());
    w.engine
        .set_operator_rules(vec![
            op(dport(VIDEO), TargetSpec::AccessTechnology(Att::Ieee80211)),
            op(dport(VOIP), TargetSpec::AccessTechnology(Att::Utran)),
        ])
        .unwrap();
    // Both flows go to the same MN address (pref2::if2) yet take different MAGs (draft §4.2).
    let video = udp6(CN, MN_ADDR2, 40000, VIDEO);
    let voip = udp6(CN, MN_ADDR2, 40001, VOIP);
    let web = udp6(CN, MN_ADDR2, 40002, 80);
    assert!(matches!(w.packet(&video), Verdict::Flow { route: Route::Tunnel(MAG1), new: true, .. }));
    assert!(matches!(w.packet(&voip), Verdict::Flow { route: Route::Tunnel(MAG2), new: true, .. }));
    // No rule: the base per-prefix route of RFC 5213.
    assert!(matches!(w.packet(&web), Verdict::Flow { route: Route::PrefixRoute, .. }));
    assert!(matches!(w.packet(&video), Verdict::Flow { route: Route::Tunnel(MAG1), new: false, .. }));
    let f = w.engine.flow_by_key(&classify(&video).unwrap().key).unwrap();
    assert_eq!((f.packets, f.rule.map(|r| r.tier)), (2, Some(Tier::OperatorDefault)));
    // A packet for nobody's address.
    assert_eq!(w.packet(&udp6(CN, OTHER_ADDR, 1, 2)), Verdict::NotMobileNode);
    assert_eq!(w.installed.len(), 3);
}

#[test]
fn terminal_driven_rules_steer_the_mobile_nodes_own_flows() {
    let mut w = World::figure4(FlowConfig::default());
    // No operator rule; the MN asks for its pref1 traffic from CN2 over 3G, by interface.
    let sel = TrafficSelector::Ipv6(Ipv6Selector {
        src_addr: Some(FieldRange::exact(CN2)),
        dst_addr: Some(FieldRange::new(MN_ADDR1, MN_ADDR1)),
        ..sel6()
    });
    w.engine.set_mobile_node_rules(&mn1(), vec![Rule::new(sel, TargetSpec::Interface(lli(2)))]).unwrap();
    w.sync();
    assert!(matches!(w.packet(&udp6(CN2, MN_ADDR1, 1, 2)), Verdict::Flow { route: Route::Tunnel(MAG2), .. }));
    assert!(matches!(w.packet(&udp6(CN, MN_ADDR1, 1, 2)), Verdict::Flow { route: Route::PrefixRoute, .. }));
    let f = w.engine.flow_by_key(&classify(&udp6(CN2, MN_ADDR1, 1, 2)).unwrap().key).unwrap();
    assert_eq!(f.rule.map(|r| r.tier), Some(Tier::MobileNode));
    // The policy handed to the MN lists its rule in its tier.
    let eff = w.engine.effective_rules(&mn1());
    assert_eq!(eff.len(), 1);
    assert_eq!(eff[0].0.tier, Tier::MobileNode);
}

#[test]
fn hybrid_conflicts_locked_beats_mobile_node_beats_operator_default_beats_base_route() {
    let mut w = World::figure4(FlowConfig::default());
    let port_range = |a, b| TrafficSelector::Ipv6(Ipv6Selector { dst_port: Some(FieldRange::new(a, b)), ..sel6() });
    w.engine
        .set_operator_rules(vec![
            // Operator defaults: 5000-5999 over WLAN, 7000 over 3G.
            op(port_range(5000, 5999), TargetSpec::AccessTechnology(Att::Ieee80211)),
            op(dport(7000), TargetSpec::AccessTechnology(Att::Utran)),
            // Locked: 5060 (VoIP) over 3G, whatever the MN says.
            locked(dport(VOIP), TargetSpec::AccessTechnology(Att::Utran)),
        ])
        .unwrap();
    // The MN overrides: all of 5000-5999 and 7000 to its WLAN... but also asks for 6000 over 3G.
    let mine = |sel| Rule::new(sel, TargetSpec::Interface(lli(1)));
    w.engine
        .set_mobile_node_rules(
            &mn1(),
            vec![
                mine(port_range(5000, 5999)),
                mine(dport(7000)),
                Rule::new(dport(6000), TargetSpec::AccessTechnology(Att::Utran)),
            ],
        )
        .unwrap();
    w.sync();
    let route = |w: &mut World, port| match w.packet(&udp6(CN, MN_ADDR1, 1000 + port % 1000, port)) {
        Verdict::Flow { route, .. } => route,
        v => panic!("{v:?}"),
    };
    assert_eq!(route(&mut w, VOIP), Route::Tunnel(MAG2), "locked operator rule beats the MN rule");
    assert_eq!(route(&mut w, 7000), Route::Tunnel(MAG1), "MN rule beats the operator default");
    assert_eq!(route(&mut w, 6000), Route::Tunnel(MAG2), "MN rule where the operator has none");
    assert_eq!(route(&mut w, 5500), Route::Tunnel(MAG1));
    assert_eq!(route(&mut w, 8000), Route::PrefixRoute, "no rule: base route");
    let tier = |port: u16| {
        let k = classify(&udp6(CN, MN_ADDR1, 1000 + port % 1000, port)).unwrap().key;
        w.engine.flow_by_key(&k).unwrap().rule.map(|r| r.tier)
    };
    assert_eq!(tier(VOIP), Some(Tier::Locked));
    assert_eq!(tier(7000), Some(Tier::MobileNode));
    assert_eq!(tier(8000), None);
    // Without the MN rules, the operator default applies again to the existing flow.
    w.engine.set_mobile_node_rules(&mn1(), vec![]).unwrap();
    w.sync();
    assert_eq!(w.route_of(&udp6(CN, MN_ADDR1, 1000, 7000)), Route::Tunnel(MAG2));
    // And the effective policy lists locked first, then defaults.
    let tiers: Vec<Tier> = w.engine.effective_rules(&mn1()).iter().map(|(r, _)| r.tier).collect();
    assert_eq!(tiers, [Tier::Locked, Tier::OperatorDefault, Tier::OperatorDefault]);
}

#[test]
fn hybrid_limits_what_a_mobile_node_may_pick() {
    let limits = MnRuleLimits {
        access_technologies: Some(vec![Att::Ieee80211]),
        allow_mag_targets: false,
        allow_split: false,
        ..MnRuleLimits::default()
    };
    let mut w = World::figure4(FlowConfig { mn_rules: limits, ..FlowConfig::default() });
    let err =
        w.engine.set_mobile_node_rules(&mn1(), vec![Rule::new(dport(1), TargetSpec::AccessTechnology(Att::Utran))]);
    assert!(matches!(err.unwrap_err().error, RuleError::TargetNotAllowed { .. }));
    let err = w.engine.set_mobile_node_rules(&mn1(), vec![Rule::new(dport(1), TargetSpec::Mag(MAG2))]).unwrap_err();
    assert_eq!(err.to_string(), "rule 0: target not allowed: mobile node rules may not name a MAG");
    let err = w.engine.set_mobile_node_rules(&mn1(), vec![Rule::new(dport(1), TargetSpec::Balance)]).unwrap_err();
    assert!(matches!(err.error, RuleError::TargetNotAllowed { .. }));
    // An interface target is accepted, but only used while that interface is of an allowed
    // technology: if2 is 3G, so the rule falls through to the base route.
    w.engine.set_mobile_node_rules(&mn1(), vec![Rule::new(dport(1), TargetSpec::Interface(lli(2)))]).unwrap();
    w.sync();
    assert!(matches!(w.packet(&udp6(CN, MN_ADDR1, 9, 1)), Verdict::Flow { route: Route::PrefixRoute, .. }));
    // LMA-driven only: MN rules refused outright.
    let mut w = World::figure4(FlowConfig {
        mn_rules: MnRuleLimits { enabled: false, ..MnRuleLimits::default() },
        ..FlowConfig::default()
    });
    let err = w.engine.set_mobile_node_rules(&mn1(), vec![]).unwrap_err();
    assert_eq!(err.error, RuleError::MobileNodeRulesDisabled);
}

#[test]
fn bad_mobile_node_input_is_rejected_with_a_reason_and_nothing_applied() {
    let mut w = World::figure4(FlowConfig::default());
    w.engine.update_mobile_node(&mn2(), MobileNodeView { prefixes: vec![other_pref()], ..view(vec![]) }).unwrap_err();
    w.engine
        .update_mobile_node(
            &mn2(),
            MobileNodeView { prefixes: vec![other_pref()], ipv4_home_addresses: vec![], attachments: vec![] },
        )
        .unwrap();
    w.sync();
    let good = Rule::new(dport(1), TargetSpec::AccessTechnology(Att::Ieee80211));
    // Another MN's prefix.
    let theirs = TrafficSelector::Ipv6(Ipv6Selector { dst_addr: Some(FieldRange::exact(OTHER_ADDR)), ..sel6() });
    let err = w
        .engine
        .set_mobile_node_rules(&mn1(), vec![good.clone(), Rule::new(theirs, TargetSpec::Interface(lli(1)))])
        .unwrap_err();
    assert_eq!((err.index, err.error.clone()), (1, RuleError::DestinationNotOwn));
    assert_eq!(err.to_string(), "rule 1: destination addresses are not within the mobile node's own prefixes");
    // A range spilling out of its own prefix.
    let spill = TrafficSelector::Ipv6(Ipv6Selector {
        dst_addr: Some(FieldRange::new(MN_ADDR1, Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 0))),
        ..sel6()
    });
    assert_eq!(
        w.engine.set_mobile_node_rules(&mn1(), vec![Rule::new(spill, TargetSpec::Balance)]).unwrap_err().error,
        RuleError::DestinationNotOwn
    );
    // IPv4: only its own home address.
    let v4 = |a| TrafficSelector::Ipv4(Ipv4Selector { dst_addr: Some(FieldRange::exact(a)), ..Default::default() });
    assert!(w.engine.set_mobile_node_rules(&mn1(), vec![Rule::new(v4(HOA), TargetSpec::Balance)]).is_ok());
    assert_eq!(
        w.engine.set_mobile_node_rules(&mn1(), vec![Rule::new(v4(CN4), TargetSpec::Balance)]).unwrap_err().error,
        RuleError::DestinationNotOwn
    );
    // Malformed selectors.
    let unknown = TrafficSelector::Unknown { format: 9, data: vec![0; 4] };
    assert_eq!(
        w.engine.set_mobile_node_rules(&mn1(), vec![Rule::new(unknown, TargetSpec::Balance)]).unwrap_err().error,
        RuleError::UnsupportedSelectorFormat(9)
    );
    let backwards = TrafficSelector::Ipv6(Ipv6Selector { dst_port: Some(FieldRange::new(90, 80)), ..sel6() });
    assert_eq!(
        w.engine.set_mobile_node_rules(&mn1(), vec![Rule::new(backwards, TargetSpec::Balance)]).unwrap_err().error,
        RuleError::BackwardsRange { field: "destination port" }
    );
    let label = TrafficSelector::Ipv6(Ipv6Selector { flow_label: Some(FieldRange::exact(0x10_0000)), ..sel6() });
    assert_eq!(
        w.engine.set_mobile_node_rules(&mn1(), vec![Rule::new(label, TargetSpec::Balance)]).unwrap_err().error,
        RuleError::FlowLabelOutOfRange(0x10_0000)
    );
    let zero = TargetSpec::Split(vec![(Choice::AccessTechnology(Att::Ieee80211), 0)]);
    assert_eq!(
        w.engine.set_mobile_node_rules(&mn1(), vec![Rule::new(dport(1), zero)]).unwrap_err().error,
        RuleError::EmptySplit
    );
    // Thousands of rules: refused before anything is stored.
    let flood = vec![good.clone(); 5000];
    assert_eq!(
        w.engine.set_mobile_node_rules(&mn1(), flood).unwrap_err().error,
        RuleError::TooManyRules { submitted: 5000, limit: 32 }
    );
    // An unknown MN.
    assert_eq!(
        w.engine.set_mobile_node_rules(&MnIdentifier::nai("x@y"), vec![]).unwrap_err().error,
        RuleError::UnknownMobileNode
    );
    // The last accepted set (the IPv4 one) is the only one in force.
    assert_eq!(w.engine.effective_rules(&mn1()).len(), 1);
    assert_eq!(w.sync(), 0, "refusals change nothing");
    // Updates claiming another MN's prefix are refused too.
    assert_eq!(
        w.engine.update_mobile_node(&mn2(), MobileNodeView { prefixes: vec![pref1()], ..Default::default() }),
        Err(MobileNodeError::PrefixOwnedByOther(pref1()))
    );
    assert_eq!(
        w.engine.update_mobile_node(
            &mn2(),
            MobileNodeView {
                prefixes: (0..20).map(|i| Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, 9, i, 0, 0, 0, 0), 64)).collect(),
                ..Default::default()
            }
        ),
        Err(MobileNodeError::TooManyAddresses)
    );
}

#[test]
fn rule_for_an_interface_not_attached_falls_back() {
    // if1 (WLAN) not attached: only 3G.
    let mut w = World::new(FlowConfig::default());
    w.engine.update_mobile_node(&mn1(), view(vec![umts(true)])).unwrap();
    w.engine
        .set_operator_rules(vec![
            op(dport(VIDEO), TargetSpec::Interface(lli(1))),
            op(dport(VIDEO), TargetSpec::Mag(MAG3)),
            op(dport(VIDEO), TargetSpec::AccessTechnology(Att::Utran)),
            OperatorRule {
                rule: Rule {
                    selector: dport(80),
                    target: TargetSpec::Interface(lli(1)),
                    fallback: Fallback::BaseRoute,
                },
                scope: Scope::AllMobileNodes,
                locked: false,
            },
            op(dport(80), TargetSpec::AccessTechnology(Att::Utran)),
        ])
        .unwrap();
    w.sync();
    let video = udp6(CN, MN_ADDR1, 1, VIDEO);
    let web = udp6(CN, MN_ADDR1, 1, 80);
    // NextRule: on to the third rule.
    assert!(matches!(w.packet(&video), Verdict::Flow { route: Route::Tunnel(MAG2), .. }));
    let f = w.engine.flow_by_key(&classify(&video).unwrap().key).unwrap();
    assert_eq!((f.rule.unwrap().index, f.preferred), (2, false));
    // BaseRoute: straight to the per-prefix route, the later rule not consulted.
    assert!(matches!(w.packet(&web), Verdict::Flow { route: Route::PrefixRoute, .. }));
    // WLAN attaches: both fallback flows return to their preferred target, in one batch.
    w.engine.update_mobile_node(&mn1(), view(vec![wlan(true), umts(true)])).unwrap();
    assert_eq!(w.sync(), 1);
    assert_eq!(w.route_of(&video), Route::Tunnel(MAG1));
    assert_eq!(w.route_of(&web), Route::Tunnel(MAG1));
    assert!(w.engine.flow_by_key(&classify(&video).unwrap().key).unwrap().preferred);
}

#[test]
fn selectors_with_ranges() {
    let mut w = World::figure4(FlowConfig::default());
    let sel = TrafficSelector::Ipv6(Ipv6Selector {
        src_addr: Some(FieldRange::new(CN, CN2)),
        dst_addr: Some(FieldRange::new(MN_ADDR1, Ipv6Addr::new(0x2001, 0xdb8, 1, 1, 0, 0, 0, 0xff))),
        flow_label: Some(FieldRange::new(0x100, 0x1ff)),
        src_port: Some(FieldRange::new(1024, 2047)),
        traffic_class: Some(FieldRange::new(0xb8, 0xbb)), // DSCP 46 (EF)
        next_header: Some(FieldRange::new(6, 17)),
        ..sel6()
    });
    let v4sel = TrafficSelector::Ipv4(Ipv4Selector {
        dst_addr: Some(FieldRange::new(Ipv4Addr::new(10, 1, 0, 0), Ipv4Addr::new(10, 1, 0, 255))),
        dst_port: Some(FieldRange::new(8000, 8080)),
        protocol: Some(FieldRange::exact(6)),
        ..Default::default()
    });
    w.engine
        .set_operator_rules(vec![op(sel, TargetSpec::Mag(MAG2)), op(v4sel, TargetSpec::Interface(lli(2)))])
        .unwrap();
    let pkt = |src, dst, fl, sport, tc, nh| v6(src, dst, tc, fl, &[], nh, &udp(sport, 9));
    let cases = [
        (pkt(CN, MN_ADDR1, 0x100, 1024, 0xb8, 17), true),
        (pkt(CN2, MN_ADDR1, 0x1ff, 2047, 0xbb, 6), true),
        (pkt(CN, MN_ADDR1, 0x1ff, 2047, 0xb9, 6), true), // ECN bits ignored (RFC 6088: DS bits)
        (pkt(CN, MN_ADDR1, 0x200, 1024, 0xb8, 17), false),
        (pkt(CN, MN_ADDR1, 0x100, 2048, 0xb8, 17), false),
        (pkt(CN, MN_ADDR1, 0x100, 1025, 0x00, 17), false), // the traffic class is not in the key
        (pkt(CN, MN_ADDR1, 0x100, 1024, 0xb8, 58), false),
        (pkt(Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 3), MN_ADDR1, 0x100, 1024, 0xb8, 17), false),
        (pkt(CN, MN_ADDR2, 0x100, 1024, 0xb8, 17), false),
    ];
    for (i, (p, hit)) in cases.iter().enumerate() {
        let want = if *hit { Route::Tunnel(MAG2) } else { Route::PrefixRoute };
        match w.packet(p) {
            Verdict::Flow { route, .. } => assert_eq!(route, want, "case {i}"),
            v => panic!("case {i}: {v:?}"),
        }
    }
    let v4p = |dport| v4(CN4, HOA, 0, 6, (1, 0, false), 0, &tcp(999, dport));
    assert!(matches!(w.packet(&v4p(8080)), Verdict::Flow { route: Route::Tunnel(MAG2), .. }));
    assert!(matches!(w.packet(&v4p(8081)), Verdict::Flow { route: Route::PrefixRoute, .. }));
    // A port selector never matches a port-less key (ICMP echo).
    w.engine.set_operator_rules(vec![op(dport(0x1234), TargetSpec::Mag(MAG2))]).unwrap();
    let echo = v6(CN, MN_ADDR1, 0, 0, &[], 58, &[128, 0, 0, 0, 0x12, 0x34, 0, 1]);
    assert!(matches!(w.packet(&echo), Verdict::Flow { route: Route::PrefixRoute, .. }));
}

// ---- moves --------------------------------------------------------------------------------------

#[test]
fn a_move_switches_one_flow_and_not_the_other() {
    let mut w = World::figure4(FlowConfig::default());
    w.engine.set_operator_rules(vec![op(dport(VIDEO), TargetSpec::AccessTechnology(Att::Ieee80211))]).unwrap();
    let a = udp6(CN, MN_ADDR1, 40000, VIDEO);
    let b = udp6(CN, MN_ADDR1, 40001, VIDEO);
    w.packet(&a);
    w.packet(&b);
    assert_eq!((w.route_of(&a), w.route_of(&b)), (Route::Tunnel(MAG1), Route::Tunnel(MAG1)));
    let fid = w.fid_of(&a);
    assert_ne!(fid, w.fid_of(&b));
    let before = w.batches;
    assert_eq!(w.engine.move_flow(&mn1(), fid, TargetSpec::AccessTechnology(Att::Utran)), Ok(Route::Tunnel(MAG2)));
    assert_eq!(w.sync(), 1, "one move, one batch");
    assert_eq!(w.batches, before + 1);
    assert_eq!((w.route_of(&a), w.route_of(&b)), (Route::Tunnel(MAG2), Route::Tunnel(MAG1)));
    let summary = w.engine.flow(&mn1(), fid).unwrap();
    assert!(summary.pinned);
    assert_eq!(summary.rule.unwrap().tier, Tier::Pinned);
    // A pinned flow survives a policy change; unpinned, it follows the policy again.
    w.engine.set_operator_rules(vec![op(dport(VIDEO), TargetSpec::Mag(MAG1))]).unwrap();
    w.sync();
    assert_eq!(w.route_of(&a), Route::Tunnel(MAG2));
    assert_eq!(w.engine.unpin(&mn1(), fid), Ok(Route::Tunnel(MAG1)));
    w.sync();
    // Moving by selector: both video flows (and nothing else).
    w.packet(&udp6(CN, MN_ADDR1, 40002, 80));
    assert_eq!(w.engine.move_selector(&mn1(), &dport(VIDEO), TargetSpec::Mag(MAG2)), Ok(2));
    w.sync();
    assert_eq!((w.route_of(&a), w.route_of(&b)), (Route::Tunnel(MAG2), Route::Tunnel(MAG2)));
    assert_eq!(w.route_of(&udp6(CN, MN_ADDR1, 40002, 80)), Route::PrefixRoute);
    // Errors.
    assert_eq!(w.engine.move_flow(&mn1(), 999, TargetSpec::Balance), Err(MoveError::UnknownFlow(999)));
    assert_eq!(w.engine.move_flow(&mn2(), 1, TargetSpec::Balance), Err(MoveError::UnknownMobileNode));
    assert_eq!(
        w.engine.move_flow(&mn1(), fid, TargetSpec::Split(vec![])),
        Err(MoveError::Invalid(RuleError::EmptySplit))
    );
}

#[test]
fn detaching_an_attachment_moves_its_flows_to_a_live_one_in_one_call() {
    let mut w = World::figure4(FlowConfig::default());
    w.engine
        .set_operator_rules(vec![
            op(dport(VIDEO), TargetSpec::AccessTechnology(Att::Ieee80211)),
            op(dport(VOIP), TargetSpec::AccessTechnology(Att::Utran)),
        ])
        .unwrap();
    let videos: Vec<Vec<u8>> = (0..5).map(|i| udp6(CN, MN_ADDR1, 30000 + i, VIDEO)).collect();
    let voip = udp6(CN, MN_ADDR2, 1, VOIP);
    for p in &videos {
        w.packet(p);
    }
    w.packet(&voip);
    // WLAN goes: every video flow moves at once, the VoIP flow stays.
    w.engine.update_mobile_node(&mn1(), view(vec![umts(true)])).unwrap();
    assert_eq!(w.sync(), 1, "one call, one batch");
    for p in &videos {
        assert_eq!(w.route_of(p), Route::PrefixRoute, "no rule target left: base route");
    }
    assert_eq!(w.route_of(&voip), Route::Tunnel(MAG2));
    assert_eq!(w.engine.stats().moves, 5);
    // With a balance rule behind the WLAN one, they would go to the 3G MAG instead.
    w.engine
        .set_operator_rules(vec![
            op(dport(VIDEO), TargetSpec::AccessTechnology(Att::Ieee80211)),
            op(dport(VIDEO), TargetSpec::Balance),
            op(dport(VOIP), TargetSpec::AccessTechnology(Att::Utran)),
        ])
        .unwrap();
    w.sync();
    for p in &videos {
        assert_eq!(w.route_of(p), Route::Tunnel(MAG2));
    }
    // WLAN back: the video flows (on a fallback) return to it.
    w.engine.update_mobile_node(&mn1(), view(vec![wlan(true), umts(true)])).unwrap();
    assert_eq!(w.sync(), 1);
    for p in &videos {
        assert_eq!(w.route_of(p), Route::Tunnel(MAG1));
    }
    // A pinned flow whose MAG goes fails over too.
    let fid = w.fid_of(&voip);
    w.engine.move_flow(&mn1(), fid, TargetSpec::Mag(MAG1)).unwrap();
    w.engine.update_mobile_node(&mn1(), view(vec![umts(true)])).unwrap();
    w.sync();
    assert_eq!(w.route_of(&voip), Route::Tunnel(MAG2));
}

#[test]
fn weighted_split_is_deterministic_proportional_and_sticky() {
    let split = TargetSpec::Split(vec![
        (Choice::AccessTechnology(Att::Ieee80211), 3),
        (Choice::AccessTechnology(Att::Utran), 1),
    ]);
    let run = || {
        let mut w = World::figure4(FlowConfig::default());
        w.engine.set_operator_rules(vec![op(dport(VIDEO), split.clone())]).unwrap();
        let routes: Vec<Route> = (0..4000)
            .map(|i| match w.engine.handle_packet(s(0), &udp6(CN, MN_ADDR1, 10000 + i, VIDEO)).unwrap() {
                Verdict::Flow { route, .. } => route,
                v => panic!("{v:?}"),
            })
            .collect();
        w.sync();
        (w, routes)
    };
    let (mut w, routes) = run();
    assert_eq!(routes, run().1, "same inputs, same placement");
    let on_wlan = routes.iter().filter(|r| **r == Route::Tunnel(MAG1)).count();
    assert!((2800..3200).contains(&on_wlan), "3:1 split put {on_wlan} of 4000 on WLAN");
    // A third attachment appears (another 3G MAG): no split flow moves (they are all on live
    // members).
    let mut third = umts(true);
    third.proxy_coa = MAG3;
    third.mn_link_layer_id = Some(lli(3));
    w.engine.update_mobile_node(&mn1(), view(vec![wlan(true), umts(true), third.clone()])).unwrap();
    assert_eq!(w.sync(), 0);
    // 3G at MAG2 goes: only its flows move, to the live members.
    w.engine.update_mobile_node(&mn1(), view(vec![wlan(true), third])).unwrap();
    w.sync();
    for (i, before) in routes.iter().enumerate() {
        let now = w.route_of(&udp6(CN, MN_ADDR1, 10000 + i as u16, VIDEO));
        if *before == Route::Tunnel(MAG1) {
            assert_eq!(now, Route::Tunnel(MAG1), "flow {i} on a live member moved");
        } else {
            assert_eq!(now, Route::Tunnel(MAG3), "flow {i} failed over to the other 3G MAG");
        }
    }
}

#[test]
fn make_before_break_waits_for_the_target_mag_to_learn_the_prefix() {
    // Unique prefixes, no MuHo: MAG2 does not route pref1.
    let mut w = World::new(FlowConfig::default());
    w.engine.update_mobile_node(&mn1(), view(vec![wlan(false), umts(false)])).unwrap();
    w.sync();
    let flow = udp6(CN, MN_ADDR1, 1, VIDEO);
    w.packet(&flow);
    assert_eq!(w.route_of(&flow), Route::PrefixRoute);
    let fid = w.fid_of(&flow);
    // Move to 3G: the flow stays where it is, and MAG2 must first learn pref1 (RFC 7864 UPN).
    assert_eq!(w.engine.move_flow(&mn1(), fid, TargetSpec::AccessTechnology(Att::Utran)), Ok(Route::PrefixRoute));
    w.sync();
    assert_eq!(w.requests, vec![PrefixRequest { mn: mn1(), peer: MAG2, prefix: pref1() }]);
    assert!(!w.engine.flow(&mn1(), fid).unwrap().preferred);
    // Asked once, however often the decision is repeated.
    w.engine.set_operator_rules(vec![]).unwrap();
    w.sync();
    assert_eq!(w.requests.len(), 1);
    // The MAG now routes pref1 (UPA, then PBA with the new prefix set): the flow moves.
    let mut u = umts(false);
    u.prefixes.push(pref1());
    w.engine.update_mobile_node(&mn1(), view(vec![wlan(false), u])).unwrap();
    assert_eq!(w.sync(), 1);
    assert_eq!(w.route_of(&flow), Route::Tunnel(MAG2));
    assert!(w.engine.flow(&mn1(), fid).unwrap().preferred);

    // A refusal (UPA 132): the waiting flow falls back instead.
    let other = udp6(CN, MN_ADDR2, 2, VIDEO);
    w.packet(&other);
    let fid2 = w.fid_of(&other);
    w.engine.move_flow(&mn1(), fid2, TargetSpec::Interface(lli(1))).unwrap();
    w.sync();
    assert_eq!(w.requests.last(), Some(&PrefixRequest { mn: mn1(), peer: MAG1, prefix: pref2() }));
    assert_eq!(w.route_of(&other), Route::PrefixRoute);
    w.engine.prefix_refused(&mn1(), MAG1, pref2());
    w.sync();
    assert_eq!(w.route_of(&other), Route::PrefixRoute);
    assert_eq!(w.engine.flow(&mn1(), fid2).unwrap().rule, None, "pin unusable: policy, then base route");
}

#[test]
fn the_mobile_node_leaving_withdraws_every_steering_entry() {
    let mut w = World::figure4(FlowConfig::default());
    w.engine
        .update_mobile_node(
            &mn2(),
            MobileNodeView {
                prefixes: vec![other_pref()],
                ipv4_home_addresses: vec![],
                attachments: vec![wlan(false)],
            },
        )
        .unwrap();
    w.engine.set_operator_rules(vec![op(dport(VIDEO), TargetSpec::Balance)]).unwrap();
    for i in 0..20 {
        w.packet(&udp6(CN, MN_ADDR1, i, VIDEO));
        w.packet(&udp6(CN, MN_ADDR2, i, 80));
        w.packet(&v4(CN4, HOA, 0, 17, (i, 0, false), 0, &udp(i, 53)));
    }
    w.packet(&udp6(CN, OTHER_ADDR, 1, VIDEO));
    assert_eq!(w.installed.len(), 61);
    assert_eq!(w.engine.remove_mobile_node(&mn1()), 60);
    assert_eq!(w.sync(), 1);
    assert_eq!(w.installed.len(), 1, "only mn2's flow is left");
    assert!(w.engine.flows(&mn1()).is_empty());
    assert_eq!(w.packet(&udp6(CN, MN_ADDR1, 1, VIDEO)), Verdict::NotMobileNode);
    assert_eq!(w.engine.remove_mobile_node(&mn1()), 0);
    // Dropping a prefix drops its flows.
    w.engine.update_mobile_node(&mn1(), view(vec![wlan(true)])).unwrap();
    w.packet(&udp6(CN, MN_ADDR1, 1, 1));
    w.packet(&udp6(CN, MN_ADDR2, 1, 1));
    w.engine
        .update_mobile_node(
            &mn1(),
            MobileNodeView { prefixes: vec![pref2()], ipv4_home_addresses: vec![], attachments: vec![] },
        )
        .unwrap();
    w.sync();
    assert_eq!(w.engine.flows(&mn1()).len(), 1);
    assert_eq!(w.engine.flows(&mn1())[0].key.dst, MN_ADDR2);
}

#[test]
fn idle_flows_expire_and_their_steering_is_withdrawn() {
    let mut w = World::figure4(FlowConfig { idle_timeout: s(30), ..FlowConfig::default() });
    let quiet = udp6(CN, MN_ADDR1, 1, 1);
    let busy = udp6(CN, MN_ADDR1, 2, 2);
    w.packet(&quiet);
    w.packet(&busy);
    assert_eq!(w.engine.poll_timeout(), Some(s(30)));
    w.now = s(20);
    w.packet(&busy);
    w.engine.handle_timeout(s(30));
    assert_eq!(w.sync(), 1);
    assert!(w.engine.flow_by_key(&classify(&quiet).unwrap().key).is_none());
    assert!(w.engine.flow_by_key(&classify(&busy).unwrap().key).is_some());
    assert_eq!(w.engine.poll_timeout(), Some(s(50)));
    w.engine.handle_timeout(s(49));
    assert_eq!(w.sync(), 0);
    w.engine.handle_timeout(s(50));
    w.sync();
    assert!(w.installed.is_empty());
    assert_eq!(w.engine.stats().flows_expired, 2);
    // The expired flow comes back as a new flow with a new FID.
    w.now = s(60);
    assert!(matches!(w.packet(&quiet), Verdict::Flow { new: true, fid: 3, .. }));
}

#[test]
fn flow_memory_is_bounded_and_refusals_counted() {
    let mut w = World::figure4(FlowConfig { max_flows: 100, max_flows_per_mobile_node: 50, ..FlowConfig::default() });
    w.engine
        .update_mobile_node(
            &mn2(),
            MobileNodeView { prefixes: vec![other_pref()], ipv4_home_addresses: vec![], attachments: vec![] },
        )
        .unwrap();
    let mut fids = HashSet::new();
    for i in 0..80u16 {
        match w.packet(&udp6(CN, MN_ADDR1, i, 1)) {
            Verdict::Flow { fid, .. } => assert!(fid != 0 && fids.insert(fid)),
            Verdict::Refused(r) => assert_eq!(r, pmip6_engine::flow::Refusal::MobileNodeLimit),
            v => panic!("{v:?}"),
        }
    }
    for i in 0..80u16 {
        w.packet(&udp6(CN, OTHER_ADDR, i, 1));
    }
    assert_eq!(w.engine.table().len(), 100);
    let st = w.engine.stats();
    assert_eq!((st.refused_mn_limit, st.refused_table_full), (30, 30));
    assert_eq!(w.installed.len(), 100);
}

#[test]
fn selector_mode_compiles_the_policy_and_emits_differences() {
    let mut w = World::figure4(FlowConfig { mode: SteeringMode::PerSelector, ..FlowConfig::default() });
    w.engine
        .set_operator_rules(vec![
            op(dport(VIDEO), TargetSpec::AccessTechnology(Att::Ieee80211)),
            op(dport(VOIP), TargetSpec::AccessTechnology(Att::Utran)),
        ])
        .unwrap();
    assert_eq!(w.sync(), 1);
    // Two rules × two prefixes, each restricted to one of the MN's prefixes.
    assert_eq!(w.installed.len(), 4);
    for st in &w.installed {
        let Steering::Selector { selector, .. } = st else { panic!("{st:?}") };
        let TrafficSelector::Ipv6(sel) = &**selector else { panic!("{st:?}") };
        let dst = sel.dst_addr.unwrap();
        assert!([pref1(), pref2()].iter().any(|p| p.addr == dst.start), "{dst:?}");
    }
    // Packets create no per-flow entry in this mode.
    w.packet(&udp6(CN, MN_ADDR1, 1, VIDEO));
    assert_eq!(w.installed.len(), 4);
    // WLAN goes: the video elements go (NextRule, nothing below), VoIP ones stay.
    w.engine.update_mobile_node(&mn1(), view(vec![umts(true)])).unwrap();
    assert_eq!(w.sync(), 1);
    assert_eq!(w.installed.len(), 2);
    assert!(w.installed.iter().all(|s| matches!(s, Steering::Selector { route: Route::Tunnel(MAG2), .. })));
    // The MN leaves: nothing left.
    w.engine.remove_mobile_node(&mn1());
    w.sync();
    assert!(w.installed.is_empty());
}

#[test]
fn ipv6_flows_with_extension_headers_and_fragments_steer_as_one_flow() {
    let mut w = World::figure4(FlowConfig::default());
    w.engine.set_operator_rules(vec![op(dport(VIDEO), TargetSpec::AccessTechnology(Att::Utran))]).unwrap();
    let exts = |offset, more| [Ext::HopByHop, Ext::Fragment { offset, more, id: 42 }, Ext::DestOpts(0)];
    let first = v6(CN, MN_ADDR1, 0, 0, &exts(0, true), 17, &udp(1, VIDEO));
    let later =
        v6(CN, MN_ADDR1, 0, 0, &[Ext::HopByHop, Ext::Fragment { offset: 100, more: false, id: 42 }], 60, &[0; 40]);
    let Verdict::Flow { fid, route, .. } = w.packet(&first) else { panic!() };
    assert_eq!(route, Route::Tunnel(MAG2));
    let Verdict::Flow { fid: f2, new, route, .. } = w.packet(&later) else { panic!() };
    assert_eq!((f2, new, route), (fid, false, Route::Tunnel(MAG2)), "the later fragment is the same flow");
    // A later fragment whose first was never seen: a port-less flow of its own, base route.
    let orphan = v6(CN, MN_ADDR1, 0, 0, &[Ext::Fragment { offset: 100, more: false, id: 43 }], 17, &[0; 40]);
    let Verdict::Flow { route, new, .. } = w.packet(&orphan) else { panic!() };
    assert_eq!((route, new), (Route::PrefixRoute, true));
    assert!(w.engine.handle_packet(s(0), &first[..45]).is_err());
    assert_eq!(w.engine.stats().classify_errors, 1);
}
