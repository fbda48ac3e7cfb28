//! Golden vectors from an independent encoder (`tests/vectors/build_vectors.py`): each parses to
//! the values it was built from, its checksum verifies, and it re-emits byte for byte.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use pmip6_wire::{
    AccessTechnologyType, BaFlags, BaStatus, BuFlags, HandoffIndicator, HeartbeatFlags, Message, MnIdentifier,
    MobilityOption, ParseConfig, Prefix, RevocationFlags, RevocationKind, RevocationStatus, RevocationTrigger,
    Timestamp,
};

struct Vector {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    bytes: Vec<u8>,
}

/// Reads `hexdump.txt`: a header line `NAME (N octets of MH, IPv6 SRC -> DST):` then hex rows.
fn vectors() -> BTreeMap<String, Vector> {
    let text = include_str!("vectors/hexdump.txt");
    let mut out = BTreeMap::new();
    let mut current: Option<(String, Vector)> = None;
    for line in text.lines() {
        if let Some((name, rest)) = line.split_once(" (") {
            if let Some((n, v)) = current.take() {
                out.insert(n, v);
            }
            let addrs = rest.split_once("IPv6 ").expect("address part").1.trim_end_matches("):");
            let (src, dst) = addrs.split_once(" -> ").expect("src -> dst");
            current = Some((
                name.to_string(),
                Vector { src: src.parse().expect("src"), dst: dst.parse().expect("dst"), bytes: Vec::new() },
            ));
        } else if let Some((_, v)) = current.as_mut() {
            let hex = line.trim().split_once("  ").expect("offset and bytes").1;
            v.bytes.extend(hex.split(' ').map(|h| u8::from_str_radix(h, 16).expect("hex")));
        }
    }
    let (n, v) = current.expect("at least one vector");
    out.insert(n, v);
    out
}

fn parse(name: &str) -> (Message, Vector) {
    let v = vectors().remove(name).unwrap_or_else(|| panic!("vector {name}"));
    let msg = Message::parse_checked(&v.bytes, &v.src, &v.dst, &ParseConfig::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    (msg, v)
}

fn assert_reemits(name: &str) {
    let (msg, v) = parse(name);
    assert_eq!(msg.to_vec(&v.src, &v.dst).expect("emit"), v.bytes, "{name} re-emits byte for byte");
}

fn nai() -> MobilityOption {
    MobilityOption::MnIdentifier(MnIdentifier::nai("mn1@example.net"))
}

const T0: Timestamp = Timestamp::new(1_700_000_000, 0x8000);

#[test]
fn pbu_initial_attach() {
    let (msg, _) = parse("PBU");
    let Message::BindingUpdate(bu) = msg else { panic!("{msg:?}") };
    assert_eq!(bu.sequence, 0x1234);
    assert_eq!(bu.flags, BuFlags::A | BuFlags::H | BuFlags::L | BuFlags::P);
    assert_eq!(bu.lifetime, 900);
    assert_eq!(
        bu.options,
        vec![
            nai(),
            MobilityOption::HomeNetworkPrefix(Prefix::ALL_ZERO),
            MobilityOption::HandoffIndicator(HandoffIndicator::NewInterface),
            MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee80211),
            MobilityOption::MnLinkLayerIdentifier(vec![2, 0, 0, 0, 0, 1]),
            MobilityOption::LinkLocalAddress(Ipv6Addr::UNSPECIFIED),
            MobilityOption::Timestamp(T0),
        ]
    );
    assert_reemits("PBU");
}

#[test]
fn pba_accepts_with_prefix() {
    let (msg, _) = parse("PBA");
    let Message::BindingAck(ba) = msg else { panic!("{msg:?}") };
    assert_eq!(ba.status, BaStatus::Accepted);
    assert_eq!(ba.flags, BaFlags::P);
    assert_eq!((ba.sequence, ba.lifetime), (0x1234, 900));
    assert_eq!(ba.options[1], MobilityOption::HomeNetworkPrefix(Prefix::new("2001:db8:1:1::".parse().unwrap(), 64)));
    assert_eq!(ba.options[5], MobilityOption::LinkLocalAddress("fe80::1".parse().unwrap()));
    assert_eq!(ba.options[6], MobilityOption::Timestamp(T0));
    assert_reemits("PBA");
}

