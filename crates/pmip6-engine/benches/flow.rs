//! Flow-mobility core throughput, one core:
//! - classify + lookup of a packet of an existing flow (the per-packet path of the `nfqueue`
//!   mode and of a first packet in `learn`), against a baseline in the same run: the same
//!   classification and a plain `HashMap<FlowKey, u16>` with the standard SipHash;
//! - insert of a new flow (classify, owner lookup, policy decision, table insert, steering
//!   intent), with no rule and with a 10,000-rule policy: in steady state (flows idle out and
//!   new ones take their place, as on a running LMA) with 100,000 live flows (a table larger
//!   than the caches) and with 10,000 (as many as the lookup benchmark: one that fits), and for
//!   comparison into an empty table sized at start (`FlowConfig::reserved_flows`: first touch
//!   of its memory) and into one growing from empty;
//! - applying a 10,000-rule operator policy (validate, compile, index, re-decide the 10,000
//!   live flows, emit the differences).
//!
//! Each routine consumes what a caller would (the FID and route, a port), not the whole 44-octet
//! key: handing a large struct to `black_box` costs store-forwarding stalls that no caller pays
//! (measured here: classify alone 5 ns used normally, 30 ns with its key black-boxed).
//!
//! Run: `cargo bench -p pmip6-engine --bench flow`

use std::collections::HashMap;
use std::hint::black_box;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pmip6_engine::flow::{
    AttachmentView, FlowConfig, FlowKey, FlowSteering, MobileNodeView, OperatorRule, Route, Rule, Scope, TargetSpec,
    Verdict, classify,
};
use pmip6_engine::lma::LinkLayerId;
use pmip6_wire::selector::{FieldRange, Ipv6Selector, TrafficSelector};
use pmip6_wire::{AccessTechnologyType as Att, MnIdentifier, Prefix};

const FLOWS: usize = 10_000;
const MNS: u16 = 1_000;

fn mn(i: u16) -> MnIdentifier {
    MnIdentifier::nai(&format!("mn{i}@example.net"))
}

fn prefix(i: u16) -> Prefix {
    Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, 0x100 + i, 0, 0, 0, 0, 0), 64)
}

fn mag(i: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, i)
}

/// A UDP/IPv6 packet from a correspondent to mobile node `i`'s prefix, source port `port`.
fn packet(i: u16, cn: u16, port: u16) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0x01, 0x23, 0, 16, 17, 64];
    p.extend_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, cn).octets());
    p.extend_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0x100 + i, 0, 0, 0, 0, 0x11).octets());
    p.extend_from_slice(&port.to_be_bytes());
    p.extend_from_slice(&554u16.to_be_bytes());
    p.extend_from_slice(&[0, 16, 0, 0]);
    p.extend_from_slice(&[0x55; 8]);
    p
}

/// An engine with `MNS` mobile nodes, each on WLAN at MAG 2i+1 and 3G at MAG 2i+2.
fn engine(max_flows: usize) -> FlowSteering {
    engine_reserving(max_flows, 0)
}

/// As [`engine`], with room for `reserved_flows` flows made at start.
fn engine_reserving(max_flows: usize, reserved_flows: usize) -> FlowSteering {
    let mut e = FlowSteering::new(FlowConfig {
        max_flows,
        max_flows_per_mobile_node: 65_535,
        reserved_flows,
        ..FlowConfig::default()
    });
    for i in 0..MNS {
        let a = |m, att, l: u8| AttachmentView {
            proxy_coa: mag(m),
            access_technology: att,
            mn_link_layer_id: LinkLayerId::new(&[2, 0, 0, 0, (i >> 8) as u8, l]),
            prefixes: vec![prefix(i)],
            ipv4_home_address: None,
        };
        let view = MobileNodeView {
            prefixes: vec![prefix(i)],
            ipv4_home_addresses: vec![],
            attachments: vec![a(2 * i + 1, Att::Ieee80211, 1), a(2 * i + 2, Att::Utran, 2)],
        };
        e.update_mobile_node(&mn(i), view).expect("mobile node");
    }
    while e.poll_batch().is_some() {}
    e
}

