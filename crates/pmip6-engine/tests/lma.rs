//! The LMA engine against the RFCs, one test per rule, in virtual time.
//!
//! Every test drives an [`Lma`] through a `World`: messages in, time advanced explicitly, and
//! every output checked as it comes out —
//! - each intent is applied to a fake data plane that fails the test on an add of what exists,
//!   a remove of what does not, a route into a missing tunnel, a tunnel removed under a route,
//!   or a second route for one prefix;
//! - after every step the data plane must equal what the binding cache implies (one route per
//!   prefix of each active entry, to its route peer; one tunnel per MAG with an active
//!   attachment);
//! - every transmitted message must survive emit and parse through the wire codec unchanged.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use pmip6_engine::flow::{MoveError, OperatorRule, Route, Rule, Scope, Steering, TargetSpec, Verdict};
use pmip6_engine::lma::{
    BindingState, DeleteReason, Ipv4HomeNetwork, Lma, LmaConfig, LmaEvent, MessageOrdering, MobileNodePolicy,
    NotificationAnswer, NotifyMode, RevocationScope,
};
use pmip6_engine::{Intent, Received, Resource, Transmit};
use pmip6_wire::{
    AccessTechnologyType as Att, BaFlags, BaStatus, BindingAck, BindingErrorStatus, BindingRevocation, BindingUpdate,
    BuFlags, HandoffIndicator as Hi, Heartbeat, HeartbeatFlags, Ipv4HoaReplyStatus, Message, MnIdentifier,
    MobilityOption, ParseConfig, Prefix, RevocationFlags, RevocationKind, RevocationStatus, RevocationTrigger,
    Timestamp, UnknownMessage, UpaStatus, UpdateNotification, UpdateNotificationAck, UpnFlags,
};

// ---- a heap counter for the memory test (per thread: tests run in parallel) ------------------

struct CountingAllocator;

thread_local! {
    static HEAP: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = HEAP.try_with(|c| c.set(c.get() + delta));
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counter is a
// thread-local `Cell` with a const initialiser, which never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by the system allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by the system allocator with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

// ---- addresses, time, builders ---------------------------------------------------------------

const LMAA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
/// 2023-11-14 22:13:20 UTC: timestamps are wall-clock time.
const T0: Duration = Duration::from_secs(1_700_000_000);

fn mag(n: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0xaaaa, 0, 0, 0, 0, n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn mac(n: u8) -> Vec<u8> {
    vec![0x02, 0, 0, 0, 0, n]
}

fn prefix(s: &str) -> Prefix {
    Prefix::new(s.parse().unwrap(), 64)
}

fn nai(s: &str) -> MnIdentifier {
    MnIdentifier::nai(s)
}

/// The first prefixes the default pool hands out.
fn pool_prefix(i: u16) -> Prefix {
    Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, 0x100, i, 0, 0, 0, 0), 64)
}

fn config() -> LmaConfig {
    let mut c = LmaConfig::new(LMAA);
    c.prefix_pools = vec![Prefix::new("2001:db8:100::".parse().unwrap(), 48)];
    c.initial_sequence = 1000;
    c.initial_heartbeat_sequence = 500;
    c.restart_counter = 7;
    // Heartbeats are on by default; the tests that are not about them leave them out.
    c.heartbeat_interval = None;
    c
}

fn with_heartbeats() -> LmaConfig {
    let mut c = config();
    c.heartbeat_interval = Some(secs(60));
    c
}

#[derive(Debug, Clone, Copy)]
enum Ts {
    Now,
    Absent,
    /// Our clock plus this many milliseconds (negative: behind).
    Skew(i64),
}

/// A Proxy Binding Update under construction: by default a valid initial registration.
#[derive(Debug, Clone)]
struct Pbu {
    mn: Option<&'static str>,
    hnps: Vec<Prefix>,
    hi: Option<Hi>,
    att: Option<Att>,
    lli: Option<Vec<u8>>,
    lla: Option<Ipv6Addr>,
    lifetime: u16,
    seq: u16,
    ts: Ts,
    muho: bool,
    flags: BuFlags,
    ipv4: Vec<Ipv4Addr>,
}

fn pbu(mn: &'static str) -> Pbu {
    Pbu {
        mn: Some(mn),
        hnps: vec![Prefix::ALL_ZERO],
        hi: Some(Hi::NewInterface),
        att: Some(Att::Ieee80211),
        lli: Some(mac(1)),
        lla: None,
        lifetime: 900,
        seq: 1,
        ts: Ts::Now,
        muho: false,
        flags: BuFlags::A | BuFlags::P,
        ipv4: Vec::new(),
    }
}

impl Pbu {
    fn hi(mut self, hi: Hi) -> Self {
        self.hi = Some(hi);
        self
    }
    fn att(mut self, att: Att) -> Self {
        self.att = Some(att);
        self
    }
    fn lli(mut self, lli: Vec<u8>) -> Self {
        self.lli = Some(lli);
        self
    }
    fn no_lli(mut self) -> Self {
        self.lli = None;
        self
    }
    fn hnp(mut self, p: Prefix) -> Self {
        self.hnps = vec![p];
        self
    }
    fn hnps(mut self, p: &[Prefix]) -> Self {
        self.hnps = p.to_vec();
        self
    }
    fn lifetime(mut self, l: u16) -> Self {
        self.lifetime = l;
        self
    }
    fn seq(mut self, s: u16) -> Self {
        self.seq = s;
        self
    }
    fn ts(mut self, ts: Ts) -> Self {
        self.ts = ts;
        self
    }
    fn muho(mut self) -> Self {
        self.muho = true;
        self
    }
    fn lla(mut self, a: Ipv6Addr) -> Self {
        self.lla = Some(a);
        self
    }
    fn flags(mut self, f: BuFlags) -> Self {
        self.flags = f;
        self
    }
    /// Adds an IPv4 Home Address Request option (RFC 5844) for `a` (0.0.0.0: assign one).
    fn ipv4(mut self, a: Ipv4Addr) -> Self {
        self.ipv4.push(a);
        self
    }

    fn message(&self, now: Duration, bump: u64) -> Message {
        let mut options = Vec::new();
        if let Some(mn) = self.mn {
            options.push(MobilityOption::MnIdentifier(nai(mn)));
        }
        options.extend(self.hnps.iter().map(|p| MobilityOption::HomeNetworkPrefix(*p)));
        if let Some(hi) = self.hi {
            options.push(MobilityOption::HandoffIndicator(hi));
        }
        if let Some(att) = self.att {
            options.push(MobilityOption::AccessTechnologyType(att));
        }
        if let Some(lli) = &self.lli {
            options.push(MobilityOption::MnLinkLayerIdentifier(lli.clone()));
        }
        if let Some(a) = self.lla {
            options.push(MobilityOption::LinkLocalAddress(a));
        }
        let ts = match self.ts {
            Ts::Now => Some(Timestamp(Timestamp::from_unix(now).0 + bump)),
            Ts::Absent => None,
            Ts::Skew(d) if d >= 0 => Some(Timestamp::from_unix(now + ms(d as u64))),
            Ts::Skew(d) => Some(Timestamp::from_unix(now - ms(d.unsigned_abs()))),
        };
        if let Some(ts) = ts {
            options.push(MobilityOption::Timestamp(ts));
        }
        if self.muho {
            options.push(MobilityOption::MuHo { option_type: 18, prefix: Prefix::ALL_ZERO });
        }
        options.extend(self.ipv4.iter().map(|a| MobilityOption::Ipv4HomeAddressRequest {
            prefix_len: if a.is_unspecified() { 0 } else { 32 },
            address: *a,
        }));
        Message::BindingUpdate(BindingUpdate {
            sequence: self.seq,
            flags: self.flags,
            lifetime: self.lifetime,
            options,
        })
    }
}

fn hnps_of(options: &[MobilityOption]) -> Vec<Prefix> {
    options
        .iter()
        .filter_map(|o| match o {
            MobilityOption::HomeNetworkPrefix(p) => Some(*p),
            _ => None,
        })
        .collect()
}

fn muhos_of(options: &[MobilityOption]) -> Vec<Prefix> {
    options
        .iter()
        .filter_map(|o| match o {
            MobilityOption::MuHo { prefix, .. } => Some(*prefix),
            _ => None,
        })
        .collect()
}

fn find<T>(options: &[MobilityOption], f: impl Fn(&MobilityOption) -> Option<T>) -> Option<T> {
    options.iter().find_map(f)
}

// ---- the fake data plane ---------------------------------------------------------------------

#[derive(Debug, Default)]
struct DataPlane {
    tunnels: BTreeSet<Ipv6Addr>,
    routes: BTreeMap<Prefix, Ipv6Addr>,
    ipv4_routes: BTreeMap<Ipv4Addr, Ipv6Addr>,
    steering: BTreeSet<Steering>,
}

fn steering_tunnel(s: &Steering) -> Option<Ipv6Addr> {
    match s {
        Steering::Flow { route: Route::Tunnel(p), .. } | Steering::Selector { route: Route::Tunnel(p), .. } => Some(*p),
        _ => None,
    }
}

impl DataPlane {
    fn apply(&mut self, intent: &Intent) {
        match intent {
            Intent::Add(Resource::Tunnel { local, peer }) => {
                assert_eq!(*local, LMAA, "tunnel from our address");
                assert!(self.tunnels.insert(*peer), "tunnel to {peer} added twice");
            }
            Intent::Remove(Resource::Tunnel { peer, .. }) => {
                assert!(self.tunnels.remove(peer), "tunnel to {peer} removed but absent");
                assert!(!self.routes.values().any(|p| p == peer), "tunnel to {peer} removed under a route");
                assert!(!self.ipv4_routes.values().any(|p| p == peer), "tunnel to {peer} removed under an IPv4 route");
                assert!(
                    !self.steering.iter().any(|s| steering_tunnel(s) == Some(*peer)),
                    "tunnel to {peer} removed under a steering entry"
                );
            }
            Intent::Add(Resource::Steering(st)) => {
                if let Some(peer) = steering_tunnel(st) {
                    assert!(self.tunnels.contains(&peer), "steering {st:?} into missing tunnel {peer}");
                }
                assert!(self.steering.insert(st.clone()), "steering {st:?} added twice");
            }
            Intent::Remove(Resource::Steering(st)) => {
                assert!(self.steering.remove(st), "steering {st:?} removed but absent");
            }
            Intent::Add(Resource::PrefixToTunnel { prefix, peer }) => {
                assert!(self.tunnels.contains(peer), "route {prefix} into missing tunnel {peer}");
                let old = self.routes.insert(*prefix, *peer);
                assert!(old.is_none(), "second route for {prefix}: {old:?} and {peer}");
            }
            Intent::Remove(Resource::PrefixToTunnel { prefix, peer }) => {
                assert_eq!(self.routes.remove(prefix), Some(*peer), "route {prefix} via {peer} removed but absent");
            }
            Intent::Add(Resource::Ipv4HomeAddressToTunnel { address, peer }) => {
                assert!(self.tunnels.contains(peer), "route {address} into missing tunnel {peer}");
                let old = self.ipv4_routes.insert(*address, *peer);
                assert!(old.is_none(), "second route for {address}: {old:?} and {peer}");
            }
            Intent::Remove(Resource::Ipv4HomeAddressToTunnel { address, peer }) => {
                assert_eq!(
                    self.ipv4_routes.remove(address),
                    Some(*peer),
                    "route {address} via {peer} removed but absent"
                );
            }
            other => panic!("an LMA never emits {other:?}"),
        }
    }
}

// ---- the world ---------------------------------------------------------------------------------

struct World {
    lma: Lma,
    now: Duration,
    dp: DataPlane,
    /// Transmitted and not yet inspected: (src, dst, message).
    outbox: Vec<(Ipv6Addr, Ipv6Addr, Message)>,
    events: Vec<LmaEvent>,
    intents: Vec<Intent>,
    bump: u64,
}

impl World {
    fn new(config: LmaConfig) -> Self {
        let mut w = World {
            lma: Lma::new(config),
            now: T0,
            dp: DataPlane::default(),
            outbox: Vec::new(),
            events: Vec::new(),
            intents: Vec::new(),
            bump: 0,
        };
        w.step();
        w
    }

    /// Drains every output, applies the intents, checks the invariants.
    fn step(&mut self) {
        while let Some(t) = self.lma.poll_transmit() {
            let Transmit::Mobility { src, dst, message } = t else { panic!("an LMA sends no RA: {t:?}") };
            let bytes = message.to_vec(&src, &dst).expect("every message we send can be emitted");
            let parse = self.lma.config().parse;
            let parsed = Message::parse_checked(&bytes, &src, &dst, &parse).expect("and parsed");
            assert_eq!(parsed, message, "wire round trip");
            self.outbox.push((src, dst, message));
        }
        while let Some(i) = self.lma.poll_intent() {
            self.dp.apply(&i);
            self.intents.push(i);
        }
        while let Some(e) = self.lma.poll_event() {
            self.events.push(e);
        }
        self.check_invariants();
    }

    fn check_invariants(&self) {
        let cache = self.lma.binding_cache();
        let mut routes = BTreeMap::new();
        let mut ipv4_routes = BTreeMap::new();
        let mut tunnels = BTreeSet::new();
        for b in cache.iter() {
            if b.state() == BindingState::Active {
                let peer = b.route_peer().expect("an active entry routes somewhere");
                for p in b.prefixes() {
                    assert!(routes.insert(*p, peer).is_none(), "prefix {p} in two entries");
                }
                if let Some(a) = b.ipv4_home_address() {
                    assert!(ipv4_routes.insert(a, peer).is_none(), "IPv4 home address {a} in two entries");
                }
                tunnels.extend(b.attachments().map(|a| a.proxy_coa()));
            } else {
                assert_eq!(b.route_peer(), None);
            }
        }
        assert_eq!(self.dp.routes, routes, "data plane routes = active entries' prefixes");
        assert_eq!(self.dp.ipv4_routes, ipv4_routes, "data plane IPv4 routes = active entries' home addresses");
        assert_eq!(self.dp.tunnels, tunnels, "data plane tunnels = MAGs with active attachments");
        if let Some(flows) = self.lma.flow_steering() {
            let installed: BTreeSet<Steering> = flows.installed().into_iter().collect();
            assert_eq!(self.dp.steering, installed, "data plane steering = the flow engine's");
        }
        if let Some(t) = self.lma.poll_timeout() {
            assert!(t > self.now, "a deadline in the past was left behind: {t:?} <= {:?}", self.now);
        }
    }

    fn deliver(&mut self, from: Ipv6Addr, message: Message) {
        self.lma.handle_message(self.now, Received { src: from, dst: LMAA, message });
        self.step();
    }

    /// Sends a PBU and returns the PBAs it produced for its MAG (none when held).
    fn send(&mut self, from: Ipv6Addr, p: &Pbu) -> Vec<BindingAck> {
        self.bump += 1;
        let m = p.message(self.now, self.bump);
        self.deliver(from, m);
        self.take_acks(from)
    }

