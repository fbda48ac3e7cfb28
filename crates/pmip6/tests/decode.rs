//! The capture decoder end to end: the golden captures of an independent encoder
//! (`crates/pmip6-wire/tests/vectors/`), captures built here with broken messages and with every
//! link layer and IPv6 extension header the decoder walks, and the demo's capture. The `pmip6`
//! binary itself is run for the golden captures, the error captures and the demo.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
use pcap_file::{DataLink, Endianness};
use pmip6::capture::{self, Capture, EthernetAddrs, PcapFileWriter, Transport, linktype};
use pmip6::decode::{self, ChecksumCheck, Decoded, Outcome, Record, Summary};
use pmip6::demo;
use pmip6_wire::nd::{DEFAULT_WEAK_HOST_FLAG_BIT, NdMessage, RouterAdvertisement, RouterSolicitation};
use pmip6_wire::selector::{SixTuple, TrafficSelector};
use pmip6_wire::{
    AccessTechnologyType, BuFlags, HandoffIndicator, Heartbeat, HeartbeatFlags, Message, MnIdentifier, MobilityOption,
    ParseConfig, Prefix, Timestamp,
};
use serde_json::Value;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../pmip6-wire/tests/vectors");
const MAG: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xaaaa, 0, 0, 0, 0, 1);
const LMA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
const ETH: EthernetAddrs = EthernetAddrs { src: [2, 0, 0, 0, 0xaa, 1], dst: [2, 0, 0, 0, 0xff, 1] };
const T0: u64 = 1_700_000_000;

// ---------------------------------------------------------------------------------------------
// Helpers.

fn tmp(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

fn pmip6(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pmip6")).args(args).output().expect("run the pmip6 binary")
}

/// Runs `pmip6 decode FILE --json [extra]`, expects success, returns the records and the summary.
fn decode_json(file: &Path, extra: &[&str]) -> (Vec<Value>, Value) {
    let path = file.to_str().expect("UTF-8 path");
    let mut args = vec!["decode", path, "--json"];
    args.extend_from_slice(extra);
    let out = pmip6(&args);
    assert!(out.status.success(), "pmip6 {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let mut lines: Vec<Value> = String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let summary = lines.pop().expect("a summary line");
    assert!(summary.get("summary").is_some(), "last line is the summary: {summary}");
    (lines, summary["summary"].clone())
}

fn counts(summary: &Value) -> [u64; 4] {
    ["packets", "decoded", "errors", "skipped"]
        .map(|k| summary[k].as_u64().unwrap_or_else(|| panic!("{k} in {summary}")))
}

fn nai() -> MobilityOption {
    MobilityOption::MnIdentifier(MnIdentifier::nai("mn1@example.net"))
}

fn pbu() -> Message {
    Message::BindingUpdate(pmip6_wire::BindingUpdate {
        sequence: 0x4242,
        flags: BuFlags::A | BuFlags::P,
        lifetime: 900,
        options: vec![
            nai(),
            MobilityOption::HomeNetworkPrefix(Prefix::ALL_ZERO),
            MobilityOption::HandoffIndicator(HandoffIndicator::NewInterface),
            MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee80211),
            MobilityOption::Timestamp(Timestamp::new(T0, 0)),
        ],
    })
}

fn heartbeat(sequence: u32) -> Message {
    Message::Heartbeat(Heartbeat {
        flags: HeartbeatFlags::R,
        sequence,
        options: vec![MobilityOption::RestartCounter(7)],
    })
}

/// An IPv6 packet: fixed header, `exts` (already chained by the caller), payload.
fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, next_header: u8, exts: &[u8], payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(exts.len() + payload.len()).expect("small packet");
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&[next_header, hop_limit]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(exts);
    p.extend_from_slice(payload);
    p
}

fn mh_packet(src: Ipv6Addr, dst: Ipv6Addr, message: &Message) -> Vec<u8> {
    ipv6(src, dst, 64, 135, &[], &message.to_vec(&src, &dst).expect("emit"))
}

fn ethernet(ethertype: u16, packet: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&ETH.dst);
    f.extend_from_slice(&ETH.src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(packet);
    f
}

fn write_capture(name: &str, link: u32, frames: &[Vec<u8>]) -> PathBuf {
    let path = tmp(name);
    let file = std::fs::File::create(&path).expect("create capture");
    let mut w = PcapFileWriter::new(file, link).expect("pcap header");
    for (i, frame) in frames.iter().enumerate() {
        w.write(Duration::from_secs(T0) + Duration::from_millis(i as u64), frame).expect("write frame");
    }
    path
}

