//! The policy table of the LMA (draft §4.2: "an additional policy/routing table ... to send
//! different flows addressed to the same destination IP address via different MAGs"): ordered
//! rules, each an RFC 6088 traffic selector and a target, and the decision of where a flow
//! goes.
//!
//! Who decides (draft §4.4) — all three models at once, by rule tiers evaluated in this order:
//!
//! ```text
//!   1. pinned      an explicit move of this flow by the operator (FlowSteering::move_flow)
//!   2. locked      operator rules marked `locked`: the MN cannot override them
//!   3. mobile node the MN's own rules (terminal-driven, §4.4 item 1; hybrid, item 3)
//!   4. default     the operator's other rules (LMA-driven, item 2; the defaults of item 3)
//!   5. base route  no rule matched: the per-prefix route of RFC 5213 (Route::PrefixRoute)
//! ```
//!
//! Within a tier the first matching rule whose target is usable wins. A rule whose target is not
//! attached (or not usable) follows its [`Fallback`]: on to the next rule (of any lower tier), or
//! straight to the base route. LMA-driven operation is `MnRuleLimits { enabled: false, .. }`;
//! terminal-driven is MN rules with no operator default rules; hybrid is operator defaults, MN
//! rules within [`MnRuleLimits`], and locked rules the MN cannot touch.
//!
//! Mobile node rules are validated before they are stored ([`validate_mobile_node_rules`]): they
//! may only select destinations within the MN's own prefixes and IPv4 home addresses, their count
//! is bounded, their targets must be within the operator's limits, and malformed selectors are
//! refused with the reason. Operator rules get the same selector checks.
//!
//! Matching is on a compiled form of each selector (address ranges as integers, wildcards as full
//! ranges). Each tier keeps an index: rules whose destination range lies within one IPv6 /64 (or
//! one IPv4 /24) are bucketed by it, rules scoped to one mobile node by that node, the rest kept
//! in one list; a lookup merges the (at most three) candidate lists in rule order. A 10,000-rule
//! policy of per-MN rules costs a lookup a handful of comparisons.

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};
use std::collections::HashMap;

use foldhash::fast::FixedState;
use pmip6_wire::selector::{FieldRange, Ipv4Selector, Ipv6Selector, TrafficSelector};
use pmip6_wire::{AccessTechnologyType, MnIdentifier, Prefix};

use super::classify::{FlowKey, IpVersion, PacketInfo, PortSource};
use crate::lma::LinkLayerId;

/// The largest IPv6 flow label (RFC 8200 §6: 20 bits).
const IPV6_FLOW_LABEL_MAX: u32 = 0xF_FFFF;

/// One of the mobile node's attachments, as the LMA's binding cache sees it: where an
/// interface of the MN is attached now.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttachmentView {
    /// The MAG's Proxy-CoA: the tunnel a flow steered here goes into.
    pub proxy_coa: Ipv6Addr,
    /// The access technology of the interface (RFC 5213 §8.5).
    pub access_technology: AccessTechnologyType,
    /// The interface's link-layer identifier (RFC 5213 §8.6), if the MAG sent one.
    pub mn_link_layer_id: Option<LinkLayerId>,
    /// The MN prefixes this MAG routes to the MN now: its own, and those learned by MuHo
    /// (draft §5.2.1) or an RFC 7864 Update Notification. A flow to a prefix the MAG does not
    /// route can only be moved here after the MAG learned it.
    pub prefixes: Vec<Prefix>,
    /// The IPv4 home address (RFC 5844) this MAG routes to the MN: its session's (one per
    /// session). No signalling teaches a MAG another session's IPv4 home address, so a flow to
    /// one goes only where it is routed.
    pub ipv4_home_address: Option<Ipv4Addr>,
}

impl AttachmentView {
    /// Whether this MAG routes `prefix` to the MN.
    pub fn serves(&self, prefix: &Prefix) -> bool {
        self.prefixes.contains(prefix)
    }

    /// Whether this MAG routes the IPv4 home address `address` to the MN.
    pub fn serves_ipv4(&self, address: &Ipv4Addr) -> bool {
        self.ipv4_home_address.as_ref() == Some(address)
    }
}

/// A single place a flow can go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Choice {
    /// The first live attachment of this access technology ("video over WLAN").
    AccessTechnology(AccessTechnologyType),
    /// The attachment of this interface of the MN (MN-LL-ID).
    Interface(LinkLayerId),
    /// The attachment at this MAG (Proxy-CoA).
    Mag(Ipv6Addr),
}

