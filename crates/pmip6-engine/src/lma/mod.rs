//! The local mobility anchor (RFC 5213 §5) with the multihoming extensions of
//! draft-bernardos-mif-pmip-02 (§4.2, §5.2.2, §5.2.3, §5.4).
//!
//! [`Lma`] owns the binding cache, the home network prefix pools and the IPv4 home network of
//! RFC 5844 (`ipv4_pool`: home addresses for sessions that ask), the per-MAG state (tunnel
//! reference counts, heartbeats) and every exchange the LMA starts: notifications of prefix-set
//! changes (RFC 7077 UPN, or RFC 5846 BRI as the draft suggests), revocations (RFC 5846) and
//! heartbeats (RFC 5847). It is sans-IO and deterministic:
//!
//! ```text
//!   handle_message(now, Received) ─┐                      ┌─► poll_transmit() → PBA UPN BRI HB BE
//!   handle_timeout(now)           ─┼─► Lma (cache, pools) ─┼─► poll_intent()   → tunnels, routes
//!   revoke(now, scope)            ─┘                      ├─► poll_event()    → logs, metrics
//!                                                         └─► poll_timeout()  → next deadline
//! ```
//!
//! Where things are: PBU processing in RFC 5213 §5.3.1 order and the §5.4.1 lookup in `pbu`;
//! notifications and their retransmission in `notify`; LMA-initiated revocation in
//! `revocation`; heartbeats and tunnel reference counts in `heartbeat`; the cache in
//! [`binding_cache`]; prefix allocation in `pool`; flow mobility (the [`FlowSteering`] engine
//! fed from the cache, RFC 7864 FLOW-MOBILITY notifications, `handle_packet`, `move_flow`,
//! `move_selector`, `set_operator_rules`, `set_mobile_node_rules`) in `flows`.
//!
//! Data-plane intents keep one invariant: at any time, each prefix of an active entry has
//! exactly one `PrefixToTunnel` route, to the Proxy-CoA of its first attachment, and
//! each MAG with at least one active attachment has exactly one `Tunnel`. A tunnel is added
//! before the first route or steering entry into it and removed after the last; a moving
//! prefix loses its old route before it gets the new one. In the virtual-interface mode (draft
//! §5.4) the shared prefixes stay routed to the MAG of the interface that attached first, the
//! default path (a further interface is no handoff), and pass to the next oldest when it
//! leaves; moving individual flows to the other attachments (draft §4.2, §5.3) is the
//! flow-mobility engine's job, on top of these routes: its `Resource::Steering` entries join
//! the same intent queue.

pub mod binding_cache;
pub mod config;
mod event;
mod flows;
mod hash;
mod heartbeat;
mod ipv4_pool;
mod notify;
mod pbu;
mod pool;
mod revocation;

use core::net::{Ipv4Addr, Ipv6Addr};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use pmip6_wire::{BindingError, BindingErrorStatus, Message, MnIdentifier, MobilityOption, Prefix, RevocationKind};

pub use binding_cache::{Attachment, BindingCache, BindingId, BindingRef, BindingState, LinkLayerId};
pub use config::{LmaConfig, MessageOrdering, MobileNodePolicy, NotifyMode, Retransmission};
pub use event::{AttachmentRemoval, DeleteReason, LmaEvent, NotificationAnswer};
pub use heartbeat::PeerStatus;
pub use ipv4_pool::Ipv4HomeNetwork;

use crate::common::{Intent, Now, Received, Resource, Transmit};
use crate::flow::FlowSteering;
use crate::timer::TimerQueue;
use binding_cache::{BindingState as State, PrefixList};
use hash::{Map, Set};
use heartbeat::Peer;
use ipv4_pool::Ipv4Pool;
use notify::Outstanding;
use pbu::Hold;
use pool::PrefixPools;