fn decode_lib(path: &Path) -> (Vec<Record>, Summary) {
    decode::decode_all(&Capture::open(path).expect("open capture"), &ParseConfig::default())
}

fn message(record: &Record) -> &Decoded {
    match &record.outcome {
        Outcome::Message(m) => m,
        Outcome::Error(e) => panic!("frame {} did not decode: {e}", record.frame),
    }
}

fn error(record: &Record) -> (&'static str, Option<usize>) {
    match &record.outcome {
        Outcome::Error(e) => (e.kind, e.offset),
        Outcome::Message(m) => panic!("frame {} decoded unexpectedly: {m:?}", record.frame),
    }
}

// ---------------------------------------------------------------------------------------------
// Golden captures through the binary.

#[test]
fn golden_pbu_pba_through_the_cli() {
    let (records, summary) = decode_json(&Path::new(VECTORS).join("pmip_pbu_pba.pcap"), &[]);
    assert_eq!(counts(&summary), [2, 2, 0, 0]);
    let [pbu, pba] = &records[..] else { panic!("two records: {records:?}") };

    assert_eq!(pbu["frame"], 1);
    assert_eq!((pbu["src"].as_str(), pbu["dst"].as_str()), (Some("2001:db8:aaaa::1"), Some("2001:db8:ffff::1")));
    assert_eq!((pbu["transport"].as_str(), pbu["protocol"].as_str()), (Some("ipv6"), Some("mh")));
    assert_eq!(pbu["checksum"], "verified");
    let bu = &pbu["message"]["BindingUpdate"];
    assert_eq!(bu["sequence"], 0x1234);
    assert_eq!(bu["flags"], "A | H | L | P");
    assert_eq!(bu["lifetime"], 900);
    let options = bu["options"].as_array().expect("options");
    assert_eq!(options.len(), 7);
    assert_eq!(options[0]["MnIdentifier"]["identifier"], "mn1@example.net");
    assert_eq!(options[0]["MnIdentifier"]["subtype"], "Nai");
    assert_eq!(options[1]["HomeNetworkPrefix"]["addr"], "::");
    assert_eq!(options[1]["HomeNetworkPrefix"]["len"], 0);
    assert_eq!(options[2]["HandoffIndicator"], "NewInterface");
    assert_eq!(options[3]["AccessTechnologyType"], "Ieee80211");
    assert_eq!(options[4]["MnLinkLayerIdentifier"], "02:00:00:00:00:01");
    assert_eq!(options[5]["LinkLocalAddress"], "::");
    assert_eq!(options[6]["Timestamp"], Timestamp::new(T0, 0x8000).to_string());
    assert!(pbu["text"].as_str().is_some_and(|s| s.starts_with("PBU seq=4660 flags=A|H|L|P lifetime=3600s")));

    let ba = &pba["message"]["BindingAck"];
    assert_eq!(ba["status"], "Accepted");
    assert_eq!((ba["sequence"].as_u64(), ba["lifetime"].as_u64()), (Some(0x1234), Some(900)));
    assert_eq!(ba["options"][1]["HomeNetworkPrefix"]["addr"], "2001:db8:1:1::");
    assert_eq!(ba["options"][1]["HomeNetworkPrefix"]["len"], 64);
    assert_eq!(ba["options"][5]["LinkLocalAddress"], "fe80::1");
    // Capture times come from the file: frame 2 after frame 1.
    assert!(pba["time"].as_f64() > pbu["time"].as_f64());
}

