//! Tunnels, routes and rules: the engines' data-plane intents other than steering, applied to
//! the kernel through rtnetlink.
//!
//! # What this module owns
//!
//! Everything it creates carries the route/rule protocol [`RoutingConfig::protocol`]; a restart
//! ([`Routing::open`]) removes whatever a previous run left with that protocol, and
//! [`Routing::close`] removes all of it. Nothing without our protocol is ever touched, with
//! three exceptions: the kernel's `lookup local` rule at priority 0 (seg6 only, see
//! *Decapsulation*); the TUN devices `p6t<slot>` of the tun backend, which carry no protocol but
//! are ours by construction (created exclusively, never persistent: the kernel removes each, with
//! every route through it, when its descriptor closes — at tunnel removal, close, drop or a
//! crash); and the ip6tnl devices `p6i<slot>` (and the probe `p6iprobe`) of the ip6tnl backend,
//! which outlive the process: a device is ours when its name starts with `p6i` *and* its kind is
//! `ip6tnl`, and [`Routing::open`] and [`Routing::close`] delete every such device (any other
//! device, whatever its name or kind, is never touched).
//!
//! Three tunnel backends (DESIGN.md, "Data plane on Linux"), all IPv6-in-IPv6 on the wire (next
//! header 41, RFC 2473) between `local` and the peer:
//!
//! | what | ip6tnl | seg6 | tun |
//! |---|---|---|---|
//! | device per peer (`Tunnel`) | `p6i<slot>`: `ip6tnl mode ip6ip6 local <local> remote <peer> encaplimit none`, MTU `tunnel_mtu`, up | none | `p6t<slot>`: TUN, MTU `tunnel_mtu`, up |
//! | decapsulation | the kernel's ip6tnl, for packets from `remote` to `local` of a device that is up: no route, no rule | route `local/128 encap seg6local action End.DT6 table 254 dev D` in table `table_base`, rule `to local/128 ipproto 41 lookup table_base` at priority 0 before the `local` rule ([`Routing::open`]) | none in the kernel: the forwarder's raw socket ([`crate::tunnel`]) |
//! | `ipproto 41 lookup main` (LMA) | none: the outer packet is routed with the device's own fwmark (0), not the inner packet's | priority `rule_priority` ([`Routing::open`]) | none: user space sends the outer packet, unmarked |
//! | per-peer table `T(peer)` = `table_base + 1 + slot` (`Tunnel`) | `default dev p6i<slot>` | `default encap seg6 mode encap.red segs <peer> dev D` | `default dev p6t<slot>` |
//! | rule `fwmark T(peer) lookup T(peer)` (LMA; the mark equals the table number), priority `rule_priority + 1` (`Tunnel`) | same | same | same |
//! | main-table route (LMA, `PrefixToTunnel`) | `prefix dev p6i<slot>` | `prefix encap seg6 mode encap.red segs <MAG> dev D` | `prefix dev p6t<slot>` |
//! | main-table route (MAG, `PrefixToAccess`) | `prefix dev <access> [via next_hop]` | same | same |
//! | rule `from prefix iif <access> lookup T(LMA)` (MAG, `SourceRouteToTunnel`), priority `rule_priority + 1` | same | same | same |
//! | after a crash | devices and the routes through them stay; the next [`Routing::open`] deletes them | routes and rules stay until the next open | the devices and their routes go with the process; rules stay until the next open |
//!
//! IPv4 home addresses (RFC 5844) go IPv4-in-IPv6 (next header 4), with the tun backend only
//! (the ip6tnl devices are ip6ip6, seg6 encap.red carries IPv6): at the LMA
//! (`Ipv4HomeAddressToTunnel`) `address/32 dev p6t<slot>` in the main table; at a MAG
//! (`Ipv4HomeAddressToAccess`) `address/32 dev <access>`, and (`Ipv4SourceRouteToTunnel`) the
//! rule `from address/32 iif <access> lookup T(LMA)` with an IPv4 `default dev p6t<slot>` in
//! that table; (`Ipv4DefaultRouterOnAccess`) the mobile nodes' default router as an address
//! `router/32` of the access link, tagged with our protocol (`IFA_PROTO`) so that
//! [`Routing::open`] and [`Routing::close`] find it (one the operator configured is left
//! alone). IPv4 forwarding is switched on with the first of them. The other backends refuse
//! them with [`RoutingError::Unsupported`].
//!
//! `D` is the device of the kernel's route to the peer (for the decapsulation route: the device
//! holding `local`).
//!
//! # Choosing a backend
//!
//! [`TunnelBackend::Auto`] probes once, in [`Routing::open`], fastest first:
//! 1. ip6tnl: it creates the ip6tnl device `p6iprobe` (`local` to `::`, never up, so it receives
//!    nothing) and deletes it again. Success picks ip6tnl; `EOPNOTSUPP` (iproute2's "Unknown
//!    device type": a kernel without `CONFIG_IPV6_TUNNEL`) goes on.
//! 2. seg6: it adds a seg6 encapsulation route to our table `table_base` and deletes it again.
//!    Success picks seg6, `EOPNOTSUPP` (a kernel without `CONFIG_IPV6_SEG6_LWTUNNEL`) picks tun.
//!
//! The tun backend exists because kernels are found with no kernel tunnel at all — no seg6
//! lightweight tunnels, no ip6tnl, sit, gre or fou — but with `/dev/net/tun` and raw sockets.
//! An explicit [`TunnelBackend::Ip6tnl`] or [`TunnelBackend::Seg6`] on a kernel without it
//! fails in [`Routing::open`] with [`RoutingError::Unsupported`] naming the missing kernel
//! option. [`Routing::backend`] tells which one runs.
//!
//! # The ip6tnl backend
//!
//! The fastest: the kernel forwards both ways, and the device's MTU makes the kernel send Packet
//! Too Big to the inner source (RFC 2473 §7). One device per tunnel peer, made with rtnetlink's
//! [`LinkIp6Tnl`] exactly as `ip link add p6i<slot> type ip6tnl mode ip6ip6 local <local> remote
//! <peer> encaplimit none` makes it (the same `IFLA_INFO_DATA` attributes, checked against a
//! capture of iproute2's request in the unit tests): protocol 41 only, hop limit 64 (iproute2's
//! default), and `IP6_TNL_F_IGN_ENCAP_LIMIT`, so that no Tunnel Encapsulation Limit option is
//! inserted (RFC 2473 §4.1.1; PMIPv6 peers do not expect one — without the flag the kernel adds
//! one). Address generation is turned off before the device is up (`addr_gen_mode` 1: no
//! link-local address, so no ND or MLD into the tunnel), as with tun. The routes of tun point at
//! the ip6tnl device instead; there is no forwarder and no decapsulation route or rule: the
//! kernel's ip6tnl takes every protocol-41 packet from `remote` to `local` (RFC 5213 §5.6.1,
//! §6.10.1: only from a tunnel peer — a packet from any other source matches none of our
//! devices and is not decapsulated by us) and hands the inner packet to the stack as received
//! on the device. The outer packet is routed with the device's own fwmark (0, not
//! `IP6_TNL_F_USE_ORIG_FWMARK`), so a steered packet's mark cannot send it back into the tunnel. Removing a
//! tunnel deletes its device, and with it every route through it.
//!
//! # The seg6 backend
//!
//! Encapsulation is `encap seg6 mode encap.red` with one segment, the peer: a reduced SRH with one
//! segment is no SRH at all, so the wire carries plain IPv6-in-IPv6. `netlink-packet-route` names
//! modes 0 and 1 only; `encap.red` is [`Seg6Mode::Other`]`(3)` (`SEG6_IPTUN_MODE_ENCAP_RED` of
//! `include/uapi/linux/seg6_iptunnel.h`). End.DT6 has its own type in the crate
//! ([`Seg6LocalAction::EndDt6`]), so no hand-built attribute is needed. The seg6 tunnel source of
//! the namespace (`ip sr tunsrc`) is set to `local` through the `SEG6` generic netlink family, so
//! that every encapsulated packet leaves from our tunnel end point (RFC 5213 §5.6.1, §6.10.1: the
//! tunnel is between the LMAA and the Proxy-CoA); the previous value is restored by
//! [`Routing::close`].
//!
//! Pitfalls the layout avoids, each found on a real kernel:
//! - the fwmark survives seg6 encapsulation: the outer packet of a steered flow would match its
//!   `fwmark` rule again and loop, so `ipproto 41 lookup main` sits *before* the fwmark rules;
//! - a seg6local route with `dev lo` silently becomes a reject route: the decapsulation route
//!   names the real device that holds `local`;
//! - *Decapsulation*: packets to `local` would be delivered locally by the `local` rule at
//!   priority 0, where nothing handles protocol 41 on a kernel without ip6tnl. The
//!   decapsulation rule must come first. Rules of equal priority are kept in insertion order,
//!   so [`Routing::open`] removes the kernel's `pref 0 lookup local` rule, adds ours at
//!   priority 0 and adds `pref 0 lookup local` (protocol `kernel`) back after it; a temporary
//!   `pref 1 lookup local` rule keeps local delivery working in between. [`Routing::close`]
//!   removes only our rule: the local rule stays at priority 0 exactly as the kernel made it.
//!
//! The per-peer device `D` is looked up when the tunnel is added; a later change of the route to
//! the peer is not followed.
//!
//! # The tun backend
//!
//! One TUN device `p6t<slot>` per tunnel peer, with IPv6 address generation off
//! (`addr_gen_mode` 1, set before it is up, so that the kernel writes no ND or MLD into it) and
//! MTU [`RoutingConfig::tunnel_mtu`] (link MTU − 40), so that the kernel itself sends Packet Too
//! Big to the inner source for packets that would not fit (RFC 2473 §7). The routes that seg6
//! makes encapsulation routes point at the device instead; the forwarder of [`crate::tunnel`]
//! moves packets between the devices and one raw socket on protocol 41 bound to `local`, as
//! tokio tasks on the runtime that called [`Routing::open`]. The kernel strips the outer header
//! before the raw socket sees the packet; the forwarder accepts it only from a tunnel peer
//! (RFC 5213 §5.6.1, §6.10.1) and writes it into that peer's device, so that the kernel routes
//! it as received on the tunnel. Its counters: [`Routing::tunnel_counters`].

mod genl;

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::collections::BTreeMap;

use futures_util::stream::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::IpProtocol;
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressProtocol};
use netlink_packet_route::link::{
    InfoKind, Ip6TunnelFlags, LinkAttribute, LinkInfo, LinkMessage, TunnelEncapFlags, TunnelEncapType,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteLwEnCapType, RouteLwTunnelEncap, RouteMessage, RouteProtocol,
    RouteScope, RouteType, RouteVia, Seg6Header, Seg6Mode,
};
use netlink_packet_route::route::{RouteSeg6IpTunnel, RouteSeg6LocalTunnel, Seg6LocalAction};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use pmip6_engine::{Intent, InterfaceId, Resource};
use pmip6_wire::Prefix;
use rtnetlink::Handle;
use rtnetlink::{LinkIp6Tnl, LinkUnspec};

use crate::tunnel::{self, Forwarder, TunnelCounters};

