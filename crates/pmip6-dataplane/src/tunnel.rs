//! The `tun` tunnel backend's packet path: IPv6-in-IPv6 (RFC 2473) and, for the IPv4 home
//! addresses of RFC 5844 (§3.1.4), IPv4-in-IPv6, forwarded in user space, for kernels with no
//! tunnel of their own (no ip6tnl, no seg6 lightweight tunnels).
//!
//! ```text
//!  encapsulation:  kernel route ──► TUN p6tN ──read──► raw socket (protocol 41, bound to local)
//!                                                      sendto(peer N): the kernel adds the outer
//!                                                      header local → peer, next header 41
//!  decapsulation:  raw socket recvfrom ──► outer source a tunnel peer? ──write──► its TUN p6tN
//!                  (the kernel hands over the inner        (else dropped and counted)     the kernel routes
//!                   packet, outer header stripped)                                        it as received on p6tN
//! ```
//!
//! One TUN device per tunnel peer (it carries both IP versions: the kernel tells them by the
//! version nibble), one raw socket per inner version (protocol 41 for IPv6, 4 for IPv4) for
//! all of them. The devices are not persistent: each disappears, with every route through it,
//! when its descriptor closes — on tunnel removal, on [`crate::routing::Routing::close`], on
//! drop, or when the process dies.
//!
//! Everything runs as tokio tasks on the runtime that called
//! [`crate::routing::Routing::open`]: one task per raw socket receives, one task per peer
//! reads its TUN device. A read or write error is counted and logged, never a panic; a failing
//! read is retried after [`ERROR_BACKOFF`] so that a broken descriptor never spins.

use core::net::{Ipv4Addr, Ipv6Addr};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;

/// The prefix of our TUN devices' names; the tunnel slot follows (`p6t0`, `p6t1`, ...).
pub const DEVICE_PREFIX: &str = "p6t";
/// How long a task waits after a failed read before reading again.
pub const ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// `IPPROTO_IPV6`: IPv6 encapsulated in IPv6 (RFC 2473).
const PROTOCOL_IPV6_IN_IPV6: libc::c_int = 41;
/// `IPPROTO_IPIP`: IPv4 encapsulated in IPv6 (RFC 2473 §3, RFC 5844 §3.1.4).
const PROTOCOL_IPV4_IN_IPV6: libc::c_int = 4;
/// The largest IPv6 packet without a jumbogram, the size of every receive buffer.
const BUFFER_LEN: usize = 65_535;
/// The fixed IPv6 header.
const IPV6_HEADER_LEN: usize = 40;
/// The IPv4 header without options.
const IPV4_HEADER_LEN: usize = 20;

/// What the forwarder did, since [`crate::routing::Routing::open`]. All zero with the seg6
/// backend, where the kernel forwards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelCounters {
    /// Inner packets read from a TUN device and sent to their peer.
    pub encapsulated_packets: u64,
    /// Octets of those inner packets.
    pub encapsulated_bytes: u64,
    /// Inner packets received from a tunnel peer and written into its TUN device.
    pub decapsulated_packets: u64,
    /// Octets of those inner packets.
    pub decapsulated_bytes: u64,
    /// Tunnelled packets (protocol 41 or 4) whose outer source is no tunnel peer (RFC 5213
    /// §5.6.1, §6.10.1).
    pub dropped_not_a_peer: u64,
    /// Multicast or link-local packets the kernel wrote into a TUN device (MLD, router
    /// solicitations): never tunnelled.
    pub dropped_link_scope: u64,
    /// Packets that are not a well-formed IPv6 packet (inner, either way).
    pub dropped_malformed: u64,
    /// Failed sends on the raw socket (the packet is lost).
    pub send_errors: u64,
    /// Failed receives on the raw socket.
    pub receive_errors: u64,
    /// Failed reads from a TUN device.
    pub device_read_errors: u64,
    /// Failed writes into a TUN device (the packet is lost).
    pub device_write_errors: u64,
}

