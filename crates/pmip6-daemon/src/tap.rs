//! The optional pcap tap of signalling (`pmip6 lma|mag --pcap FILE`).
//!
//! Every Mobility Header message the daemon sends and receives — malformed ones included, they
//! are what an operator wants to see — and, at a MAG, every Router Solicitation received and
//! Router Advertisement sent on an access link, as a pcap file of link type `LINKTYPE_IPV6`
//! (229): each record is an IPv6 header (RFC 8200 §3) followed by the message, with the real
//! source and destination addresses, next header 135 (Mobility Header) or 58 (ICMPv6), the
//! payload length, and the upper-layer checksum over the pseudo-header (RFC 8200 §8.1).
//!
//! What we send leaves with its checksum filled in by the kernel, and what we receive had its
//! checksum verified by the kernel; neither is in the octets the driver holds in a form it can
//! trust for the record (ours are zero), so the tap computes the checksum of every record for
//! its addresses. Timestamps come from the wall clock when the record is written.
//!
//! Each record is written to the file at once (one `write` per record), so a reader sees it
//! within the second and nothing waits in a buffer at shutdown or on a crash.

use std::fs::File;
use std::io::{self, Write};
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};
use pmip6_wire::Message;
use pmip6_wire::checksum::{IPPROTO_ICMPV6, IPPROTO_MH, pseudo_header_checksum};
use pmip6_wire::nd::{NdMessage, RouterAdvertisement};

/// `LINKTYPE_IPV6`: each record is a raw IPv6 packet.
pub const LINKTYPE_IPV6: u32 = 229;
/// The largest record (the pcap snapshot length written in the file header).
pub const SNAPLEN: u32 = 65535;
/// The hop limit recorded for a Mobility Header message whose hop limit is not known (what we
/// send: the kernel's default for unicast, 64).
pub const MH_HOP_LIMIT: u8 = 64;
/// The hop limit of every Neighbor Discovery message (RFC 4861 §6.1.1).
pub const ND_HOP_LIMIT: u8 = 255;
/// The length of the fixed IPv6 header.
const IPV6_HEADER_LEN: usize = 40;

/// An upper-layer protocol as recorded: its next header value, where its checksum sits and the
/// hop limit its messages usually carry.
#[derive(Debug, Clone, Copy)]
struct Upper {
    next_header: u8,
    checksum_offset: usize,
    hop_limit: u8,
}

/// The Mobility Header: checksum at offset 4 (RFC 6275 §6.1.1).
const MH: Upper = Upper { next_header: IPPROTO_MH, checksum_offset: 4, hop_limit: MH_HOP_LIMIT };
/// ICMPv6: checksum at offset 2 (RFC 4443 §2.1).
const ICMPV6: Upper = Upper { next_header: IPPROTO_ICMPV6, checksum_offset: 2, hop_limit: ND_HOP_LIMIT };

/// Which way a recorded message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received, with the hop limit the kernel reported (if it did).
    Received {
        /// The hop limit it arrived with; the record shows the protocol's usual one without it.
        hop_limit: Option<u8>,
    },
    /// Sent by us.
    Sent,
}

/// How many records the tap wrote, each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapCounts {
    /// Records of received messages.
    pub received: u64,
    /// Records of sent messages.
    pub sent: u64,
}

/// The octets `PcapWriter` produces, taken out after each record and written to the file.
#[derive(Debug, Clone, Default)]
struct Pending(Arc<Mutex<Vec<u8>>>);

impl Pending {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Write for Pending {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A pcap file of signalling being written ([module docs](self)).
#[derive(Debug)]
pub struct Tap {
    writer: PcapWriter<Pending>,
    pending: Pending,
    file: File,
    path: PathBuf,
    counts: TapCounts,
}

impl Tap {
    /// Creates (or truncates) the file at `path` and writes the pcap header (link type
    /// [`LINKTYPE_IPV6`], microsecond timestamps, little endian).
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = File::create(path)?;
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: SNAPLEN,
            datalink: DataLink::from(LINKTYPE_IPV6),
            ts_resolution: TsResolution::MicroSecond,
            endianness: Endianness::Little,
        };
        let pending = Pending::default();
        let writer = PcapWriter::with_header(pending.clone(), header).map_err(io::Error::other)?;
        let mut tap = Self { writer, pending, file, path: path.to_owned(), counts: TapCounts::default() };
        tap.write_pending()?;
        Ok(tap)
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The records written so far.
    pub fn counts(&self) -> TapCounts {
        self.counts
    }

