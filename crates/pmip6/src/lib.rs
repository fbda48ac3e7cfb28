//! The `pmip6` command's library: what the binary does, reusable by tests and by other tools.
//!
//! - [`capture`]: pcap/pcapng reading and writing, link layers, the IPv6 extension-header walk
//!   and the IPv4/UDP (RFC 5844) path to a Mobility Header or Router Solicitation/Advertisement,
//!   and the builders of Ethernet frames around them.
//! - [`decode`]: one record per message, as text or JSON lines (`pmip6 decode`).
//! - [`demo`]: the draft's Figure 4 signalling as a capture, decoded (`pmip6 demo`).
//! - [`ctl`]: the client of a daemon's control API (`pmip6 ctl`).
//! - [`mn`]: the mobile node's agent (`pmip6 mn`): its own flow rules at the LMA, uplink
//!   steering.
//! - [`load`]: a PBU load generator against a running LMA (`pmip6 load`).
//! - [`testbed`]: the draft's Figure 4 in network namespaces with the real daemons
//!   (`pmip6 testbed`).
//!
//! Message parsing and emitting belong to `pmip6-wire`; this crate owns files, frames and
//! output.
#![forbid(unsafe_code)]

pub mod capture;
pub mod ctl;
pub mod decode;
pub mod demo;
pub mod load;
pub mod mn;
pub mod testbed;
