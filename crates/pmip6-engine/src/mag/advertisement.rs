//! The Router Advertisements the MAG sends to a mobile node (RFC 4861 §4.2, §6.2.3; RFC 5213
//! §6.7 home network emulation): what goes in them, built from one Binding Update List entry.
//!
//! Contents:
//! - a Prefix Information option (L and A set) for each of the MN's own home network prefixes
//!   on this link, valid and preferred lifetimes equal to the binding's remaining lifetime, so
//!   that no prefix outlives its binding (RFC 5213 §6.7);
//! - never the MuHo prefixes of the MN's other interfaces (draft §4.3: the RA carries only what
//!   base RFC 5213 would advertise);
//! - prefixes the LMA took away, once, with zero lifetimes (RFC 5213 §6.12): a zero preferred
//!   lifetime deprecates the MN's addresses at once; the zero valid lifetime removes them only
//!   on hosts without the two-hour rule of RFC 4862 §5.5.3 (e), elsewhere they live out their
//!   remaining lifetime, which never exceeds the binding's;
//! - Router Lifetime from the configuration, capped at 9000 s and at the remaining lifetime;
//! - Source Link-layer Address (our MAC on the link, if configured), MTU (the tunnel's:
//!   core link MTU − 40, RFC 2473; RFC 5213 §6.9.5), Retrans Timer and Reachable Time as configured;
//! - the weak-host flag (draft §4.1, RFC 5175) for multihoming mobile nodes when enabled.

use core::net::Ipv6Addr;
use core::time::Duration;

use pmip6_wire::Prefix;
use pmip6_wire::nd::{LinkLayerAddress, MAX_FLAG_BIT, NdOption, PrefixInformation, RouterAdvertisement};

use super::binding_update_list::BulEntry;
use super::config::{AccessInterface, MAX_ROUTER_LIFETIME, MIN_IPV6_MTU, RaConfig, TUNNEL_OVERHEAD};
use crate::common::Now;

/// The all-nodes multicast address (RFC 4291 §2.7.1), destination of RAs when the MN's
/// link-local address is not known (RFC 4861 §6.2.6).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

fn seconds_u32(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

fn seconds_u16(d: Duration) -> u16 {
    u16::try_from(d.as_secs()).unwrap_or(u16::MAX)
}

/// The MTU to advertise on `interface`, if any.
pub(crate) fn advertised_mtu(config: &RaConfig, interface: &AccessInterface) -> Option<u32> {
    let core = config.core_link_mtu?;
    Some(interface.mtu.min(core.saturating_sub(TUNNEL_OVERHEAD)).max(MIN_IPV6_MTU))
}

fn base(config: &RaConfig, interface: &AccessInterface, router_lifetime: u16) -> RouterAdvertisement {
    let mut ra = RouterAdvertisement {
        cur_hop_limit: config.cur_hop_limit,
        router_lifetime,
        reachable_time: config.reachable_time_ms,
        retrans_timer: config.retrans_timer_ms,
        ..RouterAdvertisement::default()
    };
    if let Some(mac) = interface.mac {
        ra.options.push(NdOption::SourceLinkLayerAddress(LinkLayerAddress::Ethernet(mac)));
    }
    if let Some(mtu) = advertised_mtu(config, interface) {
        ra.options.push(NdOption::Mtu(mtu));
    }
    ra
}

fn prefix_information(prefix: &Prefix, lifetime: u32) -> NdOption {
    NdOption::PrefixInformation(PrefixInformation {
        prefix_len: prefix.len,
        on_link: true,
        autonomous: true,
        router_address: false,
        valid_lifetime: lifetime,
        preferred_lifetime: lifetime,
        prefix: prefix.addr,
    })
}

/// The RA for a bound `entry` at `now`; `withdrawn` prefixes go with zero lifetimes.
pub(crate) fn build(
    config: &RaConfig,
    interface: &AccessInterface,
    entry: &BulEntry,
    now: Now,
    withdrawn: &[Prefix],
) -> RouterAdvertisement {
    let remaining = entry.remaining_lifetime(now);
    let router_lifetime = seconds_u16(config.router_lifetime.min(MAX_ROUTER_LIFETIME).min(remaining));
    let mut ra = base(config, interface, router_lifetime);
    // RFC 5213 §6.7: prefix lifetimes never exceed the binding's remaining lifetime.
    let lifetime = seconds_u32(remaining);
    // draft §4.3: only the MN's own prefixes on this link; MuHo prefixes are routed, not
    // advertised.
    for prefix in &entry.home_network_prefixes {
        ra.options.push(prefix_information(prefix, lifetime));
    }
    for prefix in withdrawn.iter().filter(|p| !entry.home_network_prefixes.contains(p)) {
        ra.options.push(prefix_information(prefix, 0));
    }
    // draft §4.1: ask a multihoming MN for the weak host model.
    if config.weak_host_flag && entry.multihoming && config.weak_host_flag_bit <= MAX_FLAG_BIT {
        ra.set_flag_bit(config.weak_host_flag_bit);
    }
    ra
}

/// The RA that takes everything back from `entry`: Router Lifetime 0 (RFC 4861 §6.2.5: no
/// longer a default router) and every own prefix with zero lifetimes (deprecated at once; see
/// the module documentation for the valid lifetime).
pub(crate) fn build_withdrawal(
    config: &RaConfig,
    interface: &AccessInterface,
    entry: &BulEntry,
) -> RouterAdvertisement {
    let mut ra = base(config, interface, 0);
    for prefix in &entry.home_network_prefixes {
        ra.options.push(prefix_information(prefix, 0));
    }
    ra
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::InterfaceId;
    use pmip6_wire::AccessTechnologyType;

    // RFC 2473 (40 octets of outer header), RFC 8200 §5 (1280 at least).
    #[test]
    fn advertised_mtu_is_the_tunnel_mtu_within_ipv6_bounds() {
        let mut interface = AccessInterface::new(InterfaceId(1), AccessTechnologyType::Ieee8023, Ipv6Addr::LOCALHOST);
        let mut config = RaConfig::default();
        // (access MTU, core MTU, advertised)
        let cases = [
            (1500, Some(1500), Some(1460)),
            (1400, Some(1500), Some(1400)),
            (1500, Some(1300), Some(1280)),
            (1500, None, None),
        ];
        for (access, core, expected) in cases {
            interface.mtu = access;
            config.core_link_mtu = core;
            assert_eq!(advertised_mtu(&config, &interface), expected, "access {access}, core {core:?}");
        }
    }
}
