//! [`FlowSteering`]: the flow table, the policy and the mobile nodes' attachments together —
//! where each downlink flow goes, and the steering intents that put it there.

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};
use std::collections::{HashMap, HashSet, VecDeque};

use foldhash::fast::FixedState;
use pmip6_wire::selector::{FieldRange, TrafficSelector};
use pmip6_wire::{MnIdentifier, Prefix};

use super::classify::{Classifier, ClassifyError, FlowKey, FragmentCacheConfig, IpVersion, PacketInfo};
use super::policy::{
    AttachmentView, CompiledRule, Context, Decision, Fallback, Matcher, MnRuleLimits, OperatorRule, Policy, Route,
    Rule, RuleError, RuleRef, RuleRejection, RuleSet, TargetSpec, Tier, prefix_contains, prefix_range,
    validate_mobile_node_rules,
};
use super::table::{FlowHandle, FlowTable, KeyHash, NewFlow, Refusal};
use crate::common::Now;

/// How the data plane steers flows (DESIGN.md, "Data plane on Linux").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SteeringMode {
    /// One steering entry per flow, keyed by its 6-tuple (`learn` and `nfqueue`): every flow the
    /// table knows has exactly one [`Steering::Flow`], to a tunnel or to the base route.
    #[default]
    PerFlow,
    /// Policies compiled into selector entries (`map`): one [`Steering::Selector`] per rule and
    /// mobile node address block it applies to; no per-flow entries. A split resolves to its
    /// live choice of largest weight (per-flow hashing needs a flow).
    PerSelector,
}

/// Configuration of [`FlowSteering`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowConfig {
    /// How intents are keyed.
    pub mode: SteeringMode,
    /// Flows in the table at most.
    pub max_flows: usize,
    /// Flows of one mobile node at most (capped at 65,535, the FID space).
    pub max_flows_per_mobile_node: usize,
    /// Flows the table has room for from the start (at most `max_flows`): memory reserved at
    /// start-up, so that the first flows do not pay for the table's growth. Beyond it, the
    /// table grows (amortised, with a pause per doubling) up to `max_flows`.
    pub reserved_flows: usize,
    /// A flow with no packet for this long is forgotten and its steering withdrawn.
    pub idle_timeout: Now,
    /// The fragment reassociation cache.
    pub fragments: FragmentCacheConfig,
    /// What mobile nodes may decide (draft §4.4).
    pub mn_rules: MnRuleLimits,
    /// Prefixes plus IPv4 home addresses one mobile node may register at most.
    pub max_addresses_per_mobile_node: usize,
    /// Attachments one mobile node may have at most.
    pub max_attachments_per_mobile_node: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            mode: SteeringMode::PerFlow,
            max_flows: 1 << 20,
            max_flows_per_mobile_node: 4096,
            reserved_flows: 16_384,
            idle_timeout: Now::from_secs(120),
            fragments: FragmentCacheConfig::default(),
            mn_rules: MnRuleLimits::default(),
            max_addresses_per_mobile_node: 16,
            max_attachments_per_mobile_node: 16,
        }
    }
}

/// A mobile node as the LMA's binding cache describes it: its addresses and its live
/// attachments (one per interface, draft §5.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MobileNodeView {
    /// Its home network prefixes (all interfaces).
    pub prefixes: Vec<Prefix>,
    /// Its IPv4 home addresses (RFC 5844).
    pub ipv4_home_addresses: Vec<Ipv4Addr>,
    /// Its live attachments. Where a technology or interface matches several, the first listed
    /// wins.
    pub attachments: Vec<AttachmentView>,
}

/// Why a mobile node update was refused (nothing of it is applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MobileNodeError {
    /// A prefix registered by another mobile node.
    PrefixOwnedByOther(Prefix),
    /// An IPv4 home address registered by another mobile node.
    AddressOwnedByOther(Ipv4Addr),
    /// A prefix longer than 128 bits.
    InvalidPrefix(Prefix),
    /// More prefixes and addresses than the configured limit.
    TooManyAddresses,
    /// More attachments than the configured limit.
    TooManyAttachments,
}

impl fmt::Display for MobileNodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PrefixOwnedByOther(p) => write!(f, "prefix {p:?} belongs to another mobile node"),
            Self::AddressOwnedByOther(a) => {
                write!(f, "IPv4 home address {a} belongs to another mobile node")
            }
            Self::InvalidPrefix(p) => write!(f, "prefix {p:?} is longer than 128 bits"),
            Self::TooManyAddresses => f.write_str("too many prefixes and addresses for one mobile node"),
            Self::TooManyAttachments => f.write_str("too many attachments for one mobile node"),
        }
    }
}

impl std::error::Error for MobileNodeError {}

/// Why a move was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveError {
    /// The mobile node is not registered.
    UnknownMobileNode,
    /// The mobile node has no live flow with this FID.
    UnknownFlow(u16),
    /// The target or selector is malformed.
    Invalid(RuleError),
}

impl fmt::Display for MoveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownMobileNode => f.write_str("mobile node is not registered"),
            Self::UnknownFlow(fid) => write!(f, "no live flow with FID {fid}"),
            Self::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for MoveError {}

/// One piece of steering state in the data plane. Ordered (for sets of data-plane state) by
/// kind, then key, precedence and route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Steering {
    /// Packets of this flow go this way (`learn`, `nfqueue`): an nftables map element
    /// `6-tuple : mark`, where the mark selects the tunnel's routing table, or the main table
    /// for [`Route::PrefixRoute`].
    Flow {
        /// The 6-tuple.
        key: FlowKey,
        /// Where to.
        route: Route,
    },
    /// Packets matching this selector go this way (`map`): an interval-map element. Elements of
    /// one mobile node are disjoint from other nodes' (their destination lies within its own
    /// addresses); among one node's, the lowest `precedence` wins.
    Selector {
        /// Which packets; the destination is always within one of the MN's prefixes or
        /// addresses. (Boxed: per-flow entries, the frequent kind, stay small.)
        selector: Box<TrafficSelector>,
        /// Lower first.
        precedence: u32,
        /// Where to.
        route: Route,
    },
}

