//! Flow mobility at the LMA (draft-bernardos-mif-pmip-02 §4.2, §5.3; RFC 7864): the binding
//! cache feeds the [`FlowSteering`] engine, and its outputs go out with the LMA's own.
//!
//! - A mobile node enters the steering engine with its first flow (a downlink packet to one of
//!   its prefixes) or its own rules. From then on every change of its bindings marks it; at the
//!   end of each input the LMA hands the steering engine the node's prefixes and one
//!   [`AttachmentView`] per live attachment,
//!   listing the prefixes that MAG routes to the node: its own; all the node's prefixes when
//!   it asked for MuHo and no notification to it is pending (it learned them from the PBA or
//!   the acknowledged notification, draft §5.2.2, §5.2.3); and those it accepted in an RFC 7864
//!   FLOW-MOBILITY notification. The node's last session gone, it is removed.
//! - Steering intents join the LMA's intent queue as `Resource::Steering`, after the tunnels
//!   they point into are added and before those tunnels are removed.
//! - RFC 7864 §3.1 make-before-break: each [`PrefixRequest`] becomes an Update Notification to
//!   the target MAG (reason FLOW-MOBILITY, A flag, MN-ID, the HNP to serve), retransmitted like
//!   the other notifications. A successful UPA makes that MAG serve the prefix (the held flows
//!   move); UPA 131/132, another failure status or giving up is reported to the engine as a
//!   refusal, and the flows stay on their fallback.

use core::net::{Ipv4Addr, Ipv6Addr};

use pmip6_wire::{MnIdentifier, MobilityOption, NotificationReason, Prefix, UpdateNotification, UpnFlags};

use pmip6_wire::flow::{FlowIdentification, FlowStatus, FlowSubOption};
use pmip6_wire::selector::{Ipv6Selector, TrafficSelector};

use super::binding_cache::{BindingId, BindingState};
use super::notify::Purpose;
use super::{Lma, LmaEvent};
use crate::common::{Intent, Now, Resource};
use crate::flow::policy::prefix_contains;
use crate::flow::{
    AttachmentView, ClassifyError, FlowSteering, IpVersion, MobileNodeView, MoveError, OperatorRule, PrefixRequest,
    Route, Rule, RuleRejection, SteeringIntent, TargetSpec, Verdict,
};

/// Flow Identification options in one FLOW-MOBILITY notification at most, so that it stays
/// well within one packet.
const MAX_FLOW_IDENTIFICATIONS: usize = 16;

impl Lma {
    /// Classifies a downlink packet (starting at its IP header) for the `learn` and `nfqueue`
    /// steering modes: its flow is found or created and the packet's route returned; a new
    /// flow's steering entry is queued as an intent. Without flow mobility configured every
    /// packet follows the per-prefix route ([`Verdict::NotMobileNode`]).
    pub fn handle_packet(&mut self, now: Now, packet: &[u8]) -> Result<Verdict, ClassifyError> {
        let Some(flows) = self.flows.as_mut() else { return Ok(Verdict::NotMobileNode) };
        let mut verdict = flows.handle_packet(now, packet);
        if let Ok(Verdict::NotMobileNode) = verdict
            && let Some(mn) = self.owner_unknown_to_steering(packet)
        {
            // The first flow of a mobile node the steering engine has not met: introduce it,
            // then classify again.
            self.introduce_to_steering(&mn);
            if let Some(flows) = self.flows.as_mut() {
                verdict = flows.handle_packet(now, packet);
            }
        }
        self.begin_input();
        self.finish_input(now);
        verdict
    }