    /// Records the Mobility Header `bytes` (well-formed or not) between `src` and `dst`.
    pub fn record_mh(&mut self, src: Ipv6Addr, dst: Ipv6Addr, bytes: &[u8], direction: Direction) -> io::Result<()> {
        self.record(MH, src, dst, bytes, direction)
    }

    /// Records the ICMPv6 (Neighbor Discovery) `bytes` between `src` and `dst`.
    pub fn record_nd(&mut self, src: Ipv6Addr, dst: Ipv6Addr, bytes: &[u8], direction: Direction) -> io::Result<()> {
        self.record(ICMPV6, src, dst, bytes, direction)
    }

    /// Records `message` as we send it from `src` to `dst`.
    pub fn record_sent_message(&mut self, src: Ipv6Addr, dst: Ipv6Addr, message: &Message) -> io::Result<()> {
        let bytes =
            message.to_vec(&src, &dst).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        self.record_mh(src, dst, &bytes, Direction::Sent)
    }

    /// Records the Router Advertisement `ra` as we send it from `src` (our link-local address)
    /// to `dst`.
    pub fn record_sent_ra(&mut self, src: Ipv6Addr, dst: Ipv6Addr, ra: &RouterAdvertisement) -> io::Result<()> {
        let message = NdMessage::RouterAdvertisement(ra.clone());
        let mut buf = vec![0; message.buffer_len()];
        let len = message
            .emit(&mut buf, &src, &dst)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        buf.truncate(len);
        self.record_nd(src, dst, &buf, Direction::Sent)
    }

    /// Writes whatever is pending and flushes the file (each record is written at once; this
    /// is for shutdown).
    pub fn flush(&mut self) -> io::Result<()> {
        self.write_pending()?;
        self.file.flush()
    }

    fn record(
        &mut self,
        upper: Upper,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        bytes: &[u8],
        direction: Direction,
    ) -> io::Result<()> {
        let hop_limit = match direction {
            Direction::Received { hop_limit } => hop_limit.unwrap_or(upper.hop_limit),
            Direction::Sent => upper.hop_limit,
        };
        let packet = ipv6_packet(src, dst, upper.next_header, hop_limit, upper.checksum_offset, bytes);
        let orig_len = u32::try_from(packet.len()).unwrap_or(u32::MAX);
        // A record longer than the snapshot length is cut (never for signalling: a Mobility
        // Header is at most 2048 octets and we read at most 4096).
        let captured = packet.get(..SNAPLEN as usize).unwrap_or(&packet);
        let time = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.writer.write_packet(&PcapPacket::new(time, orig_len, captured)).map_err(io::Error::other)?;
        self.write_pending()?;
        match direction {
            Direction::Received { .. } => self.counts.received += 1,
            Direction::Sent => self.counts.sent += 1,
        }
        Ok(())
    }