/// What an LMA-initiated revocation covers (RFC 5846 §5, §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationScope {
    /// Every session of one mobile node: one BRI per MAG serving it, with its MN-ID and HNPs.
    MobileNode(MnIdentifier),
    /// Every session at one MAG: one BRI with the G (global) flag.
    Mag(Ipv6Addr),
    /// Every session: one global BRI to every MAG.
    All,
}

/// The LMA's timers other than binding lifetimes (those live in the cache's deadline index).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Timer {
    /// MaxDelayBeforeNewBCEAssign of a held PBU.
    Hold(u64),
    /// Retransmission of an outstanding UPN or BRI to a peer, by Sequence Number.
    Retransmit(Ipv6Addr, u16),
    /// Next heartbeat request to a MAG.
    Heartbeat(Ipv6Addr),
}

/// The data-plane footprint of one entry: what it routes where, and which tunnels it uses.
struct Footprint {
    route: Option<Ipv6Addr>,
    prefixes: PrefixList,
    ipv4: Option<Ipv4Addr>,
    tunnels: Vec<Ipv6Addr>,
    /// A digest of what the flow engine sees of the entry: its state and, per attachment, the
    /// Proxy-CoA, ATT and MN-LL-ID. A plain refresh leaves it, and the steering, unchanged.
    steering: u64,
}

impl Footprint {
    fn empty() -> Self {
        Self { route: None, prefixes: PrefixList::empty(), ipv4: None, tunnels: Vec::new(), steering: 0 }
    }

    /// Whether the flow engine must hear of the change from `self` to `after`.
    fn steering_changed(&self, after: &Footprint) -> bool {
        self.route != after.route
            || self.prefixes != after.prefixes
            || self.ipv4 != after.ipv4
            || self.steering != after.steering
    }
}

/// The local mobility anchor engine.
#[derive(Debug)]
pub struct Lma {
    config: LmaConfig,
    policies: Map<MnIdentifier, MobileNodePolicy>,
    authorized_mags: Option<Set<Ipv6Addr>>,
    cache: BindingCache,
    pools: PrefixPools,
    ipv4_pool: Option<Ipv4Pool>,
    peers: BTreeMap<Ipv6Addr, Peer>,
    timers: TimerQueue<Timer>,
    outstanding: BTreeMap<(Ipv6Addr, u16), Outstanding>,
    notified: Map<BindingId, Vec<(Ipv6Addr, u16)>>,
    holds: BTreeMap<u64, Hold>,
    next_hold: u64,
    next_sequence: u16,
    next_heartbeat_sequence: u32,
    last_binding_error: Option<Now>,
    transmits: VecDeque<Transmit>,
    intents: VecDeque<Intent>,
    events: VecDeque<LmaEvent>,
    flows: Option<FlowSteering>,
    steering_dirty: BTreeSet<MnIdentifier>,
    flow_learned: BTreeMap<(BindingId, Ipv6Addr), Vec<Prefix>>,
    input_mark: usize,
}

impl Lma {
    /// An LMA with an empty binding cache. Unusable parts of `config` are skipped, each
    /// reported by an [`LmaEvent::ConfigurationIgnored`].
    pub fn new(mut config: LmaConfig) -> Self {
        let mut events = VecDeque::new();
        for problem in config.problems() {
            events.push_back(LmaEvent::ConfigurationIgnored { problem });
        }
        if config.heartbeat_interval.is_some_and(|i| i.is_zero()) {
            config.heartbeat_interval = None;
        }
        let (pools, _unusable) = PrefixPools::new(&config.prefix_pools, config.allocated_prefix_len);
        let ipv4_pool = config.ipv4_home_network.filter(|n| n.problems().is_empty()).map(Ipv4Pool::new);
        let policies = config.mobile_nodes.iter().map(|p| (p.mn_id.clone(), p.clone())).collect();
        let authorized_mags = config.authorized_mags.as_ref().map(|mags| mags.iter().copied().collect());
        Self {
            flows: config.flow.clone().map(FlowSteering::new),
            next_sequence: config.initial_sequence,
            next_heartbeat_sequence: config.initial_heartbeat_sequence,
            config,
            policies,
            authorized_mags,
            cache: BindingCache::new(),
            pools,
            ipv4_pool,
            peers: BTreeMap::new(),
            timers: TimerQueue::new(),
            outstanding: BTreeMap::new(),
            notified: Map::default(),
            holds: BTreeMap::new(),
            next_hold: 0,
            last_binding_error: None,
            transmits: VecDeque::new(),
            intents: VecDeque::new(),
            events,
            steering_dirty: BTreeSet::new(),
            flow_learned: BTreeMap::new(),
            input_mark: 0,
        }
    }