/// What a rule sends its flows to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetSpec {
    /// The first live attachment of this access technology, in the order the attachments are
    /// listed ("video over WLAN" = `AccessTechnology(Ieee80211)`).
    AccessTechnology(AccessTechnologyType),
    /// The attachment of this interface (MN-LL-ID).
    Interface(LinkLayerId),
    /// The attachment at this MAG (Proxy-CoA).
    Mag(Ipv6Addr),
    /// Flows spread over these choices in proportion to the weights, each flow by a hash of its
    /// key; choices that are not attached drop out and the others share their weight.
    Split(Vec<(Choice, u32)>),
    /// Flows spread evenly over all the MN's live attachments (one share per MAG).
    Balance,
}

impl TargetSpec {
    /// The same target as a [`Choice`], for the single-choice targets.
    fn as_choice(&self) -> Option<Choice> {
        match self {
            Self::AccessTechnology(t) => Some(Choice::AccessTechnology(*t)),
            Self::Interface(l) => Some(Choice::Interface(l.clone())),
            Self::Mag(m) => Some(Choice::Mag(*m)),
            Self::Split(_) | Self::Balance => None,
        }
    }
}

/// What a rule does when its target is not attached or not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Fallback {
    /// Go on to the next matching rule (and, after the last, the base route).
    #[default]
    NextRule,
    /// Use the base per-prefix route at once.
    BaseRoute,
}

/// A rule: which packets, where to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Which packets (RFC 6088). Absent fields are wildcards; ranges are inclusive.
    pub selector: TrafficSelector,
    /// Where they go.
    pub target: TargetSpec,
    /// When the target is not there.
    pub fallback: Fallback,
}

impl Rule {
    /// A rule with [`Fallback::NextRule`].
    pub fn new(selector: TrafficSelector, target: TargetSpec) -> Self {
        Self { selector, target, fallback: Fallback::NextRule }
    }
}

/// Which mobile nodes an operator rule applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// Every mobile node.
    #[default]
    AllMobileNodes,
    /// One mobile node.
    MobileNode(MnIdentifier),
}

/// An operator rule (LMA-driven, draft §4.4 item 2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OperatorRule {
    /// The rule.
    pub rule: Rule,
    /// Which mobile nodes it applies to.
    pub scope: Scope,
    /// A locked rule beats the MN's own rules; an unlocked one is a default they override.
    pub locked: bool,
}

/// What the operator lets mobile nodes decide (draft §4.4 items 1 and 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MnRuleLimits {
    /// Whether mobile nodes may submit rules at all (false: LMA-driven only).
    pub enabled: bool,
    /// Rules one mobile node may have.
    pub max_rules: usize,
    /// The access technologies an MN rule may send flows to (`None`: any). Checked when a rule
    /// is submitted (for technology targets) and again when it is applied (for the attachment
    /// an interface, MAG or split target resolves to).
    pub access_technologies: Option<Vec<AccessTechnologyType>>,
    /// Whether an MN rule may name a MAG (a Proxy-CoA) as its target.
    pub allow_mag_targets: bool,
    /// Whether an MN rule may split or balance flows.
    pub allow_split: bool,
}

impl Default for MnRuleLimits {
    fn default() -> Self {
        Self { enabled: true, max_rules: 32, access_technologies: None, allow_mag_targets: false, allow_split: true }
    }
}

/// Choices a split may list at most.
pub const MAX_SPLIT_CHOICES: usize = 16;

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    /// A traffic selector of a TS Format other than 1 (IPv4) or 2 (IPv6) (RFC 6088 §3).
    UnsupportedSelectorFormat(u8),
    /// A range whose End is below its Start: it would match nothing.
    BackwardsRange {
        /// The field.
        field: &'static str,
    },
    /// A flow label above 20 bits (RFC 8200 §6): it would match nothing.
    FlowLabelOutOfRange(u32),
    /// A split with no choice, or whose weights are all 0.
    EmptySplit,
    /// A split with more than [`MAX_SPLIT_CHOICES`] choices.
    SplitTooLarge {
        /// Choices listed.
        choices: usize,
    },
    /// Mobile node rules are not accepted (LMA-driven operation).
    MobileNodeRulesDisabled,
    /// The mobile node is not known (it has no registered prefix).
    UnknownMobileNode,
    /// More rules than the limit.
    TooManyRules {
        /// Rules submitted.
        submitted: usize,
        /// The limit.
        limit: usize,
    },
    /// The selector names destinations outside the mobile node's own prefixes and addresses.
    DestinationNotOwn,
    /// The target is outside what the operator lets mobile nodes pick.
    TargetNotAllowed {
        /// Why.
        reason: &'static str,
    },
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedSelectorFormat(format) => {
                write!(f, "traffic selector format {format} is not supported (1 = IPv4, 2 = IPv6)")
            }
            Self::BackwardsRange { field } => write!(f, "{field} range ends before it starts"),
            Self::FlowLabelOutOfRange(v) => write!(f, "flow label {v:#x} does not fit 20 bits"),
            Self::EmptySplit => write!(f, "split has no choice with a weight above 0"),
            Self::SplitTooLarge { choices } => {
                write!(f, "split lists {choices} choices, at most {MAX_SPLIT_CHOICES} allowed")
            }
            Self::MobileNodeRulesDisabled => {
                write!(f, "mobile node rules are disabled by the operator")
            }
            Self::UnknownMobileNode => write!(f, "mobile node is not registered"),
            Self::TooManyRules { submitted, limit } => {
                write!(f, "{submitted} rules submitted, at most {limit} allowed per mobile node")
            }
            Self::DestinationNotOwn => {
                write!(f, "destination addresses are not within the mobile node's own prefixes")
            }
            Self::TargetNotAllowed { reason } => write!(f, "target not allowed: {reason}"),
        }
    }
}