/// 10,000 operator rules: ten per mobile node, each a source-port range of its prefix.
fn rules() -> Vec<OperatorRule> {
    (0..FLOWS)
        .map(|r| {
            let i = (r % usize::from(MNS)) as u16;
            let band = (r / usize::from(MNS)) as u16;
            let selector = TrafficSelector::Ipv6(Ipv6Selector {
                dst_addr: Some(FieldRange::new(
                    prefix(i).addr,
                    Ipv6Addr::new(0x2001, 0xdb8, 0x100 + i, 0, 0xffff, 0xffff, 0xffff, 0xffff),
                )),
                src_port: Some(FieldRange::new(band * 1000, band * 1000 + 999)),
                ..Ipv6Selector::default()
            });
            let target = if band % 2 == 0 {
                TargetSpec::AccessTechnology(Att::Ieee80211)
            } else {
                TargetSpec::AccessTechnology(Att::Utran)
            };
            OperatorRule { rule: Rule::new(selector, target), scope: Scope::AllMobileNodes, locked: band == 0 }
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let packets: Vec<Vec<u8>> = (0..FLOWS).map(|f| packet((f % usize::from(MNS)) as u16, 1, f as u16)).collect();
    let mut e = engine(1 << 20);
    for p in &packets {
        e.handle_packet(Duration::ZERO, p).expect("packet");
    }
    while e.poll_batch().is_some() {}
    assert_eq!(e.table().len(), FLOWS);
    let mut baseline: HashMap<FlowKey, u16> = HashMap::new();
    for (i, p) in packets.iter().enumerate() {
        baseline.insert(classify(p).expect("packet").key, i as u16);
    }

    // Packets as just received: a ring of 8 buffers in cache, each written (flow f: mobile node
    // f % 1000, source port f) four iterations before it is read, so that the write has retired,
    // as a packet copied in by the kernel has. The 10,000 flows of the table are visited in turn.
    let mut ring: Vec<Vec<u8>> = (0..8).map(|_| packet(0, 1, 0)).collect();
    let (mut f, mut k) = (0usize, 0usize);
    let write = |hot: &mut Vec<u8>, f: usize| {
        hot[28..30].copy_from_slice(&(0x100 + (f % usize::from(MNS)) as u16).to_be_bytes());
        hot[40..42].copy_from_slice(&(f as u16).to_be_bytes());
    };
    for (j, hot) in ring.iter_mut().enumerate() {
        write(hot, j);
    }
    let mut next = move |ring: &mut Vec<Vec<u8>>| -> usize {
        k = (k + 1) & 7;
        f += 1;
        if f == FLOWS {
            f = 0;
        }
        write(&mut ring[(k + 4) & 7], f);
        k
    };
    let mut group = c.benchmark_group("flow lookup (10,000 live flows)");
    group.throughput(Throughput::Elements(1));
    group.bench_function("baseline: classify + HashMap<FlowKey, u16> (SipHash)", |b| {
        b.iter(|| {
            let k = next(&mut ring);
            let key = classify(black_box(&ring[k])).expect("packet").key;
            black_box(baseline.get(&key).copied().expect("flow"))
        })
    });
    group.bench_function("classify only", |b| {
        b.iter(|| {
            let k = next(&mut ring);
            let info = classify(black_box(&ring[k])).expect("packet");
            black_box(info.key.src_port)
        })
    });
    group.bench_function("FlowSteering::handle_packet, existing flow (counters updated)", |b| {
        b.iter(|| {
            let k = next(&mut ring);
            match e.handle_packet(Duration::from_secs(1), black_box(&ring[k])).expect("packet") {
                Verdict::Flow { fid, route, new: false, .. } => black_box((fid, route == Route::PrefixRoute)),
                v => panic!("{v:?}"),
            }
        })
    });
    group.finish();
}

/// Flows inserted into one engine before it is replaced (or, in steady state, emptied): the
/// live flows of the insert benchmark.
const CHUNK: u64 = 100_000;

/// The live flows of the small steady-state run, as many as in the lookup benchmark: a table
/// that stays in the caches.
const SMALL_CHUNK: u64 = 10_000;

/// An engine for the insert benchmark, with `policy` loaded.
fn insert_engine(policy: Option<&[OperatorRule]>, table: Table, chunk: u64) -> FlowSteering {
    let reserved = if table == Table::Growing { 0 } else { chunk as usize };
    let mut e = engine_reserving(chunk as usize, reserved);
    if let Some(rules) = policy {
        e.set_operator_rules(rules.to_vec()).expect("policy");
        while e.poll_batch().is_some() {}
    }
    e
}

/// Inserts `iters` new flows, in chunks of `chunk`: into fresh engines, or (with `steady`,
/// an engine kept across the benchmark's samples, and its clock) into one engine whose flows
/// idle out between chunks. Only the inserts (and draining their intents) are timed.
fn insert_run(
    iters: u64,
    policy: Option<&[OperatorRule]>,
    table: Table,
    chunk: u64,
    mut steady: Option<(&mut FlowSteering, &mut Duration)>,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0u64;
    let mut p = packet(0, 1, 0);
    let mut clock = Duration::ZERO;
    while done < iters {
        let n = (iters - done).min(chunk);
        let mut owned = None;
        let (e, now) = match steady.as_mut() {
            Some((e, now)) => (&mut **e, &mut **now),
            None => (owned.insert(insert_engine(policy, table, chunk)), &mut clock),
        };
        let now = &mut *now;
        let start = Instant::now();
        for k in 0..n {
            // Flow k: mobile node k % 1000 (destination group 3), correspondent k / 65536 (source
            // group 8), source port k.
            let i = (k % u64::from(MNS)) as u16;
            p[28..30].copy_from_slice(&(0x100 + i).to_be_bytes());
            p[22..24].copy_from_slice(&((k >> 16) as u16 + 1).to_be_bytes());
            p[40..42].copy_from_slice(&(k as u16).to_be_bytes());
            match e.handle_packet(*now, &p).expect("packet") {
                Verdict::Flow { fid, new: true, .. } => black_box(fid),
                v => panic!("{v:?}"),
            };
            if k % 1024 == 1023 {
                while let Some(b) = e.poll_batch() {
                    black_box(b);
                }
            }
        }
        while let Some(b) = e.poll_batch() {
            black_box(b);
        }
        total += start.elapsed();
        assert_eq!(e.table().len() as u64, n);
        done += n;
        // Steady state (untimed): every flow idles out, and the next chunk's flows take their
        // place in memory the table has already used.
        *now += Duration::from_secs(1_000);
        e.handle_timeout(*now);
        while e.poll_batch().is_some() {}
    }
    total
}

/// How the flow table of the insert benchmark starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    /// Empty and unsized: the inserts pay for its growth.
    Growing,
    /// Empty, sized at start (`reserved_flows`): the inserts pay for first touching its memory.
    Sized,
    /// In use: flows idle out and new ones take their place, as on a running LMA.
    Steady,
}

fn insert(c: &mut Criterion) {
    let policy = rules();
    let mut group = c.benchmark_group("flow insert");
    group.throughput(Throughput::Elements(1));
    group.bench_function("new flow, no rule, table growing from empty to 100,000", |b| {
        b.iter_custom(|iters| insert_run(iters, None, Table::Growing, CHUNK, None))
    });
    group.bench_function("new flow, no rule, table sized at start for 100,000", |b| {
        b.iter_custom(|iters| insert_run(iters, None, Table::Sized, CHUNK, None))
    });
    let (mut e, mut now) = (insert_engine(None, Table::Steady, CHUNK), Duration::ZERO);
    group.bench_function("new flow, no rule, steady state, 100,000 live flows", |b| {
        b.iter_custom(|iters| insert_run(iters, None, Table::Steady, CHUNK, Some((&mut e, &mut now))))
    });
    let (mut e, mut now) = (insert_engine(None, Table::Steady, SMALL_CHUNK), Duration::ZERO);
    group.bench_function("new flow, no rule, steady state, 10,000 live flows", |b| {
        b.iter_custom(|iters| insert_run(iters, None, Table::Steady, SMALL_CHUNK, Some((&mut e, &mut now))))
    });
    let (mut e, mut now) = (insert_engine(Some(&policy), Table::Steady, CHUNK), Duration::ZERO);
    group.bench_function("new flow, 10,000-rule policy, steady state, 100,000 live flows", |b| {
        b.iter_custom(|iters| insert_run(iters, Some(&policy), Table::Steady, CHUNK, Some((&mut e, &mut now))))
    });
    group.finish();
}

fn policy(c: &mut Criterion) {
    let policy = rules();
    let mut e = engine(1 << 20);
    for f in 0..FLOWS {
        e.handle_packet(Duration::ZERO, &packet((f % usize::from(MNS)) as u16, 2, f as u16)).expect("packet");
    }
    while e.poll_batch().is_some() {}
    let mut group = c.benchmark_group("policy");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.bench_function("apply a 10,000-rule operator policy (10,000 live flows re-decided)", |b| {
        b.iter_batched(
            || policy.clone(),
            |rules| {
                e.set_operator_rules(rules).expect("policy");
                let mut n = 0;
                while let Some(batch) = e.poll_batch() {
                    n += batch.intents.len();
                }
                black_box(n)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, lookup, insert, policy);
criterion_main!(benches);
