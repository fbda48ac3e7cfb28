//! IPv4 home address allocation (RFC 5844 §3.1.3: the LMA assigns an IPv4 home address to a
//! mobility session whose PBU asks for one with an all-zero IPv4 Home Address Request).
//!
//! One home network: its network and broadcast addresses and the mobile nodes' default router
//! are never handed out. Addresses go out in order, then released ones first in, first out, so
//! that an address rests as long as possible before it goes to another mobile node. Whether an
//! address is in use is the binding cache's knowledge, passed in as a predicate.

use core::net::Ipv4Addr;
use std::collections::VecDeque;

/// The IPv4 home network of an LMA (configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Ipv4HomeNetwork {
    /// The network address, e.g. `10.64.0.0`.
    pub network: Ipv4Addr,
    /// Its prefix length (8..=30), also the prefix length of every home address given (the
    /// IPv4 Home Address Reply's Prefix-len: the mobile node's on-link prefix).
    pub prefix_len: u8,
    /// The mobile nodes' default router (RFC 5844 §3.3 IPv4 Default-Router Address option):
    /// the address every MAG presents on the access links; within the network.
    pub default_router: Ipv4Addr,
}

impl Ipv4HomeNetwork {
    fn mask(&self) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(self.prefix_len.min(32))).unwrap_or(0)
    }

    /// Whether `address` lies in the network.
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & self.mask() == u32::from(self.network) & self.mask()
    }

    /// Whether `address` can be a mobile node's home address: in the network, and neither its
    /// network nor its broadcast address nor the default router.
    pub fn assignable(&self, address: Ipv4Addr) -> bool {
        let host = u32::from(address) & !self.mask();
        self.contains(address) && host != 0 && host != !self.mask() && address != self.default_router
    }

    /// What is wrong with the configuration, if anything.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(8..=30).contains(&self.prefix_len) {
            problems.push(format!("IPv4 home network prefix length /{} is not within /8../30", self.prefix_len));
        } else if !self.contains(self.default_router) {
            problems.push(format!(
                "IPv4 default router {} is outside the home network {}/{}",
                self.default_router, self.network, self.prefix_len
            ));
        }
        problems
    }
}

/// The allocator of one [`Ipv4HomeNetwork`].
#[derive(Debug, Clone)]
pub(crate) struct Ipv4Pool {
    network: Ipv4HomeNetwork,
    next: u32,
    released: VecDeque<Ipv4Addr>,
}

impl Ipv4Pool {
    pub(crate) fn new(network: Ipv4HomeNetwork) -> Self {
        Self { network, next: 1, released: VecDeque::new() }
    }

    pub(crate) fn network(&self) -> &Ipv4HomeNetwork {
        &self.network
    }

    /// An address not `in_use`, or `None` when none is left: never-used addresses first, then
    /// released ones, oldest release first.
    pub(crate) fn allocate(&mut self, in_use: impl Fn(&Ipv4Addr) -> bool) -> Option<Ipv4Addr> {
        let base = u32::from(self.network.network) & self.network.mask();
        let hosts = !self.network.mask();
        while self.next < hosts {
            let a = Ipv4Addr::from(base | self.next);
            self.next += 1;
            if self.network.assignable(a) && !in_use(&a) {
                return Some(a);
            }
        }
        while let Some(a) = self.released.pop_front() {
            if !in_use(&a) {
                return Some(a);
            }
        }
        None
    }

    /// Gives `address` back, if it is one of ours. (A second release of one address queues it
    /// twice, harmlessly: `allocate` skips an address in use.)
    pub(crate) fn release(&mut self, address: Ipv4Addr) {
        if self.network.assignable(address) {
            self.released.push_back(address);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> Ipv4HomeNetwork {
        Ipv4HomeNetwork {
            network: Ipv4Addr::new(10, 64, 0, 0),
            prefix_len: 29,
            default_router: Ipv4Addr::new(10, 64, 0, 1),
        }
    }

    #[test]
    fn hands_out_hosts_only_skipping_used_and_reuses_released_first_in_first_out() {
        let mut pool = Ipv4Pool::new(net());
        let used = [Ipv4Addr::new(10, 64, 0, 3)];
        let got: Vec<_> = core::iter::from_fn(|| pool.allocate(|a| used.contains(a))).collect();
        // .0 network, .1 router, .3 in use, .7 broadcast.
        assert_eq!(got, [2, 4, 5, 6].map(|h| Ipv4Addr::new(10, 64, 0, h)));
        pool.release(Ipv4Addr::new(10, 64, 0, 5));
        pool.release(Ipv4Addr::new(10, 64, 0, 2));
        pool.release(Ipv4Addr::new(10, 64, 0, 1)); // the router: never
        pool.release(Ipv4Addr::new(192, 0, 2, 1)); // not ours
        assert_eq!(pool.allocate(|_| false), Some(Ipv4Addr::new(10, 64, 0, 5)));
        assert_eq!(pool.allocate(|_| false), Some(Ipv4Addr::new(10, 64, 0, 2)));
        assert_eq!(pool.allocate(|_| false), None);
    }

    #[test]
    fn configuration_problems_are_named() {
        assert!(net().problems().is_empty());
        let outside = Ipv4HomeNetwork { default_router: Ipv4Addr::new(10, 65, 0, 1), ..net() };
        assert_eq!(outside.problems().len(), 1);
        let wide = Ipv4HomeNetwork { prefix_len: 31, ..net() };
        assert_eq!(wide.problems().len(), 1);
    }
}
