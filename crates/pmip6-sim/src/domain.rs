//! The domain: the engines, the mobile nodes, the network between them, and the loop that
//! drives them through virtual time.

use core::net::Ipv6Addr;
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use pmip6_engine::lma::{BindingId, Lma, LmaConfig, LmaEvent};
use pmip6_engine::mag::{AccessInterface, BindingKey, Mag, MagConfig, MagEvent, MobileNodeEntry};
use pmip6_engine::{InterfaceId, Now, Received, Transmit};
use pmip6_wire::nd::{LinkLayerAddress, NdMessage, NdOption, RouterSolicitation};
use pmip6_wire::{AccessTechnologyType, HandoffIndicator, Message, MnIdentifier, ParseConfig, Prefix};

use crate::data_plane::{DataPlane, Violation};
use crate::mobile_node::{AttachmentPoint, MnInterface, MobileNode, ReceivedRa};
use crate::network::{Content, Drop, InFlight, LinkConfig, Node, PacketRecord};
use crate::rng::Rng;

/// Names a MAG of the domain (its index, in the order the builder added them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MagId(pub usize);

/// Names a mobile node of the domain (its index, in the order the builder added them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MnId(pub usize);

/// How a MAG learns that an interface arrived on its access link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachSignal {
    /// The mobile node sends a Router Solicitation from its link-local address, with a Source
    /// Link-layer Address option, to all-routers (RFC 5213 §6.9.1.1, draft §5.2.1).
    RouterSolicitation,
    /// The access network reports the MAC (an L2 attach event,
    /// [`Mag::handle_attach`]); the MAG answers with RAs to all-nodes.
    LinkLayer,
    /// As `LinkLayer`, with the access network's handoff hint
    /// ([`Mag::handle_attach_with_handoff`]).
    LinkLayerWithHandoff(HandoffIndicator),
}

/// Something an engine reported, with the node that reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// From the LMA.
    Lma(LmaEvent),
    /// From a MAG.
    Mag(MagId, MagEvent),
}

/// Something wrong with the simulation itself or with an engine's contract, as opposed to
/// a protocol outcome: none of these should ever happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// An engine handed over a message the codec cannot emit.
    EmitFailed {
        /// The sender.
        from: Node,
        /// The codec's error.
        error: String,
    },
    /// A packet failed to parse at its receiver (index into [`Domain::packets`]).
    ParseFailed {
        /// The packet.
        record: usize,
        /// The codec's error.
        error: String,
    },
    /// A packet parsed into something other than what was emitted.
    RoundTripMismatch {
        /// The packet.
        record: usize,
    },
    /// After `handle_timeout(now)`, an engine still asked to be woken at or before `now`.
    TimerInThePast {
        /// The engine.
        node: Node,
        /// The deadline it asked for.
        deadline: Now,
    },
    /// More inputs at one instant than any protocol exchange needs: a message loop.
    Livelock {
        /// Inputs processed at that instant.
        inputs: usize,
    },
}

/// The LMA's address in a built domain.
pub const LMAA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
/// The pool home network prefixes come from in a built domain.
pub const PREFIX_POOL: Prefix = Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0), 40);
/// 2023-11-14 22:13:20 UTC: when a built domain starts (the engines' clock is wall-clock time
/// because of the RFC 5213 Timestamp option).
pub const START: Now = Duration::from_secs(1_700_000_000);
/// Inputs at one instant beyond which the loop is reported as a [`Problem::Livelock`].
const LIVELOCK_INPUTS: usize = 100_000;

/// The Proxy-CoA of MAG `mag` in a built domain: `2001:db8:aaaa::<mag + 1>`.
pub fn proxy_coa(mag: MagId) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0xaaaa, 0, 0, 0, 0, (mag.0 as u16).wrapping_add(1))
}

/// The MAC of interface `interface` of mobile node `mn` in a built domain:
/// `02:00:<mn>:<mn>:00:<interface>` (locally administered).
pub fn mn_mac(mn: MnId, interface: usize) -> [u8; 6] {
    let n = mn.0 as u16;
    [0x02, 0, (n >> 8) as u8, n as u8, 0, interface as u8]
}

/// How the LMA is set up and run.
struct LmaNode {
    engine: Lma,
    config: LmaConfig,
    data_plane: DataPlane,
    restarts: u32,
    stuck_at: Option<Now>,
}

/// How one MAG is set up and run, and its links.
struct MagNode {
    engine: Mag,
    config: MagConfig,
    data_plane: DataPlane,
    core: LinkConfig,
    access: LinkConfig,
    restarts: u32,
    stuck_at: Option<Now>,
}

type MagTweak = Box<dyn Fn(MagId, &mut MagConfig)>;

