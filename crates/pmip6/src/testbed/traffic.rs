//! UDP flows from the correspondent node to the mobile node, with real sockets in the
//! testbed's namespaces.
//!
//! Each flow is one source port at the correspondent node; every datagram carries its sequence
//! number. The mobile node's receiver learns the interface each datagram arrived on from
//! `IPV6_PKTINFO`, so a move of one flow from if1 to if2 shows as that flow's datagrams changing
//! interface, and losses and reorderings are counted from the sequence numbers.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::IoSliceMut;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn6, recvmsg, setsockopt, sockopt};

/// The mobile node's receiving port.
pub const RECEIVE_PORT: u16 = 9000;

/// Enters the network namespace `ns` on the calling thread.
pub fn enter_namespace(ns: &str) -> anyhow::Result<()> {
    let file = File::open(format!("/var/run/netns/{ns}")).with_context(|| format!("no namespace {ns}"))?;
    setns(file, CloneFlags::CLONE_NEWNET).with_context(|| format!("cannot enter namespace {ns}"))
}

/// What the receiver saw of one flow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowCount {
    /// Datagrams per arrival interface name.
    pub by_interface: BTreeMap<String, u64>,
    /// Datagrams received.
    pub received: u64,
    /// The highest sequence number seen, plus one.
    pub next_expected: u64,
    /// Datagrams that arrived with a sequence number below one already seen.
    pub reordered: u64,
    /// The interface of the last datagram.
    pub last_interface: Option<String>,
    /// When a datagram last arrived on another interface than the one before it.
    pub switched_at: Option<Instant>,
}

impl FlowCount {
    /// Datagrams not received, judging by the highest sequence number seen.
    pub fn lost(&self) -> u64 {
        self.next_expected.saturating_sub(self.received)
    }
}

/// Counts per flow (the correspondent node's source port).
pub type Counts = BTreeMap<u16, FlowCount>;

/// The mobile node's receiver: a thread in its namespace.
#[derive(Debug)]
pub struct Receiver {
    counts: Arc<Mutex<Counts>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Starts receiving on [`RECEIVE_PORT`] in namespace `ns`.
    pub fn start(ns: &str) -> anyhow::Result<Self> {
        let counts = Arc::new(Mutex::new(Counts::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let ns = ns.to_owned();
        let thread = {
            let (counts, stop) = (counts.clone(), stop.clone());
            std::thread::spawn(move || {
                let socket = enter_namespace(&ns).and_then(|()| open_receiver());
                let socket = match socket {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                receive_loop(&socket, &counts, &stop);
            })
        };
        ready_rx.recv().context("the receiver thread ended")??;
        Ok(Self { counts, stop, thread: Some(thread) })
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Stops the thread and returns the final counts.
    pub fn stop(mut self) -> Counts {
        self.halt();
        self.counts()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.halt();
    }
}

fn open_receiver() -> anyhow::Result<UdpSocket> {
    let socket = UdpSocket::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, RECEIVE_PORT)))
        .context("cannot bind the mobile node's receiver")?;
    setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true).context("IPV6_RECVPKTINFO")?;
    socket.set_read_timeout(Some(Duration::from_millis(20))).context("receive timeout")?;
    Ok(socket)
}

fn receive_loop(socket: &UdpSocket, counts: &Mutex<Counts>, stop: &AtomicBool) {
    use std::os::fd::AsRawFd;
    let mut names: BTreeMap<u32, String> = BTreeMap::new();
    let mut buf = [0u8; 2048];
    let mut cmsg = nix::cmsg_space!(nix::libc::in6_pktinfo);
    while !stop.load(Ordering::Relaxed) {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let Ok(msg) = recvmsg::<SockaddrIn6>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()) else {
            continue;
        };
        let Some(src) = msg.address else { continue };
        let ifindex = msg.cmsgs().ok().and_then(|mut c| {
            c.find_map(|m| match m {
                ControlMessageOwned::Ipv6PacketInfo(info) => Some(info.ipi6_ifindex),
                _ => None,
            })
        });
        let bytes = msg.bytes;
        let Some(seq) = buf.get(..8).filter(|_| bytes >= 8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes)
        else {
            continue;
        };
        let interface = ifindex.map(|i| {
            names
                .entry(i)
                .or_insert_with(|| {
                    nix::net::if_::if_indextoname(i)
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|_| format!("#{i}"))
                })
                .clone()
        });
        let Ok(mut counts) = counts.lock() else { return };
        let flow = counts.entry(src.port()).or_default();
        flow.received += 1;
        if seq + 1 < flow.next_expected {
            flow.reordered += 1;
        }
        flow.next_expected = flow.next_expected.max(seq + 1);
        if let Some(name) = interface {
            *flow.by_interface.entry(name.clone()).or_default() += 1;
            if flow.last_interface.as_ref().is_some_and(|last| *last != name) {
                flow.switched_at = Some(Instant::now());
            }
            flow.last_interface = Some(name);
        }
    }
}

/// The correspondent node's sender: one thread in its namespace sending every flow.
#[derive(Debug)]
pub struct Sender {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Sender {
    /// Starts sending from `src` to `[dst]:RECEIVE_PORT`, one flow per source port in `ports`,
    /// each at `rate` datagrams per second, in namespace `ns`.
    pub fn start(ns: &str, src: Ipv6Addr, dst: Ipv6Addr, ports: &[u16], rate: u32) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (ns, ports) = (ns.to_owned(), ports.to_vec());
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let sockets = enter_namespace(&ns).and_then(|()| {
                    ports
                        .iter()
                        .map(|p| {
                            UdpSocket::bind(SocketAddrV6::new(src, *p, 0, 0))
                                .with_context(|| format!("cannot bind [{src}]:{p}"))
                        })
                        .collect::<anyhow::Result<Vec<_>>>()
                });
                let sockets = match sockets {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return 0;
                    }
                };
                send_loop(&sockets, SocketAddrV6::new(dst, RECEIVE_PORT, 0, 0), rate, &stop)
            })
        };
        ready_rx.recv().context("the sender thread ended")??;
        Ok(Self { stop, thread: Some(thread) })
    }

    /// Stops sending; returns the datagrams sent per flow.
    pub fn stop(mut self) -> u64 {
        self.halt()
    }

    fn halt(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.halt();
    }
}

fn send_loop(sockets: &[UdpSocket], dst: SocketAddrV6, rate: u32, stop: &AtomicBool) -> u64 {
    let interval = Duration::from_secs(1) / rate.max(1);
    let start = Instant::now();
    let mut seq = 0u64;
    let mut payload = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        let due = start + interval * u32::try_from(seq).unwrap_or(u32::MAX);
        let now = Instant::now();
        if due > now {
            std::thread::sleep((due - now).min(Duration::from_millis(5)));
            continue;
        }
        payload[..8].copy_from_slice(&seq.to_be_bytes());
        for socket in sockets {
            let _ = socket.send_to(&payload, dst);
        }
        seq += 1;
    }
    seq
}
