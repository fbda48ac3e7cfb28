//! The binding cache (RFC 5213 §5.1) and the draft's per-mobile-node grouping (draft §5.2.2).
//!
//! One entry per mobility session, that is per (mobile node, interface). Each entry holds the
//! RFC 5213 §5.1 fields: the MN's home network prefixes, the MAG link-local address, and one
//! *attachment* per Proxy-CoA with the MN-LL-ID, access technology type, lifetime, and the last
//! accepted timestamp and sequence number. Outside the virtual-interface mode an entry has
//! exactly one attachment; in that mode (draft §5.4) an entry may have several, one per
//! physical interface of the MN, all sharing the entry's prefixes.
//!
//! ```text
//!   by_mn: MN-ID ──► group ──► [b1, b2]          (draft §5.2.2: all sessions of one MN)
//!   by_prefix: pref1 ──► b1, pref2 ──► b2          (RFC 5213 §5.4.1.1)
//!   by_link: (group, ATT, MN-LL-ID) ──► b1         (RFC 5213 §5.4.1.2)
//!   slots[b1] = { group, prefixes, state, attachments: [{Proxy-CoA MAG1, ATT, LL-ID, ...}] }
//! ```
//!
//! Every lookup above is one hash-map probe, and from any entry its group lists the MN's other
//! sessions: the draft's "pointers both ways". Entries live in a slab addressed by
//! [`BindingId`] (index and generation, so a stale id held by a timer never reaches a newer
//! entry). The MN-ID is kept once per mobile node, in its group; prefixes and attachments are
//! stored inline for the common single-prefix, single-attachment case, so that an entry with
//! its index slots stays well under 512 bytes.
//!
//! The cache only stores and indexes. Deciding what a PBU does to it is the engine's job
//! ([`super::Lma`]); the public API here is the read-only view the control API and the tests
//! use.

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};
use std::collections::BTreeSet;

use pmip6_wire::{AccessTechnologyType, MnIdentifier, Prefix, Timestamp};

use super::hash::Map;
use crate::common::Now;

/// Nanoseconds since the epoch: the cache's compact form of [`Now`].
pub(crate) type Nanos = u64;

/// [`Now`] as nanoseconds, saturating (in the year 2554).
pub(crate) fn nanos(now: Now) -> Nanos {
    u64::try_from(now.as_nanos()).unwrap_or(u64::MAX)
}

/// Nanoseconds back to [`Now`].
pub(crate) fn from_nanos(n: Nanos) -> Now {
    Now::from_nanos(n)
}

/// Names one binding cache entry. Ids are not reused for another entry while anyone could
/// still hold the old one: a slot's generation changes when its entry is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct BindingId {
    index: u32,
    generation: u32,
}

impl fmt::Display for BindingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}.{}", self.index, self.generation)
    }
}

/// Whether an entry carries traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum BindingState {
    /// Registered: its prefixes are routed into the tunnel of its (most recent) attachment.
    Active,
    /// De-registered by its MAG (RFC 5213 §5.3.5): no routes; kept for
    /// MinDelayBeforeBCEDelete so that a handoff can still find it, then deleted.
    Deregistered,
}

/// A Mobile Node Link-layer Identifier (RFC 5213 §8.6), stored inline up to 14 octets (a MAC
/// address, an EUI-64) and on the heap beyond.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LinkLayerId(LliRepr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum LliRepr {
    Inline {
        len: u8,
        bytes: [u8; 14],
    },
    // A thin pointer keeps the identifier at 16 bytes; long identifiers are rare.
    #[allow(clippy::box_collection)]
    Heap(Box<Vec<u8>>),
}

impl LinkLayerId {
    /// From the identifier octets; `None` when empty (RFC 5213 §8.6 has no empty identifier).
    pub fn new(bytes: &[u8]) -> Option<Self> {
        match bytes.len() {
            0 => None,
            len @ 1..=14 => {
                let mut inline = [0u8; 14];
                inline[..len].copy_from_slice(bytes);
                Some(Self(LliRepr::Inline { len: len as u8, bytes: inline }))
            }
            _ => Some(Self(LliRepr::Heap(Box::new(bytes.to_vec())))),
        }
    }

    /// The identifier octets.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            LliRepr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            LliRepr::Heap(v) => v,
        }
    }
}