/// Builds a [`Domain`]: one LMA, the MAGs with their access links, the mobile nodes with their
/// interfaces. Addresses are fixed: the LMA at [`LMAA`], MAG `i` at [`proxy_coa`]`(i)`, prefixes
/// from [`PREFIX_POOL`]; every MAG's static table (draft §5.2.1) lists every mobile node.
pub struct DomainBuilder {
    seed: u64,
    start: Now,
    parse: ParseConfig,
    lma: LmaConfig,
    mags: Vec<Vec<(InterfaceId, AccessTechnologyType)>>,
    mag_tweaks: Vec<MagTweak>,
    mns: Vec<(MnIdentifier, bool, Vec<AttachmentPoint>)>,
    core: LinkConfig,
    access: LinkConfig,
    attach_signal: AttachSignal,
}

impl DomainBuilder {
    /// A domain whose randomness (network, initial sequence numbers) all comes from `seed`.
    /// The LMA has every default of [`LmaConfig::new`] and the pool [`PREFIX_POOL`]; core links
    /// have 5 ms latency, access links 1 ms; nothing is lost.
    pub fn new(seed: u64) -> Self {
        let mut lma = LmaConfig::new(LMAA);
        lma.prefix_pools = vec![PREFIX_POOL];
        Self {
            seed,
            start: START,
            parse: ParseConfig::default(),
            lma,
            mags: Vec::new(),
            mag_tweaks: Vec::new(),
            mns: Vec::new(),
            core: LinkConfig::ideal(Duration::from_millis(5)),
            access: LinkConfig::ideal(Duration::from_millis(1)),
            attach_signal: AttachSignal::RouterSolicitation,
        }
    }

    /// Changes the LMA's configuration (its address stays [`LMAA`]).
    pub fn lma_config(mut self, f: impl FnOnce(&mut LmaConfig)) -> Self {
        f(&mut self.lma);
        self.lma.lmaa = LMAA;
        self
    }

    /// Adds a MAG (the next [`MagId`]) with these access links.
    pub fn mag(mut self, access: &[(InterfaceId, AccessTechnologyType)]) -> Self {
        self.mags.push(access.to_vec());
        self
    }

    /// Changes every MAG's configuration, after the builder filled it (its addresses, access
    /// links and static table stay).
    pub fn mag_config(mut self, f: impl Fn(MagId, &mut MagConfig) + 'static) -> Self {
        self.mag_tweaks.push(Box::new(f));
        self
    }

    /// Adds a mobile node (the next [`MnId`]) with one interface per entry of `interfaces`,
    /// each with the access link [`Domain::attach`] attaches it to. The MACs are
    /// [`mn_mac`]`(mn, i)`.
    pub fn mobile_node(mut self, nai: &str, multihoming: bool, interfaces: &[AttachmentPoint]) -> Self {
        self.mns.push((MnIdentifier::nai(nai), multihoming, interfaces.to_vec()));
        self
    }

    /// Every core (LMA–MAG) link.
    pub fn core_link(mut self, link: LinkConfig) -> Self {
        self.core = link;
        self
    }

    /// Every access (MAG–mobile node) link.
    pub fn access_link(mut self, link: LinkConfig) -> Self {
        self.access = link;
        self
    }

    /// How attachments are signalled (default: a Router Solicitation).
    pub fn attach_signal(mut self, signal: AttachSignal) -> Self {
        self.attach_signal = signal;
        self
    }

    /// The MuHo option type every node uses (default 18).
    pub fn parse_config(mut self, parse: ParseConfig) -> Self {
        self.parse = parse;
        self
    }

    /// When virtual time starts (default [`START`]).
    pub fn start(mut self, start: Now) -> Self {
        self.start = start;
        self
    }

