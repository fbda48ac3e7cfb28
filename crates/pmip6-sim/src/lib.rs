//! A Proxy Mobile IPv6 domain in virtual time: the real [`pmip6_engine`] LMA and MAG engines,
//! mobile nodes with one or more interfaces, and a simulated network between them, driven the
//! way a daemon drives the engines but with a clock the test controls.
//!
//! # What it owns
//!
//! - [`Domain`]: one [`Lma`](pmip6_engine::lma::Lma), N [`Mag`](pmip6_engine::mag::Mag)s, M
//!   [`MobileNode`]s, the packets in flight, and every engine event with its time. Built by a
//!   [`DomainBuilder`]; every MAG's static table (draft §5.2.1) lists every mobile node.
//! - The network ([`network`]): per-link latency and seeded loss, duplication and reordering.
//!   Every Mobility Header message an engine sends is emitted to octets with the codec
//!   (`Message::to_vec`, checksum included) and parsed back at delivery
//!   (`Message::parse_checked` with the domain's `ParseConfig`); Router Solicitations and
//!   Advertisements take the same path through `NdMessage`. The real wire path is exercised,
//!   and a message that does not survive it is a [`Problem`].
//! - A [`DataPlane`] per engine: the set of resources its intents installed, recording every
//!   broken promise (an add of what is present, a remove of what is absent, a route into a
//!   tunnel that is not up, a tunnel removed under a route, two routes for one prefix) as a
//!   [`Violation`] instead of panicking.
//! - The mobile node model ([`mobile_node`]): sends a Router Solicitation when an interface
//!   comes up on a link, records every RA and what it teaches (router, prefixes).
//! - The checks of [`invariants`] and the capture export of [`pcap`].
//!
//! # The loop (as quinn-proto's test `Pair`)
//!
//! At each instant: deliver every packet due, call `handle_timeout` on every engine whose
//! `poll_timeout()` is due, and after each input drain that engine — `poll_transmit` (onto the
//! network), `poll_intent` (into its data plane), `poll_event` (into the log) — until nothing is
//! due; then jump to the next instant something happens. No wall clock, no sleeping, no busy
//! loop: [`Domain::run_until`], [`Domain::run_for`], [`Domain::run_until_idle`] (signalling
//! settled, with a cap) and [`Domain::run_until_quiet`] (no timer left, with a cap).
//!
//! # Scenarios
//!
//! [`Domain::attach`] (an RS on the interface's access link, or an L2 attach event),
//! [`Domain::detach`] (an L2 detach event), [`Domain::handoff`], [`Domain::restart_lma`] and
//! [`Domain::restart_mag`] (a fresh engine with the next Restart Counter, its data plane
//! cleared), [`Domain::set_loss`], [`Domain::set_duplication`], [`Domain::set_reordering`].
//!
//! ```
//! use pmip6_engine::InterfaceId;
//! use pmip6_sim::{AttachmentPoint, Domain, MagId, MnId};
//! use pmip6_wire::AccessTechnologyType;
//! use std::time::Duration;
//!
//! let wlan = AttachmentPoint { mag: MagId(0), interface: InterfaceId(1) };
//! let mut domain = Domain::builder(1)
//!     .mag(&[(InterfaceId(1), AccessTechnologyType::Ieee80211)])
//!     .mobile_node("mn@example.net", true, &[wlan])
//!     .build();
//! domain.attach(MnId(0), 0);
//! assert!(domain.run_until_idle(Duration::from_secs(10)));
//! let iface = domain.mobile_node(MnId(0)).interface(0);
//! assert_eq!(iface.valid_prefixes(domain.now()).len(), 1);
//! assert!(domain.check_invariants().is_empty());
//! ```
#![forbid(unsafe_code)]

pub mod data_plane;
mod domain;
pub mod invariants;
pub mod mobile_node;
pub mod network;
pub mod pcap;
pub mod rng;

pub use data_plane::{DataPlane, Violation};
pub use domain::{
    AttachSignal, Domain, DomainBuilder, LMAA, MagId, MnId, NodeEvent, PREFIX_POOL, Problem, START, mn_mac, proxy_coa,
};
pub use invariants::registration_budget;
pub use mobile_node::{AttachmentPoint, MnInterface, MobileNode, ReceivedRa, Router};
pub use network::{Content, Drop, LinkConfig, Node, PacketRecord};
pub use pcap::CapturePoint;
