//! Proxy Binding Update processing (RFC 5213 §5.3) and the binding cache lookup (§5.4.1), with
//! the draft's MuHo answer (§5.2.2) and virtual interfaces (§5.4).
//!
//! A PBU goes through three steps:
//!
//! 1. `check`: the RFC 5213 §5.3.1 checks that need no binding, in the RFC's order — proxy
//!    registration, MN-ID (160), MAG authorisation (154), MN enabled (152), timestamp presence
//!    and validity window (156), then the mandatory HNP (158), HI (161) and ATT (162) options.
//! 2. `resolve`: the §5.4.1 lookup decides which session the PBU is about — an existing one,
//!    a new one, or (Handoff Indicator 4) none yet: the PBU is held for up to
//!    MaxDelayBeforeNewBCEAssign. Prefix ownership (155) and prefix-set mismatches (159) are
//!    found here.
//! 3. `execute`: the ordering check against the session found (157, or 135 in sequence-number
//!    mode), then registration (§5.3.2), lifetime extension (§5.3.3), handoff (§5.3.4) or
//!    de-registration (§5.3.5), the data-plane intents, and the PBA (§5.3.6).
//!
//! Choices where the RFCs leave room (each marked at the line that makes it):
//! - A BU without the P flag: 131 when H is set (we are no MIPv6 home agent, RFC 6275
//!   §10.3.1), else 129.
//! - Timestamp mode and no Timestamp option: 156, with our time in the PBA so the MAG can
//!   resynchronise, as for a timestamp outside the window.
//! - 157 and 135 need the session, so they are checked after the lookup: a PBU that lacks a
//!   mandatory option gets 158/161/162 even if it is also stale.
//! - A de-registration from a MAG other than the registered one is ignored (RFC 5213 §5.3.5)
//!   but still answered (status 0, lifetime 0) so that the old MAG stops retransmitting; so is
//!   a de-registration for which no entry exists.
//! - A held PBU resumed into the session its old MAG just de-registered skips the ordering
//!   check: the old MAG's de-registration may carry a later timestamp than the held PBU.
//! - An exact duplicate of the last accepted PBU (same MAG, sequence and timestamp) is answered
//!   again instead of getting 157; the timestamp window is compared at the option's 1/65536 s
//!   resolution.
//! - §5.4.1 with only ALL_ZERO prefixes and no MN-LL-ID match: HI 2 takes a de-registered
//!   session of the MN at once, and an active one only once its MAG de-registers it within
//!   MaxDelayBeforeNewBCEAssign (a late or wrong hint must not take a session from an interface
//!   still in use); HI 3 takes the session of the same
//!   access technology unless MN-LL-IDs differ; HI 4 takes a session already de-registered at
//!   once, else waits for an active one at another MAG; HI 5 without MN-LL-ID matches the same
//!   MAG and ATT; anything else is a new session.
//! - Virtual-interface mode (draft §5.4): every PBU of the MN is about its one entry. Which
//!   attachment: the one at the PBU's MAG with its ATT and MN-LL-ID; since the interfaces may
//!   share one MAC, the same ATT and MN-LL-ID at another MAG is a further interface when the HI
//!   is 1 or 6 (RFC 7864) and a handoff of the first such interface otherwise. A further
//!   interface adds a tunnel; the per-prefix route stays at the first attachment.
//! - One prefix is allocated per ALL_ZERO HNP option (at most 8 per session).
//! - A MAG that sent MuHo once stays "multihoming" for that attachment until it moves.

use core::net::{Ipv4Addr, Ipv6Addr};

use pmip6_wire::{
    AccessTechnologyType, BaFlags, BaStatus, BindingAck, BindingUpdate, BuFlags, HandoffIndicator, Ipv4HoaReplyStatus,
    Message, MnIdentifier, MobilityOption, Prefix, Timestamp,
};

use super::binding_cache::{
    Attachment, Binding, BindingId, BindingState, LinkLayerId, PrefixList, nanos, same_prefix_set,
};
use super::config::MessageOrdering;
use super::event::{AttachmentRemoval, LmaEvent};
use super::{Footprint, Lma, Timer};
use crate::common::{Now, lifetime_duration, lifetime_units, sequence_newer};

/// At most this many prefixes are allocated for one session's ALL_ZERO HNP options.
const MAX_ALLOCATED_PER_SESSION: usize = 8;

/// A Proxy Binding Update taken apart once: fixed fields and the options the LMA reads.
/// Repeated single-valued options: the first counts.
#[derive(Debug, Clone)]
pub(super) struct Pbu {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sequence: u16,
    flags: BuFlags,
    lifetime: u16,
    mn_id: Option<MnIdentifier>,
    hnps: Vec<Prefix>,
    hi: Option<HandoffIndicator>,
    att: Option<AccessTechnologyType>,
    lli: Option<LinkLayerId>,
    lla: Option<Ipv6Addr>,
    timestamp: Option<Timestamp>,
    muho: bool,
    /// RFC 5844 §3.1.3: the IPv4 Home Address Request options (prefix length, address).
    ipv4_requests: Vec<(u8, Ipv4Addr)>,
}

impl Pbu {
    fn new(src: Ipv6Addr, dst: Ipv6Addr, bu: BindingUpdate) -> Self {
        let mut pbu = Pbu {
            src,
            dst,
            sequence: bu.sequence,
            flags: bu.flags,
            lifetime: bu.lifetime,
            mn_id: None,
            hnps: Vec::new(),
            hi: None,
            att: None,
            lli: None,
            lla: None,
            timestamp: None,
            muho: false,
            ipv4_requests: Vec::new(),
        };
        for option in bu.options {
            match option {
                MobilityOption::MnIdentifier(id) => {
                    pbu.mn_id.get_or_insert(id);
                }
                MobilityOption::HomeNetworkPrefix(p) => pbu.hnps.push(p),
                MobilityOption::HandoffIndicator(hi) => {
                    pbu.hi.get_or_insert(hi);
                }
                MobilityOption::AccessTechnologyType(att) => {
                    pbu.att.get_or_insert(att);
                }
                MobilityOption::MnLinkLayerIdentifier(lli) if pbu.lli.is_none() => {
                    pbu.lli = LinkLayerId::new(&lli);
                }
                MobilityOption::LinkLocalAddress(a) => {
                    pbu.lla.get_or_insert(a);
                }
                MobilityOption::Timestamp(ts) => {
                    pbu.timestamp.get_or_insert(ts);
                }
                // Draft §5.2.1: an (empty) MuHo asks for the MN's other prefixes.
                MobilityOption::MuHo { .. } => pbu.muho = true,
                MobilityOption::Ipv4HomeAddressRequest { prefix_len, address } => {
                    pbu.ipv4_requests.push((prefix_len, address));
                }
                _ => {}
            }
        }
        pbu
    }