    /// Sends a PBU and returns its one PBA.
    fn register(&mut self, from: Ipv6Addr, p: &Pbu) -> BindingAck {
        let mut acks = self.send(from, p);
        assert_eq!(acks.len(), 1, "one PBA expected, got {acks:?}");
        acks.remove(0)
    }

    fn take_acks(&mut self, to: Ipv6Addr) -> Vec<BindingAck> {
        let mut acks = Vec::new();
        self.outbox.retain(|(src, dst, m)| match m {
            Message::BindingAck(ba) if *dst == to => {
                assert_eq!(*src, LMAA, "PBA from the address the PBU went to");
                acks.push(ba.clone());
                false
            }
            _ => true,
        });
        acks
    }

    /// Messages sent to `to` since the last look, removed from the outbox.
    fn take_sent(&mut self, to: Ipv6Addr) -> Vec<Message> {
        let mut out = Vec::new();
        self.outbox.retain(|(_, dst, m)| {
            if *dst == to {
                out.push(m.clone());
                false
            } else {
                true
            }
        });
        out
    }

    fn take_events(&mut self) -> Vec<LmaEvent> {
        std::mem::take(&mut self.events)
    }

    fn take_intents(&mut self) -> Vec<Intent> {
        std::mem::take(&mut self.intents)
    }

    /// Moves virtual time forward by `d`, firing every deadline on the way at its own time.
    fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        while let Some(t) = self.lma.poll_timeout() {
            if t > target {
                break;
            }
            self.now = self.now.max(t);
            self.lma.handle_timeout(self.now);
            self.step();
        }
        self.now = target;
        self.check_invariants();
    }

    fn prefixes_of(&self, mn: &str) -> Vec<Vec<Prefix>> {
        self.lma.binding_cache().sessions(&nai(mn)).map(|b| b.prefixes().to_vec()).collect()
    }
}

fn tunnel(peer: Ipv6Addr) -> Resource {
    Resource::Tunnel { local: LMAA, peer }
}

fn route(prefix: Prefix, peer: Ipv6Addr) -> Resource {
    Resource::PrefixToTunnel { prefix, peer }
}

fn upn(m: &Message) -> &UpdateNotification {
    match m {
        Message::UpdateNotification(u) => u,
        other => panic!("expected a UPN, got {other}"),
    }
}

fn bri(m: &Message) -> &BindingRevocation {
    match m {
        Message::BindingRevocation(b) => b,
        other => panic!("expected a BRI, got {other}"),
    }
}

fn upa(sequence: u16, status: UpaStatus) -> Message {
    Message::UpdateNotificationAck(UpdateNotificationAck { sequence, status, options: vec![] })
}

fn bra(sequence: u16, flags: RevocationFlags, status: RevocationStatus) -> Message {
    Message::BindingRevocation(BindingRevocation {
        kind: RevocationKind::Acknowledgement(status),
        sequence,
        flags,
        options: vec![],
    })
}

// ---- RFC 5213 §5.3.2: initial registration -----------------------------------------------------

#[test]
fn rfc5213_5_3_2_initial_registration_allocates_a_prefix_and_programs_tunnel_and_route() {
    let mut w = World::new(config());
    let ba = w.register(mag(1), &pbu("mn1@example.net").seq(0x1234).lla(Ipv6Addr::UNSPECIFIED));
    assert_eq!(ba.status, BaStatus::Accepted);
    assert!(ba.flags.contains(BaFlags::P), "RFC 5213 §5.3.6: P flag");
    assert_eq!(ba.sequence, 0x1234, "sequence echoed");
    assert_eq!(ba.lifetime, 900);
    // RFC 5213 §5.3.6: MN-ID, one HNP per prefix, HI, ATT, MN-LL-ID, LLA, Timestamp.
    let o = &ba.options;
    assert_eq!(
        find(o, |x| match x {
            MobilityOption::MnIdentifier(i) => Some(i.clone()),
            _ => None,
        }),
        Some(nai("mn1@example.net"))
    );
    assert_eq!(hnps_of(o), vec![pool_prefix(0)]);
    assert!(o.contains(&MobilityOption::HandoffIndicator(Hi::NewInterface)));
    assert!(o.contains(&MobilityOption::AccessTechnologyType(Att::Ieee80211)));
    assert!(o.contains(&MobilityOption::MnLinkLayerIdentifier(mac(1))));
    let lla = find(o, |x| match x {
        MobilityOption::LinkLocalAddress(a) => Some(*a),
        _ => None,
    })
    .unwrap();
    assert!(lla.is_unicast_link_local(), "an ALL_ZERO LLA is answered with a generated link-local: {lla}");
    let ts = find(o, |x| match x {
        MobilityOption::Timestamp(t) => Some(*t),
        _ => None,
    })
    .unwrap();
    assert_eq!(ts, Timestamp(Timestamp::from_unix(T0).0 + 1), "timestamp copied");
    assert!(muhos_of(o).is_empty(), "no MuHo asked, none given");
    assert_eq!(
        w.take_intents(),
        vec![Intent::Add(tunnel(mag(1))), Intent::Add(route(pool_prefix(0), mag(1)))],
        "RFC 5213 §5.6.1: tunnel before the route into it"
    );
    let b = w.lma.binding_cache().by_prefix(&pool_prefix(0)).unwrap();
    assert_eq!(b.mn_id(), &nai("mn1@example.net"));
    assert_eq!(b.primary().proxy_coa(), mag(1));
    assert_eq!(b.primary().expires(), T0 + secs(3600));
    assert_eq!(b.mag_link_local_address(), Some(lla));
    assert!(matches!(w.take_events()[..], [LmaEvent::BindingCreated { .. }]));
}

#[test]
fn rfc5213_5_3_2_requested_prefix_is_honoured_when_authorised() {
    let mut c = config();
    let own = prefix("2001:db8:99::");
    let mut policy = MobileNodePolicy::new(nai("mn1@example.net"));
    policy.prefixes = vec![own];
    c.mobile_nodes = vec![policy];
    let mut w = World::new(c);
    let ba = w.register(mag(1), &pbu("mn1@example.net").hnp(own));
    assert_eq!(ba.status, BaStatus::Accepted);
    assert_eq!(hnps_of(&ba.options), vec![own]);
    // A free prefix of the pool may be asked for too.
    let ba = w.register(mag(1), &pbu("mn2@example.net").hnp(pool_prefix(7)));
    assert_eq!(hnps_of(&ba.options), vec![pool_prefix(7)]);
    // ...and the pool's cursor skips it later.
    let mut seen = BTreeSet::new();
    for i in 0..8 {
        let mn: &'static str = Box::leak(format!("other{i}@example.net").into_boxed_str());
        let ba = w.register(mag(1), &pbu(mn));
        assert!(seen.insert(hnps_of(&ba.options)[0]));
    }
    assert!(!seen.contains(&pool_prefix(7)));
}

#[test]
fn rfc5213_5_3_6_granted_lifetime_is_capped_by_the_configured_maximum() {
    let mut w = World::new(config());
    let ba = w.register(mag(1), &pbu("mn1@example.net").lifetime(u16::MAX));
    assert_eq!(ba.lifetime, 900, "3600 s maximum");
    let ba = w.register(mag(1), &pbu("mn2@example.net").lifetime(10));
    assert_eq!(ba.lifetime, 10, "never more than requested");
}

#[test]
fn rfc5213_9_3_fixed_mag_link_local_address_is_returned_when_configured() {
    let mut c = config();
    let fixed: Ipv6Addr = "fe80::1".parse().unwrap();
    c.fixed_mag_link_local_address = Some(fixed);
    let mut w = World::new(c);
    let ba = w.register(mag(1), &pbu("mn1@example.net").lla(Ipv6Addr::UNSPECIFIED));
    assert!(ba.options.contains(&MobilityOption::LinkLocalAddress(fixed)));
    // Without an LLA option in the PBU, the PBA has none.
    let ba = w.register(mag(1), &pbu("mn2@example.net"));
    assert!(!ba.options.iter().any(|o| matches!(o, MobilityOption::LinkLocalAddress(_))));
}

// ---- RFC 5213 §5.3.1: every rejection, in one table ---------------------------------------------

struct Case {
    name: &'static str,
    config: fn(&mut LmaConfig),
    /// PBUs accepted first: (MAG, PBU).
    setup: fn() -> Vec<(u16, Pbu)>,
    from: u16,
    pbu: fn() -> Pbu,
    status: BaStatus,
}

fn nothing(_: &mut LmaConfig) {}
fn none() -> Vec<(u16, Pbu)> {
    vec![]
}

#[test]
fn rfc5213_5_3_1_each_rejection_has_its_status_and_changes_nothing() {
    let cases = [
        Case {
            name: "RFC 6275 §10.3.1: a home registration (H, no P) is not supported -> 131",
            config: nothing,
            setup: none,
            from: 1,
            pbu: || pbu("mn1@example.net").flags(BuFlags::A | BuFlags::H),
            status: BaStatus::HomeRegistrationNotSupported,
        },
        Case {
            name: "RFC 5213 §5.3.1: a BU without P or H is prohibited -> 129",
            config: nothing,
            setup: none,
            from: 1,
            pbu: || pbu("mn1@example.net").flags(BuFlags::A),
            status: BaStatus::AdministrativelyProhibited,
        },
        Case {
            name: "RFC 5213 §5.3.1: missing MN-ID -> 160",
            config: nothing,
            setup: none,
            from: 1,
            pbu: || Pbu { mn: None, ..pbu("x") },
            status: BaStatus::MissingMnIdentifierOption,
        },
        Case {
            name: "RFC 5213 §5.3.1: MAG not in the domain's list -> 154",
            config: |c| c.authorized_mags = Some(vec![mag(1)]),
            setup: none,
            from: 2,
            pbu: || pbu("mn1@example.net"),
            status: BaStatus::MagNotAuthorizedForProxyReg,
        },
        Case {
            name: "RFC 5213 §5.3.1: MAG not authorised for this MN -> 154",
            config: |c| {
                let mut p = MobileNodePolicy::new(nai("mn1@example.net"));
                p.authorized_mags = Some(vec![mag(1)]);
                c.mobile_nodes = vec![p];
            },
            setup: none,
            from: 2,
            pbu: || pbu("mn1@example.net"),
            status: BaStatus::MagNotAuthorizedForProxyReg,
        },
        Case {
            name: "RFC 5213 §5.3.1: unknown MN when unknown MNs are not served -> 152",
            config: |c| c.serve_unknown_mobile_nodes = false,
            setup: none,
            from: 1,
            pbu: || pbu("mn1@example.net"),
            status: BaStatus::ProxyRegNotEnabled,
        },
        Case {
            name: "RFC 5213 §5.3.1: MN not enabled -> 152",
            config: |c| {
                let mut p = MobileNodePolicy::new(nai("mn1@example.net"));
                p.enabled = false;
                c.mobile_nodes = vec![p];
            },
            setup: none,
            from: 1,
            pbu: || pbu("mn1@example.net"),
            status: BaStatus::ProxyRegNotEnabled,
        },
        Case {
            name: "RFC 5213 §5.5: no Timestamp in timestamp mode -> 156 (our choice)",
            config: nothing,
            setup: none,
            from: 1,
            pbu: || pbu("mn1@example.net").ts(Ts::Absent),
            status: BaStatus::TimestampMismatch,
        },
        Case {
            name: "RFC 5213 §5.5: timestamp 301 ms ahead -> 156",
            config: nothing,
            setup: none,
            from: 1,
            pbu: || pbu("mn1@example.net").ts(Ts::Skew(301)),
            status: BaStatus::TimestampMismatch,
        },
        Case {
            name: "RFC 5213 §5.5: timestamp 301 ms behind -> 156",
            config: nothing,
            setup: none,
            from: 1,
            pbu: || pbu("mn1@example.net").ts(Ts::Skew(-301)),
            status: BaStatus::TimestampMismatch,
        },
        Case {
            name: "RFC 5213 §5.5: timestamp lower than the last accepted -> 157",
            config: nothing,
            setup: || vec![(1, pbu("mn1@example.net"))],
            from: 1,
            pbu: || pbu("mn1@example.net").hnp(pool_prefix(0)).hi(Hi::NotChanged).ts(Ts::Skew(-100)),
            status: BaStatus::TimestampLowerThanPrevAccepted,
        },
        Case {
            name: "RFC 5213 §5.3.1: missing HNP -> 158",
            config: nothing,
            setup: none,
            from: 1,
            pbu: || pbu("mn1@example.net").hnps(&[]),
            status: BaStatus::MissingHomeNetworkPrefixOption,
        },
        Case {
            name: "RFC 5213 §5.3.1: missing HI -> 161",
            config: nothing,
            setup: none,
            from: 1,
            pbu: || Pbu { hi: None, ..pbu("mn1@example.net") },
            status: BaStatus::MissingHandoffIndicatorOption,
        },
        Case {
            name: "RFC 5213 §5.3.1: missing ATT -> 162",
            config: nothing,
            setup: none,
            from: 1,
            pbu: || Pbu { att: None, ..pbu("mn1@example.net") },
            status: BaStatus::MissingAccessTechTypeOption,
        },
        Case {
            name: "RFC 5213 §5.4.1.1: prefix set differs from the entry's -> 159",
            config: nothing,
            setup: || vec![(1, pbu("mn1@example.net"))],
            from: 1,
            pbu: || pbu("mn1@example.net").hnps(&[pool_prefix(0), pool_prefix(5)]).hi(Hi::NotChanged),
            status: BaStatus::BcePbuPrefixSetDoNotMatch,
        },
        Case {
            name: "RFC 5213 §5.4.1.1: prefixes of two sessions in one PBU -> 159",
            config: nothing,
            setup: || vec![(1, pbu("mn1@example.net")), (2, pbu("mn1@example.net").lli(mac(2)))],
            from: 1,
            pbu: || pbu("mn1@example.net").hnps(&[pool_prefix(0), pool_prefix(1)]).hi(Hi::NotChanged),
            status: BaStatus::BcePbuPrefixSetDoNotMatch,
        },
        Case {
            name: "RFC 5213 §5.3.1: prefix owned by another MN -> 155",
            config: nothing,
            setup: || vec![(1, pbu("mn1@example.net"))],
            from: 2,
            pbu: || pbu("mn2@example.net").hnp(pool_prefix(0)),
            status: BaStatus::NotAuthorizedForHomeNetworkPrefix,
        },
        Case {
            name: "RFC 5213 §5.3.2: requested prefix outside policy and pools -> 155",
            config: nothing,
            setup: none,
            from: 1,
            pbu: || pbu("mn1@example.net").hnp(prefix("2001:db8:dead::")),
            status: BaStatus::NotAuthorizedForHomeNetworkPrefix,
        },
        Case {
            name: "RFC 5213 §5.3.2: requested pool prefix when pool prefixes are not honoured -> 155",
            config: |c| c.honour_requested_pool_prefixes = false,
            setup: none,
            from: 1,
            pbu: || pbu("mn1@example.net").hnp(pool_prefix(3)),
            status: BaStatus::NotAuthorizedForHomeNetworkPrefix,
        },
        Case {
            name: "RFC 5213 §5.3.2: no prefix left in the pools -> 130",
            config: |c| c.prefix_pools = vec![Prefix::new("2001:db8:100::".parse().unwrap(), 64)],
            setup: || vec![(1, pbu("mn1@example.net"))],
            from: 1,
            pbu: || pbu("mn2@example.net"),
            status: BaStatus::InsufficientResources,
        },
        Case {
            name: "RFC 5213 §5.5 / RFC 6275 §9.5.1: sequence number not newer -> 135",
            config: |c| c.ordering = MessageOrdering::SequenceNumber,
            setup: || vec![(1, pbu("mn1@example.net").seq(10))],
            from: 1,
            pbu: || pbu("mn1@example.net").hnp(pool_prefix(0)).hi(Hi::NotChanged).seq(10),
            status: BaStatus::SequenceNumberOutOfWindow,
        },
    ];
    for case in cases {
        let mut c = config();
        (case.config)(&mut c);
        let mut w = World::new(c);
        for (m, p) in (case.setup)() {
            assert_eq!(w.register(mag(m), &p).status, BaStatus::Accepted, "{}: setup", case.name);
        }
        w.take_events();
        w.take_intents();
        let before: Vec<_> = w.lma.binding_cache().iter().map(|b| format!("{b:?}")).collect();
        let p = (case.pbu)();
        let ba = w.register(mag(case.from), &p);
        assert_eq!(ba.status, case.status, "{}", case.name);
        assert_eq!(ba.lifetime, 0, "{}: a rejection grants nothing", case.name);
        assert_eq!(ba.sequence, p.seq, "{}: sequence echoed", case.name);
        assert_eq!(ba.flags.contains(BaFlags::P), p.flags.contains(BuFlags::P), "{}", case.name);
        assert!(w.take_intents().is_empty(), "{}: no data-plane change", case.name);
        let after: Vec<_> = w.lma.binding_cache().iter().map(|b| format!("{b:?}")).collect();
        assert_eq!(before, after, "{}: binding cache unchanged", case.name);
        let events = w.take_events();
        assert!(
            matches!(events[..], [LmaEvent::PbuRejected { status, .. }] if status == case.status),
            "{}: {events:?}",
            case.name
        );
    }
}