    fn write_pending(&mut self) -> io::Result<()> {
        let octets = self.pending.take();
        if octets.is_empty() { Ok(()) } else { self.file.write_all(&octets) }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// An IPv6 header (version 6, traffic class and flow label zero) followed by `payload`, whose
/// checksum at `checksum_offset` is computed for `src`, `dst` and `next_header` (a payload too
/// short to hold it is left as it is).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version| Traffic Class |           Flow Label                  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |         Payload Length        |  Next Header  |   Hop Limit   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                 Source Address (128 bits)                     |
/// |              Destination Address (128 bits)                   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
pub fn ipv6_packet(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    hop_limit: u8,
    checksum_offset: usize,
    payload: &[u8],
) -> Vec<u8> {
    let mut packet = Vec::with_capacity(IPV6_HEADER_LEN + payload.len());
    packet.extend_from_slice(&[0x60, 0, 0, 0]);
    packet.extend_from_slice(&u16::try_from(payload.len()).unwrap_or(u16::MAX).to_be_bytes());
    packet.push(next_header);
    packet.push(hop_limit);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    let start = packet.len();
    packet.extend_from_slice(payload);
    let field = start + checksum_offset..start + checksum_offset + 2;
    if let Some(checksum) = packet.get_mut(field.clone()) {
        checksum.fill(0);
        let sum = pseudo_header_checksum(&src, &dst, next_header, packet.get(start..).unwrap_or_default());
        if let Some(checksum) = packet.get_mut(field) {
            checksum.copy_from_slice(&sum.to_be_bytes());
        }
    }
    packet
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcap::PcapReader;
    use pmip6_engine::lma::{Lma, LmaConfig};
    use pmip6_engine::mag::{AccessInterface, Mag, MagConfig, MobileNodeEntry};
    use pmip6_engine::{InterfaceId, Received, Transmit};
    use pmip6_wire::{AccessTechnologyType, MnIdentifier, ParseConfig, Prefix};
    use std::time::Duration;

    const LMAA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
    const PROXY_COA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2);
    const LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

    fn mobility(transmit: Transmit) -> Option<Message> {
        match transmit {
            Transmit::Mobility { message, .. } => Some(message),
            Transmit::RouterAdvertisement { .. } => None,
        }
    }

    /// The PBU a MAG sends when mn1 attaches (as on the wire, zero checksum: the kernel fills it
    /// in) and the PBA an LMA answers it with.
    fn pbu_and_pba() -> (Vec<u8>, Message) {
        let now = Duration::from_secs(1_800_000_000);
        let mut config = MagConfig::new(PROXY_COA, LMAA);
        config.interfaces.push(AccessInterface::new(InterfaceId(2), AccessTechnologyType::Ieee8023, LINK_LOCAL));
        config.mobile_nodes.push(MobileNodeEntry {
            mn_id: MnIdentifier::nai("mn1@example.net"),
            macs: vec![[2, 0, 0, 0, 0, 1]],
            multihoming: false,
            ipv4: false,
        });
        let mut mag = Mag::new(config);
        mag.handle_attach(now, InterfaceId(2), [2, 0, 0, 0, 0, 1]);
        let pbu = std::iter::from_fn(|| mag.poll_transmit()).find_map(mobility).expect("a PBU on attach");
        let mut config = LmaConfig::new(LMAA);
        config.prefix_pools.push(Prefix::new("2001:db8:100::".parse().expect("prefix"), 40));
        let mut lma = Lma::new(config);
        lma.handle_message(now, Received { src: PROXY_COA, dst: LMAA, message: pbu.clone() });
        let pba = std::iter::from_fn(|| lma.poll_transmit()).find_map(mobility).expect("a PBA");
        assert!(matches!(pba, Message::BindingAck(_)), "{pba:?}");
        let mut bytes = vec![0; pbu.buffer_len()];
        let len = pbu.emit(&mut bytes).expect("the PBU emits");
        bytes.truncate(len);
        (bytes, pba)
    }

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("pmip6-tap-{}-{name}.pcap", std::process::id()))
    }

    /// (captured octets, original length) of every record.
    fn read_back(path: &Path) -> (PcapHeader, Vec<(Vec<u8>, u32, Duration)>) {
        let file = File::open(path).expect("the tap file");
        let mut reader = PcapReader::new(file).expect("a pcap header");
        let header = reader.header();
        let mut records = Vec::new();
        while let Some(packet) = reader.next_packet() {
            let packet = packet.expect("a whole record");
            records.push((packet.data.to_vec(), packet.orig_len, packet.timestamp));
        }
        (header, records)
    }

    /// Checks the IPv6 header of `packet` and that its upper-layer checksum verifies; returns
    /// the payload.
    fn check_ipv6(packet: &[u8], src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, hop_limit: u8) -> Vec<u8> {
        assert_eq!(packet[0] >> 4, 6, "version");
        let payload = &packet[IPV6_HEADER_LEN..];
        assert_eq!(usize::from(u16::from_be_bytes([packet[4], packet[5]])), payload.len(), "payload length");
        assert_eq!(packet[6], next_header, "next header");
        assert_eq!(packet[7], hop_limit, "hop limit");
        assert_eq!(Ipv6Addr::from(<[u8; 16]>::try_from(&packet[8..24]).expect("16 octets")), src);
        assert_eq!(Ipv6Addr::from(<[u8; 16]>::try_from(&packet[24..40]).expect("16 octets")), dst);
        // Recomputed over the pseudo-header with the checksum in place: zero when it is right.
        assert_eq!(pseudo_header_checksum(&src, &dst, next_header, payload), 0, "checksum");
        payload.to_vec()
    }

