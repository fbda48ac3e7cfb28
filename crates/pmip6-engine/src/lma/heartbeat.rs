//! Per-MAG state: the tunnel reference count (RFC 5213 §5.6.1: one tunnel per LMA–MAG pair,
//! shared by every session) and the RFC 5847 heartbeat.
//!
//! A MAG becomes a peer with its first active attachment: its tunnel is added and heartbeat
//! requests start, one every HEARTBEAT_INTERVAL. A request still unanswered when the next one
//! is due counts as missed; after MISSING_HEARTBEATS_ALLOWED consecutive misses the peer is
//! reported unreachable (and reachable again when it answers). Responses carry the peer's
//! Restart Counter: a change means the MAG restarted and lost its state (RFC 5847 §5.3), and
//! its sessions are removed when the configuration says so. The peer goes with its last
//! attachment, tunnel and heartbeat with it. Requests from MAGs are answered with our Restart
//! Counter whether or not they have sessions.
//!
//! ```text
//!                                 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!                                 |         Reserved          |U|R|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        Sequence Number                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! .         Mobility options (Restart Counter in responses)       .
//! ```

use core::net::Ipv6Addr;

use pmip6_wire::{Heartbeat, HeartbeatFlags, Message, MobilityOption};

use super::event::{DeleteReason, LmaEvent};
use super::pbu::HeldBy;
use super::{Lma, Timer};
use crate::common::{Intent, Now, Resource};

/// What the LMA keeps per MAG with active sessions.
#[derive(Debug, Clone, Default)]
pub(super) struct Peer {
    /// Active attachments using the tunnel.
    tunnel_refs: u32,
    /// Sequence Number of the request awaiting its response.
    awaiting: Option<u32>,
    /// Consecutive unanswered requests.
    missed: u32,
    unreachable: bool,
    /// The Restart Counter last seen.
    restart_counter: Option<u32>,
    /// When a response last carried that counter.
    restart_counter_heard: Option<Now>,
}

/// A MAG with active sessions, as the control API shows it (read-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PeerStatus {
    /// The MAG's Proxy-CoA.
    pub address: Ipv6Addr,
    /// Active attachments using the tunnel to it.
    pub attachments: u32,
    /// Whether a heartbeat request awaits its response.
    pub awaiting_response: bool,
    /// Consecutive unanswered heartbeat requests.
    pub missed_heartbeats: u32,
    /// Whether it was reported unreachable (RFC 5847 §5.2).
    pub unreachable: bool,
    /// The Restart Counter last seen in its responses.
    pub restart_counter: Option<u32>,
}

impl Lma {
    /// The MAGs with active sessions and their heartbeat state, by address.
    pub fn peers(&self) -> impl Iterator<Item = PeerStatus> + '_ {
        self.peers.iter().map(|(address, p)| PeerStatus {
            address: *address,
            attachments: p.tunnel_refs,
            awaiting_response: p.awaiting.is_some(),
            missed_heartbeats: p.missed,
            unreachable: p.unreachable,
            restart_counter: p.restart_counter,
        })
    }
}

impl Lma {
    /// One more active attachment at `peer`: the first adds the tunnel and starts heartbeats.
    pub(super) fn peer_ref(&mut self, now: Now, peer: Ipv6Addr) {
        let p = self.peers.entry(peer).or_default();
        p.tunnel_refs += 1;
        if p.tunnel_refs == 1 {
            let local = self.config.lmaa;
            // RFC 5213 §5.6.1: the bidirectional tunnel to the MAG, created with its first user.
            self.intents.push_back(Intent::Add(Resource::Tunnel { local, peer }));
            if let Some(interval) = self.config.heartbeat_interval {
                self.timers.set(Timer::Heartbeat(peer), now + interval);
            }
        }
    }

    /// One active attachment fewer at `peer`: the last removes the tunnel and the peer.
    pub(super) fn peer_unref(&mut self, peer: Ipv6Addr) {
        let Some(p) = self.peers.get_mut(&peer) else { return };
        p.tunnel_refs = p.tunnel_refs.saturating_sub(1);
        if p.tunnel_refs == 0 {
            self.peers.remove(&peer);
            self.timers.cancel(&Timer::Heartbeat(peer));
            let local = self.config.lmaa;
            self.intents.push_back(Intent::Remove(Resource::Tunnel { local, peer }));
        }
    }

