//! The LMA's downlink flow steering in nftables (DESIGN.md, "Data plane on Linux";
//! draft-bernardos-mif-pmip-02 §5.3, RFC 7864 §3): a packet for a mobile node's address is
//! looked up in a map and gets the `meta mark` of its route; `ip -6 rule fwmark M lookup T`
//! (owned by [`crate::routing`]) sends it into the tunnel to the MAG of table T.
//!
//! [`FlowMap`] owns one nftables table entirely (`table inet pmip6` by default): it deletes and
//! recreates it at [`FlowMap::open`] (what a previous run left is gone), changes only its
//! elements afterwards, and deletes it at [`FlowMap::close`]. In `learn` and `nfqueue` modes it
//! also owns one ip6tables rule per mobile node pool, the one program started by this crate,
//! at open and close only.
//!
//! ```text
//!  table inet pmip6
//!   set pools6          the LMA's mobile node prefixes: other IPv6 packets are not steered
//!   learn:  maps tcp6 udp6 dccp6 sctp6 udplite6   saddr . daddr . sport . dport         : mark
//!           map  echo6                             saddr . daddr . echo id . flow label  : mark
//!           map  other6                            saddr . daddr . protocol . flow label : mark
//!           maps tcp4 ... udplite4, echo4, other4  (IPv4: the same without flow label)
//!   map:    maps sel6_<p>, sel4_<p> (flags interval) saddr . daddr . protocol . sport . dport : mark
//!   chain steer (prerouting, priority -160, before iptables' mangle at -150):
//!           ip6 daddr != @pools6 return; then each map in turn while the mark is still 0
//!  ip6tables -t mangle -A PREROUTING -d <pool> -m mark --mark 0 -j NFQUEUE --queue-num N --queue-bypass
//! ```
//!
//! Choices, and what forced them (nftables 1.0.6 of Debian 12, this kernel):
//! - Its concatenated map keys break past five fields, and a 20-bit flow label together with
//!   two ports breaks even at five (the key type read back from the kernel loses a field, and
//!   later `add element` commands are encoded wrongly). So per-port-protocol maps drop the
//!   protocol from the key (the map implies it) and the **flow label is not part of the kernel
//!   key of a flow with ports**: engine flows that differ only by flow label share one element,
//!   which carries the mark of the one added last (see [`FlowMap::apply`]). Echo and port-less
//!   flows keep the flow label.
//! - Interval maps take no flow label either: a [`Steering::Selector`] with a flow label,
//!   traffic class or SPI range is refused ([`SteeringError::Unsupported`]).
//! - Precedence of selectors (lower first, among one mobile node's; nodes' selectors are
//!   disjoint by destination): the kernel's interval maps refuse overlapping elements, so each
//!   precedence value has its own map `sel6_<p>` and rule, looked up in increasing order.
//! - A packet without a readable transport header (a later fragment; no reassembly happens
//!   before our chain unless conntrack is loaded) matches neither port nor selector maps: in
//!   `learn` mode the `other` maps catch it, in `map` mode it follows the base route.
//! - IPv4 packets (RFC 5844 home addresses) are steered by the IPv4 maps, not restricted by the
//!   pools (which are IPv6 prefixes) and never queued by the ip6tables rule.

use core::net::{Ipv4Addr, Ipv6Addr};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use pmip6_engine::flow::classify::protocol;
use pmip6_engine::flow::{FlowKey, IpVersion, PortSource, Route, Steering, SteeringIntent};
use pmip6_wire::Prefix;
use pmip6_wire::selector::{FieldRange, TrafficSelector};

use crate::nft::{Nft, NftError};

/// The mark of "classified, follow the base per-prefix route" ([`Route::PrefixRoute`], RFC 5213
/// §5.6.2): not 0 (which means unclassified, and is queued in `learn` mode), and no `fwmark`
/// rule of [`crate::routing`] selects it, so the main table applies.
pub const PREFIX_ROUTE_MARK: u32 = 1;

/// Precedence values (selector maps) at most.
pub const MAX_PRECEDENCE_LEVELS: u32 = 256;

/// The chain's priority: before iptables' mangle PREROUTING (-150, `NF_IP6_PRI_MANGLE`), so
/// that the ip6tables NFQUEUE rule sees our mark.
pub const CHAIN_PRIORITY: i32 = -160;