/// The main routing table.
const TABLE_MAIN: u32 = 254;
/// The local routing table.
const TABLE_LOCAL: u32 = 255;
/// `SEG6_IPTUN_MODE_ENCAP_RED`: encapsulation with a reduced SRH (none at all for one segment).
const SEG6_MODE_ENCAP_RED: u32 = 3;
/// How many tunnels (per-peer tables) one `Routing` can hold.
pub const MAX_TUNNELS: u32 = 0x1000;
/// The priority of the decapsulation rule: before the kernel's `local` rule.
const PRIORITY_DECAP: u32 = 0;
/// The priority of the temporary `lookup local` rule used while the local rule is re-added.
const PRIORITY_LOCAL_BACKUP: u32 = 1;
/// The prefix of the ip6tnl backend's device names; the tunnel slot follows (`p6i0`, `p6i1`,
/// ...). A device is ours when its name starts with it and its kind is `ip6tnl`.
pub const IP6TNL_DEVICE_PREFIX: &str = "p6i";
/// The ip6tnl device [`Routing::open`] creates and deletes to learn whether the kernel has ip6tnl.
const IP6TNL_PROBE: &str = "p6iprobe";
/// The hop limit of the outer header: iproute2's default for ip6tnl (`DEFAULT_TNL_HOP_LIMIT`).
const IP6TNL_HOP_LIMIT: u8 = 64;
/// The encapsulation limit iproute2 sends with `encaplimit none` (`IPV6_DEFAULT_TNL_ENCAP_LIMIT`);
/// the kernel ignores it because of `IP6_TNL_F_IGN_ENCAP_LIMIT`.
const IP6TNL_ENCAP_LIMIT: u8 = 4;

/// The name of the ip6tnl device of tunnel `slot`: `p6i<slot>`, at most 13 octets for any
/// `u32` (IFNAMSIZ is 16 with the terminating NUL).
fn ip6tnl_device_name(slot: u32) -> String {
    format!("{IP6TNL_DEVICE_PREFIX}{slot}")
}

/// Which end of the tunnels we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The local mobility anchor: per-prefix routes into tunnels, per-MAG tables behind fwmark
    /// rules for steering.
    Lma,
    /// A mobile access gateway: routes to access links, source routes into the tunnel.
    Mag,
}

/// How IPv6-in-IPv6 tunnels are built (DESIGN.md, "Data plane on Linux"; the module docs
/// compare them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TunnelBackend {
    /// The fastest the kernel has, probed once by [`Routing::open`]: ip6tnl when the kernel can
    /// create an ip6tnl device, else seg6 when it has seg6 lightweight tunnels, else tun.
    #[default]
    Auto,
    /// seg6 lightweight tunnels: `encap seg6 mode encap.red` and `seg6local End.DT6`. Needs
    /// `CONFIG_IPV6_SEG6_LWTUNNEL`.
    Seg6,
    /// A TUN device per peer and a raw socket on protocol 41, forwarded in user space
    /// ([`crate::tunnel`]): works on any kernel with `/dev/net/tun`.
    Tun,
    /// An ip6tnl device `p6i<slot>` per peer (`mode ip6ip6`, `encaplimit none`): the kernel
    /// encapsulates and decapsulates, both ways. Needs `CONFIG_IPV6_TUNNEL` (the `ip6_tunnel`
    /// module); without it [`Routing::open`] returns [`RoutingError::Unsupported`].
    Ip6tnl,
}

/// How [`Routing`] lays out its tables, rules and routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingConfig {
    /// LMA or MAG.
    pub role: Role,
    /// Our tunnel end point: the LMAA or the Proxy-CoA. Must be an address of this namespace.
    pub local: Ipv6Addr,
    /// How tunnels are built.
    pub backend: TunnelBackend,
    /// The first routing table we own (the decapsulation table); the per-peer tables follow it.
    /// At least 256, so that no reserved table (253–255) is ever ours; e.g. `0x7000`.
    pub table_base: u32,
    /// The first rule priority we use (`ipproto 41 lookup main`); fwmark and source rules use
    /// the next one. At least 2 (0 and 1 are the decapsulation and temporary local rules);
    /// e.g. 1000.
    pub rule_priority: u32,
    /// The route and rule protocol that marks ours, e.g. `0x9d`. Not 0–4, which the kernel and
    /// the system's own routes use.
    pub protocol: u8,
    /// The MTU of the tun and ip6tnl backends' devices: the MTU of the path to the peers less
    /// the 40 octets of the outer header ([`RoutingConfig::DEFAULT_TUNNEL_MTU`] for 1500-octet
    /// links), so that the kernel sends Packet Too Big for inner packets that would not fit
    /// (RFC 2473 §7). At least 1280 (RFC 8200 §5). Unused by seg6.
    pub tunnel_mtu: u32,
}

impl RoutingConfig {
    /// 1500 − 40: the tunnel MTU over Ethernet-sized links.
    pub const DEFAULT_TUNNEL_MTU: u32 = 1460;

    /// `destination dev oif` in `table` (the tun backend's routes into a device).
    fn device_route(&self, table: u32, destination: Prefix, oif: u32) -> RouteMessage {
        let mut m = self.route_base(table, destination);
        m.header.scope = RouteScope::Link;
        m.attributes.push(RouteAttribute::Oif(oif));
        m
    }

    /// `ip link add <name> mtu <tunnel_mtu> type ip6tnl mode ip6ip6 local <local> remote <remote>
    /// encaplimit none`, attribute for attribute as iproute2 sends it (the unit tests compare
    /// with a capture), not up.
    fn ip6tnl_link(&self, name: &str, remote: Ipv6Addr) -> LinkMessage {
        LinkIp6Tnl::new(name)
            .mode(IpProtocol::Ipv6)
            .local(self.local)
            .remote(remote)
            .ttl(IP6TNL_HOP_LIMIT)
            .encap_limit(IP6TNL_ENCAP_LIMIT)
            .flowinfo_raw(0)
            // RFC 2473 §4.1.1: no Tunnel Encapsulation Limit option; PMIPv6 peers do not expect
            // one. Without this flag the kernel inserts one.
            .ipv6_flags(Ip6TunnelFlags::IgnEncapLimit)
            .dev(0)
            .fwmark(0)
            .encap_type(TunnelEncapType::None)
            .encap_flags(TunnelEncapFlags::CSum6)
            .encap_sport(0)
            .encap_dport(0)
            // RFC 2473 §7: inner packets that do not fit get Packet Too Big from the kernel.
            .mtu(self.tunnel_mtu)
            .build()
    }

    /// `from prefix iif name lookup table`.
    fn source_rule(&self, prefix: Prefix, name: String, table: u32) -> RuleMessage {
        let mut rule = self.rule_base(self.rule_priority + 1, table);
        rule.header.src_len = prefix.len;
        if prefix.len > 0 {
            rule.attributes.push(RuleAttribute::Source(IpAddr::V6(prefix.addr)));
        }
        rule.attributes.push(RuleAttribute::Iifname(name));
        rule
    }

    fn route_base(&self, table: u32, destination: Prefix) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet6;
        m.header.destination_prefix_length = destination.len;
        m.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
        m.header.protocol = RouteProtocol::from(self.protocol);
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes.push(RouteAttribute::Table(table));
        if destination.len > 0 {
            m.attributes.push(RouteAttribute::Destination(RouteAddress::Inet6(destination.addr)));
        }
        m
    }

    fn encap_route(&self, table: u32, destination: Prefix, peer: Ipv6Addr, oif: u32) -> RouteMessage {
        let mut m = self.route_base(table, destination);
        let mut header = Seg6Header::default();
        header.mode = Seg6Mode::Other(SEG6_MODE_ENCAP_RED);
        header.segments = vec![peer];
        m.attributes.push(RouteAttribute::EncapType(RouteLwEnCapType::Seg6));
        m.attributes.push(RouteAttribute::Encap(vec![RouteLwTunnelEncap::Seg6(RouteSeg6IpTunnel::Seg6(header))]));
        m.attributes.push(RouteAttribute::Oif(oif));
        m
    }

    fn access_route(&self, destination: Prefix, interface: InterfaceId, next_hop: Option<Ipv6Addr>) -> RouteMessage {
        let mut m = self.route_base(TABLE_MAIN, destination);
        m.attributes.push(RouteAttribute::Oif(interface.0));
        if let Some(gateway) = next_hop {
            m.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet6(gateway)));
        } else {
            m.header.scope = RouteScope::Link;
        }
        m
    }

    fn rule_base(&self, priority: u32, table: u32) -> RuleMessage {
        let mut m = RuleMessage::default();
        m.header.family = AddressFamily::Inet6;
        m.header.action = RuleAction::ToTable;
        match u8::try_from(table) {
            Ok(t) => m.header.table = t,
            Err(_) => m.attributes.push(RuleAttribute::Table(table)),
        }
        m.attributes.push(RuleAttribute::Priority(priority));
        m.attributes.push(RuleAttribute::Protocol(RouteProtocol::from(self.protocol)));
        m
    }

    fn local_rule(&self, priority: u32, protocol: RouteProtocol) -> RuleMessage {
        let mut rule = self.rule_base(priority, TABLE_LOCAL);
        rule.attributes.retain(|a| !matches!(a, RuleAttribute::Protocol(_)));
        rule.attributes.push(RuleAttribute::Protocol(protocol));
        rule
    }

    /// `destination/len dev oif` in `table`, IPv4 (RFC 5844 home addresses, tun backend).
    fn device_route_v4(&self, table: u32, destination: Ipv4Addr, len: u8, oif: u32) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.destination_prefix_length = len;
        m.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
        m.header.protocol = RouteProtocol::from(self.protocol);
        m.header.scope = RouteScope::Link;
        m.header.kind = RouteType::Unicast;
        m.attributes.push(RouteAttribute::Table(table));
        if len > 0 {
            m.attributes.push(RouteAttribute::Destination(RouteAddress::Inet(destination)));
        }
        m.attributes.push(RouteAttribute::Oif(oif));
        m
    }

    /// `from address/32 iif name lookup table`, IPv4.
    fn source_rule_v4(&self, address: Ipv4Addr, name: String, table: u32) -> RuleMessage {
        let mut rule = self.rule_base(self.rule_priority + 1, table);
        rule.header.family = AddressFamily::Inet;
        rule.header.src_len = 32;
        rule.attributes.push(RuleAttribute::Source(IpAddr::V4(address)));
        rule.attributes.push(RuleAttribute::Iifname(name));
        rule
    }

    /// `fwmark T lookup T`: the mark equals the table number.
    fn fwmark_rule(&self, table: u32) -> RuleMessage {
        let mut rule = self.rule_base(self.rule_priority + 1, table);
        rule.attributes.push(RuleAttribute::FwMark(table));
        rule.attributes.push(RuleAttribute::FwMask(u32::MAX));
        rule
    }

    fn check(&self) -> Result<(), RoutingError> {
        if self.table_base < 256 || self.table_base > u32::MAX - MAX_TUNNELS - 1 {
            return Err(RoutingError::Config("table_base must be at least 256 and leave room for the per-peer tables"));
        }
        if self.rule_priority < 2 || self.rule_priority > u32::MAX - 2 {
            return Err(RoutingError::Config("rule_priority must be at least 2 and below 2^32 - 2"));
        }
        if self.protocol <= 4 {
            return Err(RoutingError::Config("protocol 0-4 belongs to the kernel and the system"));
        }
        if self.local.is_unspecified() || self.local.is_multicast() || self.local.is_loopback() {
            return Err(RoutingError::Config("local must be a unicast address of this node"));
        }
        // RFC 8200 §5: every IPv6 link carries 1280 octets; the inner packet plus the outer
        // header must fit an IPv6 packet.
        if self.tunnel_mtu < 1280 || self.tunnel_mtu > 65_535 - 40 {
            return Err(RoutingError::Config("tunnel_mtu must be between 1280 and 65495"));
        }
        Ok(())
    }
}

