//! The simulated network: links with latency, loss, duplication and reordering, and the record
//! of every packet that entered it.
//!
//! Two kinds of link join the nodes. Each MAG has a *core* link to the LMA, carrying Mobility
//! Header messages both ways, and an *access* side carrying Router Solicitations from the mobile
//! nodes attached to it and Router Advertisements back; each access link is point-to-point in
//! spirit (RFC 5213 §6.9.1.1): an RA reaches the interfaces on that MAG access link whose
//! link-local address it is sent to, or all of them when sent to a multicast address.
//!
//! What a link does to a packet is decided when the packet enters it, with the domain's seeded
//! generator: lost (with probability `loss`), else delivered once or, with probability
//! `duplication`, twice; each copy arrives after `latency`, plus, with probability `reordering`,
//! an extra delay of up to `reorder_delay`, so that packets sent after it overtake it. Packets
//! that arrive at the same instant are delivered in the order they were sent.

use core::net::Ipv6Addr;
use core::time::Duration;

use pmip6_engine::Now;
use pmip6_wire::Message;
use pmip6_wire::nd::NdMessage;

use crate::{MagId, MnId};

/// What a link does to the packets it carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// One-way delay.
    pub latency: Duration,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Probability that a packet is delivered twice.
    pub duplication: f64,
    /// Probability that a copy is held back by up to `reorder_delay` more.
    pub reordering: f64,
    /// The longest extra delay of a held-back copy.
    pub reorder_delay: Duration,
}

impl LinkConfig {
    /// A link that delivers everything once, in order, after `latency`.
    pub const fn ideal(latency: Duration) -> Self {
        Self { latency, loss: 0.0, duplication: 0.0, reordering: 0.0, reorder_delay: Duration::from_millis(50) }
    }
}

impl Default for LinkConfig {
    /// An ideal link with 1 ms latency.
    fn default() -> Self {
        Self::ideal(Duration::from_millis(1))
    }
}

/// A node of the domain: a sender or a receiver of packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// The LMA.
    Lma,
    /// A MAG.
    Mag(MagId),
    /// One interface of a mobile node.
    MobileNode {
        /// The mobile node.
        mn: MnId,
        /// Its interface (index into [`crate::MobileNode::interfaces`]).
        interface: usize,
    },
}

/// What a packet carried, as the sender handed it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A Mobility Header message.
    Mobility(Message),
    /// A Router Solicitation or Advertisement.
    Nd(NdMessage),
}

impl Content {
    /// The Mobility Header message, if it is one.
    pub fn mobility(&self) -> Option<&Message> {
        match self {
            Self::Mobility(m) => Some(m),
            Self::Nd(_) => None,
        }
    }
}

/// Why a packet (or one copy of it) never reached its receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drop {
    /// The link lost it.
    Lost,
    /// No node has its destination address.
    Unroutable,
    /// An RA with no interface on the access link to receive it.
    NoReceiver,
    /// The mobile node's interface left the access link while the packet was in flight.
    LinkDown,
    /// The receiver could not parse it (the codec's error): a bug, also reported as a
    /// [`crate::Problem`].
    Malformed(String),
}

/// One packet that entered the network.
#[derive(Debug, Clone)]
pub struct PacketRecord {
    /// Its index in [`crate::Domain::packets`].
    pub id: usize,
    /// When it was sent.
    pub sent_at: Now,
    /// The sender.
    pub from: Node,
    /// The receiver, if the network found one.
    pub to: Option<Node>,
    /// The access link it travelled on (Router Solicitations and Advertisements), `None` for
    /// the core.
    pub access: Option<crate::AttachmentPoint>,
    /// IPv6 source address.
    pub src: Ipv6Addr,
    /// IPv6 destination address.
    pub dst: Ipv6Addr,
    /// What the sender handed over.
    pub content: Content,
    /// The octets on the wire (the Mobility Header, or the ICMPv6 message), checksum included.
    pub bytes: Vec<u8>,
    /// When each copy was delivered (two entries for a duplicated packet).
    pub deliveries: Vec<Now>,
    /// Why it (or a copy) was not delivered.
    pub dropped: Option<Drop>,
}

impl PacketRecord {
    /// The Mobility Header message, if it is one.
    pub fn message(&self) -> Option<&Message> {
        self.content.mobility()
    }

    /// Whether at least one copy reached the receiver.
    pub fn delivered(&self) -> bool {
        !self.deliveries.is_empty()
    }
}

/// A copy of a packet on its way.
#[derive(Debug, Clone)]
pub(crate) struct InFlight {
    /// The record it is a copy of.
    pub(crate) record: usize,
    /// Where it goes.
    pub(crate) to: Node,
    /// The access link it travels on (RS and RA), which the interface must still be on when
    /// the copy arrives.
    pub(crate) point: Option<crate::AttachmentPoint>,
}
