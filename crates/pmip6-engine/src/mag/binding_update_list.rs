//! The Binding Update List (RFC 5213 §6.1): one entry per mobility session the MAG signals on
//! behalf of a mobile node, i.e. per (MN-ID, access interface, MAC) — RFC 5213 treats each
//! interface of a multihomed MN as a session of its own, and the draft's MuHo prefixes hang off
//! each entry.
//!
//! The list owns the entries and three indexes: by key (ordered, so every session of one MN is
//! a contiguous range), by access link and MAC (attach, detach and RS lookups), and by the
//! Sequence Number of the outstanding PBU (PBA matching). The engine mutates it; everyone else
//! reads it through [`super::Mag::binding_update_list`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use core::net::{Ipv4Addr, Ipv6Addr};
use core::time::Duration;

use pmip6_wire::{AccessTechnologyType, HandoffIndicator, MnIdentifier, Prefix};

use crate::common::{InterfaceId, Now};

/// What identifies a session: the MN-ID, the access link and the MN's MAC on it (its MN-LL-ID).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BindingKey {
    /// The MN-ID from the static table.
    pub mn_id: MnIdentifier,
    /// The access link.
    pub interface: InterfaceId,
    /// The MN's MAC on that link.
    pub mac: [u8; 6],
}

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindingState {
    /// A PBU is out, no accepting PBA yet: nothing advertised, no routes (RFC 5213 §6.9.1.1).
    Registering,
    /// Accepted: prefixes advertised and routed. A refresh or re-registration may be pending.
    Bound,
    /// A de-registration (lifetime 0) is out; the data plane is already gone (RFC 5213
    /// §6.9.1.4).
    Deregistering,
}

/// Why a PBU was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PbuKind {
    /// Initial registration on attachment (RFC 5213 §6.9.1.1).
    Registration,
    /// Lifetime extension before expiry (RFC 5213 §6.9.1.3).
    Refresh,
    /// Registration of a bound session again because the LMA asked (RFC 7077
    /// FORCE-REREGISTRATION) or restarted (RFC 5847).
    Reregistration,
    /// De-registration on detach (RFC 5213 §6.9.1.4).
    Deregistration,
}

/// The PBU awaiting its PBA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingPbu {
    /// Why it was sent.
    pub kind: PbuKind,
    /// Sequence Number of the latest transmission: only a PBA with this number answers it
    /// (RFC 6275 §11.7.3).
    pub sequence: u16,
    /// Handoff Indicator it carries.
    pub handoff: HandoffIndicator,
    /// Lifetime it requests, in units of 4 s.
    pub lifetime_units: u16,
    /// Transmissions so far, the first included.
    pub transmissions: u32,
    /// When the latest transmission left.
    pub last_sent: Now,
    /// How long to wait for its answer before the next transmission.
    pub timeout: Duration,
}

/// One session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulEntry {
    /// The session.
    pub key: BindingKey,
    /// Whether PBUs carry an empty MuHo (draft §5.2.1).
    pub multihoming: bool,
    /// Whether PBUs ask for an IPv4 home address (RFC 5844 §3.2).
    pub ipv4: bool,
    /// The IPv4 home address and its prefix length, from the PBA's IPv4 Home Address Reply
    /// (RFC 5844 §3.2.2): routed on the access link and source-routed into the tunnel.
    pub ipv4_home_address: Option<(Ipv4Addr, u8)>,
    /// The mobile node's IPv4 default router, from the PBA (RFC 5844 §3.3.3).
    pub ipv4_default_router: Option<Ipv4Addr>,
    /// The access link's technology, sent as ATT.
    pub access_technology: AccessTechnologyType,
    /// Where the session stands.
    pub state: BindingState,
    /// The MN's own home network prefixes on this link, from the PBA's HNP options: advertised
    /// in RAs and routed on-link.
    pub home_network_prefixes: Vec<Prefix>,
    /// The MN's prefixes on its other interfaces, from the PBA's (or a later notification's)
    /// MuHo options: routed to the MN via its link-local address here, never advertised
    /// (draft §4.3, §5.2.1).
    pub other_prefixes: BTreeSet<Prefix>,
    /// The MN's link-local address on this link: the source of its RS when that was
    /// link-local, else `fe80::` + the modified EUI-64 of its MAC (RFC 4291 §2.5.1, RFC 2464
    /// §4). Next hop of the routes to `other_prefixes`.
    pub mn_link_local: Ipv6Addr,
    /// Whether `mn_link_local` was seen as the source of an RS (else derived from the MAC).
    pub mn_link_local_learned: bool,
    /// Our link-local address towards the MN: the PBA's Link-local Address option, else the
    /// interface's configured one (RFC 5213 §6.8). Source of the RAs.
    pub router_link_local: Ipv6Addr,
    /// The granted lifetime (at most the requested one).
    pub lifetime: Duration,
    /// When the binding was last accepted.
    pub accepted_at: Option<Now>,
    /// When the granted lifetime runs out.
    pub expires_at: Option<Now>,
    /// The PBU awaiting its PBA, if any.
    pub pending: Option<PendingPbu>,
    /// Unsolicited RAs sent since the last acceptance (the first few go at a shorter interval).
    pub advertisements_sent: u32,
}

