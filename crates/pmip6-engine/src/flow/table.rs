//! The flow table (draft §5.3.1: "A data structure stores the active flows and the associated
//! identifiers"): active flows keyed by their 6-tuple, each with its flow identifier, owning
//! mobile node, route, the rule that placed it, counters and times.
//!
//! ```text
//!   by_key: packed 6-tuple ──► (slot, FID,   one probe per packet (fixed-seed foldhash): the
//!             route id, packets, bytes,      verdict and the counters live in the bucket, so
//!             last seen)                     a packet touches no other memory
//!   per_mn[MN] = { slots, next FID,       the MN's flows (a list: one store per insert), its
//!                  FID ──► slot }         FID allocator, and a FID index once its FIDs wrapped
//!   slots[slot] = { key, MN, FID, decision, first seen, position in its MN's list }
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
use core::hash::BuildHasher;
use std::collections::{HashMap, VecDeque};

use foldhash::fast::FixedState;
use hashbrown::HashTable;

use super::classify::{FlowKey, fold_key};
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
    /// The decision that put it where its packets go now.
    pub decision: Decision,
    pub(crate) mn: u32,
    first_seen: Nanos,
    armed: Nanos,
}

impl FlowEntry {
    /// Where its packets go now.
    pub fn route(&self) -> Route {
        self.decision.route
    }

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

/// Room a mobile node's flow list keeps when its flows go (4 KiB).
const MN_MEMBERS_KEPT: usize = 1024;

#[derive(Debug, Clone, Default)]
struct MnFlows {
    /// The slots of the mobile node's flows, in no order; a flow's slot knows its position.
    members: Vec<u32>,
    next_fid: u16,
    /// FID → slot, kept from the first wrap of `next_fid` on. Until then every FID from
    /// `next_fid` up is free, so an insert needs no index, and a lookup by FID (a control
    /// operation) scans `members`.
    fids: Option<HashMap<u16, u32, FixedState>>,
}

/// What a packet needs, kept in the hash table's bucket with its key so that it costs one
/// probe: the verdict and the counters. (With the counters in the slot, a packet of one of
/// 10,000 flows cost a second cache miss: 62 ns against 44 ns here.) A bucket is one cache
/// line: the key packed into three words, the route interned, and the counters' low halves
/// (their high halves live in the slot and are touched once per 2^32 packets or octets). At
/// 100,000 flows the table outgrows the caches and a new flow's insert is bound by the memory
/// it touches: 112-octet buckets took about 250 ns an insert there, 80-octet ones 210, these
/// 190, in alternating runs on one machine.
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
struct Hot {
    src: u128,
    dst: u128,
    /// [`FlowKey::packed_tail`].
    tail: u64,
    last_seen: Nanos,
    packets: u32,
    bytes: u32,
    index: u32,
    route: RouteId,
    fid: u16,
}

impl Hot {
    #[inline]
    fn is(&self, key: &FlowKey) -> bool {
        self.src == u128::from(key.src) && self.dst == u128::from(key.dst) && self.tail == key.packed_tail()
    }

