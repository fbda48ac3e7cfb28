//! Requests the LMA starts and retransmits until answered: notifications of a mobile node's
//! prefix set to its other MAGs (draft §5.2.3), and revocations (RFC 5846).
//!
//! When the set of live prefixes of a mobile node changes (a session created, de-registered,
//! re-activated, expired, deleted), every *other* active session of that MN whose MAG asked
//! for MuHo is sent the complete current set:
//!
//! ```text
//!   UPN (RFC 7077, MH 19)  seq, reason UPDATE-SESSION-PARAMETERS (2), A=1
//!       MN-ID | HNP of the receiving MAG's own session ... | MuHo per prefix of the MN's
//!       other live sessions ... (one empty MuHo if none)
//!   or, with `notify = revocation` (draft §5.2.3):
//!   BRI (RFC 5846, MH 16)  seq, trigger Unspecified, P=1, same options
//! ```
//!
//! A newer notification to the same session and MAG supersedes a pending one (new Sequence
//! Number; a late answer to the old one is ignored). Retransmissions keep their Sequence
//! Number, so an answer to any copy matches; the wait doubles from the initial timeout up to
//! the maximum, and after the configured number of retransmissions the LMA gives up.

use core::net::Ipv6Addr;
use core::time::Duration;

use pmip6_wire::{
    BindingRevocation, Message, MnIdentifier, MobilityOption, NotificationReason, Prefix, RevocationFlags,
    RevocationKind, RevocationStatus, RevocationTrigger, UpdateNotification, UpdateNotificationAck, UpnFlags,
};

use super::binding_cache::{BindingId, BindingState};
use super::config::{NotifyMode, Retransmission};
use super::event::{LmaEvent, NotificationAnswer};
use super::{Lma, Timer};
use crate::common::Now;

/// What an outstanding request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// The prefix set of the MN of this session, sent to the session's MAG.
    Notification(BindingId),
    /// An LMA-initiated revocation; `global` when the G flag is set.
    Revocation { global: bool },
    /// RFC 7864 §3.1: the MAG of session `binding` is asked to route `prefix` to the MN
    /// before flows move to it.
    FlowMobility { binding: BindingId, prefix: Prefix },
}

/// A request waiting for its answer.
#[derive(Debug, Clone)]
pub(super) struct Outstanding {
    purpose: Purpose,
    src: Ipv6Addr,
    message: Message,
    retries: u8,
    timeout: Duration,
    policy: Retransmission,
}

impl Lma {
    /// Sends `message` to `peer` and keeps it for retransmission until answered.
    pub(super) fn send_request(
        &mut self,
        now: Now,
        peer: Ipv6Addr,
        sequence: u16,
        purpose: Purpose,
        message: Message,
        policy: Retransmission,
    ) {
        let src = self.config.lmaa;
        self.send(src, peer, message.clone());
        self.sent_event(peer, sequence, purpose, 0);
        let timeout = policy.initial_timeout;
        self.outstanding.insert((peer, sequence), Outstanding { purpose, src, message, retries: 0, timeout, policy });
        self.timers.set(Timer::Retransmit(peer, sequence), now + timeout);
    }

    fn sent_event(&mut self, peer: Ipv6Addr, sequence: u16, purpose: Purpose, attempt: u8) {
        let event = match purpose {
            Purpose::Notification(binding) | Purpose::FlowMobility { binding, .. } => {
                LmaEvent::NotificationSent { binding, peer, sequence, attempt }
            }
            Purpose::Revocation { global } => LmaEvent::RevocationSent { peer, sequence, attempt, global },
        };
        self.events.push_back(event);
    }