/// The live counters, shared by the tasks.
#[derive(Debug, Default)]
struct Counters {
    encapsulated_packets: AtomicU64,
    encapsulated_bytes: AtomicU64,
    decapsulated_packets: AtomicU64,
    decapsulated_bytes: AtomicU64,
    dropped_not_a_peer: AtomicU64,
    dropped_link_scope: AtomicU64,
    dropped_malformed: AtomicU64,
    send_errors: AtomicU64,
    receive_errors: AtomicU64,
    device_read_errors: AtomicU64,
    device_write_errors: AtomicU64,
}

fn bump(counter: &AtomicU64, by: usize) {
    counter.fetch_add(u64::try_from(by).unwrap_or(u64::MAX), Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> TunnelCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TunnelCounters {
            encapsulated_packets: get(&self.encapsulated_packets),
            encapsulated_bytes: get(&self.encapsulated_bytes),
            decapsulated_packets: get(&self.decapsulated_packets),
            decapsulated_bytes: get(&self.decapsulated_bytes),
            dropped_not_a_peer: get(&self.dropped_not_a_peer),
            dropped_link_scope: get(&self.dropped_link_scope),
            dropped_malformed: get(&self.dropped_malformed),
            send_errors: get(&self.send_errors),
            receive_errors: get(&self.receive_errors),
            device_read_errors: get(&self.device_read_errors),
            device_write_errors: get(&self.device_write_errors),
        }
    }
}

/// The name of the TUN device of tunnel slot `slot`; at most 15 octets for every slot below
/// [`crate::routing::MAX_TUNNELS`].
pub fn device_name(slot: u32) -> String {
    format!("{DEVICE_PREFIX}{slot}")
}

/// A non-blocking descriptor that closes on drop.
fn checked_fd(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Registers `fd` with the current tokio runtime's reactor (which must have I/O enabled);
/// an error, not a panic, outside a runtime.
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other("the tun forwarder needs a tokio runtime"));
    }
    // SAFETY: an `OwnedFd` is a valid open descriptor that stays open, and always returns the
    // same descriptor, until the `AsyncFd` that owns it is dropped.
    unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)
}

/// One TUN device (IFF_TUN, no packet information), created in the calling thread's network
/// namespace, removed by the kernel when this closes.
#[derive(Debug)]
pub(crate) struct TunDevice {
    fd: AsyncFd<OwnedFd>,
    name: String,
}

impl TunDevice {
    /// Creates the device `name`. Fails (EBUSY) if a device of that name exists: a device
    /// someone else made is never adopted (`IFF_TUN_EXCL`). Needs a tokio runtime with I/O.
    pub fn create(name: &str) -> io::Result<TunDevice> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "device name too long"));
        }
        // SAFETY: a NUL-terminated path; the result is checked.
        let fd = checked_fd(unsafe {
            libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC)
        })?;
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut request: libc::ifreq = unsafe { core::mem::zeroed() };
        for (dst, src) in request.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        request.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_TUN_EXCL) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one ifreq, which lives for the call.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &raw mut request) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TunDevice { fd: register(fd)?, name: name.to_owned() })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            let result = guard.try_io(|fd| {
                // SAFETY: `buf` is valid for `buf.len()` octets.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                usize::try_from(n).map_err(|_| io::Error::last_os_error())
            });
            if let Ok(result) = result {
                return result;
            }
        }
    }

    /// One write, never waiting: a TUN write does not block, and a packet that cannot be
    /// written now is lost like any other packet.
    fn try_write(&self, packet: &[u8]) -> io::Result<usize> {
        // SAFETY: `packet` is valid for `packet.len()` octets.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
}

/// A raw IPv6 socket on protocol 41 or 4, bound to our tunnel end point.
#[derive(Debug)]
struct RawSocket {
    fd: AsyncFd<OwnedFd>,
}

fn sockaddr(addr: Ipv6Addr) -> libc::sockaddr_in6 {
    // SAFETY: sockaddr_in6 is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in6 = unsafe { core::mem::zeroed() };
    sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    sa.sin6_addr.s6_addr = addr.octets();
    sa
}

const SOCKADDR_IN6_LEN: libc::socklen_t = core::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;