impl std::error::Error for RuleError {}

/// A refused rule set: which rule (its position in the submitted list; 0 for errors about the
/// whole set) and why. Nothing of a refused set is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRejection {
    /// Position of the offending rule.
    pub index: usize,
    /// Why.
    pub error: RuleError,
}

impl fmt::Display for RuleRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule {}: {}", self.index, self.error)
    }
}

impl std::error::Error for RuleRejection {}

// ---- compiled selectors ----------------------------------------------------------------------

/// A selector compiled for matching: every field an inclusive range, wildcards full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Matcher {
    version: IpVersion,
    pub(crate) src: (u128, u128),
    pub(crate) dst: (u128, u128),
    sport: (u16, u16),
    dport: (u16, u16),
    /// Whether a port range is present: such a selector matches only keys with transport ports.
    ports: bool,
    flow_label: (u32, u32),
    /// DS field values (the 6 high bits of the traffic class, RFC 6088 §3.1, §3.2).
    ds: (u8, u8),
    protocol: (u8, u8),
    spi: Option<(u32, u32)>,
}

fn range<T: Copy + PartialOrd>(
    r: &Option<FieldRange<T>>,
    full: (T, T),
    field: &'static str,
) -> Result<(T, T), RuleError> {
    match r {
        None => Ok(full),
        Some(r) if r.last() < r.start => Err(RuleError::BackwardsRange { field }),
        Some(r) => Ok((r.start, r.last())),
    }
}

fn v4_range(r: &Option<FieldRange<Ipv4Addr>>, field: &'static str) -> Result<(u128, u128), RuleError> {
    let (a, b) = range(r, (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST), field)?;
    Ok((u128::from(a.to_ipv6_mapped()), u128::from(b.to_ipv6_mapped())))
}

fn v6_range(r: &Option<FieldRange<Ipv6Addr>>, field: &'static str) -> Result<(u128, u128), RuleError> {
    let (a, b) = range(r, (Ipv6Addr::UNSPECIFIED, Ipv6Addr::from(u128::MAX)), field)?;
    Ok((u128::from(a), u128::from(b)))
}

fn ds_range(r: &Option<FieldRange<u8>>, field: &'static str) -> Result<(u8, u8), RuleError> {
    let (a, b) = range(r, (0, u8::MAX), field)?;
    Ok((a >> 2, b >> 2))
}

impl Matcher {
    /// Checks and compiles a selector.
    pub(crate) fn compile(selector: &TrafficSelector) -> Result<Self, RuleError> {
        match selector {
            TrafficSelector::Ipv6(s) => Self::v6(s),
            TrafficSelector::Ipv4(s) => Self::v4(s),
            TrafficSelector::Unknown { format, .. } => Err(RuleError::UnsupportedSelectorFormat(*format)),
        }
    }

    fn v6(s: &Ipv6Selector) -> Result<Self, RuleError> {
        let flow_label = range(&s.flow_label, (0, IPV6_FLOW_LABEL_MAX), "flow label")?;
        for v in [flow_label.0, flow_label.1] {
            if v > IPV6_FLOW_LABEL_MAX {
                return Err(RuleError::FlowLabelOutOfRange(v));
            }
        }
        Ok(Self {
            version: IpVersion::V6,
            src: v6_range(&s.src_addr, "source address")?,
            dst: v6_range(&s.dst_addr, "destination address")?,
            sport: range(&s.src_port, (0, u16::MAX), "source port")?,
            dport: range(&s.dst_port, (0, u16::MAX), "destination port")?,
            ports: s.src_port.is_some() || s.dst_port.is_some(),
            flow_label,
            ds: ds_range(&s.traffic_class, "traffic class")?,
            protocol: range(&s.next_header, (0, u8::MAX), "next header")?,
            spi: s.spi.as_ref().map(|_| range(&s.spi, (0, u32::MAX), "IPsec SPI")).transpose()?,
        })
    }