impl Ord for Steering {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        match (self, other) {
            (Self::Flow { key: a, route: ra }, Self::Flow { key: b, route: rb }) => a.cmp(b).then(ra.cmp(rb)),
            (Self::Flow { .. }, Self::Selector { .. }) => core::cmp::Ordering::Less,
            (Self::Selector { .. }, Self::Flow { .. }) => core::cmp::Ordering::Greater,
            (
                Self::Selector { selector: a, precedence: pa, route: ra },
                Self::Selector { selector: b, precedence: pb, route: rb },
            ) => pa.cmp(pb).then(ra.cmp(rb)).then_with(|| selector_order(a).cmp(&selector_order(b))),
        }
    }
}

impl PartialOrd for Steering {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// One selector field's Start and End as numbers, for ordering.
type FieldOrder = Option<(u128, Option<u128>)>;

/// A total order key of a traffic selector, consistent with its equality: the format, then each
/// field's Start and End in wire order, as 128-bit numbers (absent sorts first).
fn selector_order(s: &TrafficSelector) -> (u8, Vec<FieldOrder>, &[u8]) {
    fn pair<T: Copy + Into<u128>>(r: &Option<FieldRange<T>>) -> FieldOrder {
        r.map(|r| (r.start.into(), r.end.map(Into::into)))
    }
    fn v6(r: &Option<FieldRange<Ipv6Addr>>) -> FieldOrder {
        r.map(|r| (u128::from(r.start), r.end.map(u128::from)))
    }
    fn v4(r: &Option<FieldRange<Ipv4Addr>>) -> FieldOrder {
        r.map(|r| (u128::from(u32::from(r.start)), r.end.map(|e| u128::from(u32::from(e)))))
    }
    match s {
        TrafficSelector::Ipv4(x) => (
            s.format(),
            vec![
                v4(&x.src_addr),
                v4(&x.dst_addr),
                pair(&x.spi),
                pair(&x.src_port),
                pair(&x.dst_port),
                pair(&x.ds),
                pair(&x.protocol),
            ],
            &[],
        ),
        TrafficSelector::Ipv6(x) => (
            s.format(),
            vec![
                v6(&x.src_addr),
                v6(&x.dst_addr),
                pair(&x.spi),
                pair(&x.flow_label),
                pair(&x.src_port),
                pair(&x.dst_port),
                pair(&x.traffic_class),
                pair(&x.next_header),
            ],
            &[],
        ),
        TrafficSelector::Unknown { format, data } => (*format, Vec::new(), data.as_slice()),
    }
}

/// A change of steering state; the engine adds and removes each [`Steering`] exactly once.
/// Its place in `common::Resource` is a `Resource::Steering(Steering)` variant, so that
/// `Intent::Add`/`Intent::Remove` carry it with the LMA's tunnels and routes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum SteeringIntent {
    /// Install.
    Add(Steering),
    /// Remove.
    Remove(Steering),
}

/// Make-before-break (RFC 7864 §3.1): a flow should move to `peer`, which does not yet route
/// `prefix` to the mobile node. The LMA sends it an Update Notification (reason FLOW-MOBILITY)
/// with the prefix; once the MAG routes it (reported by [`FlowSteering::update_mobile_node`]
/// listing the prefix in that attachment), the waiting flows move. A refusal is reported by
/// [`FlowSteering::prefix_refused`]. Each (MN, MAG, prefix) is requested once until answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PrefixRequest {
    /// The mobile node.
    pub mn: MnIdentifier,
    /// The target MAG's Proxy-CoA.
    pub peer: Ipv6Addr,
    /// The prefix it must route to the mobile node.
    pub prefix: Prefix,
}

/// The intents of one call, to be applied as one atomic data-plane update (one nftables
/// transaction); removes come before the adds that replace them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SteeringBatch {
    /// Steering changes, in order.
    pub intents: Vec<SteeringIntent>,
    /// Prefixes target MAGs must learn before waiting flows can move to them.
    pub prefix_requests: Vec<PrefixRequest>,
}

impl SteeringBatch {
    fn is_empty(&self) -> bool {
        self.intents.is_empty() && self.prefix_requests.is_empty()
    }
}

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The packet belongs to a flow of the table.
    Flow {
        /// Its FID (the flow's handle: [`FlowSteering::flow_by_key`]).
        fid: u16,
        /// Where the packet goes.
        route: Route,
        /// Whether this packet created the flow.
        new: bool,
    },
    /// The destination is no mobile node's: not ours to steer.
    NotMobileNode,
    /// A new flow could not be entered: the packet follows the base route.
    Refused(Refusal),
}

