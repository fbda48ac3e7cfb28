//! The data-plane state the MAG has asked for, and the intents that change it.
//!
//! Each mobile node has a desired set of [`Resource`]s computed from its bound sessions; the
//! table keeps what was last installed for it and emits only the difference. Resources are
//! reference-counted across mobile nodes, so the tunnel to the LMA, shared by every mobile node
//! (RFC 5213 §6.10.4), is added with its first user and removed with its last, and nothing is
//! ever added twice or removed when absent.
//!
//! Order: removals before additions (a route whose next hop changes is removed, then added),
//! routes removed before the tunnel, the tunnel added before the routes — [`Resource`]'s
//! ordering puts the tunnel first.
//!
//! One downlink route per prefix or IPv4 home address, whoever asks: a kernel holds one route
//! per destination. Two mobile nodes can claim one prefix for a while when the LMA hands out
//! again a prefix a MAG still serves (an LMA that restarted without its binding cache), and two
//! sessions of one node when the LMA moved a session's prefixes or address to another
//! interface here and the old session has not registered afresh yet; the route first installed
//! stays, the other waits and is installed when the first goes.

use core::net::Ipv4Addr;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use pmip6_wire::{MnIdentifier, Prefix};

use crate::common::{Intent, Resource};

/// Installed resources, per mobile node and reference-counted.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResourceTable {
    per_mn: BTreeMap<MnIdentifier, BTreeSet<Resource>>,
    refs: BTreeMap<Resource, u32>,
    /// The installed downlink route of each destination.
    routes: BTreeMap<Destination, Resource>,
    /// Downlink routes wanted while another route of their prefix is installed.
    waiting: BTreeMap<Resource, u32>,
}

/// What a downlink route leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Destination {
    Prefix(Prefix),
    Ipv4(Ipv4Addr),
}

/// The destination of a downlink route.
fn route_prefix(resource: &Resource) -> Option<Destination> {
    match resource {
        Resource::PrefixToAccess { prefix, .. } => Some(Destination::Prefix(*prefix)),
        Resource::Ipv4HomeAddressToAccess { address, .. } => Some(Destination::Ipv4(*address)),
        _ => None,
    }
}

impl ResourceTable {
    /// Makes `mn_id`'s installed set `desired`, pushing the intents that takes.
    pub(crate) fn reconcile(&mut self, mn_id: &MnIdentifier, desired: BTreeSet<Resource>, out: &mut VecDeque<Intent>) {
        let installed = self.per_mn.remove(mn_id).unwrap_or_default();
        for resource in installed.iter().rev().filter(|r| !desired.contains(r)) {
            self.release(resource, out);
        }
        for resource in desired.difference(&installed) {
            self.acquire(resource, out);
        }
        if !desired.is_empty() {
            self.per_mn.insert(mn_id.clone(), desired);
        }
    }

    /// What is installed for `mn_id`.
    #[cfg(test)]
    pub(crate) fn installed(&self, mn_id: &MnIdentifier) -> Option<&BTreeSet<Resource>> {
        self.per_mn.get(mn_id)
    }