impl BulEntry {
    /// Whether the session's prefixes are advertised and routed.
    pub fn is_bound(&self) -> bool {
        self.state == BindingState::Bound
    }

    /// Lifetime left at `now` (zero when not bound or expired).
    pub fn remaining_lifetime(&self, now: Now) -> Duration {
        match (self.state, self.expires_at) {
            (BindingState::Bound, Some(at)) => at.saturating_sub(now),
            _ => Duration::ZERO,
        }
    }
}

/// The Binding Update List.
#[derive(Debug, Clone, Default)]
pub struct BindingUpdateList {
    entries: BTreeMap<BindingKey, BulEntry>,
    by_link: HashMap<(InterfaceId, [u8; 6]), BindingKey>,
    by_sequence: HashMap<u16, BindingKey>,
}

impl BindingUpdateList {
    /// The entry of `key`.
    pub fn get(&self, key: &BindingKey) -> Option<&BulEntry> {
        self.entries.get(key)
    }

    /// The entry of the MAC `mac` on `interface`.
    pub fn get_by_link(&self, interface: InterfaceId, mac: [u8; 6]) -> Option<&BulEntry> {
        self.by_link.get(&(interface, mac)).and_then(|key| self.entries.get(key))
    }

    /// The entry whose outstanding PBU carries `sequence`.
    pub fn get_by_sequence(&self, sequence: u16) -> Option<&BulEntry> {
        self.by_sequence.get(&sequence).and_then(|key| self.entries.get(key))
    }

    /// Every entry, ordered by MN-ID, then interface, then MAC.
    pub fn iter(&self) -> impl Iterator<Item = &BulEntry> {
        self.entries.values()
    }

    /// The entries of one mobile node.
    pub fn bindings_of<'a>(&'a self, mn_id: &MnIdentifier) -> impl Iterator<Item = &'a BulEntry> + 'a {
        self.entries.range(range_of(mn_id)).map(|(_, e)| e)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every key.
    pub(crate) fn keys(&self) -> Vec<BindingKey> {
        self.entries.keys().cloned().collect()
    }

    pub(crate) fn get_mut(&mut self, key: &BindingKey) -> Option<&mut BulEntry> {
        self.entries.get_mut(key)
    }

    /// Inserts or replaces the entry of `entry.key`.
    pub(crate) fn insert(&mut self, entry: BulEntry) {
        let key = entry.key.clone();
        if let Some(old) = self.entries.insert(key.clone(), entry) {
            self.forget_sequence(&old);
        }
        self.by_link.insert((key.interface, key.mac), key.clone());
        if let Some(pending) = self.entries.get(&key).and_then(|e| e.pending) {
            self.by_sequence.insert(pending.sequence, key);
        }
    }

    /// Removes the entry of `key`.
    pub(crate) fn remove(&mut self, key: &BindingKey) -> Option<BulEntry> {
        let entry = self.entries.remove(key)?;
        if self.by_link.get(&(key.interface, key.mac)) == Some(key) {
            self.by_link.remove(&(key.interface, key.mac));
        }
        self.forget_sequence(&entry);
        Some(entry)
    }

    /// Records `pending` as the outstanding PBU of `key` (replacing the previous one).
    pub(crate) fn set_pending(&mut self, key: &BindingKey, pending: Option<PendingPbu>) {
        let Some(entry) = self.entries.get_mut(key) else { return };
        let old = entry.pending.take();
        entry.pending = pending;
        if let Some(old) = old
            && self.by_sequence.get(&old.sequence) == Some(key)
        {
            self.by_sequence.remove(&old.sequence);
        }
        if let Some(new) = pending {
            self.by_sequence.insert(new.sequence, key.clone());
        }
    }

    fn forget_sequence(&mut self, entry: &BulEntry) {
        if let Some(pending) = entry.pending
            && self.by_sequence.get(&pending.sequence) == Some(&entry.key)
        {
            self.by_sequence.remove(&pending.sequence);
        }
    }
}

