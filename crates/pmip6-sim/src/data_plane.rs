//! A model of one node's data plane: the set of [`Resource`]s the node's engine asked for.
//!
//! The engines promise to add and remove each resource exactly once, a tunnel before the first
//! route into it and after the last (see [`pmip6_engine::Resource`]). A real data plane applies
//! intents idempotently and would hide a broken promise; this model records every broken one as
//! a [`Violation`] instead of panicking, so that a test can assert on it, and applies the intent
//! as a forgiving kernel would (an add of what exists changes nothing, a remove of what is absent
//! changes nothing).

use core::fmt;
use core::net::Ipv6Addr;
use std::collections::BTreeSet;

use pmip6_engine::flow::{Route, Steering};
use pmip6_engine::{Intent, Now, Resource};

/// A broken data-plane promise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// An add of a resource that was already installed.
    AddPresent(Resource),
    /// A remove of a resource that was not installed.
    RemoveAbsent(Resource),
    /// A route (`PrefixToTunnel` or `SourceRouteToTunnel`) or a steering entry into a tunnel
    /// that is not up.
    RouteIntoMissingTunnel(Resource),
    /// A tunnel removed while a route still leads into it.
    TunnelRemovedUnderRoute {
        /// The tunnel.
        tunnel: Resource,
        /// A route into it.
        route: Resource,
    },
    /// A second downlink route for one prefix (`PrefixToTunnel` at the LMA, `PrefixToAccess`
    /// at a MAG): a kernel refuses it (`EEXIST`), and one of the two destinations would be
    /// wrong anyway.
    ConflictingRoute {
        /// The route already installed.
        installed: Resource,
        /// The one added.
        added: Resource,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddPresent(r) => write!(f, "add of present {r:?}"),
            Self::RemoveAbsent(r) => write!(f, "remove of absent {r:?}"),
            Self::RouteIntoMissingTunnel(r) => write!(f, "route into a tunnel that is not up: {r:?}"),
            Self::TunnelRemovedUnderRoute { tunnel, route } => {
                write!(f, "{tunnel:?} removed under {route:?}")
            }
            Self::ConflictingRoute { installed, added } => {
                write!(f, "second route for one prefix: {added:?} while {installed:?} is installed")
            }
        }
    }
}

/// The data plane of one node (the LMA or a MAG).
#[derive(Debug, Clone)]
pub struct DataPlane {
    /// Our tunnel end point (the LMAA or the Proxy-CoA): a tunnel is `Tunnel { local, peer }`.
    local: Ipv6Addr,
    installed: BTreeSet<Resource>,
    violations: Vec<(Now, Violation)>,
    history: Vec<(Now, Intent)>,
}

impl DataPlane {
    /// An empty data plane of the node whose tunnel end point is `local`.
    pub fn new(local: Ipv6Addr) -> Self {
        Self { local, installed: BTreeSet::new(), violations: Vec::new(), history: Vec::new() }
    }

    /// Applies one intent at `now`, recording any broken promise.
    pub fn apply(&mut self, now: Now, intent: &Intent) {
        self.history.push((now, intent.clone()));
        match intent {
            Intent::Add(resource) => self.add(now, resource),
            Intent::Remove(resource) => self.remove(now, resource),
        }
    }

    fn add(&mut self, now: Now, resource: &Resource) {
        if self.installed.contains(resource) {
            self.violations.push((now, Violation::AddPresent(resource.clone())));
            return;
        }
        if let Some(peer) = tunnel_of(resource)
            && !self.installed.contains(&Resource::Tunnel { local: self.local, peer })
        {
            self.violations.push((now, Violation::RouteIntoMissingTunnel(resource.clone())));
        }
        if let Some(installed) = self.installed.iter().find(|r| same_downlink_prefix(r, resource)) {
            let installed = installed.clone();
            self.violations.push((now, Violation::ConflictingRoute { installed, added: resource.clone() }));
        }
        self.installed.insert(resource.clone());
    }

    fn remove(&mut self, now: Now, resource: &Resource) {
        if !self.installed.remove(resource) {
            self.violations.push((now, Violation::RemoveAbsent(resource.clone())));
            return;
        }
        if let Resource::Tunnel { peer, .. } = resource
            && let Some(route) = self.installed.iter().find(|r| tunnel_of(r) == Some(*peer))
        {
            let route = route.clone();
            self.violations.push((now, Violation::TunnelRemovedUnderRoute { tunnel: resource.clone(), route }));
        }
    }

    /// What is installed now.
    pub fn resources(&self) -> &BTreeSet<Resource> {
        &self.installed
    }

    /// Whether nothing is installed.
    pub fn is_empty(&self) -> bool {
        self.installed.is_empty()
    }

    /// Every broken promise so far, with its time.
    pub fn violations(&self) -> &[(Now, Violation)] {
        &self.violations
    }

    /// Every intent applied, with its time, in order (across restarts).
    pub fn history(&self) -> &[(Now, Intent)] {
        &self.history
    }

    /// Forgets everything installed (the node restarted and its kernel state was flushed).
    /// Violations already recorded stay.
    pub fn clear(&mut self) {
        self.installed.clear();
    }
}

