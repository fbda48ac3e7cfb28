//! The flow table (draft §5.3.1: "A data structure stores the active flows and the associated
//! identifiers"): active flows keyed by their 6-tuple, each with its flow identifier, owning
//! mobile node, route, the rule that placed it, counters and times.
//!
//! ```text
//!   by_key: FlowKey ──► (slot, FID, route,   one probe per packet (fixed-seed foldhash): the
//!                        packets, bytes,      verdict and the counters live in the bucket, so
//!                        last seen)           a packet touches no other memory
//!   per_mn: MN ──► { FID ──► slot }       the MN's flows, and its FID allocator
//!   slots[slot] = { key, MN, FID, route, decision, first seen }
//!   deadlines: FIFO of (deadline, slot, generation)   lazily re-armed and lazily cleaned
//! ```
//!
//! **Flow identifiers.** The draft's "flow identifier that univocally identifies the stream" is
//! kept as the RFC 6089 FID: 16 bits, never 0 (RFC 6089 §4.2: FID 0 is reserved), unique among
//! the *live flows of one mobile node* — the scope in which RFC 6089/7864 signalling names a
//! flow (a Flow Identification option travels with the MN-ID). A table-wide 16-bit FID would cap
//! an LMA at 65,535 flows; so inside the table a flow is named by a [`FlowHandle`] (slot and
//! generation, never reused while a stale copy could be held), and by (MN, FID) outside. FIDs
//! are allocated round-robin per MN, so a freed FID is not reused at once.
//!
//! **Bounded memory.** At most `capacity` flows, and at most `per_mn_limit` per mobile node (at
//! most 65,535, the FID space); an insert beyond either is refused, counted, and the packet
//! follows the base route.
//!
//! **Idle expiry.** Every flow has the same idle timeout, so deadlines are armed in time order
//! and a FIFO holds them (O(1), no ordered set). A packet only updates `last_seen`; when a
//! flow's deadline reaches the front, a flow seen since is re-armed at `last_seen + idle` (to the
//! back), others expire. A removed flow's entry is skipped when it reaches the front (its
//! generation changed), and the queue is compacted when stale entries outnumber live flows, so
//! it never holds more than about twice the table. A flow never expires early; with a clock that
//! steps back, one may expire late. The per-packet path stays a hash probe and three stores.

use core::fmt;
use std::collections::{HashMap, VecDeque};

use foldhash::fast::FixedState;

use super::classify::FlowKey;
use super::policy::{Decision, Route};
use crate::common::Now;

type Nanos = u64;

fn nanos(now: Now) -> Nanos {
    u64::try_from(now.as_nanos()).unwrap_or(u64::MAX)
}

/// Names one flow of the table; a removed flow's handle never reaches a newer flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FlowHandle {
    index: u32,
    generation: u32,
}

impl fmt::Display for FlowHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "f{}.{}", self.index, self.generation)
    }
}

/// One active flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowEntry {
    /// The 6-tuple.
    pub key: FlowKey,
    /// Traffic class of the first packet (what a policy matched on).
    pub traffic_class: u8,
    /// SPI of the first packet, if any.
    pub spi: Option<u32>,
    /// The RFC 6089 FID, unique among the owner's live flows, never 0.
    pub fid: u16,
    /// Where its packets go now.
    pub route: Route,
    /// The decision that put it there.
    pub decision: Decision,
    pub(crate) mn: u32,
    first_seen: Nanos,
    armed: Nanos,
}

impl FlowEntry {
    /// When the first packet was seen.
    pub fn first_seen(&self) -> Now {
        Now::from_nanos(self.first_seen)
    }
}

/// A flow's counters ([`FlowTable::counters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowCounters {
    /// Packets seen.
    pub packets: u64,
    /// Octets seen (as the IP headers declare them).
    pub bytes: u64,
    /// When the last packet was seen.
    pub last_seen: Now,
}

/// Why a new flow was not entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Refusal {
    /// The table holds `capacity` flows.
    TableFull,
    /// The mobile node has `per_mn_limit` flows.
    MobileNodeLimit,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TableFull => f.write_str("flow table full"),
            Self::MobileNodeLimit => f.write_str("mobile node has its maximum number of flows"),
        }
    }
}

/// Room made for a mobile node's flows when its first flow arrives.
const MN_FLOWS_RESERVED: usize = 16;

#[derive(Debug, Clone, Default)]
struct MnFlows {
    by_fid: HashMap<u16, u32, FixedState>,
    next_fid: u16,
}