/// How downlink flows are steered (the `steering` configuration key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SteeringBackend {
    /// Known flows are marked by per-flow maps in the kernel; packets to the pools still
    /// unmarked go to the NFQUEUE (the classifier adds their flow).
    #[default]
    Learn,
    /// Selectors compiled into interval maps; no packet goes to user space.
    Map,
    /// Every packet to the pools goes to the NFQUEUE, whose verdict sets the mark; the table
    /// holds no map and [`FlowMap::apply`] changes nothing in the kernel.
    NfQueue,
}

/// Configuration of [`FlowMap`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SteeringConfig {
    /// The steering mode.
    pub mode: SteeringBackend,
    /// The nftables table (family `inet`) owned entirely by the map.
    pub table: String,
    /// The NFQUEUE number (`learn`, `nfqueue`).
    pub queue: u16,
    /// The LMA's mobile node pools: only IPv6 packets to these are steered or queued (with
    /// none, no IPv6 packet is).
    pub mobile_node_prefixes: Vec<Prefix>,
}

impl Default for SteeringConfig {
    fn default() -> Self {
        Self { mode: SteeringBackend::Learn, table: "pmip6".to_owned(), queue: 0, mobile_node_prefixes: Vec::new() }
    }
}

/// Why steering failed. A failed [`FlowMap::apply`] changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SteeringError {
    /// nftables refused or could not be used.
    Nft(NftError),
    /// The ip6tables NFQUEUE rule could not be installed or removed.
    Iptables(String),
    /// No mark is known for the tunnel to this peer (the routing module has no table for it
    /// yet): apply routing intents first.
    NoMark(Ipv6Addr),
    /// A steering entry this backend cannot express.
    Unsupported(String),
    /// The table name is not a plain identifier.
    InvalidTable(String),
    /// The kernel's answer could not be read.
    Parse(String),
}

impl std::fmt::Display for SteeringError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Nft(e) => write!(f, "{e}"),
            Self::Iptables(e) => write!(f, "ip6tables: {e}"),
            Self::NoMark(peer) => write!(f, "no routing mark for the tunnel to {peer}"),
            Self::Unsupported(e) => write!(f, "cannot steer: {e}"),
            Self::InvalidTable(t) => write!(f, "invalid nftables table name {t:?}"),
            Self::Parse(e) => write!(f, "cannot read the flow map: {e}"),
        }
    }
}

impl std::error::Error for SteeringError {}

impl From<NftError> for SteeringError {
    fn from(e: NftError) -> Self {
        Self::Nft(e)
    }
}

/// What one [`FlowMap::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyReport {
    /// Intents that changed the map's state.
    pub applied: usize,
    /// Intents that changed nothing (an add of what is there, a remove of what is not).
    pub ignored: usize,
    /// Kernel elements added.
    pub added: usize,
    /// Kernel elements deleted.
    pub deleted: usize,
    /// The whole call (the `data-plane apply latency` metric).
    pub elapsed: Duration,
    /// Of which the nftables transaction.
    pub transaction: Duration,
}

/// One element of the kernel's maps as read back by [`FlowMap::elements`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MapElement {
    /// The map (`udp6`, `echo4`, `sel6_0`, ...).
    pub map: String,
    /// The key's fields as nftables prints them: an address, a number, a protocol name,
    /// `a-b` for a range, `a/len` for a prefix.
    pub key: Vec<String>,
    /// The mark.
    pub mark: u32,
}

/// The kernel element a steering entry becomes: the map and the key in nftables syntax.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ElementKey {
    map: String,
    key: String,
}

/// Protocols whose flows have ports, with the map name stem (the classifier's
/// [`PortSource::Transport`]).
const PORT_PROTOCOLS: [(u8, &str); 5] = [
    (protocol::TCP, "tcp"),
    (protocol::UDP, "udp"),
    (protocol::DCCP, "dccp"),
    (protocol::SCTP, "sctp"),
    (protocol::UDP_LITE, "udplite"),
];

/// The LMA's flow map (see the module documentation).
pub struct FlowMap {
    nft: Nft,
    config: SteeringConfig,
    /// Engine entries per kernel element; the element carries the mark of the last one.
    entries: HashMap<ElementKey, Vec<(Steering, u32)>>,
    /// Selector maps created, per family.
    levels6: u32,
    levels4: u32,
    /// ip6tables rule specifications installed at open.
    queue_rules: Vec<Vec<String>>,
    /// The network namespace (inode of `/proc/thread-self/ns/net`) the map was opened in.
    namespace: Option<u64>,
    closed: bool,
}