    /// The mobile node owning the destination of `packet` in the binding cache (an IPv6 home
    /// network prefix, or an IPv4 home address of RFC 5844), when the steering engine does not
    /// know it yet.
    fn owner_unknown_to_steering(&self, packet: &[u8]) -> Option<MnIdentifier> {
        let b = match packet.first()? >> 4 {
            6 => {
                let dst: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
                let dst = u128::from_be_bytes(dst);
                let lengths = [self.config.allocated_prefix_len, 64];
                lengths.iter().find_map(|&len| {
                    let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len.min(128))) };
                    self.cache.by_prefix(&Prefix::new(Ipv6Addr::from(dst & mask), len))
                })?
            }
            4 => {
                let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
                self.cache.get(self.cache.ipv4_owner(&Ipv4Addr::from(dst))?)?
            }
            _ => return None,
        };
        let mn = b.mn_id();
        let flows = self.flows.as_ref()?;
        flows.mobile_node(mn).is_none().then(|| mn.clone())
    }

    /// Gives the steering engine its first view of `mn`.
    fn introduce_to_steering(&mut self, mn: &MnIdentifier) {
        let Some(view) = self.steering_view(mn) else { return };
        if let Some(flows) = self.flows.as_mut()
            && let Err(e) = flows.update_mobile_node(mn, view)
        {
            self.events.push_back(LmaEvent::SteeringRefused { mn_id: mn.clone(), error: e });
        }
    }

    /// Moves one flow of `mn` explicitly (draft §4.2): see [`FlowSteering::move_flow`]. When the
    /// target MAG does not route the flow's prefix yet, it is sent a FLOW-MOBILITY Update
    /// Notification first (RFC 7864 §3.1) and the flow moves once it is acknowledged.
    pub fn move_flow(&mut self, now: Now, mn: &MnIdentifier, fid: u16, target: TargetSpec) -> Result<Route, MoveError> {
        let flows = self.flows.as_mut().ok_or(MoveError::UnknownMobileNode)?;
        let result = flows.move_flow(mn, fid, target);
        self.begin_input();
        self.finish_input(now);
        result
    }

    /// Releases an explicit move of one flow of `mn`: the flow goes back to where the policy puts
    /// it (see [`FlowSteering::unpin`]), through make-before-break like any other move.
    pub fn unpin_flow(&mut self, now: Now, mn: &MnIdentifier, fid: u16) -> Result<Route, MoveError> {
        let flows = self.flows.as_mut().ok_or(MoveError::UnknownMobileNode)?;
        let result = flows.unpin(mn, fid);
        self.begin_input();
        self.finish_input(now);
        result
    }

    /// Moves every live flow of `mn` matching `selector` (RFC 6088): see
    /// [`FlowSteering::move_selector`]. Returns how many flows matched.
    pub fn move_selector(
        &mut self,
        now: Now,
        mn: &MnIdentifier,
        selector: &TrafficSelector,
        target: TargetSpec,
    ) -> Result<usize, MoveError> {
        let flows = self.flows.as_mut().ok_or(MoveError::UnknownMobileNode)?;
        let result = flows.move_selector(mn, selector, target);
        self.begin_input();
        self.finish_input(now);
        result
    }

    /// Replaces the operator rules (draft §4.4): see [`FlowSteering::set_operator_rules`].
    pub fn set_operator_rules(&mut self, now: Now, rules: Vec<OperatorRule>) -> Result<(), RuleRejection> {
        let Some(flows) = self.flows.as_mut() else { return Ok(()) };
        let result = flows.set_operator_rules(rules);
        self.begin_input();
        self.finish_input(now);
        result
    }

    /// Replaces a mobile node's own rules (draft §4.4): see
    /// [`FlowSteering::set_mobile_node_rules`].
    pub fn set_mobile_node_rules(
        &mut self,
        now: Now,
        mn: &MnIdentifier,
        rules: Vec<Rule>,
    ) -> Result<(), RuleRejection> {
        if self.flows.is_none() {
            return Err(RuleRejection { index: 0, error: crate::flow::RuleError::UnknownMobileNode });
        }
        if self.flows.as_ref().is_some_and(|f| f.mobile_node(mn).is_none()) {
            self.introduce_to_steering(mn);
        }
        let Some(flows) = self.flows.as_mut() else {
            return Err(RuleRejection { index: 0, error: crate::flow::RuleError::UnknownMobileNode });
        };
        let result = flows.set_mobile_node_rules(mn, rules);
        self.begin_input();
        self.finish_input(now);
        result
    }

    /// The flow-mobility engine, read-only (`None` when flow mobility is off).
    pub fn flow_steering(&self) -> Option<&FlowSteering> {
        self.flows.as_ref()
    }

    // ---- wiring ----------------------------------------------------------------------------------

    /// Marks where this input's intents start, for the tunnel-before-steering ordering.
    pub(super) fn begin_input(&mut self) {
        self.input_mark = self.intents.len();
    }

    /// Brings the steering engine up to date with every mobile node changed by this input and
    /// queues what it produced.
    pub(super) fn finish_input(&mut self, now: Now) {
        if self.flows.is_none() {
            self.steering_dirty.clear();
            return;
        }
        let dirty = core::mem::take(&mut self.steering_dirty);
        let mut removed_any = false;
        for mn in dirty {
            let view = self.steering_view(&mn);
            let Some(flows) = self.flows.as_mut() else { return };
            match view {
                Some(view) => {
                    if let Err(e) = flows.update_mobile_node(&mn, view) {
                        self.events.push_back(LmaEvent::SteeringRefused { mn_id: mn.clone(), error: e });
                    }
                }
                None => {
                    if flows.mobile_node(&mn).is_some() {
                        flows.remove_mobile_node(&mn);
                    }
                    removed_any = true;
                }
            }
        }
        if removed_any {
            let cache = &self.cache;
            self.flow_learned.retain(|(id, _), _| cache.binding(*id).is_some());
        }
        self.drain_steering(now);
    }

    /// Marks the mobile node of session `id` for a steering update, if the steering engine
    /// knows it: a mobile node enters the engine with its first flow or its own rules, so
    /// nodes that never have either cost it nothing.
    pub(super) fn mark_steering(&mut self, id: BindingId) {
        let Some(flows) = self.flows.as_ref() else { return };
        if let Some(b) = self.cache.binding(id) {
            let mn = self.cache.group_mn_id(b.group());
            if flows.mobile_node(mn).is_some() && !self.steering_dirty.contains(mn) {
                self.steering_dirty.insert(mn.clone());
            }
        }
    }

    /// What the steering engine must know of `mn`: `None` when it has no active session.
    fn steering_view(&mut self, mn: &MnIdentifier) -> Option<MobileNodeView> {
        let group = self.cache.group_of(mn)?;
        let sessions: Vec<BindingId> = self.cache.group_sessions(group).to_vec();
        let mut all: Vec<Prefix> = Vec::new();
        let mut ipv4_home_addresses: Vec<Ipv4Addr> = Vec::new();
        for id in &sessions {
            if let Some(b) = self.cache.binding(*id)
                && b.state == BindingState::Active
            {
                all.extend_from_slice(b.prefixes.as_slice());
                ipv4_home_addresses.extend(b.ipv4_home_address);
            }
        }
        if all.is_empty() {
            return None;
        }
        let last = self.flows.as_ref().and_then(|f| f.mobile_node(mn));
        let mut attachments = Vec::new();
        let mut live: Vec<(BindingId, Ipv6Addr)> = Vec::new();
        for id in &sessions {
            let Some(b) = self.cache.binding(*id) else { continue };
            if b.state != BindingState::Active {
                continue;
            }
            for a in b.attachments() {
                live.push((*id, a.proxy_coa));
                let mut prefixes: Vec<Prefix> = b.prefixes.as_slice().to_vec();
                if a.multihoming() {
                    let pending = self.notified.get(id).is_some_and(|l| l.iter().any(|(p, _)| *p == a.proxy_coa));
                    if pending {
                        // The MAG knows what it knew before the pending notification.
                        if let Some(before) =
                            last.and_then(|v| v.attachments.iter().find(|v| v.proxy_coa == a.proxy_coa))
                        {
                            prefixes.extend(before.prefixes.iter().filter(|p| all.contains(p)));
                        }
                    } else {
                        // Draft §5.2.2, §5.2.3: it learned the others from its PBA or the
                        // acknowledged notification.
                        prefixes.extend_from_slice(&all);
                    }
                }
                // RFC 7864 §3.1: prefixes it accepted in a FLOW-MOBILITY notification.
                if let Some(learned) = self.flow_learned.get(&(*id, a.proxy_coa)) {
                    prefixes.extend(learned.iter().filter(|p| all.contains(p)));
                }
                prefixes.sort();
                prefixes.dedup();
                attachments.push(AttachmentView {
                    proxy_coa: a.proxy_coa,
                    access_technology: a.access_technology(),
                    mn_link_layer_id: a.mn_ll_id.clone(),
                    prefixes,
                    // RFC 5844: the session's MAGs route its home address.
                    ipv4_home_address: b.ipv4_home_address,
                });
            }
        }
        // Prefixes learned at attachments that are gone are forgotten.
        self.flow_learned.retain(|(id, peer), _| !sessions.contains(id) || live.contains(&(*id, *peer)));
        Some(MobileNodeView { prefixes: all, ipv4_home_addresses, attachments })
    }

    /// Queues the steering engine's batches: steering intents after this input's tunnel
    /// additions and before its tunnel removals; prefix requests as FLOW-MOBILITY notifications.
    fn drain_steering(&mut self, now: Now) {
        let Some(flows) = self.flows.as_mut() else { return };
        let mut steering: Vec<Intent> = Vec::new();
        let mut requests: Vec<PrefixRequest> = Vec::new();
        while let Some(batch) = flows.poll_batch() {
            steering.extend(batch.intents.into_iter().map(|i| match i {
                SteeringIntent::Add(s) => Intent::Add(Resource::Steering(s)),
                SteeringIntent::Remove(s) => Intent::Remove(Resource::Steering(s)),
            }));
            requests.extend(batch.prefix_requests);
        }
        if !steering.is_empty() {
            // Tunnels this input removed (and did not add back) go after the steering that
            // may still point into them.
            let mark = self.input_mark.min(self.intents.len());
            let tail: Vec<Intent> = self.intents.drain(mark..).collect();
            let mut deferred = Vec::new();
            for (i, intent) in tail.iter().enumerate() {
                let re_added = |r: &Resource| tail[i + 1..].iter().any(|l| matches!(l, Intent::Add(x) if x == r));
                match intent {
                    Intent::Remove(r @ Resource::Tunnel { .. }) if !re_added(r) => deferred.push(intent.clone()),
                    _ => self.intents.push_back(intent.clone()),
                }
            }
            self.intents.extend(steering);
            self.intents.extend(deferred);
        }
        for request in requests {
            self.send_flow_mobility(now, request);
        }
        self.input_mark = self.intents.len();
    }

    /// RFC 7864 §3.1: asks MAG `peer` to route `prefix` to the mobile node before flows move.
    fn send_flow_mobility(&mut self, now: Now, request: PrefixRequest) {
        let PrefixRequest { mn, peer, prefix } = request;
        let Some(group) = self.cache.group_of(&mn) else { return };
        let session = self.cache.group_sessions(group).iter().copied().find(|id| {
            self.cache
                .binding(*id)
                .is_some_and(|b| b.state == BindingState::Active && b.attachments().any(|a| a.proxy_coa == peer))
        });
        let Some(session) = session else {
            if let Some(flows) = self.flows.as_mut() {
                flows.prefix_refused(&mn, peer, prefix);
            }
            return;
        };
        // RFC 6089 §4.2 / RFC 7864 §3.1: the waiting flows of that prefix, each by its 6-tuple.
        let flows: Vec<MobilityOption> = self
            .flows
            .as_ref()
            .map(|f| f.flows(&mn))
            .unwrap_or_default()
            .into_iter()
            .filter(|f| !f.preferred && f.key.version == IpVersion::V6 && prefix_contains(&prefix, f.key.dst))
            .take(MAX_FLOW_IDENTIFICATIONS)
            .map(|f| {
                let k = f.key;
                let selector =
                    Ipv6Selector::exact_six_tuple(k.src, k.dst, k.src_port, k.dst_port, k.flow_label, k.protocol);
                MobilityOption::FlowIdentification(FlowIdentification {
                    fid: f.fid,
                    priority: f.fid,
                    status: FlowStatus::Success,
                    suboptions: vec![FlowSubOption::TrafficSelector(TrafficSelector::Ipv6(selector))],
                })
            })
            .collect();
        let sequence = self.take_sequence();
        // RFC 7864 §3.1: reason FLOW-MOBILITY, acknowledgement requested, the MN-ID and the
        // HNP the MAG must now serve, then the flows that move.
        let mut options = vec![MobilityOption::MnIdentifier(mn), MobilityOption::HomeNetworkPrefix(prefix)];
        options.extend(flows);
        let message = pmip6_wire::Message::UpdateNotification(UpdateNotification {
            sequence,
            reason: NotificationReason::FlowMobility,
            flags: UpnFlags::A,
            options,
        });
        let policy = self.config.notification_retransmission;
        self.send_request(now, peer, sequence, Purpose::FlowMobility { binding: session, prefix }, message, policy);
    }

    /// The answer to a FLOW-MOBILITY notification: success makes the MAG serve the prefix;
    /// anything else (RFC 7864: 131 reason unspecified, 132 MN not attached) or no answer is
    /// a refusal.
    pub(super) fn on_flow_mobility_answer(
        &mut self,
        binding: BindingId,
        peer: Ipv6Addr,
        prefix: Prefix,
        accepted: bool,
    ) {
        let Some(b) = self.cache.binding(binding) else { return };
        let mn = self.cache.group_mn_id(b.group()).clone();
        if accepted {
            let learned = self.flow_learned.entry((binding, peer)).or_default();
            if !learned.contains(&prefix) {
                learned.push(prefix);
            }
            self.steering_dirty.insert(mn);
        } else if let Some(flows) = self.flows.as_mut() {
            flows.prefix_refused(&mn, peer, prefix);
        }
    }
}
