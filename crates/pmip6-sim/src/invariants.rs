//! What must hold of a domain, checked from the outside: each check returns the broken rules
//! as sentences (empty when all hold), so that a test can assert on them and print them.
//!
//! - [`Domain::check_invariants`]: at every instant, whatever the network does.
//! - [`Domain::check_converged`]: once the signalling had time to settle on a lossless network:
//!   every attached interface is served, and the LMA, the MAGs and the mobile nodes agree.
//! - [`Domain::check_empty`]: once every interface left and every timer ran out.

use std::collections::{BTreeMap, BTreeSet};

use core::time::Duration;

use pmip6_engine::Resource;
use pmip6_engine::lma::BindingState as LmaState;
use pmip6_engine::mag::{BindingState, MagConfig, PbuKind};
use pmip6_wire::{MnIdentifier, Prefix};

use crate::{Domain, MagId, proxy_coa};

/// The longest a MAG session can stay in Registering: the sum of the waits of every
/// transmission of the initial PBU (RFC 5213 §6.9.4, RFC 6275 §11.8: the first wait, doubled
/// each time up to the maximum, for `max_transmissions` transmissions).
pub fn registration_budget(config: &MagConfig) -> Duration {
    let r = &config.registration;
    let mut wait = r.initial_bindack_timeout_first_reg.unwrap_or(r.initial_bindack_timeout);
    let mut total = Duration::ZERO;
    for _ in 0..r.max_transmissions.max(1) {
        total += wait;
        wait = wait.saturating_mul(2).min(r.max_bindack_timeout.max(r.initial_bindack_timeout));
    }
    total
}

impl Domain {
    /// What the LMA's data plane must hold given its binding cache: for each active entry, one
    /// route per prefix into the tunnel of its route peer, and one tunnel per MAG with an
    /// active attachment (RFC 5213 §5.6; the engine's documented invariant); plus every
    /// steering entry its flow-mobility engine has installed.
    pub fn lma_implied_resources(&self) -> BTreeSet<Resource> {
        let lmaa = self.lma_config().lmaa;
        let mut out = BTreeSet::new();
        for b in self.lma().binding_cache().iter() {
            if b.state() != LmaState::Active {
                continue;
            }
            for a in b.attachments() {
                out.insert(Resource::Tunnel { local: lmaa, peer: a.proxy_coa() });
            }
            if let Some(peer) = b.route_peer() {
                for prefix in b.prefixes() {
                    out.insert(Resource::PrefixToTunnel { prefix: *prefix, peer });
                }
                // RFC 5844 §3.1.4: the IPv4 home address goes with the prefixes.
                if let Some(address) = b.ipv4_home_address() {
                    out.insert(Resource::Ipv4HomeAddressToTunnel { address, peer });
                }
            }
        }
        // And what the flow-mobility engine steers (draft §4.2, §5.3).
        if let Some(flows) = self.lma().flow_steering() {
            out.extend(flows.installed().into_iter().map(Resource::Steering));
        }
        out
    }

    /// What MAG `mag`'s data plane must hold given its Binding Update List (RFC 5213 §6.10,
    /// draft §4.3 and Figure 4, as the MAG module documents it): for each bound session the
    /// tunnel; each own prefix on-link and source-routed; each MuHo prefix via the MN's
    /// link-local address (unless it is an own prefix of another session of the MN at this
    /// MAG) and source-routed; an IPv4 home address on-link and source-routed. Downlink routes here are claims: the data plane holds one route
    /// per prefix, one of its claimants.
    pub fn mag_implied_resources(&self, mag: MagId) -> BTreeSet<Resource> {
        let config = self.mag_config(mag);
        let bul = self.mag(mag).binding_update_list();
        let mut own_here: BTreeMap<&MnIdentifier, BTreeSet<Prefix>> = BTreeMap::new();
        for e in bul.iter().filter(|e| e.is_bound()) {
            own_here.entry(&e.key.mn_id).or_default().extend(e.home_network_prefixes.iter().copied());
        }
        let mut out = BTreeSet::new();
        for e in bul.iter().filter(|e| e.is_bound()) {
            let interface = e.key.interface;
            let peer = config.lmaa;
            out.insert(Resource::Tunnel { local: config.proxy_coa, peer });
            for &prefix in &e.home_network_prefixes {
                out.insert(Resource::PrefixToAccess { prefix, interface, next_hop: None });
                out.insert(Resource::SourceRouteToTunnel { prefix, interface, peer });
            }
            // RFC 5844 §3.2.4: the IPv4 home address on-link and source-routed.
            if let Some((address, _)) = e.ipv4_home_address {
                out.insert(Resource::Ipv4HomeAddressToAccess { address, interface });
                out.insert(Resource::Ipv4SourceRouteToTunnel { address, interface, peer });
                if let Some(router) = e.ipv4_default_router {
                    out.insert(Resource::Ipv4DefaultRouterOnAccess { address: router, interface });
                }
            }
            for &prefix in e.other_prefixes.iter().filter(|p| !e.home_network_prefixes.contains(p)) {
                if !own_here.get(&e.key.mn_id).is_some_and(|own| own.contains(&prefix)) {
                    out.insert(Resource::PrefixToAccess { prefix, interface, next_hop: Some(e.mn_link_local) });
                }
                out.insert(Resource::SourceRouteToTunnel { prefix, interface, peer });
            }
        }
        out
    }