#[test]
fn golden_extra_through_the_cli() {
    let (records, summary) = decode_json(&Path::new(VECTORS).join("pmip_extra.pcap"), &[]);
    assert_eq!(counts(&summary), [6, 6, 0, 0]);
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["message"].as_object().and_then(|m| m.keys().next()).map(String::as_str).unwrap_or("?"))
        .collect();
    assert_eq!(
        kinds,
        ["BindingUpdate", "BindingRevocation", "BindingRevocation", "Heartbeat", "Heartbeat", "BindingUpdate"]
    );

    let bu = &records[0]["message"]["BindingUpdate"];
    assert_eq!((bu["sequence"].as_u64(), bu["flags"].as_str()), (Some(7), Some("A | P")));
    assert_eq!(bu["options"][3]["AccessTechnologyType"], "Ieee8023");
    assert_eq!(bu["options"][6]["MuHo"]["option_type"], 18);
    assert_eq!(bu["options"][6]["MuHo"]["prefix"]["len"], 0);
    assert_eq!(bu["options"][7]["Unknown"]["option_type"], 200);

    let bri = &records[1]["message"]["BindingRevocation"];
    assert_eq!(bri["kind"]["Indication"], "InterMagHandoverSameAccessType");
    assert_eq!((bri["sequence"].as_u64(), bri["flags"].as_str()), (Some(0x42), Some("P")));
    let bra = &records[2]["message"]["BindingRevocation"];
    assert_eq!(bra["kind"]["Acknowledgement"], "Success");
    assert_eq!(bra["sequence"], 0x42);

    let req = &records[3]["message"]["Heartbeat"];
    assert_eq!((req["sequence"].as_u64(), req["flags"].as_str()), (Some(1), Some("")));
    assert_eq!(req["options"].as_array().map(Vec::len), Some(0));
    let rsp = &records[4]["message"]["Heartbeat"];
    assert_eq!((rsp["sequence"].as_u64(), rsp["flags"].as_str()), (Some(1), Some("R")));
    assert_eq!(rsp["options"][0]["RestartCounter"], 3);

    let udp = &records[5];
    assert_eq!(udp["transport"], "ipv4-udp");
    assert_eq!(udp["checksum"], "not verified (UDP transport)");
    assert_eq!((udp["src"].as_str(), udp["dst"].as_str()), (Some("192.0.2.1"), Some("198.51.100.1")));
    let bu = &udp["message"]["BindingUpdate"];
    assert_eq!(bu["sequence"], 9);
    assert_eq!(bu["options"][4]["Timestamp"], Timestamp::new(T0, 0).to_string());
    for r in &records[..5] {
        assert_eq!(r["checksum"], "verified", "{r}");
    }
}

#[test]
fn muho_type_option_switches_which_option_is_muho() {
    let (records, _) = decode_json(&Path::new(VECTORS).join("pmip_extra.pcap"), &["--muho-type", "200"]);
    let options = &records[0]["message"]["BindingUpdate"]["options"];
    assert!(options[6]["Experimental"].is_string(), "{options}");
    assert_eq!(options[7]["MuHo"]["option_type"], 200);
}