    /// Everything installed, each resource once.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Resource> {
        self.refs.keys()
    }

    fn acquire(&mut self, resource: &Resource, out: &mut VecDeque<Intent>) {
        if let Some(prefix) = route_prefix(resource)
            && self.routes.get(&prefix).is_some_and(|installed| installed != resource)
        {
            *self.waiting.entry(resource.clone()).or_insert(0) += 1;
            return;
        }
        let count = self.refs.entry(resource.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            if let Some(prefix) = route_prefix(resource) {
                self.routes.insert(prefix, resource.clone());
            }
            out.push_back(Intent::Add(resource.clone()));
        }
    }

    fn release(&mut self, resource: &Resource, out: &mut VecDeque<Intent>) {
        if let Some(count) = self.waiting.get_mut(resource) {
            *count -= 1;
            if *count == 0 {
                self.waiting.remove(resource);
            }
            return;
        }
        match self.refs.get_mut(resource) {
            Some(count) if *count > 1 => *count -= 1,
            Some(_) => {
                self.refs.remove(resource);
                out.push_back(Intent::Remove(resource.clone()));
                if let Some(prefix) = route_prefix(resource) {
                    self.routes.remove(&prefix);
                    self.promote(prefix, out);
                }
            }
            None => {}
        }
    }

    /// Installs a waiting route of `prefix`, if any, now that its destination is free.
    fn promote(&mut self, prefix: Destination, out: &mut VecDeque<Intent>) {
        let Some(next) = self.waiting.keys().find(|r| route_prefix(r) == Some(prefix)).cloned() else { return };
        let count = self.waiting.remove(&next).unwrap_or(1);
        self.refs.insert(next.clone(), count);
        self.routes.insert(prefix, next.clone());
        out.push_back(Intent::Add(next));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::InterfaceId;
    use core::net::Ipv6Addr;
    use pmip6_wire::Prefix;

    fn tunnel() -> Resource {
        Resource::Tunnel { local: Ipv6Addr::LOCALHOST, peer: Ipv6Addr::UNSPECIFIED }
    }

    fn route(n: u16) -> Resource {
        Resource::PrefixToAccess {
            prefix: Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, n, 0, 0, 0, 0, 0), 64),
            interface: InterfaceId(1),
            next_hop: None,
        }
    }

    #[test]
    fn shared_resources_are_added_once_and_removed_with_their_last_user() {
        let (a, b) = (MnIdentifier::nai("a@x"), MnIdentifier::nai("b@x"));
        let mut table = ResourceTable::default();
        let mut out = VecDeque::new();
        table.reconcile(&a, [tunnel(), route(1)].into(), &mut out);
        assert_eq!(Vec::from(out.split_off(0)), [Intent::Add(tunnel()), Intent::Add(route(1))]);
        table.reconcile(&b, [tunnel(), route(2)].into(), &mut out);
        assert_eq!(Vec::from(out.split_off(0)), [Intent::Add(route(2))]);
        table.reconcile(&a, BTreeSet::new(), &mut out);
        assert_eq!(Vec::from(out.split_off(0)), [Intent::Remove(route(1))]);
        table.reconcile(&b, [tunnel(), route(3)].into(), &mut out);
        assert_eq!(Vec::from(out.split_off(0)), [Intent::Remove(route(2)), Intent::Add(route(3))]);
        table.reconcile(&b, BTreeSet::new(), &mut out);
        assert_eq!(Vec::from(out.split_off(0)), [Intent::Remove(route(3)), Intent::Remove(tunnel())]);
        assert!(table.installed(&b).is_none());
    }

    fn route_via(n: u16, hop: u16) -> Resource {
        Resource::PrefixToAccess {
            prefix: Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, n, 0, 0, 0, 0, 0), 64),
            interface: InterfaceId(2),
            next_hop: Some(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, hop)),
        }
    }

    #[test]
    fn one_downlink_route_per_prefix_across_mobile_nodes() {
        let (a, b) = (MnIdentifier::nai("a@x"), MnIdentifier::nai("b@x"));
        let mut table = ResourceTable::default();
        let mut out = VecDeque::new();
        table.reconcile(&a, [route(1)].into(), &mut out);
        assert_eq!(Vec::from(out.split_off(0)), [Intent::Add(route(1))]);
        // b claims the same prefix with another route: it waits.
        table.reconcile(&b, [route_via(1, 7)].into(), &mut out);
        assert!(out.is_empty());
        // a lets go: b's route is installed in its place.
        table.reconcile(&a, BTreeSet::new(), &mut out);
        assert_eq!(Vec::from(out.split_off(0)), [Intent::Remove(route(1)), Intent::Add(route_via(1, 7))]);
        // A waiting route dropped before its turn leaves nothing behind.
        table.reconcile(&a, [route(1)].into(), &mut out);
        assert!(out.is_empty());
        table.reconcile(&a, BTreeSet::new(), &mut out);
        assert!(out.is_empty());
        table.reconcile(&b, BTreeSet::new(), &mut out);
        assert_eq!(Vec::from(out.split_off(0)), [Intent::Remove(route_via(1, 7))]);
        assert_eq!(table.all().count(), 0);
    }

    #[test]
    fn one_route_per_ipv4_home_address_across_sessions() {
        let home = |interface| Resource::Ipv4HomeAddressToAccess {
            address: Ipv4Addr::new(10, 64, 0, 2),
            interface: InterfaceId(interface),
        };
        let a = MnIdentifier::nai("a@x");
        let mut table = ResourceTable::default();
        let mut out = VecDeque::new();
        // The address moved to the session on link 2 while the one on link 1 still holds it.
        table.reconcile(&a, [home(1), home(2)].into(), &mut out);
        assert_eq!(Vec::from(out.split_off(0)), [Intent::Add(home(1))]);
        table.reconcile(&a, [home(2)].into(), &mut out);
        assert_eq!(Vec::from(out.split_off(0)), [Intent::Remove(home(1)), Intent::Add(home(2))]);
        table.reconcile(&a, BTreeSet::new(), &mut out);
        assert_eq!(Vec::from(out.split_off(0)), [Intent::Remove(home(2))]);
        assert_eq!(table.all().count(), 0);
    }
}