impl fmt::Debug for LinkLayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.as_bytes().iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The home network prefixes of an entry, inline when there is one.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PrefixList(PrefixRepr);

#[derive(Clone, PartialEq, Eq)]
enum PrefixRepr {
    One(Prefix),
    Many(Box<[Prefix]>),
}

impl PrefixList {
    pub(crate) fn new(prefixes: &[Prefix]) -> Self {
        match prefixes {
            [one] => Self(PrefixRepr::One(*one)),
            many => Self(PrefixRepr::Many(many.into())),
        }
    }

    pub(crate) fn as_slice(&self) -> &[Prefix] {
        match &self.0 {
            PrefixRepr::One(p) => core::slice::from_ref(p),
            PrefixRepr::Many(v) => v,
        }
    }

    pub(crate) fn empty() -> Self {
        Self(PrefixRepr::Many(Box::new([])))
    }
}

impl fmt::Debug for PrefixList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// Whether `a` and `b` hold the same prefixes, ignoring order and repetition.
pub(crate) fn same_prefix_set(a: &[Prefix], b: &[Prefix]) -> bool {
    a.iter().all(|p| b.contains(p)) && b.iter().all(|p| a.contains(p))
}

const MUHO: u8 = 0x01;
const HAS_TIMESTAMP: u8 = 0x02;
const HAS_SEQUENCE: u8 = 0x04;

/// One Proxy-CoA of an entry: where the MN's interface is attached (RFC 5213 §5.1 fields of a
/// binding cache entry that describe the attachment).
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    pub(crate) proxy_coa: Ipv6Addr,
    pub(crate) mn_ll_id: Option<LinkLayerId>,
    pub(crate) expires: Nanos,
    pub(crate) attached_at: Nanos,
    pub(crate) last_timestamp: u64,
    pub(crate) last_sequence: u16,
    pub(crate) lifetime: u16,
    pub(crate) att: AccessTechnologyType,
    pub(crate) flags: u8,
}

impl Attachment {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        proxy_coa: Ipv6Addr,
        att: AccessTechnologyType,
        mn_ll_id: Option<LinkLayerId>,
        now: Now,
        expires: Now,
        lifetime: u16,
        muho: bool,
    ) -> Self {
        Self {
            proxy_coa,
            mn_ll_id,
            expires: nanos(expires),
            attached_at: nanos(now),
            last_timestamp: 0,
            last_sequence: 0,
            lifetime,
            att,
            flags: if muho { MUHO } else { 0 },
        }
    }

    /// The MAG's Proxy Care-of Address: the tunnel's far end.
    pub fn proxy_coa(&self) -> Ipv6Addr {
        self.proxy_coa
    }

    /// The Access Technology Type of the interface.
    pub fn access_technology(&self) -> AccessTechnologyType {
        self.att
    }

    /// The MN-LL-ID, if the MAG sent one.
    pub fn mn_link_layer_id(&self) -> Option<&[u8]> {
        self.mn_ll_id.as_ref().map(LinkLayerId::as_bytes)
    }

    /// When the registration lifetime ends.
    pub fn expires(&self) -> Now {
        from_nanos(self.expires)
    }

    /// When this attachment was created or last moved to a new Proxy-CoA or interface.
    pub fn attached_at(&self) -> Now {
        from_nanos(self.attached_at)
    }

    /// When the last PBU of this attachment was accepted: its expiry less the lifetime granted.
    pub fn registered_at(&self) -> Now {
        self.expires().saturating_sub(crate::common::lifetime_duration(self.lifetime))
    }

    /// The lifetime granted in the last accepted PBU, in units of 4 s.
    pub fn lifetime_units(&self) -> u16 {
        self.lifetime
    }

    /// The Timestamp of the last accepted PBU, if it carried one.
    pub fn last_timestamp(&self) -> Option<Timestamp> {
        (self.flags & HAS_TIMESTAMP != 0).then_some(Timestamp(self.last_timestamp))
    }

    /// The Sequence Number of the last accepted PBU.
    pub fn last_sequence(&self) -> Option<u16> {
        (self.flags & HAS_SEQUENCE != 0).then_some(self.last_sequence)
    }

    /// Whether the MAG asked for the MN's other prefixes with a MuHo option (draft §5.2.1):
    /// such a MAG is told when they change.
    pub fn multihoming(&self) -> bool {
        self.flags & MUHO != 0
    }

    pub(crate) fn set_multihoming(&mut self, on: bool) {
        if on {
            self.flags |= MUHO;
        } else {
            self.flags &= !MUHO;
        }
    }

    pub(crate) fn accept_ordering(&mut self, timestamp: Option<Timestamp>, sequence: u16) {
        if let Some(ts) = timestamp {
            self.last_timestamp = ts.0;
            self.flags |= HAS_TIMESTAMP;
        }
        self.last_sequence = sequence;
        self.flags |= HAS_SEQUENCE;
    }

    fn link_key(&self, group: u32) -> Option<LinkKey> {
        self.mn_ll_id.clone().map(|lli| LinkKey { group, att: self.att.into(), lli })
    }
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("proxy_coa", &self.proxy_coa)
            .field("att", &self.att)
            .field("mn_ll_id", &self.mn_ll_id)
            .field("expires", &self.expires())
            .field("attached_at", &self.attached_at())
            .field("last_timestamp", &self.last_timestamp())
            .field("last_sequence", &self.last_sequence())
            .field("multihoming", &self.multihoming())
            .finish()
    }
}

