//! The simulation as a capture file: every Mobility Header message and Router
//! Solicitation/Advertisement as an Ethernet/IPv6 frame, built with the `pmip6` capture
//! builders, readable by Wireshark or `pmip6 decode`.

use core::net::Ipv6Addr;

use pmip6::capture::{EthernetAddrs, MH_HOP_LIMIT, ND_HOP_LIMIT, PcapFileWriter, ethernet_ipv6, linktype};
use pmip6_engine::Now;
use pmip6_wire::checksum::{IPPROTO_ICMPV6, IPPROTO_MH};

use crate::network::{Content, Node, PacketRecord};
use crate::{Domain, MagId};

/// Where the capture is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapturePoint {
    /// At each sender, when sent: every packet once, those the network then dropped included.
    Sender,
    /// At each receiver, when delivered: duplicates twice, dropped packets not at all.
    Receiver,
}

impl Domain {
    /// The packets so far as a pcap file (Ethernet link type) seen from `point`.
    pub fn pcap(&self, point: CapturePoint) -> anyhow::Result<Vec<u8>> {
        let mut frames: Vec<(Now, usize)> = Vec::new();
        for p in self.packets() {
            match point {
                CapturePoint::Sender => frames.push((p.sent_at, p.id)),
                CapturePoint::Receiver => frames.extend(p.deliveries.iter().map(|t| (*t, p.id))),
            }
        }
        frames.sort();
        let mut writer = PcapFileWriter::new(Vec::new(), linktype::ETHERNET)?;
        for (time, id) in frames {
            let frame = self.frame(&self.packets()[id])?;
            writer.write(time, &frame)?;
        }
        Ok(writer.into_inner())
    }

    fn frame(&self, p: &PacketRecord) -> anyhow::Result<Vec<u8>> {
        let (hop_limit, next_header) = match p.content {
            Content::Mobility(_) => (MH_HOP_LIMIT, IPPROTO_MH),
            Content::Nd(_) => (ND_HOP_LIMIT, IPPROTO_ICMPV6),
        };
        let src = self.node_mac(p.from, p);
        let dst = match (p.to, p.dst.is_multicast()) {
            (_, true) => multicast_mac(p.dst),
            (Some(to), false) => self.node_mac(to, p),
            (None, false) => [0x02, 0, 0, 0, 0, 0],
        };
        ethernet_ipv6(EthernetAddrs { src, dst }, p.src, p.dst, hop_limit, next_header, &p.bytes)
    }

    /// The MAC a node uses for a packet: a MAG's access interface MAC for RAs, its core MAC
    /// for Mobility Header messages.
    fn node_mac(&self, node: Node, p: &PacketRecord) -> [u8; 6] {
        match node {
            Node::Lma => [0x02, 0xff, 0, 0, 0, 1],
            Node::Mag(m) => match p.content {
                Content::Nd(_) => self.access_mac(m, p).unwrap_or([0x02, 0xff, 0, 1, 0, m.0 as u8]),
                Content::Mobility(_) => [0x02, 0xff, 0, 1, 0, m.0 as u8],
            },
            Node::MobileNode { mn, interface } => self.mobile_node(mn).interfaces[interface].mac,
        }
    }

    /// The MAC of the access interface an RA or RS travelled on.
    fn access_mac(&self, mag: MagId, p: &PacketRecord) -> Option<[u8; 6]> {
        let point = p.access?;
        self.mag_config(mag).interfaces.iter().find(|i| i.id == point.interface).and_then(|i| i.mac)
    }
}

/// RFC 2464 §7: `33:33` and the last four octets of the IPv6 multicast address.
fn multicast_mac(addr: Ipv6Addr) -> [u8; 6] {
    let o = addr.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}