    #[inline]
    fn fold(&self) -> u64 {
        fold_key(self.src, self.dst, self.tail)
    }
}

// One cache line, exactly.
const _: () = assert!(size_of::<Hot>() == 64);

/// An interned [`Route`]: an index into [`FlowTable::routes`]; 0 is the base route.
type RouteId = u16;

const BASE_ROUTE: RouteId = 0;

#[derive(Debug, Clone)]
struct Slot {
    generation: u32,
    /// Position in its mobile node's `members`.
    member: u32,
    /// The high halves of the flow's packet and octet counters.
    packets_high: u32,
    bytes_high: u32,
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
    pub(crate) decision: Decision,
}

/// A key's hash in the table ([`FlowTable::hash`]): computed once per packet, used by the
/// probe of an existing flow and by the insert of a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHash(u64);

/// The active flows.
#[derive(Debug, Clone)]
pub struct FlowTable {
    by_key: HashTable<Hot>,
    hasher: FixedState,
    /// The routes live flows take, indexed by [`RouteId`], with the number of flows on each
    /// (one per MAG carrying flows, and the base route, always id 0); the reverse; and ids
    /// free for reuse.
    routes: Vec<(Route, u32)>,
    route_ids: HashMap<Route, RouteId, FixedState>,
    free_routes: Vec<RouteId>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Indexed by the mobile node's number (dense: [`super::FlowSteering`] reuses freed ones).
    per_mn: Vec<MnFlows>,
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
            by_key: HashTable::new(),
            hasher: FixedState::default(),
            routes: vec![(Route::PrefixRoute, 0)],
            route_ids: [(Route::PrefixRoute, BASE_ROUTE)].into_iter().collect(),
            free_routes: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            per_mn: Vec::new(),
            deadlines: VecDeque::new(),
            capacity,
            per_mn_limit: per_mn_limit.min(usize::from(u16::MAX)),
            idle: nanos(idle).max(1),
        }
    }

    /// Reserves room for `flows` flows (at most the capacity) in every per-flow structure.
    pub fn reserve(&mut self, flows: usize) {
        let flows = flows.min(self.capacity).saturating_sub(self.by_key.len());
        let hasher = &self.hasher;
        self.by_key.reserve(flows, |h| hasher.hash_one(h.fold()));
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

    /// `key`'s hash.
    #[inline]
    pub fn hash(&self, key: &FlowKey) -> KeyHash {
        KeyHash(self.hasher.hash_one(fold_key(u128::from(key.src), u128::from(key.dst), key.packed_tail())))
    }

    #[inline]
    fn hot(&self, key: &FlowKey) -> Option<&Hot> {
        self.by_key.find(self.hash(key).0, |h| h.is(key))
    }

    /// Takes a reference to `route`'s id; `None` when 65,535 other routes are in use (the data
    /// plane has far fewer tunnels: [`Route::PrefixRoute`] is then taken instead).
    fn intern(&mut self, route: Route) -> Option<RouteId> {
        let id = match self.route_ids.get(&route) {
            Some(id) => *id,
            None => {
                let id = match self.free_routes.pop() {
                    Some(id) => id,
                    None => {
                        let id = RouteId::try_from(self.routes.len()).ok()?;
                        self.routes.push((route, 0));
                        id
                    }
                };
                if let Some(r) = self.routes.get_mut(id as usize) {
                    *r = (route, 0);
                }
                self.route_ids.insert(route, id);
                id
            }
        };
        if let Some((_, users)) = self.routes.get_mut(id as usize) {
            *users += 1;
        }
        Some(id)
    }

    /// Drops a reference taken by [`FlowTable::intern`]; an id nobody uses is freed.
    fn release_route(&mut self, id: RouteId) {
        let Some((route, users)) = self.routes.get_mut(id as usize) else { return };
        *users = users.saturating_sub(1);
        if *users == 0 && id != BASE_ROUTE {
            let route = *route;
            self.route_ids.remove(&route);
            self.free_routes.push(id);
        }
    }

    /// Interns `decision`'s route, or falls back to the base route when no id is left.
    fn intern_decision(&mut self, decision: Decision) -> (RouteId, Decision) {
        match self.intern(decision.route) {
            Some(id) => (id, decision),
            None => {
                let id = self.intern(Route::PrefixRoute).unwrap_or(BASE_ROUTE);
                (id, Decision { route: Route::PrefixRoute, preferred: false, ..decision })
            }
        }
    }

    #[inline]
    fn route(&self, id: RouteId) -> Route {
        // Every id stored was returned by `intern`.
        self.routes.get(id as usize).map_or(Route::PrefixRoute, |r| r.0)
    }

    /// The flow of `key`.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<FlowHandle> {
        let index = self.hot(key)?.index;
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

    /// Counts a packet of an existing flow: the per-packet path. `hash` is `key`'s. Returns the
    /// flow's FID and route.
    #[inline]
    pub(crate) fn hit(&mut self, hash: KeyHash, key: &FlowKey, now: Now, length: u32) -> Option<(u16, Route)> {
        let hot = self.by_key.find_mut(hash.0, |h| h.is(key))?;
        let (packets, packets_carry) = hot.packets.overflowing_add(1);
        let (bytes, bytes_carry) = hot.bytes.overflowing_add(length);
        hot.packets = packets;
        hot.bytes = bytes;
        hot.last_seen = nanos(now);
        let (index, fid, route) = (hot.index, hot.fid, hot.route);
        if (packets_carry || bytes_carry)
            && let Some(slot) = self.slots.get_mut(index as usize)
        {
            slot.packets_high += u32::from(packets_carry);
            slot.bytes_high += u32::from(bytes_carry);
        }
        Some((fid, self.route(route)))
    }

    /// A flow's counters.
    pub fn counters(&self, handle: FlowHandle) -> Option<FlowCounters> {
        let entry = self.get(handle)?;
        let slot = self.slots.get(handle.index as usize)?;
        let hot = self.hot(&entry.key)?;
        Some(FlowCounters {
            packets: u64::from(slot.packets_high) << 32 | u64::from(hot.packets),
            bytes: u64::from(slot.bytes_high) << 32 | u64::from(hot.bytes),
            last_seen: Now::from_nanos(hot.last_seen),
        })
    }

    /// Sets a flow's route and the decision behind it; returns the decision taken, which is
    /// the base route when no route id is left.
    pub(crate) fn set_route(&mut self, handle: FlowHandle, decision: Decision) -> Decision {
        let Some(key) = self.get(handle).map(|e| e.key) else { return decision };
        let (route, decision) = self.intern_decision(decision);
        if let Some(e) = self.get_mut(handle) {
            e.decision = decision;
        }
        let hash = self.hash(&key).0;
        let old = self.by_key.find_mut(hash, |h| h.is(&key)).map(|hot| core::mem::replace(&mut hot.route, route));
        self.release_route(old.unwrap_or(route));
        decision
    }

    /// The flow of mobile node `mn` with `fid`.
    pub(crate) fn by_fid(&self, mn: u32, fid: u16) -> Option<FlowHandle> {
        let flows = self.per_mn.get(mn as usize)?;
        let index = match &flows.fids {
            Some(fids) => *fids.get(&fid)?,
            None => *flows
                .members
                .iter()
                .find(|&&i| self.slots.get(i as usize).and_then(|s| s.entry.as_ref()).is_some_and(|e| e.fid == fid))?,
        };
        let slot = self.slots.get(index as usize)?;
        Some(FlowHandle { index, generation: slot.generation })
    }

    /// The flows of mobile node `mn`, in FID order.
    pub(crate) fn flows_of(&self, mn: u32) -> Vec<FlowHandle> {
        let Some(flows) = self.per_mn.get(mn as usize) else {
            return Vec::new();
        };
        let mut v: Vec<(u16, u32)> =
            flows.members.iter().filter_map(|&i| Some((self.slots.get(i as usize)?.entry.as_ref()?.fid, i))).collect();
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

    /// Enters a new flow (its key must not be in the table); `hash` is its key's. Returns its
    /// handle, FID and the decision taken (the base route when no route id is left).
    pub(crate) fn insert(
        &mut self,
        now: Now,
        hash: KeyHash,
        new: NewFlow,
    ) -> Result<(FlowHandle, u16, Decision), Refusal> {
        if self.by_key.len() >= self.capacity {
            return Err(Refusal::TableFull);
        }
        let mn = new.mn as usize;
        // Checked before the route is interned, so that a refusal takes nothing.
        if self.per_mn.get(mn).is_some_and(|f| f.members.len() >= self.per_mn_limit) || self.per_mn_limit == 0 {
            return Err(Refusal::MobileNodeLimit);
        }
        let (route, decision) = self.intern_decision(new.decision);
        if mn >= self.per_mn.len() {
            self.per_mn.resize_with(mn + 1, MnFlows::default);
        }
        let Some(flows) = self.per_mn.get_mut(mn) else {
            return Err(Refusal::MobileNodeLimit);
        };
        if flows.members.capacity() == 0 {
            flows.members.reserve(MN_FLOWS_RESERVED);
        }
        // RFC 6089 §4.2: FID 0 is reserved. Round-robin from the last one given; fewer than
        // 65,535 live FIDs, so a free one is found (and before the first wrap, the next one is).
        let mut fid = flows.next_fid.max(1);
        if let Some(fids) = &flows.fids {
            while fids.contains_key(&fid) {
                fid = fid.checked_add(1).unwrap_or(1);
            }
        }
        flows.next_fid = fid.checked_add(1).unwrap_or(1);
        if fid == u16::MAX && flows.fids.is_none() {
            // The first wrap: from now on FIDs below `next_fid` may be live.
            let slots = &self.slots;
            let fids = flows
                .members
                .iter()
                .filter_map(|&i| Some((slots.get(i as usize)?.entry.as_ref()?.fid, i)))
                .collect::<HashMap<_, _, _>>();
            flows.fids = Some(fids);
        }
        let now = nanos(now);
        let entry = FlowEntry {
            key: new.key,
            traffic_class: new.traffic_class,
            spi: new.spi,
            fid,
            decision,
            mn: new.mn,
            first_seen: now,
            armed: now.saturating_add(self.idle),
        };
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot { generation: 0, member: 0, packets_high: 0, bytes_high: 0, entry: None });
                (self.slots.len() - 1) as u32
            }
        };
        let Some(slot) = self.slots.get_mut(index as usize) else {
            return Err(Refusal::TableFull);
        };
        let armed = entry.armed;
        slot.entry = Some(entry);
        slot.member = flows.members.len() as u32;
        slot.packets_high = 0;
        slot.bytes_high = 0;
        let handle = FlowHandle { index, generation: slot.generation };
        flows.members.push(index);
        if let Some(fids) = &mut flows.fids {
            fids.insert(fid, index);
        }
        let hot = Hot {
            src: u128::from(new.key.src),
            dst: u128::from(new.key.dst),
            tail: new.key.packed_tail(),
            last_seen: now,
            packets: 1,
            bytes: new.length,
            index,
            route,
            fid,
        };
        let hasher = &self.hasher;
        self.by_key.insert_unique(hash.0, hot, |h| hasher.hash_one(h.fold()));
        self.deadlines.push_back((armed, index, handle.generation));
        Ok((handle, fid, decision))
    }

    /// Removes a flow.
    pub(crate) fn remove(&mut self, handle: FlowHandle) -> Option<FlowEntry> {
        let slot = self.slots.get_mut(handle.index as usize)?;
        if slot.generation != handle.generation {
            return None;
        }
        let entry = slot.entry.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        let slot_member = slot.member;
        self.free.push(handle.index);
        let hash = self.hash(&entry.key).0;
        if let Ok(hot) = self.by_key.find_entry(hash, |h| h.is(&entry.key)) {
            let (hot, _) = hot.remove();
            self.release_route(hot.route);
        }
        if self.deadlines.len() > 2 * self.by_key.len() + 64 {
            let slots = &self.slots;
            self.deadlines.retain(|&(_, i, g)| slots.get(i as usize).is_some_and(|s| s.generation == g));
        }
        // The MN's FID cursor stays (round-robin goes on) until the MN is forgotten.
        if let Some(flows) = self.per_mn.get_mut(entry.mn as usize) {
            let position = slot_member as usize;
            if flows.members.get(position) == Some(&handle.index) {
                flows.members.swap_remove(position);
                if let Some(&moved) = flows.members.get(position) {
                    if let Some(s) = self.slots.get_mut(moved as usize) {
                        s.member = slot_member;
                    }
                }
            }
            // A list that held many flows gives most of its room back; small ones keep theirs,
            // so that a node whose flows come and go does not reallocate.
            let (len, room) = (flows.members.len(), flows.members.capacity());
            if room > MN_MEMBERS_KEPT && len < room / 8 {
                flows.members.shrink_to(2 * len);
            }
            if let Some(fids) = &mut flows.fids {
                fids.remove(&entry.fid);
            }
        }
        Some(entry)
    }

    /// Forgets a mobile node's FID state; its flows must be removed first.
    pub(crate) fn forget_mobile_node(&mut self, mn: u32) {
        if let Some(flows) = self.per_mn.get_mut(mn as usize)
            && flows.members.is_empty()
        {
            *flows = MnFlows::default();
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
            let Some(key) = self.get(FlowHandle { index, generation }).map(|e| e.key) else {
                continue;
            };
            let last_seen = self.hot(&key).map_or(0, |hot| hot.last_seen);
            let due = last_seen.saturating_add(self.idle);
            if due > now {
                if let Some(entry) = self.get_mut(FlowHandle { index, generation }) {
                    entry.armed = due;
                }
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
        NewFlow { key: key(port), traffic_class: 0, spi: None, length: 100, mn, decision: Decision::DEFAULT }
    }

    fn put(t: &mut FlowTable, now: Now, new: NewFlow) -> Result<(FlowHandle, u16), Refusal> {
        t.insert(now, t.hash(&new.key), new).map(|(h, f, _)| (h, f))
    }

    #[test]
    fn fids_are_per_mobile_node_nonzero_and_not_reused_at_once() {
        let mut t = FlowTable::new(10, 3, Duration::from_secs(10));
        let (h1, f1) = put(&mut t, Duration::ZERO, new(1, 0)).unwrap();
        let (_, f2) = put(&mut t, Duration::ZERO, new(2, 0)).unwrap();
        let (_, g1) = put(&mut t, Duration::ZERO, new(3, 1)).unwrap();
        assert_eq!((f1, f2, g1), (1, 2, 1));
        t.remove(h1).unwrap();
        let (_, f3) = put(&mut t, Duration::ZERO, new(4, 0)).unwrap();
        assert_eq!(f3, 3, "round-robin: FID 1 is not handed out again at once");
        put(&mut t, Duration::ZERO, new(5, 0)).unwrap();
        assert_eq!(put(&mut t, Duration::ZERO, new(6, 0)), Err(Refusal::MobileNodeLimit));
        assert!(t.get(h1).is_none(), "stale handle");
    }

    #[test]
    fn fid_wraps_past_65535_skipping_zero_and_live_ones() {
        let mut t = FlowTable::new(10, 10, Duration::from_secs(10));
        t.per_mn.resize_with(1, MnFlows::default);
        t.per_mn[0].next_fid = u16::MAX;
        let (_, a) = put(&mut t, Duration::ZERO, new(1, 0)).unwrap();
        let (_, b) = put(&mut t, Duration::ZERO, new(2, 0)).unwrap();
        assert_eq!((a, b), (u16::MAX, 1));
        // Past the wrap, FIDs still live are skipped.
        let (_, c) = put(&mut t, Duration::ZERO, new(3, 0)).unwrap();
        assert_eq!(c, 2);
        t.per_mn[0].next_fid = 1;
        let (_, d) = put(&mut t, Duration::ZERO, new(4, 0)).unwrap();
        assert_eq!(d, 3, "FIDs 1 and 2 are live");
    }

    #[test]
    fn capacity_is_a_hard_bound() {
        let mut t = FlowTable::new(2, 100, Duration::from_secs(10));
        put(&mut t, Duration::ZERO, new(1, 0)).unwrap();
        put(&mut t, Duration::ZERO, new(2, 1)).unwrap();
        assert_eq!(put(&mut t, Duration::ZERO, new(3, 2)), Err(Refusal::TableFull));
        assert_eq!(t.len(), 2);
        assert!(t.per_mn.get(2).is_none_or(|f| f.members.is_empty()));
    }

    #[test]
    fn idle_flows_expire_and_active_ones_are_rearmed() {
        let s = Duration::from_secs;
        let mut t = FlowTable::new(10, 10, s(10));
        put(&mut t, s(0), new(1, 0)).unwrap();
        put(&mut t, s(0), new(2, 0)).unwrap();
        assert!(t.hit(t.hash(&key(2)), &key(2), s(8), 100).is_some());
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

    #[test]
    fn counters_carry_into_their_high_halves() {
        let mut t = FlowTable::new(10, 10, Duration::from_secs(10));
        let (h, _) = put(&mut t, Duration::ZERO, new(1, 0)).unwrap();
        let hash = t.hash(&key(1)).0;
        let hot = t.by_key.find_mut(hash, |h| h.is(&key(1))).unwrap();
        hot.packets = u32::MAX;
        hot.bytes = u32::MAX - 10;
        t.hit(t.hash(&key(1)), &key(1), Duration::from_secs(1), 100).unwrap();
        let c = t.counters(h).unwrap();
        assert_eq!((c.packets, c.bytes), (1 << 32, (1 << 32) + 89));
        t.hit(t.hash(&key(1)), &key(1), Duration::from_secs(2), u32::MAX).unwrap();
        let c = t.counters(h).unwrap();
        assert_eq!((c.packets, c.bytes), ((1 << 32) + 1, (2 << 32) + 88));
        // A new flow in the same slot starts from zero.
        t.remove(h).unwrap();
        let (h, _) = put(&mut t, Duration::ZERO, new(2, 0)).unwrap();
        let c = t.counters(h).unwrap();
        assert_eq!((c.packets, c.bytes), (1, 100));
    }

    fn tunnel(i: u32) -> Route {
        Route::Tunnel(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i)))
    }

    #[test]
    fn route_ids_are_counted_reused_and_never_run_out_silently() {
        let n = usize::from(RouteId::MAX);
        let mut t = FlowTable::new(n + 10, 65_535, Duration::from_secs(10));
        let mut handles = Vec::new();
        // One flow per tunnel: ids 1..=65,535 (0 is the base route).
        for i in 0..n as u32 {
            let mut f = new(0, i % 1000);
            f.key.src_port = i as u16;
            f.key.dst_port = (i >> 16) as u16;
            f.decision = Decision { route: tunnel(i), rule: None, preferred: true };
            let (h, _, d) = t.insert(Duration::ZERO, t.hash(&f.key), f).unwrap();
            assert_eq!(d.route, tunnel(i));
            handles.push(h);
        }
        // No id left: the next route falls back to the base route, on a fallback.
        let mut f = new(0, 5);
        f.key.dst_port = 999;
        f.decision = Decision { route: tunnel(70_000), rule: None, preferred: true };
        let (extra, _, d) = t.insert(Duration::ZERO, t.hash(&f.key), f).unwrap();
        assert_eq!((d.route, d.preferred), (Route::PrefixRoute, false));
        assert_eq!(t.get(extra).unwrap().route(), Route::PrefixRoute);
        // A route's last flow frees its id, and the next route takes it.
        t.remove(handles[7]).unwrap();
        let d = t.set_route(extra, Decision { route: tunnel(70_000), rule: None, preferred: true });
        assert_eq!(d.route, tunnel(70_000));
        let (_, route) = t.hit(t.hash(&f.key), &f.key, Duration::ZERO, 1).unwrap();
        assert_eq!(route, tunnel(70_000));
        // Moving a flow onto a route in use shares its id and frees the old one.
        let d = t.set_route(handles[8], Decision { route: tunnel(9), rule: None, preferred: true });
        assert_eq!(d.route, tunnel(9));
        assert!(!t.route_ids.contains_key(&tunnel(8)));
        assert_eq!(t.routes[usize::from(t.route_ids[&tunnel(9)])].1, 2);
        for h in handles.iter().skip(8) {
            t.remove(*h).unwrap();
        }
        assert_eq!(t.route_ids.len(), 1 + 7 + 1, "the base route, flows 0..7 and 70,000");
    }

    proptest::proptest! {
        /// Inserts and removals in any order, across FID wraps: each mobile node's flows, FIDs
        /// and FID lookups always agree with a model.
        #[test]
        fn mobile_node_lists_and_fid_lookups_follow_a_model(
            ops in proptest::collection::vec((0u8..4, 0u32..3, 0usize..64), 1..300),
        ) {
            use std::collections::BTreeMap;
            let mut t = FlowTable::new(1_000, 40, Duration::from_secs(10));
            // (mn, fid) -> port of the flow
            let mut model: BTreeMap<(u32, u16), u16> = BTreeMap::new();
            let mut port = 0u16;
            for (op, mn, pick) in ops {
                match op {
                    0 | 1 => {
                        port += 1;
                        match put(&mut t, Duration::ZERO, new(port, mn)) {
                            Ok((_, fid)) => {
                                proptest::prop_assert!(fid != 0);
                                proptest::prop_assert!(model.insert((mn, fid), port).is_none(), "FID {} live twice", fid);
                            }
                            Err(Refusal::MobileNodeLimit) => {
                                proptest::prop_assert_eq!(model.keys().filter(|(m, _)| *m == mn).count(), 40);
                            }
                            Err(e) => proptest::prop_assert!(false, "{:?}", e),
                        }
                    }
                    2 => {
                        let live: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
                        if let Some(&((m, fid), p)) = live.get(pick % live.len().max(1)) {
                            let h = t.lookup(&key(p)).unwrap();
                            let e = t.remove(h).unwrap();
                            proptest::prop_assert_eq!((e.mn, e.fid), (m, fid));
                            model.remove(&(m, fid));
                        }
                    }
                    _ => {
                        // Jump the MN's FID cursor close to the wrap (forward only, as the
                        // cursor moves, until the index exists).
                        if let Some(f) = t.per_mn.get_mut(mn as usize) {
                            let to = u16::MAX - (pick as u16 % 8);
                            if f.fids.is_some() || to > f.next_fid {
                                f.next_fid = to;
                            }
                        }
                    }
                }
                for m in 0..3u32 {
                    let want: Vec<u16> = model.keys().filter(|(x, _)| *x == m).map(|(_, f)| *f).collect();
                    let got: Vec<u16> = t.flows_of(m).iter().map(|h| t.get(*h).unwrap().fid).collect();
                    proptest::prop_assert_eq!(&got, &want);
                    for fid in &want {
                        let h = t.by_fid(m, *fid).unwrap();
                        let e = t.get(h).unwrap();
                        proptest::prop_assert_eq!((e.mn, e.fid, e.key), (m, *fid, key(model[&(m, *fid)])));
                    }
                }
            }
        }
    }
}