impl std::fmt::Debug for FlowMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowMap")
            .field("config", &self.config)
            .field("elements", &self.entries.len())
            .field("levels6", &self.levels6)
            .field("levels4", &self.levels4)
            .finish_non_exhaustive()
    }
}

impl FlowMap {
    /// Opens the flow map in the calling thread's network namespace: deletes the table if a
    /// previous run left it, creates it with its maps and chain, and (`learn`, `nfqueue`)
    /// replaces leftovers of the ip6tables NFQUEUE rules by fresh ones.
    pub fn open(config: SteeringConfig) -> Result<Self, SteeringError> {
        let valid = !config.table.is_empty()
            && config.table.len() <= 64
            && config.table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(SteeringError::InvalidTable(config.table));
        }
        let mut nft = Nft::new()?;
        nft.run(&table_definition(&config))?;
        let mut map = Self {
            nft,
            config,
            entries: HashMap::new(),
            levels6: 0,
            levels4: 0,
            queue_rules: Vec::new(),
            namespace: current_namespace(),
            closed: false,
        };
        if map.config.mode != SteeringBackend::Map {
            if let Err(e) = map.install_queue_rules() {
                let _ = map.teardown();
                return Err(e);
            }
        }
        Ok(map)
    }

    /// The configuration.
    pub fn config(&self) -> &SteeringConfig {
        &self.config
    }

    /// The mark a route gets: [`PREFIX_ROUTE_MARK`] for the base route, the routing module's
    /// mark for a tunnel.
    pub fn mark_of(route: Route, mark_for: &dyn Fn(Ipv6Addr) -> Option<u32>) -> Result<u32, SteeringError> {
        match route {
            Route::PrefixRoute => Ok(PREFIX_ROUTE_MARK),
            Route::Tunnel(peer) => mark_for(peer).ok_or(SteeringError::NoMark(peer)),
        }
    }

    /// Applies one engine batch (removes before the adds that replace them, as the engine
    /// orders them) in one nftables transaction: a move is a delete and an add of the element
    /// (nftables has no in-place update), and the next packet takes the new path
    /// (draft-bernardos-mif-pmip-02 §5.3, RFC 7864 §3.1). Idempotent per entry. `mark_for`
    /// gives the mark of the tunnel to a peer (`Routing::mark_for`). On error nothing changed.
    ///
    /// In `nfqueue` mode nothing is written to the kernel (the queue's verdicts carry the
    /// marks) and every intent is reported ignored.
    pub fn apply(
        &mut self,
        changes: &[SteeringIntent],
        mark_for: &dyn Fn(Ipv6Addr) -> Option<u32>,
    ) -> Result<ApplyReport, SteeringError> {
        let start = Instant::now();
        let mut report = ApplyReport::default();
        if self.config.mode == SteeringBackend::NfQueue {
            report.ignored = changes.len();
            report.elapsed = start.elapsed();
            return Ok(report);
        }
        // Resolve everything first: an error here leaves the map untouched.
        let mut resolved = Vec::with_capacity(changes.len());
        let (mut levels6, mut levels4) = (self.levels6, self.levels4);
        for change in changes {
            let (add, steering) = match change {
                SteeringIntent::Add(s) => (true, s),
                SteeringIntent::Remove(s) => (false, s),
            };
            let (element, level) = self.element_of(steering)?;
            let mark = match (add, steering) {
                (true, Steering::Flow { route, .. } | Steering::Selector { route, .. }) => {
                    Self::mark_of(*route, mark_for)?
                }
                (false, _) => 0,
            };
            if let Some((v6, p)) = level {
                let levels = if v6 { &mut levels6 } else { &mut levels4 };
                *levels = (*levels).max(p + 1);
            }
            resolved.push((add, steering, element, mark));
        }
        // Apply in memory, remembering each touched element's state before.
        let mut before: HashMap<ElementKey, Option<Vec<(Steering, u32)>>> = HashMap::new();
        for (add, steering, element, mark) in resolved {
            if !before.contains_key(&element) {
                before.insert(element.clone(), self.entries.get(&element).cloned());
            }
            let list = self.entries.entry(element.clone()).or_default();
            let at = list.iter().position(|(s, _)| s == steering);
            let changed = match (add, at) {
                (true, Some(_)) | (false, None) => false,
                (true, None) => {
                    list.push((steering.clone(), mark));
                    true
                }
                (false, Some(i)) => {
                    list.remove(i);
                    true
                }
            };
            if list.is_empty() {
                self.entries.remove(&element);
            }
            if changed {
                report.applied += 1;
            } else {
                report.ignored += 1;
            }
        }
        // The difference, as one transaction.
        let table = &self.config.table;
        let mut commands = String::new();
        commands.push_str(&self.level_definitions(levels6, levels4));
        let mut deletes = String::new();
        let mut adds = String::new();
        for (element, old) in &before {
            let old = old.as_ref().and_then(|l| l.last()).map(|(_, m)| *m);
            let new = self.entries.get(element).and_then(|l| l.last()).map(|(_, m)| *m);
            if old == new {
                continue;
            }
            if old.is_some() {
                let _ = writeln!(deletes, "delete element inet {table} {} {{ {} }}", element.map, element.key);
                report.deleted += 1;
            }
            if let Some(mark) = new {
                let _ = writeln!(adds, "add element inet {table} {} {{ {} : {mark} }}", element.map, element.key);
                report.added += 1;
            }
        }
        commands.push_str(&deletes);
        commands.push_str(&adds);
        if !commands.is_empty() {
            let t = Instant::now();
            let result = self.nft.run(&commands);
            report.transaction = t.elapsed();
            if let Err(e) = result {
                for (element, old) in before {
                    match old {
                        Some(list) => self.entries.insert(element, list),
                        None => self.entries.remove(&element),
                    };
                }
                return Err(e.into());
            }
        }
        self.levels6 = levels6;
        self.levels4 = levels4;
        report.elapsed = start.elapsed();
        Ok(report)
    }

    /// Reads every element of the table's maps back from the kernel.
    pub fn elements(&mut self) -> Result<Vec<MapElement>, SteeringError> {
        self.nft.set_json_output(true);
        let listed = self.nft.run(&format!("list table inet {}", self.config.table));
        self.nft.set_json_output(false);
        parse_elements(&listed?)
    }

    /// How many kernel elements the map holds (its own bookkeeping, no kernel round trip).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map holds no element.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Deletes the table and the ip6tables rules. Call it from a thread in the namespace the
    /// map was opened in (ip6tables acts on the caller's namespace; from another one the rules
    /// are left and an error says so). Dropping the map does the same, logging errors.
    pub fn close(mut self) -> Result<(), SteeringError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), SteeringError> {
        self.closed = true;
        let table = self.nft.run(&format!("delete table inet {}", self.config.table)).map(drop).map_err(Into::into);
        let mut rules = Ok(());
        let rules_here = core::mem::take(&mut self.queue_rules);
        if !rules_here.is_empty() && current_namespace() != self.namespace {
            // ip6tables acts on the calling thread's namespace: never touch another one's rules.
            return table.and(Err(SteeringError::Iptables(
                "close from another network namespace than open: NFQUEUE rules left in place".to_owned(),
            )));
        }
        for spec in rules_here {
            if let Err(e) = ip6tables("-D", &spec) {
                rules = Err(e);
            }
        }
        table.and(rules)
    }

    fn install_queue_rules(&mut self) -> Result<(), SteeringError> {
        let prefixes = self.config.mobile_node_prefixes.clone();
        for prefix in &prefixes {
            let spec = queue_rule(prefix, self.config.queue);
            // Leftovers of a previous run: the same rule, possibly several times.
            let mut removed = 0;
            while ip6tables("-C", &spec).is_ok() && removed < 64 {
                ip6tables("-D", &spec)?;
                removed += 1;
            }
            if removed > 0 {
                tracing::info!(prefix = %format_prefix(prefix), removed, "removed leftover NFQUEUE rules");
            }
            ip6tables("-A", &spec)?;
            self.queue_rules.push(spec);
        }
        Ok(())
    }

    /// The kernel element of a steering entry, and its selector level (IPv6?, precedence).
    fn element_of(&self, steering: &Steering) -> Result<(ElementKey, Option<(bool, u32)>), SteeringError> {
        match (self.config.mode, steering) {
            (SteeringBackend::Map, Steering::Flow { .. }) => {
                Err(SteeringError::Unsupported("flow entries need the learn backend".to_owned()))
            }
            (_, Steering::Flow { key, .. }) => {
                let (map, key) = flow_element(key);
                Ok((ElementKey { map, key: key.join(" . ") }, None))
            }
            (SteeringBackend::Map, Steering::Selector { selector, precedence, .. }) => {
                if *precedence >= MAX_PRECEDENCE_LEVELS {
                    return Err(SteeringError::Unsupported(format!(
                        "precedence {precedence} (at most {MAX_PRECEDENCE_LEVELS} levels)"
                    )));
                }
                let (v6, key) = selector_element(selector)?;
                let map = format!("sel{}_{precedence}", if v6 { 6 } else { 4 });
                Ok((ElementKey { map, key }, Some((v6, *precedence))))
            }
            (_, Steering::Selector { .. }) => {
                Err(SteeringError::Unsupported("selector entries need the map backend".to_owned()))
            }
        }
    }

    /// Maps and rules of selector levels not yet created, in increasing order (the chain
    /// looks them up in the order they are appended).
    fn level_definitions(&self, levels6: u32, levels4: u32) -> String {
        let table = &self.config.table;
        let mut out = String::new();
        for (v6, from, to) in [(true, self.levels6, levels6), (false, self.levels4, levels4)] {
            let (fam, s, d) = if v6 { (6, "ip6 saddr", "ip6 daddr") } else { (4, "ip saddr", "ip daddr") };
            for p in from..to {
                let _ = writeln!(
                    out,
                    "add map inet {table} sel{fam}_{p} {{ typeof {s} . {d} . meta l4proto . th sport . th dport : meta mark; flags interval; }}"
                );
                let _ = writeln!(
                    out,
                    "add rule inet {table} steer meta mark 0 meta mark set {s} . {d} . meta l4proto . th sport . th dport map @sel{fam}_{p}"
                );
            }
        }
        out
    }
}