#[test]
fn rfc5213_5_5_timestamp_mismatch_answer_carries_the_lma_time_and_the_window_is_inclusive() {
    let mut w = World::new(config());
    w.advance(ms(250));
    let ba = w.register(mag(1), &pbu("mn1@example.net").ts(Ts::Skew(-500)));
    assert_eq!(ba.status, BaStatus::TimestampMismatch);
    let ts = find(&ba.options, |o| match o {
        MobilityOption::Timestamp(t) => Some(*t),
        _ => None,
    });
    assert_eq!(ts, Some(Timestamp::from_unix(T0 + ms(250))), "RFC 5213 §5.5: our current time");
    // 300 ms of skew either way is within the window.
    assert_eq!(w.register(mag(1), &pbu("mn1@example.net").ts(Ts::Skew(300))).status, BaStatus::Accepted);
    assert_eq!(w.register(mag(1), &pbu("mn2@example.net").ts(Ts::Skew(-300))).status, BaStatus::Accepted);
}

#[test]
fn rfc5213_5_5_an_exact_duplicate_of_the_accepted_pbu_is_answered_again() {
    let mut w = World::new(config());
    let p = pbu("mn1@example.net").ts(Ts::Skew(0));
    assert_eq!(w.register(mag(1), &p).status, BaStatus::Accepted);
    let again = w.register(mag(1), &p.clone().hnp(pool_prefix(0)));
    assert_eq!(again.status, BaStatus::Accepted, "same sequence, timestamp and MAG: a duplicate");
    let stale = w.register(mag(1), &p.hnp(pool_prefix(0)).seq(2));
    assert_eq!(stale.status, BaStatus::TimestampLowerThanPrevAccepted, "same timestamp, new sequence: stale");
}

#[test]
fn rfc5213_5_5_sequence_number_mode() {
    let mut c = config();
    c.ordering = MessageOrdering::SequenceNumber;
    let mut w = World::new(c);
    // No Timestamp is needed in this mode.
    let ba = w.register(mag(1), &pbu("mn1@example.net").seq(65530).ts(Ts::Absent));
    assert_eq!(ba.status, BaStatus::Accepted);
    let p = pbu("mn1@example.net").hnp(pool_prefix(0)).hi(Hi::NotChanged).ts(Ts::Absent);
    // Newer, across the wrap.
    assert_eq!(w.register(mag(1), &p.clone().seq(3)).status, BaStatus::Accepted);
    // Older: 135 with the last accepted number in the PBA (RFC 6275 §9.5.1).
    let ba = w.register(mag(1), &p.clone().seq(65533));
    assert_eq!(ba.status, BaStatus::SequenceNumberOutOfWindow);
    assert_eq!(ba.sequence, 3);
    // Another MAG numbers its own PBUs: a handoff is not refused for its sequence.
    let ba = w.register(mag(2), &p.clone().seq(1).hi(Hi::BetweenMags));
    assert_eq!(ba.status, BaStatus::Accepted);
}

// ---- RFC 5213 §5.3.3, §5.3.4, §5.4.1: lookup cases ---------------------------------------------

#[test]
fn rfc5213_5_3_3_lifetime_extension_from_the_same_mag_changes_no_route() {
    let mut w = World::new(config());
    w.register(mag(1), &pbu("mn1@example.net"));
    w.take_intents();
    w.take_events();
    w.advance(secs(1000));
    let ba = w.register(mag(1), &pbu("mn1@example.net").hnp(pool_prefix(0)).hi(Hi::NotChanged).seq(2));
    assert_eq!(ba.status, BaStatus::Accepted);
    assert_eq!(hnps_of(&ba.options), vec![pool_prefix(0)]);
    assert!(w.take_intents().is_empty());
    let b = w.lma.binding_cache().by_prefix(&pool_prefix(0)).unwrap();
    assert_eq!(b.primary().expires(), T0 + secs(1000) + secs(3600));
    assert!(matches!(w.take_events()[..], [LmaEvent::BindingRefreshed { .. }]));
    // RFC 5213 §5.4.1.2: an ALL_ZERO re-registration with the same MN-LL-ID finds it too.
    let ba = w.register(mag(1), &pbu("mn1@example.net").hi(Hi::NotChanged).seq(3));
    assert_eq!(hnps_of(&ba.options), vec![pool_prefix(0)]);
    assert_eq!(w.lma.binding_cache().len(), 1);
}

#[test]
fn rfc5213_5_3_4_handoff_between_mags_moves_the_route_to_the_new_tunnel() {
    let mut w = World::new(config());
    w.register(mag(1), &pbu("mn1@example.net"));
    w.take_intents();
    // RFC 5213 §5.4.1.2: same MN-ID, ATT and MN-LL-ID, HI 3, from MAG2.
    let ba = w.register(mag(2), &pbu("mn1@example.net").hi(Hi::BetweenMags));
    assert_eq!(ba.status, BaStatus::Accepted);
    assert_eq!(hnps_of(&ba.options), vec![pool_prefix(0)], "the prefix follows the MN");
    assert_eq!(
        w.take_intents(),
        vec![
            Intent::Add(tunnel(mag(2))),
            Intent::Remove(route(pool_prefix(0), mag(1))),
            Intent::Add(route(pool_prefix(0), mag(2))),
            Intent::Remove(tunnel(mag(1))),
        ]
    );
    assert_eq!(w.lma.binding_cache().len(), 1);
    assert!(
        w.take_events()
            .iter()
            .any(|e| matches!(e, LmaEvent::BindingHandedOff { from, to, .. } if *from == mag(1) && *to == mag(2)))
    );
    // RFC 5213 §5.3.5: the old MAG's late de-registration does not touch the entry.
    let ba = w.register(mag(1), &pbu("mn1@example.net").hnp(pool_prefix(0)).lifetime(0).seq(2));
    assert_eq!((ba.status, ba.lifetime), (BaStatus::Accepted, 0));
    assert!(w.take_intents().is_empty());
    let b = w.lma.binding_cache().by_prefix(&pool_prefix(0)).unwrap();
    assert_eq!((b.state(), b.primary().proxy_coa()), (BindingState::Active, mag(2)));
    assert!(w.take_events().iter().any(|e| matches!(e, LmaEvent::DeregistrationIgnored { .. })));
}

#[test]
fn rfc5213_5_3_4_handoff_with_the_prefix_in_the_pbu_from_a_new_mag() {
    let mut w = World::new(config());
    w.register(mag(1), &pbu("mn1@example.net"));
    // RFC 5213 §5.4.1.1: the non-zero HNP names the session.
    let ba = w.register(mag(3), &pbu("mn1@example.net").hnp(pool_prefix(0)).hi(Hi::BetweenMags).no_lli());
    assert_eq!(ba.status, BaStatus::Accepted);
    assert_eq!(w.dp.routes[&pool_prefix(0)], mag(3));
}

#[test]
fn rfc5213_5_4_1_handoff_between_interfaces_takes_the_existing_session() {
    let mut w = World::new(config());
    w.register(mag(1), &pbu("mn1@example.net"));
    // The old interface went down and its MAG de-registered it; a new interface (other LL-ID
    // and ATT) at MAG2 says HI 2.
    w.register(mag(1), &pbu("mn1@example.net").hnp(pool_prefix(0)).lifetime(0).seq(2));
    let ba = w.register(mag(2), &pbu("mn1@example.net").hi(Hi::BetweenInterfaces).att(Att::Utran).lli(mac(9)));
    assert_eq!(hnps_of(&ba.options), vec![pool_prefix(0)], "the prefixes move to the new interface");
    assert_eq!(w.lma.binding_cache().len(), 1);
    let b = w.lma.binding_cache().by_prefix(&pool_prefix(0)).unwrap();
    assert_eq!(b.primary().access_technology(), Att::Utran);
    assert_eq!(b.primary().mn_link_layer_id(), Some(&mac(9)[..]));
    assert_eq!(w.dp.routes[&pool_prefix(0)], mag(2));
}

#[test]
fn rfc5213_5_4_1_handoff_between_interfaces_waits_for_an_active_session_to_be_deregistered() {
    let mut w = World::new(config());
    w.register(mag(1), &pbu("mn1@example.net"));
    // HI 2 while the old interface's session is still active: held, as for HI 4.
    let hi2 = pbu("mn1@example.net").hi(Hi::BetweenInterfaces).att(Att::Utran).lli(mac(9)).seq(5);
    assert!(w.send(mag(2), &hi2).is_empty(), "held: no PBA yet");
    w.advance(ms(300));
    w.register(mag(1), &pbu("mn1@example.net").hnp(pool_prefix(0)).lifetime(0).seq(2));
    let acks = w.take_acks(mag(2));
    assert_eq!(acks.len(), 1, "answered once the old MAG de-registers");
    assert_eq!(hnps_of(&acks[0].options), vec![pool_prefix(0)], "handoff into the old session");
    assert_eq!(w.dp.routes[&pool_prefix(0)], mag(2));
}

#[test]
fn rfc5213_5_4_1_handoff_between_interfaces_never_takes_a_session_still_in_use() {
    let mut w = World::new(config());
    w.register(mag(1), &pbu("mn1@example.net"));
    // A late or wrong HI 2: the old interface stays up and its MAG never de-registers it.
    let hi2 = pbu("mn1@example.net").hi(Hi::BetweenInterfaces).att(Att::Utran).lli(mac(9));
    assert!(w.send(mag(2), &hi2).is_empty());
    w.advance(ms(1500));
    let acks = w.take_acks(mag(2));
    assert_eq!(acks.len(), 1, "MaxDelayBeforeNewBCEAssign elapsed");
    assert_eq!(hnps_of(&acks[0].options), vec![pool_prefix(1)], "a new session");
    assert_eq!(w.dp.routes[&pool_prefix(0)], mag(1), "the session in use is untouched");
}

#[test]
fn rfc5213_5_4_1_attachment_over_a_new_interface_is_a_new_session() {
    let mut w = World::new(config());
    w.register(mag(1), &pbu("mn1@example.net"));
    let ba = w.register(mag(2), &pbu("mn1@example.net").hi(Hi::NewInterface).att(Att::Utran).lli(mac(2)));
    assert_eq!(hnps_of(&ba.options), vec![pool_prefix(1)], "unique prefix per interface");
    assert_eq!(w.prefixes_of("mn1@example.net"), vec![vec![pool_prefix(0)], vec![pool_prefix(1)]]);
    assert_eq!(w.dp.routes[&pool_prefix(0)], mag(1));
    assert_eq!(w.dp.routes[&pool_prefix(1)], mag(2));
    // RFC 7864's HI 6 also opens a session of its own outside the virtual-interface mode.
    let ba = w.register(mag(3), &pbu("mn1@example.net").hi(Hi::NewInterfaceSharingPrefixes).lli(mac(3)));
    assert_eq!(hnps_of(&ba.options), vec![pool_prefix(2)]);
}

#[test]
fn rfc5213_5_4_1_handoff_state_unknown_waits_for_the_old_mags_deregistration() {
    let mut w = World::new(config());
    w.register(mag(1), &pbu("mn1@example.net"));
    w.take_intents();
    w.take_events();
    // The MAG cannot tell (HI 4), and the LL-ID does not match (another interface or none).
    let held = pbu("mn1@example.net").hi(Hi::StateUnknown).lli(mac(7)).seq(5);
    assert!(w.send(mag(2), &held).is_empty(), "held: no PBA yet");
    assert!(w.take_intents().is_empty());
    assert!(matches!(w.take_events()[..], [LmaEvent::PbuHeld { until, .. }] if until == T0 + ms(1500)));
    // The MAG retransmits: still held, the newer sequence replaces the older.
    w.advance(ms(500));
    assert!(w.send(mag(2), &held.clone().seq(6)).is_empty());
    // The old MAG de-registers within MaxDelayBeforeNewBCEAssign.
    w.advance(ms(400));
    let dereg = w.register(mag(1), &pbu("mn1@example.net").hnp(pool_prefix(0)).lifetime(0).seq(2));
    assert_eq!((dereg.status, dereg.lifetime), (BaStatus::Accepted, 0));
    let acks = w.take_acks(mag(2));
    assert_eq!(acks.len(), 1, "the held PBU is answered now");
    assert_eq!((acks[0].status, acks[0].sequence), (BaStatus::Accepted, 6));
    assert_eq!(hnps_of(&acks[0].options), vec![pool_prefix(0)], "handoff into the old session");
    assert_eq!(w.lma.binding_cache().len(), 1);
    assert_eq!(w.dp.routes[&pool_prefix(0)], mag(2));
    // The hold timer is gone: nothing happens at 1.5 s.
    w.advance(secs(2));
    assert!(w.take_acks(mag(2)).is_empty());
}