    /// The rules that hold at every instant:
    /// - no [`crate::Problem`] and no data-plane [`crate::Violation`] anywhere;
    /// - a prefix belongs to at most one entry, hence one mobile node, in the LMA cache;
    /// - the LMA data plane is exactly what its cache implies (one route per prefix of each
    ///   active entry, one tunnel per MAG in use);
    /// - each MAG's data plane is exactly what its engine says it installed and what its
    ///   Binding Update List implies;
    /// - no PBU outlives its retransmission budget: a pending PBU has not been sent more often
    ///   than configured and its retransmission is not overdue, and no session stays in
    ///   Registering longer than [`registration_budget`].
    pub fn check_invariants(&self) -> Vec<String> {
        let now = self.now();
        let mut out = Vec::new();
        for (t, p) in self.problems() {
            out.push(format!("problem at {t:?}: {p:?}"));
        }
        for (node, t, v) in self.data_plane_violations() {
            out.push(format!("data plane of {node:?} at {t:?}: {v}"));
        }
        let mut owner: BTreeMap<Prefix, &MnIdentifier> = BTreeMap::new();
        for b in self.lma().binding_cache().iter() {
            for p in b.prefixes() {
                if let Some(other) = owner.insert(*p, b.mn_id()) {
                    out.push(format!("prefix {p} in two LMA entries (of {other} and {})", b.mn_id()));
                }
            }
        }
        let implied = self.lma_implied_resources();
        let installed = self.lma_data_plane().resources();
        if &implied != installed {
            out.push(format!(
                "LMA data plane differs from its cache: missing {:?}, extra {:?}",
                implied.difference(installed).collect::<Vec<_>>(),
                installed.difference(&implied).collect::<Vec<_>>()
            ));
        }
        for m in (0..self.mag_count()).map(MagId) {
            let installed = self.mag_data_plane(m).resources();
            let engine: BTreeSet<Resource> = self.mag(m).installed_resources().cloned().collect();
            if &engine != installed {
                out.push(format!(
                    "MAG {} engine and data plane disagree: engine {engine:?}, data plane {installed:?}",
                    m.0
                ));
            }
            // Everything but the downlink routes exactly; of the downlink routes, exactly one
            // per claimed prefix or IPv4 home address, and one of its claimants (sessions of
            // one MN, or of two MNs while a restarted LMA hands out a prefix a MAG still
            // serves, can claim a destination through several links; the kernel holds one
            // route).
            let implied = self.mag_implied_resources(m);
            let is_route =
                |r: &&Resource| matches!(r, Resource::PrefixToAccess { .. } | Resource::Ipv4HomeAddressToAccess { .. });
            let implied_rest: BTreeSet<&Resource> = implied.iter().filter(|r| !is_route(r)).collect();
            let installed_rest: BTreeSet<&Resource> = installed.iter().filter(|r| !is_route(r)).collect();
            if implied_rest != installed_rest {
                out.push(format!(
                    "MAG {} data plane differs from its Binding Update List: missing {:?}, extra {:?}",
                    m.0,
                    implied_rest.difference(&installed_rest).collect::<Vec<_>>(),
                    installed_rest.difference(&implied_rest).collect::<Vec<_>>()
                ));
            }
            let destination = |r: &Resource| match r {
                Resource::PrefixToAccess { prefix, .. } => Some(prefix.to_string()),
                Resource::Ipv4HomeAddressToAccess { address, .. } => Some(address.to_string()),
                _ => None,
            };
            let mut claims: BTreeMap<String, (Vec<&Resource>, Vec<&Resource>)> = BTreeMap::new();
            for r in &implied {
                if let Some(d) = destination(r) {
                    claims.entry(d).or_default().0.push(r);
                }
            }
            for r in installed {
                if let Some(d) = destination(r) {
                    claims.entry(d).or_default().1.push(r);
                }
            }
            for (prefix, (candidates, routes)) in claims {
                if routes.len() != usize::from(!candidates.is_empty()) || routes.iter().any(|r| !candidates.contains(r))
                {
                    out.push(format!(
                        "MAG {} downlink routes of {prefix}: installed {routes:?}, claimed by {candidates:?}",
                        m.0
                    ));
                }
            }
            let config = self.mag_config(m);
            let budget = registration_budget(config);
            for e in self.mag(m).binding_update_list().iter() {
                if let Some(p) = e.pending {
                    if p.transmissions > config.registration.max_transmissions {
                        out.push(format!("MAG {} {:?}: PBU sent {} times", m.0, e.key, p.transmissions));
                    }
                    if p.last_sent + p.timeout < now {
                        out.push(format!(
                            "MAG {} {:?}: retransmission overdue since {:?}",
                            m.0,
                            e.key,
                            p.last_sent + p.timeout
                        ));
                    }
                }
                if e.state == BindingState::Registering
                    && let Some(since) = self.registering_since(m, &e.key)
                    && now > since + budget
                {
                    out.push(format!(
                        "MAG {} {:?}: Registering since {since:?}, past the {budget:?} budget",
                        m.0, e.key
                    ));
                }
                if e.state == BindingState::Registering && e.pending.is_none_or(|p| p.kind != PbuKind::Registration) {
                    out.push(format!("MAG {} {:?}: Registering without a registration PBU out", m.0, e.key));
                }
            }
        }
        out
    }