fn range_of(mn_id: &MnIdentifier) -> core::ops::RangeInclusive<BindingKey> {
    BindingKey { mn_id: mn_id.clone(), interface: InterfaceId(0), mac: [0; 6] }..=BindingKey {
        mn_id: mn_id.clone(),
        interface: InterfaceId(u32::MAX),
        mac: [0xff; 6],
    }
}

/// `fe80::` followed by the modified EUI-64 interface identifier of `mac` (RFC 4291 §2.5.1,
/// Appendix A; RFC 2464 §4, §5): the universal/local bit inverted, `ff:fe` in the middle.
pub fn eui64_link_local(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::from([0xfe, 0x80, 0, 0, 0, 0, 0, 0, mac[0] ^ 0x02, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(nai: &str, interface: u32, mac: u8, sequence: Option<u16>) -> BulEntry {
        BulEntry {
            key: BindingKey {
                mn_id: MnIdentifier::nai(nai),
                interface: InterfaceId(interface),
                mac: [2, 0, 0, 0, 0, mac],
            },
            multihoming: false,
            ipv4: false,
            ipv4_home_address: None,
            ipv4_default_router: None,
            access_technology: AccessTechnologyType::Ieee80211,
            state: BindingState::Registering,
            home_network_prefixes: Vec::new(),
            other_prefixes: BTreeSet::new(),
            mn_link_local: Ipv6Addr::UNSPECIFIED,
            mn_link_local_learned: false,
            router_link_local: Ipv6Addr::UNSPECIFIED,
            lifetime: Duration::ZERO,
            accepted_at: None,
            expires_at: None,
            pending: sequence.map(|sequence| PendingPbu {
                kind: PbuKind::Registration,
                sequence,
                handoff: HandoffIndicator::NewInterface,
                lifetime_units: 900,
                transmissions: 1,
                last_sent: Duration::ZERO,
                timeout: Duration::from_secs(1),
            }),
            advertisements_sent: 0,
        }
    }

    // RFC 4291 Appendix A: ff:fe goes in the middle and the universal/local bit is inverted.
    #[test]
    fn eui64_link_local_inverts_the_universal_local_bit() {
        let ll = eui64_link_local([0x00, 0x1b, 0x21, 0x3c, 0x4d, 0x5e]);
        assert_eq!(ll, "fe80::21b:21ff:fe3c:4d5e".parse::<Ipv6Addr>().unwrap());
        let ll = eui64_link_local([0x02, 0, 0, 0, 0, 1]);
        assert_eq!(ll, "fe80::ff:fe00:1".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn indexes_follow_inserts_pending_changes_and_removals() {
        let mut bul = BindingUpdateList::default();
        bul.insert(entry("a@x", 1, 1, Some(10)));
        bul.insert(entry("a@x", 2, 2, Some(11)));
        bul.insert(entry("b@x", 1, 3, None));
        assert_eq!(bul.bindings_of(&MnIdentifier::nai("a@x")).count(), 2);
        assert_eq!(bul.bindings_of(&MnIdentifier::nai("b@x")).count(), 1);
        assert_eq!(bul.bindings_of(&MnIdentifier::nai("c@x")).count(), 0);
        let a1 = bul.get_by_sequence(10).map(|e| e.key.clone()).unwrap();
        assert_eq!(bul.get_by_link(InterfaceId(1), [2, 0, 0, 0, 0, 1]).map(|e| &e.key), Some(&a1));

        let mut pending = bul.get(&a1).and_then(|e| e.pending).unwrap();
        pending.sequence = 12;
        bul.set_pending(&a1, Some(pending));
        assert!(bul.get_by_sequence(10).is_none());
        assert_eq!(bul.get_by_sequence(12).map(|e| &e.key), Some(&a1));

        bul.remove(&a1);
        assert!(bul.get_by_sequence(12).is_none());
        assert!(bul.get_by_link(InterfaceId(1), [2, 0, 0, 0, 0, 1]).is_none());
        assert_eq!(bul.get_by_sequence(11).map(|e| e.key.interface), Some(InterfaceId(2)));
        assert_eq!(bul.len(), 2);
    }
}
