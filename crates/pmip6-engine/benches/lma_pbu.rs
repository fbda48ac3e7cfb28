//! LMA signalling throughput on one core: a Proxy Binding Update in, its Proxy Binding
//! Acknowledgement out, the binding cache updated, every output drained (`poll_transmit`,
//! `poll_intent`, `poll_event`), measured per PBU:
//! - initial registrations of distinct mobile nodes (prefix allocation, cache insert, tunnel and
//!   route intents, PBA with the draft's MuHo answer);
//! - refreshes of registered mobile nodes (lookup by prefix, ordering check, lifetime update);
//! - the same initial registration from PBU octets to PBA octets (parse + checksum, engine,
//!   emit + checksum): what a daemon does per packet minus the socket;
//! - baseline in the same run: the codec alone on the same messages (parse and validate the PBU
//!   octets, emit a PBA), so the engine's own cost is the difference.
//!
//! Run: `cargo bench -p pmip6-engine --bench lma_pbu`

use std::hint::black_box;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pmip6_engine::lma::{Lma, LmaConfig, NotifyMode};
use pmip6_engine::{Received, Transmit};
use pmip6_wire::{
    AccessTechnologyType as Att, BaFlags, BaStatus, BindingAck, BindingUpdate, BuFlags, HandoffIndicator as Hi,
    Message, MnIdentifier, MobilityOption, ParseConfig, Prefix, Timestamp,
};

const LMAA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
/// Distinct mobile nodes per fresh LMA; a sample needing more registrations starts another.
const MNS: usize = 200_000;
const MAGS: u16 = 100;
/// 2023-11-14 22:13:20 UTC.
const NOW: Duration = Duration::from_secs(1_700_000_000);

fn mag(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0xaaaa, 0, 0, 0, 0, (i % usize::from(MAGS)) as u16 + 1)
}

fn config() -> LmaConfig {
    let mut c = LmaConfig::new(LMAA);
    c.prefix_pools = vec![Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32)];
    // One interface per MN: there is nobody to notify; heartbeats never fire (no timeout is
    // handled), so neither changes what is measured.
    c.notify = NotifyMode::Off;
    c
}