/// A flow as the control API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FlowSummary {
    /// The flow.
    pub handle: FlowHandle,
    /// Its FID.
    pub fid: u16,
    /// The 6-tuple.
    pub key: FlowKey,
    /// Where it goes.
    pub route: Route,
    /// The rule that decided, if any.
    pub rule: Option<RuleRef>,
    /// False while on a fallback (its preferred target absent, or waiting for a prefix).
    pub preferred: bool,
    /// Whether it was moved explicitly.
    pub pinned: bool,
    /// Packets.
    pub packets: u64,
    /// Octets.
    pub bytes: u64,
    /// First packet.
    pub first_seen: Now,
    /// Last packet.
    pub last_seen: Now,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SteeringStats {
    /// Packets given to `handle_packet`/`handle_info`.
    pub packets: u64,
    /// Packets that could not be classified.
    pub classify_errors: u64,
    /// Packets for no mobile node.
    pub not_mobile_node: u64,
    /// Flows created.
    pub flows_created: u64,
    /// Flows expired idle.
    pub flows_expired: u64,
    /// Flows dropped because their mobile node left or lost the address.
    pub flows_dropped: u64,
    /// New flows refused: table full.
    pub refused_table_full: u64,
    /// New flows refused: mobile node at its limit.
    pub refused_mn_limit: u64,
    /// Flows moved from one route to another.
    pub moves: u64,
    /// Moves waiting for a target MAG to learn a prefix.
    pub deferred_moves: u64,
    /// Prefix requests emitted.
    pub prefix_requests: u64,
}

#[derive(Debug, Clone)]
struct MnState {
    id: MnIdentifier,
    view: MobileNodeView,
    rules: Vec<Rule>,
    compiled: Option<RuleSet>,
    requested: Vec<(Ipv6Addr, Prefix)>,
    refused: Vec<(Ipv6Addr, Prefix)>,
    /// Selector steering installed for this node (`PerSelector` mode).
    selectors: Vec<Steering>,
}

impl MnState {
    fn prefix_of(&self, key: &FlowKey) -> Option<Prefix> {
        match key.version {
            IpVersion::V6 => self.view.prefixes.iter().copied().find(|p| prefix_contains(p, key.dst)),
            IpVersion::V4 => None,
        }
    }

    fn owns(&self, key: &FlowKey) -> bool {
        match key.version {
            IpVersion::V6 => self.view.prefixes.iter().any(|p| prefix_contains(p, key.dst)),
            IpVersion::V4 => key.dst.to_ipv4_mapped().is_some_and(|a| self.view.ipv4_home_addresses.contains(&a)),
        }
    }

    fn live(&self, peer: Ipv6Addr) -> bool {
        self.view.attachments.iter().any(|a| a.proxy_coa == peer)
    }

    fn serves(&self, peer: Ipv6Addr, prefix: &Prefix) -> bool {
        self.view.attachments.iter().any(|a| a.proxy_coa == peer && a.serves(prefix))
    }

    fn serves_ipv4(&self, peer: Ipv6Addr, address: &Ipv4Addr) -> bool {
        self.view.attachments.iter().any(|a| a.proxy_coa == peer && a.serves_ipv4(address))
    }

    /// Whether a flow of `key` can go into the tunnel to `peer`: the MAG is attached, and, for
    /// an IPv4 flow, routes its home address.
    fn carries(&self, peer: Ipv6Addr, key: &FlowKey) -> bool {
        match ipv4_destination(key) {
            Some(a) => self.serves_ipv4(peer, &a),
            None => self.live(peer),
        }
    }
}

/// The IPv4 destination of an IPv4 flow.
fn ipv4_destination(key: &FlowKey) -> Option<Ipv4Addr> {
    match key.version {
        IpVersion::V4 => key.dst.to_ipv4_mapped(),
        IpVersion::V6 => None,
    }
}

/// Key of the owner index: an address block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Block {
    start: u128,
    len: u8,
    v4: bool,
}

/// The flow-mobility core of the LMA: sans-IO and deterministic.
///
/// ```text
///   update_mobile_node / remove_mobile_node ─┐                    ┌─► poll_batch()   → steering
///   set_operator_rules / set_mobile_node_rules┼─► FlowSteering ────┤                     + prefix requests
///   handle_packet(now, bytes) / handle_info  ─┤  (table, policy)   └─► poll_timeout() → idle expiry
///   move_flow / move_selector / prefix_refused┤
///   handle_timeout(now)                       ┘
/// ```
///
/// Every call that changes steering closes its intents into one [`SteeringBatch`]; intents of
/// new flows from packets gather in one batch until the next poll or control call. Across all
/// batches each [`Steering`] is added and removed exactly once, and `installed()` is what the
/// data plane holds after applying them all.
#[derive(Debug)]
pub struct FlowSteering {
    config: FlowConfig,
    classifier: Classifier,
    table: FlowTable,
    policy: Policy,
    mns: Vec<Option<MnState>>,
    free_mns: Vec<u32>,
    by_id: HashMap<MnIdentifier, u32, FixedState>,
    owners: HashMap<Block, u32, FixedState>,
    /// Prefix lengths in the owner index with their counts, longest first.
    lengths: Vec<(u8, u32)>,
    pins: HashMap<FlowHandle, TargetSpec, FixedState>,
    open: SteeringBatch,
    batches: VecDeque<SteeringBatch>,
    stats: SteeringStats,
}