    fn v4(s: &Ipv4Selector) -> Result<Self, RuleError> {
        Ok(Self {
            version: IpVersion::V4,
            src: v4_range(&s.src_addr, "source address")?,
            dst: v4_range(&s.dst_addr, "destination address")?,
            sport: range(&s.src_port, (0, u16::MAX), "source port")?,
            dport: range(&s.dst_port, (0, u16::MAX), "destination port")?,
            ports: s.src_port.is_some() || s.dst_port.is_some(),
            flow_label: (0, u32::MAX),
            ds: ds_range(&s.ds, "DS")?,
            protocol: range(&s.protocol, (0, u8::MAX), "protocol")?,
            spi: s.spi.as_ref().map(|_| range(&s.spi, (0, u32::MAX), "IPsec SPI")).transpose()?,
        })
    }

    /// Whether the packet falls within every range (RFC 6088: inclusive; absent = wildcard).
    #[inline]
    pub(crate) fn matches(&self, p: &PacketInfo) -> bool {
        let k = &p.key;
        #[inline]
        fn within<T: PartialOrd>(v: T, (a, b): (T, T)) -> bool {
            a <= v && v <= b
        }
        let src = u128::from(k.src);
        let dst = u128::from(k.dst);
        k.version == self.version
            && within(dst, self.dst)
            && within(src, self.src)
            && (!self.ports || k.ports == PortSource::Transport)
            && within(k.src_port, self.sport)
            && within(k.dst_port, self.dport)
            && within(k.protocol, self.protocol)
            && within(k.flow_label, self.flow_label)
            && within(p.traffic_class >> 2, self.ds)
            && self.spi.is_none_or(|r| p.spi.is_some_and(|spi| within(spi, r)))
    }
}

/// The address block of a prefix as an inclusive range of integers.
pub(crate) fn prefix_range(prefix: &Prefix) -> (u128, u128) {
    let len = u32::from(prefix.len.min(128));
    let host = if len == 0 { u128::MAX } else { u128::MAX.checked_shr(len).unwrap_or(0) };
    let start = u128::from(prefix.addr) & !host;
    (start, start | host)
}

/// Whether `prefix` holds `addr`.
pub(crate) fn prefix_contains(prefix: &Prefix, addr: Ipv6Addr) -> bool {
    let (a, b) = prefix_range(prefix);
    let v = u128::from(addr);
    a <= v && v <= b
}

// ---- compiled rule sets -----------------------------------------------------------------------

/// A rule with its selector compiled.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub(crate) matcher: Matcher,
    pub(crate) rule: Rule,
    pub(crate) scope: Option<MnIdentifier>,
}

/// Bucket of a rule by its destination range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Bucket {
    V6Slash64(u64),
    V4Slash24(u32),
}

fn bucket_of_range(version: IpVersion, (a, b): (u128, u128)) -> Option<Bucket> {
    match version {
        IpVersion::V6 if a >> 64 == b >> 64 => Some(Bucket::V6Slash64((a >> 64) as u64)),
        IpVersion::V4 if a >> 8 == b >> 8 => Some(Bucket::V4Slash24((a as u32) >> 8)),
        _ => None,
    }
}

fn bucket_of_key(key: &FlowKey) -> Bucket {
    let dst = u128::from(key.dst);
    match key.version {
        IpVersion::V6 => Bucket::V6Slash64((dst >> 64) as u64),
        IpVersion::V4 => Bucket::V4Slash24((dst as u32) >> 8),
    }
}

/// An ordered list of compiled rules with its lookup index.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleSet {
    pub(crate) rules: Vec<CompiledRule>,
    by_bucket: HashMap<Bucket, Vec<u32>, FixedState>,
    by_mn: HashMap<MnIdentifier, Vec<u32>, FixedState>,
    global: Vec<u32>,
}

impl RuleSet {
    pub(crate) fn new(rules: Vec<CompiledRule>) -> Self {
        let mut set = Self { rules, ..Self::default() };
        for (i, r) in set.rules.iter().enumerate() {
            let i = i as u32;
            if let Some(b) = bucket_of_range(r.matcher.version, r.matcher.dst) {
                set.by_bucket.entry(b).or_default().push(i);
            } else if let Some(mn) = &r.scope {
                set.by_mn.entry(mn.clone()).or_default().push(i);
            } else {
                set.global.push(i);
            }
        }
        set
    }

    pub(crate) fn len(&self) -> usize {
        self.rules.len()
    }

