//! The raw Mobility Header socket (IPv6, protocol 135) of both daemons.
//!
//! The kernel computes the checksum of what we send and verifies the checksum of what we
//! receive (`IPV6_CHECKSUM` at offset 4, RFC 6275 §6.1.1), so messages are emitted with a zero
//! checksum and a received message with a bad checksum never reaches us.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;

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

    /// Receives one datagram without waiting: its length and source address, or
    /// `WouldBlock`.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<(usize, Ipv6Addr)> {
        recv_from(self.fd.get_ref(), buf)
    }

    /// Waits for one datagram: its length and source address.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, Ipv6Addr)> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| recv_from(fd.get_ref(), buf)) {
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

fn recv_from(socket: &Socket, buf: &mut [u8]) -> io::Result<(usize, Ipv6Addr)> {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and the kernel only writes into the
    // buffer; initialised octets stay initialised.
    let uninit = unsafe { &mut *(std::ptr::from_mut::<[u8]>(buf) as *mut [MaybeUninit<u8>]) };
    let (len, addr) = socket.recv_from(uninit)?;
    match addr.as_socket() {
        Some(SocketAddr::V6(v6)) => Ok((len, *v6.ip())),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "datagram without an IPv6 source")),
    }
}