impl FlowSteering {
    /// An engine with no mobile node, no flow and no operator rule.
    pub fn new(config: FlowConfig) -> Self {
        let mut table = FlowTable::new(config.max_flows, config.max_flows_per_mobile_node, config.idle_timeout);
        table.reserve(config.reserved_flows);
        let policy = Policy::compile(Vec::new(), config.mn_rules.clone()).unwrap_or_default();
        Self {
            classifier: Classifier::new(config.fragments),
            table,
            policy,
            config,
            mns: Vec::new(),
            free_mns: Vec::new(),
            by_id: HashMap::default(),
            owners: HashMap::default(),
            lengths: Vec::new(),
            pins: HashMap::default(),
            open: SteeringBatch::default(),
            batches: VecDeque::new(),
            stats: SteeringStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FlowConfig {
        &self.config
    }

    /// The flow table, read-only.
    pub fn table(&self) -> &FlowTable {
        &self.table
    }

    /// The operator policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Counters.
    pub fn stats(&self) -> SteeringStats {
        self.stats
    }

    /// The classifier (fragment cache counters).
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    // ---- outputs --------------------------------------------------------------------------------

    /// The next batch of steering changes, in the order they must be applied.
    pub fn poll_batch(&mut self) -> Option<SteeringBatch> {
        self.close_batch();
        self.batches.pop_front()
    }

    /// When [`FlowSteering::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Now> {
        self.table.next_deadline()
    }

    /// Every steering entry the data plane holds once every batch is applied.
    pub fn installed(&self) -> Vec<Steering> {
        let mut out: Vec<Steering> = match self.config.mode {
            SteeringMode::PerFlow => {
                self.table.iter().map(|(_, e)| Steering::Flow { key: e.key, route: e.route() }).collect()
            }
            SteeringMode::PerSelector => Vec::new(),
        };
        for mn in self.mns.iter().flatten() {
            out.extend(mn.selectors.iter().cloned());
        }
        out
    }

    fn close_batch(&mut self) {
        if !self.open.is_empty() {
            // The next batch starts with room for as many intents as this one had, so that a
            // burst of new flows does not pay for the vector's growth again at every batch.
            let room = self.open.intents.len();
            let next = SteeringBatch { intents: Vec::with_capacity(room), prefix_requests: Vec::new() };
            self.batches.push_back(core::mem::replace(&mut self.open, next));
        }
    }

    fn emit_add(&mut self, s: Steering) {
        self.open.intents.push(SteeringIntent::Add(s));
    }

    fn emit_remove(&mut self, s: Steering) {
        self.open.intents.push(SteeringIntent::Remove(s));
    }

    // ---- mobile nodes ----------------------------------------------------------------------------

    fn slot(&self, mn: &MnIdentifier) -> Option<u32> {
        self.by_id.get(mn).copied()
    }

    fn mn(&self, slot: u32) -> Option<&MnState> {
        self.mns.get(slot as usize).and_then(Option::as_ref)
    }

    fn mn_mut(&mut self, slot: u32) -> Option<&mut MnState> {
        self.mns.get_mut(slot as usize).and_then(Option::as_mut)
    }

    fn blocks(view: &MobileNodeView) -> impl Iterator<Item = Block> + '_ {
        let v6 = view.prefixes.iter().map(|p| Block { start: prefix_range(p).0, len: p.len, v4: false });
        let v4 = view.ipv4_home_addresses.iter().map(|a| Block {
            start: u128::from(a.to_ipv6_mapped()),
            len: 128,
            v4: true,
        });
        v6.chain(v4)
    }

    /// The mobile node owning `key`'s destination.
    fn owner(&self, key: &FlowKey) -> Option<u32> {
        let dst = u128::from(key.dst);
        match key.version {
            IpVersion::V4 => self.owners.get(&Block { start: dst, len: 128, v4: true }).copied(),
            IpVersion::V6 => self.lengths.iter().find_map(|&(len, _)| {
                let host = if len == 0 { u128::MAX } else { u128::MAX.checked_shr(u32::from(len)).unwrap_or(0) };
                self.owners.get(&Block { start: dst & !host, len, v4: false }).copied()
            }),
        }
    }

    fn index_blocks(&mut self, slot: u32, view: &MobileNodeView, add: bool) {
        for b in Self::blocks(view).collect::<Vec<_>>() {
            if add {
                if self.owners.insert(b, slot).is_none() && !b.v4 {
                    match self.lengths.iter_mut().find(|(l, _)| *l == b.len) {
                        Some((_, n)) => *n += 1,
                        None => {
                            self.lengths.push((b.len, 1));
                            self.lengths.sort_by_key(|l| core::cmp::Reverse(l.0));
                        }
                    }
                }
            } else if self.owners.get(&b) == Some(&slot) {
                self.owners.remove(&b);
                if !b.v4 {
                    if let Some((_, n)) = self.lengths.iter_mut().find(|(l, _)| *l == b.len) {
                        *n -= 1;
                    }
                    self.lengths.retain(|(_, n)| *n > 0);
                }
            }
        }
    }

    /// Registers a mobile node or updates its addresses and live attachments (call it whenever
    /// its binding cache entries change). Flows to addresses it no longer has are dropped;
    /// flows on an attachment that is gone move at once to a live one (failover); flows on a
    /// fallback move back to their preferred target when it appears; flows waiting for a
    /// prefix at their target move when the target now serves it. All in one batch.
    pub fn update_mobile_node(&mut self, mn: &MnIdentifier, mut view: MobileNodeView) -> Result<(), MobileNodeError> {
        if view.prefixes.len() + view.ipv4_home_addresses.len() > self.config.max_addresses_per_mobile_node {
            return Err(MobileNodeError::TooManyAddresses);
        }
        if view.attachments.len() > self.config.max_attachments_per_mobile_node {
            return Err(MobileNodeError::TooManyAttachments);
        }
        let existing = self.slot(mn);
        for p in &view.prefixes {
            if p.len > 128 {
                return Err(MobileNodeError::InvalidPrefix(*p));
            }
        }
        for b in Self::blocks(&view) {
            if let Some(owner) = self.owners.get(&b) {
                if Some(*owner) != existing {
                    return Err(if b.v4 {
                        MobileNodeError::AddressOwnedByOther(
                            Ipv6Addr::from(b.start).to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
                        )
                    } else {
                        MobileNodeError::PrefixOwnedByOther(
                            view.prefixes
                                .iter()
                                .copied()
                                .find(|p| prefix_range(p).0 == b.start && p.len == b.len)
                                .unwrap_or(Prefix::ALL_ZERO),
                        )
                    });
                }
            }
        }
        view.prefixes.dedup();
        self.close_batch();
        let slot = match existing {
            Some(slot) => {
                let old = self.mn(slot).map(|m| m.view.clone()).unwrap_or_default();
                self.index_blocks(slot, &old, false);
                slot
            }
            None => {
                let state = MnState {
                    id: mn.clone(),
                    view: MobileNodeView::default(),
                    rules: Vec::new(),
                    compiled: None,
                    requested: Vec::new(),
                    refused: Vec::new(),
                    selectors: Vec::new(),
                };
                let slot = match self.free_mns.pop() {
                    Some(s) => {
                        if let Some(cell) = self.mns.get_mut(s as usize) {
                            *cell = Some(state);
                        }
                        s
                    }
                    None => {
                        self.mns.push(Some(state));
                        (self.mns.len() - 1) as u32
                    }
                };
                self.by_id.insert(mn.clone(), slot);
                slot
            }
        };
        self.index_blocks(slot, &view, true);
        if let Some(state) = self.mn_mut(slot) {
            state.view = view;
            let v = &state.view;
            // A refusal holds while that attachment lasts; a request until it is served.
            state.refused.retain(|(peer, _)| v.attachments.iter().any(|a| a.proxy_coa == *peer));
            state.requested.retain(|(peer, p)| {
                v.attachments.iter().any(|a| a.proxy_coa == *peer)
                    && !v.attachments.iter().any(|a| a.proxy_coa == *peer && a.serves(p))
            });
        }
        for handle in self.table.flows_of(slot) {
            let owned = match (self.table.get(handle), self.mn(slot)) {
                (Some(e), Some(m)) => m.owns(&e.key),
                _ => true,
            };
            if owned {
                self.reconcile(handle, false);
            } else {
                self.drop_flow(handle);
            }
        }
        self.recompile_selectors(slot);
        self.close_batch();
        Ok(())
    }