    /// The domain, at its start time, with no interface attached.
    pub fn build(self) -> Domain {
        let mut rng = Rng::new(self.seed);
        let mut lma_config = self.lma;
        lma_config.parse = self.parse;
        lma_config.initial_sequence = rng.next_u64() as u16;
        lma_config.initial_heartbeat_sequence = rng.next_u64() as u32;
        let table: Vec<MobileNodeEntry> = self
            .mns
            .iter()
            .enumerate()
            .map(|(n, (mn_id, multihoming, ifaces))| MobileNodeEntry {
                mn_id: mn_id.clone(),
                macs: (0..ifaces.len()).map(|i| mn_mac(MnId(n), i)).collect(),
                multihoming: *multihoming,
                ipv4: false,
            })
            .collect();
        let mut mags = Vec::new();
        for (i, access) in self.mags.iter().enumerate() {
            let id = MagId(i);
            let mut config = MagConfig::new(proxy_coa(id), LMAA);
            config.interfaces = access
                .iter()
                .map(|(ifid, att)| {
                    let mut a = AccessInterface::new(
                        *ifid,
                        *att,
                        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, (i as u16).wrapping_add(1), ifid.0 as u16),
                    );
                    a.mac = Some([0x02, 0xaa, 0, i as u8, (ifid.0 >> 8) as u8, ifid.0 as u8]);
                    a
                })
                .collect();
            config.mobile_nodes = table.clone();
            for tweak in &self.mag_tweaks {
                tweak(id, &mut config);
            }
            config.proxy_coa = proxy_coa(id);
            config.lmaa = LMAA;
            config.parse_config = self.parse;
            config.initial_sequence = rng.next_u64() as u16;
            mags.push(MagNode {
                engine: Mag::new(config.clone()),
                data_plane: DataPlane::new(config.proxy_coa),
                config,
                core: self.core,
                access: self.access,
                restarts: 0,
                stuck_at: None,
            });
        }
        let mns = self
            .mns
            .into_iter()
            .enumerate()
            .map(|(n, (mn_id, multihoming, homes))| MobileNode {
                mn_id,
                multihoming,
                interfaces: homes
                    .iter()
                    .enumerate()
                    .map(|(i, home)| MnInterface::new(mn_mac(MnId(n), i), *home))
                    .collect(),
            })
            .collect();
        let mut domain = Domain {
            now: self.start,
            rng,
            parse: self.parse,
            lma: LmaNode {
                engine: Lma::new(lma_config.clone()),
                config: lma_config,
                data_plane: DataPlane::new(LMAA),
                restarts: 0,
                stuck_at: None,
            },
            mags,
            mns,
            in_flight: BTreeMap::new(),
            next_copy: 0,
            packets: Vec::new(),
            events: Vec::new(),
            problems: Vec::new(),
            registering_since: BTreeMap::new(),
            pending_notifications: BTreeMap::new(),
            pending_revocations: BTreeSet::new(),
            attach_signal: self.attach_signal,
        };
        domain.drain_lma();
        for i in 0..domain.mags.len() {
            domain.drain_mag(MagId(i));
        }
        domain
    }
}

/// A Proxy Mobile IPv6 domain in virtual time. See the crate documentation.
pub struct Domain {
    now: Now,
    rng: Rng,
    parse: ParseConfig,
    lma: LmaNode,
    mags: Vec<MagNode>,
    mns: Vec<MobileNode>,
    in_flight: BTreeMap<(Now, u64), InFlight>,
    next_copy: u64,
    packets: Vec<PacketRecord>,
    events: Vec<(Now, NodeEvent)>,
    problems: Vec<(Now, Problem)>,
    /// When each MAG session last started registering (from `MagEvent::Attached`).
    registering_since: BTreeMap<(MagId, BindingKey), Now>,
    /// LMA notifications awaiting an answer, mirrored from its events: (session, MAG) → seq.
    pending_notifications: BTreeMap<(BindingId, Ipv6Addr), u16>,
    /// LMA revocations awaiting an answer: (MAG, seq).
    pending_revocations: BTreeSet<(Ipv6Addr, u16)>,
    attach_signal: AttachSignal,
}

impl Domain {
    /// A builder; see [`DomainBuilder::new`].
    pub fn builder(seed: u64) -> DomainBuilder {
        DomainBuilder::new(seed)
    }

    // ---- reading the state ---------------------------------------------------------------------

    /// Virtual time now.
    pub fn now(&self) -> Now {
        self.now
    }

    /// The LMA engine.
    pub fn lma(&self) -> &Lma {
        &self.lma.engine
    }

    /// Drives the LMA's flow-mobility API (operator rules, moves, downlink packets) at the
    /// current time; what it produces goes out like any other LMA output.
    pub fn with_lma<R>(&mut self, f: impl FnOnce(&mut Lma, Now) -> R) -> R {
        let result = f(&mut self.lma.engine, self.now);
        self.drain_lma();
        result
    }

    /// The LMA's data plane.
    pub fn lma_data_plane(&self) -> &DataPlane {
        &self.lma.data_plane
    }

    /// The LMA's configuration as it runs (restart counter and initial sequence numbers
    /// included).
    pub fn lma_config(&self) -> &LmaConfig {
        &self.lma.config
    }

    /// Number of MAGs.
    pub fn mag_count(&self) -> usize {
        self.mags.len()
    }

    /// MAG `mag`'s engine. Panics if there is no such MAG.
    pub fn mag(&self, mag: MagId) -> &Mag {
        &self.mags[mag.0].engine
    }

    /// MAG `mag`'s data plane. Panics if there is no such MAG.
    pub fn mag_data_plane(&self, mag: MagId) -> &DataPlane {
        &self.mags[mag.0].data_plane
    }

    /// MAG `mag`'s configuration as it runs. Panics if there is no such MAG.
    pub fn mag_config(&self, mag: MagId) -> &MagConfig {
        &self.mags[mag.0].config
    }

