//! The NFQUEUE side of the `learn` and `nfqueue` steering modes (DESIGN.md, "Data plane on
//! Linux"; draft-bernardos-mif-pmip-02 §5.3: the LMA classifies downlink packets into flows).
//!
//! This module owns one netfilter queue binding: [`Queue::open`] binds queue `num` in the
//! calling thread's network namespace, [`Queue::recv`] hands out the next packet (its octets from
//! the IP header on), and [`Queue::verdict`] accepts it with the mark of its route, so that the
//! first packet of a flow takes the same path as the later ones, which the flow map marks in the
//! kernel. Which packets reach the queue is [`crate::steering`]'s business.
//!
//! Use from tokio: the `nfq` crate (0.2.5) does not expose its socket, so [`Queue::open`] finds
//! it — the queue's peer port id in `/proc/thread-self/net/netfilter/nfnetlink_queue`, that
//! socket's inode in `/proc/thread-self/net/netlink`, the descriptor whose link is
//! `socket:[inode]` — and [`Queue`] implements [`AsRawFd`]. Put the queue in non-blocking mode
//! ([`Queue::set_nonblocking`]) and wrap it in `tokio::io::unix::AsyncFd`: on readiness, call
//! [`Queue::recv`] until it fails with [`std::io::ErrorKind::WouldBlock`]. The descriptor stays
//! owned by the queue (closed when it drops).
//!
//! The queue is opened fail-open: when it is full, the kernel accepts packets unmarked (they
//! follow the base route) rather than dropping them.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// `NETLINK_NETFILTER`, the protocol column of `/proc/net/netlink`.
const NETLINK_NETFILTER: u32 = 12;

/// A packet handed to user space, waiting for its verdict.
pub struct QueuedPacket {
    message: nfq::Message,
}

impl fmt::Debug for QueuedPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueuedPacket")
            .field("id", &self.message.get_packet_id())
            .field("len", &self.message.get_payload().len())
            .field("mark", &self.message.get_nfmark())
            .finish()
    }
}

impl QueuedPacket {
    /// The packet, from its IP header on (at most 65,535 octets are copied).
    pub fn payload(&self) -> &[u8] {
        self.message.get_payload()
    }

    /// Its mark when it was queued.
    pub fn mark(&self) -> u32 {
        self.message.get_nfmark()
    }

    /// The index of the interface it arrived on (0 if unknown).
    pub fn in_interface(&self) -> u32 {
        self.message.get_indev()
    }
}

/// One bound netfilter queue.
pub struct Queue {
    inner: nfq::Queue,
    num: u16,
    fd: RawFd,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue").field("num", &self.num).field("fd", &self.fd).finish()
    }
}

impl Queue {
    /// Binds queue `num` in the calling thread's network namespace (needs `CAP_NET_ADMIN`),
    /// blocking, fail-open, copying whole packets.
    pub fn open(num: u16) -> io::Result<Self> {
        let mut inner = nfq::Queue::open()?;
        inner.bind(num)?;
        inner.set_fail_open(num, true)?;
        let fd = find_socket(num)?;
        Ok(Self { inner, num, fd })
    }

    /// The queue number.
    pub fn number(&self) -> u16 {
        self.num
    }

    /// Whether [`Queue::recv`] waits for a packet (the default) or fails with
    /// [`io::ErrorKind::WouldBlock`] when none is there (for `tokio::io::unix::AsyncFd`).
    pub fn set_nonblocking(&mut self, nonblocking: bool) {
        self.inner.set_nonblocking(nonblocking);
    }

    /// The next packet. Every packet must be given a [`Queue::verdict`]; until then the kernel
    /// holds it.
    pub fn recv(&mut self) -> io::Result<QueuedPacket> {
        self.inner.recv().map(|message| QueuedPacket { message })
    }

    /// Accepts `packet`, with `mark` set when given (the mark of its route, as the flow map
    /// would have set it), so that it is routed like the later packets of its flow.
    pub fn verdict(&mut self, packet: QueuedPacket, mark: Option<u32>) -> io::Result<()> {
        let mut message = packet.message;
        if let Some(mark) = mark {
            message.set_nfmark(mark);
        }
        message.set_verdict(nfq::Verdict::Accept);
        self.inner.verdict(message)
    }

    /// Drops `packet`.
    pub fn drop_packet(&mut self, packet: QueuedPacket) -> io::Result<()> {
        let mut message = packet.message;
        message.set_verdict(nfq::Verdict::Drop);
        self.inner.verdict(message)
    }
}

impl AsRawFd for Queue {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

/// The descriptor of the netlink socket bound to queue `num` by this process.
fn find_socket(num: u16) -> io::Result<RawFd> {
    let not_found = |what: String| io::Error::new(io::ErrorKind::NotFound, what);
    // Columns: queue number, peer port id, queue length, copy mode, copy range, ...
    let queues = std::fs::read_to_string("/proc/thread-self/net/netfilter/nfnetlink_queue")?;
    let portid = queues
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first().and_then(|n| n.parse::<u16>().ok()) == Some(num))
        .and_then(|f| f.get(1).and_then(|p| p.parse::<u32>().ok()))
        .ok_or_else(|| not_found(format!("queue {num} is not bound")))?;
    // Columns: sk, Eth (protocol), Pid (port id), Groups, Rmem, Wmem, Dump, Locks, Drops, Inode.
    let sockets = std::fs::read_to_string("/proc/thread-self/net/netlink")?;
    let inode = sockets
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| {
            f.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(NETLINK_NETFILTER)
                && f.get(2).and_then(|p| p.parse::<u32>().ok()) == Some(portid)
        })
        .and_then(|f| f.get(9).and_then(|i| i.parse::<u64>().ok()))
        .ok_or_else(|| not_found(format!("no netfilter socket with port id {portid}")))?;
    let wanted = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc/thread-self/fd")? {
        let entry = entry?;
        if std::fs::read_link(entry.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str()) {
            if let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) {
                return Ok(fd);
            }
        }
    }
    Err(not_found(format!("no descriptor for {wanted}")))
}