#[test]
fn invalid_muho_type_is_refused() {
    let file = Path::new(VECTORS).join("pmip_extra.pcap");
    for bad in ["22", "70", "300", "x"] {
        let out = pmip6(&["decode", file.to_str().expect("UTF-8"), "--muho-type", bad]);
        assert!(!out.status.success(), "--muho-type {bad} accepted");
        assert!(out.stdout.is_empty());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--muho-type"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn golden_text_output() {
    let out = pmip6(&["decode", &format!("{VECTORS}/pmip_extra.pcap")]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7);
    assert!(
        lines[4].starts_with(
            "#5 1795878379.108174 2001:db8:ffff::1 → 2001:db8:aaaa::1 ipv6 HB-response seq=1 flags=R [RC 3]"
        ),
        "{}",
        lines[4]
    );
    assert!(lines[5].contains(" ipv4-udp [checksum not verified: UDP transport] PBU seq=9 "), "{}", lines[5]);
    assert_eq!(lines[6], "summary: 6 packets read, 6 decoded, 0 errors, 0 skipped");
}

// ---------------------------------------------------------------------------------------------
// Broken messages: error records, and decoding goes on.

#[test]
fn broken_messages_are_error_records_and_decoding_goes_on() {
    let good = pbu().to_vec(&MAG, &LMA).expect("emit");
    let mut bad_checksum = good.clone();
    bad_checksum[20] ^= 0x01;
    let mut overrun = heartbeat(3).to_vec(&MAG, &LMA).expect("emit");
    // Heartbeat: 12 fixed octets, PadN (2), Restart Counter at 14 (4n+2); its length now runs
    // past the message.
    overrun[15] = 200;
    let overrun = {
        let mut m = overrun;
        let sum = pmip6_wire::checksum::pseudo_header_checksum(&MAG, &LMA, 135, &{
            let mut z = m.clone();
            z[4..6].fill(0);
            z
        });
        m[4..6].copy_from_slice(&sum.to_be_bytes());
        m
    };
    let ll: Ipv6Addr = "fe80::1".parse().expect("address");
    let mn: Ipv6Addr = "fe80::2".parse().expect("address");
    let mut ra = vec![0; NdMessage::RouterAdvertisement(RouterAdvertisement::default()).buffer_len()];
    NdMessage::RouterAdvertisement(RouterAdvertisement::default()).emit(&mut ra, &ll, &mn).expect("emit RA");
    ra[6] ^= 0xff; // router lifetime changed after the checksum

    let frames = [
        ethernet(0x86dd, &mh_packet(MAG, LMA, &pbu())),
        // The MH cut to 20 octets, in an IPv6 packet whose length agrees.
        ethernet(0x86dd, &ipv6(MAG, LMA, 64, 135, &[], &good[..20])),
        // Five octets: not even the fixed header.
        ethernet(0x86dd, &ipv6(MAG, LMA, 64, 135, &[], &good[..5])),
        ethernet(0x86dd, &ipv6(MAG, LMA, 64, 135, &[], &bad_checksum)),
        ethernet(0x86dd, &ipv6(MAG, LMA, 64, 135, &[], &overrun)),
        ethernet(0x86dd, &ipv6(ll, mn, 255, 58, &[], &ra)),
        // A frame cut by the snap length: the IPv6 payload length promises more.
        ethernet(0x86dd, &mh_packet(LMA, MAG, &heartbeat(4)))[..14 + 40 + 12].to_vec(),
        ethernet(0x86dd, &mh_packet(LMA, MAG, &heartbeat(5))),
    ];
    let path = write_capture("broken.pcap", linktype::ETHERNET, &frames);

    // Through the binary: exit status 0, error kinds and offsets as JSON.
    let (records, summary) = decode_json(&path, &[]);
    assert_eq!(counts(&summary), [8, 2, 6, 0]);
    let errors: Vec<(u64, &str, u64)> = records
        .iter()
        .filter_map(|r| {
            let e = r.get("error")?;
            Some((r["frame"].as_u64()?, e["kind"].as_str()?, e["offset"].as_u64()?))
        })
        .collect();
    assert_eq!(
        errors,
        [
            (2, "header-len-beyond-buffer", 1),
            (3, "truncated", 0),
            (4, "bad-checksum", 4),
            (5, "option-overrun", 14),
            (6, "bad-checksum", 2),
            (7, "header-len-beyond-buffer", 1),
        ]
    );
    assert!(records[1]["text"].as_str().is_some_and(|s| s.starts_with("ERROR header-len-beyond-buffer at offset 1: ")));
    assert_eq!(records[3]["error"]["detail"].as_str().map(|d| d.starts_with("bad checksum: found 0x")), Some(true));
    assert_eq!(records[6]["notes"][0], "frame shorter than the IPv6 payload length");
    assert_eq!(records[5]["protocol"], "nd");
    assert!(records[1].get("checksum").is_none());
    // The frames after the broken ones still decode.
    assert_eq!(records[7]["message"]["Heartbeat"]["sequence"], 5);

    // Through the library: the same, typed.
    let (records, summary) = decode_lib(&path);
    assert_eq!((summary.decoded, summary.errors), (2, 6));
    assert_eq!(message(&records[0]), &Decoded::Mobility(pbu()));
    assert_eq!(error(&records[3]), ("bad-checksum", Some(4)));
    assert_eq!(message(&records[7]), &Decoded::Mobility(heartbeat(5)));
}

#[test]
fn unreadable_files_fail() {
    let missing = tmp("no-such-file.pcap");
    let out = pmip6(&["decode", missing.to_str().expect("UTF-8")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));

    let text = tmp("not-a-capture.txt");
    std::fs::write(&text, "hello, world\n").expect("write");
    let out = pmip6(&["decode", text.to_str().expect("UTF-8")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown magic number"));

    // A capture whose last record is cut off: what was read is printed, then the failure.
    let whole = write_capture(
        "whole.pcap",
        linktype::ETHERNET,
        &[ethernet(0x86dd, &mh_packet(LMA, MAG, &heartbeat(1))), ethernet(0x86dd, &mh_packet(LMA, MAG, &heartbeat(2)))],
    );
    let bytes = std::fs::read(&whole).expect("read");
    let cut = tmp("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).expect("write");
    let out = pmip6(&["decode", cut.to_str().expect("UTF-8")]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("HB-response seq=1 "), "{stdout}");
    assert!(
        stdout.contains("summary: 1 packets read, 1 decoded, 0 errors, 0 skipped; capture unreadable after frame 1"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("damaged"));
}

// ---------------------------------------------------------------------------------------------
// Link layers, extension headers, IPv4/UDP, skipped packets.

#[test]
fn every_link_type_reaches_the_mobility_header() {
    let packet = mh_packet(MAG, LMA, &heartbeat(9));
    let expect_one = |name: &str, link: u32, frame: Vec<u8>| {
        let (records, summary) = decode_lib(&write_capture(name, link, &[frame]));
        assert_eq!((summary.packets, summary.decoded), (1, 1), "{name}: {records:?}");
        assert_eq!(message(&records[0]), &Decoded::Mobility(heartbeat(9)), "{name}");
        assert_eq!(records[0].src, Some(IpAddr::V6(MAG)), "{name}");
    };
    expect_one("eth.pcap", linktype::ETHERNET, ethernet(0x86dd, &packet));
    // 802.1ad outer tag, 802.1Q inner tag.
    let mut tagged = ethernet(0x88a8, &[]);
    tagged.extend_from_slice(&[0x00, 0x64, 0x81, 0x00, 0x00, 0x0a, 0x86, 0xdd]);
    tagged.extend_from_slice(&packet);
    expect_one("qinq.pcap", linktype::ETHERNET, tagged);
    for link in [linktype::RAW, linktype::RAW_12, linktype::RAW_14, linktype::IPV6] {
        expect_one(&format!("raw{link}.pcap"), link, packet.clone());
    }
    let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0xaa, 1, 0, 0, 0x86, 0xdd];
    sll.extend_from_slice(&packet);
    expect_one("sll.pcap", linktype::LINUX_SLL, sll);
    let mut sll2 = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0xaa, 1, 0, 0];
    sll2.extend_from_slice(&packet);
    expect_one("sll2.pcap", linktype::LINUX_SLL2, sll2);
    for family in [[10, 0, 0, 0], [24, 0, 0, 0], [0, 0, 0, 30]] {
        let mut null = family.to_vec();
        null.extend_from_slice(&packet);
        expect_one(&format!("null{}.pcap", family[0] + family[3]), linktype::NULL, null);
    }
    let mut lo = vec![0, 0, 0, 24];
    lo.extend_from_slice(&packet);
    expect_one("loop.pcap", linktype::LOOP, lo);
}

#[test]
fn pcapng_with_two_interfaces_and_resolutions() {
    let path = tmp("two-interfaces.pcapng");
    let file = std::fs::File::create(&path).expect("create");
    let mut w = PcapNgWriter::with_endianness(file, Endianness::Big).expect("section header");
    // Interface 0: Ethernet, default resolution (microseconds). Interface 1: an unknown link
    // type. Interface 2: raw IPv6, nanoseconds.
    for (linktype, options) in [
        (DataLink::ETHERNET, vec![]),
        (DataLink::from(147), vec![]),
        (DataLink::IPV6, vec![InterfaceDescriptionOption::IfTsResol(9)]),
    ] {
        w.write_pcapng_block(InterfaceDescriptionBlock { linktype, snaplen: 0, options }).expect("IDB");
    }
    let packet = mh_packet(LMA, MAG, &heartbeat(1));
    let frames = [
        (0, T0 * 1_000_000 + 250_000, ethernet(0x86dd, &packet)),
        (1, T0 * 1_000_000, vec![0; 20]),
        (2, T0 * 1_000_000_000 + 7, packet.clone()),
    ];
    for (interface_id, units, data) in &frames {
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: *interface_id,
            // pcap-file writes this Duration's nanoseconds as the raw timestamp units.
            timestamp: Duration::from_nanos(*units),
            original_len: data.len() as u32,
            data: Cow::Borrowed(data),
            options: vec![],
        })
        .expect("EPB");
    }
    drop(w);

    let (records, summary) = decode_lib(&path);
    assert_eq!((summary.packets, summary.decoded, summary.errors, summary.skipped), (3, 2, 1, 0));
    assert_eq!(records[0].time, Some(Duration::new(T0, 250_000_000)));
    assert_eq!(error(&records[1]), ("unsupported-link-type", None));
    assert_eq!(records[1].src, None);
    assert_eq!(records[2].time, Some(Duration::new(T0, 7)));
    assert_eq!(message(&records[2]), &Decoded::Mobility(heartbeat(1)));
    assert!(records[2].to_string().starts_with("#3 1700000000.000000007 "), "{}", records[2]);

    let (json, _) = decode_json(&path, &[]);
    assert_eq!(json[1]["error"]["kind"], "unsupported-link-type");
    assert_eq!(json[1]["error"]["offset"], Value::Null);
    assert_eq!(json[0]["time"].as_f64(), Some(T0 as f64 + 0.25));
}

#[test]
fn extension_headers_are_walked() {
    let hb = heartbeat(11);
    let mh = hb.to_vec(&MAG, &LMA).expect("emit");
    // Hop-by-hop (→ 60), destination options (→ 44), fragment offset 0 without M (→ 135).
    let mut exts = vec![60, 0, 1, 4, 0, 0, 0, 0];
    exts.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]);
    exts.extend_from_slice(&[135, 0, 0, 0, 0, 0, 0, 1]);
    let chained = ipv6(MAG, LMA, 64, 0, &exts, &mh);

    // A first fragment with more to come: decoded as far as it goes, with a note.
    let mut first = vec![135, 0, 0, 1, 0, 0, 0, 2];
    let partial = ipv6(MAG, LMA, 64, 44, &first, &mh[..8]);
    // A later fragment: skipped.
    first[2..4].copy_from_slice(&[0, 0x08]);
    let later = ipv6(MAG, LMA, 64, 44, &first, &mh[8..]);

    // A type 2 routing header: the checksum covers the final destination.
    let home: Ipv6Addr = "2001:db8:1:1::5".parse().expect("address");
    let mut routing = vec![135, 2, 2, 1, 0, 0, 0, 0];
    routing.extend_from_slice(&home.octets());
    let routed = ipv6(MAG, LMA, 64, 43, &routing, &hb.to_vec(&MAG, &home).expect("emit"));
    // The same header but the checksum computed for the IPv6 destination: must fail.
    let misrouted = ipv6(MAG, LMA, 64, 43, &routing, &mh);

    // A home address option: the checksum covers the home address as source.
    let mut hao = vec![135, 2, 1, 2, 0, 0, 201, 16];
    hao.extend_from_slice(&home.octets());
    let from_home = ipv6(MAG, LMA, 64, 60, &hao, &hb.to_vec(&home, &LMA).expect("emit"));

    let frames: Vec<Vec<u8>> =
        [chained, partial, later, routed, misrouted, from_home].iter().map(|p| ethernet(0x86dd, p)).collect();
    let (records, summary) = decode_lib(&write_capture("exts.pcap", linktype::ETHERNET, &frames));
    assert_eq!((summary.packets, summary.decoded, summary.errors, summary.skipped), (6, 3, 2, 1));
    assert_eq!(message(&records[0]), &Decoded::Mobility(hb.clone()));
    assert_eq!(error(&records[1]), ("header-len-beyond-buffer", Some(1)));
    assert_eq!(records[1].notes, ["first fragment of a fragmented packet"]);
    // records[2] is frame 4: frame 3 (the later fragment) was skipped.
    assert_eq!(records[2].frame, 4);
    assert_eq!(message(&records[2]), &Decoded::Mobility(hb.clone()));
    assert_eq!(records[2].dst, Some(IpAddr::V6(LMA)));
    assert_eq!(records[2].notes, [format!("checksum pseudo-header {MAG} -> {home}")]);
    assert_eq!(error(&records[3]), ("bad-checksum", Some(4)));
    assert_eq!(message(&records[4]), &Decoded::Mobility(hb));
}