    /// The non-zero HNPs, without repetition.
    fn requested_prefixes(&self) -> Vec<Prefix> {
        let mut out: Vec<Prefix> = Vec::with_capacity(self.hnps.len());
        for p in &self.hnps {
            if !p.is_all_zero() && !out.contains(p) {
                out.push(*p);
            }
        }
        out
    }
}

/// A PBU that passed the checks that need no binding.
#[derive(Debug, Clone)]
pub(super) struct Checked {
    pbu: Pbu,
    mn_id: MnIdentifier,
    hi: HandoffIndicator,
    att: AccessTechnologyType,
    /// The IPv4 Home Address Reply the PBA carries, once decided (RFC 5844 §3.1.3).
    ipv4_reply: Option<Ipv4Reply>,
}

/// An IPv4 Home Address Reply: status, prefix length and address (RFC 5844 §3.3.2).
#[derive(Debug, Clone, Copy)]
struct Ipv4Reply {
    status: Ipv4HoaReplyStatus,
    prefix_len: u8,
    address: Ipv4Addr,
}

impl Checked {
    fn same_request(&self, other: &Checked) -> bool {
        self.pbu.src == other.pbu.src
            && self.mn_id == other.mn_id
            && self.att == other.att
            && self.pbu.lli == other.pbu.lli
    }
}

/// Which held PBUs to drop.
#[derive(Debug, Clone, Copy)]
pub(super) enum HeldBy<'a> {
    /// Every one.
    Any,
    /// Those of one mobile node.
    MobileNode(&'a MnIdentifier),
    /// Those sent by one MAG.
    Mag(Ipv6Addr),
}

/// A PBU with Handoff Indicator 4 waiting for the old MAG's de-registration of `candidate`.
#[derive(Debug, Clone)]
pub(super) struct Hold {
    req: Checked,
    candidate: BindingId,
}

/// What the lookup found.
#[derive(Debug)]
enum Target {
    /// A new mobility session with these requested (authorised) prefixes, plus one allocated
    /// per ALL_ZERO HNP.
    New { requested: Vec<Prefix> },
    /// An existing session; `attachment` is the one the PBU is about, `None` for a new
    /// attachment of a virtual-interface entry.
    Existing { id: BindingId, attachment: Option<usize> },
    /// Wait for `candidate`'s de-registration.
    Hold { candidate: BindingId },
}

/// A rejection: the PBA status, why, and the Sequence Number to put in the PBA when it is not
/// the PBU's (135 carries the last accepted one).
#[derive(Debug, Clone, Copy)]
struct Rejection {
    status: BaStatus,
    reason: &'static str,
    sequence: Option<u16>,
}

fn reject(status: BaStatus, reason: &'static str) -> Rejection {
    Rejection { status, reason, sequence: None }
}

/// The variable parts of a PBA.
struct Reply<'a> {
    status: BaStatus,
    sequence: u16,
    lifetime: u16,
    prefixes: &'a [Prefix],
    lla: Option<Ipv6Addr>,
    muho: Option<Vec<Prefix>>,
    timestamp: Option<Timestamp>,
    ipv4: Option<Ipv4Reply>,
}

impl Lma {
    pub(super) fn on_binding_update(&mut self, now: Now, src: Ipv6Addr, dst: Ipv6Addr, bu: BindingUpdate) {
        let pbu = Pbu::new(src, dst, bu);
        let req = match self.check(now, &pbu) {
            Ok((mn_id, hi, att)) => Checked { pbu, mn_id, hi, att, ipv4_reply: None },
            Err(rejection) => return self.reject(now, &pbu, rejection),
        };
        match self.resolve(&req) {
            Ok(target) => self.execute(now, req, target, true),
            Err(rejection) => self.reject(now, &req.pbu, rejection),
        }
    }