    /// The mobile node left (its last binding is gone): its flows are dropped and every steering
    /// entry of it withdrawn, in one batch. Returns the number of flows dropped.
    pub fn remove_mobile_node(&mut self, mn: &MnIdentifier) -> usize {
        let Some(slot) = self.slot(mn) else { return 0 };
        self.close_batch();
        let flows = self.table.flows_of(slot);
        let n = flows.len();
        for handle in flows {
            self.drop_flow(handle);
        }
        self.table.forget_mobile_node(slot);
        let state = self.mns.get_mut(slot as usize).and_then(Option::take);
        if let Some(state) = state {
            for s in state.selectors.iter().cloned() {
                self.emit_remove(s);
            }
            self.index_blocks(slot, &state.view, false);
        }
        self.by_id.remove(mn);
        self.free_mns.push(slot);
        self.close_batch();
        n
    }

    /// The mobile node's addresses and attachments as last reported.
    pub fn mobile_node(&self, mn: &MnIdentifier) -> Option<&MobileNodeView> {
        self.slot(mn).and_then(|s| self.mn(s)).map(|m| &m.view)
    }

    // ---- policy ----------------------------------------------------------------------------------

    /// Replaces the operator rules (LMA-driven and hybrid defaults, draft §4.4). Validated as a
    /// whole; on success every flow is re-decided (a split flow on a still-usable member stays),
    /// in one batch.
    pub fn set_operator_rules(&mut self, rules: Vec<OperatorRule>) -> Result<(), RuleRejection> {
        let policy = Policy::compile(rules, self.config.mn_rules.clone())?;
        self.close_batch();
        self.policy = policy;
        let handles: Vec<FlowHandle> = self.table.iter().map(|(h, _)| h).collect();
        for h in handles {
            self.reconcile(h, true);
        }
        for slot in 0..self.mns.len() as u32 {
            self.recompile_selectors(slot);
        }
        self.close_batch();
        Ok(())
    }

    /// Replaces a mobile node's own rules (terminal-driven and hybrid, draft §4.4 items 1 and
    /// 3). Refused as a whole, with the reason, when MN rules are disabled, there are too many,
    /// a selector is malformed or names destinations outside the node's own prefixes, or a
    /// target is beyond the operator's limits. On success the node's flows are re-decided.
    pub fn set_mobile_node_rules(&mut self, mn: &MnIdentifier, rules: Vec<Rule>) -> Result<(), RuleRejection> {
        let Some(slot) = self.slot(mn) else {
            return Err(RuleRejection { index: 0, error: RuleError::UnknownMobileNode });
        };
        let compiled = {
            let Some(state) = self.mn(slot) else {
                return Err(RuleRejection { index: 0, error: RuleError::UnknownMobileNode });
            };
            validate_mobile_node_rules(
                &self.config.mn_rules,
                &state.view.prefixes,
                &state.view.ipv4_home_addresses,
                &rules,
            )?
        };
        self.close_batch();
        if let Some(state) = self.mn_mut(slot) {
            state.compiled = (!rules.is_empty()).then_some(compiled);
            state.rules = rules;
        }
        for h in self.table.flows_of(slot) {
            self.reconcile(h, true);
        }
        self.recompile_selectors(slot);
        self.close_batch();
        Ok(())
    }

    /// The rules that apply to a mobile node, in precedence order with their tier: what the LMA
    /// hands the MN (draft §4.4: "the policies must be exchanged in both directions").
    pub fn effective_rules(&self, mn: &MnIdentifier) -> Vec<(RuleRef, Rule)> {
        let compiled = self.slot(mn).and_then(|s| self.mn(s)).and_then(|m| m.compiled.as_ref());
        self.policy.effective(mn, compiled).map(|(r, c)| (r, c.rule.clone())).collect()
    }

    // ---- packets ---------------------------------------------------------------------------------