    /// The configuration in effect.
    pub fn config(&self) -> &LmaConfig {
        &self.config
    }

    /// Processes a Mobility Header message from a MAG: PBU, BRA, UPA and Heartbeat are
    /// handled; an unknown MH type is answered with a Binding Error (RFC 6275 §9.2); anything
    /// else is reported and dropped.
    pub fn handle_message(&mut self, now: Now, received: Received) {
        let Received { src, dst, message } = received;
        self.begin_input();
        match message {
            Message::BindingUpdate(bu) => self.on_binding_update(now, src, dst, bu),
            Message::BindingRevocation(br) => match br.kind {
                RevocationKind::Acknowledgement(status) => self.on_revocation_ack(now, src, br.sequence, status),
                RevocationKind::Indication(_) => {
                    self.ignored(src, "Binding Revocation Indication from a MAG (not supported)")
                }
                RevocationKind::Unknown { .. } => self.ignored(src, "Binding Revocation of unknown type"),
            },
            Message::UpdateNotificationAck(upa) => self.on_update_notification_ack(now, src, upa),
            Message::Heartbeat(hb) => self.on_heartbeat(now, src, dst, hb),
            Message::BindingError(be) => {
                self.events.push_back(LmaEvent::BindingErrorReceived { from: src, status: be.status })
            }
            Message::BindingAck(_) => self.ignored(src, "Binding Acknowledgement sent to the LMA"),
            Message::UpdateNotification(_) => self.ignored(src, "Update Notification sent to the LMA"),
            Message::Unknown(m) => self.on_unknown_type(now, src, dst, m.mh_type),
        }
        self.finish_input(now);
    }

    /// Processes every deadline at or before `now`: binding lifetimes, de-registered entries
    /// due for deletion, held PBUs, retransmissions, heartbeats.
    pub fn handle_timeout(&mut self, now: Now) {
        self.begin_input();
        loop {
            let binding = self.cache.next_deadline().filter(|(t, _)| *t <= now);
            let timer = self.timers.next_deadline().filter(|t| *t <= now);
            match (binding, timer) {
                (Some((at, id)), t) if t.is_none_or(|t| at <= t) => self.on_binding_deadline(now, id),
                (_, Some(_)) => match self.timers.pop_expired(now) {
                    Some(Timer::Hold(hold)) => self.on_hold_expired(now, hold),
                    Some(Timer::Retransmit(peer, sequence)) => self.on_retransmit(now, peer, sequence),
                    Some(Timer::Heartbeat(peer)) => self.on_heartbeat_timer(now, peer),
                    None => break,
                },
                _ => break,
            }
        }
        if let Some(flows) = self.flows.as_mut()
            && flows.poll_timeout().is_some_and(|t| t <= now)
        {
            // Idle flows expire and their steering is withdrawn.
            flows.handle_timeout(now);
        }
        self.finish_input(now);
    }