    /// Agreement once the signalling settled on a lossless network:
    /// - every attached interface has a Bound session at its MAG, with no PBU out;
    /// - the LMA has an active entry for it at that MAG (by MN-ID and MN-LL-ID) with the same
    ///   prefixes, routed there;
    /// - the interface was advertised those prefixes, and none but the prefixes bound on its
    ///   link (exactly its own when it is alone on the link), and has a router;
    /// - for a multihoming mobile node, the MAG knows the prefixes of its other active
    ///   sessions (draft §5.2.2, §5.2.3), and no others;
    /// - no MAG session, and no active LMA entry, serves an interface that is not attached.
    pub fn check_converged(&self) -> Vec<String> {
        let now = self.now();
        let mut out = Vec::new();
        let mut served: BTreeSet<(MagId, Vec<u8>)> = BTreeSet::new();
        for (n, mn) in (0..self.mobile_node_count()).map(|n| (n, self.mobile_node(crate::MnId(n)))) {
            for (i, iface) in mn.interfaces.iter().enumerate() {
                let Some(point) = iface.attached else { continue };
                let who = format!("MN {n} interface {i} at MAG {} {:?}", point.mag.0, point.interface);
                served.insert((point.mag, iface.mac.to_vec()));
                let bul = self.mag(point.mag).binding_update_list();
                let Some(entry) = bul.get_by_link(point.interface, iface.mac) else {
                    out.push(format!("{who}: no session at its MAG"));
                    continue;
                };
                if !entry.is_bound() || entry.pending.is_some() {
                    out.push(format!("{who}: session {:?} with {:?} out", entry.state, entry.pending.map(|p| p.kind)));
                    continue;
                }
                let hnps: BTreeSet<Prefix> = entry.home_network_prefixes.iter().copied().collect();
                let lma = self.lma().binding_cache().sessions(&mn.mn_id).find(|b| {
                    b.state() == LmaState::Active
                        && b.attachments().any(|a| {
                            a.proxy_coa() == proxy_coa(point.mag) && a.mn_link_layer_id() == Some(&iface.mac[..])
                        })
                });
                let Some(lma) = lma else {
                    out.push(format!("{who}: no active LMA entry"));
                    continue;
                };
                let lma_prefixes: BTreeSet<Prefix> = lma.prefixes().iter().copied().collect();
                if lma_prefixes != hnps {
                    out.push(format!("{who}: MAG has {hnps:?}, LMA {lma_prefixes:?}"));
                }
                if lma.route_peer() != Some(proxy_coa(point.mag)) {
                    out.push(format!("{who}: LMA routes it to {:?}", lma.route_peer()));
                }
                // On a link shared by several interfaces, RAs to all-nodes (after an L2 attach)
                // reach every interface on it: what one learns may include the others' prefixes.
                let on_link: BTreeSet<Prefix> = bul
                    .iter()
                    .filter(|e| e.key.interface == point.interface && e.is_bound())
                    .flat_map(|e| e.home_network_prefixes.iter().copied())
                    .collect();
                let advertised: BTreeSet<Prefix> = iface.valid_prefixes(now).into_iter().collect();
                if !hnps.is_subset(&advertised) || !advertised.is_subset(&on_link) {
                    out.push(format!(
                        "{who}: advertised {advertised:?}, bound {hnps:?}, bound on the link {on_link:?}"
                    ));
                }
                if iface.router_at(now).is_none() {
                    out.push(format!("{who}: no default router"));
                }
                if mn.multihoming {
                    let others: BTreeSet<Prefix> = self
                        .lma()
                        .binding_cache()
                        .sessions(&mn.mn_id)
                        .filter(|b| b.id() != lma.id() && b.state() == LmaState::Active)
                        .flat_map(|b| b.prefixes().to_vec())
                        .collect();
                    if entry.other_prefixes != others {
                        out.push(format!(
                            "{who}: MAG knows other prefixes {:?}, LMA has {others:?}",
                            entry.other_prefixes
                        ));
                    }
                }
            }
        }
        for m in (0..self.mag_count()).map(MagId) {
            for e in self.mag(m).binding_update_list().iter() {
                if !served.contains(&(m, e.key.mac.to_vec())) {
                    out.push(format!("MAG {} has {:?} ({:?}) for no attached interface", m.0, e.key, e.state));
                }
            }
        }
        for b in self.lma().binding_cache().iter().filter(|b| b.state() == LmaState::Active) {
            for a in b.attachments() {
                let mag = (0..self.mag_count()).map(MagId).find(|m| proxy_coa(*m) == a.proxy_coa());
                let lli = a.mn_link_layer_id().map(<[u8]>::to_vec).unwrap_or_default();
                if !mag.is_some_and(|m| served.contains(&(m, lli))) {
                    out.push(format!("LMA entry {:?} serves no attached interface", b));
                }
            }
        }
        out
    }