    /// Number of mobile nodes.
    pub fn mobile_node_count(&self) -> usize {
        self.mns.len()
    }

    /// Mobile node `mn`. Panics if there is no such node.
    pub fn mobile_node(&self, mn: MnId) -> &MobileNode {
        &self.mns[mn.0]
    }

    /// Every packet that entered the network, in the order sent.
    pub fn packets(&self) -> &[PacketRecord] {
        &self.packets
    }

    /// Every engine event, with the time it was polled.
    pub fn events(&self) -> &[(Now, NodeEvent)] {
        &self.events
    }

    /// The LMA's events, with their times.
    pub fn lma_events(&self) -> impl Iterator<Item = (Now, &LmaEvent)> {
        self.events.iter().filter_map(|(t, e)| match e {
            NodeEvent::Lma(e) => Some((*t, e)),
            NodeEvent::Mag(..) => None,
        })
    }

    /// MAG `mag`'s events, with their times.
    pub fn mag_events(&self, mag: MagId) -> impl Iterator<Item = (Now, &MagEvent)> {
        self.events.iter().filter_map(move |(t, e)| match e {
            NodeEvent::Mag(m, e) if *m == mag => Some((*t, e)),
            _ => None,
        })
    }

    /// Every [`Problem`] so far.
    pub fn problems(&self) -> &[(Now, Problem)] {
        &self.problems
    }

    /// Every data-plane [`Violation`] so far, at any node.
    pub fn data_plane_violations(&self) -> Vec<(Node, Now, Violation)> {
        let mut out: Vec<(Node, Now, Violation)> =
            self.lma.data_plane.violations().iter().map(|(t, v)| (Node::Lma, *t, v.clone())).collect();
        for (i, m) in self.mags.iter().enumerate() {
            out.extend(m.data_plane.violations().iter().map(|(t, v)| (Node::Mag(MagId(i)), *t, v.clone())));
        }
        out
    }

    /// How many times the LMA was restarted.
    pub fn lma_restarts(&self) -> u32 {
        self.lma.restarts
    }

    /// How many times MAG `mag` was restarted. Panics if there is no such MAG.
    pub fn mag_restarts(&self, mag: MagId) -> u32 {
        self.mags[mag.0].restarts
    }

    /// When the MAG session `key` last started registering, if it did in this run.
    pub fn registering_since(&self, mag: MagId, key: &BindingKey) -> Option<Now> {
        self.registering_since.get(&(mag, key.clone())).copied()
    }