    #[test]
    fn a_pbu_and_its_pba_read_back_as_raw_ipv6_with_valid_checksums() {
        let (pbu, pba) = pbu_and_pba();
        assert_eq!(&pbu[4..6], &[0, 0], "the PBU as the driver holds it has no checksum yet");
        let path = temp_path("pbu-pba");
        let before = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970");
        let mut tap = Tap::create(&path).expect("the tap file is created");
        tap.record_mh(PROXY_COA, LMAA, &pbu, Direction::Received { hop_limit: Some(63) }).expect("recorded");
        tap.record_sent_message(LMAA, PROXY_COA, &pba).expect("recorded");
        // A malformed datagram is recorded as it came (its checksum made right for the record).
        tap.record_mh(PROXY_COA, LMAA, &[59, 3, 5, 0, 0, 0, 0, 1], Direction::Received { hop_limit: None })
            .expect("recorded");
        // And one too short to hold a checksum, as it is.
        tap.record_mh(PROXY_COA, LMAA, &[59, 0, 5], Direction::Received { hop_limit: None }).expect("recorded");
        let ra = RouterAdvertisement::default();
        tap.record_sent_ra(LINK_LOCAL, ALL_NODES, &ra).expect("recorded");
        assert_eq!(tap.counts(), TapCounts { received: 3, sent: 2 });
        drop(tap);
        let after = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970");

        let (header, records) = read_back(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(header.datalink, DataLink::IPV6);
        assert_eq!(u32::from(header.datalink), 229);
        assert_eq!(records.len(), 5);
        for (data, orig_len, time) in &records {
            assert_eq!(*orig_len as usize, data.len());
            // Microsecond resolution: the record may read up to 1 µs before `before`.
            assert!(*time + Duration::from_micros(1) >= before && *time <= after, "{time:?}");
        }

        let payload = check_ipv6(&records[0].0, PROXY_COA, LMAA, IPPROTO_MH, 63);
        let parsed = Message::parse_checked(&payload, &PROXY_COA, &LMAA, &ParseConfig::default());
        assert!(matches!(parsed, Ok(Message::BindingUpdate(_))), "{parsed:?}");
        assert_eq!(payload[..4], pbu[..4]);
        assert_eq!(payload[6..], pbu[6..]);

        let payload = check_ipv6(&records[1].0, LMAA, PROXY_COA, IPPROTO_MH, MH_HOP_LIMIT);
        let parsed = Message::parse_checked(&payload, &LMAA, &PROXY_COA, &ParseConfig::default());
        assert_eq!(parsed.ok(), Some(pba));

        let payload = check_ipv6(&records[2].0, PROXY_COA, LMAA, IPPROTO_MH, MH_HOP_LIMIT);
        assert_eq!(payload.len(), 8);
        let data = &records[3].0;
        assert_eq!(&data[IPV6_HEADER_LEN..], &[59, 0, 5]);
        assert_eq!(u16::from_be_bytes([data[4], data[5]]), 3);

        let payload = check_ipv6(&records[4].0, LINK_LOCAL, ALL_NODES, IPPROTO_ICMPV6, ND_HOP_LIMIT);
        let parsed = NdMessage::parse_checked(&payload, &LINK_LOCAL, &ALL_NODES);
        assert_eq!(parsed.ok(), Some(NdMessage::RouterAdvertisement(ra)));
    }

    #[test]
    fn each_record_is_in_the_file_before_the_tap_is_dropped() {
        let (pbu, _) = pbu_and_pba();
        let path = temp_path("per-record");
        let mut tap = Tap::create(&path).expect("the tap file is created");
        tap.record_mh(PROXY_COA, LMAA, &pbu, Direction::Sent).expect("recorded");
        let (_, records) = read_back(&path);
        assert_eq!(records.len(), 1);
        drop(tap);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_tap_in_a_missing_directory_is_an_error() {
        let path = temp_path("missing").join("nope").join("tap.pcap");
        assert!(Tap::create(&path).is_err());
    }
}