/// What went wrong while programming the kernel.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    /// The configuration cannot work.
    #[error("routing configuration: {0}")]
    Config(&'static str),
    /// The kernel (or this crate) lacks something the chosen backend needs.
    #[error("not supported by this kernel: {0}")]
    Unsupported(String),
    /// A netlink request failed.
    #[error("netlink: {what}: {source}")]
    Netlink {
        /// What we were doing.
        what: String,
        /// The error.
        #[source]
        source: rtnetlink::Error,
    },
    /// A system call or file failed (the netlink socket, the forwarding sysctl, generic netlink).
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A prefix longer than 128 bits.
    #[error("invalid prefix length {0}")]
    InvalidPrefix(u8),
    /// An intent needs a tunnel that was never added.
    #[error("no tunnel to {0}")]
    NoTunnel(Ipv6Addr),
    /// More tunnels than [`MAX_TUNNELS`].
    #[error("too many tunnels (at most {MAX_TUNNELS})")]
    TooManyTunnels,
    /// The kernel has no route to a tunnel peer, or only one through loopback.
    #[error("no route to tunnel peer {0}")]
    NoRouteToPeer(Ipv6Addr),
    /// `local` is not an address of any interface of this namespace.
    #[error("{0} is not an address of this node")]
    LocalAddressMissing(Ipv6Addr),
    /// An interface index that names no interface.
    #[error("no interface with index {0}")]
    UnknownInterface(u32),
}

/// A route we own, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteEntry {
    /// The routing table.
    pub table: u32,
    /// The destination.
    pub destination: Prefix,
    /// What the route does.
    pub kind: RouteKind,
    /// The output interface index, if any.
    pub oif: Option<u32>,
}

/// What a route does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKind {
    /// `encap seg6` with this mode number (3 = encap.red) and these segments.
    Seg6Encap {
        /// `SEG6_IPTUN_MODE_*`.
        mode: u32,
        /// The segments, first first.
        segments: Vec<Ipv6Addr>,
    },
    /// `encap seg6local action End.DT6 table T`.
    Seg6LocalEndDt6 {
        /// The table of the inner lookup.
        table: u32,
    },
    /// Via a gateway.
    Via(Ipv6Addr),
    /// On-link on `oif`.
    OnLink,
    /// Anything else (type number of the route).
    Other(u8),
}

/// A rule we own, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleEntry {
    /// Priority.
    pub priority: u32,
    /// `lookup` table.
    pub table: u32,
    /// `from` selector.
    pub source: Option<Prefix>,
    /// `to` selector.
    pub destination: Option<Prefix>,
    /// `iif` selector (interface name).
    pub iif: Option<String>,
    /// `fwmark` selector.
    pub fwmark: Option<u32>,
    /// `ipproto` selector.
    pub ipproto: Option<u8>,
}

/// The routes and rules we own, read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelState {
    /// Our routes, sorted.
    pub routes: Vec<RouteEntry>,
    /// Our rules, sorted.
    pub rules: Vec<RuleEntry>,
    /// The namespace's seg6 tunnel source (`ip sr tunsrc`), `::` when unset.
    pub tunnel_source: Ipv6Addr,
}

/// One tunnel: its table slot and the device of its routes (seg6: the device towards the peer;
/// tun: the peer's TUN device; ip6tnl: the peer's ip6tnl device).
#[derive(Debug, Clone, Copy)]
struct Tunnel {
    slot: u32,
    oif: u32,
}

/// The kernel side of tunnels, routes and rules of one LMA or MAG (see the module docs).
#[derive(Debug)]
pub struct Routing {
    config: RoutingConfig,
    /// The backend in use: [`TunnelBackend::Ip6tnl`], [`TunnelBackend::Seg6`] or
    /// [`TunnelBackend::Tun`], never `Auto`.
    backend: TunnelBackend,
    handle: Handle,
    connection: tokio::task::JoinHandle<()>,
    tunnels: BTreeMap<Ipv6Addr, Tunnel>,
    /// Where the search for a free tunnel slot starts.
    next_slot: u32,
    /// The interface name of each source rule, by (prefix, interface, peer).
    source_rules: BTreeMap<(Prefix, InterfaceId, Ipv6Addr), String>,
    /// The same for the IPv4 home addresses' source rules.
    source_rules_v4: BTreeMap<(Ipv4Addr, InterfaceId, Ipv6Addr), String>,
    /// Whether IPv4 forwarding was switched on (with the first IPv4 home address).
    ipv4_forwarding: bool,
    previous_tunnel_source: Ipv6Addr,
    /// The tun backend's packet path; `None` with seg6 and ip6tnl.
    forwarder: Option<Forwarder>,
}

impl Drop for Routing {
    fn drop(&mut self) {
        // Dropped without close (a crash, in effect): the kernel state stays for the next open(),
        // ip6tnl devices included, except the TUN devices, which go with the forwarder's tasks
        // (and their routes with them).
        self.connection.abort();
    }
}

fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> RoutingError {
    let what = what.into();
    move |source| RoutingError::Netlink { what, source }
}

/// The errno of a netlink error, positive.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

fn ignore_exists(r: Result<(), rtnetlink::Error>) -> Result<(), rtnetlink::Error> {
    match r {
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
        r => r,
    }
}

fn ignore_missing(r: Result<(), rtnetlink::Error>) -> Result<(), rtnetlink::Error> {
    match r {
        Err(e) if matches!(errno(&e), Some(libc::ENOENT | libc::ESRCH)) => Ok(()),
        r => r,
    }
}

/// Whether `link` is an ip6tnl device of ours: named `p6i…` and of kind `ip6tnl`.
fn is_our_ip6tnl(link: &LinkMessage) -> bool {
    let mut named = false;
    let mut ip6tnl = false;
    for attribute in &link.attributes {
        match attribute {
            LinkAttribute::IfName(name) => named = name.starts_with(IP6TNL_DEVICE_PREFIX),
            LinkAttribute::LinkInfo(infos) => {
                ip6tnl = infos.iter().any(|i| matches!(i, LinkInfo::Kind(InfoKind::Ip6Tnl)));
            }
            _ => {}
        }
    }
    named && ip6tnl
}

/// The prefix with its host bits cleared; bad lengths are an error, never a panic.
fn masked(prefix: Prefix) -> Result<Prefix, RoutingError> {
    if prefix.len > 128 {
        return Err(RoutingError::InvalidPrefix(prefix.len));
    }
    let bits = u128::from(prefix.addr);
    let mask = if prefix.len == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix.len)) };
    Ok(Prefix::new(Ipv6Addr::from(bits & mask), prefix.len))
}

