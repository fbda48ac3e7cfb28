//! What both engines exchange with their driver: time, received messages, messages to send,
//! data-plane intents, and the RFC 6275 sequence-number arithmetic.

use core::net::{Ipv4Addr, Ipv6Addr};
use core::time::Duration;

use pmip6_wire::Message;
use pmip6_wire::Prefix;
use pmip6_wire::nd::RouterAdvertisement;

/// The engines' clock: time since 1970-01-01 00:00 UTC, as the driver read it.
///
/// One clock serves both timers and the RFC 5213 Timestamp option, which is wall-clock time.
/// The engines never read a clock: every input carries `now`, and tests pass virtual time.
pub type Now = Duration;

/// A kernel interface index (an access link of a MAG, for instance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct InterfaceId(pub u32);

/// A Mobility Header message as received, with the addresses the kernel reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Source address of the packet (the peer: a Proxy-CoA at the LMA, the LMAA at a MAG).
    pub src: Ipv6Addr,
    /// Destination address of the packet (one of our addresses).
    pub dst: Ipv6Addr,
    /// The parsed message.
    pub message: Message,
}

/// Something to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// A Mobility Header message from `src` to `dst` (the driver computes the checksum).
    Mobility {
        /// Our address to send from.
        src: Ipv6Addr,
        /// The peer.
        dst: Ipv6Addr,
        /// The message.
        message: Message,
    },
    /// A Router Advertisement on an access link (hop limit 255, RFC 4861 §6.2.6).
    RouterAdvertisement {
        /// The access interface.
        interface: InterfaceId,
        /// Link-local source address (RFC 4861 §6.1.2: an RA comes from a link-local address).
        src: Ipv6Addr,
        /// Destination: the MN's link-local address, or all-nodes.
        dst: Ipv6Addr,
        /// The advertisement.
        ra: RouterAdvertisement,
    },
}

/// A piece of data-plane state an engine needs. The engines add and remove each exactly once;
/// the data plane applies them idempotently (an add of what exists, or a remove of what does
/// not, changes nothing).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Resource {
    /// The bidirectional IPv6-in-IPv6 tunnel between `local` and `peer` (RFC 5213 §5.6.1,
    /// §6.10.1), shared by every mobile node between the two: added with its first user,
    /// removed with its last.
    Tunnel {
        /// Our tunnel end point (the LMAA or the Proxy-CoA).
        local: Ipv6Addr,
        /// The other end point.
        peer: Ipv6Addr,
    },
    /// At the LMA: downlink packets for `prefix` go into the tunnel to the MAG `peer`
    /// (RFC 5213 §5.6.2).
    PrefixToTunnel {
        /// A home network prefix.
        prefix: Prefix,
        /// The MAG's Proxy-CoA.
        peer: Ipv6Addr,
    },
    /// At the LMA: downlink IPv4 packets for the home address `address` go into the tunnel to
    /// the MAG `peer`, IPv4 in IPv6 (RFC 5844 §3.1.4).
    Ipv4HomeAddressToTunnel {
        /// A mobile node's IPv4 home address.
        address: Ipv4Addr,
        /// The MAG's Proxy-CoA.
        peer: Ipv6Addr,
    },
    /// At a MAG: IPv4 packets for the home address `address` go to the mobile node on access
    /// link `interface` (RFC 5844 §3.2.4).
    Ipv4HomeAddressToAccess {
        /// The mobile node's IPv4 home address.
        address: Ipv4Addr,
        /// The access link.
        interface: InterfaceId,
    },
    /// At a MAG: the mobile nodes' IPv4 default router (RFC 5844 §3.3.3, from the PBA) is an
    /// address of ours on access link `interface`, so that the mobile node finds it there;
    /// shared by every mobile node of the link.
    Ipv4DefaultRouterOnAccess {
        /// The default router's address.
        address: Ipv4Addr,
        /// The access link.
        interface: InterfaceId,
    },
    /// At a MAG: uplink IPv4 packets from `address` arriving on `interface` go into the tunnel
    /// to the LMA `peer` (RFC 5844 §3.2.4).
    Ipv4SourceRouteToTunnel {
        /// The mobile node's IPv4 home address.
        address: Ipv4Addr,
        /// The access link.
        interface: InterfaceId,
        /// The LMAA.
        peer: Ipv6Addr,
    },
    /// At a MAG: packets for `prefix` go to the mobile node on access link `interface`, via
    /// `next_hop` when the prefix is not on that link (the draft's Figure 4: `pref1::/64 via
    /// pref2::if2`), or on-link when `next_hop` is `None` (RFC 5213 §6.10.5).
    PrefixToAccess {
        /// A prefix of the mobile node (its own on this link, or learned by MuHo).
        prefix: Prefix,
        /// The access link.
        interface: InterfaceId,
        /// The mobile node's address on that link, for prefixes of its other links.
        next_hop: Option<Ipv6Addr>,
    },
    /// At a MAG: uplink packets from `prefix` arriving on `interface` go into the tunnel to the
    /// LMA `peer` (RFC 5213 §6.10.3, source-based routing).
    SourceRouteToTunnel {
        /// A prefix of the mobile node.
        prefix: Prefix,
        /// The access link.
        interface: InterfaceId,
        /// The LMAA.
        peer: Ipv6Addr,
    },
    /// At the LMA: downlink packets of one flow or selector go into the tunnel to one MAG, or
    /// follow the per-prefix route (draft-bernardos-mif-pmip-02 §4.2, §5.3; RFC 7864).
    ///
    /// Ordering rule: a steering entry into a tunnel is added after that [`Resource::Tunnel`]
    /// and removed before it, so that no entry ever points into a missing tunnel.
    Steering(crate::flow::Steering),
}

/// A change of data-plane state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Intent {
    /// Install the resource.
    Add(Resource),
    /// Remove the resource.
    Remove(Resource),
}

/// Whether sequence number `a` is newer than `b`, modulo 2^16 (RFC 6275 §9.5.1: "less than"
/// means (b − a) mod 2^16 lies in 1..2^15).
pub fn sequence_newer(a: u16, b: u16) -> bool {
    let diff = a.wrapping_sub(b);
    diff != 0 && diff < 0x8000
}

/// Converts a Mobility Header lifetime (units of 4 s, RFC 6275 §6.1.7) to a duration.
pub fn lifetime_duration(units: u16) -> Duration {
    Duration::from_secs(u64::from(units) * 4)
}

/// Converts a duration to Mobility Header lifetime units, rounding down, saturating at 65535.
pub fn lifetime_units(d: Duration) -> u16 {
    u16::try_from(d.as_secs() / 4).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_comparison_wraps() {
        assert!(sequence_newer(1, 0));
        assert!(sequence_newer(0, 0xffff));
        assert!(sequence_newer(0x7fff, 0));
        assert!(!sequence_newer(0x8000, 0));
        assert!(!sequence_newer(5, 5));
        assert!(!sequence_newer(4, 5));
    }

    #[test]
    fn lifetimes_are_in_units_of_four_seconds() {
        assert_eq!(lifetime_duration(900), Duration::from_secs(3600));
        assert_eq!(lifetime_units(Duration::from_secs(3601)), 900);
        assert_eq!(lifetime_units(Duration::from_secs(10_000_000)), u16::MAX);
    }
}