#[test]
fn ipv4_udp_and_skipped_packets() {
    let v4 = |a, b, c, d| Ipv4Addr::new(a, b, c, d);
    let eth = EthernetAddrs { src: ETH.src, dst: ETH.dst };
    let udp_mh = capture::mh_udp_frame(eth, v4(192, 0, 2, 1), v4(198, 51, 100, 1), &pbu()).expect("frame");
    let mut mh = vec![0; pbu().buffer_len()];
    pbu().emit(&mut mh).expect("emit");
    // Port 5436 as the source only still counts (RFC 5844 §7: replies come from it).
    let reply =
        capture::ethernet_ipv4_udp(eth, v4(198, 51, 100, 1), v4(192, 0, 2, 1), 64, 5436, 40000, &mh).expect("frame");
    let other_udp =
        capture::ethernet_ipv4_udp(eth, v4(192, 0, 2, 1), v4(198, 51, 100, 1), 64, 53, 53, &mh).expect("frame");
    let echo = capture::ethernet_ipv6(eth, MAG, LMA, 64, 58, &[128, 0, 0, 0, 0, 1, 0, 1]).expect("frame");
    let arp = ethernet(0x0806, &[0; 28]);
    let runt = vec![0; 10];
    let rs = NdMessage::RouterSolicitation(RouterSolicitation::default());
    let mut rs_bytes = vec![0; rs.buffer_len()];
    let (ll, all_routers): (Ipv6Addr, Ipv6Addr) = ("fe80::2".parse().expect("a"), "ff02::2".parse().expect("a"));
    rs.emit(&mut rs_bytes, &ll, &all_routers).expect("emit");
    // An RS with hop limit 64: decoded, with a note (a router drops it, RFC 4861 §6.1.1).
    let rs_frame = capture::ethernet_ipv6(eth, ll, all_routers, 64, 58, &rs_bytes).expect("frame");

    let frames = [udp_mh, reply, other_udp, echo, arp, runt, rs_frame];
    let (records, summary) = decode_lib(&write_capture("v4.pcap", linktype::ETHERNET, &frames));
    assert_eq!((summary.packets, summary.decoded, summary.errors, summary.skipped), (7, 3, 0, 4));
    for r in &records[..2] {
        assert_eq!(r.transport, Some(Transport::Ipv4Udp));
        assert_eq!(r.checksum, Some(ChecksumCheck::NotVerifiedUdp));
        assert_eq!(message(r), &Decoded::Mobility(pbu()));
    }
    assert_eq!(records[0].src, Some(IpAddr::V4(v4(192, 0, 2, 1))));
    assert_eq!(message(&records[2]), &Decoded::RouterDiscovery(rs));
    assert_eq!(records[2].notes, ["hop limit 64, not 255"]);
}