#[test]
fn rfc5213_5_4_1_handoff_state_unknown_times_out_into_a_new_session() {
    let mut w = World::new(config());
    w.register(mag(1), &pbu("mn1@example.net"));
    assert!(w.send(mag(2), &pbu("mn1@example.net").hi(Hi::StateUnknown).lli(mac(7))).is_empty());
    w.advance(ms(1499));
    assert!(w.take_acks(mag(2)).is_empty());
    w.advance(ms(1));
    let acks = w.take_acks(mag(2));
    assert_eq!(acks.len(), 1, "MaxDelayBeforeNewBCEAssign elapsed");
    assert_eq!(hnps_of(&acks[0].options), vec![pool_prefix(1)], "a new session");
    assert_eq!(w.lma.binding_cache().len(), 2);
    assert_eq!(w.dp.routes[&pool_prefix(0)], mag(1), "the first session is untouched");
}

#[test]
fn rfc5213_5_4_1_handoff_state_unknown_takes_a_session_already_deregistered() {
    let mut w = World::new(config());
    w.register(mag(1), &pbu("mn1@example.net"));
    w.register(mag(1), &pbu("mn1@example.net").hnp(pool_prefix(0)).lifetime(0).seq(2));
    w.advance(secs(1));
    // Within MinDelayBeforeBCEDelete the entry is still there: no need to wait.
    let ba = w.register(mag(2), &pbu("mn1@example.net").hi(Hi::StateUnknown).lli(mac(7)));
    assert_eq!(hnps_of(&ba.options), vec![pool_prefix(0)]);
    assert_eq!(w.lma.binding_cache().by_prefix(&pool_prefix(0)).unwrap().state(), BindingState::Active);
}

#[test]
fn rfc5213_5_4_1_a_held_pbu_whose_candidate_expires_gets_a_new_session_at_once() {
    let mut w = World::new(config());
    w.register(mag(1), &pbu("mn1@example.net").lifetime(1)); // 4 s
    w.advance(ms(3500));
    assert!(w.send(mag(2), &pbu("mn1@example.net").hi(Hi::StateUnknown).lli(mac(7))).is_empty());
    w.advance(ms(500));
    let acks = w.take_acks(mag(2));
    assert_eq!(acks.len(), 1, "answered when the candidate expired, before MaxDelayBeforeNewBCEAssign");
    assert_eq!(acks[0].status, BaStatus::Accepted);
    let b = w.lma.binding_cache().iter().next().unwrap();
    assert_eq!((b.primary().proxy_coa(), w.lma.binding_cache().len()), (mag(2), 1));
}

#[test]
fn rfc5846_revoking_a_mobile_node_refuses_its_held_pbu() {
    let mut w = World::new(config());
    w.register(mag(1), &pbu("mn1@example.net"));
    assert!(w.send(mag(2), &pbu("mn1@example.net").hi(Hi::StateUnknown).lli(mac(7)).seq(9)).is_empty());
    w.lma.revoke(w.now, RevocationScope::MobileNode(nai("mn1@example.net")));
    w.step();
    let acks = w.take_acks(mag(2));
    assert_eq!(acks.len(), 1);
    assert_eq!((acks[0].status, acks[0].sequence), (BaStatus::AdministrativelyProhibited, 9));
    w.advance(secs(2));
    assert!(w.take_acks(mag(2)).is_empty(), "the hold is gone");
    assert!(w.lma.binding_cache().is_empty());
}

// ---- RFC 5213 §5.3.5: de-registration ---------------------------------------------------------

#[test]
fn rfc5213_5_3_5_deregistration_removes_routes_at_once_and_the_entry_after_min_delay() {
    let mut w = World::new(config());
    w.register(mag(1), &pbu("mn1@example.net").lla(Ipv6Addr::UNSPECIFIED));
    w.take_intents();
    w.take_events();
    w.advance(secs(5));
    let ba =
        w.register(mag(1), &pbu("mn1@example.net").hnp(pool_prefix(0)).lifetime(0).seq(2).lla(Ipv6Addr::UNSPECIFIED));
    assert_eq!((ba.status, ba.lifetime), (BaStatus::Accepted, 0));
    assert_eq!(hnps_of(&ba.options), vec![pool_prefix(0)]);
    assert_eq!(w.take_intents(), vec![Intent::Remove(route(pool_prefix(0), mag(1))), Intent::Remove(tunnel(mag(1)))]);
    let b = w.lma.binding_cache().by_prefix(&pool_prefix(0)).unwrap();
    assert_eq!(b.state(), BindingState::Deregistered);
    assert_eq!(b.deadline(), T0 + secs(5) + secs(10), "MinDelayBeforeBCEDelete");
    // A retransmitted de-registration is answered again and changes nothing.
    let ba = w.register(mag(1), &pbu("mn1@example.net").hnp(pool_prefix(0)).lifetime(0).seq(3));
    assert_eq!((ba.status, ba.lifetime), (BaStatus::Accepted, 0));
    w.advance(ms(9999));
    assert_eq!(w.lma.binding_cache().len(), 1);
    w.advance(ms(1));
    assert!(w.lma.binding_cache().is_empty());
    assert!(
        w.take_events()
            .iter()
            .any(|e| matches!(e, LmaEvent::BindingDeleted { reason: DeleteReason::DeregistrationDelayElapsed, .. }))
    );
    // The prefix went back to the pool: the next MN gets it after the untouched ones... and a
    // de-registration for nothing is still answered.
    let ba = w.register(mag(1), &pbu("mn1@example.net").hnp(pool_prefix(0)).lifetime(0).seq(4));
    assert_eq!((ba.status, ba.lifetime), (BaStatus::Accepted, 0));
    assert!(w.lma.binding_cache().is_empty());
}

#[test]
fn rfc5213_5_3_5_deregistered_entry_is_reactivated_by_a_handoff_within_min_delay() {
    let mut w = World::new(config());
    w.register(mag(1), &pbu("mn1@example.net"));
    w.register(mag(1), &pbu("mn1@example.net").hnp(pool_prefix(0)).lifetime(0).seq(2));
    w.advance(secs(3));
    let ba = w.register(mag(2), &pbu("mn1@example.net").hi(Hi::BetweenMags));
    assert_eq!(hnps_of(&ba.options), vec![pool_prefix(0)]);
    let b = w.lma.binding_cache().by_prefix(&pool_prefix(0)).unwrap();
    assert_eq!((b.state(), b.route_peer()), (BindingState::Active, Some(mag(2))));
    // It is not deleted when the old delay would have elapsed.
    w.advance(secs(20));
    assert_eq!(w.lma.binding_cache().len(), 1);
}

// ---- lifetime expiry -------------------------------------------------------------------------------

#[test]
fn rfc5213_5_3_lifetime_expiry_removes_routes_tunnel_and_entry() {
    let mut w = World::new(config());
    w.register(mag(1), &pbu("mn1@example.net").lifetime(25)); // 100 s
    w.register(mag(1), &pbu("mn2@example.net").lli(mac(2)).lifetime(50)); // 200 s
    w.take_intents();
    assert_eq!(w.lma.poll_timeout(), Some(T0 + secs(100)));
    w.advance(secs(100));
    assert_eq!(w.take_intents(), vec![Intent::Remove(route(pool_prefix(0), mag(1)))], "the tunnel still serves mn2");
    assert!(
        w.take_events().iter().any(|e| matches!(e, LmaEvent::BindingExpired { proxy_coa, .. } if *proxy_coa == mag(1)))
    );
    w.advance(secs(100));
    assert_eq!(w.take_intents(), vec![Intent::Remove(route(pool_prefix(1), mag(1))), Intent::Remove(tunnel(mag(1)))]);
    assert!(w.lma.binding_cache().is_empty());
    assert_eq!(w.lma.poll_timeout(), None, "nothing left to time");
}

// ---- draft §5.2.2 MuHo and §5.2.3 notifications -------------------------------------------------

/// mn1 on if1 at MAG1 (MuHo), then on if2 at MAG2 (MuHo).
fn two_interfaces(c: LmaConfig) -> World {
    let mut w = World::new(c);
    let ba = w.register(mag(1), &pbu("mn1@example.net").muho());
    assert_eq!(muhos_of(&ba.options), vec![Prefix::ALL_ZERO], "draft §5.2.2: no other prefix: an empty MuHo");
    let ba = w.register(mag(2), &pbu("mn1@example.net").muho().att(Att::Utran).lli(mac(2)));
    assert_eq!(hnps_of(&ba.options), vec![pool_prefix(1)]);
    assert_eq!(muhos_of(&ba.options), vec![pool_prefix(0)], "draft §5.2.2: the first interface's prefix");
    w
}

#[test]
fn draft_5_2_3_first_mag_gets_an_update_notification_and_upa_stops_retransmission() {
    let mut w = two_interfaces(config());
    let sent = w.take_sent(mag(1));
    assert_eq!(sent.len(), 1);
    let u = upn(&sent[0]);
    assert_eq!(u.reason, pmip6_wire::NotificationReason::UpdateSessionParameters);
    assert!(u.flags.contains(UpnFlags::A));
    assert_eq!(u.sequence, 1000, "injected initial sequence");
    assert_eq!(u.options[0], MobilityOption::MnIdentifier(nai("mn1@example.net")));
    assert_eq!(hnps_of(&u.options), vec![pool_prefix(0)], "identifies MAG1's own session");
    assert_eq!(muhos_of(&u.options), vec![pool_prefix(1)], "the complete set of the other sessions");
    assert!(w.take_sent(mag(2)).is_empty(), "the new MAG learned it from its PBA");
    w.deliver(mag(1), upa(1000, UpaStatus::Success));
    assert!(w.take_events().iter().any(|e| matches!(
        e,
        LmaEvent::NotificationAcknowledged { sequence: 1000, answer: NotificationAnswer::Upa(UpaStatus::Success), .. }
    )));
    w.advance(secs(60));
    assert!(w.take_sent(mag(1)).iter().all(|m| !matches!(m, Message::UpdateNotification(_))), "no retransmission");
    // A second UPA for it matches nothing.
    w.deliver(mag(1), upa(1000, UpaStatus::Success));
    assert!(w.take_events().iter().any(|e| matches!(e, LmaEvent::Ignored { .. })));
}

#[test]
fn draft_5_2_3_unanswered_notification_is_retransmitted_with_backoff_then_given_up() {
    let mut w = two_interfaces(config());
    assert_eq!(w.take_sent(mag(1)).len(), 1);
    w.take_events();
    let mut times = Vec::new();
    for _ in 0..20 {
        w.advance(secs(1));
        for m in w.take_sent(mag(1)) {
            assert_eq!(upn(&m).sequence, 1000, "a retransmission keeps its sequence number");
            times.push((w.now - T0).as_secs());
        }
    }
    assert_eq!(times, vec![1, 3, 7], "1 s, doubling; three retries");
    let given_up: Vec<_> =
        w.take_events().into_iter().filter(|e| matches!(e, LmaEvent::NotificationGivenUp { .. })).collect();
    assert_eq!(given_up.len(), 1);
    assert_eq!(w.lma.poll_timeout(), Some(T0 + secs(3600)), "only the lifetimes are left");
}

#[test]
fn draft_5_2_3_a_newer_prefix_set_supersedes_a_pending_notification() {
    let mut w = two_interfaces(config());
    assert_eq!(upn(&w.take_sent(mag(1))[0]).sequence, 1000);
    // A third interface at MAG3 before MAG1 answered.
    w.register(mag(3), &pbu("mn1@example.net").att(Att::Eutran).lli(mac(3)));
    let sent = w.take_sent(mag(1));
    assert_eq!(sent.len(), 1);
    let u = upn(&sent[0]);
    assert_eq!(u.sequence, 1001, "a new sequence number");
    assert_eq!(muhos_of(&u.options), vec![pool_prefix(1), pool_prefix(2)]);
    // MAG2 asked for MuHo too: it hears of the third prefix.
    let to2 = w.take_sent(mag(2));
    assert_eq!(upn(&to2[0]).sequence, 1002);
    assert_eq!(muhos_of(&upn(&to2[0]).options), vec![pool_prefix(0), pool_prefix(2)]);
    // The late answer to the superseded notification matches nothing.
    w.take_events();
    w.deliver(mag(1), upa(1000, UpaStatus::Success));
    assert!(matches!(w.take_events()[..], [LmaEvent::Ignored { .. }]));
    w.deliver(mag(1), upa(1001, UpaStatus::Success));
    w.deliver(mag(2), upa(1002, UpaStatus::FailedToUpdateSessionParameters));
    let events = w.take_events();
    assert!(events.iter().any(|e| matches!(e, LmaEvent::NotificationAcknowledged { sequence: 1001, .. })));
    assert!(events.iter().any(|e| matches!(e, LmaEvent::NotificationRefused { sequence: 1002, .. })));
    w.advance(secs(30));
    assert!(w.take_sent(mag(1)).is_empty() && w.take_sent(mag(2)).is_empty(), "all answered");
}

#[test]
fn draft_5_2_3_deregistration_of_one_interface_tells_the_other_mag() {
    let mut w = two_interfaces(config());
    assert_eq!(w.take_sent(mag(1)).len(), 1);
    w.deliver(mag(1), upa(1000, UpaStatus::Success));
    w.register(mag(2), &pbu("mn1@example.net").hnp(pool_prefix(1)).lifetime(0).att(Att::Utran).lli(mac(2)).seq(2));
    let sent = w.take_sent(mag(1));
    assert_eq!(sent.len(), 1);
    assert_eq!(muhos_of(&upn(&sent[0]).options), vec![Prefix::ALL_ZERO], "no other prefix left: an empty MuHo");
}

#[test]
fn draft_5_2_3_expiry_of_one_interface_tells_the_other_mag() {
    let mut w = World::new(config());
    w.register(mag(1), &pbu("mn1@example.net").muho());
    w.register(mag(2), &pbu("mn1@example.net").att(Att::Utran).lli(mac(2)).lifetime(25));
    assert_eq!(w.take_sent(mag(1)).len(), 1);
    w.deliver(mag(1), upa(1000, UpaStatus::Success));
    w.advance(secs(100));
    let sent = w.take_sent(mag(1));
    assert_eq!(muhos_of(&upn(&sent[0]).options), vec![Prefix::ALL_ZERO]);
}

#[test]
fn draft_5_2_2_without_muho_base_rfc5213_behaviour() {
    let mut w = World::new(config());
    w.register(mag(1), &pbu("mn1@example.net"));
    let ba = w.register(mag(2), &pbu("mn1@example.net").att(Att::Utran).lli(mac(2)));
    assert!(muhos_of(&ba.options).is_empty());
    assert!(w.take_sent(mag(1)).is_empty(), "MAG1 did not ask for MuHo: no notification");
}

#[test]
fn draft_5_2_2_muho_option_type_is_configurable() {
    let mut c = config();
    c.parse = ParseConfig::with_muho_option_type(200).unwrap();
    let mut w = World::new(c);
    let ba = w.register(mag(1), &pbu("mn1@example.net").muho());
    assert!(ba.options.contains(&MobilityOption::MuHo { option_type: 200, prefix: Prefix::ALL_ZERO }));
}

