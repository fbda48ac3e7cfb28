//! The raw Mobility Header socket (IPv6, protocol 135) of both daemons.
//!
//! The kernel computes the checksum of what we send and verifies the checksum of what we
//! receive (`IPV6_CHECKSUM` at offset 4, RFC 6275 §6.1.1), so messages are emitted with a zero
//! checksum and a received message with a bad checksum never reaches us. Each received
//! datagram comes with the address it was sent to (`IPV6_PKTINFO`) and its hop limit
//! (`IPV6_HOPLIMIT`), which the driver hands on.

use std::io;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use pmip6_wire::Message;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

/// IPPROTO_MH (RFC 6275 §6.1).
pub const IPPROTO_MH: i32 = 135;
/// Where the checksum sits in a Mobility Header.
const CHECKSUM_OFFSET: libc::c_int = 4;
/// The largest datagram read (a Mobility Header is at most 2048 octets; leave room).
pub const RECEIVE_BUFFER: usize = 4096;

/// The socket's kernel buffers, each way: about 30,000 PBUs of 130 octets with their overhead.
pub const SOCKET_BUFFER_BYTES: libc::c_int = 8 << 20;

/// A nonblocking raw Mobility Header socket bound to one of our addresses.
#[derive(Debug)]
pub struct MhSocket {
    fd: AsyncFd<Socket>,
    local: Ipv6Addr,
}

impl MhSocket {
    /// Opens the socket and binds it to `local`. Must be called inside a tokio runtime with
    /// I/O enabled.
    pub fn bind(local: Ipv6Addr) -> io::Result<Self> {
        let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(IPPROTO_MH)))?;
        let offset: libc::c_int = CHECKSUM_OFFSET;
        // SAFETY: a valid socket descriptor and a pointer to a c_int of the given size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_CHECKSUM,
                (&raw const offset).cast(),
                socklen_of::<libc::c_int>(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // A burst of PBUs (a MAG restarting, a crowd attaching) waits in the kernel rather than
        // being dropped; past this the kernel drops and counts (`/proc/net/raw6`, drops): the
        // queue is bounded. SO_RCVBUFFORCE passes `net.core.rmem_max` with CAP_NET_ADMIN.
        let bytes: libc::c_int = SOCKET_BUFFER_BYTES;
        for option in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
            // SAFETY: a valid socket descriptor and a pointer to a c_int of the given size.
            let rc = unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_SOCKET,
                    option,
                    (&raw const bytes).cast(),
                    socklen_of::<libc::c_int>(),
                )
            };
            if rc != 0 {
                // Without the capability: as much as rmem_max/wmem_max allow.
                let _ = if option == libc::SO_RCVBUFFORCE {
                    socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES as usize)
                } else {
                    socket.set_send_buffer_size(SOCKET_BUFFER_BYTES as usize)
                };
            }
        }
        let on: libc::c_int = 1;
        // The destination and hop limit of each datagram, and the kernel's count of datagrams
        // it dropped because the receive buffer was full (load shed past capacity).
        let options = [
            (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO),
            (libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT),
            (libc::SOL_SOCKET, libc::SO_RXQ_OVFL),
        ];
        for (level, option) in options {
            // SAFETY: a valid socket descriptor and a pointer to a c_int of the given size.
            let rc = unsafe {
                libc::setsockopt(socket.as_raw_fd(), level, option, (&raw const on).cast(), socklen_of::<libc::c_int>())
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddr::V6(SocketAddrV6::new(local, 0, 0, 0)).into())?;
        // SAFETY: a `socket2::Socket` owns its descriptor, which stays open and the same until
        // the `AsyncFd` (its owner from here on) drops it.
        let fd = unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)?;
        Ok(Self { fd, local })
    }

    /// The address the socket is bound to.
    pub fn local(&self) -> Ipv6Addr {
        self.local
    }

    /// Receives one datagram without waiting, or `WouldBlock`.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<MhDatagram> {
        recv_with_info(self.fd.get_ref().as_raw_fd(), buf, self.local)
    }

    /// Waits for one datagram.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<MhDatagram> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| recv_with_info(fd.get_ref().as_raw_fd(), buf, self.local)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends raw Mobility Header octets to `dst` (the checksum field is filled in by the
    /// kernel).
    pub async fn send_bytes(&self, bytes: &[u8], dst: Ipv6Addr) -> io::Result<()> {
        let addr = socket2::SockAddr::from(SocketAddrV6::new(dst, 0, 0, 0));
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| fd.get_ref().send_to(bytes, &addr)) {
                Ok(result) => return result.map(|_| ()),
                Err(_would_block) => continue,
            }
        }
    }

    /// Emits `message` (checksum left zero for the kernel) and sends it to `dst`.
    pub async fn send(&self, message: &Message, dst: Ipv6Addr) -> io::Result<()> {
        let mut buf = vec![0; message.buffer_len()];
        let len = message.emit(&mut buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        buf.truncate(len);
        self.send_bytes(&buf, dst).await
    }
}

