//! The mobile access gateway (RFC 5213 §6) with the multihoming extensions of
//! draft-bernardos-mif-pmip-02: attachment detection, the Binding Update List, Proxy Binding
//! Updates with retransmission, refresh and de-registration, Router Advertisements to the mobile
//! nodes, the data-plane intents for the tunnel and the per-prefix routes, IPv4 home addresses
//! (RFC 5844), Update Notifications (RFC 7077), Binding Revocation (RFC 5846) and heartbeats
//! (RFC 5847).
//!
//! # I/O contract
//!
//! Sans-IO, deterministic. Inputs: [`Mag::handle_router_solicitation`], [`Mag::handle_attach`],
//! [`Mag::handle_detach`], [`Mag::handle_message`] (Mobility Header messages from the LMA) and
//! [`Mag::handle_timeout`], each with the current time. Outputs, polled after every input:
//! [`Mag::poll_transmit`] (PBUs, acknowledgements, heartbeats, RAs), [`Mag::poll_intent`]
//! (data-plane changes), [`Mag::poll_event`] (logs and metrics), [`Mag::poll_timeout`] (when to
//! call `handle_timeout` next). Nothing here panics on input: whatever is wrong becomes a
//! [`MagEvent`] and the state stays as it was.
//!
//! # Life of a session
//!
//! ```text
//!  RS / L2 attach ──► Registering ──PBA < 128──► Bound ──detach──► Deregistering ──PBA──► gone
//!   (known MAC)        │  PBU, back-off          │ ▲ refresh at 80 %      (lifetime 0, routes
//!                      │                         │ └─ PBA < 128           removed at once)
//!                      └─ PBA ≥ 128 / give up ─► gone ◄─ PBA ≥ 128, expiry, revocation
//! ```
//!
//! # Data plane (draft §3, §4.3, §5.2.1, Figure 4)
//!
//! For every bound session, with `if` its access link and `lmaa` the LMA:
//! - `Tunnel { proxy_coa, lmaa }`, shared by every mobile node (RFC 5213 §6.10.4);
//! - each own home network prefix: `PrefixToAccess { prefix, if, None }` (on-link) and
//!   `SourceRouteToTunnel { prefix, if, lmaa }` (RFC 5213 §6.10.5);
//! - each MuHo prefix (the MN's other interfaces): `PrefixToAccess { prefix, if,
//!   Some(mn_link_local) }` — Figure 4's `pref1::/64 via pref2::if2`, through the MN's address
//!   on this link because the MN answers Neighbor Solicitations only for addresses of the
//!   interface they arrive on — and `SourceRouteToTunnel { prefix, if, lmaa }` (uplink from the
//!   other prefix over this link, draft §3). The downlink route is left out when that prefix is
//!   an own prefix of another session of the MN at this MAG: its on-link route there is better
//!   and two routes for one prefix would collide.
//! - the IPv4 home address the LMA granted, when the MN's entry asks for one (RFC 5844 §3.2):
//!   `Ipv4HomeAddressToAccess { address, if }`, `Ipv4SourceRouteToTunnel { address, if,
//!   lmaa }`, and the default router the PBA named on the link,
//!   `Ipv4DefaultRouterOnAccess { router, if }` (shared by the link's mobile nodes).
//!
//! `mn_link_local` is the source of the MN's RS when that is link-local, else `fe80::` + the
//! modified EUI-64 of its MAC (what an unconfigured Linux host uses); a later RS from another
//! link-local address replaces it, and the routes follow.

pub mod advertisement;
pub mod binding_update_list;
pub mod config;
mod resources;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use core::net::{Ipv4Addr, Ipv6Addr};
use core::time::Duration;

use pmip6_wire::nd::{LinkLayerAddress, MAX_FLAG_BIT, RouterSolicitation};
use pmip6_wire::{
    BaStatus, BindingAck, BindingRevocation, BindingUpdate, BuFlags, HandoffIndicator, Heartbeat, HeartbeatFlags,
    Ipv4HoaReplyStatus, Message, MhType, MnIdentifier, MobilityOption, NotificationReason, Prefix, RevocationFlags,
    RevocationKind, RevocationStatus, RevocationTrigger, Timestamp, UpaStatus, UpdateNotification,
    UpdateNotificationAck, UpnFlags,
};

use crate::common::{
    Intent, InterfaceId, Now, Received, Resource, Transmit, lifetime_duration, lifetime_units, sequence_newer,
};
use crate::timer::TimerQueue;

pub use advertisement::ALL_NODES;
pub use binding_update_list::{
    BindingKey, BindingState, BindingUpdateList, BulEntry, PbuKind, PendingPbu, eui64_link_local,
};
pub use config::{AccessInterface, HeartbeatConfig, MagConfig, MobileNodeEntry, RaConfig, RegistrationConfig};

use resources::ResourceTable;