impl RawSocket {
    fn open(local: Ipv6Addr, protocol: libc::c_int) -> io::Result<RawSocket> {
        // SAFETY: plain socket(2); the result is checked.
        let fd = checked_fd(unsafe {
            libc::socket(libc::AF_INET6, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, protocol)
        })?;
        let sa = sockaddr(local);
        // RFC 5213 §5.6.1, §6.10.1: the tunnel runs between the LMAA and the Proxy-CoA, so the
        // outer source is `local`; bound, the socket also receives only what is sent to `local`.
        // SAFETY: a valid sockaddr_in6 of the given length.
        let rc = unsafe { libc::bind(fd.as_raw_fd(), (&raw const sa).cast(), SOCKADDR_IN6_LEN) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(RawSocket { fd: register(fd)? })
    }

    async fn send_to(&self, packet: &[u8], peer: Ipv6Addr) -> io::Result<usize> {
        let sa = sockaddr(peer);
        loop {
            let mut guard = self.fd.writable().await?;
            let result = guard.try_io(|fd| {
                // SAFETY: valid buffer and address for the call.
                let n = unsafe {
                    libc::sendto(
                        fd.as_raw_fd(),
                        packet.as_ptr().cast(),
                        packet.len(),
                        0,
                        (&raw const sa).cast(),
                        SOCKADDR_IN6_LEN,
                    )
                };
                usize::try_from(n).map_err(|_| io::Error::last_os_error())
            });
            if let Ok(result) = result {
                return result;
            }
        }
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, Ipv6Addr)> {
        loop {
            let mut guard = self.fd.readable().await?;
            let result = guard.try_io(|fd| {
                // SAFETY: all-zero is a valid sockaddr_in6.
                let mut from: libc::sockaddr_in6 = unsafe { core::mem::zeroed() };
                let mut len = SOCKADDR_IN6_LEN;
                // SAFETY: valid buffers of the given lengths.
                let n = unsafe {
                    libc::recvfrom(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        (&raw mut from).cast(),
                        &raw mut len,
                    )
                };
                let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
                Ok((n, Ipv6Addr::from(from.sin6_addr.s6_addr)))
            });
            if let Ok(result) = result {
                return result;
            }
        }
    }
}

/// Why an inner packet is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Forward,
    Malformed,
    LinkScope,
}

/// The IP version of a packet, by its first nibble.
fn version(packet: &[u8]) -> Option<u8> {
    packet.first().map(|b| b >> 4)
}

/// Checks an inner packet: a whole IPv6 packet (version 6, payload length within what was
/// read), and, from a TUN device, not multicast or link-local — the kernel's own MLD reports
/// and solicitations on the device, which have no business in the tunnel. IPv4 packets go to
/// [`check_inner_v4`].
fn check_inner(packet: &[u8], from_device: bool) -> Verdict {
    if version(packet) == Some(4) {
        return check_inner_v4(packet, from_device);
    }
    if packet.len() < IPV6_HEADER_LEN || packet[0] >> 4 != 6 {
        return Verdict::Malformed;
    }
    let payload = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
    if IPV6_HEADER_LEN + payload > packet.len() {
        return Verdict::Malformed;
    }
    if from_device {
        let address = |at: usize| {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&packet[at..at + 16]);
            Ipv6Addr::from(octets)
        };
        let (source, destination) = (address(8), address(24));
        if destination.is_multicast() || destination.is_unicast_link_local() || source.is_unicast_link_local() {
            return Verdict::LinkScope;
        }
    }
    Verdict::Forward
}