/// What a packet needs, kept in the hash map's bucket so that it costs one probe: the verdict
/// and the counters. (With the counters in the slot, a packet of one of 10,000 flows cost a
/// second cache miss: 62 ns against 44 ns here.)
#[derive(Debug, Clone, Copy)]
struct Hot {
    packets: u64,
    bytes: u64,
    last_seen: Nanos,
    index: u32,
    generation: u32,
    fid: u16,
    route: Route,
}

#[derive(Debug, Clone)]
struct Slot {
    generation: u32,
    entry: Option<FlowEntry>,
}

/// What a new flow starts with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewFlow {
    pub(crate) key: FlowKey,
    pub(crate) traffic_class: u8,
    pub(crate) spi: Option<u32>,
    pub(crate) length: u32,
    pub(crate) mn: u32,
    pub(crate) route: Route,
    pub(crate) decision: Decision,
}

/// The active flows.
#[derive(Debug, Clone)]
pub struct FlowTable {
    by_key: HashMap<FlowKey, Hot, FixedState>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    per_mn: HashMap<u32, MnFlows, FixedState>,
    deadlines: VecDeque<(Nanos, u32, u32)>,
    capacity: usize,
    per_mn_limit: usize,
    idle: Nanos,
}

impl FlowTable {
    /// An empty table of at most `capacity` flows, `per_mn_limit` per mobile node (capped at
    /// 65,535), expiring flows idle for `idle`.
    pub fn new(capacity: usize, per_mn_limit: usize, idle: Now) -> Self {
        Self {
            by_key: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            per_mn: HashMap::default(),
            deadlines: VecDeque::new(),
            capacity,
            per_mn_limit: per_mn_limit.min(usize::from(u16::MAX)),
            idle: nanos(idle).max(1),
        }
    }

    /// Reserves room for `flows` flows (at most the capacity) in every per-flow structure.
    pub fn reserve(&mut self, flows: usize) {
        let flows = flows.min(self.capacity).saturating_sub(self.by_key.len());
        self.by_key.reserve(flows);
        self.slots.reserve(flows);
        self.free.reserve(flows);
        self.deadlines.reserve(flows);
    }