    /// Classifies a downlink packet (starting at its IP header), finds or creates its flow and
    /// says where it goes. A new flow's steering entry joins the open batch.
    #[inline]
    pub fn handle_packet(&mut self, now: Now, packet: &[u8]) -> Result<Verdict, ClassifyError> {
        match super::classify::classify(packet) {
            Ok(mut info) => {
                if info.fragment.is_some() {
                    self.classifier.reassociate(now, &mut info);
                }
                Ok(self.handle_info(now, &info))
            }
            Err(e) => {
                self.stats.packets += 1;
                self.stats.classify_errors += 1;
                Err(e)
            }
        }
    }

    /// As [`FlowSteering::handle_packet`], for a packet already classified.
    #[inline]
    pub fn handle_info(&mut self, now: Now, info: &PacketInfo) -> Verdict {
        self.stats.packets += 1;
        let hash = self.table.hash(&info.key);
        if let Some((fid, route)) = self.table.hit(hash, &info.key, now, info.length) {
            return Verdict::Flow { fid, route, new: false };
        }
        self.new_flow(now, info, hash)
    }

    fn new_flow(&mut self, now: Now, info: &PacketInfo, hash: KeyHash) -> Verdict {
        let Some(slot) = self.owner(&info.key) else {
            self.stats.not_mobile_node += 1;
            return Verdict::NotMobileNode;
        };
        let Some(state) = self.mn(slot) else {
            self.stats.not_mobile_node += 1;
            return Verdict::NotMobileNode;
        };
        let prefix = state.prefix_of(&info.key);
        let decision = self.policy.decide_in(&Context {
            packet: info,
            mn: &state.id,
            mn_rules: state.compiled.as_ref(),
            attachments: &state.view.attachments,
            pin: None,
            current: None,
            prefix,
            refused: &state.refused,
            static_split: false,
        });
        let (decision, request) = Self::make_before_break(state, decision, &info.key, prefix, Route::PrefixRoute, true);
        let new = NewFlow {
            key: info.key,
            traffic_class: info.traffic_class,
            spi: info.spi,
            length: info.length,
            mn: slot,
            decision,
        };
        match self.table.insert(now, hash, new) {
            Ok((_, fid, decision)) => {
                self.stats.flows_created += 1;
                if let Some((peer, prefix)) = request {
                    self.stats.deferred_moves += 1;
                    self.request_prefix(slot, peer, prefix);
                }
                if self.config.mode == SteeringMode::PerFlow {
                    self.emit_add(Steering::Flow { key: info.key, route: decision.route });
                }
                Verdict::Flow { fid, route: decision.route, new: true }
            }
            Err(refusal) => {
                match refusal {
                    Refusal::TableFull => self.stats.refused_table_full += 1,
                    Refusal::MobileNodeLimit => self.stats.refused_mn_limit += 1,
                }
                Verdict::Refused(refusal)
            }
        }
    }

    /// RFC 7864 §3.1 make-before-break: a flow of an IPv6 prefix goes to a MAG only once that
    /// MAG routes the prefix to the mobile node. Until then it stays where it is (`current`, if
    /// live) or takes the base route, on a fallback (`preferred: false`), and the prefix is
    /// requested. A flow to an IPv4 home address (RFC 5844) goes only to a MAG that routes the
    /// address: none can be taught another session's, so nothing is requested.
    #[inline]
    fn make_before_break(
        state: &MnState,
        decision: Decision,
        key: &FlowKey,
        prefix: Option<Prefix>,
        current: Route,
        current_live: bool,
    ) -> (Decision, Option<(Ipv6Addr, Prefix)>) {
        let Route::Tunnel(peer) = decision.route else { return (decision, None) };
        let fallback = || {
            let route = if current_live { current } else { Route::PrefixRoute };
            Decision { route, rule: decision.rule, preferred: false }
        };
        match (prefix, ipv4_destination(key)) {
            (Some(p), _) if !state.serves(peer, &p) => (fallback(), Some((peer, p))),
            (None, Some(a)) if !state.serves_ipv4(peer, &a) => (fallback(), None),
            _ => (decision, None),
        }
    }

    fn request_prefix(&mut self, slot: u32, peer: Ipv6Addr, prefix: Prefix) {
        let Some(state) = self.mn_mut(slot) else {
            return;
        };
        if state.requested.contains(&(peer, prefix)) {
            return;
        }
        state.requested.push((peer, prefix));
        let mn = state.id.clone();
        self.stats.prefix_requests += 1;
        self.open.prefix_requests.push(PrefixRequest { mn, peer, prefix });
    }

    // ---- moves -----------------------------------------------------------------------------------

    /// Moves one flow explicitly (operator, draft §4.2): it is pinned to `target`, above every
    /// rule, for as long as it lives; when the target is not attached it follows the policy.
    /// Returns the flow's route after the call: the old one (or the base route if that is gone)
    /// while the target MAG learns the prefix (see [`PrefixRequest`]).
    pub fn move_flow(&mut self, mn: &MnIdentifier, fid: u16, target: TargetSpec) -> Result<Route, MoveError> {
        let slot = self.slot(mn).ok_or(MoveError::UnknownMobileNode)?;
        let handle = self.table.by_fid(slot, fid).ok_or(MoveError::UnknownFlow(fid))?;
        check_target(&target)?;
        self.close_batch();
        self.pins.insert(handle, target);
        self.reconcile(handle, true);
        self.close_batch();
        Ok(self.table.get(handle).map_or(Route::PrefixRoute, |e| e.route()))
    }