impl Drop for FlowMap {
    fn drop(&mut self) {
        if !self.closed {
            if let Err(e) = self.teardown() {
                tracing::warn!(error = %e, "flow map cleanup");
            }
        }
    }
}

/// The calling thread's network namespace, as the inode of `/proc/thread-self/ns/net`.
fn current_namespace() -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/thread-self/ns/net").ok().map(|m| m.ino())
}

/// The transaction that (re)creates the table.
fn table_definition(config: &SteeringConfig) -> String {
    let t = &config.table;
    let mut out = format!("add table inet {t}\ndelete table inet {t}\ntable inet {t} {{\n");
    out.push_str("  set pools6 { type ipv6_addr; flags interval;");
    if !config.mobile_node_prefixes.is_empty() {
        let pools: Vec<String> = config.mobile_node_prefixes.iter().map(format_prefix).collect();
        let _ = write!(out, " auto-merge; elements = {{ {} }};", pools.join(", "));
    }
    out.push_str(" }\n");
    if config.mode == SteeringBackend::NfQueue {
        out.push_str("}\n");
        return out;
    }
    let mut rules = String::new();
    if config.mode == SteeringBackend::Learn {
        for (fam, s, d) in [(6, "ip6 saddr", "ip6 daddr"), (4, "ip saddr", "ip daddr")] {
            for (_, name) in PORT_PROTOCOLS {
                let _ = writeln!(out, "  map {name}{fam} {{ typeof {s} . {d} . th sport . th dport : meta mark; }}");
                let _ = writeln!(
                    rules,
                    "    meta mark 0 meta l4proto {name} meta mark set {s} . {d} . th sport . th dport map @{name}{fam}"
                );
            }
            let (echo, types, label) = if fam == 6 {
                ("icmpv6 id", "icmpv6 type { echo-request, echo-reply }", " . ip6 flowlabel")
            } else {
                ("icmp id", "icmp type { echo-request, echo-reply }", "")
            };
            let _ = writeln!(out, "  map echo{fam} {{ typeof {s} . {d} . {echo}{label} : meta mark; }}");
            let _ = writeln!(out, "  map other{fam} {{ typeof {s} . {d} . meta l4proto{label} : meta mark; }}");
            let _ = writeln!(rules, "    meta mark 0 {types} meta mark set {s} . {d} . {echo}{label} map @echo{fam}");
            let _ = writeln!(rules, "    meta mark 0 meta mark set {s} . {d} . meta l4proto{label} map @other{fam}");
        }
    }
    let _ =
        writeln!(out, "  chain steer {{\n    type filter hook prerouting priority {CHAIN_PRIORITY}; policy accept;");
    out.push_str("    ip6 daddr != @pools6 return\n");
    out.push_str(&rules);
    out.push_str("  }\n}\n");
    out
}