    /// A retransmission timer fired: send again, or give up after the last retry.
    pub(super) fn on_retransmit(&mut self, now: Now, peer: Ipv6Addr, sequence: u16) {
        let key = (peer, sequence);
        let Some(o) = self.outstanding.get_mut(&key) else { return };
        if o.retries >= o.policy.max_retries {
            let purpose = o.purpose;
            self.finish(key);
            let event = match purpose {
                Purpose::Notification(binding) => LmaEvent::NotificationGivenUp { binding, peer, sequence },
                Purpose::FlowMobility { binding, prefix } => {
                    // RFC 7864 §3.1: no answer, no move.
                    self.on_flow_mobility_answer(binding, peer, prefix, false);
                    LmaEvent::NotificationGivenUp { binding, peer, sequence }
                }
                Purpose::Revocation { .. } => LmaEvent::RevocationGivenUp { peer, sequence },
            };
            self.events.push_back(event);
            return;
        }
        o.retries += 1;
        o.timeout = o.timeout.saturating_mul(2).min(o.policy.max_timeout.max(o.policy.initial_timeout));
        let (src, message, purpose, attempt, timeout) = (o.src, o.message.clone(), o.purpose, o.retries, o.timeout);
        self.send(src, peer, message);
        self.sent_event(peer, sequence, purpose, attempt);
        self.timers.set(Timer::Retransmit(peer, sequence), now + timeout);
    }

    /// Forgets an outstanding request.
    fn finish(&mut self, key: (Ipv6Addr, u16)) -> Option<Outstanding> {
        let o = self.outstanding.remove(&key)?;
        self.timers.cancel(&Timer::Retransmit(key.0, key.1));
        if let Purpose::Notification(binding) = o.purpose
            && let Some(list) = self.notified.get_mut(&binding)
        {
            list.retain(|k| *k != key);
            if list.is_empty() {
                self.notified.remove(&binding);
            }
        }
        Some(o)
    }

    /// Stops every notification pending for session `binding`.
    pub(super) fn cancel_notifications(&mut self, binding: BindingId) {
        let Some(list) = self.notified.remove(&binding) else { return };
        for key in list {
            self.outstanding.remove(&key);
            self.timers.cancel(&Timer::Retransmit(key.0, key.1));
        }
    }

    /// Stops the notification pending for session `binding` at MAG `peer`.
    pub(super) fn cancel_notifications_to(&mut self, binding: BindingId, peer: Ipv6Addr) {
        let Some(list) = self.notified.get(&binding) else { return };
        let keys: Vec<(Ipv6Addr, u16)> = list.iter().filter(|(p, _)| *p == peer).copied().collect();
        for key in keys {
            self.finish(key);
        }
    }

    /// The prefix set of `mn_id` changed: tell the MAGs of its other active sessions that asked
    /// for MuHo (draft §5.2.3). `origin` is the session whose change it was: its MAG learns the
    /// set from its PBA, or the session is gone.
    pub(super) fn notify_prefix_change(&mut self, now: Now, mn_id: &MnIdentifier, origin: Option<BindingId>) {
        if self.config.notify == NotifyMode::Off {
            return;
        }
        let Some(group) = self.cache.group_of(mn_id) else { return };
        let sessions = self.cache.group_sessions(group).to_vec();
        for id in sessions {
            if Some(id) == origin {
                continue;
            }
            let Some(b) = self.cache.binding(id) else { continue };
            if b.state != BindingState::Active {
                continue;
            }
            let mut peers: Vec<Ipv6Addr> = b.attachments().filter(|a| a.multihoming()).map(|a| a.proxy_coa).collect();
            peers.dedup();
            for peer in peers {
                self.send_notification(now, id, peer);
            }
        }
    }

    /// Sends session `id`'s MAG `peer` the MN's current prefix set, superseding any pending
    /// notification to it.
    fn send_notification(&mut self, now: Now, id: BindingId, peer: Ipv6Addr) {
        self.cancel_notifications_to(id, peer);
        let Some(b) = self.cache.binding(id) else { return };
        let mn_id = self.cache.group_mn_id(b.group()).clone();
        let own = b.prefixes.as_slice().to_vec();
        let others = self.other_live_prefixes(id);
        let mut options = Vec::with_capacity(2 + own.len() + others.len());
        options.push(MobilityOption::MnIdentifier(mn_id));
        options.extend(own.into_iter().map(MobilityOption::HomeNetworkPrefix));
        options.extend(self.muho_options(&others));
        let sequence = self.take_sequence();
        let message = match self.config.notify {
            NotifyMode::Revocation => Message::BindingRevocation(BindingRevocation {
                kind: RevocationKind::Indication(RevocationTrigger::Unspecified),
                sequence,
                flags: RevocationFlags::P,
                options,
            }),
            // RFC 7077 §4.1: reason UPDATE-SESSION-PARAMETERS, acknowledgement requested.
            _ => Message::UpdateNotification(UpdateNotification {
                sequence,
                reason: NotificationReason::UpdateSessionParameters,
                flags: UpnFlags::A,
                options,
            }),
        };
        self.notified.entry(id).or_default().push((peer, sequence));
        let policy = self.config.notification_retransmission;
        self.send_request(now, peer, sequence, Purpose::Notification(id), message, policy);
    }