impl Routing {
    /// Connects to rtnetlink (the connection runs on the current tokio runtime), removes
    /// whatever a previous run left, picks the backend (see the module docs), installs the
    /// fixed routes and rules, and enables IPv6 forwarding (`net.ipv6.conf.all.forwarding = 1`).
    /// With seg6 it sets the seg6 tunnel source to `local`; with tun it opens the raw socket
    /// and spawns the forwarder's receiving task on the current runtime, which must keep
    /// running (not be blocked) for packets to flow.
    pub async fn open(config: RoutingConfig) -> Result<Routing, RoutingError> {
        config.check()?;
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|source| RoutingError::Io { what: "rtnetlink socket".into(), source })?;
        let connection = tokio::spawn(connection);
        let mut routing = Routing {
            backend: config.backend,
            config,
            handle,
            connection,
            tunnels: BTreeMap::new(),
            next_slot: 0,
            source_rules: BTreeMap::new(),
            source_rules_v4: BTreeMap::new(),
            ipv4_forwarding: false,
            previous_tunnel_source: Ipv6Addr::UNSPECIFIED,
            forwarder: None,
        };
        routing.remove_ours().await?;
        match routing.backend {
            TunnelBackend::Auto => {
                routing.backend = if routing.ip6tnl_supported().await? {
                    TunnelBackend::Ip6tnl
                } else if routing.seg6_supported().await? {
                    TunnelBackend::Seg6
                } else {
                    TunnelBackend::Tun
                };
            }
            TunnelBackend::Ip6tnl if !routing.ip6tnl_supported().await? => {
                return Err(RoutingError::Unsupported(
                    "this kernel has no ip6tnl devices (CONFIG_IPV6_TUNNEL, the ip6_tunnel module): creating \
                     an ip6tnl link failed with EOPNOTSUPP (\"Unknown device type\"); use the seg6 or tun backend"
                        .into(),
                ));
            }
            _ => {}
        }
        tracing::info!(backend = ?routing.backend, "tunnel backend");
        if routing.backend == TunnelBackend::Seg6 {
            routing.previous_tunnel_source = genl::tunnel_source()
                .map_err(|source| RoutingError::Io { what: "reading the seg6 tunnel source".into(), source })?;
        }
        if let Err(e) = routing.install_fixed().await {
            // Leave nothing half made; the error that matters is the first one.
            let _ = routing.remove_ours().await;
            if let Some(forwarder) = routing.forwarder.take() {
                forwarder.shutdown().await;
            }
            if routing.backend == TunnelBackend::Seg6 {
                let _ = genl::set_tunnel_source(routing.previous_tunnel_source);
            }
            return Err(e);
        }
        Ok(routing)
    }

    /// Whether the kernel has ip6tnl devices: creates the ip6tnl device `p6iprobe` (from `local`
    /// to `local`, never up, so it neither sends nor receives) and deletes it again.
    /// `EOPNOTSUPP` is the kernel's answer for an unknown link kind (iproute2 prints "Unknown
    /// device type").
    async fn ip6tnl_supported(&self) -> Result<bool, RoutingError> {
        let probe = self.config.ip6tnl_link(IP6TNL_PROBE, self.config.local);
        match self.handle.link().add(probe).execute().await {
            Ok(()) => {
                let index = self.link_index(IP6TNL_PROBE).await?;
                self.del_link(index, "removing the ip6tnl probe device").await?;
                Ok(true)
            }
            Err(e) if errno(&e) == Some(libc::EOPNOTSUPP) => {
                tracing::info!("no ip6tnl in this kernel (CONFIG_IPV6_TUNNEL)");
                Ok(false)
            }
            // Ours were removed before the probe: this one is someone else's, or an ip6tnl
            // device with the probe's end points exists.
            Err(e) if errno(&e) == Some(libc::EEXIST) => Err(netlink(format!(
                "probing for ip6tnl: a device named {IP6TNL_PROBE} or an ip6tnl device from {local} to itself \
                 exists and is not ours",
                local = self.config.local
            ))(e)),
            Err(e) => Err(netlink("probing for ip6tnl")(e)),
        }
    }

    /// Whether the kernel has seg6 lightweight tunnels: adds a seg6 encapsulation route to our
    /// table `table_base` (empty at this point) and deletes it again.
    async fn seg6_supported(&self) -> Result<bool, RoutingError> {
        let local = self.config.local;
        let device = self.device_of_address(local).await?;
        let probe = self.config.encap_route(self.config.table_base, Prefix::new(local, 128), local, device);
        match self.handle.route().add(probe.clone()).replace().execute().await {
            Ok(()) => {
                self.del_route(probe, "removing the seg6 probe route").await?;
                Ok(true)
            }
            Err(e) if errno(&e) == Some(libc::EOPNOTSUPP) => {
                tracing::info!("no seg6 lightweight tunnels in this kernel: tunnels use TUN devices");
                Ok(false)
            }
            Err(e) => Err(netlink("probing for seg6 lightweight tunnels")(e)),
        }
    }

    async fn install_fixed(&mut self) -> Result<(), RoutingError> {
        let local = self.config.local;
        let device = self.device_of_address(local).await?;
        if self.backend == TunnelBackend::Ip6tnl {
            // Nothing fixed: the kernel's ip6tnl decapsulates, each tunnel brings its device.
            return self.enable_forwarding();
        }
        if self.backend == TunnelBackend::Tun {
            self.enable_forwarding()?;
            let forwarder = Forwarder::start(local)
                .map_err(|source| RoutingError::Io { what: "opening the raw tunnel socket".into(), source })?;
            self.forwarder = Some(forwarder);
            return Ok(());
        }
        // The decapsulation route first: with an explicit seg6 backend it is also the probe for
        // seg6 support, made before anything else changes.
        let mut decap = self.config.route_base(self.config.table_base, Prefix::new(local, 128));
        decap.header.kind = RouteType::Unicast;
        decap.attributes.push(RouteAttribute::EncapType(RouteLwEnCapType::Seg6Local));
        decap.attributes.push(RouteAttribute::Encap(vec![
            RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Action(Seg6LocalAction::EndDt6)),
            RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Table(TABLE_MAIN)),
        ]));
        decap.attributes.push(RouteAttribute::Oif(device));
        if let Err(e) = self.handle.route().add(decap).replace().execute().await {
            if errno(&e) == Some(libc::EOPNOTSUPP) {
                return Err(RoutingError::Unsupported(format!(
                    "this kernel has no seg6 lightweight tunnels (CONFIG_IPV6_SEG6_LWTUNNEL): \
                     adding `{local}/128 encap seg6local action End.DT6` failed with {e}"
                )));
            }
            return Err(netlink("decapsulation route")(e));
        }

        self.install_fixed_rules().await
    }

    /// RFC 5213 §5.6.2 / §6.10.5: both ends forward between the tunnel and the other links.
    fn enable_forwarding(&self) -> Result<(), RoutingError> {
        std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1")
            .map_err(|source| RoutingError::Io { what: "enabling IPv6 forwarding".into(), source })
    }

    /// seg6: everything fixed but the decapsulation route: the tunnel source, the rules,
    /// forwarding.
    async fn install_fixed_rules(&mut self) -> Result<(), RoutingError> {
        let local = self.config.local;
        // RFC 5213 §5.6.1, §6.10.1: the tunnel is between the LMAA and the Proxy-CoA, so the
        // outer source of every encapsulated packet is `local`.
        genl::set_tunnel_source(local)
            .map_err(|source| RoutingError::Io { what: "setting the seg6 tunnel source".into(), source })?;

        self.install_decap_rule().await?;

        if self.config.role == Role::Lma {
            // Pitfall: the fwmark survives encapsulation; the outer packet must not meet the
            // fwmark rules.
            let mut rule = self.config.rule_base(self.config.rule_priority, TABLE_MAIN);
            rule.attributes.push(RuleAttribute::IpProtocol(IpProtocol::Ipv6));
            self.add_rule(rule, "rule ipproto 41 lookup main").await?;
        }

        self.enable_forwarding()
    }

    /// Puts `to local ipproto 41 lookup table_base` at priority 0 before the kernel's local rule
    /// (see the module docs).
    async fn install_decap_rule(&mut self) -> Result<(), RoutingError> {
        let backup = self.config.local_rule(PRIORITY_LOCAL_BACKUP, RouteProtocol::Other(self.config.protocol));
        self.add_rule(backup.clone(), "temporary local rule").await?;
        let kernel_local = self.config.local_rule(PRIORITY_DECAP, RouteProtocol::Kernel);
        // Every `lookup local` rule at priority 0, whatever its protocol.
        for rule in self.dump_rules().await? {
            if rule_table(&rule) == TABLE_LOCAL && rule_priority(&rule) == PRIORITY_DECAP {
                let r = self.handle.rule().del(rule).execute().await;
                ignore_missing(r).map_err(netlink("moving the local rule"))?;
            }
        }
        let mut decap = self.config.rule_base(PRIORITY_DECAP, self.config.table_base);
        decap.header.dst_len = 128;
        decap.attributes.push(RuleAttribute::Destination(IpAddr::V6(self.config.local)));
        decap.attributes.push(RuleAttribute::IpProtocol(IpProtocol::Ipv6));
        let added = self.add_rule(decap, "decapsulation rule").await;
        let restored = self.add_rule(kernel_local, "local rule").await;
        added?;
        restored?;
        let r = self.handle.rule().del(backup).execute().await;
        ignore_missing(r).map_err(netlink("temporary local rule"))
    }

    /// Applies one intent, idempotently. [`Resource::Steering`] is not ours: `Ok` without effect.
    pub async fn apply(&mut self, intent: &Intent) -> Result<(), RoutingError> {
        match intent {
            Intent::Add(resource) => self.add(resource).await,
            Intent::Remove(resource) => self.remove(resource).await,
        }
    }

    async fn add(&mut self, resource: &Resource) -> Result<(), RoutingError> {
        match *resource {
            Resource::Tunnel { local: _, peer } => self.add_tunnel(peer).await,
            Resource::PrefixToTunnel { prefix, peer } => {
                // RFC 5213 §5.6.2: downlink packets for the mobile node's prefix go into the
                // tunnel to the MAG of its binding.
                let prefix = masked(prefix)?;
                let route = match (self.backend, self.tunnels.get(&peer)) {
                    (TunnelBackend::Tun | TunnelBackend::Ip6tnl, Some(t)) => {
                        self.config.device_route(TABLE_MAIN, prefix, t.oif)
                    }
                    (TunnelBackend::Tun | TunnelBackend::Ip6tnl, None) => return Err(RoutingError::NoTunnel(peer)),
                    (_, Some(t)) => self.config.encap_route(TABLE_MAIN, prefix, peer, t.oif),
                    (_, None) => self.config.encap_route(TABLE_MAIN, prefix, peer, self.device_towards(peer).await?),
                };
                self.handle.route().add(route).replace().execute().await.map_err(netlink("prefix route into tunnel"))
            }
            Resource::PrefixToAccess { prefix, interface, next_hop } => {
                // RFC 5213 §6.10.5: packets for the mobile node go out on its access link.
                let route = self.config.access_route(masked(prefix)?, interface, next_hop);
                self.handle.route().add(route).replace().execute().await.map_err(netlink("prefix route to access link"))
            }
            Resource::SourceRouteToTunnel { prefix, interface, peer } => {
                // RFC 5213 §6.10.3: uplink packets from the mobile node's prefix go into the
                // tunnel to the LMA.
                let table = self.tunnels.get(&peer).map(|t| self.table(t.slot)).ok_or(RoutingError::NoTunnel(peer))?;
                let prefix = masked(prefix)?;
                let name = self.interface_name(interface.0).await?;
                let rule = self.config.source_rule(prefix, name.clone(), table);
                self.add_rule(rule, "source route rule").await?;
                self.source_rules.insert((prefix, interface, peer), name);
                Ok(())
            }
            Resource::Steering(_) => Ok(()),
            Resource::Ipv4HomeAddressToTunnel { address, peer } => {
                // RFC 5844 §3.1.4: downlink IPv4 packets for the home address go into the
                // tunnel, IPv4 in IPv6.
                let oif = self.ipv4_tunnel(address, peer)?;
                self.enable_ipv4_forwarding()?;
                let route = self.config.device_route_v4(TABLE_MAIN, address, 32, oif);
                self.handle.route().add(route).replace().execute().await.map_err(netlink("IPv4 route into tunnel"))
            }
            Resource::Ipv4HomeAddressToAccess { address, interface } => {
                // RFC 5844 §3.2.4: IPv4 packets for the mobile node go out on its access link.
                self.enable_ipv4_forwarding()?;
                let route = self.config.device_route_v4(TABLE_MAIN, address, 32, interface.0);
                self.handle.route().add(route).replace().execute().await.map_err(netlink("IPv4 route to access link"))
            }
            Resource::Ipv4SourceRouteToTunnel { address, interface, peer } => {
                // RFC 5844 §3.2.4: uplink IPv4 packets from the home address go into the
                // tunnel: a source rule into the tunnel's table, which gets an IPv4 default
                // route beside its IPv6 one.
                let oif = self.ipv4_tunnel(address, peer)?;
                let table = self.tunnels.get(&peer).map(|t| self.table(t.slot)).ok_or(RoutingError::NoTunnel(peer))?;
                self.enable_ipv4_forwarding()?;
                let default = self.config.device_route_v4(table, Ipv4Addr::UNSPECIFIED, 0, oif);
                self.handle
                    .route()
                    .add(default)
                    .replace()
                    .execute()
                    .await
                    .map_err(netlink("IPv4 tunnel default route"))?;
                let name = self.interface_name(interface.0).await?;
                self.add_rule(self.config.source_rule_v4(address, name.clone(), table), "IPv4 source route rule")
                    .await?;
                self.source_rules_v4.insert((address, interface, peer), name);
                Ok(())
            }
            Resource::Ipv4DefaultRouterOnAccess { address, interface } => {
                // RFC 5844 §3.3.3: the mobile nodes' default router is ours on the access link
                // (they resolve it there), tagged with our protocol (IFA_PROTO). An address the
                // operator configured there already is left as it is, and never removed.
                let mut request = self.handle.address().add(interface.0, IpAddr::V4(address), 32);
                request.message_mut().attributes.push(AddressAttribute::Protocol(self.address_protocol()));
                ignore_exists(request.execute().await)
                    .map_err(netlink("IPv4 default router address on the access link"))
            }
        }
    }

    fn address_protocol(&self) -> AddressProtocol {
        AddressProtocol::from(self.config.protocol)
    }

    /// Our addresses (tagged with our protocol), on interface `index` when given.
    async fn our_addresses(&self, index: Option<u32>) -> Result<Vec<AddressMessage>, RoutingError> {
        let ours = self.address_protocol();
        let all: Vec<AddressMessage> =
            self.handle.address().get().execute().try_collect().await.map_err(netlink("dumping addresses"))?;
        Ok(all
            .into_iter()
            .filter(|m| index.is_none_or(|i| m.header.index == i))
            .filter(|m| m.attributes.contains(&AddressAttribute::Protocol(ours)))
            .collect())
    }

    /// The device of the tunnel to `peer` for IPv4 home address `address`: IPv4 in IPv6 is
    /// forwarded by the tun backend only (ip6tnl devices here are ip6ip6, seg6 encap.red is
    /// IPv6 only).
    fn ipv4_tunnel(&self, address: Ipv4Addr, peer: Ipv6Addr) -> Result<u32, RoutingError> {
        if self.backend != TunnelBackend::Tun {
            return Err(RoutingError::Unsupported(format!(
                "IPv4 home address {address}: IPv4-in-IPv6 needs the tun backend, not {:?}",
                self.backend
            )));
        }
        self.tunnels.get(&peer).map(|t| t.oif).ok_or(RoutingError::NoTunnel(peer))
    }

    fn enable_ipv4_forwarding(&mut self) -> Result<(), RoutingError> {
        if !self.ipv4_forwarding {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                .map_err(|source| RoutingError::Io { what: "enabling IPv4 forwarding".into(), source })?;
            self.ipv4_forwarding = true;
        }
        Ok(())
    }

    /// Deletes our IPv4 routes to `destination/len` in `table`, through `oif` when given.
    async fn del_routes_v4(
        &self,
        destination: Ipv4Addr,
        len: u8,
        table: u32,
        oif: Option<u32>,
        what: &str,
    ) -> Result<(), RoutingError> {
        let protocol = RouteProtocol::from(self.config.protocol);
        for route in self.dump_routes_v4().await? {
            let dst = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
                _ => None,
            });
            let through = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(o) => Some(*o),
                _ => None,
            });
            if route.header.protocol == protocol
                && route_table(&route) == table
                && route.header.destination_prefix_length == len
                && dst.unwrap_or(Ipv4Addr::UNSPECIFIED) == destination
                && (oif.is_none() || through == oif)
            {
                self.del_route(route, what).await?;
            }
        }
        Ok(())
    }

    async fn remove(&mut self, resource: &Resource) -> Result<(), RoutingError> {
        match *resource {
            Resource::Tunnel { local: _, peer } => self.remove_tunnel(peer).await,
            Resource::PrefixToTunnel { prefix, peer } => {
                // Only the route into *this* peer's tunnel: after a handoff the prefix may
                // already point to the new MAG (the kernel does not match encapsulation on
                // delete, so the match is ours).
                let prefix = masked(prefix)?;
                let protocol = RouteProtocol::from(self.config.protocol);
                // tun, ip6tnl: the route into the peer's device; none left when the device is gone.
                let device = self.tunnels.get(&peer).map(|t| t.oif);
                if self.has_devices() && device.is_none() {
                    return Ok(());
                }
                for route in self.dump_routes().await? {
                    let entry = route_entry(&route);
                    let into_peer = match self.backend {
                        TunnelBackend::Tun | TunnelBackend::Ip6tnl => {
                            entry.kind == RouteKind::OnLink && entry.oif == device
                        }
                        _ => matches!(&entry.kind, RouteKind::Seg6Encap { segments, .. } if segments == &[peer]),
                    };
                    if route.header.protocol == protocol
                        && entry.table == TABLE_MAIN
                        && entry.destination == prefix
                        && into_peer
                    {
                        self.del_route(route, "prefix route into tunnel").await?;
                    }
                }
                Ok(())
            }
            Resource::PrefixToAccess { prefix, interface, next_hop } => {
                let route = self.config.access_route(masked(prefix)?, interface, next_hop);
                self.del_route(route, "prefix route to access link").await
            }
            Resource::SourceRouteToTunnel { prefix, interface, peer } => {
                let prefix = masked(prefix)?;
                // The name recorded when the rule was added: the interface may be gone by now
                // (the kernel keeps such a rule, by name).
                let Some(name) = self.source_rules.remove(&(prefix, interface, peer)) else { return Ok(()) };
                let Some(tunnel) = self.tunnels.get(&peer) else { return Ok(()) };
                let rule = self.config.source_rule(prefix, name, self.table(tunnel.slot));
                let r = self.handle.rule().del(rule).execute().await;
                ignore_missing(r).map_err(netlink("source route rule"))
            }
            Resource::Steering(_) => Ok(()),
            Resource::Ipv4HomeAddressToTunnel { address, peer } => {
                // Only the route into *this* peer's tunnel (after a handoff the address may
                // already point to the new MAG); none left when the device is gone.
                let Some(oif) = self.tunnels.get(&peer).map(|t| t.oif) else { return Ok(()) };
                self.del_routes_v4(address, 32, TABLE_MAIN, Some(oif), "IPv4 route into tunnel").await
            }
            Resource::Ipv4HomeAddressToAccess { address, interface } => {
                self.del_routes_v4(address, 32, TABLE_MAIN, Some(interface.0), "IPv4 route to access link").await
            }
            Resource::Ipv4DefaultRouterOnAccess { address, interface } => {
                for m in self.our_addresses(Some(interface.0)).await? {
                    if m.attributes.contains(&AddressAttribute::Address(IpAddr::V4(address))) {
                        let r = self.handle.address().del(m).execute().await;
                        ignore_missing(r).map_err(netlink("IPv4 default router address"))?;
                    }
                }
                Ok(())
            }
            Resource::Ipv4SourceRouteToTunnel { address, interface, peer } => {
                let Some(name) = self.source_rules_v4.remove(&(address, interface, peer)) else { return Ok(()) };
                let Some(tunnel) = self.tunnels.get(&peer) else { return Ok(()) };
                let rule = self.config.source_rule_v4(address, name, self.table(tunnel.slot));
                let r = self.handle.rule().del(rule).execute().await;
                ignore_missing(r).map_err(netlink("IPv4 source route rule"))
            }
        }
    }

    async fn add_tunnel(&mut self, peer: Ipv6Addr) -> Result<(), RoutingError> {
        let existing = self.tunnels.get(&peer).copied();
        let slot = match existing {
            Some(t) => t.slot,
            None => {
                // Round robin from the last slot given: a released device may still be closing
                // in the background, so its name is not taken again at once.
                let slot = (0..MAX_TUNNELS)
                    .map(|k| (self.next_slot + k) % MAX_TUNNELS)
                    .find(|s| !self.tunnels.values().any(|t| t.slot == *s))
                    .ok_or(RoutingError::TooManyTunnels)?;
                self.next_slot = (slot + 1) % MAX_TUNNELS;
                slot
            }
        };
        let table = self.table(slot);
        let (oif, route) = if self.backend == TunnelBackend::Tun {
            let oif = match existing {
                Some(t) => t.oif,
                None => self.create_device(peer, slot).await?,
            };
            (oif, self.config.device_route(table, Prefix::ALL_ZERO, oif))
        } else if self.backend == TunnelBackend::Ip6tnl {
            let oif = match existing {
                Some(t) => t.oif,
                None => self.create_ip6tnl(peer, slot).await?,
            };
            (oif, self.config.device_route(table, Prefix::ALL_ZERO, oif))
        } else {
            let oif = self.device_towards(peer).await?;
            (oif, self.config.encap_route(table, Prefix::ALL_ZERO, peer, oif))
        };
        if let Err(e) = self.handle.route().add(route).replace().execute().await {
            if existing.is_none()
                && let Some(forwarder) = self.forwarder.as_mut()
            {
                forwarder.remove(peer).await;
            }
            if existing.is_none() && self.backend == TunnelBackend::Ip6tnl {
                // The first error is the one that matters.
                let _ = self.del_link(oif, "removing the new ip6tnl device").await;
            }
            return Err(netlink("tunnel default route")(e));
        }
        self.tunnels.insert(peer, Tunnel { slot, oif });
        if self.config.role == Role::Lma {
            // The per-MAG table that steering selects by mark (draft §5.3).
            self.add_rule(self.config.fwmark_rule(table), "tunnel fwmark rule").await?;
        }
        Ok(())
    }

    /// tun: creates the TUN device of `slot`, configures it (no address generation, so no ND
    /// or MLD from the kernel; MTU `tunnel_mtu`, RFC 2473 §7), brings it up and hands it to the
    /// forwarder. Returns its interface index.
    async fn create_device(&mut self, peer: Ipv6Addr, slot: u32) -> Result<u32, RoutingError> {
        let name = tunnel::device_name(slot);
        let io = |what: &str| {
            let what = format!("{what} {name}");
            move |source| RoutingError::Io { what, source }
        };
        // Dropped on any error below: the kernel removes the device with its descriptor.
        let forwarder = self.forwarder.as_ref().ok_or(RoutingError::Unsupported("no tun forwarder".into()))?;
        let device = forwarder.create_device(&name).map_err(io("creating the TUN device"))?;
        std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/addr_gen_mode"), "1")
            .map_err(io("turning address generation off on"))?;
        let index = self.link_index(&name).await?;
        let up = LinkUnspec::new_with_index(index).mtu(self.config.tunnel_mtu).up().build();
        self.handle.link().set(up).execute().await.map_err(netlink(format!("setting {name} up")))?;
        let forwarder = self.forwarder.as_mut().ok_or(RoutingError::Unsupported("no tun forwarder".into()))?;
        forwarder.add(peer, device).await;
        Ok(index)
    }

    /// ip6tnl: creates the device `p6i<slot>` from `local` to `peer` (see the module docs),
    /// turns address generation off (no ND or MLD into the tunnel), brings it up. Returns its
    /// interface index; on any error the device is deleted again.
    async fn create_ip6tnl(&self, peer: Ipv6Addr, slot: u32) -> Result<u32, RoutingError> {
        let name = ip6tnl_device_name(slot);
        let link = self.config.ip6tnl_link(&name, peer);
        self.handle.link().add(link).execute().await.map_err(netlink(format!("creating the ip6tnl device {name}")))?;
        let index = self.link_index(&name).await?;
        let configured = async {
            std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/addr_gen_mode"), "1").map_err(|source| {
                RoutingError::Io { what: format!("turning address generation off on {name}"), source }
            })?;
            let up = LinkUnspec::new_with_index(index).up().build();
            self.handle.link().set(up).execute().await.map_err(netlink(format!("setting {name} up")))
        };
        if let Err(e) = configured.await {
            let _ = self.del_link(index, "removing the new ip6tnl device").await;
            return Err(e);
        }
        Ok(index)
    }

    /// Deletes the link `index`; one that is already gone is no error.
    async fn del_link(&self, index: u32, what: &str) -> Result<(), RoutingError> {
        match self.handle.link().del(index).execute().await {
            Err(e) if matches!(errno(&e), Some(libc::ENODEV | libc::ENOENT)) => Ok(()),
            r => r.map_err(netlink(what)),
        }
    }

    /// Whether tunnels are devices of their own (tun, ip6tnl) that the routes point at.
    fn has_devices(&self) -> bool {
        matches!(self.backend, TunnelBackend::Tun | TunnelBackend::Ip6tnl)
    }

    async fn remove_tunnel(&mut self, peer: Ipv6Addr) -> Result<(), RoutingError> {
        let Some(tunnel) = self.tunnels.get(&peer).copied() else { return Ok(()) };
        let table = self.table(tunnel.slot);
        // Every rule of ours into the tunnel's table: the fwmark rule, and source rules the
        // engine would remove first anyway.
        let protocol = RouteProtocol::from(self.config.protocol);
        for rule in self.dump_rules().await? {
            if rule_table(&rule) == table && rule_protocol(&rule) == Some(protocol) {
                let r = self.handle.rule().del(rule).execute().await;
                ignore_missing(r).map_err(netlink("tunnel rule"))?;
            }
        }
        for rule in self.dump_rules_v4().await? {
            if rule_table(&rule) == table && rule_protocol(&rule) == Some(protocol) {
                let r = self.handle.rule().del(rule).execute().await;
                ignore_missing(r).map_err(netlink("tunnel IPv4 rule"))?;
            }
        }
        self.source_rules.retain(|(_, _, p), _| *p != peer);
        self.source_rules_v4.retain(|(_, _, p), _| *p != peer);
        // Whatever is left in the table (the default route) goes with the tunnel; with tun and
        // ip6tnl also our routes into its device (the kernel would drop them with the device
        // anyway).
        let devices = self.has_devices();
        for route in self.dump_routes().await? {
            let into_device = devices && route_entry(&route).oif == Some(tunnel.oif);
            if (route_table(&route) == table || into_device) && route.header.protocol == protocol {
                self.del_route(route, "tunnel route").await?;
            }
        }
        for route in self.dump_routes_v4().await? {
            let into_device = route.attributes.iter().any(|a| matches!(a, RouteAttribute::Oif(o) if *o == tunnel.oif));
            if (route_table(&route) == table || into_device) && route.header.protocol == protocol {
                self.del_route(route, "tunnel IPv4 route").await?;
            }
        }
        if let Some(forwarder) = self.forwarder.as_mut() {
            forwarder.release(peer);
        }
        if self.backend == TunnelBackend::Ip6tnl {
            self.del_link(tunnel.oif, "removing the ip6tnl device").await?;
        }
        self.tunnels.remove(&peer);
        Ok(())
    }

    /// At the LMA, the fwmark that selects the table whose default route goes into the tunnel
    /// to `peer`; `None` when there is no such tunnel, or at a MAG.
    pub fn mark_for(&self, peer: Ipv6Addr) -> Option<u32> {
        if self.config.role != Role::Lma {
            return None;
        }
        self.tunnels.get(&peer).map(|t| self.table(t.slot))
    }

    /// The backend in use: [`TunnelBackend::Ip6tnl`], [`TunnelBackend::Seg6`] or
    /// [`TunnelBackend::Tun`] (what `Auto` picked).
    pub fn backend(&self) -> TunnelBackend {
        self.backend
    }

    /// The tun forwarder's counters since open, for metrics; all zero with seg6.
    pub fn tunnel_counters(&self) -> TunnelCounters {
        self.forwarder.as_ref().map(Forwarder::counters).unwrap_or_default()
    }

    /// The device of the tunnel to `peer`: its TUN device `p6t<slot>` (tun) or ip6tnl device
    /// `p6i<slot>` (ip6tnl); `None` with seg6 or without such a tunnel.
    pub fn tunnel_device(&self, peer: Ipv6Addr) -> Option<String> {
        let slot = self.tunnels.get(&peer)?.slot;
        match self.backend {
            TunnelBackend::Tun => Some(tunnel::device_name(slot)),
            TunnelBackend::Ip6tnl => Some(ip6tnl_device_name(slot)),
            TunnelBackend::Seg6 | TunnelBackend::Auto => None,
        }
    }

    /// Removes everything this `Routing` (or a previous run with the same protocol) made:
    /// routes, rules, ip6tnl devices, and with tun the forwarder's tasks, socket and devices;
    /// with seg6 it restores the seg6 tunnel source found at open.
    pub async fn close(mut self) -> Result<(), RoutingError> {
        let result = self.remove_ours().await;
        if let Some(forwarder) = self.forwarder.take() {
            forwarder.shutdown().await;
        }
        self.tunnels.clear();
        self.source_rules.clear();
        self.source_rules_v4.clear();
        let restored = if self.backend == TunnelBackend::Seg6 {
            genl::set_tunnel_source(self.previous_tunnel_source)
                .map_err(|source| RoutingError::Io { what: "restoring the seg6 tunnel source".into(), source })
        } else {
            Ok(())
        };
        result.and(restored)
    }

    /// Reads back, through netlink, the routes and rules we own and the tunnel source.
    pub async fn snapshot(&self) -> Result<KernelState, RoutingError> {
        let protocol = RouteProtocol::from(self.config.protocol);
        let mut routes: Vec<RouteEntry> =
            self.dump_routes().await?.iter().filter(|r| r.header.protocol == protocol).map(route_entry).collect();
        let mut rules: Vec<RuleEntry> =
            self.dump_rules().await?.iter().filter(|r| rule_protocol(r) == Some(protocol)).map(rule_entry).collect();
        routes.sort();
        rules.sort();
        let tunnel_source = match genl::tunnel_source() {
            Ok(source) => source,
            // A kernel without seg6 at all has no tunnel source to report; tun and ip6tnl need
            // none.
            Err(_) if self.has_devices() => Ipv6Addr::UNSPECIFIED,
            Err(source) => return Err(RoutingError::Io { what: "reading the seg6 tunnel source".into(), source }),
        };
        Ok(KernelState { routes, rules, tunnel_source })
    }

    /// Removes every route and rule with our protocol and every ip6tnl device of ours (named
    /// `p6i…` and of kind `ip6tnl`: whatever a crashed run of any backend left). A temporary
    /// local rule of ours is removed last, and only once a `lookup local` rule at priority 0
    /// exists again.
    async fn remove_ours(&mut self) -> Result<(), RoutingError> {
        let protocol = RouteProtocol::from(self.config.protocol);
        let rules = self.dump_rules().await?;
        let mut backups = Vec::new();
        for rule in rules {
            if rule_protocol(&rule) != Some(protocol) {
                continue;
            }
            if rule_table(&rule) == TABLE_LOCAL {
                backups.push(rule);
                continue;
            }
            let r = self.handle.rule().del(rule).execute().await;
            ignore_missing(r).map_err(netlink("removing our rule"))?;
        }
        if !backups.is_empty() {
            let local_at_zero = self.dump_rules().await?.iter().any(|r| {
                rule_table(r) == TABLE_LOCAL && rule_priority(r) == PRIORITY_DECAP && rule_protocol(r) != Some(protocol)
            });
            if !local_at_zero {
                self.add_rule(
                    self.config.local_rule(PRIORITY_DECAP, RouteProtocol::Kernel),
                    "restoring the local rule",
                )
                .await?;
            }
            for rule in backups {
                let r = self.handle.rule().del(rule).execute().await;
                ignore_missing(r).map_err(netlink("removing the temporary local rule"))?;
            }
        }
        for route in self.dump_routes().await? {
            if route.header.protocol == protocol {
                self.del_route(route, "removing our route").await?;
            }
        }
        for rule in self.dump_rules_v4().await? {
            if rule_protocol(&rule) == Some(protocol) {
                let r = self.handle.rule().del(rule).execute().await;
                ignore_missing(r).map_err(netlink("removing our IPv4 rule"))?;
            }
        }
        for route in self.dump_routes_v4().await? {
            if route.header.protocol == protocol {
                self.del_route(route, "removing our IPv4 route").await?;
            }
        }
        for m in self.our_addresses(None).await? {
            let r = self.handle.address().del(m).execute().await;
            ignore_missing(r).map_err(netlink("removing our address"))?;
        }
        let links: Vec<LinkMessage> =
            self.handle.link().get().execute().try_collect().await.map_err(netlink("dumping links"))?;
        for link in links.iter().filter(|l| is_our_ip6tnl(l)) {
            self.del_link(link.header.index, "removing our ip6tnl device").await?;
        }
        Ok(())
    }

    fn table(&self, slot: u32) -> u32 {
        self.config.table_base + 1 + slot
    }

    async fn add_rule(&self, rule: RuleMessage, what: &str) -> Result<(), RoutingError> {
        let mut request = self.handle.rule().add();
        *request.message_mut() = rule;
        ignore_exists(request.execute().await).map_err(netlink(what))
    }

    async fn del_route(&self, route: RouteMessage, what: &str) -> Result<(), RoutingError> {
        // Delete by identity only: encapsulation attributes are not needed to find the route.
        let mut m = RouteMessage::default();
        m.header = route.header;
        m.header.flags = Default::default();
        m.attributes = route
            .attributes
            .into_iter()
            .filter(|a| {
                matches!(
                    a,
                    RouteAttribute::Destination(_)
                        | RouteAttribute::Table(_)
                        | RouteAttribute::Priority(_)
                        | RouteAttribute::Source(_)
                )
            })
            .collect();
        ignore_missing(self.handle.route().del(m).execute().await).map_err(netlink(what))
    }

    /// Every IPv6 route, of every table.
    async fn dump_routes(&self) -> Result<Vec<RouteMessage>, RoutingError> {
        self.dump_routes_of(AddressFamily::Inet6).await
    }

    /// The same for IPv4 (RFC 5844 home addresses).
    async fn dump_routes_v4(&self) -> Result<Vec<RouteMessage>, RoutingError> {
        self.dump_routes_of(AddressFamily::Inet).await
    }

    async fn dump_routes_of(&self, family: AddressFamily) -> Result<Vec<RouteMessage>, RoutingError> {
        let mut m = RouteMessage::default();
        m.header.address_family = family;
        self.handle.route().get(m).execute().try_collect().await.map_err(netlink("dumping routes"))
    }

    async fn dump_rules(&self) -> Result<Vec<RuleMessage>, RoutingError> {
        self.dump_rules_of(rtnetlink::IpVersion::V6).await
    }

    async fn dump_rules_v4(&self) -> Result<Vec<RuleMessage>, RoutingError> {
        self.dump_rules_of(rtnetlink::IpVersion::V4).await
    }

    async fn dump_rules_of(&self, version: rtnetlink::IpVersion) -> Result<Vec<RuleMessage>, RoutingError> {
        self.handle.rule().get(version).execute().try_collect().await.map_err(netlink("dumping rules"))
    }

    async fn interface_name(&self, index: u32) -> Result<String, RoutingError> {
        let links: Result<Vec<_>, _> = self.handle.link().get().match_index(index).execute().try_collect().await;
        let links = match links {
            Ok(links) => links,
            Err(e) if matches!(errno(&e), Some(libc::ENODEV | libc::ENOENT)) => {
                return Err(RoutingError::UnknownInterface(index));
            }
            Err(e) => return Err(netlink("looking an interface up")(e)),
        };
        links
            .iter()
            .flat_map(|l| l.attributes.iter())
            .find_map(|a| match a {
                LinkAttribute::IfName(name) => Some(name.clone()),
                _ => None,
            })
            .ok_or(RoutingError::UnknownInterface(index))
    }

    /// The index of the interface `name`.
    async fn link_index(&self, name: &str) -> Result<u32, RoutingError> {
        let links: Vec<_> = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute()
            .try_collect()
            .await
            .map_err(netlink(format!("looking {name} up")))?;
        links.first().map(|l| l.header.index).ok_or(RoutingError::UnknownInterface(0))
    }

    /// The interface that holds `addr`.
    async fn device_of_address(&self, addr: Ipv6Addr) -> Result<u32, RoutingError> {
        let addresses: Vec<_> =
            self.handle.address().get().execute().try_collect().await.map_err(netlink("dumping addresses"))?;
        addresses
            .iter()
            .find(|m| m.attributes.iter().any(|a| matches!(a, AddressAttribute::Address(IpAddr::V6(x)) if *x == addr)))
            .map(|m| m.header.index)
            .ok_or(RoutingError::LocalAddressMissing(addr))
    }

    /// The output interface of the kernel's route to `peer` (`ip -6 route get peer`).
    async fn device_towards(&self, peer: Ipv6Addr) -> Result<u32, RoutingError> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet6;
        m.header.destination_prefix_length = 128;
        m.attributes.push(RouteAttribute::Destination(RouteAddress::Inet6(peer)));
        let answer: Result<Vec<_>, _> = self.handle.route().get(m).execute().try_collect().await;
        let answer = match answer {
            Ok(a) => a,
            Err(e) if matches!(errno(&e), Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::ENOENT)) => {
                return Err(RoutingError::NoRouteToPeer(peer));
            }
            Err(e) => return Err(netlink("looking the route to a peer up")(e)),
        };
        let route = answer.first().ok_or(RoutingError::NoRouteToPeer(peer))?;
        if route.header.kind != RouteType::Unicast {
            return Err(RoutingError::NoRouteToPeer(peer));
        }
        let oif = route.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        match oif {
            // Index 1 is loopback: a seg6 route through it would not leave the node.
            Some(i) if i != 1 => Ok(i),
            _ => Err(RoutingError::NoRouteToPeer(peer)),
        }
    }
}