/// The map and key fields of a flow's element (see the module documentation for why the flow
/// label is left out of port flows' keys).
pub fn flow_element(key: &FlowKey) -> (String, Vec<String>) {
    let v6 = key.version == IpVersion::V6;
    let fam = if v6 { 6 } else { 4 };
    let addr = |a: Ipv6Addr| match (v6, a.to_ipv4_mapped()) {
        (false, Some(v4)) => v4.to_string(),
        _ => a.to_string(),
    };
    let (src, dst) = (addr(key.src), addr(key.dst));
    let label = key.flow_label & 0xF_FFFF;
    let port_map = PORT_PROTOCOLS.iter().find(|(p, _)| *p == key.protocol).map(|(_, n)| *n);
    match (key.ports, port_map) {
        (PortSource::Transport, Some(name)) => {
            (format!("{name}{fam}"), vec![src, dst, key.src_port.to_string(), key.dst_port.to_string()])
        }
        (PortSource::EchoId, _) => {
            let mut k = vec![src, dst, key.src_port.to_string()];
            if v6 {
                k.push(label.to_string());
            }
            (format!("echo{fam}"), k)
        }
        _ => {
            let mut k = vec![src, dst, key.protocol.to_string()];
            if v6 {
                k.push(label.to_string());
            }
            (format!("other{fam}"), k)
        }
    }
}