#[test]
fn draft_5_2_3_revocation_mode_sends_a_bri_with_the_same_options() {
    let mut c = config();
    c.notify = NotifyMode::Revocation;
    let mut w = two_interfaces(c);
    let sent = w.take_sent(mag(1));
    assert_eq!(sent.len(), 1);
    let b = bri(&sent[0]);
    assert_eq!(b.kind, RevocationKind::Indication(RevocationTrigger::Unspecified));
    assert_eq!(b.flags, RevocationFlags::P);
    assert_eq!(b.options[0], MobilityOption::MnIdentifier(nai("mn1@example.net")));
    assert_eq!(hnps_of(&b.options), vec![pool_prefix(0)]);
    assert_eq!(muhos_of(&b.options), vec![pool_prefix(1)]);
    // The session stays: this BRI is an update, not a revocation.
    assert_eq!(w.lma.binding_cache().len(), 2);
    w.deliver(mag(1), bra(b.sequence, RevocationFlags::P, RevocationStatus::Success));
    assert!(w.take_events().iter().any(|e| matches!(
        e,
        LmaEvent::NotificationAcknowledged { answer: NotificationAnswer::Bra(RevocationStatus::Success), .. }
    )));
    w.advance(secs(30));
    assert!(w.take_sent(mag(1)).iter().all(|m| !matches!(m, Message::BindingRevocation(_))));
}

#[test]
fn draft_5_2_3_notify_off_tells_nobody() {
    let mut c = config();
    c.notify = NotifyMode::Off;
    let mut w = two_interfaces(c);
    assert!(w.take_sent(mag(1)).is_empty());
}

// ---- draft §5.4: virtual interface --------------------------------------------------------------

#[test]
fn draft_5_4_virtual_interface_one_entry_several_proxy_coas() {
    let mut c = config();
    c.virtual_interface = true;
    let mut w = World::new(c);
    w.register(mag(1), &pbu("mn1@example.net"));
    w.take_intents();
    w.advance(secs(1));
    // Another physical interface at MAG2, even announced as a handoff (HI 3), is a new
    // attachment of the same entry, not a handoff.
    let ba = w.register(mag(2), &pbu("mn1@example.net").hi(Hi::BetweenMags).att(Att::Utran).lli(mac(2)));
    assert_eq!(hnps_of(&ba.options), vec![pool_prefix(0)], "the shared prefix");
    assert_eq!(w.lma.binding_cache().len(), 1);
    let b = w.lma.binding_cache().by_prefix(&pool_prefix(0)).unwrap();
    assert_eq!(b.attachments().map(|a| a.proxy_coa()).collect::<Vec<_>>(), vec![mag(1), mag(2)]);
    assert_eq!(
        w.take_intents(),
        vec![Intent::Add(tunnel(mag(2)))],
        "tunnels to both; the route stays at the first attachment (no handoff)"
    );
    assert!(w.take_events().iter().any(|e| matches!(e, LmaEvent::AttachmentAdded { .. })));
    // The first interface moves to MAG3 (same LL-ID): a handoff of that attachment only.
    w.advance(secs(1));
    w.register(mag(3), &pbu("mn1@example.net").hi(Hi::BetweenMags));
    assert_eq!(w.dp.tunnels, BTreeSet::from([mag(2), mag(3)]));
    assert_eq!(w.dp.routes[&pool_prefix(0)], mag(3));
    // MAG3's interface leaves: the route falls back to MAG2; the entry stays.
    w.advance(secs(1));
    let ba = w.register(mag(3), &pbu("mn1@example.net").hnp(pool_prefix(0)).lifetime(0).seq(2));
    assert_eq!((ba.status, ba.lifetime), (BaStatus::Accepted, 0));
    assert_eq!(w.dp.tunnels, BTreeSet::from([mag(2)]));
    assert_eq!(w.dp.routes[&pool_prefix(0)], mag(2));
    assert_eq!(w.lma.binding_cache().by_prefix(&pool_prefix(0)).unwrap().state(), BindingState::Active);
    // The last one leaves: a normal de-registration.
    let ba =
        w.register(mag(2), &pbu("mn1@example.net").hnp(pool_prefix(0)).lifetime(0).att(Att::Utran).lli(mac(2)).seq(2));
    assert_eq!(ba.status, BaStatus::Accepted);
    assert_eq!(w.lma.binding_cache().by_prefix(&pool_prefix(0)).unwrap().state(), BindingState::Deregistered);
    assert!(w.dp.routes.is_empty() && w.dp.tunnels.is_empty());
}

#[test]
fn draft_5_4_virtual_interface_attachments_expire_one_by_one() {
    let mut c = config();
    c.virtual_interface = true;
    let mut w = World::new(c);
    w.register(mag(1), &pbu("mn1@example.net").lifetime(50));
    w.advance(secs(1));
    w.register(mag(2), &pbu("mn1@example.net").att(Att::Utran).lli(mac(2)).lifetime(25));
    w.advance(secs(100));
    assert!(w.take_events().iter().any(|e| matches!(e, LmaEvent::AttachmentRemoved { .. })));
    assert_eq!(w.dp.routes[&pool_prefix(0)], mag(1));
    w.advance(secs(100));
    assert!(w.lma.binding_cache().is_empty());
}

// ---- RFC 5847 heartbeat ------------------------------------------------------------------------

fn heartbeat(flags: HeartbeatFlags, sequence: u32, counter: Option<u32>) -> Message {
    Message::Heartbeat(Heartbeat {
        flags,
        sequence,
        options: counter.map(MobilityOption::RestartCounter).into_iter().collect(),
    })
}

fn requests_to(w: &mut World, peer: Ipv6Addr) -> Vec<u32> {
    w.take_sent(peer)
        .iter()
        .filter_map(|m| match m {
            Message::Heartbeat(h) if !h.flags.contains(HeartbeatFlags::R) => Some(h.sequence),
            _ => None,
        })
        .collect()
}

#[test]
fn rfc5847_heartbeat_requests_are_answered_with_our_restart_counter() {
    let mut w = World::new(config());
    w.deliver(mag(9), heartbeat(HeartbeatFlags::empty(), 42, None));
    assert_eq!(w.take_sent(mag(9)), vec![heartbeat(HeartbeatFlags::R, 42, Some(7))]);
}

#[test]
fn rfc5847_missed_heartbeats_make_a_peer_unreachable_until_it_answers() {
    let mut w = World::new(with_heartbeats());
    w.register(mag(1), &pbu("mn1@example.net"));
    w.take_events();
    w.advance(secs(59));
    assert!(requests_to(&mut w, mag(1)).is_empty());
    w.advance(secs(1));
    assert_eq!(requests_to(&mut w, mag(1)), vec![500], "HEARTBEAT_INTERVAL 60 s");
    w.advance(secs(120));
    assert_eq!(requests_to(&mut w, mag(1)), vec![501, 502]);
    assert!(!w.take_events().iter().any(|e| matches!(e, LmaEvent::PeerUnreachable { .. })), "two misses are allowed");
    w.advance(secs(60));
    assert_eq!(requests_to(&mut w, mag(1)), vec![503]);
    assert_eq!(w.take_events(), vec![LmaEvent::PeerUnreachable { peer: mag(1), missed: 3 }]);
    w.deliver(mag(1), heartbeat(HeartbeatFlags::R, 503, Some(1)));
    assert_eq!(w.take_events(), vec![LmaEvent::PeerReachable { peer: mag(1) }]);
    // A response to nothing outstanding is ignored.
    w.deliver(mag(1), heartbeat(HeartbeatFlags::R, 999, Some(1)));
    assert!(matches!(w.take_events()[..], [LmaEvent::Ignored { .. }]));
    // Heartbeats stop with the MAG's last session.
    w.register(mag(1), &pbu("mn1@example.net").hnp(pool_prefix(0)).lifetime(0).seq(2));
    w.advance(secs(300));
    assert!(requests_to(&mut w, mag(1)).is_empty());
}

#[test]
fn rfc5847_restart_counter_change_is_a_restart_and_cleans_up_the_mags_sessions() {
    let mut w = World::new(with_heartbeats());
    w.register(mag(1), &pbu("mn1@example.net").muho());
    w.register(mag(1), &pbu("mn2@example.net"));
    w.register(mag(2), &pbu("mn1@example.net").att(Att::Utran).lli(mac(2)).muho());
    w.take_sent(mag(1));
    w.take_sent(mag(2));
    w.advance(secs(60));
    let seq = requests_to(&mut w, mag(1))[0];
    w.deliver(mag(1), heartbeat(HeartbeatFlags::R, seq, Some(5)));
    w.take_events();
    w.advance(secs(60));
    let seq = requests_to(&mut w, mag(1))[0];
    w.deliver(mag(1), heartbeat(HeartbeatFlags::R, seq, Some(6)));
    let events = w.take_events();
    assert!(events.contains(&LmaEvent::PeerRestarted { peer: mag(1), previous: 5, current: 6, sessions_removed: 2 }));
    assert_eq!(w.lma.binding_cache().len(), 1, "only the session at MAG2 is left");
    assert!(!w.dp.tunnels.contains(&mag(1)));
    // mn1's other MAG hears that its if1 prefix is gone.
    let sent = w.take_sent(mag(2));
    assert_eq!(muhos_of(&upn(sent.last().unwrap()).options), vec![Prefix::ALL_ZERO]);
}

#[test]
fn rfc5847_restart_without_clean_up_keeps_the_sessions() {
    let mut c = with_heartbeats();
    c.clean_up_on_peer_restart = false;
    let mut w = World::new(c);
    w.register(mag(1), &pbu("mn1@example.net"));
    // An unsolicited response (U) reports the restart at once.
    w.deliver(mag(1), heartbeat(HeartbeatFlags::R | HeartbeatFlags::U, 0, Some(1)));
    w.deliver(mag(1), heartbeat(HeartbeatFlags::R | HeartbeatFlags::U, 0, Some(2)));
    assert!(w.take_events().contains(&LmaEvent::PeerRestarted {
        peer: mag(1),
        previous: 1,
        current: 2,
        sessions_removed: 0
    }));
    assert_eq!(w.lma.binding_cache().len(), 1);
}

// ---- RFC 5846: revocation initiated by the LMA -------------------------------------------------

#[test]
fn rfc5846_revoking_a_mobile_node_sends_a_bri_per_mag_and_deletes_its_sessions() {
    let mut w = World::new(config());
    w.register(mag(1), &pbu("mn1@example.net"));
    w.register(mag(2), &pbu("mn1@example.net").att(Att::Utran).lli(mac(2)));
    w.register(mag(2), &pbu("mn2@example.net"));
    w.take_intents();
    w.lma.revoke(w.now, RevocationScope::MobileNode(nai("mn1@example.net")));
    w.step();
    assert_eq!(w.prefixes_of("mn1@example.net"), Vec::<Vec<Prefix>>::new());
    assert_eq!(w.lma.binding_cache().len(), 1);
    let removed: BTreeSet<_> =
        w.take_intents().into_iter().collect::<Vec<_>>().into_iter().map(|i| format!("{i:?}")).collect();
    assert_eq!(removed.len(), 3, "two routes and MAG1's tunnel: {removed:?}");
    let to1 = w.take_sent(mag(1));
    let b = bri(&to1[0]);
    assert_eq!(b.kind, RevocationKind::Indication(RevocationTrigger::AdministrativeReason));
    assert_eq!(b.flags, RevocationFlags::P, "per-MN: no G flag");
    assert_eq!(
        b.options,
        vec![MobilityOption::MnIdentifier(nai("mn1@example.net")), MobilityOption::HomeNetworkPrefix(pool_prefix(0))]
    );
    let to2 = w.take_sent(mag(2));
    assert_eq!(hnps_of(&bri(&to2[0]).options), vec![pool_prefix(1)]);
    // MAG1 acknowledges; MAG2 never does.
    w.deliver(mag(1), bra(b.sequence, RevocationFlags::P, RevocationStatus::Success));
    let mut retransmissions = 0;
    for _ in 0..20 {
        w.advance(secs(1));
        retransmissions += w.take_sent(mag(2)).len();
        assert!(w.take_sent(mag(1)).is_empty());
    }
    assert_eq!(retransmissions, 3);
    let events = w.take_events();
    assert!(events.iter().any(|e| matches!(e, LmaEvent::RevocationAcknowledged { .. })));
    assert!(events.iter().any(|e| matches!(e, LmaEvent::RevocationGivenUp { peer, .. } if *peer == mag(2))));
}

#[test]
fn rfc5846_revoking_a_mag_is_global_and_failures_are_reported() {
    let mut w = World::new(config());
    w.register(mag(1), &pbu("mn1@example.net").muho());
    w.register(mag(2), &pbu("mn1@example.net").att(Att::Utran).lli(mac(2)).muho());
    w.register(mag(1), &pbu("mn2@example.net"));
    w.take_sent(mag(1));
    w.take_sent(mag(2));
    w.lma.revoke(w.now, RevocationScope::Mag(mag(1)));
    w.step();
    assert_eq!(w.lma.binding_cache().len(), 1);
    let to1 = w.take_sent(mag(1));
    assert_eq!(to1.len(), 1);
    let b = bri(&to1[0]);
    assert_eq!(b.flags, RevocationFlags::P | RevocationFlags::G);
    assert!(b.options.is_empty());
    // mn1's MAG2 is told its if1 prefix is gone.
    assert_eq!(muhos_of(&upn(&w.take_sent(mag(2))[0]).options), vec![Prefix::ALL_ZERO]);
    w.deliver(mag(1), bra(b.sequence, b.flags, RevocationStatus::GlobalRevocationNotAuthorized));
    assert!(w.take_events().iter().any(|e| matches!(
        e,
        LmaEvent::RevocationFailed { status: RevocationStatus::GlobalRevocationNotAuthorized, .. }
    )));
    // Nothing at that MAG any more.
    w.lma.revoke(w.now, RevocationScope::Mag(mag(1)));
    w.step();
    assert!(w.take_sent(mag(1)).is_empty());
    assert!(matches!(w.take_events()[..], [LmaEvent::Ignored { .. }]));
}

#[test]
fn rfc5846_revoking_everything() {
    let mut w = World::new(config());
    w.register(mag(1), &pbu("mn1@example.net"));
    w.register(mag(2), &pbu("mn2@example.net"));
    w.lma.revoke(w.now, RevocationScope::All);
    w.step();
    assert!(w.lma.binding_cache().is_empty());
    assert!(w.dp.tunnels.is_empty() && w.dp.routes.is_empty());
    for m in [mag(1), mag(2)] {
        let sent = w.take_sent(m);
        assert!(bri(&sent[0]).flags.contains(RevocationFlags::G));
    }
    // The revoked prefixes rest in the pools while fresh ones are left.
    let ba = w.register(mag(1), &pbu("mn3@example.net"));
    assert_eq!(hnps_of(&ba.options)[0], pool_prefix(2));
}

// ---- RFC 6275 §9.2: other input ---------------------------------------------------------------