    /// RFC 5213 §5.3.1, the checks before the binding cache lookup, in order.
    fn check(&self, now: Now, pbu: &Pbu) -> Result<(MnIdentifier, HandoffIndicator, AccessTechnologyType), Rejection> {
        // RFC 5213 §5.3.1 / RFC 6275 §10.3.1: we serve proxy registrations only. A home
        // registration (H set) is "not supported" (131); anything else is prohibited (129).
        if !pbu.flags.contains(BuFlags::P) {
            let status = if pbu.flags.contains(BuFlags::H) {
                BaStatus::HomeRegistrationNotSupported
            } else {
                BaStatus::AdministrativelyProhibited
            };
            return Err(reject(status, "not a proxy registration (P flag clear)"));
        }
        // RFC 5213 §5.3.1: no MN-Identifier option -> 160.
        let Some(mn_id) = pbu.mn_id.clone() else {
            return Err(reject(BaStatus::MissingMnIdentifierOption, "no MN-Identifier option"));
        };
        // RFC 5213 §5.3.1: the sender must be a MAG authorised for proxy registration (154).
        if let Some(mags) = &self.authorized_mags
            && !mags.contains(&pbu.src)
        {
            return Err(reject(BaStatus::MagNotAuthorizedForProxyReg, "MAG not authorised in this domain"));
        }
        let policy = self.policies.get(&mn_id);
        if let Some(mags) = policy.and_then(|p| p.authorized_mags.as_ref())
            && !mags.contains(&pbu.src)
        {
            return Err(reject(BaStatus::MagNotAuthorizedForProxyReg, "MAG not authorised for this mobile node"));
        }
        // RFC 5213 §5.3.1: the mobile node must be entitled to network-based mobility (152).
        match policy {
            None if !self.config.serve_unknown_mobile_nodes => {
                return Err(reject(BaStatus::ProxyRegNotEnabled, "unknown mobile node"));
            }
            Some(p) if !p.enabled => {
                return Err(reject(BaStatus::ProxyRegNotEnabled, "mobile node not enabled"));
            }
            _ => {}
        }
        // RFC 5213 §5.5: timestamp ordering. A missing Timestamp option gets 156 like a
        // timestamp outside the window (our choice, see the module documentation).
        if self.config.ordering == MessageOrdering::Timestamp {
            let Some(ts) = pbu.timestamp else {
                return Err(reject(BaStatus::TimestampMismatch, "no Timestamp option (timestamp ordering)"));
            };
            // Compared at the option's resolution (1/65536 s), so that both clocks' truncation
            // to it does not move the window's edge.
            let skew = Timestamp::from_unix(now).0.abs_diff(ts.0);
            let window = self.config.timestamp_validity_window.as_nanos().saturating_mul(65536).div_ceil(1_000_000_000);
            // RFC 5213 §5.5: outside TimestampValidityWindow -> 156, PBA carries our time.
            if u128::from(skew) > window {
                return Err(reject(BaStatus::TimestampMismatch, "timestamp outside the validity window"));
            }
        }
        // RFC 5213 §5.3.1: mandatory options.
        if pbu.hnps.is_empty() {
            return Err(reject(BaStatus::MissingHomeNetworkPrefixOption, "no Home Network Prefix option"));
        }
        let Some(hi) = pbu.hi else {
            return Err(reject(BaStatus::MissingHandoffIndicatorOption, "no Handoff Indicator option"));
        };
        let Some(att) = pbu.att else {
            return Err(reject(BaStatus::MissingAccessTechTypeOption, "no Access Technology Type option"));
        };
        // RFC 5844 §3.1.3: one IPv4 home address per mobility session.
        if pbu.ipv4_requests.len() > 1 {
            return Err(reject(
                BaStatus::MultipleIpv4HomeAddressAssignmentNotSupported,
                "more than one IPv4 Home Address Request option",
            ));
        }
        Ok((mn_id, hi, att))
    }

    /// Whether the mobile node may have `prefix` by asking for it (RFC 5213 §5.3.2: the
    /// requested prefix must be authorised for it, else 155).
    fn authorised_prefix(&self, mn_id: &MnIdentifier, prefix: &Prefix) -> bool {
        self.policies.get(mn_id).is_some_and(|p| p.prefixes.contains(prefix))
            || (self.config.honour_requested_pool_prefixes && self.pools.contains(prefix))
    }