    /// Moves every live flow of `mn` matching `selector` to `target` (each pinned as by
    /// [`FlowSteering::move_flow`]), in one batch. Returns how many flows matched. Flows that
    /// start later follow the policy: to steer them too, add a rule.
    pub fn move_selector(
        &mut self,
        mn: &MnIdentifier,
        selector: &TrafficSelector,
        target: TargetSpec,
    ) -> Result<usize, MoveError> {
        let slot = self.slot(mn).ok_or(MoveError::UnknownMobileNode)?;
        let matcher = Matcher::compile(selector).map_err(MoveError::Invalid)?;
        check_target(&target)?;
        self.close_batch();
        let mut n = 0;
        for h in self.table.flows_of(slot) {
            let hit = self.table.get(h).is_some_and(|e| {
                matcher.matches(&PacketInfo {
                    key: e.key,
                    traffic_class: e.traffic_class,
                    spi: e.spi,
                    length: 0,
                    fragment: None,
                })
            });
            if hit {
                n += 1;
                self.pins.insert(h, target.clone());
                self.reconcile(h, true);
            }
        }
        self.close_batch();
        Ok(n)
    }

    /// Removes an explicit move: the flow follows the policy again.
    pub fn unpin(&mut self, mn: &MnIdentifier, fid: u16) -> Result<Route, MoveError> {
        let slot = self.slot(mn).ok_or(MoveError::UnknownMobileNode)?;
        let handle = self.table.by_fid(slot, fid).ok_or(MoveError::UnknownFlow(fid))?;
        self.close_batch();
        self.pins.remove(&handle);
        self.reconcile(handle, true);
        self.close_batch();
        Ok(self.table.get(handle).map_or(Route::PrefixRoute, |e| e.route()))
    }

    /// A MAG refused to route `prefix` for the mobile node (RFC 7864: UPA status 131 or 132):
    /// that MAG is not used for flows of that prefix while the attachment lasts; flows waiting
    /// for it fall back at once.
    pub fn prefix_refused(&mut self, mn: &MnIdentifier, peer: Ipv6Addr, prefix: Prefix) {
        let Some(slot) = self.slot(mn) else { return };
        self.close_batch();
        if let Some(state) = self.mn_mut(slot) {
            state.requested.retain(|r| *r != (peer, prefix));
            if !state.refused.contains(&(peer, prefix)) {
                state.refused.push((peer, prefix));
            }
        }
        for h in self.table.flows_of(slot) {
            self.reconcile(h, false);
        }
        self.recompile_selectors(slot);
        self.close_batch();
    }

    // ---- time ------------------------------------------------------------------------------------

    /// Expires flows idle for the configured timeout and withdraws their steering, in one
    /// batch.
    pub fn handle_timeout(&mut self, now: Now) {
        self.close_batch();
        while let Some((handle, e)) = self.table.pop_idle(now) {
            self.stats.flows_expired += 1;
            self.pins.remove(&handle);
            if self.config.mode == SteeringMode::PerFlow {
                self.emit_remove(Steering::Flow { key: e.key, route: e.route() });
            }
        }
        self.close_batch();
    }

    // ---- views -----------------------------------------------------------------------------------

    /// The live flows of a mobile node, by FID.
    pub fn flows(&self, mn: &MnIdentifier) -> Vec<FlowSummary> {
        let Some(slot) = self.slot(mn) else {
            return Vec::new();
        };
        self.table.flows_of(slot).into_iter().filter_map(|h| self.summary(h)).collect()
    }

    /// One flow of a mobile node.
    pub fn flow(&self, mn: &MnIdentifier, fid: u16) -> Option<FlowSummary> {
        let slot = self.slot(mn)?;
        self.summary(self.table.by_fid(slot, fid)?)
    }

    /// The flow of a key.
    pub fn flow_by_key(&self, key: &FlowKey) -> Option<FlowSummary> {
        self.summary(self.table.lookup(key)?)
    }

    fn summary(&self, handle: FlowHandle) -> Option<FlowSummary> {
        let e = self.table.get(handle)?;
        let counters = self.table.counters(handle)?;
        Some(FlowSummary {
            handle,
            fid: e.fid,
            key: e.key,
            route: e.route(),
            rule: e.decision.rule,
            preferred: e.decision.preferred,
            pinned: self.pins.contains_key(&handle),
            packets: counters.packets,
            bytes: counters.bytes,
            first_seen: e.first_seen(),
            last_seen: counters.last_seen,
        })
    }

    // ---- machinery -------------------------------------------------------------------------------

    fn drop_flow(&mut self, handle: FlowHandle) {
        self.pins.remove(&handle);
        if let Some(e) = self.table.remove(handle) {
            self.stats.flows_dropped += 1;
            if self.config.mode == SteeringMode::PerFlow {
                self.emit_remove(Steering::Flow { key: e.key, route: e.route() });
            }
        }
    }

    /// Re-decides one flow. It moves when its route is gone (failover), when `force` (a policy
    /// change or an explicit move), or when it is on a fallback; otherwise a live flow stays
    /// put, so that attachments coming and going do not reorder healthy flows.
    fn reconcile(&mut self, handle: FlowHandle, force: bool) {
        let Some(e) = self.table.get(handle) else {
            return;
        };
        let Some(state) = self.mn(e.mn) else { return };
        let info = PacketInfo { key: e.key, traffic_class: e.traffic_class, spi: e.spi, length: 0, fragment: None };
        let (route, previous) = (e.route(), e.decision);
        let live = match route {
            Route::Tunnel(peer) => state.carries(peer, &info.key),
            Route::PrefixRoute => true,
        };
        if live && !force && previous.preferred {
            return;
        }
        let prefix = state.prefix_of(&info.key);
        let decision = self.policy.decide_in(&Context {
            packet: &info,
            mn: &state.id,
            mn_rules: state.compiled.as_ref(),
            attachments: &state.view.attachments,
            pin: self.pins.get(&handle),
            current: match route {
                Route::Tunnel(peer) if live => Some(peer),
                _ => None,
            },
            prefix,
            refused: &state.refused,
            static_split: false,
        });
        let (decision, request) = Self::make_before_break(state, decision, &info.key, prefix, route, live);
        let slot = e.mn;
        if let Some((peer, p)) = request {
            if previous.preferred || previous.route != decision.route {
                self.stats.deferred_moves += 1;
            }
            self.request_prefix(slot, peer, p);
        }
        let Some(key) = self.table.get(handle).map(|e| e.key) else {
            return;
        };
        let decision = self.table.set_route(handle, decision);
        if decision.route != route {
            self.stats.moves += 1;
            if self.config.mode == SteeringMode::PerFlow {
                self.emit_remove(Steering::Flow { key, route });
                self.emit_add(Steering::Flow { key, route: decision.route });
            }
        }
    }