// ---------------------------------------------------------------------------------------------
// The demo.

#[test]
fn demo_capture_round_trips_through_the_decoder() {
    let path = tmp("demo-lib.pcap");
    let steps = demo::write_capture(&path).expect("write the demo");
    assert_eq!(steps.len(), 11);
    let (records, summary) = decode_lib(&path);
    assert_eq!((summary.packets, summary.decoded, summary.errors, summary.skipped), (11, 11, 0, 0));
    for (record, step) in records.iter().zip(&steps) {
        assert_eq!(message(record), &step.message, "{}", step.label);
        assert_eq!(
            (record.src, record.dst),
            (Some(IpAddr::V6(step.src)), Some(IpAddr::V6(step.dst))),
            "{}",
            step.label
        );
        assert_eq!(record.time, Some(step.time), "{}", step.label);
        assert_eq!(record.checksum, Some(ChecksumCheck::Verified), "{}", step.label);
        assert!(record.notes.is_empty(), "{}: {:?}", step.label, record.notes);
    }

    // The values the draft's Figure 4 is about.
    let options = |i: usize| match message(&records[i]) {
        Decoded::Mobility(m) => m.options().to_vec(),
        other => panic!("{other:?}"),
    };
    let muho = |p| MobilityOption::MuHo { option_type: 18, prefix: p };
    let pref1 = Prefix::new(demo::PREF1, 64);
    let pref2 = Prefix::new(demo::PREF2, 64);
    assert!(options(0).contains(&muho(Prefix::ALL_ZERO)));
    assert!(options(0).contains(&MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee80211)));
    assert!(options(1).contains(&MobilityOption::HomeNetworkPrefix(pref1)));
    assert!(options(1).contains(&muho(Prefix::ALL_ZERO)));
    assert!(options(3).contains(&MobilityOption::AccessTechnologyType(AccessTechnologyType::Utran)));
    assert!(options(4).contains(&MobilityOption::HomeNetworkPrefix(pref2)));
    assert!(options(4).contains(&muho(pref1)));
    assert!(options(5).contains(&muho(pref2)));
    let Decoded::RouterDiscovery(NdMessage::RouterAdvertisement(ra)) = message(&records[2]) else { panic!("RA") };
    assert!(ra.flag_bit(DEFAULT_WEAK_HOST_FLAG_BIT));
    assert_eq!(ra.prefixes().map(|p| p.prefix).collect::<Vec<_>>(), [demo::PREF1]);
    let fi = options(7)
        .into_iter()
        .find_map(|o| match o {
            MobilityOption::FlowIdentification(fi) => Some(fi),
            _ => None,
        })
        .expect("a Flow Identification option");
    let Some(TrafficSelector::Ipv6(selector)) = fi.traffic_selector() else { panic!("{fi:?}") };
    let flow = SixTuple {
        src: demo::CN,
        dst: demo::MN_PREF1_ADDR,
        sport: 5004,
        dport: 40000,
        flow_label: 0x12345,
        next_header: 17,
    };
    assert!(selector.matches(&flow));
    assert!(!selector.matches(&SixTuple { dport: 40001, ..flow }));
    assert_eq!(options(10), [MobilityOption::RestartCounter(demo::RESTART_COUNTER)]);

    // Reproducible: the same octets every time.
    let again = tmp("demo-lib-again.pcap");
    demo::write_capture(&again).expect("write the demo again");
    assert_eq!(std::fs::read(&path).expect("read"), std::fs::read(&again).expect("read"));
}