    /// RFC 5213 §5.4.1: which session the PBU is about.
    fn resolve(&self, req: &Checked) -> Result<Target, Rejection> {
        let group = self.cache.group_of(&req.mn_id);
        let requested = req.pbu.requested_prefixes();
        if !requested.is_empty() {
            // RFC 5213 §5.4.1.1: look the session up by its prefixes.
            let mut found: Option<BindingId> = None;
            let mut unbound = false;
            for p in &requested {
                match self.cache.prefix_owner(p) {
                    Some(id) => {
                        let owner_group = self.cache.binding(id).map(Binding::group);
                        if owner_group != group {
                            // RFC 5213 §5.3.1: the prefix is another mobile node's -> 155.
                            return Err(reject(
                                BaStatus::NotAuthorizedForHomeNetworkPrefix,
                                "prefix bound to another mobile node",
                            ));
                        }
                        if found.is_some_and(|f| f != id) {
                            // RFC 5213 §5.4.1.1: the prefixes span several sessions -> 159.
                            return Err(reject(
                                BaStatus::BcePbuPrefixSetDoNotMatch,
                                "prefixes of several sessions in one PBU",
                            ));
                        }
                        found = Some(id);
                    }
                    None => unbound = true,
                }
            }
            return match found {
                Some(id) => {
                    let bound = self.cache.binding(id).map(|b| b.prefixes.as_slice()).unwrap_or(&[]);
                    // RFC 5213 §5.4.1.1: the PBU's prefix set must be the entry's -> 159.
                    if unbound || !same_prefix_set(bound, &requested) {
                        return Err(reject(
                            BaStatus::BcePbuPrefixSetDoNotMatch,
                            "prefix set differs from the binding's",
                        ));
                    }
                    let attachment = if self.config.virtual_interface { self.vif_attachment(id, req) } else { Some(0) };
                    Ok(Target::Existing { id, attachment })
                }
                None => {
                    if self.config.virtual_interface && group.is_some_and(|g| !self.cache.group_sessions(g).is_empty())
                    {
                        // Draft §5.4: one entry per MN; other prefixes do not match it -> 159.
                        return Err(reject(
                            BaStatus::BcePbuPrefixSetDoNotMatch,
                            "virtual interface: prefixes differ from the mobile node's entry",
                        ));
                    }
                    if requested.iter().any(|p| !self.authorised_prefix(&req.mn_id, p)) {
                        // RFC 5213 §5.3.2: a requested prefix the MN is not authorised for -> 155.
                        return Err(reject(BaStatus::NotAuthorizedForHomeNetworkPrefix, "prefix not authorised"));
                    }
                    Ok(Target::New { requested })
                }
            };
        }
        // Only ALL_ZERO prefixes from here on.
        let Some(group) = group else { return Ok(Target::New { requested }) };
        if self.config.virtual_interface {
            // Draft §5.4: the MN's one entry, whatever the Handoff Indicator says.
            return Ok(match self.cache.group_sessions(group).first() {
                Some(&id) => Target::Existing { id, attachment: self.vif_attachment(id, req) },
                None => Target::New { requested },
            });
        }
        // RFC 5213 §5.4.1.2: with an MN-LL-ID, (MN-ID, ATT, MN-LL-ID) names the interface.
        if let Some(lli) = &req.pbu.lli
            && let Some(id) = self.cache.find_link(group, req.att, lli)
        {
            return Ok(Target::Existing { id, attachment: Some(0) });
        }
        let src = req.pbu.src;
        let sessions = self.cache.group_sessions(group);
        let view = |id: &BindingId| self.cache.binding(*id).map(|b| (*id, b));
        match req.hi {
            // RFC 5213 §5.4.1.3: re-registration without MN-LL-ID: same MAG, same ATT.
            HandoffIndicator::NotChanged if req.pbu.lli.is_none() => {
                let same = sessions
                    .iter()
                    .filter_map(view)
                    .find(|(_, b)| b.primary().proxy_coa == src && b.primary().att == req.att);
                Ok(match same {
                    Some((id, _)) => Target::Existing { id, attachment: Some(0) },
                    None => Target::New { requested },
                })
            }
            // RFC 5213 §5.4.1.2/3: handoff between interfaces: the new interface takes the MN's
            // existing session. A de-registered one is taken at once: its interface just went
            // away. An active one is taken only once its MAG de-registers it, within
            // MaxDelayBeforeNewBCEAssign (as for HI 4): a hint that arrives late, or that is
            // wrong, must not take a session from an interface that is still up.
            HandoffIndicator::BetweenInterfaces => {
                let best = sessions
                    .iter()
                    .filter_map(view)
                    .max_by_key(|(_, b)| (b.state == BindingState::Deregistered, b.primary().attached_at));
                Ok(match best {
                    Some((id, b)) if b.state == BindingState::Deregistered => {
                        Target::Existing { id, attachment: Some(0) }
                    }
                    Some((id, _)) if req.pbu.lifetime > 0 => Target::Hold { candidate: id },
                    _ => Target::New { requested },
                })
            }
            // RFC 5213 §5.4.1.3: handoff between MAGs for the same interface, which no MN-LL-ID
            // named: the session of the same access technology whose MN-LL-ID does not
            // contradict (a de-registered one first, then one at another MAG, then the most
            // recent). Two different MN-LL-IDs are two interfaces: a new session.
            HandoffIndicator::BetweenMags => {
                let best = sessions
                    .iter()
                    .filter_map(view)
                    .filter(|(_, b)| {
                        b.primary().att == req.att && (b.primary().mn_ll_id.is_none() || req.pbu.lli.is_none())
                    })
                    .max_by_key(|(_, b)| {
                        (b.state == BindingState::Deregistered, b.primary().proxy_coa != src, b.primary().attached_at)
                    });
                Ok(match best {
                    Some((id, _)) => Target::Existing { id, attachment: Some(0) },
                    None => Target::New { requested },
                })
            }
            // RFC 5213 §5.4.1.2/3: handoff state unknown. A session its MAG already
            // de-registered is taken at once; an active one at another MAG makes the PBU wait
            // MaxDelayBeforeNewBCEAssign for that MAG's de-registration.
            HandoffIndicator::StateUnknown => {
                let best = sessions
                    .iter()
                    .filter_map(view)
                    .filter(|(_, b)| b.state == BindingState::Deregistered || b.primary().proxy_coa != src)
                    .max_by_key(|(_, b)| {
                        (b.state == BindingState::Deregistered, b.primary().att == req.att, b.primary().attached_at)
                    });
                Ok(match best {
                    Some((id, b)) if b.state == BindingState::Deregistered => {
                        Target::Existing { id, attachment: Some(0) }
                    }
                    Some((id, _)) if req.pbu.lifetime > 0 => Target::Hold { candidate: id },
                    _ => Target::New { requested },
                })
            }
            // RFC 5213 §5.4.1.2/3: attachment over a new interface (1), RFC 7864's new
            // interface sharing prefixes (6), and anything else: a new session.
            _ => Ok(Target::New { requested }),
        }
    }

    /// Draft §5.4, virtual interface: which attachment of entry `id` the PBU is about; `None`
    /// for a new one (another physical interface, not a handoff).
    fn vif_attachment(&self, id: BindingId, req: &Checked) -> Option<usize> {
        let b = self.cache.binding(id)?;
        if b.state == BindingState::Deregistered {
            // The entry comes back through this attachment.
            return Some(0);
        }
        if let Some(lli) = &req.pbu.lli {
            let same_link = |a: &Attachment| a.mn_ll_id.as_ref() == Some(lli) && a.att == req.att;
            // RFC 5213 §5.4.1.2: (MN-ID, ATT, MN-LL-ID) names the interface; the MAG already
            // serving it first, since the interfaces of a virtual interface share one MAC
            // address (draft §5.4) and so one MN-LL-ID.
            if let Some(i) = b.attachments().position(|a| same_link(a) && a.proxy_coa == req.pbu.src) {
                return Some(i);
            }
            // Draft §5.4: with the MN-LL-ID shared, the ATT "in conjunction with a new value of
            // the HI field" keeps a further interface from being taken for a handoff: a MAG
            // announcing a new interface (HI 1, RFC 5213 §5.4.1.2) or one sharing the prefixes
            // (HI 6, RFC 7864) adds an attachment; other indicators hand the interface off.
            if matches!(req.hi, HandoffIndicator::NewInterface | HandoffIndicator::NewInterfaceSharingPrefixes) {
                return None;
            }
            return b.attachments().position(same_link);
        }
        b.attachments().position(|a| a.proxy_coa == req.pbu.src && a.att == req.att).or_else(|| {
            if req.hi == HandoffIndicator::BetweenMags { b.attachments().position(|a| a.att == req.att) } else { None }
        })
    }