fn route_table(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

fn rule_table(m: &RuleMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RuleAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

fn rule_priority(m: &RuleMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RuleAttribute::Priority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(0)
}

fn rule_protocol(m: &RuleMessage) -> Option<RouteProtocol> {
    m.attributes.iter().find_map(|a| match a {
        RuleAttribute::Protocol(p) => Some(*p),
        _ => None,
    })
}

fn route_entry(m: &RouteMessage) -> RouteEntry {
    let mut destination = Prefix::new(Ipv6Addr::UNSPECIFIED, m.header.destination_prefix_length);
    let mut oif = None;
    let mut gateway = None;
    let mut kind = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet6(d)) => destination.addr = *d,
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(RouteAddress::Inet6(g)) => gateway = Some(*g),
            RouteAttribute::Via(RouteVia::Inet6(g)) => gateway = Some(*g),
            RouteAttribute::Encap(encaps) => {
                for e in encaps {
                    match e {
                        RouteLwTunnelEncap::Seg6(RouteSeg6IpTunnel::Seg6(h)) => {
                            kind = Some(RouteKind::Seg6Encap { mode: u32::from(h.mode), segments: h.segments.clone() });
                        }
                        RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Table(t)) => {
                            kind = Some(RouteKind::Seg6LocalEndDt6 { table: *t });
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let kind = kind.unwrap_or(match (m.header.kind, gateway) {
        (RouteType::Unicast, Some(g)) => RouteKind::Via(g),
        (RouteType::Unicast, None) => RouteKind::OnLink,
        (other, _) => RouteKind::Other(u8::from(other)),
    });
    RouteEntry { table: route_table(m), destination, kind, oif }
}

fn rule_entry(m: &RuleMessage) -> RuleEntry {
    let mut entry = RuleEntry {
        priority: rule_priority(m),
        table: rule_table(m),
        source: None,
        destination: None,
        iif: None,
        fwmark: None,
        ipproto: None,
    };
    for a in &m.attributes {
        match a {
            RuleAttribute::Source(IpAddr::V6(s)) => entry.source = Some(Prefix::new(*s, m.header.src_len)),
            RuleAttribute::Destination(IpAddr::V6(d)) => entry.destination = Some(Prefix::new(*d, m.header.dst_len)),
            RuleAttribute::Iifname(n) => entry.iif = Some(n.clone()),
            RuleAttribute::FwMark(f) => entry.fwmark = Some(*f),
            RuleAttribute::IpProtocol(p) => entry.ipproto = u8::try_from(i32::from(*p)).ok(),
            _ => {}
        }
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RoutingConfig {
        RoutingConfig {
            role: Role::Lma,
            local: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
            backend: TunnelBackend::Auto,
            table_base: 0x7000,
            rule_priority: 1000,
            protocol: 0x9d,
            tunnel_mtu: RoutingConfig::DEFAULT_TUNNEL_MTU,
        }
    }

    #[test]
    fn masks_host_bits_and_rejects_long_prefixes() {
        let p = masked(Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 3, 4, 5, 6), 48));
        assert_eq!(p.ok(), Some(Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0), 48)));
        assert_eq!(masked(Prefix::ALL_ZERO).ok(), Some(Prefix::ALL_ZERO));
        assert!(matches!(masked(Prefix::new(Ipv6Addr::LOCALHOST, 129)), Err(RoutingError::InvalidPrefix(129))));
    }

    #[test]
    fn rejects_configurations_that_would_touch_the_system() {
        assert!(config().check().is_ok());
        assert!(RoutingConfig { table_base: 254, ..config() }.check().is_err());
        assert!(RoutingConfig { table_base: u32::MAX, ..config() }.check().is_err());
        assert!(RoutingConfig { rule_priority: 1, ..config() }.check().is_err());
        assert!(RoutingConfig { rule_priority: u32::MAX, ..config() }.check().is_err());
        assert!(RoutingConfig { protocol: 2, ..config() }.check().is_err());
        assert!(RoutingConfig { local: Ipv6Addr::UNSPECIFIED, ..config() }.check().is_err());
        assert!(RoutingConfig { tunnel_mtu: 1279, ..config() }.check().is_err());
        assert!(RoutingConfig { tunnel_mtu: 65_496, ..config() }.check().is_err());
    }

    /// The value of the first attribute of type `kind` (flags masked off) after the 12-octet
    /// `rtmsg` header of an emitted route message.
    fn attribute(route: &RouteMessage, kind: u16) -> Vec<u8> {
        use netlink_packet_core::Emitable;
        let mut buf = vec![0u8; route.buffer_len()];
        route.emit(&mut buf);
        let mut rest = &buf[12..];
        while rest.len() >= 4 {
            let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
            let t = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
            if t == kind {
                return rest[4..len].to_vec();
            }
            rest = &rest[len.next_multiple_of(4)..];
        }
        panic!("no attribute {kind}");
    }

    /// RTA_ENCAP as iproute2 sends it for
    /// `ip -6 route add 2001:db8:100:1::/64 encap seg6 mode encap.red segs 2001:db8:ffff::2 dev v0`
    /// (captured with `strace -e trace=sendmsg -xx`): SEG6_IPTUNNEL_SRH, mode 3, an SRH of one
    /// segment (hdrlen 2, type 4, segments left 0).
    #[test]
    fn seg6_encap_is_encoded_as_iproute2_encodes_it() {
        let layout = config();
        let peer = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2);
        let route = layout.encap_route(
            TABLE_MAIN,
            Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 1, 0, 0, 0, 0), 64),
            peer,
            2,
        );
        let mut expected =
            vec![0x20, 0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x02, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00];
        expected.extend_from_slice(&peer.octets());
        assert_eq!(attribute(&route, 22), expected, "RTA_ENCAP");
        assert_eq!(attribute(&route, 21), 5u16.to_ne_bytes().to_vec(), "RTA_ENCAP_TYPE = LWTUNNEL_ENCAP_SEG6");
        assert_eq!(attribute(&route, 4), 2u32.to_ne_bytes().to_vec(), "RTA_OIF");
        assert_eq!(route.header.table, 254);
        assert_eq!(route.header.protocol, RouteProtocol::Other(0x9d));
    }

    /// RTA_ENCAP as iproute2 sends it for `ip -6 route add table 28672 2001:db8:ffff::1/128
    /// encap seg6local action End.DT6 table 254 dev v0`: SEG6_LOCAL_ACTION 7, SEG6_LOCAL_TABLE 254.
    #[test]
    fn seg6local_end_dt6_is_encoded_as_iproute2_encodes_it() {
        let layout = config();
        let mut route =
            layout.route_base(0x7000, Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1), 128));
        route.attributes.push(RouteAttribute::EncapType(RouteLwEnCapType::Seg6Local));
        route.attributes.push(RouteAttribute::Encap(vec![
            RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Action(Seg6LocalAction::EndDt6)),
            RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Table(TABLE_MAIN)),
        ]));
        let expected =
            vec![0x08, 0x00, 0x01, 0x00, 0x07, 0x00, 0x00, 0x00, 0x08, 0x00, 0x03, 0x00, 0xfe, 0x00, 0x00, 0x00];
        assert_eq!(attribute(&route, 22), expected, "RTA_ENCAP");
        assert_eq!(attribute(&route, 21), 7u16.to_ne_bytes().to_vec(), "RTA_ENCAP_TYPE = LWTUNNEL_ENCAP_SEG6_LOCAL");
        assert_eq!(attribute(&route, 15), 0x7000u32.to_ne_bytes().to_vec(), "RTA_TABLE");
        assert_eq!(route.header.table, 0, "RT_TABLE_UNSPEC with RTA_TABLE, as iproute2");
    }

    /// The attributes of a netlink attribute stream, by type (flags masked off), in order.
    fn attributes(mut rest: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        while rest.len() >= 4 {
            let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
            let t = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
            assert!(len >= 4 && len <= rest.len(), "malformed attribute stream");
            out.push((t, rest[4..len].to_vec()));
            rest = &rest[len.next_multiple_of(4).min(rest.len())..];
        }
        out
    }

    /// The value of the one attribute of type `kind` in `list`.
    fn only(list: &[(u16, Vec<u8>)], kind: u16) -> Vec<u8> {
        let found: Vec<_> = list.iter().filter(|(t, _)| *t == kind).collect();
        assert_eq!(found.len(), 1, "attribute {kind} in {list:?}");
        found[0].1.clone()
    }

    /// `IFLA_LINKINFO` (18) → (`IFLA_INFO_KIND` (1), `IFLA_INFO_DATA` (2) as attributes sorted
    /// by type) of the link attributes `link`.
    fn link_info(link: &[(u16, Vec<u8>)]) -> (Vec<u8>, Vec<(u16, Vec<u8>)>) {
        let info = attributes(&only(link, 18));
        let mut data = attributes(&only(&info, 2));
        data.sort();
        (only(&info, 1), data)
    }

    /// The `RTM_NEWLINK` request of iproute2 6.1 for
    /// `ip link add p6i0 type ip6tnl mode ip6ip6 local 2001:db8:ffff::1 remote 2001:db8:ffff::2
    /// encaplimit none`, captured (on a kernel without ip6tnl, which refuses it after reading
    /// it) with `strace -f -e trace=sendmsg -e write=3 -xx ip link add ...`: the 16-octet
    /// `nlmsghdr`, the 16-octet `ifinfomsg`, then the attributes.
    const IPROUTE2_IP6TNL_REQUEST: [u8; 192] = [
        0xc0, 0x00, 0x00, 0x00, 0x10, 0x00, 0x05, 0x06, 0xc1, 0xb4, 0x16, 0x6b, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0x09, 0x00, 0x03, 0x00, 0x70, 0x36, 0x69, 0x30, 0x00, 0x00, 0x00, 0x00, 0x94, 0x00, 0x12, 0x00, //
        0x0a, 0x00, 0x01, 0x00, 0x69, 0x70, 0x36, 0x74, 0x6e, 0x6c, 0x00, 0x00, 0x84, 0x00, 0x02, 0x00, //
        0x05, 0x00, 0x09, 0x00, 0x29, 0x00, 0x00, 0x00, 0x14, 0x00, 0x02, 0x00, 0x20, 0x01, 0x0d, 0xb8, //
        0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x14, 0x00, 0x03, 0x00, //
        0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, //
        0x05, 0x00, 0x04, 0x00, 0x40, 0x00, 0x00, 0x00, 0x05, 0x00, 0x06, 0x00, 0x04, 0x00, 0x00, 0x00, //
        0x08, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x08, 0x00, 0x01, 0x00, 0x00, 0x00, //
        0x08, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0x06, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x10, 0x00, 0x02, 0x00, 0x00, 0x00, //
        0x06, 0x00, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, //
    ];

    /// The capture decoded by hand, so that the comparison below cannot be vacuous:
    /// `IFLA_INFO_DATA` holds `IFLA_IPTUN_PROTO` 41, `LOCAL`, `REMOTE`, `TTL` 64, `ENCAP_LIMIT` 4
    /// (the default, ignored), `FLOWINFO` 0, `FLAGS` 1 (`IP6_TNL_F_IGN_ENCAP_LIMIT`: no
    /// encapsulation limit option, RFC 2473 §4.1.1), `LINK` 0, `FWMARK` 0, `ENCAP_TYPE` 0 (none),
    /// `ENCAP_FLAGS` 2, `ENCAP_SPORT` 0, `ENCAP_DPORT` 0.
    #[test]
    fn the_iproute2_capture_says_ip6ip6_without_encapsulation_limit() {
        assert_eq!(u32::from_ne_bytes([0xc0, 0, 0, 0]) as usize, IPROUTE2_IP6TNL_REQUEST.len(), "nlmsg_len");
        let link = attributes(&IPROUTE2_IP6TNL_REQUEST[32..]);
        assert_eq!(only(&link, 3), b"p6i0\0".to_vec(), "IFLA_IFNAME");
        let (kind, data) = link_info(&link);
        assert_eq!(kind, b"ip6tnl".to_vec(), "iproute2 sends the kind without its NUL");
        let local = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
        let remote = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2);
        let mut expected = vec![
            (1, 0u32.to_ne_bytes().to_vec()),
            (2, local.octets().to_vec()),
            (3, remote.octets().to_vec()),
            (4, vec![64]),
            (6, vec![4]),
            (7, 0u32.to_ne_bytes().to_vec()),
            (8, 1u32.to_ne_bytes().to_vec()),
            (9, vec![41]),
            (15, 0u16.to_ne_bytes().to_vec()),
            (16, 2u16.to_ne_bytes().to_vec()),
            (17, vec![0, 0]),
            (18, vec![0, 0]),
            (20, 0u32.to_ne_bytes().to_vec()),
        ];
        expected.sort();
        assert_eq!(data, expected);
    }

    /// What [`RoutingConfig::ip6tnl_link`] emits carries the same `IFLA_INFO_DATA` attributes,
    /// value for value, as iproute2's request (the order differs: rtnetlink's builder appends
    /// the flow information and the flags last; the kernel parses attributes by type), the same
    /// `IFLA_INFO_KIND` but for a terminating NUL, plus `IFLA_MTU` = `tunnel_mtu`.
    #[test]
    fn ip6tnl_link_is_encoded_as_iproute2_encodes_it() {
        use netlink_packet_core::Emitable;
        let layout = RoutingConfig { local: Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1), ..config() };
        let message = layout.ip6tnl_link("p6i0", Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2));
        let mut buf = vec![0u8; message.buffer_len()];
        message.emit(&mut buf);
        let ours = attributes(&buf[16..]);
        let theirs = attributes(&IPROUTE2_IP6TNL_REQUEST[32..]);
        assert_eq!(only(&ours, 3), only(&theirs, 3), "IFLA_IFNAME");
        let (our_kind, our_data) = link_info(&ours);
        let (their_kind, their_data) = link_info(&theirs);
        // netlink-packet-route terminates the kind with a NUL, iproute2 does not; the kernel's
        // NLA_STRING policy accepts both.
        assert_eq!(our_kind.strip_suffix(b"\0"), Some(their_kind.as_slice()), "IFLA_INFO_KIND");
        assert_eq!(our_data, their_data, "IFLA_INFO_DATA");
        assert_eq!(only(&ours, 4), 1460u32.to_ne_bytes().to_vec(), "IFLA_MTU");
        assert_eq!(buf[..16], [0u8; 16], "ifinfomsg: AF_UNSPEC, no index, not up, as iproute2");
    }

    #[test]
    fn ip6tnl_device_names_fit_ifnamsiz() {
        assert_eq!(ip6tnl_device_name(0), "p6i0");
        assert!(ip6tnl_device_name(u32::MAX).len() < libc::IFNAMSIZ);
        assert!(IP6TNL_PROBE.len() < libc::IFNAMSIZ && IP6TNL_PROBE.starts_with(IP6TNL_DEVICE_PREFIX));
    }

    /// Only devices named `p6i…` *and* of kind `ip6tnl` are ours.
    #[test]
    fn only_p6i_ip6tnl_devices_are_ours() {
        let link = |name: &str, kind: InfoKind| {
            let mut m = LinkMessage::default();
            m.attributes.push(LinkAttribute::IfName(name.into()));
            m.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]));
            m
        };
        assert!(is_our_ip6tnl(&link("p6i3", InfoKind::Ip6Tnl)));
        assert!(is_our_ip6tnl(&link("p6iprobe", InfoKind::Ip6Tnl)));
        assert!(!is_our_ip6tnl(&link("ip6tnl0", InfoKind::Ip6Tnl)), "the kernel's fallback device");
        assert!(!is_our_ip6tnl(&link("p6i3", InfoKind::Veth)));
        assert!(!is_our_ip6tnl(&link("p6t3", InfoKind::Tun)));
        let mut unnamed = LinkMessage::default();
        unnamed.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Ip6Tnl)]));
        assert!(!is_our_ip6tnl(&unnamed));
    }

    fn ip(args: &[&str]) -> String {
        let out = std::process::Command::new("ip").args(args).output();
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
            other => panic!("ip {}: {other:?}", args.join(" ")),
        }
    }

    fn ok<T>(r: Result<T, RoutingError>, what: &str) -> T {
        match r {
            Ok(v) => v,
            Err(e) => panic!("{what}: {e}"),
        }
    }

    /// Everything that does not need seg6 lightweight tunnels, against the real kernel, in a
    /// network namespace of its own (`unshare` on a thread: nothing outside is touched):
    /// clean-up after a crash in the middle of moving the local rule, the decapsulation rule
    /// before the local rule, `ipproto 41 lookup main`, fwmark and source rules, routes to the
    /// access link, idempotence, the tunnel source through generic netlink, forwarding, close.
    /// Needs root; fails loudly otherwise.
    #[test]
    fn kernel_rules_and_access_routes_in_a_private_namespace() {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root (CI runs as root); it was not skipped");
        let thread = std::thread::spawn(|| {
            // SAFETY: affects the calling thread only; checked.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
            ip(&["link", "set", "lo", "up"]);
            ip(&["link", "add", "h1a", "type", "veth", "peer", "name", "h1b"]);
            ip(&["addr", "add", "2001:db8:ffff::1/64", "dev", "h1a", "nodad"]);
            ip(&["link", "set", "h1a", "up"]);
            ip(&["link", "set", "h1b", "up"]);
            // Someone else's rule; and what a crash in the middle of moving the local rule
            // leaves: our temporary local rule at priority 1, none at 0, and a route of ours.
            ip(&["-6", "rule", "add", "pref", "1500", "fwmark", "0x42", "lookup", "100", "proto", "static"]);
            ip(&["-6", "rule", "add", "pref", "1", "lookup", "local", "proto", "157"]);
            ip(&["-6", "rule", "del", "pref", "0", "lookup", "local"]);
            ip(&["-6", "route", "add", "2001:db8:9::/64", "dev", "h1a", "proto", "157", "table", "28673"]);
            let index = |name: &str| -> u32 {
                let text = ip(&["-o", "link", "show", "dev", name]);
                text.split(':').next().and_then(|i| i.trim().parse().ok()).unwrap_or(0)
            };
            let (h1a, h1b) = (index("h1a"), index("h1b"));
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => panic!("runtime: {e}"),
            };
            runtime.block_on(async move {
                let local = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
                let peer = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2);
                let prefix = Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 1, 0, 0, 0, 0), 64);
                let other = Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 2, 0, 0, 0, 0), 64);
                let (connection, handle, _) = match rtnetlink::new_connection() {
                    Ok(c) => c,
                    Err(e) => panic!("rtnetlink: {e}"),
                };
                let connection = tokio::spawn(connection);
                let previous_tunnel_source = ok(
                    genl::tunnel_source().map_err(|source| RoutingError::Io { what: "tunsrc".into(), source }),
                    "reading the tunnel source",
                );
                assert_eq!(previous_tunnel_source, Ipv6Addr::UNSPECIFIED);
                let mut routing = Routing {
                    backend: TunnelBackend::Seg6,
                    forwarder: None,
                    config: RoutingConfig { local, ..config() },
                    handle,
                    connection,
                    tunnels: BTreeMap::new(),
                    next_slot: 0,
                    source_rules: BTreeMap::new(),
                    source_rules_v4: BTreeMap::new(),
                    ipv4_forwarding: false,
                    previous_tunnel_source,
                };

                ok(routing.remove_ours().await, "remove_ours");
                let rules = ip(&["-6", "rule", "show"]);
                assert_eq!(rules.matches("lookup local").count(), 1, "{rules}");
                assert!(rules.starts_with("0:\tfrom all lookup local"), "{rules}");
                assert!(rules.contains("1500:"), "the foreign rule stays: {rules}");
                assert!(!ip(&["-6", "route", "show", "table", "all"]).contains("2001:db8:9::"));

                ok(routing.install_fixed_rules().await, "install_fixed_rules");
                ok(routing.install_fixed_rules().await, "install_fixed_rules again");
                let rules = ip(&["-6", "rule", "show"]);
                let decap = rules.find("0:\tfrom all to 2001:db8:ffff::1 ipproto ipv6 lookup 28672");
                let local_rule = rules.find("0:\tfrom all lookup local");
                assert!(matches!((decap, local_rule), (Some(d), Some(l)) if d < l), "decap before local: {rules}");
                assert_eq!(rules.matches("lookup local").count(), 1, "{rules}");
                assert!(rules.contains("1000:\tfrom all ipproto ipv6 lookup main"), "{rules}");
                let forwarding = std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding").unwrap_or_default();
                assert_eq!(forwarding.trim(), "1");

                assert_eq!(ok(routing.device_of_address(local).await, "device of local"), h1a);
                assert_eq!(ok(routing.device_towards(peer).await, "device towards peer"), h1a);
                assert!(matches!(routing.interface_name(9999).await, Err(RoutingError::UnknownInterface(9999))));
                assert!(matches!(
                    routing
                        .apply(&Intent::Add(Resource::SourceRouteToTunnel {
                            prefix,
                            interface: InterfaceId(h1b),
                            peer
                        }))
                        .await,
                    Err(RoutingError::NoTunnel(_))
                ));

                // The tunnel itself needs seg6; its table and rules do not.
                routing.tunnels.insert(peer, Tunnel { slot: 0, oif: h1a });
                assert_eq!(routing.mark_for(peer), Some(0x7001));
                ok(routing.add_rule(routing.config.fwmark_rule(0x7001), "fwmark").await, "fwmark rule");
                ok(routing.add_rule(routing.config.fwmark_rule(0x7001), "fwmark").await, "fwmark rule again");
                let intents = [
                    Resource::SourceRouteToTunnel { prefix, interface: InterfaceId(h1b), peer },
                    Resource::PrefixToAccess { prefix, interface: InterfaceId(h1b), next_hop: None },
                    Resource::PrefixToAccess {
                        prefix: other,
                        interface: InterfaceId(h1b),
                        next_hop: Some(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 5)),
                    },
                ];
                for resource in &intents {
                    ok(routing.apply(&Intent::Add(resource.clone())).await, "add");
                    ok(routing.apply(&Intent::Add(resource.clone())).await, "add again");
                }
                let state = ok(routing.snapshot().await, "snapshot");
                assert_eq!(state.tunnel_source, local);
                assert_eq!(
                    state.routes,
                    vec![
                        RouteEntry { table: 254, destination: prefix, kind: RouteKind::OnLink, oif: Some(h1b) },
                        RouteEntry {
                            table: 254,
                            destination: other,
                            kind: RouteKind::Via(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 5)),
                            oif: Some(h1b)
                        },
                    ]
                );
                let rule = |priority, table, destination, iif: Option<&str>, fwmark, ipproto, source| RuleEntry {
                    priority,
                    table,
                    source,
                    destination,
                    iif: iif.map(str::to_owned),
                    fwmark,
                    ipproto,
                };
                assert_eq!(
                    state.rules,
                    vec![
                        rule(0, 0x7000, Some(Prefix::new(local, 128)), None, None, Some(41), None),
                        rule(1000, 254, None, None, None, Some(41), None),
                        rule(1001, 0x7001, None, None, Some(0x7001), None, None),
                        rule(1001, 0x7001, None, Some("h1b"), None, None, Some(prefix)),
                    ]
                );
                for resource in &intents {
                    ok(routing.apply(&Intent::Remove(resource.clone())).await, "remove");
                    ok(routing.apply(&Intent::Remove(resource.clone())).await, "remove again");
                }
                ok(routing.remove_tunnel(peer).await, "remove tunnel");
                ok(routing.remove_tunnel(peer).await, "remove tunnel again");
                assert_eq!(routing.mark_for(peer), None);
                let state = ok(routing.snapshot().await, "snapshot");
                assert!(state.routes.is_empty(), "{:?}", state.routes);
                assert_eq!(state.rules.len(), 2, "{:?}", state.rules);

                ok(routing.close().await, "close");
                let rules = ip(&["-6", "rule", "show"]);
                assert!(!rules.contains("157") && !rules.contains("28672"), "{rules}");
                assert_eq!(rules.matches("lookup local").count(), 1, "{rules}");
                assert!(rules.starts_with("0:\tfrom all lookup local"), "{rules}");
                assert!(rules.contains("1500:"), "{rules}");
                assert!(!ip(&["-6", "route", "show", "table", "all"]).contains("proto 157"));
                let source = genl::tunnel_source().ok();
                assert_eq!(source, Some(Ipv6Addr::UNSPECIFIED), "tunnel source restored");
            });
        });
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
}