fn socklen_of<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// One received datagram: its length in the buffer and what the kernel said of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MhDatagram {
    /// Octets read into the buffer.
    pub len: usize,
    /// The source address (the peer).
    pub src: Ipv6Addr,
    /// The destination address (`IPV6_PKTINFO`; the bound address when the kernel gave none).
    pub dst: Ipv6Addr,
    /// The hop limit it arrived with (`IPV6_HOPLIMIT`), when the kernel gave it.
    pub hop_limit: Option<u8>,
    /// Datagrams the kernel has dropped on this socket so far because its buffer was full
    /// (`SO_RXQ_OVFL`, a running count), when the kernel gave it.
    pub dropped: Option<u32>,
}

fn recv_with_info(fd: RawFd, buf: &mut [u8], bound: Ipv6Addr) -> io::Result<MhDatagram> {
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut addr: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut control = [0u64; 16];
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut addr).cast();
    msg.msg_namelen = socklen_of::<libc::sockaddr_in6>();
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    // SAFETY: every pointer in `msg` refers to a live buffer of the length given beside it.
    let n = unsafe { libc::recvmsg(fd, &raw mut msg, 0) };
    let len = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    if addr.sin6_family != libc::AF_INET6 as libc::sa_family_t {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "datagram without an IPv6 source"));
    }
    let src = Ipv6Addr::from(addr.sin6_addr.s6_addr);
    let mut datagram = MhDatagram { len, src, dst: bound, hop_limit: None, dropped: None };
    // SAFETY: `msg` was filled in by recvmsg; the CMSG macros walk its control buffer within
    // `msg_controllen`; an IPV6_PKTINFO message carries one in6_pktinfo, an IPV6_HOPLIMIT
    // message one int and an SO_RXQ_OVFL message one u32, each read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SO_RXQ_OVFL {
                datagram.dropped = Some(std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<u32>()));
            }
            if (*cmsg).cmsg_level == libc::IPPROTO_IPV6 {
                match (*cmsg).cmsg_type {
                    libc::IPV6_PKTINFO => {
                        let info: libc::in6_pktinfo = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                        datagram.dst = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                    }
                    libc::IPV6_HOPLIMIT => {
                        let value: libc::c_int = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                        datagram.hop_limit = u8::try_from(value).ok();
                    }
                    _ => {}
                }
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    Ok(datagram)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmip6_wire::{BindingUpdate, BuFlags, ParseConfig};

    /// As root (CI is): a message over loopback arrives with its destination and hop limit.
    #[test]
    fn a_received_datagram_carries_its_destination_and_hop_limit() {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "raw sockets need root (CI runs as root); not skipped");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async {
            // A namespace of our own is not needed: ::1 in the test's namespace, protocol 135.
            let socket = MhSocket::bind(Ipv6Addr::LOCALHOST).expect("a Mobility Header socket on ::1");
            let message = Message::BindingUpdate(BindingUpdate {
                sequence: 7,
                flags: BuFlags::A | BuFlags::P,
                lifetime: 1,
                options: Vec::new(),
            });
            socket.send(&message, Ipv6Addr::LOCALHOST).await.expect("sent");
            let mut buf = vec![0u8; RECEIVE_BUFFER];
            let datagram = tokio::time::timeout(std::time::Duration::from_secs(2), socket.recv(&mut buf))
                .await
                .expect("received in time")
                .expect("received");
            assert_eq!((datagram.src, datagram.dst), (Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST));
            assert!(datagram.hop_limit.is_some_and(|h| h > 0), "{datagram:?}");
            let parsed = Message::parse(&buf[..datagram.len], &ParseConfig::default()).expect("parses");
            assert_eq!(parsed, message);
        });
    }
}
