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

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use pmip6_wire::MnIdentifier;

use crate::common::{Intent, Resource};

/// Installed resources, per mobile node and reference-counted.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResourceTable {
    per_mn: BTreeMap<MnIdentifier, BTreeSet<Resource>>,
    refs: BTreeMap<Resource, u32>,
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
        let count = self.refs.entry(resource.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            out.push_back(Intent::Add(resource.clone()));
        }
    }

    fn release(&mut self, resource: &Resource, out: &mut VecDeque<Intent>) {
        match self.refs.get_mut(resource) {
            Some(count) if *count > 1 => *count -= 1,
            Some(_) => {
                self.refs.remove(resource);
                out.push_back(Intent::Remove(resource.clone()));
            }
            None => {}
        }
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
}