#[test]
fn rfc6275_9_2_unknown_mh_type_gets_a_rate_limited_binding_error() {
    let mut w = World::new(config());
    let unknown = Message::Unknown(UnknownMessage { mh_type: 42, data: vec![0; 10] });
    w.deliver(mag(1), unknown.clone());
    let sent = w.take_sent(mag(1));
    let [Message::BindingError(be)] = &sent[..] else { panic!("{sent:?}") };
    assert_eq!(be.status, BindingErrorStatus::UnrecognizedMhType);
    assert!(be.home_address.is_unspecified(), "RFC 6275 §9.3.3: no Home Address option: unspecified");
    w.deliver(mag(1), unknown.clone());
    assert!(w.take_sent(mag(1)).is_empty(), "rate-limited");
    w.advance(ms(100));
    w.deliver(mag(1), unknown);
    assert_eq!(w.take_sent(mag(1)).len(), 1);
}

#[test]
fn messages_not_for_an_lma_are_ignored_with_an_event() {
    let mut w = World::new(config());
    let inputs = [
        Message::BindingAck(BindingAck {
            status: BaStatus::Accepted,
            flags: BaFlags::P,
            sequence: 1,
            lifetime: 1,
            options: vec![],
        }),
        Message::UpdateNotification(UpdateNotification {
            sequence: 1,
            reason: pmip6_wire::NotificationReason::ForceReregistration,
            flags: UpnFlags::A,
            options: vec![],
        }),
        Message::BindingRevocation(BindingRevocation {
            kind: RevocationKind::Indication(RevocationTrigger::Unspecified),
            sequence: 1,
            flags: RevocationFlags::P,
            options: vec![],
        }),
        bra(77, RevocationFlags::P, RevocationStatus::Success),
        upa(77, UpaStatus::Success),
        heartbeat(HeartbeatFlags::R, 1, None),
    ];
    for m in inputs {
        w.deliver(mag(1), m.clone());
        assert!(w.take_sent(mag(1)).is_empty(), "{m}");
        assert!(matches!(w.take_events()[..], [LmaEvent::Ignored { .. }]), "{m}");
    }
}

// ---- determinism, robustness, memory -----------------------------------------------------------

fn scenario(w: &mut World) {
    for i in 0..5u8 {
        let mn: &'static str = ["a@x", "b@x", "c@x", "d@x", "e@x"][usize::from(i)];
        w.send(mag(u16::from(i % 3) + 1), &pbu(mn).muho().lli(mac(i)));
        w.send(mag(u16::from(i % 2) + 4), &pbu(mn).muho().att(Att::Utran).lli(mac(i + 100)).lifetime(30));
        w.advance(ms(700));
    }
    w.lma.revoke(w.now, RevocationScope::Mag(mag(2)));
    w.step();
    w.advance(secs(200));
}

#[test]
fn the_engine_is_deterministic() {
    let run = || {
        let mut w = World::new(config());
        scenario(&mut w);
        (w.outbox, w.intents, w.events)
    };
    let (a, b) = (run(), run());
    assert_eq!(a.0, b.0);
    assert_eq!(a.1, b.1);
    assert_eq!(a.2, b.2);
    assert!(!a.0.is_empty() && !a.1.is_empty());
}

mod robustness {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct RandomPbu {
        mag: u16,
        mn: usize,
        hi: u8,
        lli: u8,
        att: u8,
        lifetime: u16,
        prefix: Option<u16>,
        muho: bool,
        skew: i64,
    }

    #[derive(Debug, Clone)]
    enum Op {
        Pbu(RandomPbu),
        Advance(u64),
        Upa { mag: u16, seq: u16 },
        Revoke(u8),
        Heartbeat { mag: u16, counter: u32 },
    }

    fn random_pbu() -> impl Strategy<Value = RandomPbu> {
        let lifetime = prop_oneof![Just(0u16), 1u16..40];
        let who = (1u16..4, 0usize..3, 0u8..7, 0u8..3, 3u8..5);
        let what = (lifetime, proptest::option::of(0u16..6), any::<bool>(), -400i64..400);
        (who, what).prop_map(|((mag, mn, hi, lli, att), (lifetime, prefix, muho, skew))| RandomPbu {
            mag,
            mn,
            hi,
            lli,
            att,
            lifetime,
            prefix,
            muho,
            skew,
        })
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => random_pbu().prop_map(Op::Pbu),
            3 => (1u64..20_000).prop_map(Op::Advance),
            1 => (1u16..4, 1000u16..1030).prop_map(|(mag, seq)| Op::Upa { mag, seq }),
            1 => (0u8..4).prop_map(Op::Revoke),
            1 => (1u16..4, 0u32..3).prop_map(|(mag, counter)| Op::Heartbeat { mag, counter }),
        ]
    }

    /// Whatever the MAGs send, in whatever order: no panic, and the data plane always matches
    /// the binding cache (the World checks after every step). Returns whether everything is
    /// gone once every lifetime has ended.
    fn run(ops: Vec<Op>, virtual_interface: bool) -> bool {
        let mut c = config();
        c.virtual_interface = virtual_interface;
        c.heartbeat_interval = Some(secs(5));
        c.prefix_pools = vec![Prefix::new("2001:db8:100::".parse().unwrap(), 62)];
        let mut w = World::new(c);
        let mns = ["a@x", "b@x", "c@x"];
        let mut seq = 0u16;
        for op in ops {
            match op {
                Op::Pbu(r) => {
                    seq = seq.wrapping_add(1);
                    let mut p = pbu(mns[r.mn])
                        .hi(Hi::from(r.hi))
                        .att(Att::from(r.att))
                        .lifetime(r.lifetime)
                        .seq(seq)
                        .ts(Ts::Skew(r.skew));
                    p = if r.lli == 0 { p.no_lli() } else { p.lli(mac(r.lli)) };
                    if let Some(i) = r.prefix {
                        p = p.hnp(pool_prefix(i));
                    }
                    if r.muho {
                        p = p.muho();
                    }
                    w.send(mag(r.mag), &p);
                }
                Op::Advance(n) => w.advance(ms(n)),
                Op::Upa { mag: m, seq } => w.deliver(mag(m), upa(seq, UpaStatus::Success)),
                Op::Revoke(0) => {
                    w.lma.revoke(w.now, RevocationScope::All);
                    w.step();
                }
                Op::Revoke(n) => {
                    w.lma.revoke(w.now, RevocationScope::Mag(mag(u16::from(n))));
                    w.step();
                }
                Op::Heartbeat { mag: m, counter } => {
                    w.deliver(mag(m), heartbeat(HeartbeatFlags::R | HeartbeatFlags::U, 0, Some(counter)))
                }
            }
            w.outbox.clear();
        }
        w.advance(secs(100_000));
        w.lma.binding_cache().is_empty() && w.dp.routes.is_empty() && w.dp.tunnels.is_empty()
    }

    // 256 cases by default; PROPTEST_CASES=n runs more.
    proptest! {
        #[test]
        fn random_signalling_keeps_the_data_plane_consistent(
            ops in proptest::collection::vec(op(), 1..60),
            virtual_interface in any::<bool>(),
        ) {
            prop_assert!(run(ops, virtual_interface));
        }
    }
}

#[test]
fn binding_cache_memory_per_binding_stays_under_512_bytes() {
    // PMIP6_MEMORY_MNS=1000000 (in release) measures the 1M MNs x 2 interfaces target.
    let mns: u32 = std::env::var("PMIP6_MEMORY_MNS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let mut c = config();
    c.prefix_pools = vec![Prefix::new("2001:db8::".parse().unwrap(), 32)];
    // Measure the steady state: notifications waiting for their UPA are transient.
    c.notify = NotifyMode::Off;
    // The binding cache alone: the flow-mobility engine's per-node state has its own budget.
    c.flow = None;
    let before = HEAP.with(Cell::get);
    let mut lma = Lma::new(c);
    let now = T0;
    let ts = Timestamp::from_unix(now);
    for i in 0..mns {
        let id = MnIdentifier::nai(&format!("mn{i}@example.net"));
        for (n, att) in [(0u8, Att::Ieee80211), (1, Att::Utran)] {
            let options = vec![
                MobilityOption::MnIdentifier(id.clone()),
                MobilityOption::HomeNetworkPrefix(Prefix::ALL_ZERO),
                MobilityOption::HandoffIndicator(Hi::NewInterface),
                MobilityOption::AccessTechnologyType(att),
                MobilityOption::MnLinkLayerIdentifier(vec![
                    2,
                    n,
                    (i >> 24) as u8,
                    (i >> 16) as u8,
                    (i >> 8) as u8,
                    i as u8,
                ]),
                MobilityOption::Timestamp(ts),
                MobilityOption::MuHo { option_type: 18, prefix: Prefix::ALL_ZERO },
            ];
            let bu = BindingUpdate { sequence: 1, flags: BuFlags::A | BuFlags::P, lifetime: 900, options };
            lma.handle_message(
                now,
                Received {
                    src: mag((i % 100) as u16 + 1 + 100 * u16::from(n)),
                    dst: LMAA,
                    message: Message::BindingUpdate(bu),
                },
            );
            while lma.poll_transmit().is_some() {}
            while lma.poll_intent().is_some() {}
            while lma.poll_event().is_some() {}
        }
    }
    let bytes = HEAP.with(Cell::get) - before + std::mem::size_of::<Lma>() as isize;
    let bindings = lma.binding_cache().len();
    assert_eq!(bindings, 2 * mns as usize);
    let per_binding = bytes as f64 / bindings as f64;
    println!("{mns} MNs x 2 interfaces: {bytes} bytes, {per_binding:.0} bytes per binding");
    assert!(per_binding <= 512.0, "{per_binding:.0} bytes per binding");
    lma.revoke(now, RevocationScope::All);
    while lma.poll_transmit().is_some() {}
    while lma.poll_intent().is_some() {}
    while lma.poll_event().is_some() {}
    assert!(lma.binding_cache().is_empty());
}

// ---- flow mobility: draft-bernardos-mif-pmip-02 §4.2, §5.3; RFC 7864 ---------------------------

const CN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xcccc, 0, 0, 0, 0, 1);

/// A downlink UDP packet from the correspondent node.
fn udp6(dst: Ipv6Addr, sport: u16, dport: u16) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
    p.extend_from_slice(&CN.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 8, 0, 0]);
    p
}

fn host(prefix: Prefix, n: u16) -> Ipv6Addr {
    let s = prefix.addr.segments();
    Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, n)
}

fn udp_dport(port: u16) -> pmip6_wire::selector::TrafficSelector {
    use pmip6_wire::selector::{FieldRange, Ipv6Selector, TrafficSelector};
    TrafficSelector::Ipv6(Ipv6Selector {
        dst_port: Some(FieldRange::exact(port)),
        next_header: Some(FieldRange::exact(17)),
        ..Ipv6Selector::default()
    })
}

impl World {
    fn packet(&mut self, bytes: &[u8]) -> (u16, Route) {
        let v = self.lma.handle_packet(self.now, bytes).expect("classified");
        self.step();
        match v {
            Verdict::Flow { fid, route, .. } => (fid, route),
            other => panic!("expected a flow, got {other:?}"),
        }
    }

    fn steering_intents(&mut self) -> Vec<Intent> {
        self.take_intents()
            .into_iter()
            .filter(|i| matches!(i, Intent::Add(Resource::Steering(_)) | Intent::Remove(Resource::Steering(_))))
            .collect()
    }

    /// The MN on WLAN at MAG1 (its prefix first) and on UTRAN at MAG2, as two sessions.
    fn attach_two(&mut self, muho: bool) -> (Prefix, Prefix) {
        let mut wlan = pbu("mn@example.net").att(Att::Ieee80211).lli(mac(1));
        let mut utran = pbu("mn@example.net").att(Att::Utran).lli(mac(2));
        if muho {
            wlan = wlan.muho();
            utran = utran.muho();
        }
        let a = self.register(mag(1), &wlan);
        let b = self.register(mag(2), &utran);
        // Answer the prefix-set notifications (draft §5.2.3).
        for m in self.take_sent(mag(1)) {
            if let Message::UpdateNotification(u) = m {
                self.deliver(mag(1), upa(u.sequence, UpaStatus::Success));
            }
        }
        (hnps_of(&a.options)[0], hnps_of(&b.options)[0])
    }
}

fn flow_key(dst: Ipv6Addr, sport: u16, dport: u16) -> pmip6_engine::flow::FlowKey {
    pmip6_engine::flow::classify(&udp6(dst, sport, dport)).expect("classified").key
}

#[test]
fn draft_4_2_operator_rule_steers_matching_flows_moves_fail_over_and_leave_nothing() {
    let mut w = World::new(config());
    let (pref1, pref2) = w.attach_two(true);
    let rule = Rule::new(udp_dport(5004), TargetSpec::AccessTechnology(Att::Utran));
    w.lma.set_operator_rules(w.now, vec![OperatorRule { rule, scope: Scope::AllMobileNodes, locked: false }]).unwrap();
    w.step();
    w.take_intents();
    let mn = nai("mn@example.net");

    // A matching packet to pref1 (routed to MAG1) goes to the UTRAN attachment at MAG2.
    let (video, r) = w.packet(&udp6(host(pref1, 1), 40000, 5004));
    assert_eq!(r, Route::Tunnel(mag(2)));
    let video_key = flow_key(host(pref1, 1), 40000, 5004);
    assert_eq!(
        w.steering_intents(),
        vec![Intent::Add(Resource::Steering(Steering::Flow { key: video_key, route: Route::Tunnel(mag(2)) }))]
    );
    // A non-matching one follows the per-prefix route (RFC 5213 §5.6.2).
    let (web, r) = w.packet(&udp6(host(pref1, 1), 40001, 80));
    assert_eq!(r, Route::PrefixRoute);
    let web_key = flow_key(host(pref1, 1), 40001, 80);
    assert_eq!(
        w.steering_intents(),
        vec![Intent::Add(Resource::Steering(Steering::Flow { key: web_key, route: Route::PrefixRoute }))]
    );
    let (video2, _) = w.packet(&udp6(host(pref2, 1), 40002, 5004));
    let (video3, _) = w.packet(&udp6(host(pref1, 2), 40003, 5004));
    w.take_intents();

    // An explicit move switches one flow, not the other.
    assert_eq!(w.lma.move_flow(w.now, &mn, video, TargetSpec::Mag(mag(1))), Ok(Route::Tunnel(mag(1))));
    w.step();
    assert_eq!(
        w.steering_intents(),
        vec![
            Intent::Remove(Resource::Steering(Steering::Flow { key: video_key, route: Route::Tunnel(mag(2)) })),
            Intent::Add(Resource::Steering(Steering::Flow { key: video_key, route: Route::Tunnel(mag(1)) })),
        ]
    );
    let flows = w.lma.flow_steering().unwrap();
    assert_eq!(flows.flow(&mn, web).unwrap().route, Route::PrefixRoute);
    assert_eq!(flows.flow(&mn, video2).unwrap().route, Route::Tunnel(mag(2)));

    // Releasing the move puts the flow back where the operator rule wants it.
    assert_eq!(w.lma.unpin_flow(w.now, &mn, video), Ok(Route::Tunnel(mag(2))));
    w.step();
    assert_eq!(
        w.steering_intents(),
        vec![
            Intent::Remove(Resource::Steering(Steering::Flow { key: video_key, route: Route::Tunnel(mag(1)) })),
            Intent::Add(Resource::Steering(Steering::Flow { key: video_key, route: Route::Tunnel(mag(2)) })),
        ]
    );
    assert_eq!(w.lma.unpin_flow(w.now, &mn, 999), Err(MoveError::UnknownFlow(999)));
    assert_eq!(w.lma.move_flow(w.now, &mn, video, TargetSpec::Mag(mag(1))), Ok(Route::Tunnel(mag(1))));
    w.step();
    w.take_intents();

    // The UTRAN attachment goes: its flows move at once, in the same step, and its tunnel is
    // removed only after the steering into it (the fake data plane checks the order).
    w.register(mag(2), &pbu("mn@example.net").att(Att::Utran).lli(mac(2)).hnp(pref2).lifetime(0).seq(2));
    let flows = w.lma.flow_steering().unwrap();
    // The rule's fallback (next rule, none left) is the per-prefix route: pref1 via MAG1.
    assert_eq!(flows.flow(&mn, video3).unwrap().route, Route::PrefixRoute, "failover");
    assert_eq!(w.dp.routes.get(&pref1), Some(&mag(1)));
    assert!(flows.flow(&mn, video2).is_none(), "pref2 left with the UTRAN session");
    assert!(!w.dp.steering.iter().any(|s| steering_tunnel(s) == Some(mag(2))));
    assert!(!w.dp.tunnels.contains(&mag(2)));

    // The MN leaves: every steering entry is withdrawn.
    w.register(mag(1), &pbu("mn@example.net").att(Att::Ieee80211).lli(mac(1)).hnp(pref1).lifetime(0).seq(2));
    w.advance(secs(10));
    assert!(w.lma.binding_cache().is_empty());
    assert!(w.dp.steering.is_empty(), "left behind: {:?}", w.dp.steering);
    assert!(w.lma.flow_steering().unwrap().installed().is_empty());
}

