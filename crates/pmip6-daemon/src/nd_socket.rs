//! The MAG's raw ICMPv6 socket on one access link: Router Solicitations in, Router
//! Advertisements out (RFC 4861 §6.1.1, §6.2.6).
//!
//! The socket is tied to its interface (`SO_BINDTODEVICE`) and bound to our link-local address
//! there, so RAs leave from it; it joins all-routers (ff02::2), lets only Router Solicitations
//! through the kernel's ICMPv6 filter, sends with hop limit 255, and reports the hop limit of
//! what it receives so that an RS that crossed a router (hop limit below 255) is dropped.

use std::future::poll_fn;
use std::io;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::task::Poll;

use pmip6_engine::InterfaceId;
use pmip6_wire::nd::{NdMessage, RouterAdvertisement};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

/// All-routers, link-local scope (RFC 4291 §2.7.1): where hosts send Router Solicitations.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// The hop limit of every Neighbor Discovery message (RFC 4861 §6.1.1).
pub const ND_HOP_LIMIT: u8 = 255;
const ICMPV6_ROUTER_SOLICITATION: u8 = 133;
/// `ICMP6_FILTER` (linux/icmpv6.h), at level `IPPROTO_ICMPV6`.
const ICMP6_FILTER: libc::c_int = 1;

/// One received ICMPv6 datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdDatagram {
    /// Octets read.
    pub len: usize,
    /// The sender.
    pub src: Ipv6Addr,
    /// The IPv6 hop limit it arrived with, if the kernel reported it.
    pub hop_limit: Option<u8>,
}

/// A raw ICMPv6 socket on one access interface.
#[derive(Debug)]
pub struct NdSocket {
    fd: AsyncFd<Socket>,
    interface: InterfaceId,
    link_local: Ipv6Addr,
}

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    set_raw(fd, level, name, &value)
}

fn set_raw<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>()).unwrap_or(libc::socklen_t::MAX);
    // SAFETY: `value` points to `len` readable octets for the duration of the call.
    let rc = unsafe { libc::setsockopt(fd, level, name, std::ptr::from_ref(value).cast(), len) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

impl NdSocket {
    /// Opens the socket on interface `name` (index `interface`), bound to `link_local` there.
    /// Must be called inside a tokio runtime.
    pub fn open(name: &str, interface: InterfaceId, link_local: Ipv6Addr) -> io::Result<Self> {
        let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
        socket.bind_device(Some(name.as_bytes()))?;
        socket.set_multicast_hops_v6(u32::from(ND_HOP_LIMIT))?;
        socket.set_unicast_hops_v6(u32::from(ND_HOP_LIMIT))?;
        socket.set_multicast_loop_v6(false)?;
        socket.join_multicast_v6(&ALL_ROUTERS, interface.0)?;
        let fd = socket.as_raw_fd();
        set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
        // Block every ICMPv6 type but Router Solicitation (a set bit blocks its type).
        let mut filter = [u32::MAX; 8];
        let rs = usize::from(ICMPV6_ROUTER_SOLICITATION);
        if let Some(word) = filter.get_mut(rs >> 5) {
            *word &= !(1u32 << (rs & 31));
        }
        set_raw(fd, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &filter)?;
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddr::V6(SocketAddrV6::new(link_local, 0, 0, interface.0)).into())?;
        // SAFETY: the `socket2::Socket` owns its descriptor, which stays open and the same
        // until the `AsyncFd` (its owner from here on) drops it.
        let fd = unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)?;
        Ok(Self { fd, interface, link_local })
    }

    /// The access interface.
    pub fn interface(&self) -> InterfaceId {
        self.interface
    }

    /// Our link-local address on it.
    pub fn link_local(&self) -> Ipv6Addr {
        self.link_local
    }

    /// Sends a Router Advertisement to `dst` on this link (the kernel fills in the checksum
    /// for the source it uses).
    pub async fn send_ra(&self, ra: RouterAdvertisement, dst: Ipv6Addr) -> io::Result<()> {
        let message = NdMessage::RouterAdvertisement(ra);
        let mut buf = vec![0; message.buffer_len()];
        let len = message
            .emit(&mut buf, &self.link_local, &dst)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let bytes = buf.get(..len).unwrap_or(&buf);
        let addr = socket2::SockAddr::from(SocketAddrV6::new(dst, 0, 0, self.interface.0));
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| fd.get_ref().send_to(bytes, &addr)) {
                Ok(result) => return result.map(|_| ()),
                Err(_would_block) => continue,
            }
        }
    }
}

/// Waits until one of `sockets` has a datagram and reads it into `buf`: the socket's position
/// in `sockets` and the datagram. Never completes for an empty slice.
pub async fn recv_any(sockets: &[NdSocket], buf: &mut [u8]) -> io::Result<(usize, NdDatagram)> {
    poll_fn(|cx| {
        for (i, socket) in sockets.iter().enumerate() {
            loop {
                match socket.fd.poll_read_ready(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(mut guard)) => match guard.try_io(|fd| recv_with_hop_limit(fd.as_raw_fd(), buf)) {
                        Ok(result) => return Poll::Ready(result.map(|d| (i, d))),
                        Err(_would_block) => continue,
                    },
                }
            }
        }
        Poll::Pending
    })
    .await
}

fn recv_with_hop_limit(fd: RawFd, buf: &mut [u8]) -> io::Result<NdDatagram> {
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut addr: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut control = [0u64; 16];
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut addr).cast();
    msg.msg_namelen = libc::socklen_t::try_from(size_of::<libc::sockaddr_in6>()).unwrap_or(0);
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    // SAFETY: every pointer in `msg` refers to a live buffer of the length given beside it.
    let n = unsafe { libc::recvmsg(fd, &raw mut msg, 0) };
    let len = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    let mut hop_limit = None;
    // SAFETY: `msg` was filled in by recvmsg; the CMSG macros walk its control buffer within
    // `msg_controllen`, and the data of an IPV6_HOPLIMIT message is one int.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::IPPROTO_IPV6 && (*cmsg).cmsg_type == libc::IPV6_HOPLIMIT {
                let value: libc::c_int = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                hop_limit = u8::try_from(value).ok();
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    Ok(NdDatagram { len, src: Ipv6Addr::from(addr.sin6_addr.s6_addr), hop_limit })
}