    /// Packets in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether the signalling has settled: nothing in flight, no MAG waiting for a PBA, and no
    /// LMA notification or revocation waiting for its answer (as far as the LMA's events tell).
    /// Timers for refreshes, RAs, heartbeats and lifetimes may still be armed.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty()
            && self.pending_notifications.is_empty()
            && self.pending_revocations.is_empty()
            && self.mags.iter().all(|m| m.engine.binding_update_list().iter().all(|e| e.pending.is_none()))
    }

    // ---- changing the network --------------------------------------------------------------

    /// MAG `mag`'s core link. Panics if there is no such MAG.
    pub fn core_link_mut(&mut self, mag: MagId) -> &mut LinkConfig {
        &mut self.mags[mag.0].core
    }

    /// MAG `mag`'s access side. Panics if there is no such MAG.
    pub fn access_link_mut(&mut self, mag: MagId) -> &mut LinkConfig {
        &mut self.mags[mag.0].access
    }

    /// The loss probability of every core link (access links are left alone).
    pub fn set_loss(&mut self, p: f64) {
        self.mags.iter_mut().for_each(|m| m.core.loss = p);
    }

    /// The duplication probability of every core link.
    pub fn set_duplication(&mut self, p: f64) {
        self.mags.iter_mut().for_each(|m| m.core.duplication = p);
    }

    /// The reordering probability and longest extra delay of every core link.
    pub fn set_reordering(&mut self, p: f64, max_delay: Duration) {
        self.mags.iter_mut().for_each(|m| {
            m.core.reordering = p;
            m.core.reorder_delay = max_delay;
        });
    }

    // ---- scenario ------------------------------------------------------------------------------

    /// Interface `interface` of `mn` comes up on its access link (where it was last, else where
    /// the builder put it), signalled as the domain is configured to.
    pub fn attach(&mut self, mn: MnId, interface: usize) {
        let point = self.mns[mn.0].interfaces[interface].home;
        let signal = self.attach_signal;
        self.attach_with(mn, interface, point, signal);
    }

    /// Interface `interface` of `mn` comes up on `point` (leaving the link it was on first).
    pub fn attach_to(&mut self, mn: MnId, interface: usize, point: AttachmentPoint) {
        let signal = self.attach_signal;
        self.attach_with(mn, interface, point, signal);
    }

    /// Interface `interface` of `mn` comes up on `point`, signalled by `signal`. An interface
    /// attached elsewhere is detached first; one already attached there signals again (an RS
    /// retransmission, or a repeated L2 event).
    pub fn attach_with(&mut self, mn: MnId, interface: usize, point: AttachmentPoint, signal: AttachSignal) {
        let current = self.mns[mn.0].interfaces[interface].attached;
        if current.is_some_and(|c| c != point) {
            self.detach(mn, interface);
        }
        let iface = &mut self.mns[mn.0].interfaces[interface];
        iface.attached = Some(point);
        iface.home = point;
        let mac = iface.mac;
        let now = self.now;
        match signal {
            AttachSignal::RouterSolicitation => self.send_rs(mn, interface),
            AttachSignal::LinkLayer => {
                self.mags[point.mag.0].engine.handle_attach(now, point.interface, mac);
                self.drain_mag(point.mag);
            }
            AttachSignal::LinkLayerWithHandoff(hi) => {
                self.mags[point.mag.0].engine.handle_attach_with_handoff(now, point.interface, mac, hi);
                self.drain_mag(point.mag);
            }
        }
    }

    /// The interface sends a Router Solicitation on the link it is attached to (nothing if it
    /// is not attached).
    pub fn send_rs(&mut self, mn: MnId, interface: usize) {
        let iface = &self.mns[mn.0].interfaces[interface];
        let Some(point) = iface.attached else { return };
        let rs = RouterSolicitation {
            options: vec![NdOption::SourceLinkLayerAddress(LinkLayerAddress::Ethernet(iface.mac))],
        };
        let src = iface.link_local;
        let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
        let from = Node::MobileNode { mn, interface };
        let link = self.mags[point.mag.0].access;
        if let Some(record) =
            self.record_nd(from, Some(Node::Mag(point.mag)), point, src, dst, NdMessage::RouterSolicitation(rs))
        {
            self.schedule(record, Node::Mag(point.mag), Some(point), link);
        }
    }

    /// Interface `interface` of `mn` leaves its access link: the MAG gets the L2 detach event at
    /// once, and the interface forgets its router and prefixes. Nothing if it is not attached.
    pub fn detach(&mut self, mn: MnId, interface: usize) {
        let iface = &mut self.mns[mn.0].interfaces[interface];
        let Some(point) = iface.attached else { return };
        let mac = iface.mac;
        iface.link_down();
        let now = self.now;
        self.mags[point.mag.0].engine.handle_detach(now, point.interface, mac);
        self.drain_mag(point.mag);
    }

    /// Interface `interface` of `mn` moves to `point`: detached from its link (the old MAG is
    /// told), then attached to the new one.
    pub fn handoff(&mut self, mn: MnId, interface: usize, point: AttachmentPoint) {
        self.detach(mn, interface);
        self.attach_to(mn, interface, point);
    }

    /// The LMA restarts: a fresh engine with the next Restart Counter and new initial sequence
    /// numbers, its binding cache and data plane empty. Packets in flight to it reach the new
    /// engine.
    pub fn restart_lma(&mut self) {
        let mut config = self.lma.config.clone();
        config.restart_counter = config.restart_counter.wrapping_add(1);
        config.initial_sequence = self.rng.next_u64() as u16;
        config.initial_heartbeat_sequence = self.rng.next_u64() as u32;
        self.lma.engine = Lma::new(config.clone());
        self.lma.config = config;
        self.lma.data_plane.clear();
        self.lma.restarts += 1;
        self.lma.stuck_at = None;
        self.pending_notifications.clear();
        self.pending_revocations.clear();
        self.drain_lma();
    }

    /// MAG `mag` restarts: a fresh engine with the next Restart Counter and a new initial
    /// sequence number, its Binding Update List and data plane empty. Its access links flap:
    /// every interface attached to it forgets what the link taught it and signals its
    /// attachment again. Panics if there is no such MAG.
    pub fn restart_mag(&mut self, mag: MagId) {
        let node = &mut self.mags[mag.0];
        let mut config = node.config.clone();
        config.restart_counter = config.restart_counter.wrapping_add(1);
        config.initial_sequence = self.rng.next_u64() as u16;
        node.engine = Mag::new(config.clone());
        node.config = config;
        node.data_plane.clear();
        node.restarts += 1;
        node.stuck_at = None;
        self.registering_since.retain(|(m, _), _| *m != mag);
        self.drain_mag(mag);
        let attached: Vec<(MnId, usize, AttachmentPoint)> = self
            .mns
            .iter()
            .enumerate()
            .flat_map(|(n, mn)| {
                mn.interfaces.iter().enumerate().filter_map(move |(i, iface)| match iface.attached {
                    Some(p) if p.mag == mag => Some((MnId(n), i, p)),
                    _ => None,
                })
            })
            .collect();
        for (mn, interface, point) in attached {
            self.mns[mn.0].interfaces[interface].link_down();
            let signal = self.attach_signal;
            self.attach_with(mn, interface, point, signal);
        }
    }

    // ---- running -------------------------------------------------------------------------------

    /// Runs every event up to and including `t`, each at its own time, then sets the clock to
    /// `t` (if it is later than now).
    pub fn run_until(&mut self, t: Now) {
        loop {
            self.process_instant();
            match self.next_event() {
                Some(next) if next <= t => self.now = next,
                _ => break,
            }
        }
        if t > self.now {
            self.now = t;
        }
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs until [`Domain::is_idle`], for at most `cap` of virtual time; returns whether the
    /// domain became idle (the clock stops at that instant, or at `now + cap`).
    pub fn run_until_idle(&mut self, cap: Duration) -> bool {
        let end = self.now + cap;
        loop {
            self.process_instant();
            if self.is_idle() {
                return true;
            }
            match self.next_event() {
                Some(next) if next <= end => self.now = next,
                _ => {
                    self.now = self.now.max(end);
                    return self.is_idle();
                }
            }
        }
    }

    /// Runs until no engine has a timer armed and nothing is in flight, for at most `cap`;
    /// returns whether that happened.
    pub fn run_until_quiet(&mut self, cap: Duration) -> bool {
        let end = self.now + cap;
        loop {
            self.process_instant();
            match self.next_event() {
                None => return true,
                Some(next) if next <= end => self.now = next,
                Some(_) => {
                    self.now = self.now.max(end);
                    return false;
                }
            }
        }
    }

    /// Processes everything due now: packets that arrive, then engine deadlines, each engine
    /// drained after each input (transmits, then intents, then events), until nothing is due.
    fn process_instant(&mut self) {
        let now = self.now;
        let mut inputs = 0usize;
        loop {
            let mut progressed = false;
            while let Some(entry) = self.in_flight.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let copy = entry.remove();
                self.deliver(copy);
                progressed = true;
                inputs += 1;
            }
            if due(self.lma.engine.poll_timeout(), self.lma.stuck_at, now) {
                self.lma.engine.handle_timeout(now);
                self.drain_lma();
                if let Some(deadline) = self.lma.engine.poll_timeout().filter(|d| *d <= now) {
                    self.problems.push((now, Problem::TimerInThePast { node: Node::Lma, deadline }));
                    self.lma.stuck_at = Some(now);
                }
                progressed = true;
                inputs += 1;
            }
            for i in 0..self.mags.len() {
                let m = &mut self.mags[i];
                if due(m.engine.poll_timeout(), m.stuck_at, now) {
                    m.engine.handle_timeout(now);
                    self.drain_mag(MagId(i));
                    let m = &mut self.mags[i];
                    if let Some(deadline) = m.engine.poll_timeout().filter(|d| *d <= now) {
                        m.stuck_at = Some(now);
                        self.problems.push((now, Problem::TimerInThePast { node: Node::Mag(MagId(i)), deadline }));
                    }
                    progressed = true;
                    inputs += 1;
                }
            }
            if !progressed {
                break;
            }
            if inputs > LIVELOCK_INPUTS {
                self.problems.push((now, Problem::Livelock { inputs }));
                break;
            }
        }
    }

    /// The next time something happens: a packet arrives or an engine deadline passes. Anything
    /// left due now (a stuck timer, a livelock) is put a nanosecond later, so time moves on.
    fn next_event(&self) -> Option<Now> {
        let mut next = self.in_flight.keys().next().map(|(t, _)| *t);
        let mut consider = |t: Option<Now>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(self.lma.engine.poll_timeout());
        for m in &self.mags {
            consider(m.engine.poll_timeout());
        }
        next.map(|t| t.max(self.now + Duration::from_nanos(1)))
    }

    // ---- the network ---------------------------------------------------------------------------

    fn drain_lma(&mut self) {
        while let Some(t) = self.lma.engine.poll_transmit() {
            self.transmit(Node::Lma, t);
        }
        while let Some(intent) = self.lma.engine.poll_intent() {
            self.lma.data_plane.apply(self.now, &intent);
        }
        while let Some(event) = self.lma.engine.poll_event() {
            self.observe_lma(&event);
            self.events.push((self.now, NodeEvent::Lma(event)));
        }
    }

    fn drain_mag(&mut self, mag: MagId) {
        while let Some(t) = self.mags[mag.0].engine.poll_transmit() {
            self.transmit(Node::Mag(mag), t);
        }
        while let Some(intent) = self.mags[mag.0].engine.poll_intent() {
            self.mags[mag.0].data_plane.apply(self.now, &intent);
        }
        while let Some(event) = self.mags[mag.0].engine.poll_event() {
            // A session starts registering when it attaches, or afresh when another session
            // of its MN took its prefixes.
            if let MagEvent::Attached { key, .. } | MagEvent::Superseded { key, .. } = &event {
                self.registering_since.insert((mag, key.clone()), self.now);
            }
            self.events.push((self.now, NodeEvent::Mag(mag, event)));
        }
    }

    /// Mirrors the LMA's outstanding requests from its events, for [`Domain::is_idle`].
    fn observe_lma(&mut self, event: &LmaEvent) {
        match event {
            LmaEvent::NotificationSent { binding, peer, sequence, attempt: 0 } => {
                self.pending_notifications.insert((*binding, *peer), *sequence);
            }
            LmaEvent::NotificationAcknowledged { binding, peer, sequence, .. }
            | LmaEvent::NotificationRefused { binding, peer, sequence, .. }
            | LmaEvent::NotificationGivenUp { binding, peer, sequence }
                if self.pending_notifications.get(&(*binding, *peer)) == Some(sequence) =>
            {
                self.pending_notifications.remove(&(*binding, *peer));
            }
            LmaEvent::BindingDeregistered { binding, .. }
            | LmaEvent::BindingExpired { binding, .. }
            | LmaEvent::BindingDeleted { binding, .. } => {
                self.pending_notifications.retain(|(b, _), _| b != binding);
            }
            LmaEvent::BindingHandedOff { binding, from, .. } => {
                self.pending_notifications.remove(&(*binding, *from));
            }
            LmaEvent::AttachmentRemoved { binding, proxy_coa, .. } => {
                self.pending_notifications.remove(&(*binding, *proxy_coa));
            }
            LmaEvent::RevocationSent { peer, sequence, attempt: 0, .. } => {
                self.pending_revocations.insert((*peer, *sequence));
            }
            LmaEvent::RevocationAcknowledged { peer, sequence, .. }
            | LmaEvent::RevocationFailed { peer, sequence, .. }
            | LmaEvent::RevocationGivenUp { peer, sequence } => {
                self.pending_revocations.remove(&(*peer, *sequence));
            }
            _ => {}
        }
    }

    fn node_of_address(&self, addr: Ipv6Addr) -> Option<Node> {
        if addr == self.lma.config.lmaa {
            return Some(Node::Lma);
        }
        self.mags.iter().position(|m| m.config.proxy_coa == addr).map(|i| Node::Mag(MagId(i)))
    }

    /// The core link between the LMA and the MAG at one end of a packet.
    fn core_link(&self, a: Node, b: Node) -> Option<LinkConfig> {
        match (a, b) {
            (Node::Lma, Node::Mag(m)) | (Node::Mag(m), Node::Lma) => Some(self.mags[m.0].core),
            _ => None,
        }
    }

    fn transmit(&mut self, from: Node, transmit: Transmit) {
        match transmit {
            Transmit::Mobility { src, dst, message } => {
                let bytes = match message.to_vec(&src, &dst) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        self.problems.push((self.now, Problem::EmitFailed { from, error: e.to_string() }));
                        return;
                    }
                };
                let to = self.node_of_address(dst);
                let link = to.and_then(|to| self.core_link(from, to));
                let record = self.record(from, to, None, src, dst, Content::Mobility(message), bytes);
                match (to, link) {
                    (Some(to), Some(link)) => self.schedule(record, to, None, link),
                    _ => self.packets[record].dropped = Some(Drop::Unroutable),
                }
            }
            Transmit::RouterAdvertisement { interface, src, dst, ra } => {
                let Node::Mag(mag) = from else { return };
                let point = AttachmentPoint { mag, interface };
                let receivers: Vec<Node> = self
                    .mns
                    .iter()
                    .enumerate()
                    .flat_map(|(n, mn)| {
                        mn.interfaces.iter().enumerate().filter_map(move |(i, iface)| {
                            (iface.attached == Some(point) && (dst.is_multicast() || dst == iface.link_local))
                                .then_some(Node::MobileNode { mn: MnId(n), interface: i })
                        })
                    })
                    .collect();
                let message = NdMessage::RouterAdvertisement(ra);
                let link = self.mags[mag.0].access;
                if receivers.is_empty() {
                    if let Some(record) = self.record_nd(from, None, point, src, dst, message) {
                        self.packets[record].dropped = Some(Drop::NoReceiver);
                    }
                    return;
                }
                for to in receivers {
                    if let Some(record) = self.record_nd(from, Some(to), point, src, dst, message.clone()) {
                        self.schedule(record, to, Some(point), link);
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        from: Node,
        to: Option<Node>,
        access: Option<AttachmentPoint>,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        content: Content,
        bytes: Vec<u8>,
    ) -> usize {
        let id = self.packets.len();
        self.packets.push(PacketRecord {
            id,
            sent_at: self.now,
            from,
            to,
            access,
            src,
            dst,
            content,
            bytes,
            deliveries: Vec::new(),
            dropped: None,
        });
        id
    }

    fn record_nd(
        &mut self,
        from: Node,
        to: Option<Node>,
        access: AttachmentPoint,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        message: NdMessage,
    ) -> Option<usize> {
        let mut bytes = vec![0; message.buffer_len()];
        if let Err(e) = message.emit(&mut bytes, &src, &dst) {
            self.problems.push((self.now, Problem::EmitFailed { from, error: e.to_string() }));
            return None;
        }
        Some(self.record(from, to, Some(access), src, dst, Content::Nd(message), bytes))
    }

    /// Puts a packet on a link: lost, or one or two copies on their way.
    fn schedule(&mut self, record: usize, to: Node, point: Option<AttachmentPoint>, link: LinkConfig) {
        if self.rng.chance(link.loss) {
            self.packets[record].dropped = Some(Drop::Lost);
            return;
        }
        let copies = if self.rng.chance(link.duplication) { 2 } else { 1 };
        for _ in 0..copies {
            let mut delay = link.latency;
            if self.rng.chance(link.reordering) {
                let max = u64::try_from(link.reorder_delay.as_nanos()).unwrap_or(u64::MAX);
                delay += Duration::from_nanos(self.rng.below(max.saturating_add(1)));
            }
            self.in_flight.insert((self.now + delay, self.next_copy), InFlight { record, to, point });
            self.next_copy += 1;
        }
    }

    fn drop_copy(&mut self, record: usize, why: Drop) {
        self.packets[record].dropped = Some(why);
    }

    fn deliver(&mut self, copy: InFlight) {
        let now = self.now;
        let record = &self.packets[copy.record];
        let (src, dst, from) = (record.src, record.dst, record.from);
        match (&record.content, copy.to) {
            (Content::Mobility(original), to) => {
                let parsed = Message::parse_checked(&record.bytes, &src, &dst, &self.parse);
                let message = match parsed {
                    Ok(m) => m,
                    Err(e) => {
                        let error = e.to_string();
                        self.problems.push((now, Problem::ParseFailed { record: copy.record, error: error.clone() }));
                        return self.drop_copy(copy.record, Drop::Malformed(error));
                    }
                };
                if &message != original {
                    self.problems.push((now, Problem::RoundTripMismatch { record: copy.record }));
                }
                self.packets[copy.record].deliveries.push(now);
                let received = Received { src, dst, message };
                match to {
                    Node::Lma => {
                        self.lma.engine.handle_message(now, received);
                        self.drain_lma();
                    }
                    Node::Mag(mag) => {
                        self.mags[mag.0].engine.handle_message(now, received);
                        self.drain_mag(mag);
                    }
                    Node::MobileNode { .. } => {}
                }
            }
            (Content::Nd(original), to) => {
                let parsed = NdMessage::parse_checked(&record.bytes, &src, &dst);
                let message = match parsed {
                    Ok(m) => m,
                    Err(e) => {
                        let error = e.to_string();
                        self.problems.push((now, Problem::ParseFailed { record: copy.record, error: error.clone() }));
                        return self.drop_copy(copy.record, Drop::Malformed(error));
                    }
                };
                if &message != original {
                    self.problems.push((now, Problem::RoundTripMismatch { record: copy.record }));
                }
                match (message, to, from) {
                    (NdMessage::RouterSolicitation(rs), Node::Mag(mag), Node::MobileNode { mn, interface }) => {
                        let iface = &self.mns[mn.0].interfaces[interface];
                        let Some(point) = iface.attached.filter(|p| p.mag == mag && Some(*p) == copy.point) else {
                            return self.drop_copy(copy.record, Drop::LinkDown);
                        };
                        let mac = iface.mac;
                        self.packets[copy.record].deliveries.push(now);
                        self.mags[mag.0].engine.handle_router_solicitation(now, point.interface, src, Some(mac), &rs);
                        self.drain_mag(mag);
                    }
                    (NdMessage::RouterAdvertisement(ra), Node::MobileNode { mn, interface }, Node::Mag(mag)) => {
                        let attached = self.mns[mn.0].interfaces[interface].attached;
                        let Some(point) = attached.filter(|p| p.mag == mag && Some(*p) == copy.point) else {
                            return self.drop_copy(copy.record, Drop::LinkDown);
                        };
                        self.packets[copy.record].deliveries.push(now);
                        let received = ReceivedRa { at: now, from: point, src, dst, ra };
                        self.mns[mn.0].interfaces[interface].receive(received);
                    }
                    _ => self.drop_copy(copy.record, Drop::Unroutable),
                }
            }
        }
    }
}

fn due(deadline: Option<Now>, stuck_at: Option<Now>, now: Now) -> bool {
    deadline.is_some_and(|d| d <= now) && stuck_at != Some(now)
}