#[test]
fn rfc7864_3_1_make_before_break_commits_after_the_upa() {
    let mut w = World::new(config());
    let (pref1, _pref2) = w.attach_two(false);
    let mn = nai("mn@example.net");
    let (fid, r) = w.packet(&udp6(host(pref1, 1), 40000, 5004));
    assert_eq!(r, Route::PrefixRoute);
    let key = flow_key(host(pref1, 1), 40000, 5004);
    w.take_intents();

    // MAG2 does not route pref1: it is asked first, and the flow stays where it is.
    assert_eq!(w.lma.move_flow(w.now, &mn, fid, TargetSpec::Mag(mag(2))), Ok(Route::PrefixRoute));
    w.step();
    assert!(w.steering_intents().is_empty(), "no move before the UPA");
    let sent = w.take_sent(mag(2));
    assert_eq!(sent.len(), 1, "{sent:?}");
    let u = upn(&sent[0]).clone();
    assert_eq!(u.reason, pmip6_wire::NotificationReason::FlowMobility);
    assert!(u.flags.contains(UpnFlags::A));
    assert!(u.options.contains(&MobilityOption::MnIdentifier(mn.clone())));
    assert_eq!(hnps_of(&u.options), vec![pref1]);
    // RFC 6089 §4.2: the moving flow, by its 6-tuple.
    let fids: Vec<_> = u
        .options
        .iter()
        .filter_map(|o| match o {
            MobilityOption::FlowIdentification(fi) => Some((fi.fid, fi.traffic_selector().cloned())),
            _ => None,
        })
        .collect();
    let exact = pmip6_wire::selector::Ipv6Selector::exact_six_tuple(CN, host(pref1, 1), 40000, 5004, 0, 17);
    assert_eq!(fids, vec![(fid, Some(pmip6_wire::selector::TrafficSelector::Ipv6(exact)))]);

    // Retransmitted like the other notifications, with the same sequence number.
    w.advance(secs(1));
    let again = w.take_sent(mag(2));
    assert_eq!(again.len(), 1);
    assert_eq!(upn(&again[0]).sequence, u.sequence);

    // SUCCESS: MAG2 now routes pref1, and the held move commits.
    w.deliver(mag(2), upa(u.sequence, UpaStatus::Success));
    assert_eq!(
        w.steering_intents(),
        vec![
            Intent::Remove(Resource::Steering(Steering::Flow { key, route: Route::PrefixRoute })),
            Intent::Add(Resource::Steering(Steering::Flow { key, route: Route::Tunnel(mag(2)) })),
        ]
    );
    // A second flow of pref1 moves to MAG2 at once: no second notification.
    let (fid2, _) = w.packet(&udp6(host(pref1, 1), 40001, 5004));
    w.take_intents();
    assert_eq!(w.lma.move_flow(w.now, &mn, fid2, TargetSpec::Mag(mag(2))), Ok(Route::Tunnel(mag(2))));
    w.step();
    assert!(w.take_sent(mag(2)).is_empty());
}

#[test]
fn rfc7864_upa_132_refuses_the_move_and_the_flow_falls_back() {
    let mut w = World::new(config());
    let (pref1, _) = w.attach_two(false);
    let mn = nai("mn@example.net");
    let (fid, _) = w.packet(&udp6(host(pref1, 1), 40000, 5004));
    w.take_intents();
    w.lma.move_flow(w.now, &mn, fid, TargetSpec::Mag(mag(2))).unwrap();
    w.step();
    let sent = w.take_sent(mag(2));
    let u = upn(&sent[0]).clone();
    w.deliver(mag(2), upa(u.sequence, UpaStatus::MnNotAttached));
    assert!(w.steering_intents().iter().all(|i| !matches!(
        i,
        Intent::Add(Resource::Steering(Steering::Flow { route: Route::Tunnel(p), .. })) if *p == mag(2)
    )));
    assert_eq!(w.lma.flow_steering().unwrap().flow(&mn, fid).unwrap().route, Route::PrefixRoute);
    // Answered: no retransmission.
    w.advance(secs(60));
    assert!(w.take_sent(mag(2)).is_empty());
}

#[test]
fn flow_mobility_off_leaves_base_behaviour() {
    let mut c = config();
    c.flow = None;
    let mut w = World::new(c);
    let (pref1, _) = w.attach_two(true);
    let v = w.lma.handle_packet(w.now, &udp6(host(pref1, 1), 1, 2)).unwrap();
    assert_eq!(v, Verdict::NotMobileNode);
    w.step();
    assert!(w.steering_intents().is_empty());
}

#[test]
fn rfc7864_no_answer_is_a_refusal_after_the_last_retransmission() {
    let mut w = World::new(config());
    let (pref1, _) = w.attach_two(false);
    let mn = nai("mn@example.net");
    let (fid, _) = w.packet(&udp6(host(pref1, 1), 40000, 5004));
    w.take_intents();
    w.lma.move_flow(w.now, &mn, fid, TargetSpec::Mag(mag(2))).unwrap();
    w.step();
    w.advance(secs(120));
    let upns = w.take_sent(mag(2)).iter().filter(|m| matches!(m, Message::UpdateNotification(_))).count();
    assert_eq!(upns, 4, "the first transmission and three retransmissions");
    assert!(w.take_events().iter().any(|e| matches!(e, LmaEvent::NotificationGivenUp { peer, .. } if *peer == mag(2))));
    assert!(!w.dp.steering.iter().any(|s| steering_tunnel(s) == Some(mag(2))));
    // The flow went idle meanwhile and its steering was withdrawn.
    assert!(w.lma.flow_steering().unwrap().flow(&mn, fid).is_none());
    assert!(w.dp.steering.is_empty());
}

#[test]
fn a_mobile_node_enters_the_flow_engine_with_its_first_flow_and_leaves_with_its_last_session() {
    let mut w = World::new(config());
    let (pref1, _) = w.attach_two(true);
    let mn = nai("mn@example.net");
    // Registered, no flow, no rule of its own: the flow engine holds nothing for it.
    assert!(w.lma.flow_steering().unwrap().mobile_node(&mn).is_none());
    // Its first downlink packet brings it in, with both attachments.
    let (_, route) = w.packet(&udp6(host(pref1, 1), 40000, 80));
    assert_eq!(route, Route::PrefixRoute);
    let view = w.lma.flow_steering().unwrap().mobile_node(&mn).expect("known after its first flow");
    assert_eq!(view.attachments.len(), 2);
    // A change of its bindings now reaches the engine: the UTRAN attachment leaves.
    let pref2 = w.lma.binding_cache().sessions(&mn).find(|b| !b.prefixes().contains(&pref1)).unwrap().prefixes()[0];
    w.register(mag(2), &pbu("mn@example.net").att(Att::Utran).lli(mac(2)).hnp(pref2).lifetime(0).seq(2));
    assert_eq!(w.lma.flow_steering().unwrap().mobile_node(&mn).unwrap().attachments.len(), 1);
    // Its last session gone, it leaves the engine too.
    w.register(mag(1), &pbu("mn@example.net").att(Att::Ieee80211).lli(mac(1)).hnp(pref1).lifetime(0).seq(2));
    assert!(w.lma.flow_steering().unwrap().mobile_node(&mn).is_none());
}

// ---- draft §5.4: a virtual interface, one MAC and one prefix on two accesses --------------------

/// The draft's second configuration: a virtual-interface LMA, and if1 (WLAN, MAC 1) attached at
/// MAG1 with MuHo. Its second interface carries the same MAC address.
fn virtual_interface_if1() -> World {
    let mut c = config();
    c.virtual_interface = true;
    let mut w = World::new(c);
    w.register(mag(1), &pbu("mn@example.net").muho());
    w.take_intents();
    w.take_events();
    w.advance(secs(1));
    w
}

#[test]
fn draft_5_4_same_mac_other_mag_other_att_is_a_second_attachment_not_a_handoff() {
    // Without the mode, the same PBU is another interface (RFC 5213 §5.4.1.2: ATT differs, HI 1):
    // a session of its own with its own prefix.
    let mut w = World::new(config());
    w.register(mag(1), &pbu("mn@example.net").muho());
    let ba = w.register(mag(2), &pbu("mn@example.net").att(Att::Utran).muho());
    assert_eq!(hnps_of(&ba.options), vec![pool_prefix(1)]);
    assert_eq!(w.lma.binding_cache().len(), 2);

    // With it: the same MN-ID and MN-LL-ID from MAG2, UTRAN, MuHo.
    let mut w = virtual_interface_if1();
    let ba = w.register(mag(2), &pbu("mn@example.net").att(Att::Utran).muho());
    assert_eq!((ba.status, ba.lifetime), (BaStatus::Accepted, 900));
    assert_eq!(hnps_of(&ba.options), vec![pool_prefix(0)], "the same prefix");
    assert_eq!(w.lma.binding_cache().len(), 1, "one entry");
    let b = w.lma.binding_cache().by_prefix(&pool_prefix(0)).unwrap();
    assert_eq!(b.attachments().map(|a| a.proxy_coa()).collect::<Vec<_>>(), vec![mag(1), mag(2)]);
    assert_eq!(b.route_peer(), Some(mag(1)), "the prefix route stays at the first attachment");
    assert_eq!(w.take_intents(), vec![Intent::Add(tunnel(mag(2)))], "a second tunnel, no route change");
    let events = w.take_events();
    assert!(events.iter().any(|e| matches!(e, LmaEvent::AttachmentAdded { proxy_coa, .. } if *proxy_coa == mag(2))));
    assert!(!events.iter().any(|e| matches!(e, LmaEvent::BindingHandedOff { .. })), "{events:?}");

    // Each MAG's re-registration refreshes its own attachment, though both name the same MAC.
    w.advance(secs(1));
    w.register(mag(2), &pbu("mn@example.net").att(Att::Utran).hi(Hi::NotChanged).hnp(pool_prefix(0)).seq(2));
    w.register(mag(1), &pbu("mn@example.net").hi(Hi::NotChanged).hnp(pool_prefix(0)).seq(2));
    let b = w.lma.binding_cache().by_prefix(&pool_prefix(0)).unwrap();
    assert_eq!(b.attachments().map(|a| a.proxy_coa()).collect::<Vec<_>>(), vec![mag(1), mag(2)]);
    assert!(w.take_intents().is_empty());
    let events = w.take_events();
    assert_eq!(events.iter().filter(|e| matches!(e, LmaEvent::BindingRefreshed { .. })).count(), 2, "{events:?}");
}

#[test]
fn draft_5_4_same_mac_same_att_the_handoff_indicator_tells_a_new_interface_from_a_handoff() {
    let mut w = virtual_interface_if1();
    // Two WLAN interfaces with one MAC: MAG2 announces a new interface (HI 1), MAG3 one sharing
    // the prefixes (RFC 7864, HI 6): two more attachments.
    let ba = w.register(mag(2), &pbu("mn@example.net"));
    assert_eq!(hnps_of(&ba.options), vec![pool_prefix(0)]);
    w.advance(secs(1));
    let ba = w.register(mag(3), &pbu("mn@example.net").hi(Hi::NewInterfaceSharingPrefixes));
    assert_eq!(hnps_of(&ba.options), vec![pool_prefix(0)]);
    let b = w.lma.binding_cache().by_prefix(&pool_prefix(0)).unwrap();
    assert_eq!(b.attachments().map(|a| a.proxy_coa()).collect::<Vec<_>>(), vec![mag(1), mag(2), mag(3)]);
    assert_eq!(w.dp.routes[&pool_prefix(0)], mag(1));
    // MAG2's re-registration is its own attachment's.
    w.advance(secs(1));
    w.register(mag(2), &pbu("mn@example.net").hi(Hi::NotChanged).hnp(pool_prefix(0)).seq(2));
    assert!(!w.take_events().iter().any(|e| matches!(e, LmaEvent::BindingHandedOff { .. })));
    // A handoff between MAGs (HI 3) moves an interface: the first one, to MAG4.
    w.advance(secs(1));
    w.register(mag(4), &pbu("mn@example.net").hi(Hi::BetweenMags).hnp(pool_prefix(0)));
    let b = w.lma.binding_cache().by_prefix(&pool_prefix(0)).unwrap();
    assert_eq!(b.attachments().map(|a| a.proxy_coa()).collect::<Vec<_>>(), vec![mag(4), mag(2), mag(3)]);
    assert_eq!(w.dp.routes[&pool_prefix(0)], mag(4), "the first interface took the route along");
    // MAG2's interface leaves; the link index still finds the entry through the others.
    w.advance(secs(1));
    let ba = w.register(mag(2), &pbu("mn@example.net").hnp(pool_prefix(0)).lifetime(0).seq(3));
    assert_eq!((ba.status, ba.lifetime), (BaStatus::Accepted, 0));
    assert_eq!(w.dp.tunnels, BTreeSet::from([mag(3), mag(4)]));
    let cache = w.lma.binding_cache();
    assert!(cache.by_link_layer(&nai("mn@example.net"), Att::Ieee80211, &mac(1)).is_some());
}