    /// Nothing left anywhere: no binding at the LMA or any MAG, no data-plane state (tunnels
    /// included), nothing in flight, no timer armed.
    pub fn check_empty(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.lma().binding_cache().is_empty() {
            out.push(format!("LMA cache: {:?}", self.lma().binding_cache().iter().collect::<Vec<_>>()));
        }
        if !self.lma_data_plane().is_empty() {
            out.push(format!("LMA data plane: {:?}", self.lma_data_plane().resources()));
        }
        if let Some(t) = self.lma().poll_timeout() {
            out.push(format!("LMA timer at {t:?}"));
        }
        for m in (0..self.mag_count()).map(MagId) {
            if !self.mag(m).binding_update_list().is_empty() {
                out.push(format!(
                    "MAG {} list: {:?}",
                    m.0,
                    self.mag(m).binding_update_list().iter().collect::<Vec<_>>()
                ));
            }
            if !self.mag_data_plane(m).is_empty() {
                out.push(format!("MAG {} data plane: {:?}", m.0, self.mag_data_plane(m).resources()));
            }
            if let Some(t) = self.mag(m).poll_timeout() {
                out.push(format!("MAG {} timer at {t:?}", m.0));
            }
        }
        if self.in_flight() > 0 {
            out.push(format!("{} packets in flight", self.in_flight()));
        }
        out
    }
}