    /// RFC 7077 §4.2: an Update Notification Acknowledgement.
    pub(super) fn on_update_notification_ack(&mut self, _now: Now, src: Ipv6Addr, upa: UpdateNotificationAck) {
        let key = (src, upa.sequence);
        let matches = self.outstanding.get(&key).is_some_and(|o| {
            matches!(o.purpose, Purpose::Notification(_) | Purpose::FlowMobility { .. })
                && matches!(o.message, Message::UpdateNotification(_))
        });
        if !matches {
            return self.ignored(src, "UPA matching no outstanding notification");
        }
        let Some(o) = self.finish(key) else { return };
        let answer = NotificationAnswer::Upa(upa.status);
        // RFC 7077 §4.2: statuses below 128 are successes.
        let accepted = u8::from(upa.status) < 128;
        let binding = match o.purpose {
            Purpose::Notification(binding) => {
                if accepted {
                    // The MAG now routes the MN's other prefixes (draft §5.2.3).
                    self.mark_steering(binding);
                }
                binding
            }
            Purpose::FlowMobility { binding, prefix } => {
                // RFC 7864 §3.1: SUCCESS commits the held move; 131/132 refuse it.
                self.on_flow_mobility_answer(binding, src, prefix, accepted);
                binding
            }
            Purpose::Revocation { .. } => return,
        };
        self.events.push_back(if accepted {
            LmaEvent::NotificationAcknowledged { binding, peer: src, sequence: upa.sequence, answer }
        } else {
            LmaEvent::NotificationRefused { binding, peer: src, sequence: upa.sequence, answer }
        });
    }

    /// RFC 5846 §6.2: a Binding Revocation Acknowledgement, for a revocation or a notification
    /// sent as a BRI.
    pub(super) fn on_revocation_ack(&mut self, _now: Now, src: Ipv6Addr, sequence: u16, status: RevocationStatus) {
        let key = (src, sequence);
        let is_bri = self.outstanding.get(&key).is_some_and(|o| matches!(o.message, Message::BindingRevocation(_)));
        if !is_bri {
            return self.ignored(src, "BRA matching no outstanding revocation");
        }
        let Some(o) = self.finish(key) else { return };
        let accepted = matches!(status, RevocationStatus::Success | RevocationStatus::PartialSuccess);
        let event = match (o.purpose, accepted) {
            (Purpose::Notification(binding), true) => LmaEvent::NotificationAcknowledged {
                binding,
                peer: src,
                sequence,
                answer: NotificationAnswer::Bra(status),
            },
            (Purpose::Notification(binding), false) => {
                LmaEvent::NotificationRefused { binding, peer: src, sequence, answer: NotificationAnswer::Bra(status) }
            }
            (Purpose::FlowMobility { binding, .. }, true) => LmaEvent::NotificationAcknowledged {
                binding,
                peer: src,
                sequence,
                answer: NotificationAnswer::Bra(status),
            },
            (Purpose::FlowMobility { binding, .. }, false) => {
                LmaEvent::NotificationRefused { binding, peer: src, sequence, answer: NotificationAnswer::Bra(status) }
            }
            (Purpose::Revocation { .. }, true) => LmaEvent::RevocationAcknowledged { peer: src, sequence, status },
            (Purpose::Revocation { .. }, false) => LmaEvent::RevocationFailed { peer: src, sequence, status },
        };
        self.events.push_back(event);
    }
}