    /// RFC 5213 §5.5: the PBU must be newer than the last one accepted for this attachment.
    fn check_ordering(&self, req: &Checked, a: &Attachment) -> Result<(), Rejection> {
        match self.config.ordering {
            MessageOrdering::Timestamp => {
                if let (Some(ts), Some(last)) = (req.pbu.timestamp, a.last_timestamp()) {
                    // An exact duplicate of the accepted PBU (same MAG, sequence and timestamp)
                    // is answered again rather than refused.
                    let duplicate =
                        ts == last && a.proxy_coa == req.pbu.src && a.last_sequence() == Some(req.pbu.sequence);
                    if ts < last || (ts == last && !duplicate) {
                        // RFC 5213 §5.5: lower than the last accepted timestamp -> 157.
                        return Err(reject(
                            BaStatus::TimestampLowerThanPrevAccepted,
                            "timestamp not newer than the last accepted",
                        ));
                    }
                }
            }
            MessageOrdering::SequenceNumber => {
                // RFC 6275 §9.5.1 (RFC 5213 §5.5): not newer than the last accepted -> 135, and
                // the PBA carries the last accepted number. Each MAG numbers its own PBUs, so
                // only the registered MAG's numbers are compared.
                if a.proxy_coa == req.pbu.src
                    && let Some(last) = a.last_sequence()
                    && !sequence_newer(req.pbu.sequence, last)
                {
                    return Err(Rejection {
                        status: BaStatus::SequenceNumberOutOfWindow,
                        reason: "sequence number not newer than the last accepted",
                        sequence: Some(last),
                    });
                }
            }
        }
        Ok(())
    }

    fn execute(&mut self, now: Now, req: Checked, target: Target, check_order: bool) {
        match target {
            Target::Hold { candidate } => self.hold(now, req, candidate),
            Target::New { requested } => {
                if req.pbu.lifetime == 0 {
                    self.deregister_nothing(now, req);
                } else {
                    self.create(now, req, requested);
                }
            }
            Target::Existing { id, attachment } => {
                let Some(b) = self.cache.binding(id) else {
                    return self.create(now, req, Vec::new());
                };
                let current = attachment.and_then(|i| b.attachment(i));
                if check_order
                    && let Some(a) = current
                    && let Err(rejection) = self.check_ordering(&req, a)
                {
                    return self.reject(now, &req.pbu, rejection);
                }
                let registered_here = current.is_some_and(|a| a.proxy_coa == req.pbu.src);
                match (req.pbu.lifetime, attachment) {
                    (0, Some(index)) if registered_here => self.deregister(now, req, id, index),
                    (0, _) => {
                        // RFC 5213 §5.3.5: a de-registration from a MAG that is not the
                        // registered one does not touch the entry.
                        let prefixes = b.prefixes.as_slice().to_vec();
                        self.events.push_back(LmaEvent::DeregistrationIgnored {
                            binding: Some(id),
                            from: req.pbu.src,
                            reason: "de-registration from a MAG other than the registered one",
                        });
                        self.answer_without_change(&req, id, &prefixes);
                    }
                    (_, Some(index)) => self.update(now, req, id, index),
                    (_, None) => self.attach(now, req, id),
                }
            }
        }
    }

    /// RFC 5213 §5.3.2: a new mobility session.
    fn create(&mut self, now: Now, req: Checked, requested: Vec<Prefix>) {
        let zero = req.pbu.hnps.iter().filter(|p| p.is_all_zero()).count().min(MAX_ALLOCATED_PER_SESSION);
        let mut prefixes = requested;
        let from_pool = prefixes.len();
        for _ in 0..zero {
            let cache = &self.cache;
            let taken = &prefixes;
            match self.pools.allocate(|p| cache.prefix_owner(p).is_some() || taken.contains(p)) {
                Some(p) => prefixes.push(p),
                None => {
                    for p in &prefixes[from_pool..] {
                        self.pools.release(p);
                    }
                    // RFC 5213 §5.3.2 / RFC 6275: no prefix left -> 130.
                    return self.reject(
                        now,
                        &req.pbu,
                        reject(BaStatus::InsufficientResources, "no home network prefix left in the pools"),
                    );
                }
            }
        }
        if prefixes.is_empty() {
            return self.reject(now, &req.pbu, reject(BaStatus::ReasonUnspecified, "no prefix to assign"));
        }
        let granted = self.granted_lifetime(req.pbu.lifetime);
        let mut attachment = Attachment::new(
            req.pbu.src,
            req.att,
            req.pbu.lli.clone(),
            now,
            now + lifetime_duration(granted),
            granted,
            req.pbu.muho,
        );
        attachment.accept_ordering(req.pbu.timestamp, req.pbu.sequence);
        let id = self.cache.insert(&req.mn_id, Binding::new(PrefixList::new(&prefixes), attachment));
        let mut req = req;
        req.ipv4_reply = self.assign_ipv4(id, &req.pbu);
        let after = self.footprint(id);
        self.apply_footprint(now, &Footprint::empty(), &after);
        self.mark_steering(id);
        self.events.push_back(LmaEvent::BindingCreated {
            binding: id,
            mn_id: req.mn_id.clone(),
            proxy_coa: req.pbu.src,
            prefixes: prefixes.clone(),
            handoff: req.hi,
        });
        self.answer(&req, id, BaStatus::Accepted, granted, &prefixes);
        self.notify_prefix_change(now, &req.mn_id, Some(id));
    }

