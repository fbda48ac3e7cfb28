//! Any message the codec can represent, from the expected peer or from anyone, leaves both
//! engines running: no panic, and every intent they emit keeps the data plane consistent (no
//! add of what is there, no remove of what is not).

use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::time::Duration;

use pmip6_engine::lma::{Lma, LmaConfig};
use pmip6_engine::mag::{AccessInterface, Mag, MagConfig, MobileNodeEntry};
use pmip6_engine::{Intent, InterfaceId, Received, Resource};
use pmip6_wire::nd::strategy::router_solicitation;
use pmip6_wire::strategy::message;
use pmip6_wire::{AccessTechnologyType, Message, MnIdentifier, Prefix};
use proptest::prelude::*;

const LMAA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
const MAG: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xaaaa, 0, 0, 0, 0, 1);
const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const ACCESS: InterfaceId = InterfaceId(1);

/// A data plane as a set: a double add or an absent remove is a failure.
#[derive(Default)]
struct DataPlane(BTreeSet<Resource>);

impl DataPlane {
    fn apply(&mut self, intent: Intent) -> Result<(), TestCaseError> {
        match intent {
            Intent::Add(r) => prop_assert!(self.0.insert(r.clone()), "added twice: {r:?}"),
            Intent::Remove(r) => prop_assert!(self.0.remove(&r), "removed while absent: {r:?}"),
        }
        Ok(())
    }
}

fn lma() -> Lma {
    let mut c = LmaConfig::new(LMAA);
    c.prefix_pools = vec![Prefix::new("2001:db8:100::".parse().unwrap(), 56)];
    Lma::new(c)
}

fn mag() -> Mag {
    let mut c = MagConfig::new(MAG, LMAA);
    c.interfaces = vec![AccessInterface::new(ACCESS, AccessTechnologyType::Ieee80211, "fe80::1".parse().unwrap())];
    c.mobile_nodes = vec![MobileNodeEntry {
        mn_id: MnIdentifier::nai("mn1@example.net"),
        macs: vec![MAC],
        multihoming: true,
        ipv4: false,
    }];
    Mag::new(c)
}

fn sender() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![Just(MAG), Just(LMAA), any::<u128>().prop_map(Ipv6Addr::from)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_lma_survives_any_message(inputs in proptest::collection::vec((sender(), message(), 0u64..5_000), 1..12)) {
        let mut lma = lma();
        let mut dp = DataPlane::default();
        let mut now = Duration::from_secs(1_700_000_000);
        for (src, message, ms) in inputs {
            now += Duration::from_millis(ms);
            lma.handle_message(now, Received { src, dst: LMAA, message });
            lma.handle_timeout(now);
            while lma.poll_transmit().is_some() {}
            while let Some(intent) = lma.poll_intent() {
                dp.apply(intent)?;
            }
            while lma.poll_event().is_some() {}
        }
    }

    #[test]
    fn the_mag_survives_any_message(
        rs in router_solicitation(),
        inputs in proptest::collection::vec((sender(), message(), 0u64..5_000), 1..12),
    ) {
        let mut mag = mag();
        let mut dp = DataPlane::default();
        let mut now = Duration::from_secs(1_700_000_000);
        // An attached MN, so messages about it find state to change.
        mag.handle_router_solicitation(now, ACCESS, "fe80::2".parse().unwrap(), Some(MAC), &rs);
        for (src, message, ms) in inputs {
            now += Duration::from_millis(ms);
            let message: Message = message;
            mag.handle_message(now, Received { src, dst: MAG, message });
            mag.handle_timeout(now);
            while mag.poll_transmit().is_some() {}
            while let Some(intent) = mag.poll_intent() {
                dp.apply(intent)?;
            }
            while mag.poll_event().is_some() {}
        }
    }
}
