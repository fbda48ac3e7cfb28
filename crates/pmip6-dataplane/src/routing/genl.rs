//! The namespace-wide source address of seg6 encapsulation (`ip sr tunsrc`), through the `SEG6`
//! generic netlink family.
//!
//! rtnetlink cannot set it: the kernel keeps it in the per-namespace seg6 data and exposes it only
//! through generic netlink (`SEG6_CMD_SET_TUNSRC` / `SEG6_CMD_GET_TUNSRC` of
//! `include/uapi/linux/seg6_genl.h`). The workspace has no generic netlink crate, and the
//! exchange is two tiny messages, so this file speaks it over a plain `NETLINK_GENERIC` socket.
//! The `SEG6` family exists whenever the kernel has IPv6, even when it lacks seg6 lightweight
//! tunnels.

use core::net::Ipv6Addr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `GENL_ID_CTRL`: the generic netlink controller.
const GENL_ID_CTRL: u16 = 0x10;
/// `CTRL_CMD_GETFAMILY`.
const CTRL_CMD_GETFAMILY: u8 = 3;
/// `CTRL_ATTR_FAMILY_ID` (u16).
const CTRL_ATTR_FAMILY_ID: u16 = 1;
/// `CTRL_ATTR_FAMILY_NAME` (string).
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
/// `SEG6_CMD_SET_TUNSRC`.
const SEG6_CMD_SET_TUNSRC: u8 = 3;
/// `SEG6_CMD_GET_TUNSRC`.
const SEG6_CMD_GET_TUNSRC: u8 = 4;
/// `SEG6_ATTR_DST` (16 octets).
const SEG6_ATTR_DST: u16 = 1;
/// `NLMSG_ERROR`.
const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`.
const NLMSG_DONE: u16 = 3;
/// `NLM_F_REQUEST`.
const NLM_F_REQUEST: u16 = 1;
/// `NLM_F_ACK`.
const NLM_F_ACK: u16 = 4;
/// Length of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;
/// Length of `struct genlmsghdr`.
const GENL_HDRLEN: usize = 4;

/// A generic netlink socket, closed on drop.
struct GenlSocket {
    fd: OwnedFd,
    seq: u32,
}

impl GenlSocket {
    fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_GENERIC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value (pid 0: the kernel picks).
        let mut addr: libc::sockaddr_nl = unsafe { core::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let len = core::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `addr` is a valid sockaddr_nl of `len` octets.
        let rc = unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd, seq: 1 })
    }

    /// Sends one request and returns the attributes of the first answer (empty for a bare ACK).
    fn request(&mut self, family: u16, flags: u16, cmd: u8, attrs: &[(u16, &[u8])]) -> io::Result<Vec<(u16, Vec<u8>)>> {
        self.seq = self.seq.wrapping_add(1);
        let mut msg = vec![0u8; NLMSG_HDRLEN];
        msg.extend_from_slice(&[cmd, 1, 0, 0]);
        for (kind, value) in attrs {
            let nla_len = u16::try_from(4 + value.len()).map_err(|_| io::Error::other("attribute too long"))?;
            msg.extend_from_slice(&nla_len.to_ne_bytes());
            msg.extend_from_slice(&kind.to_ne_bytes());
            msg.extend_from_slice(value);
            while msg.len() % 4 != 0 {
                msg.push(0);
            }
        }
        let total = u32::try_from(msg.len()).map_err(|_| io::Error::other("message too long"))?;
        msg[0..4].copy_from_slice(&total.to_ne_bytes());
        msg[4..6].copy_from_slice(&family.to_ne_bytes());
        msg[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        msg[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        // SAFETY: `msg` is a valid buffer of `msg.len()` octets.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut answer = None;
        let mut buf = vec![0u8; 16384];
        loop {
            // SAFETY: `buf` is a valid writable buffer of `buf.len()` octets.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let data = buf.get(..usize::try_from(n).unwrap_or(0)).unwrap_or(&[]);
            let mut rest = data;
            while rest.len() >= NLMSG_HDRLEN {
                let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let kind = u16::from_ne_bytes([rest[4], rest[5]]);
                let seq = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
                if len < NLMSG_HDRLEN || len > rest.len() {
                    return Err(io::Error::other("truncated generic netlink answer"));
                }
                let body = &rest[NLMSG_HDRLEN..len];
                rest = rest.get(len.next_multiple_of(4)..).unwrap_or(&[]);
                if seq != self.seq {
                    continue;
                }
                match kind {
                    NLMSG_ERROR => {
                        let code = body.get(..4).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        return Ok(answer.unwrap_or_default());
                    }
                    NLMSG_DONE => return Ok(answer.unwrap_or_default()),
                    _ => {
                        let attrs = parse_attributes(body.get(GENL_HDRLEN..).unwrap_or(&[]));
                        if flags & NLM_F_ACK == 0 {
                            return Ok(attrs);
                        }
                        answer = Some(attrs);
                    }
                }
            }
        }
    }

    fn family_id(&mut self, name: &str) -> io::Result<u16> {
        let mut value = name.as_bytes().to_vec();
        value.push(0);
        let attrs = self.request(GENL_ID_CTRL, 0, CTRL_CMD_GETFAMILY, &[(CTRL_ATTR_FAMILY_NAME, &value)])?;
        attrs
            .iter()
            .find(|(kind, v)| *kind == CTRL_ATTR_FAMILY_ID && v.len() >= 2)
            .map(|(_, v)| u16::from_ne_bytes([v[0], v[1]]))
            .ok_or_else(|| io::Error::other(format!("generic netlink family {name} has no id")))
    }
}

fn parse_attributes(mut data: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([data[0], data[1]]));
        let kind = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < 4 || len > data.len() {
            break;
        }
        out.push((kind, data[4..len].to_vec()));
        data = data.get(len.next_multiple_of(4)..).unwrap_or(&[]);
    }
    out
}

/// Reads the namespace's seg6 tunnel source (`::` when unset).
pub(super) fn tunnel_source() -> io::Result<Ipv6Addr> {
    let mut socket = GenlSocket::open()?;
    let family = socket.family_id("SEG6")?;
    let attrs = socket.request(family, 0, SEG6_CMD_GET_TUNSRC, &[])?;
    attrs
        .iter()
        .find(|(kind, v)| *kind == SEG6_ATTR_DST && v.len() == 16)
        .and_then(|(_, v)| <[u8; 16]>::try_from(v.as_slice()).ok())
        .map(Ipv6Addr::from)
        .ok_or_else(|| io::Error::other("SEG6_CMD_GET_TUNSRC answered without an address"))
}

/// Sets the namespace's seg6 tunnel source (`ip sr tunsrc set ADDR`).
pub(super) fn set_tunnel_source(addr: Ipv6Addr) -> io::Result<()> {
    let mut socket = GenlSocket::open()?;
    let family = socket.family_id("SEG6")?;
    socket.request(family, NLM_F_ACK, SEG6_CMD_SET_TUNSRC, &[(SEG6_ATTR_DST, &addr.octets())]).map(|_| ())
}