    /// RFC 5213 §5.3.3 (same MAG) and §5.3.4 (another MAG or interface): the attachment takes
    /// the PBU's Proxy-CoA, ATT and MN-LL-ID and its lifetime restarts; a de-registered entry
    /// becomes active again.
    fn update(&mut self, now: Now, req: Checked, id: BindingId, index: usize) {
        let Some(b) = self.cache.binding(id) else { return };
        let Some(old) = b.attachment(index).cloned() else { return };
        let was = b.state;
        let moved = old.proxy_coa != req.pbu.src || old.att != req.att || old.mn_ll_id != req.pbu.lli;
        let granted = self.granted_lifetime(req.pbu.lifetime);
        let expires = nanos(now + lifetime_duration(granted));
        let before = self.footprint(id);
        let (src, att, lli, muho) = (req.pbu.src, req.att, req.pbu.lli.clone(), req.pbu.muho);
        let (timestamp, sequence) = (req.pbu.timestamp, req.pbu.sequence);
        self.cache.update_attachment(id, index, |a| {
            a.proxy_coa = src;
            a.att = att;
            a.mn_ll_id = lli;
            a.expires = expires;
            a.lifetime = granted;
            if moved {
                a.attached_at = nanos(now);
                a.set_multihoming(muho);
            } else if muho {
                // Once a MAG asked for MuHo, its later PBUs need not repeat it.
                a.set_multihoming(true);
            }
            a.accept_ordering(timestamp, sequence);
        });
        if was == BindingState::Deregistered {
            self.cache.set_active(id);
        }
        let mut req = req;
        req.ipv4_reply = self.assign_ipv4(id, &req.pbu);
        let after = self.footprint(id);
        self.apply_footprint(now, &before, &after);
        if before.steering_changed(&after) {
            self.mark_steering(id);
        }
        if old.proxy_coa != src {
            // Notifications pending at the old MAG concern a session it no longer serves.
            self.cancel_notifications_to(id, old.proxy_coa);
        }
        if moved {
            self.events.push_back(LmaEvent::BindingHandedOff {
                binding: id,
                from: old.proxy_coa,
                to: src,
                handoff: req.hi,
            });
        } else {
            self.events.push_back(LmaEvent::BindingRefreshed {
                binding: id,
                proxy_coa: src,
                lifetime: lifetime_duration(granted),
            });
        }
        let prefixes = self.cache.binding(id).map(|b| b.prefixes.as_slice().to_vec()).unwrap_or_default();
        self.answer(&req, id, BaStatus::Accepted, granted, &prefixes);
        if was == BindingState::Deregistered {
            self.notify_prefix_change(now, &req.mn_id, Some(id));
        }
    }

    /// Draft §5.4: a further interface joins a virtual-interface entry: another tunnel that
    /// routes the shared prefixes too (flows can be steered into it), while the per-prefix
    /// route stays at the first attachment: the new interface is not a handoff.
    fn attach(&mut self, now: Now, req: Checked, id: BindingId) {
        let granted = self.granted_lifetime(req.pbu.lifetime);
        let mut attachment = Attachment::new(
            req.pbu.src,
            req.att,
            req.pbu.lli.clone(),
            now,
            now + lifetime_duration(granted),
            granted,
            req.pbu.muho,
        );
        attachment.accept_ordering(req.pbu.timestamp, req.pbu.sequence);
        let before = self.footprint(id);
        self.cache.push_attachment(id, attachment);
        let mut req = req;
        req.ipv4_reply = self.assign_ipv4(id, &req.pbu);
        let after = self.footprint(id);
        self.apply_footprint(now, &before, &after);
        self.mark_steering(id);
        self.events.push_back(LmaEvent::AttachmentAdded { binding: id, proxy_coa: req.pbu.src });
        let prefixes = self.cache.binding(id).map(|b| b.prefixes.as_slice().to_vec()).unwrap_or_default();
        self.answer(&req, id, BaStatus::Accepted, granted, &prefixes);
    }

    /// RFC 5213 §5.3.5: de-registration by the registered MAG: routes go at once, the entry
    /// stays MinDelayBeforeBCEDelete, the PBA (lifetime 0) goes at once.
    fn deregister(&mut self, now: Now, req: Checked, id: BindingId, index: usize) {
        let Some(b) = self.cache.binding(id) else { return };
        let prefixes = b.prefixes.as_slice().to_vec();
        if self.config.virtual_interface && b.attachment_count() > 1 {
            // Draft §5.4: one interface leaves; the entry and its other tunnels stay.
            self.remove_attachment(now, id, index, AttachmentRemoval::Deregistered);
            self.answer(&req, id, BaStatus::Accepted, 0, &prefixes);
            return;
        }
        if b.state == BindingState::Deregistered {
            // A retransmitted de-registration: answer again, change nothing.
            self.answer(&req, id, BaStatus::Accepted, 0, &prefixes);
            return;
        }
        let before = self.footprint(id);
        let (timestamp, sequence) = (req.pbu.timestamp, req.pbu.sequence);
        self.cache.update_attachment(id, index, |a| a.accept_ordering(timestamp, sequence));
        self.cache.set_deregistered(id, now + self.config.min_delay_before_bce_delete);
        let after = self.footprint(id);
        self.apply_footprint(now, &before, &after);
        self.mark_steering(id);
        self.cancel_notifications(id);
        self.events.push_back(LmaEvent::BindingDeregistered { binding: id, proxy_coa: req.pbu.src });
        self.answer(&req, id, BaStatus::Accepted, 0, &prefixes);
        self.notify_prefix_change(now, &req.mn_id, Some(id));
        self.resolve_holds_on_deregistration(now, id);
    }

    /// A de-registration for which no entry exists: nothing to delete; answered so the MAG
    /// can finish, and any PBU of the same MAG and interface still held is dropped.
    fn deregister_nothing(&mut self, now: Now, req: Checked) {
        let held: Vec<u64> = self.holds.iter().filter(|(_, h)| h.req.same_request(&req)).map(|(k, _)| *k).collect();
        for key in held {
            self.holds.remove(&key);
            self.timers.cancel(&Timer::Hold(key));
        }
        let _ = now;
        self.events.push_back(LmaEvent::DeregistrationIgnored {
            binding: None,
            from: req.pbu.src,
            reason: "no binding for this de-registration",
        });
        let reply = Reply {
            status: BaStatus::Accepted,
            sequence: req.pbu.sequence,
            lifetime: 0,
            prefixes: &req.pbu.hnps,
            lla: req.pbu.lla,
            muho: None,
            timestamp: req.pbu.timestamp,
            ipv4: None,
        };
        self.send_pba(&req.pbu, reply);
    }