/// The PBU a MAG sends for MN `i` (RFC 5213 §6.9.1.5 and draft §5.2.1: MN-ID, HNP, empty MuHo,
/// HI, ATT, MN-LL-ID, Link-local Address, Timestamp).
fn pbu(i: usize, hnp: Prefix, hi: Hi, ts: Timestamp, sequence: u16) -> Message {
    let options = vec![
        MobilityOption::MnIdentifier(MnIdentifier::nai(&format!("mn{i}@example.net"))),
        MobilityOption::HomeNetworkPrefix(hnp),
        MobilityOption::MuHo { option_type: ParseConfig::default().muho_option_type(), prefix: Prefix::ALL_ZERO },
        MobilityOption::HandoffIndicator(hi),
        MobilityOption::AccessTechnologyType(Att::Ieee80211),
        MobilityOption::MnLinkLayerIdentifier(vec![2, 0, (i >> 24) as u8, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
        MobilityOption::LinkLocalAddress(Ipv6Addr::UNSPECIFIED),
        MobilityOption::Timestamp(ts),
    ];
    Message::BindingUpdate(BindingUpdate { sequence, flags: BuFlags::A | BuFlags::P, lifetime: 900, options })
}

fn registration(i: usize) -> Received {
    Received {
        src: mag(i),
        dst: LMAA,
        message: pbu(i, Prefix::ALL_ZERO, Hi::NewInterface, Timestamp::from_unix(NOW), 1),
    }
}

/// Feeds one message and drains every output; returns the number of PBAs (1).
fn feed(lma: &mut Lma, received: Received) -> usize {
    lma.handle_message(NOW, received);
    let mut acks = 0;
    while let Some(t) = lma.poll_transmit() {
        if let Transmit::Mobility { message: Message::BindingAck(ba), .. } = &t {
            acks += usize::from(ba.status == BaStatus::Accepted);
        }
        black_box(t);
    }
    while let Some(i) = lma.poll_intent() {
        black_box(i);
    }
    while let Some(e) = lma.poll_event() {
        black_box(e);
    }
    acks
}

/// An LMA with MNs `0..n` registered, and the prefix each was given.
fn registered(n: usize) -> (Lma, Vec<Prefix>) {
    let mut lma = Lma::new(config());
    let mut prefixes = Vec::with_capacity(n);
    for i in 0..n {
        lma.handle_message(NOW, registration(i));
        while let Some(t) = lma.poll_transmit() {
            if let Transmit::Mobility { message: Message::BindingAck(ba), .. } = t {
                let hnp = ba.options.iter().find_map(|o| match o {
                    MobilityOption::HomeNetworkPrefix(p) => Some(*p),
                    _ => None,
                });
                prefixes.push(hnp.expect("an accepted PBA names the prefix"));
            }
        }
        while lma.poll_intent().is_some() {}
        while lma.poll_event().is_some() {}
    }
    (lma, prefixes)
}

fn lma_pbu(c: &mut Criterion) {
    let registrations: Vec<Received> = (0..MNS).map(registration).collect();
    let wire: Vec<(Ipv6Addr, Vec<u8>)> =
        registrations.iter().map(|r| (r.src, r.message.to_vec(&r.src, &LMAA).expect("emit"))).collect();
    let parse = ParseConfig::default();

    let mut group = c.benchmark_group("lma_pbu");
    group.throughput(Throughput::Elements(1));

    // Baseline: the codec alone on the same PBUs, and a PBA of the same shape as the engine's.
    let pba = Message::BindingAck(BindingAck {
        status: BaStatus::Accepted,
        flags: BaFlags::P,
        sequence: 1,
        lifetime: 900,
        options: {
            let Message::BindingUpdate(bu) = pbu(0, Prefix::ALL_ZERO, Hi::NewInterface, Timestamp::from_unix(NOW), 1)
            else {
                unreachable!()
            };
            let mut options = bu.options;
            options[1] = MobilityOption::HomeNetworkPrefix(Prefix::new("2001:db8:0:1::".parse().unwrap(), 64));
            options
        },
    });
    let mut out = vec![0u8; 512];
    let mut k = 0usize;
    group.bench_function("baseline: codec only (parse+validate PBU, emit PBA)", |b| {
        b.iter(|| {
            let (src, bytes) = &wire[k % MNS];
            k += 1;
            let m = Message::parse_checked(black_box(bytes), src, &LMAA, &parse).expect("parse");
            black_box(m);
            black_box(pba.emit_with_checksum(&mut out, &LMAA, src).expect("emit"))
        })
    });

    // Initial registrations of distinct MNs: a fresh LMA every MNS registrations (built and
    // dropped outside the timing), messages cloned outside the timing. Once as configured, once
    // without the flow engine (`flow = None`: base RFC 5213 and MuHo only), so the cost of
    // keeping every MN's flow-steering view shows.
    let mut without_flows = config();
    without_flows.flow = None;
    for (name, config) in [
        ("engine: initial registration (PBU -> PBA, cache insert)", config()),
        ("engine, flow steering off: initial registration", without_flows),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let n = left.min(MNS);
                    let mut lma = Lma::new(config.clone());
                    let batch: Vec<Received> = registrations[..n].to_vec();
                    let start = Instant::now();
                    let mut acks = 0;
                    for r in batch {
                        acks += feed(&mut lma, r);
                    }
                    total += start.elapsed();
                    assert_eq!(acks, n);
                    left -= n;
                }
                total
            })
        });
    }

    // Refreshes: MNS registered MNs each refresh in turn (HNP = their prefix, HI 5, a newer
    // timestamp each round, within the validity window).
    let (mut lma, prefixes) = registered(MNS);
    let mut round = 0u64;
    group.bench_function("engine: refresh (PBU -> PBA, cache update)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(MNS);
                round += 1;
                let ts = Timestamp(Timestamp::from_unix(NOW).0 + round);
                let batch: Vec<Received> = (0..n)
                    .map(|i| Received {
                        src: mag(i),
                        dst: LMAA,
                        message: pbu(i, prefixes[i], Hi::NotChanged, ts, (round % 65_536) as u16),
                    })
                    .collect();
                let start = Instant::now();
                let mut acks = 0;
                for r in batch {
                    acks += feed(&mut lma, r);
                }
                total += start.elapsed();
                assert_eq!(acks, n);
                left -= n;
            }
            total
        })
    });

    // From octets to octets: parse + validate, engine, emit the PBA with its checksum.
    group.bench_function("wire + engine: initial registration (PBU octets -> PBA octets)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            let mut out = vec![0u8; 512];
            while left > 0 {
                let n = left.min(MNS);
                let mut lma = Lma::new(config());
                let start = Instant::now();
                let mut acks = 0;
                for (src, bytes) in &wire[..n] {
                    let message = Message::parse_checked(bytes, src, &LMAA, &parse).expect("parse");
                    lma.handle_message(NOW, Received { src: *src, dst: LMAA, message });
                    while let Some(t) = lma.poll_transmit() {
                        if let Transmit::Mobility { src, dst, message } = t {
                            acks += 1;
                            black_box(message.emit_with_checksum(&mut out, &src, &dst).expect("emit"));
                        }
                    }
                    while let Some(i) = lma.poll_intent() {
                        black_box(i);
                    }
                    while let Some(e) = lma.poll_event() {
                        black_box(e);
                    }
                }
                total += start.elapsed();
                assert_eq!(acks, n);
                left -= n;
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, lma_pbu);
criterion_main!(benches);