    /// Calls `f` with each rule that may apply to `packet` of mobile node `mn`, in rule order,
    /// until `f` returns `Some`.
    fn find<T>(
        &self,
        packet: &PacketInfo,
        mn: &MnIdentifier,
        mut f: impl FnMut(u32, &CompiledRule) -> Option<T>,
    ) -> Option<T> {
        const EMPTY: &[u32] = &[];
        let a = self.by_bucket.get(&bucket_of_key(&packet.key)).map_or(EMPTY, Vec::as_slice);
        let b = if self.by_mn.is_empty() { EMPTY } else { self.by_mn.get(mn).map_or(EMPTY, Vec::as_slice) };
        let c = self.global.as_slice();
        let (mut i, mut j, mut k) = (0, 0, 0);
        loop {
            let next = [a.get(i), b.get(j), c.get(k)].into_iter().flatten().min().copied()?;
            if a.get(i) == Some(&next) {
                i += 1;
            }
            if b.get(j) == Some(&next) {
                j += 1;
            }
            if c.get(k) == Some(&next) {
                k += 1;
            }
            let Some(rule) = self.rules.get(next as usize) else {
                continue;
            };
            if rule.scope.as_ref().is_some_and(|s| s != mn) || !rule.matcher.matches(packet) {
                continue;
            }
            if let Some(out) = f(next, rule) {
                return Some(out);
            }
        }
    }
}

fn check_target(target: &TargetSpec) -> Result<(), RuleError> {
    if let TargetSpec::Split(choices) = target {
        if choices.len() > MAX_SPLIT_CHOICES {
            return Err(RuleError::SplitTooLarge { choices: choices.len() });
        }
        if choices.iter().all(|(_, w)| *w == 0) {
            return Err(RuleError::EmptySplit);
        }
    }
    Ok(())
}

fn compile_rule(rule: &Rule, scope: Option<MnIdentifier>) -> Result<CompiledRule, RuleError> {
    let matcher = Matcher::compile(&rule.selector)?;
    check_target(&rule.target)?;
    Ok(CompiledRule { matcher, rule: rule.clone(), scope })
}

/// Validates and compiles the rules of one mobile node (draft §4.4 items 1 and 3): every rule
/// must select destinations within `prefixes` or `ipv4` (a selector without a destination range
/// means all of them), pick targets within `limits`, and be well-formed; at most
/// `limits.max_rules`. The whole set is refused at the first bad rule.
pub(crate) fn validate_mobile_node_rules(
    limits: &MnRuleLimits,
    prefixes: &[Prefix],
    ipv4: &[Ipv4Addr],
    rules: &[Rule],
) -> Result<RuleSet, RuleRejection> {
    let whole = |error| RuleRejection { index: 0, error };
    if !limits.enabled {
        return Err(whole(RuleError::MobileNodeRulesDisabled));
    }
    if rules.len() > limits.max_rules {
        return Err(whole(RuleError::TooManyRules { submitted: rules.len(), limit: limits.max_rules }));
    }
    let mut compiled = Vec::with_capacity(rules.len());
    for (index, rule) in rules.iter().enumerate() {
        let reject = |error| RuleRejection { index, error };
        let c = compile_rule(rule, None).map_err(reject)?;
        // Draft §4.4 item 1: the terminal provides its policy for its own flows; it may not
        // steer anyone else's.
        let has_dst = match &rule.selector {
            TrafficSelector::Ipv6(s) => s.dst_addr.is_some(),
            TrafficSelector::Ipv4(s) => s.dst_addr.is_some(),
            TrafficSelector::Unknown { .. } => false,
        };
        if has_dst {
            let (a, b) = c.matcher.dst;
            let own = match c.matcher.version {
                IpVersion::V6 => prefixes.iter().any(|p| {
                    let (s, e) = prefix_range(p);
                    s <= a && b <= e
                }),
                IpVersion::V4 => ipv4.iter().any(|v4| {
                    let v = u128::from(v4.to_ipv6_mapped());
                    a == v && b == v
                }),
            };
            if !own {
                return Err(reject(RuleError::DestinationNotOwn));
            }
        }
        check_mn_target(limits, &rule.target).map_err(reject)?;
        compiled.push(c);
    }
    Ok(RuleSet::new(compiled))
}

fn check_mn_target(limits: &MnRuleLimits, target: &TargetSpec) -> Result<(), RuleError> {
    let att_allowed = |t: &AccessTechnologyType| limits.access_technologies.as_ref().is_none_or(|a| a.contains(t));
    let check_choice = |c: &Choice| match c {
        Choice::AccessTechnology(t) if !att_allowed(t) => {
            Err(RuleError::TargetNotAllowed { reason: "access technology not allowed for mobile node rules" })
        }
        Choice::Mag(_) if !limits.allow_mag_targets => {
            Err(RuleError::TargetNotAllowed { reason: "mobile node rules may not name a MAG" })
        }
        _ => Ok(()),
    };
    match target {
        TargetSpec::Split(_) | TargetSpec::Balance if !limits.allow_split => {
            Err(RuleError::TargetNotAllowed { reason: "mobile node rules may not split flows" })
        }
        TargetSpec::Split(choices) => choices.iter().try_for_each(|(c, _)| check_choice(c)),
        TargetSpec::Balance => Ok(()),
        single => single.as_choice().map_or(Ok(()), |c| check_choice(&c)),
    }
}