    /// RFC 5213 §5.4.1: hold a PBU with Handoff Indicator 4 for MaxDelayBeforeNewBCEAssign.
    fn hold(&mut self, now: Now, req: Checked, candidate: BindingId) {
        // A retransmission of a PBU already held replaces it (its PBA must echo the newest
        // Sequence Number); the deadline stays.
        if let Some(h) = self.holds.values_mut().find(|h| h.req.same_request(&req)) {
            h.req = req;
            return;
        }
        let key = self.next_hold;
        self.next_hold += 1;
        let until = now + self.config.max_delay_before_new_bce_assign;
        self.events.push_back(LmaEvent::PbuHeld { candidate, from: req.pbu.src, until });
        self.holds.insert(key, Hold { req, candidate });
        self.timers.set(Timer::Hold(key), until);
    }

    /// MaxDelayBeforeNewBCEAssign elapsed: the held PBU gets a new session.
    pub(super) fn on_hold_expired(&mut self, now: Now, key: u64) {
        if let Some(h) = self.holds.remove(&key) {
            self.execute(now, h.req, Target::New { requested: Vec::new() }, false);
        }
    }

    /// The old MAG de-registered `id`: the first PBU held for it hands off into it; any other
    /// gets a new session.
    fn resolve_holds_on_deregistration(&mut self, now: Now, id: BindingId) {
        let keys: Vec<u64> = self.holds.iter().filter(|(_, h)| h.candidate == id).map(|(k, _)| *k).collect();
        for (n, key) in keys.into_iter().enumerate() {
            self.timers.cancel(&Timer::Hold(key));
            let Some(h) = self.holds.remove(&key) else { continue };
            let target = if n == 0 {
                Target::Existing { id, attachment: Some(0) }
            } else {
                Target::New { requested: Vec::new() }
            };
            self.execute(now, h.req, target, false);
        }
    }

    /// Entry `id` is gone: PBUs held for it get new sessions.
    pub(super) fn resolve_holds_on_delete(&mut self, now: Now, id: BindingId) {
        let keys: Vec<u64> = self.holds.iter().filter(|(_, h)| h.candidate == id).map(|(k, _)| *k).collect();
        for key in keys {
            self.timers.cancel(&Timer::Hold(key));
            if let Some(h) = self.holds.remove(&key) {
                self.execute(now, h.req, Target::New { requested: Vec::new() }, false);
            }
        }
    }