    /// Flows in the table.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The flow of `key`.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<FlowHandle> {
        let index = self.by_key.get(key)?.index;
        let slot = self.slots.get(index as usize)?;
        Some(FlowHandle { index, generation: slot.generation })
    }

    /// A flow by handle.
    pub fn get(&self, handle: FlowHandle) -> Option<&FlowEntry> {
        let slot = self.slots.get(handle.index as usize)?;
        if slot.generation != handle.generation {
            return None;
        }
        slot.entry.as_ref()
    }

    pub(crate) fn get_mut(&mut self, handle: FlowHandle) -> Option<&mut FlowEntry> {
        let slot = self.slots.get_mut(handle.index as usize)?;
        if slot.generation != handle.generation {
            return None;
        }
        slot.entry.as_mut()
    }

    /// Counts a packet of an existing flow: the per-packet path.
    #[inline]
    pub(crate) fn hit(&mut self, key: &FlowKey, now: Now, length: u32) -> Option<(FlowHandle, u16, Route)> {
        let hot = self.by_key.get_mut(key)?;
        hot.packets += 1;
        hot.bytes += u64::from(length);
        hot.last_seen = nanos(now);
        Some((FlowHandle { index: hot.index, generation: hot.generation }, hot.fid, hot.route))
    }

    /// A flow's counters.
    pub fn counters(&self, handle: FlowHandle) -> Option<FlowCounters> {
        let entry = self.get(handle)?;
        let hot = self.by_key.get(&entry.key)?;
        Some(FlowCounters { packets: hot.packets, bytes: hot.bytes, last_seen: Now::from_nanos(hot.last_seen) })
    }

    /// Sets a flow's route and the decision behind it.
    pub(crate) fn set_route(&mut self, handle: FlowHandle, decision: Decision) {
        let Some(e) = self.get_mut(handle) else { return };
        e.decision = decision;
        e.route = decision.route;
        let key = e.key;
        if let Some(hot) = self.by_key.get_mut(&key) {
            hot.route = decision.route;
        }
    }

    /// The flow of mobile node `mn` with `fid`.
    pub(crate) fn by_fid(&self, mn: u32, fid: u16) -> Option<FlowHandle> {
        let index = *self.per_mn.get(&mn)?.by_fid.get(&fid)?;
        let slot = self.slots.get(index as usize)?;
        Some(FlowHandle { index, generation: slot.generation })
    }

    /// The flows of mobile node `mn`, in FID order.
    pub(crate) fn flows_of(&self, mn: u32) -> Vec<FlowHandle> {
        let Some(flows) = self.per_mn.get(&mn) else {
            return Vec::new();
        };
        let mut v: Vec<(u16, u32)> = flows.by_fid.iter().map(|(f, i)| (*f, *i)).collect();
        v.sort_unstable();
        v.into_iter()
            .filter_map(|(_, index)| {
                let slot = self.slots.get(index as usize)?;
                Some(FlowHandle { index, generation: slot.generation })
            })
            .collect()
    }

    /// Every flow, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (FlowHandle, &FlowEntry)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.entry.as_ref().map(|e| (FlowHandle { index: i as u32, generation: s.generation }, e))
        })
    }

    /// Enters a new flow (its key must not be in the table).
    pub(crate) fn insert(&mut self, now: Now, new: NewFlow) -> Result<(FlowHandle, u16), Refusal> {
        if self.by_key.len() >= self.capacity {
            return Err(Refusal::TableFull);
        }
        let per_mn_limit = self.per_mn_limit;
        let flows = self.per_mn.entry(new.mn).or_insert_with(|| MnFlows {
            by_fid: HashMap::with_capacity_and_hasher(MN_FLOWS_RESERVED, FixedState::default()),
            next_fid: 0,
        });
        if flows.by_fid.len() >= per_mn_limit {
            if flows.by_fid.is_empty() {
                self.per_mn.remove(&new.mn);
            }
            return Err(Refusal::MobileNodeLimit);
        }
        // RFC 6089 §4.2: FID 0 is reserved. Round-robin from the last one given; fewer than
        // 65,535 live FIDs, so a free one is found.
        let mut fid = flows.next_fid.max(1);
        while flows.by_fid.contains_key(&fid) {
            fid = fid.checked_add(1).unwrap_or(1);
        }
        flows.next_fid = fid.checked_add(1).unwrap_or(1);
        let now = nanos(now);
        let entry = FlowEntry {
            key: new.key,
            traffic_class: new.traffic_class,
            spi: new.spi,
            fid,
            route: new.route,
            decision: new.decision,
            mn: new.mn,
            first_seen: now,
            armed: now.saturating_add(self.idle),
        };
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot { generation: 0, entry: None });
                (self.slots.len() - 1) as u32
            }
        };
        let Some(slot) = self.slots.get_mut(index as usize) else {
            return Err(Refusal::TableFull);
        };
        let armed = entry.armed;
        slot.entry = Some(entry);
        let handle = FlowHandle { index, generation: slot.generation };
        flows.by_fid.insert(fid, index);
        let hot = Hot {
            packets: 1,
            bytes: u64::from(new.length),
            last_seen: now,
            index,
            generation: handle.generation,
            fid,
            route: new.route,
        };
        self.by_key.insert(new.key, hot);
        self.deadlines.push_back((armed, index, handle.generation));
        Ok((handle, fid))
    }

    /// Removes a flow.
    pub(crate) fn remove(&mut self, handle: FlowHandle) -> Option<FlowEntry> {
        let slot = self.slots.get_mut(handle.index as usize)?;
        if slot.generation != handle.generation {
            return None;
        }
        let entry = slot.entry.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(handle.index);
        self.by_key.remove(&entry.key);
        if self.deadlines.len() > 2 * self.by_key.len() + 64 {
            let slots = &self.slots;
            self.deadlines.retain(|&(_, i, g)| slots.get(i as usize).is_some_and(|s| s.generation == g));
        }
        // The MN's FID cursor stays (round-robin goes on) until the MN is forgotten.
        if let Some(flows) = self.per_mn.get_mut(&entry.mn) {
            flows.by_fid.remove(&entry.fid);
        }
        Some(entry)
    }

    /// Forgets a mobile node's FID state; its flows must be removed first.
    pub(crate) fn forget_mobile_node(&mut self, mn: u32) {
        if self.per_mn.get(&mn).is_some_and(|f| f.by_fid.is_empty()) {
            self.per_mn.remove(&mn);
        }
    }

    /// The earliest idle deadline (possibly early: a flow seen since is re-armed, not expired).
    pub fn next_deadline(&self) -> Option<Now> {
        self.deadlines.front().map(|(d, _, _)| Now::from_nanos(*d))
    }

    /// Removes and returns one flow idle at `now`, re-arming those seen since their deadline.
    pub(crate) fn pop_idle(&mut self, now: Now) -> Option<(FlowHandle, FlowEntry)> {
        let now = nanos(now);
        loop {
            let &(deadline, index, generation) = self.deadlines.front()?;
            if deadline > now {
                return None;
            }
            self.deadlines.pop_front();
            let Some(slot) = self.slots.get_mut(index as usize) else {
                continue;
            };
            if slot.generation != generation {
                continue;
            }
            let Some(entry) = slot.entry.as_mut() else {
                continue;
            };
            let last_seen = self.by_key.get(&entry.key).map_or(0, |hot| hot.last_seen);
            let due = last_seen.saturating_add(self.idle);
            if due > now {
                entry.armed = due;
                self.deadlines.push_back((due, index, generation));
                continue;
            }
            let handle = FlowHandle { index, generation };
            return self.remove(handle).map(|e| (handle, e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::classify::FlowKey;
    use core::net::Ipv6Addr;
    use core::time::Duration;

    fn key(port: u16) -> FlowKey {
        FlowKey::v6(Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED, 17, Some((port, 53)), 0)
    }

    fn new(port: u16, mn: u32) -> NewFlow {
        NewFlow {
            key: key(port),
            traffic_class: 0,
            spi: None,
            length: 100,
            mn,
            route: Route::PrefixRoute,
            decision: Decision::DEFAULT,
        }
    }

    #[test]
    fn fids_are_per_mobile_node_nonzero_and_not_reused_at_once() {
        let mut t = FlowTable::new(10, 3, Duration::from_secs(10));
        let (h1, f1) = t.insert(Duration::ZERO, new(1, 0)).unwrap();
        let (_, f2) = t.insert(Duration::ZERO, new(2, 0)).unwrap();
        let (_, g1) = t.insert(Duration::ZERO, new(3, 1)).unwrap();
        assert_eq!((f1, f2, g1), (1, 2, 1));
        t.remove(h1).unwrap();
        let (_, f3) = t.insert(Duration::ZERO, new(4, 0)).unwrap();
        assert_eq!(f3, 3, "round-robin: FID 1 is not handed out again at once");
        t.insert(Duration::ZERO, new(5, 0)).unwrap();
        assert_eq!(t.insert(Duration::ZERO, new(6, 0)), Err(Refusal::MobileNodeLimit));
        assert!(t.get(h1).is_none(), "stale handle");
    }

    #[test]
    fn fid_wraps_past_65535_skipping_zero_and_live_ones() {
        let mut t = FlowTable::new(10, 10, Duration::from_secs(10));
        t.per_mn.entry(0).or_default().next_fid = u16::MAX;
        let (_, a) = t.insert(Duration::ZERO, new(1, 0)).unwrap();
        let (_, b) = t.insert(Duration::ZERO, new(2, 0)).unwrap();
        assert_eq!((a, b), (u16::MAX, 1));
    }

    #[test]
    fn capacity_is_a_hard_bound() {
        let mut t = FlowTable::new(2, 100, Duration::from_secs(10));
        t.insert(Duration::ZERO, new(1, 0)).unwrap();
        t.insert(Duration::ZERO, new(2, 1)).unwrap();
        assert_eq!(t.insert(Duration::ZERO, new(3, 2)), Err(Refusal::TableFull));
        assert_eq!(t.len(), 2);
        assert!(!t.per_mn.contains_key(&2));
    }

    #[test]
    fn idle_flows_expire_and_active_ones_are_rearmed() {
        let s = Duration::from_secs;
        let mut t = FlowTable::new(10, 10, s(10));
        t.insert(s(0), new(1, 0)).unwrap();
        t.insert(s(0), new(2, 0)).unwrap();
        assert!(t.hit(&key(2), s(8), 100).is_some());
        assert_eq!(t.next_deadline(), Some(s(10)));
        let (_, gone) = t.pop_idle(s(10)).unwrap();
        assert_eq!(gone.key, key(1));
        assert!(t.pop_idle(s(10)).is_none(), "flow 2 re-armed at 18 s");
        assert_eq!(t.next_deadline(), Some(s(18)));
        let h = t.lookup(&key(2)).unwrap();
        let c = t.counters(h).unwrap();
        assert_eq!((c.packets, c.bytes, c.last_seen), (2, 200, s(8)));
        t.pop_idle(s(18)).unwrap();
        assert!(t.is_empty());
    }
}
