//! What the LMA reports for logs and metrics: every change of a binding, every rejection with
//! its status and reason, the fate of every notification and revocation, peer liveness, and
//! input it ignored. Events describe; they never ask the driver to act (intents do).

use core::net::Ipv6Addr;
use core::time::Duration;

use pmip6_wire::{BaStatus, BindingErrorStatus, HandoffIndicator, MnIdentifier, Prefix, RevocationStatus, UpaStatus};

use super::binding_cache::BindingId;
use crate::common::Now;

/// Why an entry was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// MinDelayBeforeBCEDelete elapsed after a de-registration (RFC 5213 §5.3.5).
    DeregistrationDelayElapsed,
    /// Revoked by the operator (RFC 5846).
    Revoked,
    /// Its MAG restarted (RFC 5847 §5.3).
    PeerRestarted,
}

/// Why an attachment of a virtual-interface entry went away while the entry stayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachmentRemoval {
    /// Its MAG de-registered it.
    Deregistered,
    /// Its lifetime ended.
    Expired,
    /// Revoked by the operator.
    Revoked,
    /// Its MAG restarted.
    PeerRestarted,
}

/// The answer to a notification: an Update Notification Acknowledgement or, in revocation
/// mode, a Binding Revocation Acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationAnswer {
    /// RFC 7077 UPA status.
    Upa(UpaStatus),
    /// RFC 5846 BRA status.
    Bra(RevocationStatus),
}