/// The tunnel a route or a steering entry leads into, by its peer.
fn tunnel_of(resource: &Resource) -> Option<Ipv6Addr> {
    match resource {
        Resource::PrefixToTunnel { peer, .. }
        | Resource::SourceRouteToTunnel { peer, .. }
        | Resource::Ipv4HomeAddressToTunnel { peer, .. }
        | Resource::Ipv4SourceRouteToTunnel { peer, .. } => Some(*peer),
        Resource::Steering(Steering::Flow { route: Route::Tunnel(peer), .. })
        | Resource::Steering(Steering::Selector { route: Route::Tunnel(peer), .. }) => Some(*peer),
        _ => None,
    }
}

/// Whether `a` and `b` are two different downlink routes for the same prefix.
fn same_downlink_prefix(a: &Resource, b: &Resource) -> bool {
    match (a, b) {
        (Resource::PrefixToTunnel { prefix: p, .. }, Resource::PrefixToTunnel { prefix: q, .. })
        | (Resource::PrefixToAccess { prefix: p, .. }, Resource::PrefixToAccess { prefix: q, .. }) => p == q && a != b,
        (
            Resource::Ipv4HomeAddressToTunnel { address: p, .. },
            Resource::Ipv4HomeAddressToTunnel { address: q, .. },
        )
        | (
            Resource::Ipv4HomeAddressToAccess { address: p, .. },
            Resource::Ipv4HomeAddressToAccess { address: q, .. },
        ) => p == q && a != b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;
    use pmip6_engine::InterfaceId;
    use pmip6_wire::Prefix;

    const LOCAL: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const PEER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
    const OTHER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3);

    fn prefix() -> Prefix {
        Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0), 64)
    }

    #[test]
    fn every_broken_promise_is_recorded() {
        let t = Duration::ZERO;
        let tunnel = Resource::Tunnel { local: LOCAL, peer: PEER };
        let route = Resource::PrefixToTunnel { prefix: prefix(), peer: PEER };
        let mut dp = DataPlane::new(LOCAL);
        dp.apply(t, &Intent::Add(route.clone()));
        assert_eq!(dp.violations().last().map(|v| &v.1), Some(&Violation::RouteIntoMissingTunnel(route.clone())));
        dp.apply(t, &Intent::Add(tunnel.clone()));
        dp.apply(t, &Intent::Add(tunnel.clone()));
        assert_eq!(dp.violations().last().map(|v| &v.1), Some(&Violation::AddPresent(tunnel.clone())));
        let other = Resource::PrefixToTunnel { prefix: prefix(), peer: OTHER };
        dp.apply(t, &Intent::Add(other.clone()));
        assert!(matches!(dp.violations().last().map(|v| &v.1), Some(Violation::ConflictingRoute { .. })));
        dp.apply(t, &Intent::Remove(other.clone()));
        dp.apply(t, &Intent::Remove(other));
        assert!(matches!(dp.violations().last().map(|v| &v.1), Some(Violation::RemoveAbsent(_))));
        dp.apply(t, &Intent::Remove(tunnel));
        assert!(matches!(dp.violations().last().map(|v| &v.1), Some(Violation::TunnelRemovedUnderRoute { .. })));
        assert_eq!(dp.violations().len(), 6);
        assert_eq!(dp.resources().iter().collect::<Vec<_>>(), vec![&route]);
    }

    #[test]
    fn steering_into_a_missing_tunnel_is_a_violation() {
        use pmip6_engine::flow::{FlowKey, IpVersion, PortSource};
        let t = Duration::ZERO;
        let key = FlowKey {
            src: OTHER,
            dst: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1),
            src_port: 1,
            dst_port: 5004,
            flow_label: 0,
            protocol: 17,
            version: IpVersion::V6,
            ports: PortSource::Transport,
        };
        let steering = Resource::Steering(Steering::Flow { key, route: Route::Tunnel(PEER) });
        let tunnel = Resource::Tunnel { local: LOCAL, peer: PEER };
        let mut dp = DataPlane::new(LOCAL);
        dp.apply(t, &Intent::Add(steering.clone()));
        assert_eq!(dp.violations().last().map(|v| &v.1), Some(&Violation::RouteIntoMissingTunnel(steering.clone())));
        dp.apply(t, &Intent::Add(tunnel.clone()));
        dp.apply(t, &Intent::Remove(tunnel));
        assert!(matches!(dp.violations().last().map(|v| &v.1), Some(Violation::TunnelRemovedUnderRoute { .. })));
        let base = Resource::Steering(Steering::Flow { key, route: Route::PrefixRoute });
        let before = dp.violations().len();
        dp.apply(t, &Intent::Add(base));
        assert_eq!(dp.violations().len(), before);
    }

    #[test]
    fn a_clean_sequence_records_nothing() {
        let t = Duration::ZERO;
        let tunnel = Resource::Tunnel { local: LOCAL, peer: PEER };
        let own = Resource::PrefixToAccess { prefix: prefix(), interface: InterfaceId(1), next_hop: None };
        let up = Resource::SourceRouteToTunnel { prefix: prefix(), interface: InterfaceId(1), peer: PEER };
        let mut dp = DataPlane::new(LOCAL);
        for i in [Intent::Add(tunnel.clone()), Intent::Add(own.clone()), Intent::Add(up.clone())] {
            dp.apply(t, &i);
        }
        for i in [Intent::Remove(up), Intent::Remove(own), Intent::Remove(tunnel)] {
            dp.apply(t, &i);
        }
        assert!(dp.violations().is_empty());
        assert!(dp.is_empty());
        assert_eq!(dp.history().len(), 6);
    }
}
