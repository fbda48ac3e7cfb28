//! The simulator's captures, checked by an independent decoder: Wireshark's (tshark) finds no
//! malformed frame and no expert warning, and reads the same Mobility Header type and ICMPv6
//! type in every frame, in the order the simulator recorded them; the `pmip6` capture reader
//! finds the same octets.
//!
//! Needs the Debian package tshark (CI installs it): without it the test fails, never skips.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use pmip6::capture::{Capture, Extracted, extract};
use pmip6_engine::InterfaceId;
use pmip6_engine::lma::NotifyMode;
use pmip6_sim::{AttachmentPoint, CapturePoint, Content, Domain, MagId, MnId, PacketRecord};
use pmip6_wire::AccessTechnologyType as Att;
use pmip6_wire::nd::NdMessage;

/// A lossy, duplicating, reordering run of the draft's use case, both notification modes.
fn run(notify: NotifyMode) -> Domain {
    let p = |m, i| AttachmentPoint { mag: MagId(m), interface: InterfaceId(i) };
    let mut d = Domain::builder(7)
        .lma_config(move |c| c.notify = notify)
        .mag(&[(InterfaceId(1), Att::Ieee80211)])
        .mag(&[(InterfaceId(1), Att::Utran)])
        .mobile_node("mn@example.net", true, &[p(0, 1), p(1, 1)])
        .build();
    d.set_loss(0.2);
    d.set_duplication(0.2);
    d.set_reordering(0.3, Duration::from_millis(20));
    d.attach(MnId(0), 0);
    d.run_for(Duration::from_secs(5));
    d.attach(MnId(0), 1);
    d.run_for(Duration::from_secs(100));
    d.detach(MnId(0), 0);
    d.run_for(Duration::from_secs(30));
    d
}

/// What a frame carries: ("mh", MH type) or ("icmp", ICMPv6 type).
fn kind(p: &PacketRecord) -> (&'static str, u8) {
    match &p.content {
        Content::Mobility(m) => ("mh", u8::from(m.mh_type())),
        Content::Nd(NdMessage::RouterSolicitation(_)) => ("icmp", 133),
        Content::Nd(NdMessage::RouterAdvertisement(_)) => ("icmp", 134),
    }
}

struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn tshark(args: &[&str]) -> String {
    let output = Command::new("tshark")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run tshark ({e}); this test needs it: apt-get install -y tshark"));
    assert!(output.status.success(), "tshark {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8")
}

fn check(d: &Domain, point: CapturePoint, name: &str) {
    let bytes = d.pcap(point).expect("capture");
    // The frames in capture order, as the simulator recorded them.
    let mut expected: Vec<(Duration, usize)> = Vec::new();
    for p in d.packets() {
        match point {
            CapturePoint::Sender => expected.push((p.sent_at, p.id)),
            CapturePoint::Receiver => expected.extend(p.deliveries.iter().map(|t| (*t, p.id))),
        }
    }
    expected.sort();
    assert!(expected.len() > 20, "{name}: a run with some traffic ({} frames)", expected.len());

    // Our own reader: the same octets in the same order.
    let capture = Capture::from_bytes(bytes.clone()).expect("pcap");
    let mut n = 0;
    for (frame, (_, id)) in capture.frames().zip(&expected) {
        let frame = frame.expect("frame");
        let Extracted::Packet(packet) = extract(&frame) else { panic!("{name}: frame {n}: no packet") };
        assert_eq!(packet.payload, &d.packets()[*id].bytes[..], "{name}: frame {n}: octets");
        n += 1;
    }
    assert_eq!(n, expected.len(), "{name}: frame count");

    // Wireshark's dissector.
    let file = TempFile(std::env::temp_dir().join(format!("pmip6-sim-{}-{name}.pcap", std::process::id())));
    std::fs::write(&file.0, &bytes).expect("write capture");
    let path = file.0.to_str().expect("UTF-8 path");
    let bad = tshark(&["-n", "-r", path, "-Y", "_ws.malformed || _ws.expert.severity >= 6291456"]);
    assert!(bad.trim().is_empty(), "{name}: tshark finds malformed frames or expert warnings:\n{bad}");
    let fields = tshark(&["-n", "-r", path, "-T", "fields", "-e", "mip6.mhtype", "-e", "icmpv6.type"]);
    let seen: Vec<&str> = fields.lines().collect();
    assert_eq!(seen.len(), expected.len(), "{name}: tshark frame count");
    for (i, (line, (_, id))) in seen.iter().zip(&expected).enumerate() {
        let (what, value) = kind(&d.packets()[*id]);
        let want = match what {
            "mh" => format!("{value}\t"),
            _ => format!("\t{value}"),
        };
        assert_eq!(*line, want, "{name}: frame {}: tshark's MH type / ICMPv6 type", i + 1);
    }
}

#[test]
fn captures_of_a_lossy_use_case_decode_in_wireshark() {
    for (notify, name) in [(NotifyMode::UpdateNotification, "upn"), (NotifyMode::Revocation, "bri")] {
        let d = run(notify);
        assert!(d.packets().iter().any(|p| p.dropped.is_some()), "{name}: something was lost");
        assert!(d.packets().iter().any(|p| p.deliveries.len() == 2), "{name}: something was duplicated");
        check(&d, CapturePoint::Sender, &format!("{name}-sender"));
        check(&d, CapturePoint::Receiver, &format!("{name}-receiver"));
    }
}