fn range<T: Copy + PartialOrd + ToString>(r: &Option<FieldRange<T>>, min: T, max: T) -> String {
    let (s, e) = match r {
        Some(r) => (r.start, r.last()),
        None => (min, max),
    };
    if s == e { s.to_string() } else { format!("{}-{}", s.to_string(), e.to_string()) }
}

/// The interval-map key of a selector: (IPv6?, key). RFC 6088 §3: each field is a range from
/// Start to End (or one value); an absent field matches everything.
fn selector_element(selector: &TrafficSelector) -> Result<(bool, String), SteeringError> {
    let unsupported = |what: &str| Err(SteeringError::Unsupported(format!("a traffic selector with {what}")));
    match selector {
        TrafficSelector::Ipv6(s) => {
            if s.flow_label.is_some() {
                return unsupported("a flow label range");
            }
            if s.traffic_class.is_some() {
                return unsupported("a traffic class range");
            }
            if s.spi.is_some() {
                return unsupported("an SPI range");
            }
            let key = [
                range(&s.src_addr, Ipv6Addr::UNSPECIFIED, Ipv6Addr::from(u128::MAX)),
                range(&s.dst_addr, Ipv6Addr::UNSPECIFIED, Ipv6Addr::from(u128::MAX)),
                range(&s.next_header, 0, u8::MAX),
                range(&s.src_port, 0, u16::MAX),
                range(&s.dst_port, 0, u16::MAX),
            ];
            Ok((true, key.join(" . ")))
        }
        TrafficSelector::Ipv4(s) => {
            if s.ds.is_some() {
                return unsupported("a DS range");
            }
            if s.spi.is_some() {
                return unsupported("an SPI range");
            }
            let key = [
                range(&s.src_addr, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST),
                range(&s.dst_addr, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST),
                range(&s.protocol, 0, u8::MAX),
                range(&s.src_port, 0, u16::MAX),
                range(&s.dst_port, 0, u16::MAX),
            ];
            Ok((false, key.join(" . ")))
        }
        TrafficSelector::Unknown { format, .. } => unsupported(&format!("unknown format {format}")),
    }
}

/// A prefix as nftables and ip6tables take it: host bits cleared.
fn format_prefix(p: &Prefix) -> String {
    let len = p.len.min(128);
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
    format!("{}/{len}", Ipv6Addr::from(u128::from(p.addr) & mask))
}

