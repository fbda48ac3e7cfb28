//! Home network prefix allocation from the configured pools (RFC 5213 §5.3.2: the LMA
//! allocates one or more prefixes for a new mobility session).
//!
//! Each pool hands out prefixes of the allocated length in order, then reuses released ones
//! first in, first out, so that a prefix rests as long as possible before it goes to another
//! mobile node. Whether a prefix is in use is the binding cache's knowledge (its prefix index),
//! passed in as a predicate: a prefix granted by value (a non-zero HNP the MN asked for) takes
//! no bookkeeping here, and the cursor skips it later.

use core::net::Ipv6Addr;
use std::collections::VecDeque;

use pmip6_wire::Prefix;

#[derive(Debug, Clone)]
struct Pool {
    base: u128,
    base_len: u8,
    count: u128,
    next: u128,
    released: VecDeque<u128>,
}

/// The pools of one LMA.
#[derive(Debug, Clone)]
pub(crate) struct PrefixPools {
    pools: Vec<Pool>,
    len: u8,
}

fn mask(len: u8) -> u128 {
    match len {
        0 => 0,
        l if l >= 128 => u128::MAX,
        l => u128::MAX << (128 - u32::from(l)),
    }
}

impl PrefixPools {
    /// Pools of `len`-bit prefixes carved from `pools`; a pool longer than `len` is returned in
    /// the second value as unusable.
    pub(crate) fn new(pools: &[Prefix], len: u8) -> (Self, Vec<Prefix>) {
        let len = len.clamp(1, 128);
        let mut usable = Vec::new();
        let mut unusable = Vec::new();
        for p in pools {
            if p.len > len || p.len > 128 {
                unusable.push(*p);
                continue;
            }
            let bits = u32::from(len - p.len);
            let count = 1u128.checked_shl(bits).unwrap_or(u128::MAX);
            usable.push(Pool {
                base: u128::from(p.addr) & mask(p.len),
                base_len: p.len,
                count,
                next: 0,
                released: VecDeque::new(),
            });
        }
        (Self { pools: usable, len }, unusable)
    }

    fn prefix(&self, pool: &Pool, index: u128) -> Prefix {
        let shift = 128 - u32::from(self.len);
        let offset = index.checked_shl(shift).unwrap_or(0);
        Prefix::new(Ipv6Addr::from(pool.base | offset), self.len)
    }

    /// Which pool holds `prefix` as one of its allocatable prefixes, and at which index.
    fn locate(&self, prefix: &Prefix) -> Option<(usize, u128)> {
        if prefix.len != self.len {
            return None;
        }
        let addr = u128::from(prefix.addr);
        if addr & !mask(self.len) != 0 {
            return None;
        }
        self.pools.iter().position(|pool| addr & mask(pool.base_len) == pool.base).map(|i| {
            let shift = 128 - u32::from(self.len);
            let index = (addr & !mask(self.pools[i].base_len)).checked_shr(shift).unwrap_or(0);
            (i, index)
        })
    }

    /// Whether `prefix` is one the pools could allocate.
    pub(crate) fn contains(&self, prefix: &Prefix) -> bool {
        self.locate(prefix).is_some()
    }

    /// A prefix not `in_use`, or `None` when every pool is exhausted: never-used prefixes of
    /// every pool first, then released ones, oldest release first.
    pub(crate) fn allocate(&mut self, in_use: impl Fn(&Prefix) -> bool) -> Option<Prefix> {
        for i in 0..self.pools.len() {
            while self.pools[i].next < self.pools[i].count {
                let index = self.pools[i].next;
                self.pools[i].next += 1;
                let p = self.prefix(&self.pools[i], index);
                if !in_use(&p) {
                    return Some(p);
                }
            }
        }
        for i in 0..self.pools.len() {
            while let Some(index) = self.pools[i].released.pop_front() {
                let p = self.prefix(&self.pools[i], index);
                if !in_use(&p) {
                    return Some(p);
                }
            }
        }
        None
    }

    /// Gives `prefix` back, if it belongs to a pool.
    pub(crate) fn release(&mut self, prefix: &Prefix) {
        if let Some((pool, index)) = self.locate(prefix) {
            self.pools[pool].released.push_back(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str, len: u8) -> Prefix {
        Prefix::new(s.parse().unwrap(), len)
    }

    #[test]
    fn allocates_in_order_skips_used_and_reuses_released_first_in_first_out() {
        let (mut pools, bad) = PrefixPools::new(&[p("2001:db8:100::", 62), p("2001:db8::1:0", 96)], 64);
        assert_eq!(bad, vec![p("2001:db8::1:0", 96)]);
        let used = [p("2001:db8:100:1::", 64)];
        let a = pools.allocate(|x| used.contains(x)).unwrap();
        let b = pools.allocate(|x| used.contains(x)).unwrap();
        assert_eq!(a, p("2001:db8:100::", 64));
        assert_eq!(b, p("2001:db8:100:2::", 64), "the prefix in use is skipped");
        pools.release(&a);
        let c = pools.allocate(|_| false).unwrap();
        assert_eq!(c, p("2001:db8:100:3::", 64), "a released prefix waits while fresh ones are left");
        pools.release(&b);
        pools.release(&p("2001:db8:ffff::", 64)); // not ours: ignored
        assert_eq!(pools.allocate(|_| false), Some(a), "oldest release first");
        assert_eq!(pools.allocate(|_| false), Some(b));
        assert_eq!(pools.allocate(|_| false), None, "a /62 holds four /64s, one of them in use");
        assert!(pools.contains(&p("2001:db8:100:3::", 64)));
        assert!(!pools.contains(&p("2001:db8:100:3::1", 64)));
        assert!(!pools.contains(&p("2001:db8:100:4::", 64)));
        assert!(!pools.contains(&p("2001:db8:100::", 63)));
    }
}