// ---- decisions ---------------------------------------------------------------------------------

/// Where a flow's packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Route {
    /// Into the tunnel to this MAG (Proxy-CoA).
    Tunnel(Ipv6Addr),
    /// The base per-prefix route of RFC 5213 §5.6.2: the MAG serving the destination prefix.
    PrefixRoute,
}

/// The tier of the rule that decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Tier {
    /// An explicit move of the flow.
    Pinned,
    /// A locked operator rule.
    Locked,
    /// A rule of the mobile node.
    MobileNode,
    /// An operator default rule.
    OperatorDefault,
}

/// A rule, by tier and position in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RuleRef {
    /// The tier.
    pub tier: Tier,
    /// Position within the tier (0 for a pin).
    pub index: u32,
}

/// Where a flow goes and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Decision {
    /// The route.
    pub route: Route,
    /// The rule that decided; `None` when no rule matched (the base route of RFC 5213).
    pub rule: Option<RuleRef>,
    /// False when a higher-precedence matching rule was skipped because its target was not
    /// usable: the flow is on a fallback and returns to the better target when it is back.
    pub preferred: bool,
}

impl Decision {
    /// No rule: the base per-prefix route.
    pub const DEFAULT: Decision = Decision { route: Route::PrefixRoute, rule: None, preferred: true };
}

/// A deterministic 64-bit hash of a flow key: SplitMix64 finalisers over its words. Fixed here
/// (not a library hasher) so that a flow's share of a split is the same on every platform and
/// in every version.
pub fn flow_hash(key: &FlowKey) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let src = u128::from(key.src);
    let dst = u128::from(key.dst);
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for word in [(src >> 64) as u64, src as u64, (dst >> 64) as u64, dst as u64, key.packed_tail()] {
        h = mix(h ^ word).wrapping_add(0x9e37_79b9_7f4a_7c15);
    }
    h
}

/// Everything a decision looks at besides the policy.
pub(crate) struct Context<'a> {
    pub(crate) packet: &'a PacketInfo,
    pub(crate) mn: &'a MnIdentifier,
    pub(crate) mn_rules: Option<&'a RuleSet>,
    pub(crate) attachments: &'a [AttachmentView],
    /// An explicit move.
    pub(crate) pin: Option<&'a TargetSpec>,
    /// Where the flow goes now: a split keeps a flow on a member that is still usable.
    pub(crate) current: Option<Ipv6Addr>,
    /// The MN prefix holding the destination (IPv6 flows).
    pub(crate) prefix: Option<Prefix>,
    /// (MAG, prefix) pairs a MAG refused to serve (RFC 7864 UPA status 131/132).
    pub(crate) refused: &'a [(Ipv6Addr, Prefix)],
    /// Whether to resolve splits without a flow (the `map` steering mode): the live choice with
    /// the largest weight.
    pub(crate) static_split: bool,
}

/// The policy: the operator's rules, compiled, and the limits on mobile node rules.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<OperatorRule>,
    locked: RuleSet,
    defaults: RuleSet,
    limits: MnRuleLimits,
}

impl Policy {
    /// Validates and compiles operator rules. The whole set is refused at the first bad rule
    /// (its index in `rules`).
    pub fn compile(rules: Vec<OperatorRule>, limits: MnRuleLimits) -> Result<Self, RuleRejection> {
        let mut locked = Vec::new();
        let mut defaults = Vec::new();
        for (index, r) in rules.iter().enumerate() {
            let scope = match &r.scope {
                Scope::AllMobileNodes => None,
                Scope::MobileNode(mn) => Some(mn.clone()),
            };
            let compiled = compile_rule(&r.rule, scope).map_err(|error| RuleRejection { index, error })?;
            if r.locked { locked.push(compiled) } else { defaults.push(compiled) }
        }
        Ok(Self { rules, locked: RuleSet::new(locked), defaults: RuleSet::new(defaults), limits })
    }

    /// The operator rules, as given.
    pub fn rules(&self) -> &[OperatorRule] {
        &self.rules
    }

    /// The limits on mobile node rules.
    pub fn limits(&self) -> &MnRuleLimits {
        &self.limits
    }

    /// Number of locked and default rules.
    pub fn len(&self) -> (usize, usize) {
        (self.locked.len(), self.defaults.len())
    }