/// What the MAG did or refused, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MagEvent {
    /// A configuration value was out of range and replaced (at start).
    ConfigAdjusted {
        /// Which value and what was done.
        what: &'static str,
    },
    /// An RS or attach event on an interface that is not a configured access link.
    UnknownInterface {
        /// The interface.
        interface: InterfaceId,
    },
    /// An RS with neither a frame source MAC nor a Source Link-layer Address option: the MN
    /// cannot be identified.
    NoLinkLayerAddress {
        /// The access link.
        interface: InterfaceId,
        /// The RS source.
        src: Ipv6Addr,
    },
    /// The LMA did not grant the IPv4 home address asked for (RFC 5844 §3.2.2); the IPv6
    /// session stands.
    Ipv4HomeAddressRefused {
        /// The session.
        key: BindingKey,
        /// The IPv4 Home Address Reply status.
        status: Ipv4HoaReplyStatus,
    },
    /// A MAC missing from the static table: not served (draft §5.2.1).
    UnknownMobileNode {
        /// The access link.
        interface: InterfaceId,
        /// The MAC.
        mac: [u8; 6],
    },
    /// A mobile node attached: registration starts.
    Attached {
        /// The session.
        key: BindingKey,
        /// Handoff Indicator of its first PBU.
        handoff: HandoffIndicator,
    },
    /// An RS or attach for a session still waiting for its PBA: nothing to advertise yet
    /// (RFC 5213 §6.9.1.1); the RA goes out when the PBA accepts.
    AttachWhileRegistering {
        /// The session.
        key: BindingKey,
    },
    /// A PBU left.
    PbuSent {
        /// The session.
        key: BindingKey,
        /// Why.
        kind: PbuKind,
        /// Its Sequence Number.
        sequence: u16,
        /// 1 for the first transmission, 2 for the first retransmission, ...
        transmission: u32,
    },
    /// No PBA after the configured number of transmissions.
    GaveUp {
        /// The session.
        key: BindingKey,
        /// What was attempted: an initial registration leaves no service; a refresh or
        /// re-registration keeps the binding until it expires; a de-registration ends anyway.
        kind: PbuKind,
        /// Transmissions made.
        transmissions: u32,
    },
    /// The LMA gave a session's prefixes to another session of the same MN here (a handoff
    /// between interfaces, RFC 5213 §5.4.1.2, while this interface is still up): the session
    /// registers afresh as a new attachment.
    Superseded {
        /// The session that lost its prefixes.
        key: BindingKey,
        /// The session that holds them now.
        by: BindingKey,
    },
    /// A PBA accepted a registration, refresh or re-registration.
    BindingAccepted {
        /// The session.
        key: BindingKey,
        /// What was accepted.
        kind: PbuKind,
        /// The MN's own prefixes on this link.
        home_network_prefixes: Vec<Prefix>,
        /// The prefixes of its other interfaces (MuHo).
        other_prefixes: Vec<Prefix>,
        /// Granted lifetime.
        lifetime: Duration,
    },
    /// A PBA rejected a PBU (status ≥ 128): no service (RFC 5213 §6.9.1.2). TIMESTAMP_MISMATCH
    /// (156) is reported like any other rejection; the MAG resynchronises no clock.
    BindingRejected {
        /// The session.
        key: BindingKey,
        /// What was rejected.
        kind: PbuKind,
        /// The status.
        status: BaStatus,
    },
    /// A PBA accepted a PBU but is unusable (no home network prefix, or lifetime 0): treated as
    /// a rejection.
    UnusableAck {
        /// The session.
        key: BindingKey,
        /// Why.
        reason: &'static str,
    },
    /// Status 135 (sequence number out of window): the next PBU numbers after the LMA's
    /// (RFC 6275 §11.7.3).
    SequenceResynchronised {
        /// The session.
        key: BindingKey,
        /// The Sequence Number the LMA last accepted.
        lma_sequence: u16,
    },
    /// A PBA matching no outstanding PBU (late, duplicate, or for another MN): ignored.
    StaleAck {
        /// Its Sequence Number.
        sequence: u16,
        /// Its status.
        status: BaStatus,
    },
    /// A mobile node detached: de-registration starts, routes are gone.
    Detached {
        /// The session.
        key: BindingKey,
    },
    /// A detach event for a MAC with no session on that link.
    DetachUnknown {
        /// The access link.
        interface: InterfaceId,
        /// The MAC.
        mac: [u8; 6],
    },
    /// The LMA answered a de-registration; the session is gone.
    Deregistered {
        /// The session.
        key: BindingKey,
        /// The PBA status.
        status: BaStatus,
    },
    /// A binding ran out of lifetime without a successful refresh.
    BindingExpired {
        /// The session.
        key: BindingKey,
    },
    /// The MuHo prefixes of a session changed (UPN, or BRI carrying MuHo, draft §5.2.3).
    PrefixesUpdated {
        /// The session.
        key: BindingKey,
        /// Prefixes now routed to the MN over this link.
        added: Vec<Prefix>,
        /// Prefixes no longer routed.
        removed: Vec<Prefix>,
    },
    /// An Update Notification or Binding Revocation for a mobile node with no matching session
    /// here: answered with UPA 132 or BRA 128.
    UnknownSession {
        /// The MN-ID carried, if any.
        mn_id: Option<MnIdentifier>,
        /// The MH type of the message.
        mh_type: MhType,
    },
    /// The LMA asked for a re-registration (RFC 7077 FORCE-REREGISTRATION).
    ReregistrationRequested {
        /// The session.
        key: BindingKey,
    },
    /// The LMA revoked a session (RFC 5846): its state is gone, no de-registration is sent.
    Revoked {
        /// The session.
        key: BindingKey,
        /// The Revocation Trigger.
        trigger: RevocationTrigger,
    },
    /// A message from an address other than the LMAA: ignored.
    UnknownPeer {
        /// The source.
        src: Ipv6Addr,
        /// Its MH type.
        mh_type: MhType,
    },
    /// A message the MAG does not act on, or a malformed one: ignored.
    Ignored {
        /// Its MH type.
        mh_type: MhType,
        /// Why.
        reason: &'static str,
    },
    /// MISSING_HEARTBEATS_ALLOWED requests in a row went unanswered (RFC 5847 failure detection).
    LmaUnreachable {
        /// Requests unanswered.
        missed: u32,
    },
    /// A heartbeat response arrived after the LMA was reported unreachable.
    LmaReachable,
    /// The LMA's Restart Counter changed (RFC 5847 §5.2): every session is registered again.
    LmaRestarted {
        /// The counter seen before.
        previous: u32,
        /// The counter now.
        current: u32,
    },
}

/// What a timer is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TimerKey {
    /// The PBU of a session is unanswered.
    Retransmit(BindingKey),
    /// Time to extend a binding.
    Refresh(BindingKey),
    /// A binding's lifetime ends.
    Expire(BindingKey),
    /// Next unsolicited RA of a session.
    Advertise(BindingKey),
    /// Next heartbeat request.
    Heartbeat,
}

/// Heartbeat bookkeeping (RFC 5847 failure and restart detection).
#[derive(Debug, Clone, Default)]
struct HeartbeatState {
    next_sequence: u32,
    outstanding: Option<u32>,
    missed: u32,
    unreachable: bool,
    lma_restart_counter: Option<u32>,
}

/// The MAG protocol engine.
#[derive(Debug)]
pub struct Mag {
    config: MagConfig,
    interfaces: BTreeMap<InterfaceId, AccessInterface>,
    mobile_nodes: HashMap<[u8; 6], usize>,
    bul: BindingUpdateList,
    resources: ResourceTable,
    timers: TimerQueue<TimerKey>,
    next_sequence: u16,
    heartbeat: HeartbeatState,
    transmits: VecDeque<Transmit>,
    intents: VecDeque<Intent>,
    events: VecDeque<MagEvent>,
}

impl Mag {
    /// A MAG with no sessions. Out-of-range configuration values are replaced and reported as
    /// [`MagEvent::ConfigAdjusted`].
    pub fn new(config: MagConfig) -> Self {
        let mut events = VecDeque::new();
        let config = sanitize(config, &mut events);
        let mut interfaces = BTreeMap::new();
        for interface in &config.interfaces {
            if interfaces.contains_key(&interface.id) {
                events.push_back(MagEvent::ConfigAdjusted { what: "access interface listed twice: first entry kept" });
                continue;
            }
            interfaces.insert(interface.id, interface.clone());
        }
        let mut mobile_nodes = HashMap::new();
        for (index, mn) in config.mobile_nodes.iter().enumerate() {
            for mac in &mn.macs {
                if mobile_nodes.contains_key(mac) {
                    events.push_back(MagEvent::ConfigAdjusted { what: "MAC listed twice: first mobile node kept" });
                    continue;
                }
                mobile_nodes.insert(*mac, index);
            }
        }
        let heartbeat =
            HeartbeatState { next_sequence: u32::from(config.initial_sequence), ..HeartbeatState::default() };
        Self {
            next_sequence: config.initial_sequence,
            config,
            interfaces,
            mobile_nodes,
            bul: BindingUpdateList::default(),
            resources: ResourceTable::default(),
            timers: TimerQueue::new(),
            heartbeat,
            transmits: VecDeque::new(),
            intents: VecDeque::new(),
            events,
        }
    }

    /// The configuration in force (after adjustments).
    pub fn config(&self) -> &MagConfig {
        &self.config
    }

    /// The Binding Update List, read-only.
    pub fn binding_update_list(&self) -> &BindingUpdateList {
        &self.bul
    }

    /// Every data-plane resource the MAG has asked for and not yet removed: the sum of the
    /// intents so far, for a data plane that reconciles at start-up.
    pub fn installed_resources(&self) -> impl Iterator<Item = &Resource> {
        self.resources.all()
    }

    /// A Router Solicitation from `src` on access link `interface`; `source_mac` is the frame's
    /// source MAC if the driver saw it, else the RS's Source Link-layer Address option is used.
    ///
    /// A known MN without a session starts registering (RFC 5213 §6.9.1.1, draft §5.2.1); a
    /// bound one gets an RA at once (RFC 4861 §6.2.6 allows a delay of 0 to MAX_RA_DELAY_TIME:
    /// the access link is point-to-point per MN, so there is no other router to desynchronise
    /// from, and a re-attachment must not wait); a registering one gets nothing until the PBA.
    pub fn handle_router_solicitation(
        &mut self,
        now: Now,
        interface: InterfaceId,
        src: Ipv6Addr,
        source_mac: Option<[u8; 6]>,
        rs: &RouterSolicitation,
    ) {
        if !self.interfaces.contains_key(&interface) {
            self.events.push_back(MagEvent::UnknownInterface { interface });
            return;
        }
        let mac = source_mac.or_else(|| match rs.source_link_layer_address() {
            Some(LinkLayerAddress::Ethernet(mac)) => Some(*mac),
            _ => None,
        });
        let Some(mac) = mac else {
            self.events.push_back(MagEvent::NoLinkLayerAddress { interface, src });
            return;
        };
        let learned = src.is_unicast_link_local().then_some(src);
        // RFC 4861 §6.2.6: answer the soliciting address, or all-nodes if it was unspecified.
        let reply_to = if src.is_unspecified() { ALL_NODES } else { src };
        self.attach(now, interface, mac, learned, None, Some(reply_to));
    }