/// One binding cache entry: a mobility session.
#[derive(Clone, Debug)]
pub(crate) struct Binding {
    group: u32,
    pub(crate) state: BindingState,
    pub(crate) prefixes: PrefixList,
    /// RFC 5213 §5.1: the MAG link-local address; unspecified when none is known.
    pub(crate) mag_lla: Ipv6Addr,
    /// RFC 5844 §3.1.1: the IPv4 home address, when the session has one.
    pub(crate) ipv4_home_address: Option<Ipv4Addr>,
    deadline: Nanos,
    primary: Attachment,
    extra: Vec<Attachment>,
}

impl Binding {
    pub(crate) fn new(prefixes: PrefixList, attachment: Attachment) -> Self {
        Self {
            group: u32::MAX,
            state: BindingState::Active,
            prefixes,
            mag_lla: Ipv6Addr::UNSPECIFIED,
            ipv4_home_address: None,
            deadline: attachment.expires,
            primary: attachment,
            extra: Vec::new(),
        }
    }

    pub(crate) fn group(&self) -> u32 {
        self.group
    }

    pub(crate) fn attachments(&self) -> impl Iterator<Item = &Attachment> {
        core::iter::once(&self.primary).chain(self.extra.iter())
    }

    pub(crate) fn attachment(&self, index: usize) -> Option<&Attachment> {
        match index {
            0 => Some(&self.primary),
            i => self.extra.get(i - 1),
        }
    }

    pub(crate) fn attachment_count(&self) -> usize {
        1 + self.extra.len()
    }

    pub(crate) fn primary(&self) -> &Attachment {
        &self.primary
    }

    /// The Proxy-CoA the prefixes are routed to: the first attachment, none when de-registered.
    /// Draft §5.4: a flow is first sent over the interface that joined first and moved only by
    /// the LMA's decision, so a further interface joining a virtual-interface entry leaves the
    /// route where it is (it is no handoff); when the first one leaves, the next oldest takes
    /// the route.
    pub(crate) fn route_peer(&self) -> Option<Ipv6Addr> {
        if self.state != BindingState::Active {
            return None;
        }
        Some(self.primary.proxy_coa)
    }

    /// The Proxy-CoAs whose tunnels this entry uses (one per attachment, with repetition).
    pub(crate) fn tunnel_peers(&self) -> Vec<Ipv6Addr> {
        if self.state != BindingState::Active {
            return Vec::new();
        }
        self.attachments().map(|a| a.proxy_coa).collect()
    }

    /// The earliest expiry among the attachments.
    pub(crate) fn earliest_expiry(&self) -> Nanos {
        self.attachments().map(|a| a.expires).min().unwrap_or(self.primary.expires)
    }
}

/// All sessions of one mobile node (draft §5.2.2: the MuHo entry).
#[derive(Clone, Debug)]
struct MnGroup {
    mn_id: MnIdentifier,
    sessions: Vec<BindingId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct LinkKey {
    group: u32,
    att: u8,
    lli: LinkLayerId,
}

#[derive(Clone, Debug)]
struct Slot {
    generation: u32,
    binding: Option<Binding>,
}

/// A growable array in fixed-size chunks: growing never copies the elements nor leaves up to
/// half of a doubled allocation unused, which matters at millions of entries.
#[derive(Clone, Debug)]
struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

const CHUNK: usize = 1024;

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Self { chunks: Vec::new(), len: 0 }
    }
}