    /// Whether there is no operator rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Where a new flow of mobile node `mn` goes, given its live attachments, with the
    /// operator's rules only (no MN rules, no pin).
    pub fn decide(&self, packet: &PacketInfo, mn: &MnIdentifier, attachments: &[AttachmentView]) -> Decision {
        self.decide_in(&Context {
            packet,
            mn,
            mn_rules: None,
            attachments,
            pin: None,
            current: None,
            prefix: None,
            refused: &[],
            static_split: false,
        })
    }

    /// The decision with everything (pin, MN rules, stickiness, refusals).
    pub(crate) fn decide_in(&self, cx: &Context<'_>) -> Decision {
        let mut skipped = false;
        if let Some(pin) = cx.pin {
            if let Some(peer) = resolve_with(pin, cx, None) {
                return Decision {
                    route: Route::Tunnel(peer),
                    rule: Some(RuleRef { tier: Tier::Pinned, index: 0 }),
                    preferred: true,
                };
            }
            skipped = true;
        }
        let tiers: [(Tier, Option<&RuleSet>); 3] = [
            (Tier::Locked, Some(&self.locked)),
            (Tier::MobileNode, cx.mn_rules),
            (Tier::OperatorDefault, Some(&self.defaults)),
        ];
        for (tier, set) in tiers {
            let Some(set) = set.filter(|s| s.len() > 0) else { continue };
            let restricted = (tier == Tier::MobileNode).then_some(&self.limits);
            let found = set.find(cx.packet, cx.mn, |index, rule| {
                let rule_ref = Some(RuleRef { tier, index });
                match resolve_with(&rule.rule.target, cx, restricted) {
                    Some(peer) => Some(Decision { route: Route::Tunnel(peer), rule: rule_ref, preferred: !skipped }),
                    None => {
                        skipped = true;
                        match rule.rule.fallback {
                            Fallback::NextRule => None,
                            Fallback::BaseRoute => {
                                Some(Decision { route: Route::PrefixRoute, rule: rule_ref, preferred: false })
                            }
                        }
                    }
                }
            });
            if let Some(d) = found {
                return d;
            }
        }
        Decision { route: Route::PrefixRoute, rule: None, preferred: !skipped }
    }

    /// The MAG a rule's target resolves to; `restricted` for a mobile node's rule.
    pub(crate) fn resolve_rule(&self, target: &TargetSpec, cx: &Context<'_>, restricted: bool) -> Option<Ipv6Addr> {
        resolve_with(target, cx, restricted.then_some(&self.limits))
    }

    /// The compiled rules that apply to `mn`, in precedence order, with `mn_rules` in their
    /// tier: the policy an LMA hands to the MN (draft §4.4 items 2 and 3).
    pub(crate) fn effective<'a>(
        &'a self,
        mn: &'a MnIdentifier,
        mn_rules: Option<&'a RuleSet>,
    ) -> impl Iterator<Item = (RuleRef, &'a CompiledRule)> + 'a {
        let tiers: [(Tier, Option<&'a RuleSet>); 3] = [
            (Tier::Locked, Some(&self.locked)),
            (Tier::MobileNode, mn_rules),
            (Tier::OperatorDefault, Some(&self.defaults)),
        ];
        tiers.into_iter().flat_map(move |(tier, set)| {
            set.into_iter().flat_map(move |s| {
                s.rules
                    .iter()
                    .enumerate()
                    .filter(move |(_, r)| r.scope.as_ref().is_none_or(|s| s == mn))
                    .map(move |(i, r)| (RuleRef { tier, index: i as u32 }, r))
            })
        })
    }
}

/// Whether `a` may carry the flow: not refused for its prefix, and (for MN rules) of an allowed
/// technology.
fn usable(a: &AttachmentView, cx: &Context<'_>, restricted: Option<&MnRuleLimits>) -> bool {
    if restricted.is_some_and(|l| l.access_technologies.as_ref().is_some_and(|t| !t.contains(&a.access_technology))) {
        return false;
    }
    match cx.prefix {
        Some(p) => !cx.refused.iter().any(|(peer, q)| *peer == a.proxy_coa && *q == p),
        None => true,
    }
}

fn resolve_choice<'a>(
    choice: &Choice,
    cx: &Context<'a>,
    restricted: Option<&MnRuleLimits>,
) -> Option<&'a AttachmentView> {
    cx.attachments.iter().find(|a| {
        let hit = match choice {
            Choice::AccessTechnology(t) => a.access_technology == *t,
            Choice::Interface(l) => a.mn_link_layer_id.as_ref() == Some(l),
            Choice::Mag(m) => a.proxy_coa == *m,
        };
        hit && usable(a, cx, restricted)
    })
}