    /// An L2 attach event: the MAC `mac` appeared on access link `interface` (draft §5.2.1).
    pub fn handle_attach(&mut self, now: Now, interface: InterfaceId, mac: [u8; 6]) {
        if !self.interfaces.contains_key(&interface) {
            self.events.push_back(MagEvent::UnknownInterface { interface });
            return;
        }
        self.attach(now, interface, mac, None, None, None);
    }

    /// An L2 attach event with the access network's handoff hint: the first PBU carries
    /// `handoff` instead of the interface's configured Handoff Indicator (RFC 5213 §5.4.1:
    /// 3 for a handoff between MAGs on the same interface, 4 when unknown).
    pub fn handle_attach_with_handoff(
        &mut self,
        now: Now,
        interface: InterfaceId,
        mac: [u8; 6],
        handoff: HandoffIndicator,
    ) {
        if !self.interfaces.contains_key(&interface) {
            self.events.push_back(MagEvent::UnknownInterface { interface });
            return;
        }
        self.attach(now, interface, mac, None, Some(handoff), None);
    }

    /// An L2 detach event: the session is de-registered (PBU with lifetime 0, RFC 5213
    /// §6.9.1.4) and its data-plane state removed at once.
    pub fn handle_detach(&mut self, now: Now, interface: InterfaceId, mac: [u8; 6]) {
        let Some(entry) = self.bul.get_by_link(interface, mac) else {
            self.events.push_back(MagEvent::DetachUnknown { interface, mac });
            return;
        };
        let key = entry.key.clone();
        if entry.state == BindingState::Deregistering {
            self.events.push_back(MagEvent::DetachUnknown { interface, mac });
            return;
        }
        self.deregister(now, &key);
    }

    /// The MAG leaves service (a clean shutdown): every session not already leaving is
    /// de-registered as on a detach (RFC 5213 §6.9.1.4), so that the LMA does not keep routing
    /// the mobile nodes' prefixes to a MAG that no longer serves them until their lifetimes run
    /// out. The driver sends the PBUs before it stops.
    pub fn deregister_all(&mut self, now: Now) {
        let keys: Vec<BindingKey> = self
            .bul
            .iter()
            .filter(|entry| entry.state != BindingState::Deregistering)
            .map(|entry| entry.key.clone())
            .collect();
        for key in keys {
            self.deregister(now, &key);
        }
    }