impl<T> Chunked<T> {
    fn get(&self, index: usize) -> Option<&T> {
        self.chunks.get(index / CHUNK)?.get(index % CHUNK)
    }

    fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.chunks.get_mut(index / CHUNK)?.get_mut(index % CHUNK)
    }

    /// Appends `value`; returns its index.
    fn push(&mut self, value: T) -> usize {
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(last) = self.chunks.last_mut() {
            last.push(value);
        }
        self.len += 1;
        self.len - 1
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

/// The binding cache: entries, their indexes, and the per-MN groups.
#[derive(Clone, Debug, Default)]
pub struct BindingCache {
    slots: Chunked<Slot>,
    free_slots: Vec<u32>,
    len: usize,
    groups: Chunked<Option<MnGroup>>,
    free_groups: Vec<u32>,
    by_mn: Map<MnIdentifier, u32>,
    by_prefix: Map<Prefix, BindingId>,
    by_ipv4: Map<Ipv4Addr, BindingId>,
    by_link: Map<LinkKey, BindingId>,
    deadlines: BTreeSet<(Nanos, BindingId)>,
}

/// A read-only view of one entry.
#[derive(Clone, Copy)]
pub struct BindingRef<'a> {
    id: BindingId,
    binding: &'a Binding,
    cache: &'a BindingCache,
}

impl<'a> BindingRef<'a> {
    /// The entry's id.
    pub fn id(&self) -> BindingId {
        self.id
    }

    /// The MN-Identifier.
    pub fn mn_id(&self) -> &'a MnIdentifier {
        self.cache.group_mn_id(self.binding.group)
    }

    /// The home network prefixes.
    pub fn prefixes(&self) -> &'a [Prefix] {
        self.binding.prefixes.as_slice()
    }

    /// Active or de-registered.
    pub fn state(&self) -> BindingState {
        self.binding.state
    }

    /// The attachments: exactly one outside the virtual-interface mode.
    pub fn attachments(&self) -> impl Iterator<Item = &'a Attachment> + use<'a> {
        self.binding.attachments()
    }

    /// The first attachment (the only one outside the virtual-interface mode).
    pub fn primary(&self) -> &'a Attachment {
        self.binding.primary()
    }

    /// Where the prefixes are routed now: `None` when de-registered.
    pub fn route_peer(&self) -> Option<Ipv6Addr> {
        self.binding.route_peer()
    }

    /// The IPv4 home address (RFC 5844), if the session has one.
    pub fn ipv4_home_address(&self) -> Option<Ipv4Addr> {
        self.binding.ipv4_home_address
    }

    /// The MAG link-local address kept for the MN (RFC 5213 §5.1), if any.
    pub fn mag_link_local_address(&self) -> Option<Ipv6Addr> {
        (!self.binding.mag_lla.is_unspecified()).then_some(self.binding.mag_lla)
    }

    /// When the entry is next looked at: the earliest lifetime expiry, or the deletion time of
    /// a de-registered entry.
    pub fn deadline(&self) -> Now {
        from_nanos(self.binding.deadline)
    }

    /// The other sessions of the same mobile node (draft §5.2.2).
    pub fn siblings(&self) -> impl Iterator<Item = BindingRef<'a>> + use<'a> {
        let id = self.id;
        let cache = self.cache;
        cache.group_sessions(self.binding.group).iter().filter(move |s| **s != id).filter_map(move |s| cache.get(*s))
    }
}

impl fmt::Debug for BindingRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Binding")
            .field("id", &self.id)
            .field("mn_id", &self.mn_id().to_string())
            .field("prefixes", &self.prefixes())
            .field("state", &self.state())
            .field("mag_link_local_address", &self.mag_link_local_address())
            .field("attachments", &self.binding.attachments().collect::<Vec<_>>())
            .finish()
    }
}