/// Checks an inner IPv4 packet: a whole one (version 4, header length at least 5 words, total
/// length within what was read), and, from a TUN device, not multicast, broadcast or
/// link-local (169.254/16).
fn check_inner_v4(packet: &[u8], from_device: bool) -> Verdict {
    if packet.len() < IPV4_HEADER_LEN || packet[0] >> 4 != 4 {
        return Verdict::Malformed;
    }
    let header = usize::from(packet[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if header < IPV4_HEADER_LEN || total < header || total > packet.len() {
        return Verdict::Malformed;
    }
    if from_device {
        let destination = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
        let source = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
        if destination.is_multicast()
            || destination.is_broadcast()
            || destination.is_link_local()
            || source.is_link_local()
        {
            return Verdict::LinkScope;
        }
    }
    Verdict::Forward
}

/// The tunnel peers and their devices, read by the receiving task.
type Peers = Arc<RwLock<HashMap<Ipv6Addr, Arc<TunDevice>>>>;

/// The user-space forwarder of the `tun` backend: the raw socket, the devices by peer, and
/// their tasks.
///
/// The tasks run on a thread of their own (`pmip6-tunnel`, with its own tokio runtime), not on
/// the daemon's: forwarding never waits for signalling, a netlink exchange or an nftables
/// transaction, so that the packets already routed into a tunnel leave at once when a flow
/// moves to another one (which is what keeps a move from reordering the flow).
#[derive(Debug)]
pub(crate) struct Forwarder {
    sockets: Arc<Sockets>,
    peers: Peers,
    counters: Arc<Counters>,
    receivers: [JoinHandle<()>; 2],
    encapsulators: HashMap<Ipv6Addr, JoinHandle<()>>,
    runtime: tokio::runtime::Handle,
    /// Dropping it ends the forwarding thread.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts the forwarding thread in the calling thread's network namespace (a new thread
/// inherits it) and returns its runtime's handle.
type ForwardingThread = (tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>, std::thread::JoinHandle<()>);

fn forwarding_thread() -> io::Result<ForwardingThread> {
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new().name("pmip6-tunnel".to_owned()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = handle_tx.send(Err(e));
                return;
            }
        };
        let _ = handle_tx.send(Ok(runtime.handle().clone()));
        // Runs the forwarding tasks until the forwarder is shut down or dropped.
        let _ = runtime.block_on(stop_rx);
    })?;
    let handle = handle_rx.recv().map_err(|_| io::Error::other("the forwarding thread did not start"))??;
    Ok((handle, stop_tx, thread))
}