/// The ip6tables rule that queues a pool's unmarked packets (the kernel lacks nft `queue`).
fn queue_rule(prefix: &Prefix, queue: u16) -> Vec<String> {
    [
        "-t",
        "mangle",
        "PREROUTING",
        "-d",
        &format_prefix(prefix),
        "-m",
        "mark",
        "--mark",
        "0",
        "-j",
        "NFQUEUE",
        "--queue-num",
        &queue.to_string(),
        "--queue-bypass",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// Runs `ip6tables -w <table> <op> <chain> <rest>` (`spec` is `-t mangle CHAIN rest...`), in
/// the calling thread's network namespace (a child inherits it).
fn ip6tables(op: &str, spec: &[String]) -> Result<(), SteeringError> {
    let mut args: Vec<&str> = vec!["-w"];
    let (table, rest) = spec.split_at(spec.len().min(2));
    args.extend(table.iter().map(String::as_str));
    args.push(op);
    args.extend(rest.iter().map(String::as_str));
    let out = Command::new("ip6tables").args(&args).output().map_err(|e| SteeringError::Iptables(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(SteeringError::Iptables(format!(
            "ip6tables {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim_end()
        )))
    }
}

/// Parses `list table` JSON output into map elements.
fn parse_elements(json: &str) -> Result<Vec<MapElement>, SteeringError> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| SteeringError::Parse(e.to_string()))?;
    let objects = value
        .get("nftables")
        .and_then(|v| v.as_array())
        .ok_or_else(|| SteeringError::Parse("no nftables array".to_owned()))?;
    let mut out = Vec::new();
    for map in objects.iter().filter_map(|o| o.get("map")) {
        let name = map.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_owned();
        for elem in map.get("elem").and_then(|e| e.as_array()).into_iter().flatten() {
            let (key, mark) = match elem.as_array().map(Vec::as_slice) {
                Some([k, m]) => (k, m),
                _ => return Err(SteeringError::Parse(format!("element {elem}"))),
            };
            let mark = mark
                .as_u64()
                .and_then(|m| u32::try_from(m).ok())
                .ok_or_else(|| SteeringError::Parse(format!("mark {mark}")))?;
            let key = match key.get("concat").and_then(|c| c.as_array()) {
                Some(parts) => parts.iter().map(json_field).collect::<Result<Vec<_>, _>>()?,
                None => vec![json_field(key)?],
            };
            out.push(MapElement { map: name.clone(), key, mark });
        }
    }
    out.sort();
    Ok(out)
}

fn json_field(v: &serde_json::Value) -> Result<String, SteeringError> {
    if let Some(s) = v.as_str() {
        return Ok(s.to_owned());
    }
    if let Some(n) = v.as_u64() {
        return Ok(n.to_string());
    }
    if let Some([a, b]) = v.get("range").and_then(|r| r.as_array()).map(Vec::as_slice) {
        return Ok(format!("{}-{}", json_field(a)?, json_field(b)?));
    }
    if let Some(p) = v.get("prefix") {
        if let (Some(a), Some(l)) = (p.get("addr"), p.get("len").and_then(|l| l.as_u64())) {
            return Ok(format!("{}/{l}", json_field(a)?));
        }
    }
    Err(SteeringError::Parse(format!("key field {v}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_lose_host_bits() {
        let p = Prefix { addr: "2001:db8:1::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED), len: 48 };
        assert_eq!(format_prefix(&p), "2001:db8:1::/48");
    }

    #[test]
    fn flow_elements_by_kind() {
        let (a, b) = (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2));
        let udp = FlowKey::v6(a, b, protocol::UDP, Some((1000, 2000)), 0x12345);
        assert_eq!(
            flow_element(&udp),
            ("udp6".to_owned(), vec![a.to_string(), b.to_string(), "1000".into(), "2000".into()])
        );
        let esp = FlowKey::v6(a, b, protocol::ESP, None, 7);
        assert_eq!(flow_element(&esp).0, "other6");
        let v4 = FlowKey::v4(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 2), protocol::TCP, Some((1, 2)));
        assert_eq!(flow_element(&v4).1[0], "192.0.2.1");
    }

    #[test]
    fn parses_listing() {
        let json = r#"{"nftables": [{"metainfo": {}}, {"map": {"family": "inet", "name": "sel6_0", "table": "pmip6",
            "elem": [[{"concat": [{"range": ["::", "ffff::"]}, {"prefix": {"addr": "2001:db8::", "len": 64}}, 17, 5, 6]}, 9]]}}]}"#;
        let e = parse_elements(json).unwrap_or_default();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].key, vec!["::-ffff::", "2001:db8::/64", "17", "5", "6"]);
        assert_eq!(e[0].mark, 9);
    }
}