/// An event of the LMA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmaEvent {
    /// A new mobility session (RFC 5213 §5.3.2).
    BindingCreated {
        /// The entry.
        binding: BindingId,
        /// Its mobile node.
        mn_id: MnIdentifier,
        /// Its MAG.
        proxy_coa: Ipv6Addr,
        /// The prefixes assigned.
        prefixes: Vec<Prefix>,
        /// The PBU's Handoff Indicator.
        handoff: HandoffIndicator,
    },
    /// A lifetime extension from the registered MAG (RFC 5213 §5.3.3), or a re-registration of
    /// an entry that was de-registered.
    BindingRefreshed {
        /// The entry.
        binding: BindingId,
        /// Its MAG.
        proxy_coa: Ipv6Addr,
        /// The lifetime granted.
        lifetime: Duration,
    },
    /// The session moved to another MAG or interface (RFC 5213 §5.3.4): its routes now go to
    /// `to`.
    BindingHandedOff {
        /// The entry.
        binding: BindingId,
        /// The previous Proxy-CoA.
        from: Ipv6Addr,
        /// The new one (equal to `from` for a change of interface at the same MAG).
        to: Ipv6Addr,
        /// The PBU's Handoff Indicator.
        handoff: HandoffIndicator,
    },
    /// Virtual-interface mode: a further interface of the mobile node joined the entry.
    AttachmentAdded {
        /// The entry.
        binding: BindingId,
        /// The new attachment's MAG.
        proxy_coa: Ipv6Addr,
    },
    /// Virtual-interface mode: one interface left the entry; others remain.
    AttachmentRemoved {
        /// The entry.
        binding: BindingId,
        /// The attachment's MAG.
        proxy_coa: Ipv6Addr,
        /// Why.
        reason: AttachmentRemoval,
    },
    /// De-registered by its MAG (RFC 5213 §5.3.5): routes removed, entry kept for
    /// MinDelayBeforeBCEDelete.
    BindingDeregistered {
        /// The entry.
        binding: BindingId,
        /// Its MAG.
        proxy_coa: Ipv6Addr,
    },
    /// A de-registration that changed nothing: from a MAG other than the registered one
    /// (RFC 5213 §5.3.5: ignored), or for no existing entry. It was still answered.
    DeregistrationIgnored {
        /// The entry it named, if any.
        binding: Option<BindingId>,
        /// The MAG that sent it.
        from: Ipv6Addr,
        /// Why nothing changed.
        reason: &'static str,
    },
    /// The lifetime ended: routes removed and the entry deleted.
    BindingExpired {
        /// The entry.
        binding: BindingId,
        /// Its MAG.
        proxy_coa: Ipv6Addr,
    },
    /// The entry was deleted.
    BindingDeleted {
        /// The entry.
        binding: BindingId,
        /// Why.
        reason: DeleteReason,
    },
    /// A PBU with Handoff Indicator 4 waits up to MaxDelayBeforeNewBCEAssign for the previous
    /// MAG's de-registration of `candidate` (RFC 5213 §5.4.1).
    PbuHeld {
        /// The session it may take over.
        candidate: BindingId,
        /// The new MAG.
        from: Ipv6Addr,
        /// When a new session is created instead.
        until: Now,
    },
    /// A PBU was rejected; the PBA carries `status`.
    PbuRejected {
        /// The MAG.
        from: Ipv6Addr,
        /// The mobile node, if the PBU named one.
        mn_id: Option<MnIdentifier>,
        /// The PBA status.
        status: BaStatus,
        /// What was wrong.
        reason: &'static str,
    },
    /// A notification of the MN's prefix set went to one of its MAGs (`attempt` 0 is the first
    /// transmission).
    NotificationSent {
        /// The session the MAG serves.
        binding: BindingId,
        /// The MAG.
        peer: Ipv6Addr,
        /// The message's Sequence Number.
        sequence: u16,
        /// 0 for the first transmission, then the retransmission count.
        attempt: u8,
    },
    /// The MAG accepted a notification.
    NotificationAcknowledged {
        /// The session.
        binding: BindingId,
        /// The MAG.
        peer: Ipv6Addr,
        /// The Sequence Number.
        sequence: u16,
        /// Its answer.
        answer: NotificationAnswer,
    },
    /// The MAG answered a notification with a failure status.
    NotificationRefused {
        /// The session.
        binding: BindingId,
        /// The MAG.
        peer: Ipv6Addr,
        /// The Sequence Number.
        sequence: u16,
        /// Its answer.
        answer: NotificationAnswer,
    },
    /// No answer after every retransmission.
    NotificationGivenUp {
        /// The session.
        binding: BindingId,
        /// The MAG.
        peer: Ipv6Addr,
        /// The Sequence Number.
        sequence: u16,
    },
    /// A Binding Revocation Indication went to a MAG (RFC 5846).
    RevocationSent {
        /// The MAG.
        peer: Ipv6Addr,
        /// The Sequence Number.
        sequence: u16,
        /// 0 for the first transmission, then the retransmission count.
        attempt: u8,
        /// Whether the G flag revokes every binding of the MAG.
        global: bool,
    },
    /// The MAG acknowledged a revocation with status 0 or 1.
    RevocationAcknowledged {
        /// The MAG.
        peer: Ipv6Addr,
        /// The Sequence Number.
        sequence: u16,
        /// The BRA status.
        status: RevocationStatus,
    },
    /// The MAG answered a revocation with a failure status.
    RevocationFailed {
        /// The MAG.
        peer: Ipv6Addr,
        /// The Sequence Number.
        sequence: u16,
        /// The BRA status.
        status: RevocationStatus,
    },
    /// No BRA after every retransmission.
    RevocationGivenUp {
        /// The MAG.
        peer: Ipv6Addr,
        /// The Sequence Number.
        sequence: u16,
    },
    /// MISSING_HEARTBEATS_ALLOWED heartbeats went unanswered (RFC 5847 §5.2).
    PeerUnreachable {
        /// The MAG.
        peer: Ipv6Addr,
        /// Consecutive unanswered requests.
        missed: u32,
    },
    /// An unreachable MAG answered again.
    PeerReachable {
        /// The MAG.
        peer: Ipv6Addr,
    },
    /// A MAG's Restart Counter changed (RFC 5847 §5.3).
    PeerRestarted {
        /// The MAG.
        peer: Ipv6Addr,
        /// The counter before.
        previous: u32,
        /// The counter now.
        current: u32,
        /// Sessions removed as a consequence (0 when clean-up is off).
        sessions_removed: usize,
    },
    /// A Binding Error (status 2, unrecognised MH type) was sent (RFC 6275 §9.2).
    BindingErrorSent {
        /// The sender of the unknown message.
        to: Ipv6Addr,
        /// Its MH type.
        mh_type: u8,
    },
    /// A MAG sent us a Binding Error.
    BindingErrorReceived {
        /// The MAG.
        from: Ipv6Addr,
        /// Its status.
        status: BindingErrorStatus,
    },
    /// Input that is well-formed on the wire but means nothing to us here; dropped.
    Ignored {
        /// The sender.
        from: Ipv6Addr,
        /// What it was.
        reason: &'static str,
    },
    /// Part of the configuration could not be used; the rest is in effect.
    ConfigurationIgnored {
        /// What and why.
        problem: String,
    },
    /// The flow-mobility engine refused a mobile node's bindings (too many prefixes or
    /// attachments, or a prefix it already knows as another node's): its flows keep the last
    /// accepted view.
    SteeringRefused {
        /// The mobile node.
        mn_id: MnIdentifier,
        /// Why.
        error: crate::flow::MobileNodeError,
    },
}