impl Forwarder {
    /// Opens the raw sockets bound to `local` and starts the forwarding thread with its
    /// receiving (decapsulating) tasks, one per inner IP version.
    pub fn start(local: Ipv6Addr) -> io::Result<Forwarder> {
        let (runtime, stop, thread) = forwarding_thread()?;
        let _entered = runtime.enter();
        let sockets = Arc::new(Sockets {
            ipv6: RawSocket::open(local, PROTOCOL_IPV6_IN_IPV6)?,
            ipv4: RawSocket::open(local, PROTOCOL_IPV4_IN_IPV6)?,
        });
        let peers: Peers = Arc::default();
        let counters = Arc::new(Counters::default());
        let receiver = |version| {
            runtime.spawn(decapsulate(Arc::clone(&sockets), version, Arc::clone(&peers), Arc::clone(&counters)))
        };
        let receivers = [receiver(6), receiver(4)];
        Ok(Forwarder {
            sockets,
            peers,
            counters,
            receivers,
            encapsulators: HashMap::new(),
            runtime,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Creates the TUN device `name`, registered with the forwarding thread.
    pub fn create_device(&self, name: &str) -> io::Result<TunDevice> {
        let _entered = self.runtime.enter();
        TunDevice::create(name)
    }

    /// Starts forwarding between `device` and `peer`: packets the kernel routes into the device
    /// go to the peer, packets from the peer come out of the device. Replaces a previous device
    /// of the same peer.
    pub async fn add(&mut self, peer: Ipv6Addr, device: TunDevice) {
        self.remove(peer).await;
        let device = Arc::new(device);
        self.write_peers().insert(peer, Arc::clone(&device));
        let task = encapsulate(peer, device, Arc::clone(&self.sockets), Arc::clone(&self.counters));
        self.encapsulators.insert(peer, self.runtime.spawn(task));
    }

    /// Stops forwarding to and from `peer` and closes its device (the kernel removes it and
    /// every route through it). Returns once the device is closed.
    pub async fn remove(&mut self, peer: Ipv6Addr) {
        self.write_peers().remove(&peer);
        if let Some(task) = self.encapsulators.remove(&peer) {
            task.abort();
            // The aborted task has dropped its future, and with it the last handle of the
            // device, when the join handle resolves.
            let _ = task.await;
        }
    }

    /// Stops forwarding to and from `peer` at once and closes its device in the background:
    /// the kernel's unregistering of a device takes tens of milliseconds here (24 ms measured),
    /// which neither the daemon nor the forwarding of the other tunnels waits for. The caller
    /// has removed every route into the device already, and does not reuse its name at once.
    pub fn release(&mut self, peer: Ipv6Addr) {
        let device = self.write_peers().remove(&peer);
        let Some(task) = self.encapsulators.remove(&peer) else { return };
        task.abort();
        let Some(mut device) = device else { return };
        self.runtime.spawn_blocking(move || {
            // The aborted task lets go of its handle when the forwarding thread next runs.
            for _ in 0..1000 {
                match Arc::try_unwrap(device) {
                    Ok(last) => {
                        drop(last);
                        return;
                    }
                    Err(shared) => {
                        device = shared;
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
            }
        });
    }

    /// Stops everything and closes the socket and every device.
    pub async fn shutdown(mut self) {
        let peers: Vec<Ipv6Addr> = self.encapsulators.keys().copied().collect();
        for peer in peers {
            self.remove(peer).await;
        }
        for receiver in &mut self.receivers {
            receiver.abort();
            let _ = receiver.await;
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> TunnelCounters {
        self.counters.snapshot()
    }

    fn write_peers(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Ipv6Addr, Arc<TunDevice>>> {
        // A panic while holding the lock cannot leave the map inconsistent (single inserts
        // and removes), so a poisoned lock is used as it is.
        self.peers.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        // Shutdown or a crash in effect: the tasks stop, and the forwarding thread ends with
        // its runtime, closing the socket and every device before `drop` returns.
        for receiver in &self.receivers {
            receiver.abort();
        }
        for task in self.encapsulators.values() {
            task.abort();
        }
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The raw sockets, one per inner IP version.
#[derive(Debug)]
struct Sockets {
    ipv6: RawSocket,
    ipv4: RawSocket,
}

impl Sockets {
    fn for_version(&self, version: u8) -> &RawSocket {
        if version == 4 { &self.ipv4 } else { &self.ipv6 }
    }
}

/// Reads what the kernel routes into `device` and sends it to `peer`.
async fn encapsulate(peer: Ipv6Addr, device: Arc<TunDevice>, sockets: Arc<Sockets>, counters: Arc<Counters>) {
    let mut buf = vec![0u8; BUFFER_LEN];
    loop {
        let n = match device.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                bump(&counters.device_read_errors, 1);
                tracing::warn!(device = device.name(), error = %e, "reading from the tunnel device failed");
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        let packet = &buf[..n];
        match check_inner(packet, true) {
            Verdict::Forward => {}
            Verdict::Malformed => {
                bump(&counters.dropped_malformed, 1);
                continue;
            }
            Verdict::LinkScope => {
                bump(&counters.dropped_link_scope, 1);
                continue;
            }
        }
        // RFC 2473 §3: the inner packet goes whole into a new IPv6 packet to the tunnel exit
        // point; its hop limit was already decremented by the kernel's forwarding. Packets too
        // big for the device never get here: the kernel sent Packet Too Big to their source
        // for the device MTU (RFC 2473 §7).
        // Next header 41 for IPv6 inside, 4 for IPv4 (RFC 5844 §3.1.4): the socket sets it.
        let socket = sockets.for_version(version(packet).unwrap_or(6));
        match socket.send_to(packet, peer).await {
            Ok(_) => {
                bump(&counters.encapsulated_packets, 1);
                bump(&counters.encapsulated_bytes, n);
            }
            Err(e) => {
                bump(&counters.send_errors, 1);
                tracing::debug!(%peer, error = %e, "sending an encapsulated packet failed");
            }
        }
    }
}

/// Receives every protocol-41 (`version` 6) or protocol-4 (`version` 4) packet sent to `local`
/// and writes the inner packet into the device of the peer that sent it.
async fn decapsulate(sockets: Arc<Sockets>, version: u8, peers: Peers, counters: Arc<Counters>) {
    let socket = sockets.for_version(version);
    let mut buf = vec![0u8; BUFFER_LEN];
    loop {
        let (n, source) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                bump(&counters.receive_errors, 1);
                tracing::warn!(error = %e, "receiving on the tunnel socket failed");
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        // RFC 5213 §5.6.1 (LMA), §6.10.1 (MAG): only tunnelled packets from a registered
        // tunnel end point are accepted.
        let device = peers.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&source).cloned();
        let Some(device) = device else {
            bump(&counters.dropped_not_a_peer, 1);
            tracing::debug!(%source, "dropped a tunnelled packet from an address that is no tunnel peer");
            continue;
        };
        let packet = &buf[..n];
        if self::version(packet) != Some(version) || check_inner(packet, false) != Verdict::Forward {
            bump(&counters.dropped_malformed, 1);
            continue;
        }
        // RFC 2473 §3.1: decapsulated, the inner packet is forwarded as if received on the
        // tunnel interface.
        match device.try_write(packet) {
            Ok(_) => {
                bump(&counters.decapsulated_packets, 1);
                bump(&counters.decapsulated_bytes, n);
            }
            Err(e) => {
                bump(&counters.device_write_errors, 1);
                tracing::debug!(device = device.name(), error = %e, "writing into the tunnel device failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(source: Ipv6Addr, destination: Ipv6Addr, payload: usize) -> Vec<u8> {
        let mut p = vec![0u8; IPV6_HEADER_LEN + payload];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&u16::try_from(payload).unwrap_or(0).to_be_bytes());
        p[6] = 59;
        p[7] = 64;
        p[8..24].copy_from_slice(&source.octets());
        p[24..40].copy_from_slice(&destination.octets());
        p
    }

    #[test]
    fn inner_packets_are_checked() {
        let global = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
        let other = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
        let link_local = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
        let mld = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);
        assert_eq!(check_inner(&packet(global, other, 8), true), Verdict::Forward);
        assert_eq!(check_inner(&packet(global, other, 8), false), Verdict::Forward);
        assert_eq!(check_inner(&packet(Ipv6Addr::UNSPECIFIED, mld, 8), true), Verdict::LinkScope);
        assert_eq!(check_inner(&packet(link_local, other, 8), true), Verdict::LinkScope);
        assert_eq!(check_inner(&packet(global, link_local, 8), true), Verdict::LinkScope);
        assert_eq!(check_inner(&packet(global, other, 8)[..39], true), Verdict::Malformed);
        assert_eq!(check_inner(&packet(global, other, 8)[..47], false), Verdict::Malformed);
        let mut v4 = packet(global, other, 8);
        v4[0] = 0x45;
        assert_eq!(check_inner(&v4, false), Verdict::Malformed);
    }

    fn packet4(source: Ipv4Addr, destination: Ipv4Addr, payload: usize) -> Vec<u8> {
        let mut p = vec![0u8; IPV4_HEADER_LEN + payload];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&u16::try_from(IPV4_HEADER_LEN + payload).unwrap_or(0).to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&source.octets());
        p[16..20].copy_from_slice(&destination.octets());
        p
    }

    #[test]
    fn inner_ipv4_packets_are_checked() {
        let (cn, home) = (Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(10, 64, 0, 2));
        assert_eq!(check_inner(&packet4(cn, home, 8), true), Verdict::Forward);
        assert_eq!(check_inner(&packet4(home, cn, 8), false), Verdict::Forward);
        for scoped in [Ipv4Addr::new(224, 0, 0, 22), Ipv4Addr::BROADCAST, Ipv4Addr::new(169, 254, 1, 1)] {
            assert_eq!(check_inner(&packet4(home, scoped, 8), true), Verdict::LinkScope, "{scoped}");
        }
        assert_eq!(check_inner(&packet4(Ipv4Addr::new(169, 254, 0, 9), cn, 8), true), Verdict::LinkScope);
        assert_eq!(check_inner(&packet4(cn, home, 8)[..27], false), Verdict::Malformed, "total length beyond");
        let mut short_header = packet4(cn, home, 8);
        short_header[0] = 0x44;
        assert_eq!(check_inner(&short_header, false), Verdict::Malformed);
        assert_eq!(check_inner(&packet4(cn, home, 8)[..19], false), Verdict::Malformed);
    }

    #[test]
    fn device_names_fit_ifnamsiz() {
        assert_eq!(device_name(0), "p6t0");
        assert!(device_name(crate::routing::MAX_TUNNELS - 1).len() < libc::IFNAMSIZ);
        assert!(device_name(u32::MAX).len() < libc::IFNAMSIZ);
    }
}