    /// Revokes sessions (RFC 5846): they are deleted at once (routes and tunnels removed) and
    /// their MAGs are sent a Binding Revocation Indication, retransmitted until acknowledged.
    pub fn revoke(&mut self, now: Now, scope: RevocationScope) {
        self.begin_input();
        self.revoke_scope(now, scope);
        self.finish_input(now);
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next data-plane change, in the order they must be applied.
    pub fn poll_intent(&mut self) -> Option<Intent> {
        self.intents.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<LmaEvent> {
        self.events.pop_front()
    }

    /// When [`Lma::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Now> {
        let binding = self.cache.next_deadline().map(|(t, _)| t);
        let flows = self.flows.as_ref().and_then(FlowSteering::poll_timeout);
        [binding, self.timers.next_deadline(), flows].into_iter().flatten().min()
    }

    /// The binding cache, read-only.
    pub fn binding_cache(&self) -> &BindingCache {
        &self.cache
    }

    // ---- shared machinery --------------------------------------------------------------------

    fn ignored(&mut self, from: Ipv6Addr, reason: &'static str) {
        self.events.push_back(LmaEvent::Ignored { from, reason });
    }

    fn send(&mut self, src: Ipv6Addr, dst: Ipv6Addr, message: Message) {
        self.transmits.push_back(Transmit::Mobility { src, dst, message });
    }

    fn take_sequence(&mut self) -> u16 {
        let s = self.next_sequence;
        self.next_sequence = s.wrapping_add(1);
        s
    }

    /// RFC 6275 §9.2: an unrecognised MH type is answered with a Binding Error, status 2;
    /// §9.3.3: the Home Address field is the unspecified address when the offending packet had
    /// no Home Address option (PMIPv6 never uses one), and Binding Errors are rate-limited.
    fn on_unknown_type(&mut self, now: Now, src: Ipv6Addr, dst: Ipv6Addr, mh_type: u8) {
        if self.last_binding_error.is_some_and(|t| now < t + self.config.binding_error_interval) {
            self.ignored(src, "unknown MH type (Binding Error rate-limited)");
            return;
        }
        self.last_binding_error = Some(now);
        let be = BindingError {
            status: BindingErrorStatus::UnrecognizedMhType,
            home_address: Ipv6Addr::UNSPECIFIED,
            options: Vec::new(),
        };
        self.send(dst, src, Message::BindingError(be));
        self.events.push_back(LmaEvent::BindingErrorSent { to: src, mh_type });
    }

    /// The data-plane footprint of an entry.
    fn footprint(&self, id: BindingId) -> Footprint {
        use core::hash::{BuildHasher, Hash, Hasher};
        match self.cache.binding(id) {
            Some(b) => {
                let mut digest = hash::FixedState::default().build_hasher();
                (b.state == State::Active).hash(&mut digest);
                for a in b.attachments() {
                    (a.proxy_coa, a.att, &a.mn_ll_id).hash(&mut digest);
                }
                Footprint {
                    route: b.route_peer(),
                    prefixes: b.prefixes.clone(),
                    ipv4: b.ipv4_home_address,
                    tunnels: b.tunnel_peers(),
                    steering: digest.finish() | 1,
                }
            }
            None => Footprint::empty(),
        }
    }

    /// Emits the intents that take the data plane from `before` to `after` for one entry:
    /// tunnel references first, then route removals, route additions, and released tunnels.
    fn apply_footprint(&mut self, now: Now, before: &Footprint, after: &Footprint) {
        let mut released = before.tunnels.clone();
        let mut acquired = Vec::new();
        for peer in &after.tunnels {
            match released.iter().position(|p| p == peer) {
                Some(i) => {
                    released.swap_remove(i);
                }
                None => acquired.push(*peer),
            }
        }
        for peer in acquired {
            self.peer_ref(now, peer);
        }
        if let Some(old) = before.route {
            for prefix in before.prefixes.as_slice() {
                let kept = after.route == Some(old) && after.prefixes.as_slice().contains(prefix);
                if !kept {
                    self.intents.push_back(Intent::Remove(Resource::PrefixToTunnel { prefix: *prefix, peer: old }));
                }
            }
        }
        // RFC 5844 §3.1.4: the IPv4 home address is routed with the prefixes.
        if let (Some(old), Some(address)) = (before.route, before.ipv4)
            && (after.route != Some(old) || after.ipv4 != Some(address))
        {
            self.intents.push_back(Intent::Remove(Resource::Ipv4HomeAddressToTunnel { address, peer: old }));
        }
        if let Some(new) = after.route {
            for prefix in after.prefixes.as_slice() {
                let had = before.route == Some(new) && before.prefixes.as_slice().contains(prefix);
                if !had {
                    self.intents.push_back(Intent::Add(Resource::PrefixToTunnel { prefix: *prefix, peer: new }));
                }
            }
            if let Some(address) = after.ipv4
                && (before.route != Some(new) || before.ipv4 != Some(address))
            {
                self.intents.push_back(Intent::Add(Resource::Ipv4HomeAddressToTunnel { address, peer: new }));
            }
        }
        for peer in released {
            self.peer_unref(peer);
        }
    }

    /// The prefixes of the mobile node's *other* active sessions (draft §5.2.2).
    fn other_live_prefixes(&self, id: BindingId) -> Vec<Prefix> {
        let Some(b) = self.cache.binding(id) else { return Vec::new() };
        let mut prefixes = Vec::new();
        for s in self.cache.group_sessions(b.group()) {
            if *s == id {
                continue;
            }
            if let Some(other) = self.cache.binding(*s)
                && other.state == State::Active
            {
                prefixes.extend_from_slice(other.prefixes.as_slice());
            }
        }
        prefixes
    }

    /// The MuHo options for a set of prefixes: one per prefix, or one empty (ALL_ZERO) option
    /// when there is none (draft §5.2.2: "otherwise it replies with an empty option").
    fn muho_options(&self, prefixes: &[Prefix]) -> impl Iterator<Item = MobilityOption> + use<> {
        let option_type = self.config.parse.muho_option_type();
        let list: Vec<Prefix> = if prefixes.is_empty() { vec![Prefix::ALL_ZERO] } else { prefixes.to_vec() };
        list.into_iter().map(move |prefix| MobilityOption::MuHo { option_type, prefix })
    }

    /// Deletes an entry at once: routes and tunnel references go, prefixes return to the
    /// pools, notifications to it stop, PBUs held for it become new sessions. Returns the MN-ID
    /// when the entry was active, i.e. when the MN's live prefix set changed and its other MAGs
    /// must hear of it; the caller notifies them once it has made all its changes.
    fn delete_binding(&mut self, now: Now, id: BindingId) -> Option<MnIdentifier> {
        let before = self.footprint(id);
        self.mark_steering(id);
        let (binding, mn_id) = self.cache.remove(id)?;
        self.apply_footprint(now, &before, &Footprint::empty());
        for prefix in binding.prefixes.as_slice() {
            self.pools.release(prefix);
        }
        if let (Some(pool), Some(address)) = (self.ipv4_pool.as_mut(), binding.ipv4_home_address) {
            pool.release(address);
        }
        self.cancel_notifications(id);
        self.resolve_holds_on_delete(now, id);
        (binding.state == State::Active).then_some(mn_id)
    }

    /// A binding's deadline passed: delete a de-registered entry, expire attachments whose
    /// lifetime ended (RFC 5213 §5.3: the entry and its routes go when the lifetime ends).
    fn on_binding_deadline(&mut self, now: Now, id: BindingId) {
        let Some(b) = self.cache.binding(id) else { return };
        let now_nanos = binding_cache::nanos(now);
        if b.state == State::Deregistered {
            // RFC 5213 §5.3.5: MinDelayBeforeBCEDelete elapsed.
            self.delete_binding(now, id);
            self.events
                .push_back(LmaEvent::BindingDeleted { binding: id, reason: DeleteReason::DeregistrationDelayElapsed });
            return;
        }
        let expired: Vec<usize> =
            b.attachments().enumerate().filter(|(_, a)| a.expires <= now_nanos).map(|(i, _)| i).collect();
        if expired.is_empty() {
            // Nothing ended: a deadline left behind by mistake moves to the earliest expiry.
            self.cache.refresh_deadline(id);
            return;
        }
        if expired.len() == b.attachment_count() {
            // Every attachment ended.
            let proxy_coa = b.primary().proxy_coa;
            let mn = self.delete_binding(now, id);
            self.events.push_back(LmaEvent::BindingExpired { binding: id, proxy_coa });
            if let Some(mn) = mn {
                self.notify_prefix_change(now, &mn, None);
            }
            return;
        }
        // Virtual-interface mode: some interfaces' lifetimes ended, others go on.
        for index in expired.into_iter().rev() {
            self.remove_attachment(now, id, index, AttachmentRemoval::Expired);
        }
    }

    /// Removes one attachment of a multi-attachment entry, moving the route if it used it.
    fn remove_attachment(&mut self, now: Now, id: BindingId, index: usize, reason: AttachmentRemoval) {
        let before = self.footprint(id);
        let Some(removed) = self.cache.remove_attachment(id, index) else { return };
        self.flow_learned.remove(&(id, removed.proxy_coa));
        let after = self.footprint(id);
        self.apply_footprint(now, &before, &after);
        self.mark_steering(id);
        self.cancel_notifications_to(id, removed.proxy_coa);
        self.events.push_back(LmaEvent::AttachmentRemoved { binding: id, proxy_coa: removed.proxy_coa, reason });
    }

    /// Removes every attachment at `peer` (only those last registered at or before
    /// `registered_by`, when given): entries with no other attachment are deleted, and
    /// the other MAGs of each mobile node that lost a session are told. Returns how many
    /// sessions were deleted.
    fn remove_peer_sessions(
        &mut self,
        now: Now,
        peer: Ipv6Addr,
        reason: DeleteReason,
        registered_by: Option<Now>,
    ) -> usize {
        let at = |a: &Attachment| a.proxy_coa == peer && registered_by.is_none_or(|t| a.registered_at() <= t);
        let ids: Vec<BindingId> = self.cache.iter().filter(|b| b.attachments().any(at)).map(|b| b.id()).collect();
        let removal = match reason {
            DeleteReason::Revoked => AttachmentRemoval::Revoked,
            _ => AttachmentRemoval::PeerRestarted,
        };
        let mut changed: Vec<MnIdentifier> = Vec::new();
        let mut deleted = 0;
        for id in ids {
            let Some(b) = self.cache.binding(id) else { continue };
            let at_peer: Vec<usize> = b.attachments().enumerate().filter(|(_, a)| at(a)).map(|(i, _)| i).collect();
            if at_peer.len() < b.attachment_count() {
                for index in at_peer.into_iter().rev() {
                    self.remove_attachment(now, id, index, removal);
                }
                continue;
            }
            if let Some(mn) = self.delete_binding(now, id)
                && !changed.contains(&mn)
            {
                changed.push(mn);
            }
            deleted += 1;
            self.events.push_back(LmaEvent::BindingDeleted { binding: id, reason });
        }
        for mn in changed {
            self.notify_prefix_change(now, &mn, None);
        }
        deleted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_lma_has_nothing_to_do() {
        let mut lma = Lma::new(LmaConfig::new("2001:db8::1".parse().unwrap()));
        assert!(lma.poll_transmit().is_none());
        assert!(lma.poll_intent().is_none());
        assert!(lma.poll_event().is_none());
        assert!(lma.poll_timeout().is_none());
        assert!(lma.binding_cache().is_empty());
    }

    #[test]
    fn bad_configuration_is_reported_not_fatal() {
        let mut config = LmaConfig::new("2001:db8::1".parse().unwrap());
        config.prefix_pools = vec![Prefix::new("2001:db8::".parse().unwrap(), 80)];
        config.heartbeat_interval = Some(core::time::Duration::ZERO);
        let mut lma = Lma::new(config);
        let mut problems = 0;
        while let Some(e) = lma.poll_event() {
            assert!(matches!(e, LmaEvent::ConfigurationIgnored { .. }));
            problems += 1;
        }
        assert_eq!(problems, 2);
        assert_eq!(lma.config().heartbeat_interval, None);
    }
}