#[test]
fn draft_5_4_a_flow_of_the_shared_prefix_moves_between_the_accesses_and_fails_over() {
    let mut w = virtual_interface_if1();
    w.register(mag(2), &pbu("mn@example.net").att(Att::Utran).muho());
    let mn = nai("mn@example.net");
    let pref = pool_prefix(0);
    let (fid, r) = w.packet(&udp6(host(pref, 1), 40000, 5001));
    assert_eq!(r, Route::PrefixRoute, "via the first attachment");
    let (stay, _) = w.packet(&udp6(host(pref, 1), 40001, 5002));
    let key = flow_key(host(pref, 1), 40000, 5001);
    w.take_intents();
    w.take_sent(mag(2));

    // MAG2 routes the shared prefix already: the move needs no FLOW-MOBILITY notification.
    assert_eq!(w.lma.move_flow(w.now, &mn, fid, TargetSpec::AccessTechnology(Att::Utran)), Ok(Route::Tunnel(mag(2))));
    w.step();
    assert_eq!(
        w.steering_intents(),
        vec![
            Intent::Remove(Resource::Steering(Steering::Flow { key, route: Route::PrefixRoute })),
            Intent::Add(Resource::Steering(Steering::Flow { key, route: Route::Tunnel(mag(2)) })),
        ]
    );
    assert!(w.take_sent(mag(2)).is_empty());
    assert_eq!(w.lma.flow_steering().unwrap().flow(&mn, stay).unwrap().route, Route::PrefixRoute);
    // And back to if1.
    assert_eq!(w.lma.move_flow(w.now, &mn, fid, TargetSpec::Mag(mag(1))), Ok(Route::Tunnel(mag(1))));
    w.step();
    assert_eq!(
        w.steering_intents(),
        vec![
            Intent::Remove(Resource::Steering(Steering::Flow { key, route: Route::Tunnel(mag(2)) })),
            Intent::Add(Resource::Steering(Steering::Flow { key, route: Route::Tunnel(mag(1)) })),
        ]
    );

    // On if2 again, then if2 leaves: the flow fails over; the entry and its prefix stay.
    w.lma.move_flow(w.now, &mn, fid, TargetSpec::Mag(mag(2))).unwrap();
    w.step();
    w.advance(secs(1));
    w.register(mag(2), &pbu("mn@example.net").att(Att::Utran).hnp(pref).lifetime(0).seq(2));
    let route = w.lma.flow_steering().unwrap().flow(&mn, fid).unwrap().route;
    assert_ne!(route, Route::Tunnel(mag(2)), "failover");
    assert!(!w.dp.steering.iter().any(|s| steering_tunnel(s) == Some(mag(2))));
    assert_eq!(w.dp.tunnels, BTreeSet::from([mag(1)]));
    let b = w.lma.binding_cache().by_prefix(&pref).unwrap();
    assert_eq!((b.state(), b.attachments().count()), (BindingState::Active, 1));

    // if2 comes back and the first interface leaves: the prefix route passes to MAG2.
    w.advance(secs(1));
    w.register(mag(2), &pbu("mn@example.net").att(Att::Utran).muho().seq(3));
    w.advance(secs(1));
    w.register(mag(1), &pbu("mn@example.net").hnp(pref).lifetime(0).seq(2));
    assert_eq!(w.dp.routes[&pref], mag(2));
    assert_eq!(w.dp.tunnels, BTreeSet::from([mag(2)]));
    assert!(!w.dp.steering.iter().any(|s| steering_tunnel(s) == Some(mag(1))));
    assert_eq!(w.lma.binding_cache().by_prefix(&pref).unwrap().prefixes(), &[pref]);
}

// ---- RFC 5844: IPv4 home addresses -----------------------------------------------------------

const V4_ROUTER: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 1);

fn v4(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 64, 0, host)
}

/// `config()` with the IPv4 home network 10.64.0.0/`len`.
fn ipv4_config(len: u8) -> LmaConfig {
    let mut c = config();
    c.ipv4_home_network =
        Some(Ipv4HomeNetwork { network: Ipv4Addr::new(10, 64, 0, 0), prefix_len: len, default_router: V4_ROUTER });
    c
}

/// The PBA's IPv4 Home Address Reply: (status, prefix length, address).
fn ipv4_reply(ba: &BindingAck) -> Option<(Ipv4HoaReplyStatus, u8, Ipv4Addr)> {
    find(&ba.options, |o| match o {
        MobilityOption::Ipv4HomeAddressReply { status, prefix_len, address } => Some((*status, *prefix_len, *address)),
        _ => None,
    })
}

fn ipv4_router(ba: &BindingAck) -> Option<Ipv4Addr> {
    find(&ba.options, |o| match o {
        MobilityOption::Ipv4DefaultRouter(a) => Some(*a),
        _ => None,
    })
}

fn v4_route(address: Ipv4Addr, peer: Ipv6Addr) -> Resource {
    Resource::Ipv4HomeAddressToTunnel { address, peer }
}

#[test]
fn rfc5844_3_1_3_an_ipv4_home_address_is_assigned_routed_kept_across_a_handoff_and_released() {
    let mut w = World::new(ipv4_config(24));
    let ba = w.register(mag(1), &pbu("mn1@example.net").ipv4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(ba.status, BaStatus::Accepted);
    // .0 is the network and .1 the default router: the first home address is .2.
    assert_eq!(ipv4_reply(&ba), Some((Ipv4HoaReplyStatus::Success, 24, v4(2))));
    assert_eq!(ipv4_router(&ba), Some(V4_ROUTER), "RFC 5844 §3.3.3: the default router comes with it");
    assert_eq!(hnps_of(&ba.options), vec![pool_prefix(0)], "the IPv6 binding is made as always");
    assert_eq!(
        w.take_intents(),
        vec![
            Intent::Add(tunnel(mag(1))),
            Intent::Add(route(pool_prefix(0), mag(1))),
            Intent::Add(v4_route(v4(2), mag(1)))
        ]
    );
    let b = w.lma.binding_cache().by_prefix(&pool_prefix(0)).unwrap();
    assert_eq!(b.ipv4_home_address(), Some(v4(2)));

    // Another mobile node gets another address.
    let other = w.register(mag(1), &pbu("mn2@example.net").lli(mac(9)).ipv4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(ipv4_reply(&other), Some((Ipv4HoaReplyStatus::Success, 24, v4(3))));
    w.take_intents();

    // A handoff keeps the address and moves its route with the prefix.
    let ba = w.register(mag(2), &pbu("mn1@example.net").hi(Hi::BetweenMags).ipv4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(ipv4_reply(&ba), Some((Ipv4HoaReplyStatus::Success, 24, v4(2))));
    let intents = w.take_intents();
    assert!(intents.contains(&Intent::Remove(v4_route(v4(2), mag(1)))), "{intents:?}");
    assert!(intents.contains(&Intent::Add(v4_route(v4(2), mag(2)))), "{intents:?}");
    // Asking for its own address by value is the same.
    let ba = w.register(mag(2), &pbu("mn1@example.net").hi(Hi::NotChanged).seq(2).ipv4(v4(2)));
    assert_eq!(ipv4_reply(&ba), Some((Ipv4HoaReplyStatus::Success, 24, v4(2))));
    assert!(w.take_intents().is_empty(), "a refresh changes no route");

    // De-registration withdraws the route at once; deletion releases the address.
    let ba = w.register(mag(2), &pbu("mn1@example.net").hnp(pool_prefix(0)).lifetime(0).seq(3));
    assert_eq!((ba.status, ba.lifetime), (BaStatus::Accepted, 0));
    assert!(w.take_intents().contains(&Intent::Remove(v4_route(v4(2), mag(2)))));
    w.advance(secs(11));
    assert!(w.lma.binding_cache().iter().all(|b| b.ipv4_home_address() != Some(v4(2))));
}

#[test]
fn rfc5844_3_1_3_a_pbu_without_the_request_gives_the_address_up() {
    let mut w = World::new(ipv4_config(24));
    w.register(mag(1), &pbu("mn1@example.net").ipv4(Ipv4Addr::UNSPECIFIED));
    w.take_intents();
    // A MAG that does not ask cannot deliver IPv4 to the mobile node.
    let ba = w.register(mag(2), &pbu("mn1@example.net").hi(Hi::BetweenMags));
    assert_eq!(ipv4_reply(&ba), None, "no request, no reply");
    let intents = w.take_intents();
    assert!(intents.contains(&Intent::Remove(v4_route(v4(2), mag(1)))), "{intents:?}");
    assert!(!intents.iter().any(|i| matches!(i, Intent::Add(Resource::Ipv4HomeAddressToTunnel { .. }))));
    assert_eq!(w.lma.binding_cache().by_prefix(&pool_prefix(0)).unwrap().ipv4_home_address(), None);
}

#[test]
fn rfc5844_3_1_3_failed_ipv4_requests_say_why_and_keep_the_ipv6_binding() {
    // Not offered at all: 129, the IPv6 binding accepted.
    let mut w = World::new(config());
    let ba = w.register(mag(1), &pbu("mn1@example.net").ipv4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(ba.status, BaStatus::Accepted);
    assert_eq!(ipv4_reply(&ba).map(|r| r.0), Some(Ipv4HoaReplyStatus::AdministrativelyProhibited));
    assert_eq!(ipv4_router(&ba), None);
    assert_eq!(hnps_of(&ba.options), vec![pool_prefix(0)]);

    // A /29: .1 is the router, .2 to .6 are home addresses.
    let mut w = World::new(ipv4_config(29));
    for (i, mn) in ["a@x", "b@x", "c@x", "d@x", "e@x"].into_iter().enumerate() {
        let ba = w.register(mag(1), &pbu(mn).lli(mac(i as u8 + 1)).ipv4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(ipv4_reply(&ba), Some((Ipv4HoaReplyStatus::Success, 29, v4(i as u8 + 2))));
    }
    let ba = w.register(mag(1), &pbu("f@x").lli(mac(6)).ipv4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(ba.status, BaStatus::Accepted);
    assert_eq!(ipv4_reply(&ba).map(|r| r.0), Some(Ipv4HoaReplyStatus::DynamicAssignmentNotAvailable));
    // Another node's address, and addresses that are no home address.
    let ba = w.register(mag(1), &pbu("g@x").lli(mac(7)).ipv4(v4(2)));
    assert_eq!(ipv4_reply(&ba).map(|r| r.0), Some(Ipv4HoaReplyStatus::IncorrectIpv4HomeAddress));
    for bad in [V4_ROUTER, v4(7), Ipv4Addr::new(192, 0, 2, 1)] {
        let ba = w.register(mag(1), &pbu("h@x").lli(mac(8)).ipv4(bad));
        assert_eq!(ipv4_reply(&ba).map(|r| r.0), Some(Ipv4HoaReplyStatus::InvalidIpv4Address), "{bad}");
    }
    assert_eq!(
        w.lma.binding_cache().iter().filter_map(|b| b.ipv4_home_address()).count(),
        5,
        "failed requests assigned nothing"
    );
    // RFC 5844 §3.1.3: one IPv4 home address per session; two requests are refused whole.
    let before = w.lma.binding_cache().len();
    let ba = w.register(mag(1), &pbu("i@x").lli(mac(10)).ipv4(Ipv4Addr::UNSPECIFIED).ipv4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(ba.status, BaStatus::MultipleIpv4HomeAddressAssignmentNotSupported);
    assert_eq!(w.lma.binding_cache().len(), before);
}

/// Operator rule: IPv4 UDP to port 5004 over UTRAN.
fn ipv4_video_over_utran(w: &mut World) {
    use pmip6_wire::selector::{FieldRange, Ipv4Selector, TrafficSelector};
    let video = TrafficSelector::Ipv4(Ipv4Selector {
        dst_port: Some(FieldRange::exact(5004)),
        protocol: Some(FieldRange::exact(17)),
        ..Ipv4Selector::default()
    });
    let rule = Rule::new(video, TargetSpec::AccessTechnology(Att::Utran));
    w.lma.set_operator_rules(w.now, vec![OperatorRule { rule, scope: Scope::AllMobileNodes, locked: false }]).unwrap();
    w.step();
}

fn udp4(dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0];
    p.extend_from_slice(&[192, 0, 2, 10]);
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 8, 0, 0]);
    p
}

#[test]
fn draft_4_2_ipv4_flows_to_a_home_address_are_steered_by_ipv4_rules() {
    let mut w = World::new(ipv4_config(24));
    let wlan =
        w.register(mag(1), &pbu("mn@example.net").att(Att::Ieee80211).lli(mac(1)).muho().ipv4(Ipv4Addr::UNSPECIFIED));
    let home = ipv4_reply(&wlan).unwrap().2;
    let pref1 = hnps_of(&wlan.options)[0];
    w.register(mag(2), &pbu("mn@example.net").att(Att::Utran).lli(mac(2)).muho());
    for m in w.take_sent(mag(1)) {
        if let Message::UpdateNotification(u) = m {
            w.deliver(mag(1), upa(u.sequence, UpaStatus::Success));
        }
    }
    ipv4_video_over_utran(&mut w);

    // The IPv4 video flow to the home address would go to UTRAN, but MAG2 does not route the
    // WLAN session's home address (no signalling can teach it): it stays on its base route, on a
    // fallback. Another IPv4 flow, and an IPv6 flow on the same port, follow the base routes.
    let (video_fid, r) = w.packet(&udp4(home, 40000, 5004));
    assert_eq!(r, Route::PrefixRoute);
    let mn = nai("mn@example.net");
    let video = w.lma.flow_steering().unwrap().flow(&mn, video_fid).unwrap();
    assert!(!video.preferred, "on a fallback: {video:?}");
    let (_, r) = w.packet(&udp4(home, 40001, 80));
    assert_eq!(r, Route::PrefixRoute);
    let (_, r) = w.packet(&udp6(host(pref1, 1), 40000, 5004));
    assert_eq!(r, Route::PrefixRoute, "an IPv4 selector does not match IPv6");
    // Another address of the home network is no mobile node's.
    let v = w.lma.handle_packet(w.now, &udp4(v4(200), 40000, 5004)).unwrap();
    assert_eq!(v, Verdict::NotMobileNode);
    let flows = w.lma.flow_steering().unwrap().flows(&mn);
    assert_eq!(flows.iter().filter(|f| f.key.dst_ip() == std::net::IpAddr::V4(home)).count(), 2);

    // The draft's virtual interface (§5.4): one entry, its home address routed by both MAGs;
    // the IPv4 video flow goes to UTRAN.
    let mut c = ipv4_config(24);
    c.virtual_interface = true;
    let mut w = World::new(c);
    let wlan = w.register(mag(1), &pbu("mn@example.net").att(Att::Ieee80211).lli(mac(1)).ipv4(Ipv4Addr::UNSPECIFIED));
    let home = ipv4_reply(&wlan).unwrap().2;
    let utran = w.register(mag(2), &pbu("mn@example.net").att(Att::Utran).lli(mac(2)).ipv4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(ipv4_reply(&utran).map(|r| r.2), Some(home), "one entry, one home address");
    ipv4_video_over_utran(&mut w);
    let (_, r) = w.packet(&udp4(home, 40000, 5004));
    assert_eq!(r, Route::Tunnel(mag(2)));
}
