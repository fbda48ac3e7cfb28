//! Codec throughput: parse and validate a full Proxy Binding Update (checksum verified, every
//! option interpreted), and emit a full Proxy Binding Acknowledgement (padding and checksum
//! included). Baseline in the same run: copying the same octets into a fresh vector, the least
//! any owned decode must do.
//!
//! Run: `cargo bench -p pmip6-wire --bench codec`

use std::hint::black_box;
use std::net::Ipv6Addr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pmip6_wire::option::OptionIter;
use pmip6_wire::{
    AccessTechnologyType, BaFlags, BaStatus, BindingAck, BindingUpdate, BuFlags, HandoffIndicator, Message,
    MnIdentifier, MobilityOption, ParseConfig, Prefix, Timestamp,
};

fn options(prefix: Prefix, lla: Ipv6Addr) -> Vec<MobilityOption> {
    vec![
        MobilityOption::MnIdentifier(MnIdentifier::nai("mn1@example.net")),
        MobilityOption::HomeNetworkPrefix(prefix),
        MobilityOption::HandoffIndicator(HandoffIndicator::NewInterface),
        MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee80211),
        MobilityOption::MnLinkLayerIdentifier(vec![2, 0, 0, 0, 0, 1]),
        MobilityOption::LinkLocalAddress(lla),
        MobilityOption::Timestamp(Timestamp::new(1_700_000_000, 0x8000)),
        MobilityOption::MuHo { option_type: 18, prefix: Prefix::ALL_ZERO },
    ]
}

fn codec(c: &mut Criterion) {
    let mag: Ipv6Addr = "2001:db8:aaaa::1".parse().unwrap();
    let lma: Ipv6Addr = "2001:db8:ffff::1".parse().unwrap();
    let config = ParseConfig::default();
    let pbu = Message::BindingUpdate(BindingUpdate {
        sequence: 0x1234,
        flags: BuFlags::A | BuFlags::H | BuFlags::L | BuFlags::P,
        lifetime: 900,
        options: options(Prefix::ALL_ZERO, Ipv6Addr::UNSPECIFIED),
    });
    let pbu_bytes = pbu.to_vec(&mag, &lma).unwrap();
    let pba = Message::BindingAck(BindingAck {
        status: BaStatus::Accepted,
        flags: BaFlags::P,
        sequence: 0x1234,
        lifetime: 900,
        options: options(Prefix::new("2001:db8:1:1::".parse().unwrap(), 64), "fe80::1".parse().unwrap()),
    });
    let mut out = vec![0u8; pba.buffer_len()];

    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function("baseline: copy PBU octets", |b| b.iter(|| black_box(black_box(&pbu_bytes[..]).to_vec())));
    group.bench_function("walk PBU options (view, no allocation)", |b| {
        b.iter(|| OptionIter::new(black_box(&pbu_bytes), 12).filter(Result::is_ok).count())
    });
    group.bench_function("verify PBU checksum", |b| {
        b.iter(|| pmip6_wire::MhPacket::new_checked(black_box(&pbu_bytes[..])).unwrap().verify_checksum(&mag, &lma))
    });
    group.bench_function("parse PBU (checksum not verified)", |b| {
        b.iter(|| Message::parse(black_box(&pbu_bytes), &config).unwrap())
    });
    group.bench_function("parse+validate PBU", |b| {
        b.iter(|| Message::parse_checked(black_box(&pbu_bytes), &mag, &lma, &config).unwrap())
    });
    group.bench_function("emit PBA", |b| b.iter(|| black_box(&pba).emit_with_checksum(&mut out, &lma, &mag).unwrap()));
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