#[test]
fn demo_command_writes_and_decodes() {
    let path = tmp("demo-cli.pcap");
    let out = pmip6(&["demo", "--pcap", path.to_str().expect("UTF-8"), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout is JSON lines only ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 12);
    assert_eq!(counts(&lines[11]["summary"]), [11, 11, 0, 0]);
    assert_eq!(lines[7]["message"]["UpdateNotification"]["reason"], "FlowMobility");
    assert_eq!(lines[2]["protocol"], "nd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Figure 4"), "{stderr}");
    assert!(stderr.contains("tshark -n -r"), "{stderr}");
    assert!(path.exists());

    let out = pmip6(&["demo", "--pcap", path.to_str().expect("UTF-8")]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("summary: 11 packets read, 11 decoded, 0 errors, 0 skipped"), "{text}");
    assert!(text.contains("#6 1700000005.002000 2001:db8:ffff::1 → 2001:db8:aaaa::1 ipv6 UPN seq=1 reason=UpdateSessionParameters(2) flags=A"), "{text}");
    // Wireshark's view, or how to get it.
    assert!(
        text.contains("Heartbeat") && text.contains("Binding Update") || text.contains("apt-get install -y tshark"),
        "{text}"
    );
}

#[test]
fn damaged_demo_captures_never_panic() {
    let path = tmp("demo-damage.pcap");
    demo::write_capture(&path).expect("write the demo");
    let bytes = std::fs::read(&path).expect("read");
    let consistent = |s: &Summary| s.decoded + s.errors + s.skipped == s.packets;
    // Cut at every length: the frames before the cut decode; a cut inside a record is a capture
    // error, a cut between records is a shorter capture.
    let mut boundaries = vec![24];
    for step in demo::steps() {
        let last = boundaries[boundaries.len() - 1];
        boundaries.push(last + 16 + step.frame().expect("frame").len());
    }
    assert_eq!(boundaries.last(), Some(&bytes.len()));
    for len in 24..bytes.len() {
        let capture = Capture::from_bytes(bytes[..len].to_vec()).expect("the header is intact");
        let (_, summary) = decode::decode_all(&capture, &ParseConfig::default());
        assert!(consistent(&summary), "cut at {len}: {summary:?}");
        let whole_records = boundaries.iter().filter(|&&b| b <= len).count() as u64 - 1;
        assert_eq!(summary.packets, whole_records, "cut at {len}");
        assert_eq!(summary.decoded, whole_records, "cut at {len}");
        assert_eq!(summary.capture_error.is_none(), boundaries.contains(&len), "cut at {len}");
    }
    // Flip every bit of one octet at a time, past the file header.
    for at in 24..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0xff;
        let capture = Capture::from_bytes(damaged).expect("the header is intact");
        let (_, summary) = decode::decode_all(&capture, &ParseConfig::default());
        assert!(consistent(&summary), "flip at {at}: {summary:?}");
    }
}

#[test]
fn frames_cut_by_the_snap_length_are_read() {
    // As `tcpdump -s 80` writes them: snaplen 80, each record 80 octets of a longer frame.
    let frame = ethernet(0x86dd, &mh_packet(MAG, LMA, &pbu()));
    assert!(frame.len() > 80);
    let mut file = Vec::new();
    file.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    file.extend_from_slice(&[2, 0, 4, 0]); // version 2.4
    for word in [0u32, 0, 80, linktype::ETHERNET] {
        file.extend_from_slice(&word.to_le_bytes()); // zone, sigfigs, snaplen, Ethernet
    }
    for word in [T0 as u32, 0, 80, frame.len() as u32] {
        file.extend_from_slice(&word.to_le_bytes());
    }
    file.extend_from_slice(&frame[..80]);
    let (records, summary) = decode::decode_all(&Capture::from_bytes(file).expect("pcap"), &ParseConfig::default());
    assert_eq!((summary.packets, summary.errors), (1, 1));
    assert_eq!(error(&records[0]), ("header-len-beyond-buffer", Some(1)));
    assert_eq!(records[0].notes, ["frame shorter than the IPv6 payload length"]);
    assert_eq!(records[0].time, Some(Duration::from_secs(T0)));
}