impl BindingCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries (mobility sessions).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of mobile nodes with at least one entry.
    pub fn mobile_node_count(&self) -> usize {
        self.by_mn.len()
    }

    /// The entry `id`, if it still exists.
    pub fn get(&self, id: BindingId) -> Option<BindingRef<'_>> {
        self.binding(id).map(|binding| BindingRef { id, binding, cache: self })
    }

    /// The entry holding `prefix` (RFC 5213 §5.4.1.1).
    pub fn by_prefix(&self, prefix: &Prefix) -> Option<BindingRef<'_>> {
        self.by_prefix.get(prefix).and_then(|id| self.get(*id))
    }

    /// The entry of this mobile node's interface (RFC 5213 §5.4.1.2: MN-ID, ATT, MN-LL-ID).
    pub fn by_link_layer(
        &self,
        mn_id: &MnIdentifier,
        att: AccessTechnologyType,
        mn_ll_id: &[u8],
    ) -> Option<BindingRef<'_>> {
        let group = *self.by_mn.get(mn_id)?;
        self.find_link(group, att, &LinkLayerId::new(mn_ll_id)?).and_then(|id| self.get(id))
    }

    /// Every session of a mobile node (draft §5.2.2), oldest first.
    pub fn sessions<'a>(&'a self, mn_id: &MnIdentifier) -> impl Iterator<Item = BindingRef<'a>> + use<'a> {
        let group = self.by_mn.get(mn_id).copied();
        let ids: &'a [BindingId] = match group {
            Some(g) => self.group_sessions(g),
            None => &[],
        };
        ids.iter().filter_map(move |id| self.get(*id))
    }

    /// Every entry, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = BindingRef<'_>> {
        self.slots.iter().enumerate().filter_map(move |(index, slot)| {
            let binding = slot.binding.as_ref()?;
            let id = BindingId { index: index as u32, generation: slot.generation };
            Some(BindingRef { id, binding, cache: self })
        })
    }

    // ---- crate-internal access and mutation -------------------------------------------------

    pub(crate) fn binding(&self, id: BindingId) -> Option<&Binding> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.binding.as_ref()
    }

    fn binding_mut(&mut self, id: BindingId) -> Option<&mut Binding> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.binding.as_mut()
    }

    pub(crate) fn group_of(&self, mn_id: &MnIdentifier) -> Option<u32> {
        self.by_mn.get(mn_id).copied()
    }

    pub(crate) fn group_sessions(&self, group: u32) -> &[BindingId] {
        match self.groups.get(group as usize) {
            Some(Some(g)) => &g.sessions,
            _ => &[],
        }
    }

    pub(crate) fn group_mn_id(&self, group: u32) -> &MnIdentifier {
        static NONE: std::sync::OnceLock<MnIdentifier> = std::sync::OnceLock::new();
        match self.groups.get(group as usize) {
            Some(Some(g)) => &g.mn_id,
            // Unreachable while the indexes are consistent: every entry's group exists.
            _ => NONE.get_or_init(|| MnIdentifier::nai("")),
        }
    }

    pub(crate) fn prefix_owner(&self, prefix: &Prefix) -> Option<BindingId> {
        self.by_prefix.get(prefix).copied()
    }

    pub(crate) fn find_link(&self, group: u32, att: AccessTechnologyType, lli: &LinkLayerId) -> Option<BindingId> {
        // The key is built only to probe; the clone of an inline identifier does not allocate.
        let key = LinkKey { group, att: att.into(), lli: lli.clone() };
        self.by_link.get(&key).copied()
    }

    /// The earliest deadline and its entry.
    pub(crate) fn next_deadline(&self) -> Option<(Now, BindingId)> {
        self.deadlines.first().map(|(t, id)| (from_nanos(*t), *id))
    }

    /// Adds an entry for `mn_id`, indexing its prefixes and attachments.
    pub(crate) fn insert(&mut self, mn_id: &MnIdentifier, mut binding: Binding) -> BindingId {
        let group = match self.by_mn.get(mn_id) {
            Some(g) => *g,
            None => {
                let g = MnGroup { mn_id: mn_id.clone(), sessions: Vec::new() };
                let index = match self.free_groups.pop() {
                    Some(i) => {
                        if let Some(entry) = self.groups.get_mut(i as usize) {
                            *entry = Some(g);
                        }
                        i
                    }
                    None => self.groups.push(Some(g)) as u32,
                };
                self.by_mn.insert(mn_id.clone(), index);
                index
            }
        };
        binding.group = group;
        binding.deadline = match binding.state {
            BindingState::Active => binding.earliest_expiry(),
            BindingState::Deregistered => binding.deadline,
        };
        let id = match self.free_slots.pop() {
            Some(index) => {
                let generation = self.slots.get(index as usize).map_or(0, |slot| slot.generation);
                BindingId { index, generation }
            }
            None => {
                let index = self.slots.push(Slot { generation: 0, binding: None });
                BindingId { index: index as u32, generation: 0 }
            }
        };
        for p in binding.prefixes.as_slice() {
            self.by_prefix.insert(*p, id);
        }
        if let Some(v4) = binding.ipv4_home_address {
            self.by_ipv4.insert(v4, id);
        }
        for a in binding.attachments() {
            if let Some(key) = a.link_key(group) {
                self.by_link.insert(key, id);
            }
        }
        self.deadlines.insert((binding.deadline, id));
        if let Some(Some(g)) = self.groups.get_mut(group as usize) {
            g.sessions.push(id);
        }
        if let Some(slot) = self.slots.get_mut(id.index as usize) {
            slot.binding = Some(binding);
        }
        self.len += 1;
        id
    }

    /// Removes an entry and every index slot pointing at it; the group goes with its last
    /// session. Returns the entry and its MN-ID.
    pub(crate) fn remove(&mut self, id: BindingId) -> Option<(Binding, MnIdentifier)> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let binding = slot.binding.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free_slots.push(id.index);
        self.len -= 1;
        for p in binding.prefixes.as_slice() {
            if self.by_prefix.get(p) == Some(&id) {
                self.by_prefix.remove(p);
            }
        }
        if let Some(v4) = binding.ipv4_home_address
            && self.by_ipv4.get(&v4) == Some(&id)
        {
            self.by_ipv4.remove(&v4);
        }
        for a in binding.attachments() {
            self.unindex_link(a, binding.group, id);
        }
        self.deadlines.remove(&(binding.deadline, id));
        let group = binding.group;
        let mut emptied = false;
        let mut mn_id = None;
        if let Some(Some(g)) = self.groups.get_mut(group as usize) {
            g.sessions.retain(|s| *s != id);
            emptied = g.sessions.is_empty();
            mn_id = Some(g.mn_id.clone());
        }
        let mn_id = mn_id?;
        if emptied {
            if let Some(entry) = self.groups.get_mut(group as usize) {
                *entry = None;
            }
            self.free_groups.push(group);
            self.by_mn.remove(&mn_id);
        }
        Some((binding, mn_id))
    }

    fn unindex_link(&mut self, a: &Attachment, group: u32, id: BindingId) {
        if let Some(key) = a.link_key(group)
            && self.by_link.get(&key) == Some(&id)
        {
            self.by_link.remove(&key);
        }
    }

    /// Marks an entry de-registered, to be deleted at `delete_at`.
    pub(crate) fn set_deregistered(&mut self, id: BindingId, delete_at: Now) {
        let deadline = nanos(delete_at);
        let Some(b) = self.binding_mut(id) else { return };
        let old = b.deadline;
        b.state = BindingState::Deregistered;
        b.deadline = deadline;
        self.deadlines.remove(&(old, id));
        self.deadlines.insert((deadline, id));
    }

    /// Marks an entry active again; its deadline becomes its earliest lifetime expiry.
    pub(crate) fn set_active(&mut self, id: BindingId) {
        let Some(b) = self.binding_mut(id) else { return };
        b.state = BindingState::Active;
        self.refresh_deadline(id);
    }

    /// Recomputes an active entry's deadline from its attachments' expiries.
    pub(crate) fn refresh_deadline(&mut self, id: BindingId) {
        let Some(b) = self.binding_mut(id) else { return };
        if b.state != BindingState::Active {
            return;
        }
        let old = b.deadline;
        let new = b.earliest_expiry();
        if old == new {
            return;
        }
        b.deadline = new;
        self.deadlines.remove(&(old, id));
        self.deadlines.insert((new, id));
    }

    /// Sets or clears the IPv4 home address, which must not be another entry's.
    pub(crate) fn set_ipv4_home_address(&mut self, id: BindingId, address: Option<Ipv4Addr>) {
        let Some(b) = self.binding_mut(id) else { return };
        let old = core::mem::replace(&mut b.ipv4_home_address, address);
        if let Some(old) = old
            && self.by_ipv4.get(&old) == Some(&id)
        {
            self.by_ipv4.remove(&old);
        }
        if let Some(new) = address {
            self.by_ipv4.insert(new, id);
        }
    }

    /// The entry holding IPv4 home address `address`.
    pub(crate) fn ipv4_owner(&self, address: &Ipv4Addr) -> Option<BindingId> {
        self.by_ipv4.get(address).copied()
    }

    /// Sets the MAG link-local address.
    pub(crate) fn set_mag_lla(&mut self, id: BindingId, lla: Ipv6Addr) {
        if let Some(b) = self.binding_mut(id) {
            b.mag_lla = lla;
        }
    }

    /// Changes attachment `index` through `f`, keeping the MN-LL-ID index and the deadline
    /// consistent.
    pub(crate) fn update_attachment(&mut self, id: BindingId, index: usize, f: impl FnOnce(&mut Attachment)) {
        let Some(b) = self.binding_mut(id) else { return };
        let group = b.group;
        let Some(a) = (match index {
            0 => Some(&mut b.primary),
            i => b.extra.get_mut(i - 1),
        }) else {
            return;
        };
        let old_key = a.link_key(group);
        f(a);
        let new_key = a.link_key(group);
        if old_key != new_key {
            if let Some(k) = old_key
                && self.by_link.get(&k) == Some(&id)
            {
                self.by_link.remove(&k);
            }
            if let Some(k) = new_key {
                self.by_link.insert(k, id);
            }
            self.reindex_links(id);
        }
        self.refresh_deadline(id);
    }

    /// Indexes every attachment of `id` by its link: after one attachment's key went away,
    /// another attachment of the same entry may still hold it (draft §5.4: the interfaces of a
    /// virtual interface share one MAC address, hence one MN-LL-ID).
    fn reindex_links(&mut self, id: BindingId) {
        let Some(b) = self.binding(id) else { return };
        let keys: Vec<LinkKey> = b.attachments().filter_map(|a| a.link_key(b.group)).collect();
        for k in keys {
            self.by_link.insert(k, id);
        }
    }

    /// Adds an attachment (virtual-interface mode).
    pub(crate) fn push_attachment(&mut self, id: BindingId, attachment: Attachment) {
        let Some(b) = self.binding_mut(id) else { return };
        let key = attachment.link_key(b.group);
        b.extra.push(attachment);
        if let Some(k) = key {
            self.by_link.insert(k, id);
        }
        self.refresh_deadline(id);
    }

    /// Removes attachment `index` unless it is the last one; returns it.
    pub(crate) fn remove_attachment(&mut self, id: BindingId, index: usize) -> Option<Attachment> {
        let b = self.binding_mut(id)?;
        if b.extra.is_empty() || index > b.extra.len() {
            return None;
        }
        let group = b.group;
        let removed = match index {
            0 => {
                let next = b.extra.remove(0);
                core::mem::replace(&mut b.primary, next)
            }
            i => b.extra.remove(i - 1),
        };
        self.unindex_link(&removed, group, id);
        self.reindex_links(id);
        self.refresh_deadline(id);
        Some(removed)
    }

    /// Checks that every index agrees with the entries (for tests).
    #[cfg(test)]
    pub(crate) fn check_consistency(&self) {
        let mut count = 0;
        for entry in self.iter() {
            count += 1;
            for p in entry.prefixes() {
                assert_eq!(self.by_prefix.get(p), Some(&entry.id), "prefix {p}");
            }
            assert!(self.deadlines.contains(&(entry.binding.deadline, entry.id)));
            assert!(self.group_sessions(entry.binding.group).contains(&entry.id));
            assert_eq!(self.by_mn.get(entry.mn_id()), Some(&entry.binding.group));
        }
        assert_eq!(count, self.len);
        assert_eq!(self.deadlines.len(), self.len);
        for (p, id) in &self.by_prefix {
            assert!(self.get(*id).is_some_and(|b| b.prefixes().contains(p)));
        }
        for id in self.by_link.values() {
            assert!(self.get(*id).is_some());
        }
        for (a, id) in &self.by_ipv4 {
            assert!(self.get(*id).is_some_and(|b| b.ipv4_home_address() == Some(*a)), "{a}");
        }
        for entry in self.iter() {
            if let Some(a) = entry.ipv4_home_address() {
                assert_eq!(self.by_ipv4.get(&a), Some(&entry.id), "{a}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    fn prefix(i: u16) -> Prefix {
        Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, 1, i, 0, 0, 0, 0), 64)
    }

    fn attachment(coa: u16, lli: u8, expires: u64) -> Attachment {
        Attachment::new(
            Ipv6Addr::new(0x2001, 0xdb8, 0xaaaa, coa, 0, 0, 0, 1),
            AccessTechnologyType::Ieee80211,
            LinkLayerId::new(&[2, 0, 0, 0, 0, lli]),
            Duration::ZERO,
            Duration::from_secs(expires),
            100,
            false,
        )
    }

    #[test]
    fn entries_of_one_mn_are_grouped_and_indexed() {
        let mut cache = BindingCache::new();
        let mn = MnIdentifier::nai("mn1@example.net");
        let a = cache.insert(&mn, Binding::new(PrefixList::new(&[prefix(1)]), attachment(1, 1, 10)));
        let b = cache.insert(&mn, Binding::new(PrefixList::new(&[prefix(2), prefix(3)]), attachment(2, 2, 5)));
        cache.check_consistency();
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.mobile_node_count(), 1);
        assert_eq!(cache.by_prefix(&prefix(3)).map(|r| r.id()), Some(b));
        let siblings: Vec<_> = cache.get(a).unwrap().siblings().map(|r| r.id()).collect();
        assert_eq!(siblings, vec![b]);
        assert_eq!(
            cache.by_link_layer(&mn, AccessTechnologyType::Ieee80211, &[2, 0, 0, 0, 0, 1]).map(|r| r.id()),
            Some(a)
        );
        assert_eq!(cache.next_deadline(), Some((Duration::from_secs(5), b)));
        let (removed, id) = cache.remove(b).unwrap();
        assert_eq!(id, mn);
        assert_eq!(removed.prefixes.as_slice(), &[prefix(2), prefix(3)]);
        assert!(cache.get(b).is_none(), "a removed id does not resolve");
        cache.check_consistency();
        cache.remove(a).unwrap();
        assert_eq!(cache.mobile_node_count(), 0);
        // The slot is reused under a new generation: the old id stays dead.
        let c = cache.insert(&mn, Binding::new(PrefixList::new(&[prefix(4)]), attachment(1, 1, 10)));
        assert_ne!(c, a);
        assert!(cache.get(a).is_none());
        cache.check_consistency();
    }

    #[test]
    fn attachment_changes_keep_the_link_index_and_deadline() {
        let mut cache = BindingCache::new();
        let mn = MnIdentifier::nai("mn1@example.net");
        let a = cache.insert(&mn, Binding::new(PrefixList::new(&[prefix(1)]), attachment(1, 1, 10)));
        cache.update_attachment(a, 0, |at| {
            at.mn_ll_id = LinkLayerId::new(&[9; 6]);
            at.expires = nanos(Duration::from_secs(20));
        });
        assert!(cache.by_link_layer(&mn, AccessTechnologyType::Ieee80211, &[2, 0, 0, 0, 0, 1]).is_none());
        assert!(cache.by_link_layer(&mn, AccessTechnologyType::Ieee80211, &[9; 6]).is_some());
        cache.push_attachment(a, attachment(2, 2, 15));
        assert_eq!(cache.next_deadline(), Some((Duration::from_secs(15), a)));
        assert!(cache.remove_attachment(a, 0).is_some());
        assert!(cache.remove_attachment(a, 0).is_none(), "the last attachment stays");
        assert!(cache.by_link_layer(&mn, AccessTechnologyType::Ieee80211, &[9; 6]).is_none());
        cache.check_consistency();
    }

    #[test]
    fn link_layer_ids_inline_and_on_the_heap() {
        assert!(LinkLayerId::new(&[]).is_none());
        let short = LinkLayerId::new(&[1, 2, 3]).unwrap();
        assert_eq!(short.as_bytes(), &[1, 2, 3]);
        let long = LinkLayerId::new(&[7; 20]).unwrap();
        assert_eq!(long.as_bytes(), &[7; 20]);
        assert_eq!(core::mem::size_of::<LinkLayerId>(), 16);
    }

    #[test]
    fn entries_stay_compact() {
        // The goal is <= 512 bytes per binding including the index slots; the entry itself
        // must leave room for them.
        let size = core::mem::size_of::<Slot>();
        assert!(size <= 192, "slot of {size} bytes");
    }
}
