//! Heap bytes per binding of the LMA at scale (DESIGN.md: ≤ 512 bytes per binding), with the
//! baselines that say how far from the minimum it is, in the same output:
//! - the essential fields of a binding as the PBU carries them (MN-ID, MN-LL-ID, prefix,
//!   Proxy-CoA, ATT, lifetime, timestamp, sequence number), counted in octets;
//! - the inline size of the public part of an entry (`Attachment`).
//!
//! Each MN registers two interfaces (WLAN and UTRAN, at different MAGs, both with the empty
//! MuHo), as in the draft's use case; notifications are off so only steady state is measured
//! (the engine's own `binding_cache_memory` test measures the same way). Two runs: the LMA with
//! flow steering off (the binding cache alone), then with it on (its default), so the cost of
//! the flow engine's per-MN state shows.
//!
//! Run: `PMIP6_MEMORY_MNS=1000000 cargo bench -p pmip6-engine --bench binding_memory`
//! (default 100,000 MNs). Not a criterion benchmark: one measurement, printed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use pmip6_engine::Received;
use pmip6_engine::lma::{Attachment, Lma, LmaConfig, NotifyMode};
use pmip6_wire::{
    AccessTechnologyType as Att, BindingUpdate, BuFlags, HandoffIndicator as Hi, Message, MnIdentifier, MobilityOption,
    Prefix, Timestamp,
};

struct CountingAllocator;

static HEAP: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counter is an atomic.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            HEAP.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            HEAP.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by the system allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        HEAP.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by the system allocator with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            HEAP.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const LMAA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);

fn main() {
    let mns: u32 = std::env::var("PMIP6_MEMORY_MNS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    for steering in [false, true] {
        measure(mns, steering);
    }
}

fn measure(mns: u32, steering: bool) {
    let now = Duration::from_secs(1_700_000_000);
    let ts = Timestamp::from_unix(now);
    let mut c = LmaConfig::new(LMAA);
    c.prefix_pools = vec![Prefix::new("2001:db8::".parse().unwrap(), 32)];
    c.notify = NotifyMode::Off;
    if !steering {
        c.flow = None;
    }
    let before = HEAP.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut lma = Lma::new(c);
    let mut essential = 0usize;
    for i in 0..mns {
        let id = MnIdentifier::nai(&format!("mn{i}@example.net"));
        for (n, att) in [(0u8, Att::Ieee80211), (1, Att::Utran)] {
            let lli = vec![2, n, (i >> 24) as u8, (i >> 16) as u8, (i >> 8) as u8, i as u8];
            // MN-ID, MN-LL-ID, prefix (16 + 1), Proxy-CoA (16), ATT (1), lifetime (2),
            // timestamp (8), sequence number (2).
            essential += id.identifier.len() + lli.len() + 17 + 16 + 1 + 2 + 8 + 2;
            let options = vec![
                MobilityOption::MnIdentifier(id.clone()),
                MobilityOption::HomeNetworkPrefix(Prefix::ALL_ZERO),
                MobilityOption::HandoffIndicator(Hi::NewInterface),
                MobilityOption::AccessTechnologyType(att),
                MobilityOption::MnLinkLayerIdentifier(lli),
                MobilityOption::Timestamp(ts),
                MobilityOption::MuHo { option_type: 18, prefix: Prefix::ALL_ZERO },
            ];
            let bu = BindingUpdate { sequence: 1, flags: BuFlags::A | BuFlags::P, lifetime: 900, options };
            let src = Ipv6Addr::new(0x2001, 0xdb8, 0xaaaa, 0, 0, 0, 0, (i % 100) as u16 + 1 + 100 * u16::from(n));
            lma.handle_message(now, Received { src, dst: LMAA, message: Message::BindingUpdate(bu) });
            while lma.poll_transmit().is_some() {}
            while lma.poll_intent().is_some() {}
            while lma.poll_event().is_some() {}
        }
    }
    let elapsed = started.elapsed();
    let bytes = HEAP.load(Ordering::Relaxed) - before + std::mem::size_of::<Lma>() as isize;
    let bindings = lma.binding_cache().len();
    assert_eq!(bindings, 2 * mns as usize);
    let per_binding = bytes as f64 / bindings as f64;
    let what = if steering { "flow steering on" } else { "flow steering off" };
    println!("{mns} MNs x 2 interfaces = {bindings} bindings in {elapsed:.2?}, {what}");
    println!("  LMA heap:                  {bytes} bytes, {per_binding:.0} bytes per binding (goal <= 512)");
    println!(
        "  baseline, essential fields: {:.0} bytes per binding (MN-ID, MN-LL-ID, prefix, Proxy-CoA, ATT, lifetime, timestamp, sequence)",
        essential as f64 / bindings as f64
    );
    println!("  baseline, size_of::<Attachment>(): {} bytes", std::mem::size_of::<Attachment>());
    drop(lma);
}