    /// A Mobility Header message from the LMA: PBA, UPN, BRI or Heartbeat. Anything else, or
    /// anything from another source, is reported and ignored.
    pub fn handle_message(&mut self, now: Now, received: Received) {
        let mh_type = received.message.mh_type();
        if received.src != self.config.lmaa {
            self.events.push_back(MagEvent::UnknownPeer { src: received.src, mh_type });
            return;
        }
        match received.message {
            Message::BindingAck(ba) => self.on_binding_ack(now, ba),
            Message::UpdateNotification(upn) => self.on_update_notification(now, upn),
            Message::BindingRevocation(br) => self.on_binding_revocation(br),
            Message::Heartbeat(hb) => self.on_heartbeat(now, hb),
            Message::BindingError(_) => {
                self.events.push_back(MagEvent::Ignored { mh_type, reason: "Binding Error from the LMA" })
            }
            _ => self.events.push_back(MagEvent::Ignored { mh_type, reason: "not a message a MAG acts on" }),
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Now) {
        while let Some(key) = self.timers.pop_expired(now) {
            match key {
                TimerKey::Retransmit(key) => self.on_retransmit_timer(now, &key),
                TimerKey::Refresh(key) => self.on_refresh_timer(now, &key),
                TimerKey::Expire(key) => self.on_expire_timer(&key),
                TimerKey::Advertise(key) => self.on_advertise_timer(now, &key),
                TimerKey::Heartbeat => self.on_heartbeat_timer(now),
            }
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next data-plane change.
    pub fn poll_intent(&mut self) -> Option<Intent> {
        self.intents.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<MagEvent> {
        self.events.pop_front()
    }

    /// When to call [`Mag::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Now> {
        self.timers.next_deadline()
    }

    // -----------------------------------------------------------------------------------------
    // Attachment and detachment.

    /// The MN-ID, multihoming flag (draft §5.2.1) and IPv4 flag (RFC 5844) of `mac`, or `None`
    /// (with an event).
    fn identify(&mut self, interface: InterfaceId, mac: [u8; 6]) -> Option<(MnIdentifier, bool, bool)> {
        if let Some(entry) = self.mobile_nodes.get(&mac).and_then(|&i| self.config.mobile_nodes.get(i)) {
            return Some((entry.mn_id.clone(), entry.multihoming, entry.ipv4));
        }
        if self.config.serve_unknown_mobile_nodes {
            let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
            let nai = format!("{hex}@{}", self.config.unknown_mobile_node_realm);
            return Some((MnIdentifier::nai(&nai), false, false));
        }
        self.events.push_back(MagEvent::UnknownMobileNode { interface, mac });
        None
    }

    fn attach(
        &mut self,
        now: Now,
        interface: InterfaceId,
        mac: [u8; 6],
        learned_link_local: Option<Ipv6Addr>,
        handoff: Option<HandoffIndicator>,
        solicited_by: Option<Ipv6Addr>,
    ) {
        let Some((mn_id, multihoming, ipv4)) = self.identify(interface, mac) else { return };
        let Some(iface) = self.interfaces.get(&interface) else { return };
        let key = BindingKey { mn_id, interface, mac };
        match self.bul.get(&key).map(|e| e.state) {
            Some(BindingState::Bound) => {
                if let Some(ll) = learned_link_local {
                    self.learn_link_local(&key, ll);
                }
                // A re-attachment is answered at once, not on the periodic timer.
                let dst = solicited_by.unwrap_or_else(|| self.unsolicited_destination(&key));
                self.send_ra(now, &key, dst, &[]);
            }
            Some(BindingState::Registering) => {
                if let Some(ll) = learned_link_local {
                    self.learn_link_local(&key, ll);
                }
                // RFC 5213 §6.9.1.1: no prefix before the PBA.
                self.events.push_back(MagEvent::AttachWhileRegistering { key });
            }
            Some(BindingState::Deregistering) | None => {
                let handoff = handoff.unwrap_or(iface.attach_handoff);
                let entry = BulEntry {
                    key: key.clone(),
                    multihoming,
                    ipv4,
                    ipv4_home_address: None,
                    ipv4_default_router: None,
                    access_technology: iface.access_technology,
                    state: BindingState::Registering,
                    home_network_prefixes: Vec::new(),
                    other_prefixes: BTreeSet::new(),
                    mn_link_local: learned_link_local.unwrap_or_else(|| eui64_link_local(mac)),
                    mn_link_local_learned: learned_link_local.is_some(),
                    router_link_local: iface.link_local,
                    lifetime: Duration::ZERO,
                    accepted_at: None,
                    expires_at: None,
                    pending: None,
                    advertisements_sent: 0,
                };
                self.cancel_session_timers(&key);
                self.bul.insert(entry);
                self.events.push_back(MagEvent::Attached { key: key.clone(), handoff });
                self.send_pbu(now, &key, PbuKind::Registration, handoff);
                self.arm_heartbeat(now);
            }
        }
    }

    /// Records the MN's link-local address seen as an RS source; routes via the old one move.
    fn learn_link_local(&mut self, key: &BindingKey, ll: Ipv6Addr) {
        let Some(entry) = self.bul.get_mut(key) else { return };
        entry.mn_link_local_learned = true;
        if entry.mn_link_local == ll {
            return;
        }
        entry.mn_link_local = ll;
        let bound = entry.is_bound();
        if bound {
            self.reconcile(&key.mn_id);
        }
    }

    /// RFC 5213 §6.9.1.4: lifetime-0 PBU with the same options; data plane removed at once.
    fn deregister(&mut self, now: Now, key: &BindingKey) {
        self.cancel_session_timers(key);
        let Some(entry) = self.bul.get_mut(key) else { return };
        entry.state = BindingState::Deregistering;
        entry.expires_at = None;
        self.reconcile(&key.mn_id);
        self.events.push_back(MagEvent::Detached { key: key.clone() });
        // The MAG cannot tell whether the MN is handing off to another MAG.
        self.send_pbu(now, key, PbuKind::Deregistration, HandoffIndicator::StateUnknown);
    }

    /// Removes a session with all its state and timers.
    fn remove_session(&mut self, key: &BindingKey) {
        self.cancel_session_timers(key);
        if self.bul.remove(key).is_some() {
            self.reconcile(&key.mn_id);
        }
        if self.bul.is_empty() {
            self.timers.cancel(&TimerKey::Heartbeat);
            self.heartbeat.outstanding = None;
            self.heartbeat.missed = 0;
        }
    }

    fn cancel_session_timers(&mut self, key: &BindingKey) {
        self.timers.cancel(&TimerKey::Retransmit(key.clone()));
        self.timers.cancel(&TimerKey::Refresh(key.clone()));
        self.timers.cancel(&TimerKey::Expire(key.clone()));
        self.timers.cancel(&TimerKey::Advertise(key.clone()));
    }

    // -----------------------------------------------------------------------------------------
    // Proxy Binding Updates.

    fn take_sequence(&mut self) -> u16 {
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        sequence
    }

    fn requested_lifetime_units(&self) -> u16 {
        lifetime_units(self.config.registration.requested_lifetime).max(1)
    }

    /// Starts the PBU exchange of `kind` for `key` (replacing any outstanding one).
    fn send_pbu(&mut self, now: Now, key: &BindingKey, kind: PbuKind, handoff: HandoffIndicator) {
        let registration = &self.config.registration;
        let timeout = match kind {
            // RFC 5213 §6.9.4: InitialBindackTimeoutFirstReg may lengthen the first wait.
            PbuKind::Registration => {
                registration.initial_bindack_timeout_first_reg.unwrap_or(registration.initial_bindack_timeout)
            }
            _ => registration.initial_bindack_timeout,
        };
        let lifetime_units = match kind {
            // RFC 5213 §6.9.1.4: de-registration is lifetime 0.
            PbuKind::Deregistration => 0,
            _ => self.requested_lifetime_units(),
        };
        let pending =
            PendingPbu { kind, sequence: 0, handoff, lifetime_units, transmissions: 0, last_sent: now, timeout };
        self.transmit_pbu(now, key, pending);
    }

    /// Sends (or re-sends) `pending` with a new Sequence Number and Timestamp (RFC 6275 §11.8:
    /// a retransmission is a new BU), and arms its retransmission timer.
    fn transmit_pbu(&mut self, now: Now, key: &BindingKey, mut pending: PendingPbu) {
        let sequence = self.take_sequence();
        pending.sequence = sequence;
        pending.transmissions = pending.transmissions.saturating_add(1);
        pending.last_sent = now;
        let Some(entry) = self.bul.get(key) else { return };
        let message = Message::BindingUpdate(self.build_pbu(entry, &pending, now));
        self.bul.set_pending(key, Some(pending));
        self.transmits.push_back(Transmit::Mobility { src: self.config.proxy_coa, dst: self.config.lmaa, message });
        self.timers.set(TimerKey::Retransmit(key.clone()), now.saturating_add(pending.timeout));
        self.events.push_back(MagEvent::PbuSent {
            key: key.clone(),
            kind: pending.kind,
            sequence,
            transmission: pending.transmissions,
        });
    }

    /// RFC 5213 §6.9.1.5 (and protocol-facts §3.1): A and P set; MN-ID, HNP (ALL_ZERO until
    /// assigned), the draft's empty MuHo for multihoming MNs (§5.2.1), HI, ATT, MN-LL-ID,
    /// Link-local Address (ALL_ZERO: the LMA tells which to use), Timestamp.
    fn build_pbu(&self, entry: &BulEntry, pending: &PendingPbu, now: Now) -> BindingUpdate {
        let mut options = vec![MobilityOption::MnIdentifier(entry.key.mn_id.clone())];
        if entry.home_network_prefixes.is_empty() {
            // RFC 5213 §6.9.1.1: ALL_ZERO asks the LMA to assign.
            options.push(MobilityOption::HomeNetworkPrefix(Prefix::ALL_ZERO));
        } else {
            options.extend(entry.home_network_prefixes.iter().map(|p| MobilityOption::HomeNetworkPrefix(*p)));
        }
        if entry.multihoming {
            // draft §5.2.1: an empty MuHo asks for the prefixes of the MN's other interfaces.
            options.push(MobilityOption::MuHo {
                option_type: self.config.parse_config.muho_option_type(),
                prefix: Prefix::ALL_ZERO,
            });
        }
        if entry.ipv4 {
            // RFC 5844 §3.2.1: 0.0.0.0 asks the LMA to assign; later PBUs name the address held.
            let (address, prefix_len) = entry.ipv4_home_address.unwrap_or((Ipv4Addr::UNSPECIFIED, 0));
            options.push(MobilityOption::Ipv4HomeAddressRequest { prefix_len, address });
        }
        options.push(MobilityOption::HandoffIndicator(pending.handoff));
        options.push(MobilityOption::AccessTechnologyType(entry.access_technology));
        options.push(MobilityOption::MnLinkLayerIdentifier(entry.key.mac.to_vec()));
        options.push(MobilityOption::LinkLocalAddress(Ipv6Addr::UNSPECIFIED));
        // RFC 5213 §5.5: the Timestamp of this transmission.
        options.push(MobilityOption::Timestamp(Timestamp::from_unix(now)));
        BindingUpdate {
            sequence: pending.sequence,
            // RFC 5213 §6.9.1.5: A and P MUST be set.
            flags: BuFlags::A | BuFlags::P,
            lifetime: pending.lifetime_units,
            options,
        }
    }

    /// RFC 5213 §6.9.4, RFC 6275 §11.8: exponential back-off up to MAX_BINDACK_TIMEOUT, then
    /// give up after the configured number of transmissions.
    fn on_retransmit_timer(&mut self, now: Now, key: &BindingKey) {
        let Some(mut pending) = self.bul.get(key).and_then(|e| e.pending) else { return };
        if pending.transmissions >= self.config.registration.max_transmissions {
            self.give_up(key, pending);
            return;
        }
        pending.timeout = pending.timeout.saturating_mul(2).min(self.config.registration.max_bindack_timeout);
        self.transmit_pbu(now, key, pending);
    }

    fn give_up(&mut self, key: &BindingKey, pending: PendingPbu) {
        self.timers.cancel(&TimerKey::Retransmit(key.clone()));
        self.bul.set_pending(key, None);
        self.events.push_back(MagEvent::GaveUp {
            key: key.clone(),
            kind: pending.kind,
            transmissions: pending.transmissions,
        });
        match pending.kind {
            // No answer, no service (RFC 5213 §6.9.1.2 by analogy: nothing was accepted).
            PbuKind::Registration | PbuKind::Deregistration => self.remove_session(key),
            // The binding stands until its lifetime runs out (the Expire timer is armed).
            PbuKind::Refresh | PbuKind::Reregistration => {}
        }
    }

    fn on_refresh_timer(&mut self, now: Now, key: &BindingKey) {
        let Some(entry) = self.bul.get(key) else { return };
        if !entry.is_bound() || entry.pending.is_some() {
            return;
        }
        // RFC 5213 §6.9.1.3: HI 5 (handoff state not changed) and the assigned prefixes.
        self.send_pbu(now, key, PbuKind::Refresh, HandoffIndicator::NotChanged);
    }

    fn on_expire_timer(&mut self, key: &BindingKey) {
        if self.bul.get(key).is_some_and(BulEntry::is_bound) {
            self.events.push_back(MagEvent::BindingExpired { key: key.clone() });
            self.remove_session(key);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Proxy Binding Acknowledgements.

    fn on_binding_ack(&mut self, now: Now, ba: BindingAck) {
        if ba.status == BaStatus::SequenceNumberOutOfWindow {
            self.on_sequence_out_of_window(now, &ba);
            return;
        }
        // RFC 6275 §11.7.3: only the Sequence Number of the outstanding PBU matches; the
        // identity options, when present, must agree.
        let key = self
            .bul
            .get_by_sequence(ba.sequence)
            .filter(|entry| identity_matches(entry, &ba.options))
            .map(|entry| entry.key.clone());
        let Some(key) = key else {
            self.events.push_back(MagEvent::StaleAck { sequence: ba.sequence, status: ba.status });
            return;
        };
        let Some(pending) = self.bul.get(&key).and_then(|e| e.pending) else { return };
        self.timers.cancel(&TimerKey::Retransmit(key.clone()));
        self.bul.set_pending(&key, None);
        if pending.kind == PbuKind::Deregistration {
            self.events.push_back(MagEvent::Deregistered { key: key.clone(), status: ba.status });
            self.remove_session(&key);
            return;
        }
        if !ba.status.is_accepted() {
            self.reject(&key, pending.kind, ba.status);
            return;
        }
        self.accept(now, &key, pending, &ba);
    }

    /// Status 135 carries the LMA's last accepted Sequence Number, not ours (RFC 6275 §6.1.8):
    /// the sessions are found by MN-ID (and MN-LL-ID if present), and their PBU goes again
    /// numbered after it (RFC 6275 §11.7.3).
    fn on_sequence_out_of_window(&mut self, now: Now, ba: &BindingAck) {
        let keys: Vec<BindingKey> = match mn_identifier(&ba.options) {
            Some(mn_id) => self
                .bul
                .bindings_of(mn_id)
                .filter(|e| e.pending.is_some() && identity_matches(e, &ba.options))
                .map(|e| e.key.clone())
                .collect(),
            None => Vec::new(),
        };
        if keys.is_empty() {
            self.events.push_back(MagEvent::StaleAck { sequence: ba.sequence, status: ba.status });
            return;
        }
        if !sequence_newer(self.next_sequence, ba.sequence) {
            self.next_sequence = ba.sequence.wrapping_add(1);
        }
        for key in keys {
            let Some(pending) = self.bul.get(&key).and_then(|e| e.pending) else { continue };
            self.events.push_back(MagEvent::SequenceResynchronised { key: key.clone(), lma_sequence: ba.sequence });
            if pending.transmissions >= self.config.registration.max_transmissions {
                self.give_up(&key, pending);
            } else {
                self.transmit_pbu(now, &key, pending);
            }
        }
    }

    /// RFC 5213 §6.9.1.2: a status of 128 or more denies the service: no RA with prefixes, no
    /// routes. A bound session (rejected refresh) has its prefixes withdrawn first.
    fn reject(&mut self, key: &BindingKey, kind: PbuKind, status: BaStatus) {
        self.events.push_back(MagEvent::BindingRejected { key: key.clone(), kind, status });
        self.withdraw(key);
        self.remove_session(key);
    }

    fn accept(&mut self, now: Now, key: &BindingKey, pending: PendingPbu, ba: &BindingAck) {
        let mut hnps: Vec<Prefix> = Vec::new();
        for option in &ba.options {
            if let MobilityOption::HomeNetworkPrefix(p) = option
                && !p.is_all_zero()
                && !hnps.contains(p)
            {
                hnps.push(*p);
            }
        }
        // RFC 5213 §5.3.6 / §6.9.1.2: an accepting PBA names the prefixes.
        if hnps.is_empty() {
            self.events.push_back(MagEvent::UnusableAck { key: key.clone(), reason: "no home network prefix" });
            self.withdraw(key);
            self.remove_session(key);
            return;
        }
        // RFC 6275 §11.7.3: the granted lifetime may be shorter, never longer.
        let granted = ba.lifetime.min(pending.lifetime_units);
        if granted == 0 {
            self.events.push_back(MagEvent::UnusableAck { key: key.clone(), reason: "lifetime 0" });
            self.withdraw(key);
            self.remove_session(key);
            return;
        }
        let lifetime = lifetime_duration(granted);
        let muho_type = self.config.parse_config.muho_option_type();
        let other: BTreeSet<Prefix> = ba
            .options
            .iter()
            .filter_map(|o| match o {
                MobilityOption::MuHo { option_type, prefix } if *option_type == muho_type => Some(*prefix),
                _ => None,
            })
            .filter(|p| !p.is_all_zero() && !hnps.contains(p))
            .collect();
        // RFC 5213 §6.9.1.2: the RA source is the address in the PBA's Link-local Address
        // option (ALL_ZERO or absent: our own on the link).
        let router_ll = ba.options.iter().find_map(|o| match o {
            MobilityOption::LinkLocalAddress(a) if a.is_unicast_link_local() => Some(*a),
            _ => None,
        });
        let interface_ll = self.interfaces.get(&key.interface).map(|i| i.link_local);
        // RFC 5844 §3.2.2: the IPv4 home address granted, if asked for; a refused request
        // leaves the IPv6 session as it is.
        let ipv4_reply = ba.options.iter().find_map(|o| match o {
            MobilityOption::Ipv4HomeAddressReply { status, prefix_len, address } => {
                Some((*status, *prefix_len, *address))
            }
            _ => None,
        });
        let ipv4_router = ba.options.iter().find_map(|o| match o {
            MobilityOption::Ipv4DefaultRouter(a) => Some(*a),
            _ => None,
        });
        let asked_ipv4 = self.bul.get(key).is_some_and(|e| e.ipv4);
        let ipv4 = match ipv4_reply {
            Some((Ipv4HoaReplyStatus::Success, prefix_len, address))
                if asked_ipv4 && !address.is_unspecified() && prefix_len <= 32 =>
            {
                Some((address, prefix_len))
            }
            Some((status, ..)) if asked_ipv4 => {
                self.events.push_back(MagEvent::Ipv4HomeAddressRefused { key: key.clone(), status });
                None
            }
            _ => None,
        };
        let Some(entry) = self.bul.get_mut(key) else { return };
        entry.ipv4_home_address = ipv4;
        entry.ipv4_default_router = ipv4.and(ipv4_router);
        let withdrawn: Vec<Prefix> =
            entry.home_network_prefixes.iter().filter(|p| !hnps.contains(p)).copied().collect();
        entry.state = BindingState::Bound;
        entry.home_network_prefixes = hnps.clone();
        entry.other_prefixes = other.clone();
        if let Some(ll) = router_ll.or(interface_ll) {
            entry.router_link_local = ll;
        }
        entry.lifetime = lifetime;
        entry.accepted_at = Some(now);
        entry.expires_at = Some(now.saturating_add(lifetime));
        entry.advertisements_sent = 0;
        let percent = u32::from(self.config.registration.refresh_percent);
        self.timers.set(TimerKey::Refresh(key.clone()), now.saturating_add(lifetime.saturating_mul(percent) / 100));
        self.timers.set(TimerKey::Expire(key.clone()), now.saturating_add(lifetime));
        // RFC 5213 §5.4.1.2: the LMA moves a session's prefixes to the interface a handoff
        // between interfaces names. Another session of the MN here that still holds them is
        // stale; its interface is still up as far as this MAG knows, so it registers afresh.
        let superseded: Vec<BindingKey> = self
            .bul
            .bindings_of(&key.mn_id)
            .filter(|e| e.key != *key && e.state != BindingState::Deregistering)
            .filter(|e| e.home_network_prefixes.iter().any(|p| hnps.contains(p)))
            .map(|e| e.key.clone())
            .collect();
        for old in &superseded {
            self.withdraw(old);
            self.cancel_session_timers(old);
            if let Some(e) = self.bul.get_mut(old) {
                e.state = BindingState::Registering;
                e.home_network_prefixes.clear();
                e.other_prefixes.clear();
                e.accepted_at = None;
                e.expires_at = None;
            }
            self.events.push_back(MagEvent::Superseded { key: old.clone(), by: key.clone() });
        }
        self.reconcile(&key.mn_id);
        for old in &superseded {
            self.send_pbu(now, old, PbuKind::Registration, HandoffIndicator::NewInterface);
        }
        self.events.push_back(MagEvent::BindingAccepted {
            key: key.clone(),
            kind: pending.kind,
            home_network_prefixes: hnps,
            other_prefixes: other.into_iter().collect(),
            lifetime,
        });
        // RFC 5213 §6.9.1.2: advertise now, then keep advertising.
        let dst = self.unsolicited_destination(key);
        self.send_ra(now, key, dst, &withdrawn);
        self.schedule_advertisement(now, key);
    }

    // -----------------------------------------------------------------------------------------
    // Router Advertisements.

    /// Unsolicited RAs go to the MN's link-local address once an RS revealed it, else to
    /// all-nodes (RFC 4861 §6.2.3).
    fn unsolicited_destination(&self, key: &BindingKey) -> Ipv6Addr {
        match self.bul.get(key) {
            Some(entry) if entry.mn_link_local_learned => entry.mn_link_local,
            _ => ALL_NODES,
        }
    }

    /// Sends the RA of a bound session to `dst`.
    fn send_ra(&mut self, now: Now, key: &BindingKey, dst: Ipv6Addr, withdrawn: &[Prefix]) {
        let (Some(entry), Some(interface)) = (self.bul.get(key), self.interfaces.get(&key.interface)) else { return };
        // RFC 5213 §6.9.1.1, §6.9.1.2: no prefix is advertised before an accepting PBA.
        if !entry.is_bound() {
            return;
        }
        let ra = advertisement::build(&self.config.router_advertisement, interface, entry, now, withdrawn);
        self.transmits.push_back(Transmit::RouterAdvertisement {
            interface: key.interface,
            src: entry.router_link_local,
            dst,
            ra,
        });
    }

    /// Tells a bound MN its prefixes and router are gone (before its state is removed).
    fn withdraw(&mut self, key: &BindingKey) {
        let (Some(entry), Some(interface)) = (self.bul.get(key), self.interfaces.get(&key.interface)) else { return };
        if !entry.is_bound() {
            return;
        }
        let ra = advertisement::build_withdrawal(&self.config.router_advertisement, interface, entry);
        let dst = if entry.mn_link_local_learned { entry.mn_link_local } else { ALL_NODES };
        self.transmits.push_back(Transmit::RouterAdvertisement {
            interface: key.interface,
            src: entry.router_link_local,
            dst,
            ra,
        });
    }

    /// RFC 4861 §6.2.4: the first few unsolicited RAs at the shorter initial interval, then
    /// every `interval`.
    fn schedule_advertisement(&mut self, now: Now, key: &BindingKey) {
        let ra = &self.config.router_advertisement;
        let Some(entry) = self.bul.get_mut(key) else { return };
        entry.advertisements_sent = entry.advertisements_sent.saturating_add(1);
        let delay = if entry.advertisements_sent < ra.initial_count {
            ra.initial_interval.min(ra.interval)
        } else {
            ra.interval
        };
        self.timers.set(TimerKey::Advertise(key.clone()), now.saturating_add(delay));
    }

    fn on_advertise_timer(&mut self, now: Now, key: &BindingKey) {
        if !self.bul.get(key).is_some_and(BulEntry::is_bound) {
            return;
        }
        let dst = self.unsolicited_destination(key);
        self.send_ra(now, key, dst, &[]);
        self.schedule_advertisement(now, key);
    }

    // -----------------------------------------------------------------------------------------
    // Data plane.

    /// What `mn_id`'s bound sessions need installed (see the module documentation).
    fn desired_resources(&self, mn_id: &MnIdentifier) -> BTreeSet<Resource> {
        let lmaa = self.config.lmaa;
        let bound: Vec<&BulEntry> = self.bul.bindings_of(mn_id).filter(|e| e.is_bound()).collect();
        // One downlink route per prefix: a kernel holds one route per destination. An own
        // prefix is on-link at its session's interface; another prefix of the MN goes via the
        // MN at the first bound session here that learned it.
        let mut routed: BTreeSet<Prefix> = bound.iter().flat_map(|e| e.home_network_prefixes.iter().copied()).collect();
        let mut desired = BTreeSet::new();
        for entry in &bound {
            let interface = entry.key.interface;
            desired.insert(Resource::Tunnel { local: self.config.proxy_coa, peer: lmaa });
            // RFC 5213 §6.10.5: on-link downlink, source-routed uplink.
            for &prefix in &entry.home_network_prefixes {
                desired.insert(Resource::PrefixToAccess { prefix, interface, next_hop: None });
                desired.insert(Resource::SourceRouteToTunnel { prefix, interface, peer: lmaa });
            }
            // RFC 5844 §3.2.2, §3.2.4: the IPv4 home address on the access link, its uplink
            // into the tunnel.
            if let Some((address, _)) = entry.ipv4_home_address {
                desired.insert(Resource::Ipv4HomeAddressToAccess { address, interface });
                desired.insert(Resource::Ipv4SourceRouteToTunnel { address, interface, peer: lmaa });
                if let Some(router) = entry.ipv4_default_router {
                    desired.insert(Resource::Ipv4DefaultRouterOnAccess { address: router, interface });
                }
            }
            // draft §4.3, §5.2.1, Figure 4: the MN's other prefixes via its address here.
            for &prefix in entry.other_prefixes.iter().filter(|p| !entry.home_network_prefixes.contains(p)) {
                if routed.insert(prefix) {
                    desired.insert(Resource::PrefixToAccess { prefix, interface, next_hop: Some(entry.mn_link_local) });
                }
                desired.insert(Resource::SourceRouteToTunnel { prefix, interface, peer: lmaa });
            }
        }
        desired
    }

    fn reconcile(&mut self, mn_id: &MnIdentifier) {
        let desired = self.desired_resources(mn_id);
        self.resources.reconcile(mn_id, desired, &mut self.intents);
    }

    // -----------------------------------------------------------------------------------------
    // Update Notifications (RFC 7077) and Binding Revocation (RFC 5846).

    /// The bound sessions of `mn_id` an LMA message designates: narrowed by MN-LL-ID and by
    /// HNP options when present.
    fn select_sessions(&self, mn_id: &MnIdentifier, options: &[MobilityOption], bound_only: bool) -> Vec<BindingKey> {
        let hnps: Vec<Prefix> = options
            .iter()
            .filter_map(|o| match o {
                MobilityOption::HomeNetworkPrefix(p) if !p.is_all_zero() => Some(*p),
                _ => None,
            })
            .collect();
        self.bul
            .bindings_of(mn_id)
            .filter(|e| !bound_only || e.is_bound())
            .filter(|e| identity_matches(e, options))
            .filter(|e| hnps.is_empty() || e.home_network_prefixes.iter().any(|p| hnps.contains(p)))
            .map(|e| e.key.clone())
            .collect()
    }

    /// Replaces the MuHo set of `keys` with the MuHo prefixes carried (an empty MuHo: none) and
    /// installs the difference.
    fn apply_prefix_update(&mut self, keys: &[BindingKey], options: &[MobilityOption]) {
        let muho_type = self.config.parse_config.muho_option_type();
        let carried: BTreeSet<Prefix> = options
            .iter()
            .filter_map(|o| match o {
                MobilityOption::MuHo { option_type, prefix } if *option_type == muho_type && !prefix.is_all_zero() => {
                    Some(*prefix)
                }
                _ => None,
            })
            .collect();
        let mut mns = BTreeSet::new();
        for key in keys {
            let Some(entry) = self.bul.get_mut(key) else { continue };
            let new: BTreeSet<Prefix> =
                carried.iter().filter(|p| !entry.home_network_prefixes.contains(p)).copied().collect();
            if new == entry.other_prefixes {
                continue;
            }
            let added = new.difference(&entry.other_prefixes).copied().collect();
            let removed = entry.other_prefixes.difference(&new).copied().collect();
            entry.other_prefixes = new;
            mns.insert(key.mn_id.clone());
            self.events.push_back(MagEvent::PrefixesUpdated { key: key.clone(), added, removed });
        }
        for mn_id in mns {
            self.reconcile(&mn_id);
        }
    }

    /// RFC 7864 §3.1: adds the HNPs of a FLOW-MOBILITY notification that are not the session's
    /// own to the prefixes it routes to the MN (like MuHo prefixes, draft §5.2.1).
    fn learn_flow_prefixes(&mut self, keys: &[BindingKey], options: &[MobilityOption]) {
        let carried: BTreeSet<Prefix> = options
            .iter()
            .filter_map(|o| match o {
                MobilityOption::HomeNetworkPrefix(p) if !p.is_all_zero() => Some(*p),
                _ => None,
            })
            .collect();
        let mut mns = BTreeSet::new();
        for key in keys {
            let Some(entry) = self.bul.get_mut(key) else { continue };
            let added: Vec<Prefix> = carried
                .iter()
                .filter(|p| !entry.home_network_prefixes.contains(p) && !entry.other_prefixes.contains(p))
                .copied()
                .collect();
            if added.is_empty() {
                continue;
            }
            entry.other_prefixes.extend(added.iter().copied());
            mns.insert(key.mn_id.clone());
            self.events.push_back(MagEvent::PrefixesUpdated { key: key.clone(), added, removed: Vec::new() });
        }
        for mn_id in mns {
            self.reconcile(&mn_id);
        }
    }

    fn on_update_notification(&mut self, now: Now, upn: UpdateNotification) {
        let mn_id = mn_identifier(&upn.options).cloned();
        let ack_requested = upn.flags.contains(UpnFlags::A);
        let Some(mn_id) = mn_id else {
            // RFC 7077 §4.1: the MN-ID option is mandatory.
            self.events.push_back(MagEvent::Ignored {
                mh_type: MhType::UpdateNotification,
                reason: "Update Notification without MN-ID",
            });
            if ack_requested {
                self.send_upa(&upn, None, UpaStatus::FailedToUpdateSessionParameters);
            }
            return;
        };
        let flow_mobility = upn.reason == NotificationReason::FlowMobility && !upn.flags.contains(UpnFlags::D);
        let keys = if flow_mobility {
            // RFC 7864 §3.1: the HNP options name prefixes this MAG must now route, possibly of
            // the MN's sessions elsewhere; the session is the MN's here.
            let identity: Vec<MobilityOption> =
                upn.options.iter().filter(|o| !matches!(o, MobilityOption::HomeNetworkPrefix(_))).cloned().collect();
            self.select_sessions(&mn_id, &identity, true)
        } else {
            self.select_sessions(&mn_id, &upn.options, true)
        };
        if keys.is_empty() {
            // RFC 7864 §5 (UPA status 132): the MN is not attached here. Answered even without
            // the A flag, so the LMA learns its view is stale.
            self.events.push_back(MagEvent::UnknownSession {
                mn_id: Some(mn_id.clone()),
                mh_type: MhType::UpdateNotification,
            });
            self.send_upa(&upn, Some(&mn_id), UpaStatus::MnNotAttached);
            return;
        }
        let has_muho = has_muho(&upn.options, self.config.parse_config.muho_option_type());
        let status = if upn.flags.contains(UpnFlags::D) {
            // RFC 7077 §4.1: the LMA asks for de-registration.
            for key in &keys {
                self.deregister(now, key);
            }
            UpaStatus::Success
        } else {
            if has_muho {
                self.apply_prefix_update(&keys, &upn.options);
            }
            if flow_mobility {
                self.learn_flow_prefixes(&keys, &upn.options);
            }
            match upn.reason {
                NotificationReason::ForceReregistration => {
                    // RFC 7077 FORCE-REREGISTRATION: re-register at once.
                    for key in &keys {
                        self.events.push_back(MagEvent::ReregistrationRequested { key: key.clone() });
                        self.send_pbu(now, key, PbuKind::Reregistration, HandoffIndicator::NotChanged);
                    }
                    UpaStatus::Success
                }
                NotificationReason::UpdateSessionParameters | NotificationReason::FlowMobility => UpaStatus::Success,
                NotificationReason::VendorSpecific => UpaStatus::MissingVendorSpecificOption,
                NotificationReason::QosServiceRequest => UpaStatus::CannotMeetQosServiceRequest,
                _ if has_muho => UpaStatus::Success,
                _ => UpaStatus::ReasonUnspecified,
            }
        };
        if ack_requested {
            self.send_upa(&upn, Some(&mn_id), status);
        }
    }

    /// RFC 7077 §4.2: the UPA echoes the Sequence Number and carries the MN-ID.
    fn send_upa(&mut self, upn: &UpdateNotification, mn_id: Option<&MnIdentifier>, status: UpaStatus) {
        let options = mn_id.map(|id| vec![MobilityOption::MnIdentifier(id.clone())]).unwrap_or_default();
        let message = Message::UpdateNotificationAck(UpdateNotificationAck { sequence: upn.sequence, status, options });
        self.transmits.push_back(Transmit::Mobility { src: self.config.proxy_coa, dst: self.config.lmaa, message });
    }

    fn on_binding_revocation(&mut self, br: BindingRevocation) {
        let RevocationKind::Indication(trigger) = br.kind else {
            self.events.push_back(MagEvent::Ignored {
                mh_type: MhType::BindingRevocation,
                reason: "not a Binding Revocation Indication",
            });
            return;
        };
        let mn_id = mn_identifier(&br.options).cloned();
        let status = if has_muho(&br.options, self.config.parse_config.muho_option_type()) {
            // draft §5.2.3: the LMA reuses revocation to spread the MN's prefix set.
            match &mn_id {
                None => RevocationStatus::RevokedMobileNodesIdentityRequired,
                Some(id) => {
                    let keys = self.select_sessions(id, &br.options, true);
                    if keys.is_empty() {
                        self.events.push_back(MagEvent::UnknownSession {
                            mn_id: mn_id.clone(),
                            mh_type: MhType::BindingRevocation,
                        });
                        RevocationStatus::BindingDoesNotExist
                    } else {
                        self.apply_prefix_update(&keys, &br.options);
                        RevocationStatus::Success
                    }
                }
            }
        } else if br.flags.contains(RevocationFlags::G) {
            // RFC 5846 §6.1: global revocation, every session with this LMA.
            for key in self.bul.keys() {
                self.revoke(&key, trigger);
            }
            RevocationStatus::Success
        } else {
            match &mn_id {
                // RFC 5846 §8.2: status 131, the identity is required.
                None => RevocationStatus::RevokedMobileNodesIdentityRequired,
                Some(id) => {
                    let keys = self.select_sessions(id, &br.options, false);
                    if keys.is_empty() {
                        self.events.push_back(MagEvent::UnknownSession {
                            mn_id: mn_id.clone(),
                            mh_type: MhType::BindingRevocation,
                        });
                        RevocationStatus::BindingDoesNotExist
                    } else {
                        for key in &keys {
                            self.revoke(key, trigger);
                        }
                        RevocationStatus::Success
                    }
                }
            }
        };
        // RFC 5846 §6.2: the BRA echoes the Sequence Number and the P, V, G flags.
        let options = mn_id.map(|id| vec![MobilityOption::MnIdentifier(id)]).unwrap_or_default();
        let message = Message::BindingRevocation(BindingRevocation {
            kind: RevocationKind::Acknowledgement(status),
            sequence: br.sequence,
            flags: br.flags & (RevocationFlags::P | RevocationFlags::V | RevocationFlags::G),
            options,
        });
        self.transmits.push_back(Transmit::Mobility { src: self.config.proxy_coa, dst: self.config.lmaa, message });
    }

    /// Ends a session the LMA revoked: no de-registration (the LMA has dropped it). An MN still
    /// on the link (any trigger but an inter-MAG handover) is told its prefixes are gone.
    fn revoke(&mut self, key: &BindingKey, trigger: RevocationTrigger) {
        let handover = matches!(
            trigger,
            RevocationTrigger::InterMagHandoverSameAccessType
                | RevocationTrigger::InterMagHandoverDifferentAccessType
                | RevocationTrigger::InterMagHandoverUnknown
        );
        if !handover {
            self.withdraw(key);
        }
        self.events.push_back(MagEvent::Revoked { key: key.clone(), trigger });
        self.remove_session(key);
    }

    // -----------------------------------------------------------------------------------------
    // Heartbeats (RFC 5847).

    /// Starts the request timer when the first session appears.
    fn arm_heartbeat(&mut self, now: Now) {
        let Some(interval) = self.config.heartbeat.interval else { return };
        if self.timers.deadline(&TimerKey::Heartbeat).is_none() {
            self.timers.set(TimerKey::Heartbeat, now.saturating_add(interval));
        }
    }

    fn on_heartbeat_timer(&mut self, now: Now) {
        let Some(interval) = self.config.heartbeat.interval else { return };
        if self.bul.is_empty() {
            self.heartbeat.outstanding = None;
            return;
        }
        // RFC 5847 failure detection: a request still unanswered at the next interval counts as missed.
        if self.heartbeat.outstanding.is_some() {
            self.heartbeat.missed = self.heartbeat.missed.saturating_add(1);
            if self.heartbeat.missed >= self.config.heartbeat.missing_allowed && !self.heartbeat.unreachable {
                self.heartbeat.unreachable = true;
                self.events.push_back(MagEvent::LmaUnreachable { missed: self.heartbeat.missed });
            }
        }
        let sequence = self.heartbeat.next_sequence;
        self.heartbeat.next_sequence = sequence.wrapping_add(1);
        self.heartbeat.outstanding = Some(sequence);
        let message = Message::Heartbeat(Heartbeat { flags: HeartbeatFlags::empty(), sequence, options: Vec::new() });
        self.transmits.push_back(Transmit::Mobility { src: self.config.proxy_coa, dst: self.config.lmaa, message });
        self.timers.set(TimerKey::Heartbeat, now.saturating_add(interval));
    }

    fn on_heartbeat(&mut self, now: Now, hb: Heartbeat) {
        if !hb.flags.contains(HeartbeatFlags::R) {
            // RFC 5847 §5.1: answer with the same Sequence Number and our Restart Counter.
            let message = Message::Heartbeat(Heartbeat {
                flags: HeartbeatFlags::R,
                sequence: hb.sequence,
                options: vec![MobilityOption::RestartCounter(self.config.restart_counter)],
            });
            self.transmits.push_back(Transmit::Mobility { src: self.config.proxy_coa, dst: self.config.lmaa, message });
            return;
        }
        let answers = self.heartbeat.outstanding == Some(hb.sequence) || hb.flags.contains(HeartbeatFlags::U);
        if answers {
            self.heartbeat.outstanding = None;
            self.heartbeat.missed = 0;
            if self.heartbeat.unreachable {
                self.heartbeat.unreachable = false;
                self.events.push_back(MagEvent::LmaReachable);
            }
        } else {
            self.events.push_back(MagEvent::Ignored {
                mh_type: MhType::Heartbeat,
                reason: "response to no outstanding request",
            });
        }
        let counter = hb.options.iter().find_map(|o| match o {
            MobilityOption::RestartCounter(c) => Some(*c),
            _ => None,
        });
        if let Some(current) = counter {
            let previous = self.heartbeat.lma_restart_counter.replace(current);
            if let Some(previous) = previous
                && previous != current
            {
                // RFC 5847 §5.2: the LMA restarted and lost its bindings: register them again.
                self.events.push_back(MagEvent::LmaRestarted { previous, current });
                self.reregister_all(now);
            }
        }
    }

    fn reregister_all(&mut self, now: Now) {
        for key in self.bul.keys() {
            if self.bul.get(&key).is_some_and(BulEntry::is_bound) {
                self.send_pbu(now, &key, PbuKind::Reregistration, HandoffIndicator::NotChanged);
            }
        }
    }
}

/// The first MN-ID option.
fn mn_identifier(options: &[MobilityOption]) -> Option<&MnIdentifier> {
    options.iter().find_map(|o| match o {
        MobilityOption::MnIdentifier(id) => Some(id),
        _ => None,
    })
}

/// Whether the MN-ID and MN-LL-ID options, when present, name `entry`.
fn identity_matches(entry: &BulEntry, options: &[MobilityOption]) -> bool {
    options.iter().all(|o| match o {
        MobilityOption::MnIdentifier(id) => *id == entry.key.mn_id,
        MobilityOption::MnLinkLayerIdentifier(lli) => lli.as_slice() == entry.key.mac.as_slice(),
        _ => true,
    })
}

fn has_muho(options: &[MobilityOption], muho_type: u8) -> bool {
    options.iter().any(|o| matches!(o, MobilityOption::MuHo { option_type, .. } if *option_type == muho_type))
}

/// Replaces values that would stall or flood the engine, with an event for each.
fn sanitize(mut config: MagConfig, events: &mut VecDeque<MagEvent>) -> MagConfig {
    let mut adjust = |what| events.push_back(MagEvent::ConfigAdjusted { what });
    let registration = &mut config.registration;
    if lifetime_units(registration.requested_lifetime) == 0 {
        // Lifetime 0 would be a de-registration (RFC 6275 §6.1.7).
        registration.requested_lifetime = Duration::from_secs(4);
        adjust("requested lifetime below 4 s: 4 s");
    }
    if !(1..=99).contains(&registration.refresh_percent) {
        registration.refresh_percent = registration.refresh_percent.clamp(1, 99);
        adjust("refresh percentage outside 1..=99: clamped");
    }
    if registration.initial_bindack_timeout.is_zero() {
        registration.initial_bindack_timeout = config::INITIAL_BINDACK_TIMEOUT;
        adjust("zero initial bindack timeout: 1 s");
    }
    if registration.initial_bindack_timeout_first_reg.is_some_and(|d| d.is_zero()) {
        registration.initial_bindack_timeout_first_reg = None;
        adjust("zero first-registration bindack timeout: unused");
    }
    if registration.max_bindack_timeout < registration.initial_bindack_timeout {
        registration.max_bindack_timeout = registration.initial_bindack_timeout;
        adjust("max bindack timeout below the initial one: raised");
    }
    if registration.max_transmissions == 0 {
        registration.max_transmissions = 1;
        adjust("zero PBU transmissions: 1");
    }
    if config.heartbeat.interval.is_some_and(|d| d.is_zero()) {
        config.heartbeat.interval = Some(config::HEARTBEAT_INTERVAL);
        adjust("zero heartbeat interval: 60 s");
    }
    if config.heartbeat.missing_allowed == 0 {
        config.heartbeat.missing_allowed = 1;
        adjust("zero missing heartbeats allowed: 1");
    }
    let ra = &mut config.router_advertisement;
    if ra.interval.is_zero() {
        ra.interval = config::MAX_RTR_ADV_INTERVAL;
        adjust("zero RA interval: 600 s");
    }
    if ra.initial_interval.is_zero() {
        ra.initial_interval = config::MAX_INITIAL_RTR_ADVERT_INTERVAL;
        adjust("zero initial RA interval: 16 s");
    }
    if ra.weak_host_flag && ra.weak_host_flag_bit > MAX_FLAG_BIT {
        ra.weak_host_flag = false;
        adjust("weak-host flag bit above 55: flag not sent");
    }
    config
}