    /// Drops the held PBUs `which` selects; with `refusal`, each is answered with that
    /// rejection (an operator's revocation), else silently (their MAG restarted).
    pub(super) fn drop_holds(&mut self, now: Now, which: HeldBy<'_>, refusal: Option<(BaStatus, &'static str)>) {
        let keys: Vec<u64> = self
            .holds
            .iter()
            .filter(|(_, h)| match which {
                HeldBy::Any => true,
                HeldBy::MobileNode(mn) => h.req.mn_id == *mn,
                HeldBy::Mag(peer) => h.req.pbu.src == peer,
            })
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            self.timers.cancel(&Timer::Hold(key));
            let Some(h) = self.holds.remove(&key) else { continue };
            if let Some((status, reason)) = refusal {
                self.reject(now, &h.req.pbu, reject(status, reason));
            }
        }
    }

    /// RFC 5844 §3.1.3: the IPv4 home address of entry `id` after an accepted PBU, and the
    /// reply to its IPv4 Home Address Request. The entry keeps its address across refreshes and
    /// handoffs while the MAGs ask for it; a PBU without the request gives it up (that MAG
    /// cannot deliver IPv4 to the mobile node). A failed request leaves the IPv6 binding as it
    /// is and says why in the reply.
    fn assign_ipv4(&mut self, id: BindingId, pbu: &Pbu) -> Option<Ipv4Reply> {
        let current = self.cache.binding(id)?.ipv4_home_address;
        let Some(&(_, requested)) = pbu.ipv4_requests.first() else {
            if let Some(address) = current {
                self.cache.set_ipv4_home_address(id, None);
                if let Some(pool) = self.ipv4_pool.as_mut() {
                    pool.release(address);
                }
            }
            return None;
        };
        let fail = |status| Some(Ipv4Reply { status, prefix_len: 0, address: requested });
        // No IPv4 home network: the service is not offered here (choice: 129, with the IPv6
        // binding accepted).
        let Some(pool) = self.ipv4_pool.as_mut() else {
            return fail(Ipv4HoaReplyStatus::AdministrativelyProhibited);
        };
        let prefix_len = pool.network().prefix_len;
        let granted = |address| Some(Ipv4Reply { status: Ipv4HoaReplyStatus::Success, prefix_len, address });
        if requested.is_unspecified() || Some(requested) == current {
            // ALL_ZERO: the LMA assigns; the entry's own address stays its own.
            if let Some(address) = current {
                return granted(address);
            }
            let cache = &self.cache;
            let Some(address) = pool.allocate(|a| cache.ipv4_owner(a).is_some()) else {
                return fail(Ipv4HoaReplyStatus::DynamicAssignmentNotAvailable);
            };
            self.cache.set_ipv4_home_address(id, Some(address));
            return granted(address);
        }
        // A specific address: one of our home network's, free or this entry's.
        if !pool.network().assignable(requested) {
            return fail(Ipv4HoaReplyStatus::InvalidIpv4Address);
        }
        if self.cache.ipv4_owner(&requested).is_some_and(|owner| owner != id) {
            return fail(Ipv4HoaReplyStatus::IncorrectIpv4HomeAddress);
        }
        if let Some(old) = current {
            pool.release(old);
        }
        self.cache.set_ipv4_home_address(id, Some(requested));
        granted(requested)
    }

    /// RFC 5213 §5.3.6 (RFC 6275 §6.1.8): the granted lifetime is at most the requested one and
    /// at most our maximum.
    fn granted_lifetime(&self, requested: u16) -> u16 {
        requested.min(lifetime_units(self.config.max_lifetime).max(1))
    }

    /// RFC 5213 §6.9.1.2 and §9.3: the MAG link-local address the PBA carries when the PBU had
    /// a Link-local Address option: the domain's fixed one, else the one kept in the entry,
    /// else the one the MAG offered, else one we generate and keep, so that every MAG the MN
    /// moves to presents the same router address.
    fn answer_lla(&mut self, id: BindingId, pbu: &Pbu) -> Option<Ipv6Addr> {
        let offered = pbu.lla?;
        if let Some(fixed) = self.config.fixed_mag_link_local_address {
            return Some(fixed);
        }
        let b = self.cache.binding(id)?;
        if !b.mag_lla.is_unspecified() {
            return Some(b.mag_lla);
        }
        let lla = if offered.is_unspecified() {
            generated_link_local(b.prefixes.as_slice().first().copied().unwrap_or(Prefix::ALL_ZERO))
        } else {
            offered
        };
        self.cache.set_mag_lla(id, lla);
        Some(lla)
    }

    /// A PBA (status 0, lifetime 0) for a PBU that changed nothing in entry `id`: the Link-local
    /// Address option carries what is known, and nothing is stored.
    fn answer_without_change(&mut self, req: &Checked, id: BindingId, prefixes: &[Prefix]) {
        let kept = self.cache.binding(id).map(|b| b.mag_lla).filter(|a| !a.is_unspecified());
        let lla = req.pbu.lla.map(|offered| self.config.fixed_mag_link_local_address.or(kept).unwrap_or(offered));
        let reply = Reply {
            status: BaStatus::Accepted,
            sequence: req.pbu.sequence,
            lifetime: 0,
            prefixes,
            lla,
            muho: None,
            timestamp: req.pbu.timestamp,
            ipv4: None,
        };
        self.send_pba(&req.pbu, reply);
    }

    /// A PBA for an accepted PBU about entry `id`.
    fn answer(&mut self, req: &Checked, id: BindingId, status: BaStatus, lifetime: u16, prefixes: &[Prefix]) {
        let lla = self.answer_lla(id, &req.pbu);
        // Draft §5.2.2: a PBU with MuHo gets the prefixes of the MN's other sessions.
        let muho = (req.pbu.muho && lifetime > 0).then(|| self.other_live_prefixes(id));
        let reply = Reply {
            status,
            sequence: req.pbu.sequence,
            lifetime,
            prefixes,
            lla,
            muho,
            timestamp: req.pbu.timestamp,
            ipv4: req.ipv4_reply,
        };
        self.send_pba(&req.pbu, reply);
    }

    /// A rejecting PBA: lifetime 0, the PBU's options copied back, our time in the Timestamp
    /// on 156 (RFC 5213 §5.3.6, §5.5).
    fn reject(&mut self, now: Now, pbu: &Pbu, rejection: Rejection) {
        let timestamp = if rejection.status == BaStatus::TimestampMismatch {
            Some(Timestamp::from_unix(now))
        } else {
            pbu.timestamp
        };
        let reply = Reply {
            status: rejection.status,
            sequence: rejection.sequence.unwrap_or(pbu.sequence),
            lifetime: 0,
            prefixes: &pbu.hnps,
            lla: pbu.lla,
            muho: None,
            timestamp,
            ipv4: None,
        };
        self.send_pba(pbu, reply);
        self.events.push_back(LmaEvent::PbuRejected {
            from: pbu.src,
            mn_id: pbu.mn_id.clone(),
            status: rejection.status,
            reason: rejection.reason,
        });
    }

    /// RFC 5213 §5.3.6: the PBA — P flag, Sequence Number echoed, and the options MN-ID, one
    /// HNP per prefix, HI and ATT (copied), MN-LL-ID (copied), Link-local Address and Timestamp
    /// when the PBU had them, then the MuHo options (draft §5.2.2).
    fn send_pba(&mut self, pbu: &Pbu, reply: Reply<'_>) {
        let mut options = Vec::with_capacity(6 + reply.prefixes.len());
        if let Some(id) = &pbu.mn_id {
            options.push(MobilityOption::MnIdentifier(id.clone()));
        }
        options.extend(reply.prefixes.iter().map(|p| MobilityOption::HomeNetworkPrefix(*p)));
        if let Some(hi) = pbu.hi {
            options.push(MobilityOption::HandoffIndicator(hi));
        }
        if let Some(att) = pbu.att {
            options.push(MobilityOption::AccessTechnologyType(att));
        }
        if let Some(lli) = &pbu.lli {
            options.push(MobilityOption::MnLinkLayerIdentifier(lli.as_bytes().to_vec()));
        }
        if let Some(lla) = reply.lla {
            options.push(MobilityOption::LinkLocalAddress(lla));
        }
        if let Some(ts) = reply.timestamp {
            options.push(MobilityOption::Timestamp(ts));
        }
        if let Some(muho) = reply.muho {
            options.extend(self.muho_options(&muho));
        }
        // RFC 5844 §3.1.3: the IPv4 Home Address Reply answers the request, and a granted
        // address comes with the mobile node's IPv4 default router (§3.3.3).
        if let Some(v4) = reply.ipv4 {
            options.push(MobilityOption::Ipv4HomeAddressReply {
                status: v4.status,
                prefix_len: v4.prefix_len,
                address: v4.address,
            });
            if v4.status == Ipv4HoaReplyStatus::Success
                && let Some(pool) = &self.ipv4_pool
            {
                options.push(MobilityOption::Ipv4DefaultRouter(pool.network().default_router));
            }
        }
        let flags = if pbu.flags.contains(BuFlags::P) { BaFlags::P } else { BaFlags::empty() };
        let ack =
            BindingAck { status: reply.status, flags, sequence: reply.sequence, lifetime: reply.lifetime, options };
        self.send(pbu.dst, pbu.src, Message::BindingAck(ack));
    }
}

/// A link-local address for a mobile node's access links: `fe80::/64` with an interface
/// identifier derived from its first prefix (universal/local bit clear: locally assigned,
/// RFC 4291 §2.5.1), stable for the life of the entry.
fn generated_link_local(prefix: Prefix) -> Ipv6Addr {
    use core::hash::BuildHasher;
    let hash = super::hash::FixedState::default().hash_one(prefix);
    let iid = (hash & !0x0200_0000_0000_0000) | 1;
    Ipv6Addr::from((0xfe80u128 << 112) | u128::from(iid))
}