    /// `PerSelector` mode: recompiles a mobile node's selector entries and emits the
    /// difference.
    fn recompile_selectors(&mut self, slot: u32) {
        if self.config.mode != SteeringMode::PerSelector {
            return;
        }
        let Some(state) = self.mn(slot) else { return };
        let mut wanted: Vec<Steering> = Vec::new();
        let mut requests: Vec<(Ipv6Addr, Prefix)> = Vec::new();
        let mut precedence = 0u32;
        for (rule_ref, rule) in self.policy.effective(&state.id, state.compiled.as_ref()) {
            for (block, prefix) in selector_blocks(state, rule) {
                let Some(selector) = restrict(&rule.rule.selector, block) else {
                    continue;
                };
                let packet =
                    PacketInfo::from_key(FlowKey::v6(Ipv6Addr::from(block.0), Ipv6Addr::from(block.0), 0, None, 0), 0);
                let cx = Context {
                    packet: &packet,
                    mn: &state.id,
                    mn_rules: None,
                    attachments: &state.view.attachments,
                    pin: None,
                    current: None,
                    prefix,
                    refused: &state.refused,
                    static_split: true,
                };
                let restricted = rule_ref.tier == Tier::MobileNode;
                let route = match self.policy.resolve_rule(&rule.rule.target, &cx, restricted) {
                    Some(peer) => match prefix {
                        Some(p) if !state.serves(peer, &p) => {
                            requests.push((peer, p));
                            None
                        }
                        _ => Some(Route::Tunnel(peer)),
                    },
                    None => None,
                };
                let route = match (route, rule.rule.fallback) {
                    (Some(r), _) => r,
                    (None, Fallback::BaseRoute) => Route::PrefixRoute,
                    (None, Fallback::NextRule) => continue,
                };
                wanted.push(Steering::Selector { selector: Box::new(selector), precedence, route });
                precedence += 1;
            }
        }
        let old = core::mem::take(&mut self.mn_mut(slot).map(|s| &mut s.selectors).cloned().unwrap_or_default());
        let keep: HashSet<&Steering, FixedState> = wanted.iter().collect();
        let had: HashSet<&Steering, FixedState> = old.iter().collect();
        let removes: Vec<Steering> = old.iter().filter(|s| !keep.contains(s)).cloned().collect();
        let adds: Vec<Steering> = wanted.iter().filter(|s| !had.contains(s)).cloned().collect();
        for s in removes {
            self.emit_remove(s);
        }
        for s in adds {
            self.emit_add(s);
        }
        if let Some(state) = self.mn_mut(slot) {
            state.selectors = wanted;
        }
        for (peer, p) in requests {
            self.request_prefix(slot, peer, p);
        }
    }
}

fn check_target(target: &TargetSpec) -> Result<(), MoveError> {
    if let TargetSpec::Split(choices) = target {
        if choices.len() > super::policy::MAX_SPLIT_CHOICES {
            return Err(MoveError::Invalid(RuleError::SplitTooLarge { choices: choices.len() }));
        }
        if choices.iter().all(|(_, w)| *w == 0) {
            return Err(MoveError::Invalid(RuleError::EmptySplit));
        }
    }
    Ok(())
}

/// The address blocks of `state` a rule can apply to, with the IPv6 prefix of each.
fn selector_blocks(state: &MnState, rule: &CompiledRule) -> Vec<((u128, u128), Option<Prefix>)> {
    let (a, b) = rule.matcher.dst;
    let v6 = matches!(rule.rule.selector, TrafficSelector::Ipv6(_));
    let mut out = Vec::new();
    if v6 {
        for p in &state.view.prefixes {
            let (s, e) = prefix_range(p);
            if a <= e && s <= b {
                out.push(((a.max(s), b.min(e)), Some(*p)));
            }
        }
    } else {
        for v4 in &state.view.ipv4_home_addresses {
            let v = u128::from(v4.to_ipv6_mapped());
            if a <= v && v <= b {
                out.push(((v, v), None));
            }
        }
    }
    out
}

/// The selector with its destination narrowed to `block`.
fn restrict(selector: &TrafficSelector, (s, e): (u128, u128)) -> Option<TrafficSelector> {
    fn range<T: Copy + PartialOrd>(s: T, e: T) -> FieldRange<T> {
        if s == e { FieldRange::exact(s) } else { FieldRange::new(s, e) }
    }
    match selector {
        TrafficSelector::Ipv6(sel) => {
            let mut sel = sel.clone();
            sel.dst_addr = Some(range(Ipv6Addr::from(s), Ipv6Addr::from(e)));
            Some(TrafficSelector::Ipv6(sel))
        }
        TrafficSelector::Ipv4(sel) => {
            let mut sel = sel.clone();
            let s4 = Ipv6Addr::from(s).to_ipv4_mapped()?;
            let e4 = Ipv6Addr::from(e).to_ipv4_mapped()?;
            sel.dst_addr = Some(range(s4, e4));
            Some(TrafficSelector::Ipv4(sel))
        }
        TrafficSelector::Unknown { .. } => None,
    }
}
