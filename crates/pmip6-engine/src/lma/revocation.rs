//! LMA-initiated binding revocation (RFC 5846 §7, §10): the operator ends sessions.
//!
//! The sessions are deleted at once (routes and tunnels removed, prefixes returned to the
//! pools) and each MAG that served one of them is sent a Binding Revocation Indication,
//! retransmitted until its Binding Revocation Acknowledgement arrives or the retries run out:
//!
//! ```text
//!   one mobile node:  BRI trigger Administrative Reason, P=1;      MN-ID, HNP... (per MAG)
//!   one MAG, or all:  BRI trigger Administrative Reason, P=1, G=1; no option (every binding
//!                     of this LMA at that MAG)
//! ```
//!
//! RFC 5846 lets a global BRI carry an MN-ID holding only an NAI realm to narrow it; we revoke
//! whole MAGs, so the global BRI carries no option.

use core::net::Ipv6Addr;

use pmip6_wire::{
    BaStatus, BindingRevocation, Message, MnIdentifier, MobilityOption, Prefix, RevocationFlags, RevocationKind,
    RevocationTrigger,
};

use super::binding_cache::{BindingId, BindingState};
use super::event::{DeleteReason, LmaEvent};
use super::notify::Purpose;
use super::pbu::HeldBy;
use super::{Lma, RevocationScope};
use crate::common::Now;

/// The answer to a PBU still held when the operator revokes its mobile node or MAG.
const REFUSAL: (BaStatus, &str) = (BaStatus::AdministrativelyProhibited, "revoked while held");

impl Lma {
    pub(super) fn revoke_scope(&mut self, now: Now, scope: RevocationScope) {
        match scope {
            RevocationScope::MobileNode(mn_id) => self.revoke_mobile_node(now, &mn_id),
            RevocationScope::Mag(peer) => {
                self.drop_holds(now, HeldBy::Mag(peer), Some(REFUSAL));
                let served = self.peers.contains_key(&peer);
                let deleted = self.remove_peer_sessions(now, peer, DeleteReason::Revoked, None);
                if !served && deleted == 0 {
                    return self.ignored(peer, "revocation: no binding at this MAG");
                }
                if served {
                    self.send_revocation(now, peer, true, Vec::new());
                }
            }
            RevocationScope::All => {
                self.drop_holds(now, HeldBy::Any, Some(REFUSAL));
                let peers: Vec<Ipv6Addr> = self.peers.keys().copied().collect();
                let ids: Vec<BindingId> = self.cache.iter().map(|b| b.id()).collect();
                for id in ids {
                    // Every session goes: nobody is left to notify.
                    self.delete_binding(now, id);
                    self.events.push_back(LmaEvent::BindingDeleted { binding: id, reason: DeleteReason::Revoked });
                }
                for peer in peers {
                    self.send_revocation(now, peer, true, Vec::new());
                }
            }
        }
    }

    fn revoke_mobile_node(&mut self, now: Now, mn_id: &MnIdentifier) {
        self.drop_holds(now, HeldBy::MobileNode(mn_id), Some(REFUSAL));
        let ids: Vec<BindingId> = self.cache.sessions(mn_id).map(|b| b.id()).collect();
        if ids.is_empty() {
            return self.ignored(self.config.lmaa, "revocation: no binding of this mobile node");
        }
        // One BRI per MAG serving an active session, naming the prefixes it serves.
        let mut per_peer: Vec<(Ipv6Addr, Vec<Prefix>)> = Vec::new();
        for id in &ids {
            let Some(b) = self.cache.binding(*id) else { continue };
            if b.state != BindingState::Active {
                continue;
            }
            for a in b.attachments() {
                let i = match per_peer.iter().position(|(p, _)| *p == a.proxy_coa) {
                    Some(i) => i,
                    None => {
                        per_peer.push((a.proxy_coa, Vec::new()));
                        per_peer.len() - 1
                    }
                };
                per_peer[i].1.extend_from_slice(b.prefixes.as_slice());
            }
        }
        for id in ids {
            // Every session of the mobile node goes: nobody is left to notify.
            self.delete_binding(now, id);
            self.events.push_back(LmaEvent::BindingDeleted { binding: id, reason: DeleteReason::Revoked });
        }
        for (peer, prefixes) in per_peer {
            let mut options = vec![MobilityOption::MnIdentifier(mn_id.clone())];
            options.extend(prefixes.into_iter().map(MobilityOption::HomeNetworkPrefix));
            self.send_revocation(now, peer, false, options);
        }
    }

    /// RFC 5846 §6.1: a BRI with the P flag (and G for a global revocation).
    fn send_revocation(&mut self, now: Now, peer: Ipv6Addr, global: bool, options: Vec<MobilityOption>) {
        let sequence = self.take_sequence();
        let flags = if global { RevocationFlags::P | RevocationFlags::G } else { RevocationFlags::P };
        let message = Message::BindingRevocation(BindingRevocation {
            kind: RevocationKind::Indication(RevocationTrigger::AdministrativeReason),
            sequence,
            flags,
            options,
        });
        let policy = self.config.revocation_retransmission;
        self.send_request(now, peer, sequence, Purpose::Revocation { global }, message, policy);
    }
}