#[test]
fn pbu_with_empty_muho_as_experimental_and_unassigned_type() {
    let (msg, _) = parse("PBU+MuHo");
    let Message::BindingUpdate(bu) = msg else { panic!("{msg:?}") };
    assert_eq!((bu.sequence, bu.flags, bu.lifetime), (7, BuFlags::A | BuFlags::P, 900));
    assert_eq!(bu.options[3], MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee8023));
    assert_eq!(bu.options[5], MobilityOption::Timestamp(Timestamp::new(1_700_000_005, 0)));
    // Default configuration: MuHo is option 18; option 200 is unknown and kept.
    assert_eq!(bu.options[6], MobilityOption::MuHo { option_type: 18, prefix: Prefix::ALL_ZERO });
    assert_eq!(bu.options[7], MobilityOption::Unknown { option_type: 200, data: vec![0; 18] });
    assert_reemits("PBU+MuHo");

    // A domain that carries MuHo as type 200 reads the other one as its MuHo.
    let v = vectors().remove("PBU+MuHo").unwrap();
    let config = ParseConfig::with_muho_option_type(200).unwrap();
    let Message::BindingUpdate(bu) = Message::parse(&v.bytes, &config).unwrap() else { panic!() };
    assert_eq!(bu.options[6], MobilityOption::Experimental(vec![0; 18]));
    assert_eq!(bu.options[7], MobilityOption::MuHo { option_type: 200, prefix: Prefix::ALL_ZERO });
}

#[test]
fn binding_revocation_indication_and_ack() {
    let (msg, _) = parse("BRI");
    let Message::BindingRevocation(bri) = msg else { panic!("{msg:?}") };
    assert_eq!(bri.kind, RevocationKind::Indication(RevocationTrigger::InterMagHandoverSameAccessType));
    assert_eq!((bri.sequence, bri.flags), (0x42, RevocationFlags::P));
    assert_eq!(bri.options, vec![nai()]);
    assert_reemits("BRI");

    let (msg, _) = parse("BRA");
    let Message::BindingRevocation(bra) = msg else { panic!("{msg:?}") };
    assert_eq!(bra.kind, RevocationKind::Acknowledgement(RevocationStatus::Success));
    assert_eq!((bra.sequence, bra.flags), (0x42, RevocationFlags::P));
    assert_reemits("BRA");
}

#[test]
fn heartbeat_request_and_response() {
    let (msg, _) = parse("HB-req");
    let Message::Heartbeat(req) = msg else { panic!("{msg:?}") };
    assert_eq!((req.flags, req.sequence), (HeartbeatFlags::empty(), 1));
    assert!(req.options.is_empty());
    assert_reemits("HB-req");

    let (msg, _) = parse("HB-rsp");
    let Message::Heartbeat(rsp) = msg else { panic!("{msg:?}") };
    assert_eq!((rsp.flags, rsp.sequence), (HeartbeatFlags::R, 1));
    assert_eq!(rsp.options, vec![MobilityOption::RestartCounter(3)]);
    assert_reemits("HB-rsp");
}

#[test]
fn every_vector_was_checked() {
    let names: Vec<String> = vectors().into_keys().collect();
    assert_eq!(names, ["BRA", "BRI", "HB-req", "HB-rsp", "PBA", "PBU", "PBU+MuHo"]);
}

#[test]
fn a_flipped_bit_fails_the_checksum() {
    for (name, v) in vectors() {
        for i in (0..v.bytes.len()).filter(|i| !(4..6).contains(i)) {
            let mut b = v.bytes.clone();
            b[i] ^= 0x10;
            let result = Message::parse_checked(&b, &v.src, &v.dst, &ParseConfig::default());
            assert!(result.is_err(), "{name}: flipping octet {i} went unnoticed");
        }
    }
}
