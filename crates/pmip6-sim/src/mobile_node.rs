//! The mobile node model: an unmodified host with one or more interfaces, each with a MAC and a
//! link-local address, attached to one MAG access link at a time. It sends a Router Solicitation
//! when an interface comes up on a link and records what the Router Advertisements tell it:
//! the router's address and lifetime, and the prefixes advertised with their valid lifetimes.
//!
//! Only what the tests look at is modelled: no addresses, no duplicate address detection, and
//! RFC 4862 §5.5.3 (e)'s two-hour rule is left out (a zero valid lifetime removes the prefix at
//! once, as the MAG intends).

use core::net::Ipv6Addr;
use core::time::Duration;
use std::collections::BTreeMap;

use pmip6_engine::mag::eui64_link_local;
use pmip6_engine::{InterfaceId, Now};
use pmip6_wire::nd::RouterAdvertisement;
use pmip6_wire::{MnIdentifier, Prefix};

use crate::MagId;

/// Where an interface is attached: a MAG and one of its access links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttachmentPoint {
    /// The MAG.
    pub mag: MagId,
    /// Its access link.
    pub interface: InterfaceId,
}

/// A Router Advertisement as the mobile node received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRa {
    /// When it arrived.
    pub at: Now,
    /// The link it arrived on.
    pub from: AttachmentPoint,
    /// Its source (the router's link-local address).
    pub src: Ipv6Addr,
    /// Its destination (the interface's link-local address, or all-nodes).
    pub dst: Ipv6Addr,
    /// The advertisement, as parsed from the wire.
    pub ra: RouterAdvertisement,
}

impl ReceivedRa {
    /// The prefixes it advertises with a non-zero valid lifetime.
    pub fn advertised(&self) -> Vec<Prefix> {
        self.ra.prefixes().filter(|p| p.valid_lifetime > 0).map(|p| Prefix::new(p.prefix, p.prefix_len)).collect()
    }

    /// The prefixes it withdraws (valid lifetime 0).
    pub fn withdrawn(&self) -> Vec<Prefix> {
        self.ra.prefixes().filter(|p| p.valid_lifetime == 0).map(|p| Prefix::new(p.prefix, p.prefix_len)).collect()
    }
}

/// The default router an interface learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Router {
    /// Its link-local address (the RA source).
    pub address: Ipv6Addr,
    /// When its Router Lifetime ends.
    pub until: Now,
}

/// One interface of a mobile node.
#[derive(Debug, Clone)]
pub struct MnInterface {
    /// Its MAC address (the MN-LL-ID the MAG signals).
    pub mac: [u8; 6],
    /// Its link-local address: `fe80::` + the modified EUI-64 of the MAC.
    pub link_local: Ipv6Addr,
    /// Where [`crate::Domain::attach`] attaches it: its configured access link, then the last
    /// one it was attached to.
    pub home: AttachmentPoint,
    /// Where it is attached now.
    pub attached: Option<AttachmentPoint>,
    /// The default router, once an RA with a non-zero Router Lifetime arrived on this link.
    pub router: Option<Router>,
    /// Prefixes advertised on the current link, with the end of their valid lifetime.
    pub prefixes: BTreeMap<Prefix, Now>,
    /// Every RA received on this interface, on any link.
    pub advertisements: Vec<ReceivedRa>,
}

impl MnInterface {
    pub(crate) fn new(mac: [u8; 6], home: AttachmentPoint) -> Self {
        Self {
            mac,
            link_local: eui64_link_local(mac),
            home,
            attached: None,
            router: None,
            prefixes: BTreeMap::new(),
            advertisements: Vec::new(),
        }
    }

    /// The prefixes still valid at `now`.
    pub fn valid_prefixes(&self, now: Now) -> Vec<Prefix> {
        self.prefixes.iter().filter(|(_, until)| **until > now).map(|(p, _)| *p).collect()
    }

    /// The default router's address, if its lifetime has not ended at `now`.
    pub fn router_at(&self, now: Now) -> Option<Ipv6Addr> {
        self.router.filter(|r| r.until > now).map(|r| r.address)
    }

    /// The last RA received, if any.
    pub fn last_advertisement(&self) -> Option<&ReceivedRa> {
        self.advertisements.last()
    }

    /// Takes in an RA (RFC 4861 §6.3.4, RFC 4862 §5.5.3 without the two-hour rule).
    pub(crate) fn receive(&mut self, received: ReceivedRa) {
        let now = received.at;
        let ra = &received.ra;
        self.router = match ra.router_lifetime {
            0 => None,
            s => Some(Router { address: received.src, until: now + Duration::from_secs(u64::from(s)) }),
        };
        for pio in ra.prefixes() {
            let prefix = Prefix::new(pio.prefix, pio.prefix_len);
            if pio.valid_lifetime == 0 {
                self.prefixes.remove(&prefix);
            } else {
                self.prefixes.insert(prefix, now + Duration::from_secs(u64::from(pio.valid_lifetime)));
            }
        }
        self.advertisements.push(received);
    }

    /// The link went down: what the link taught is forgotten.
    pub(crate) fn link_down(&mut self) {
        self.attached = None;
        self.router = None;
        self.prefixes.clear();
    }
}

/// A mobile node: one MN-ID and its interfaces.
#[derive(Debug, Clone)]
pub struct MobileNode {
    /// The MN-ID every MAG's static table maps its MACs to (draft §5.2.1).
    pub mn_id: MnIdentifier,
    /// The table's multihoming flag: PBUs for it carry the empty MuHo option.
    pub multihoming: bool,
    /// Its interfaces.
    pub interfaces: Vec<MnInterface>,
}

impl MobileNode {
    /// Interface `index`. Panics if there is no such interface.
    pub fn interface(&self, index: usize) -> &MnInterface {
        &self.interfaces[index]
    }
}