    /// RFC 5847 §5.2: time for the next heartbeat request to `peer`.
    pub(super) fn on_heartbeat_timer(&mut self, now: Now, peer: Ipv6Addr) {
        let Some(interval) = self.config.heartbeat_interval else { return };
        let allowed = self.config.missing_heartbeats_allowed;
        let sequence = self.next_heartbeat_sequence;
        self.next_heartbeat_sequence = sequence.wrapping_add(1);
        let Some(p) = self.peers.get_mut(&peer) else { return };
        let mut unreachable = None;
        if p.awaiting.is_some() {
            p.missed = p.missed.saturating_add(1);
            // RFC 5847 §5.2: MISSING_HEARTBEATS_ALLOWED consecutive misses: unreachable.
            if p.missed >= allowed && !p.unreachable {
                p.unreachable = true;
                unreachable = Some(p.missed);
            }
        }
        p.awaiting = Some(sequence);
        if let Some(missed) = unreachable {
            self.events.push_back(LmaEvent::PeerUnreachable { peer, missed });
        }
        let request = Heartbeat { flags: HeartbeatFlags::empty(), sequence, options: Vec::new() };
        self.send(self.config.lmaa, peer, Message::Heartbeat(request));
        self.timers.set(Timer::Heartbeat(peer), now + interval);
    }

    /// RFC 5847 §5.1: a heartbeat request (answered) or response (liveness, restart).
    pub(super) fn on_heartbeat(&mut self, now: Now, src: Ipv6Addr, dst: Ipv6Addr, hb: Heartbeat) {
        if !hb.flags.contains(HeartbeatFlags::R) {
            // RFC 5847 §5.1: a response echoes the Sequence Number and carries our Restart
            // Counter.
            let response = Heartbeat {
                flags: HeartbeatFlags::R,
                sequence: hb.sequence,
                options: vec![MobilityOption::RestartCounter(self.config.restart_counter)],
            };
            self.send(dst, src, Message::Heartbeat(response));
            return;
        }
        let counter = hb.options.iter().find_map(|o| match o {
            MobilityOption::RestartCounter(c) => Some(*c),
            _ => None,
        });
        let Some(p) = self.peers.get_mut(&src) else {
            return self.ignored(src, "heartbeat response from a MAG without sessions");
        };
        let solicited = p.awaiting == Some(hb.sequence);
        if !solicited && !hb.flags.contains(HeartbeatFlags::U) {
            return self.ignored(src, "heartbeat response matching no request");
        }
        let mut reachable_again = false;
        if solicited {
            p.awaiting = None;
            p.missed = 0;
            reachable_again = core::mem::replace(&mut p.unreachable, false);
        }
        let mut restarted = None;
        if let Some(current) = counter {
            if let Some(previous) = p.restart_counter
                && previous != current
            {
                restarted = Some((previous, p.restart_counter_heard.unwrap_or(now)));
            }
            p.restart_counter = Some(current);
            p.restart_counter_heard = Some(now);
        }
        if reachable_again {
            self.events.push_back(LmaEvent::PeerReachable { peer: src });
        }
        if let (Some((previous, last_heard)), Some(current)) = (restarted, counter) {
            // RFC 5847 §5.3: the MAG restarted and lost its sessions; the LMA may remove them.
            // Only those registered while the old counter was still heard: a session accepted
            // since may already come from the restarted MAG, and removing it would black-hole
            // the MN without telling anyone.
            let sessions_removed = if self.config.clean_up_on_peer_restart {
                // Its PBUs still held are stale too.
                self.drop_holds(now, HeldBy::Mag(src), None);
                self.remove_peer_sessions(now, src, DeleteReason::PeerRestarted, Some(last_heard))
            } else {
                0
            };
            self.events.push_back(LmaEvent::PeerRestarted { peer: src, previous, current, sessions_removed });
        }
    }
}