/// The MAG a target resolves to for this flow, if any usable attachment fits; `restricted`
/// carries the limits when the rule is a mobile node's.
fn resolve_with(target: &TargetSpec, cx: &Context<'_>, restricted: Option<&MnRuleLimits>) -> Option<Ipv6Addr> {
    if let Some(choice) = target.as_choice() {
        return resolve_choice(&choice, cx, restricted).map(|a| a.proxy_coa);
    }
    // Split or balance: the usable candidates with their weights, one entry per MAG.
    let mut candidates: Vec<(Ipv6Addr, u64)> = Vec::new();
    let mut add = |peer: Ipv6Addr, weight: u64| {
        if weight == 0 {
            return;
        }
        match candidates.iter_mut().find(|(p, _)| *p == peer) {
            Some((_, w)) => *w += weight,
            None => candidates.push((peer, weight)),
        }
    };
    match target {
        TargetSpec::Split(choices) => {
            for (choice, weight) in choices {
                if let Some(a) = resolve_choice(choice, cx, restricted) {
                    add(a.proxy_coa, u64::from(*weight));
                }
            }
        }
        _ => {
            for a in cx.attachments.iter().filter(|a| usable(a, cx, restricted)) {
                add(a.proxy_coa, 1);
            }
        }
    }
    if candidates.is_empty() {
        return None;
    }
    // A flow already on a member keeps it: moving it would reorder its packets for nothing.
    if let Some(current) = cx.current {
        if candidates.iter().any(|(p, _)| *p == current) {
            return Some(current);
        }
    }
    if cx.static_split {
        let mut best = candidates[0];
        for c in &candidates[1..] {
            if c.1 > best.1 {
                best = *c;
            }
        }
        return Some(best.0);
    }
    let total: u64 = candidates.iter().map(|(_, w)| w).sum();
    let mut point = flow_hash(&cx.packet.key) % total;
    for (peer, weight) in &candidates {
        if point < *weight {
            return Some(*peer);
        }
        point -= weight;
    }
    candidates.last().map(|(p, _)| *p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_at_the_edges() {
        let p = |a: &str, l| Prefix::new(a.parse().unwrap(), l);
        assert_eq!(prefix_range(&p("::", 0)), (0, u128::MAX));
        let host: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(prefix_range(&p("2001:db8::1", 128)), (u128::from(host), u128::from(host)));
        // Bits past the length are ignored.
        let (s, e) = prefix_range(&p("2001:db8:1:1::ffff", 64));
        assert_eq!(Ipv6Addr::from(s), "2001:db8:1:1::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(Ipv6Addr::from(e), "2001:db8:1:1:ffff:ffff:ffff:ffff".parse::<Ipv6Addr>().unwrap());
        assert!(prefix_contains(&p("2001:db8:1:1::", 64), "2001:db8:1:1::42".parse().unwrap()));
        assert!(!prefix_contains(&p("2001:db8:1:1::", 64), "2001:db8:1:2::".parse().unwrap()));
    }

    #[test]
    fn flow_hash_is_fixed() {
        // The split share of a flow must not change with the platform, the library versions or
        // the run: this value is part of the contract.
        let key =
            FlowKey::v6("2001:db8:c::1".parse().unwrap(), "2001:db8:1:1::11".parse().unwrap(), 17, Some((1, 2)), 3);
        assert_eq!(flow_hash(&key), flow_hash(&key.clone()));
        assert_eq!(flow_hash(&key), 0xcb71_1743_b132_e53c);
        assert_ne!(flow_hash(&key), flow_hash(&FlowKey { src_port: 2, ..key }));
    }

    #[test]
    fn families_never_match_each_other() {
        let v4 = Matcher::compile(&TrafficSelector::Ipv4(Ipv4Selector::default())).unwrap();
        let v6 = Matcher::compile(&TrafficSelector::Ipv6(Ipv6Selector::default())).unwrap();
        let k6 = FlowKey::v6(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, 6, Some((1, 2)), 0);
        let k4 = FlowKey::v4(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 6, Some((1, 2)));
        assert!(v6.matches(&PacketInfo::from_key(k6, 0)) && !v6.matches(&PacketInfo::from_key(k4, 0)));
        assert!(v4.matches(&PacketInfo::from_key(k4, 0)) && !v4.matches(&PacketInfo::from_key(k6, 0)));
        // An SPI range needs a packet with an SPI.
        let spi = Matcher::compile(&TrafficSelector::Ipv6(Ipv6Selector {
            spi: Some(FieldRange::new(10, 20)),
            ..Ipv6Selector::default()
        }))
        .unwrap();
        assert!(!spi.matches(&PacketInfo::from_key(k6, 0)));
        assert!(spi.matches(&PacketInfo { spi: Some(15), ..PacketInfo::from_key(k6, 0) }));
    }
}
