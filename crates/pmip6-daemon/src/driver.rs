//! The event loop around an engine: socket readable, the engine's next deadline, shutdown.
//!
//! The loop is thin on purpose (the timer part is quinn's `drive_timer`): read the clock, feed
//! the engine, then drain its outputs in the fixed order — transmits are sent, data-plane
//! intents and events are logged (the data plane comes later). Each wake-up does bounded work:
//! at most [`DATAGRAMS_PER_WAKEUP`] datagrams are read before the outputs are drained.

use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pmip6_engine::lma::Lma;
use pmip6_engine::mag::Mag;
use pmip6_engine::{Intent, InterfaceId, Now, Received, Transmit};
use pmip6_wire::nd::{NdMessage, RouterAdvertisement, RouterSolicitation};
use pmip6_wire::{Message, ParseConfig};

use crate::mh_socket::{MhSocket, RECEIVE_BUFFER};
use crate::nd_socket::{self, ND_HOP_LIMIT, NdDatagram, NdSocket};

/// Datagrams read in one wake-up before the engine's outputs are drained.
pub const DATAGRAMS_PER_WAKEUP: usize = 64;

/// The wall clock as the engines take it: time since 1970-01-01 00:00 UTC.
pub fn now() -> Now {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// What an engine offers its driver; implemented by [`Lma`] and [`Mag`].
pub trait Engine {
    /// The engine's event type.
    type Event: Debug;
    /// A received Mobility Header message.
    fn handle_message(&mut self, now: Now, received: Received);
    /// Deadlines at or before `now`.
    fn handle_timeout(&mut self, now: Now);
    /// The next message to send.
    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// The next data-plane change.
    fn poll_intent(&mut self) -> Option<Intent>;
    /// The next event.
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// The next deadline.
    fn poll_timeout(&self) -> Option<Now>;
    /// A few lines describing the engine's state, for the status file.
    fn status(&self) -> String;
    /// A Router Solicitation on an access link; engines without access links ignore it.
    fn handle_router_solicitation(&mut self, now: Now, interface: InterfaceId, src: Ipv6Addr, rs: &RouterSolicitation) {
        let _ = (now, interface, src, rs);
    }
}

impl Engine for Lma {
    type Event = pmip6_engine::lma::LmaEvent;
    fn handle_message(&mut self, now: Now, received: Received) {
        Lma::handle_message(self, now, received);
    }
    fn handle_timeout(&mut self, now: Now) {
        Lma::handle_timeout(self, now);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        Lma::poll_transmit(self)
    }
    fn poll_intent(&mut self) -> Option<Intent> {
        Lma::poll_intent(self)
    }
    fn poll_event(&mut self) -> Option<Self::Event> {
        Lma::poll_event(self)
    }
    fn poll_timeout(&self) -> Option<Now> {
        Lma::poll_timeout(self)
    }
    fn status(&self) -> String {
        let cache = self.binding_cache();
        let mut out = format!("bindings {}\n", cache.len());
        for binding in cache.iter() {
            let prefixes: Vec<String> = binding.prefixes().iter().map(ToString::to_string).collect();
            out += &format!(
                "binding {} {:?} proxy_coa={} prefixes={}\n",
                binding.mn_id(),
                binding.state(),
                binding.primary().proxy_coa(),
                prefixes.join(",")
            );
        }
        out
    }
}

impl Engine for Mag {
    type Event = pmip6_engine::mag::MagEvent;
    fn handle_message(&mut self, now: Now, received: Received) {
        Mag::handle_message(self, now, received);
    }
    fn handle_timeout(&mut self, now: Now) {
        Mag::handle_timeout(self, now);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        Mag::poll_transmit(self)
    }
    fn poll_intent(&mut self) -> Option<Intent> {
        Mag::poll_intent(self)
    }
    fn poll_event(&mut self) -> Option<Self::Event> {
        Mag::poll_event(self)
    }
    fn poll_timeout(&self) -> Option<Now> {
        Mag::poll_timeout(self)
    }
    fn status(&self) -> String {
        let list = self.binding_update_list();
        let bound = list.iter().filter(|entry| entry.is_bound()).count();
        format!("entries {}\nbound {bound}\n", list.len())
    }
    fn handle_router_solicitation(&mut self, now: Now, interface: InterfaceId, src: Ipv6Addr, rs: &RouterSolicitation) {
        Mag::handle_router_solicitation(self, now, interface, src, None, rs);
    }
}

/// A message the driver must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A Mobility Header message to a peer, from the bound address.
    Mobility(Message, Ipv6Addr),
    /// A Router Advertisement on an access link to `dst`.
    RouterAdvertisement(InterfaceId, Ipv6Addr, RouterAdvertisement),
}

/// What the driver counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams read.
    pub received: u64,
    /// Datagrams that did not parse (dropped).
    pub malformed: u64,
    /// Messages sent.
    pub sent: u64,
    /// Messages that could not be emitted or sent.
    pub send_errors: u64,
    /// Router Advertisements for an interface without an access-link socket (not sent).
    pub unsupported_transmits: u64,
    /// ICMPv6 datagrams read on access links.
    pub nd_received: u64,
    /// Of those, dropped: not a well-formed Router Solicitation, or a hop limit below 255.
    pub nd_dropped: u64,
}

/// The driver: an engine, how its messages are parsed, its counters and its status file.
#[derive(Debug)]
pub struct Driver<E> {
    /// The engine.
    pub engine: E,
    /// How received messages are parsed (the engine's MuHo type).
    pub parse: ParseConfig,
    /// Our address (the destination of what the socket receives).
    pub local: Ipv6Addr,
    /// Counters.
    pub counters: Counters,
    status_file: Option<PathBuf>,
    last_status: String,
}

impl<E: Engine> Driver<E> {
    /// A driver for `engine` listening on `local`.
    pub fn new(engine: E, parse: ParseConfig, local: Ipv6Addr, status_file: Option<PathBuf>) -> Self {
        Self { engine, parse, local, counters: Counters::default(), status_file, last_status: String::new() }
    }

    /// One received datagram: parsed and fed to the engine, or counted and logged as malformed.
    pub fn handle_datagram(&mut self, now: Now, bytes: &[u8], src: Ipv6Addr) {
        self.counters.received += 1;
        match Message::parse(bytes, &self.parse) {
            Ok(message) => {
                tracing::debug!(%src, %message, "received");
                self.engine.handle_message(now, Received { src, dst: self.local, message });
            }
            Err(e) => {
                self.counters.malformed += 1;
                tracing::warn!(%src, kind = %e.kind, offset = e.offset, len = bytes.len(), "malformed Mobility Header dropped");
            }
        }
    }

    /// One ICMPv6 datagram from access link `interface`: a Router Solicitation with hop limit
    /// 255 goes to the engine; anything else is counted and dropped (RFC 4861 §6.1.1).
    pub fn handle_nd_datagram(&mut self, now: Now, interface: InterfaceId, datagram: NdDatagram, bytes: &[u8]) {
        self.counters.nd_received += 1;
        let src = datagram.src;
        if datagram.hop_limit != Some(ND_HOP_LIMIT) {
            self.counters.nd_dropped += 1;
            tracing::warn!(%src, interface = interface.0, hop_limit = ?datagram.hop_limit, "router solicitation with a hop limit other than 255 dropped");
            return;
        }
        match NdMessage::parse(bytes) {
            Ok(NdMessage::RouterSolicitation(rs)) => {
                tracing::debug!(%src, interface = interface.0, %rs, "received");
                self.engine.handle_router_solicitation(now, interface, src, &rs);
            }
            Ok(NdMessage::RouterAdvertisement(_)) => {
                self.counters.nd_dropped += 1;
                tracing::debug!(%src, interface = interface.0, "router advertisement on an access link ignored");
            }
            Err(e) => {
                self.counters.nd_dropped += 1;
                tracing::warn!(%src, interface = interface.0, kind = %e.kind, offset = e.offset, "malformed router solicitation dropped");
            }
        }
    }

    /// Drains the engine's outputs: transmits to send (returned), intents and events logged.
    pub fn drain(&mut self) -> Vec<Outgoing> {
        let mut out = Vec::new();
        while let Some(transmit) = self.engine.poll_transmit() {
            match transmit {
                Transmit::Mobility { src, dst, message } => {
                    if src != self.local {
                        tracing::warn!(%src, local = %self.local, "transmit from another address: sent from the bound one");
                    }
                    out.push(Outgoing::Mobility(message, dst));
                }
                Transmit::RouterAdvertisement { interface, dst, ra, .. } => {
                    out.push(Outgoing::RouterAdvertisement(interface, dst, ra));
                }
            }
        }
        while let Some(intent) = self.engine.poll_intent() {
            tracing::info!(?intent, "data-plane intent");
        }
        while let Some(event) = self.engine.poll_event() {
            tracing::info!(?event, "event");
        }
        out
    }

    /// The status text: the engine's state and the counters.
    pub fn status(&self) -> String {
        let c = &self.counters;
        format!(
            "{}received {}\nmalformed {}\nsent {}\nsend_errors {}\nnd_received {}\nnd_dropped {}\n",
            self.engine.status(),
            c.received,
            c.malformed,
            c.sent,
            c.send_errors,
            c.nd_received,
            c.nd_dropped
        )
    }

    fn write_status(&mut self) {
        let Some(path) = &self.status_file else { return };
        let status = self.status();
        if status == self.last_status {
            return;
        }
        if let Err(e) = write_atomically(path, &status) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the status file");
        }
        self.last_status = status;
    }

    /// Runs until `shutdown` completes (or a socket fails), with the Mobility Header socket and
    /// the access-link sockets (none at an LMA).
    pub async fn run(
        &mut self,
        socket: &MhSocket,
        access: &[NdSocket],
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut buf = vec![0u8; RECEIVE_BUFFER];
        let mut nd_buf = vec![0u8; RECEIVE_BUFFER];
        self.flush(socket, access).await;
        loop {
            let deadline = self.engine.poll_timeout();
            let sleep_for = deadline.map(|d| d.saturating_sub(now())).unwrap_or(Duration::from_secs(3600));
            let wake = tokio::time::Instant::now() + sleep_for;
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                received = socket.recv(&mut buf) => {
                    let mut next = Some(received?);
                    let mut count = 0;
                    while let Some((len, src)) = next.take() {
                        let bytes = buf.get(..len).unwrap_or(&buf);
                        self.handle_datagram(now(), bytes, src);
                        count += 1;
                        if count >= DATAGRAMS_PER_WAKEUP {
                            break;
                        }
                        match socket.try_recv(&mut buf) {
                            Ok(datagram) => next = Some(datagram),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                received = nd_socket::recv_any(access, &mut nd_buf), if !access.is_empty() => {
                    let (index, datagram) = received?;
                    let interface = access.get(index).map(NdSocket::interface).unwrap_or(InterfaceId(0));
                    let bytes = nd_buf.get(..datagram.len).unwrap_or(&nd_buf);
                    self.handle_nd_datagram(now(), interface, datagram, bytes);
                }
                () = tokio::time::sleep_until(wake), if deadline.is_some() => {
                    self.engine.handle_timeout(now());
                }
            }
            self.flush(socket, access).await;
        }
        self.write_status();
        Ok(())
    }

    /// Drains the outputs, sends the transmits, updates the status file.
    pub async fn flush(&mut self, socket: &MhSocket, access: &[NdSocket]) {
        for outgoing in self.drain() {
            let (result, dst) = match outgoing {
                Outgoing::Mobility(message, dst) => {
                    tracing::debug!(%dst, %message, "sending");
                    (socket.send(&message, dst).await, dst)
                }
                Outgoing::RouterAdvertisement(interface, dst, ra) => {
                    let Some(nd) = access.iter().find(|s| s.interface() == interface) else {
                        self.counters.unsupported_transmits += 1;
                        tracing::info!(interface = interface.0, %dst, "router advertisement for an interface without a socket");
                        continue;
                    };
                    tracing::debug!(interface = interface.0, %dst, %ra, "sending");
                    (nd.send_ra(ra, dst).await, dst)
                }
            };
            match result {
                Ok(()) => self.counters.sent += 1,
                Err(e) => {
                    self.counters.send_errors += 1;
                    tracing::warn!(%dst, error = %e, "send failed");
                }
            }
        }
        self.write_status();
    }
}

fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmip6_engine::InterfaceId;
    use pmip6_engine::lma::LmaConfig;
    use pmip6_engine::mag::{AccessInterface, MagConfig, MobileNodeEntry};
    use pmip6_wire::{AccessTechnologyType, MnIdentifier, Prefix};

    const LMAA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
    const PROXY_COA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2);

    /// The octets of the PBU a MAG sends when `mn1` attaches.
    fn valid_pbu(now: Now) -> Vec<u8> {
        let mut config = MagConfig::new(PROXY_COA, LMAA);
        config.interfaces.push(AccessInterface::new(
            InterfaceId(2),
            AccessTechnologyType::Ieee8023,
            "fe80::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
        ));
        config.mobile_nodes.push(MobileNodeEntry {
            mn_id: MnIdentifier::nai("mn1@example.net"),
            macs: vec![[2, 0, 0, 0, 0, 1]],
            multihoming: false,
        });
        let mut mag = Mag::new(config);
        mag.handle_attach(now, InterfaceId(2), [2, 0, 0, 0, 0, 1]);
        let transmit = std::iter::from_fn(|| mag.poll_transmit())
            .find_map(|t| match t {
                Transmit::Mobility { message, .. } => Some(message),
                Transmit::RouterAdvertisement { .. } => None,
            })
            .expect("the MAG sends a PBU on attach");
        transmit.to_vec(&PROXY_COA, &LMAA).expect("the PBU emits")
    }

    #[test]
    fn a_malformed_burst_does_not_stop_the_next_pbu() {
        let now = Duration::from_secs(1_800_000_000);
        let mut config = LmaConfig::new(LMAA);
        config.prefix_pools.push(Prefix::new("2001:db8:100::".parse().unwrap_or(Ipv6Addr::UNSPECIFIED), 40));
        let mut driver = Driver::new(Lma::new(config), ParseConfig::default(), LMAA, None);
        let pbu = valid_pbu(now);
        // Every prefix of the PBU (all truncated), plus the PBU with each octet flipped in turn.
        let mut garbage: Vec<Vec<u8>> = (0..pbu.len()).map(|n| pbu[..n].to_vec()).collect();
        garbage.extend((0..pbu.len()).map(|i| {
            let mut bad = pbu.clone();
            bad[i] ^= 0xff;
            bad
        }));
        for bytes in &garbage {
            driver.handle_datagram(now, bytes, PROXY_COA);
            let _ = driver.drain();
        }
        assert!(driver.counters.malformed > 0);
        assert_eq!(driver.counters.received, garbage.len() as u64);
        // Whatever the flipped octets made of the cache, the original PBU is answered.
        driver.handle_datagram(now, &pbu, PROXY_COA);
        let sent = driver.drain();
        assert!(
            sent.iter().any(|o| matches!(o, Outgoing::Mobility(Message::BindingAck(_), dst) if *dst == PROXY_COA)),
            "no PBA: {sent:?}"
        );
        assert!(driver.engine.status().starts_with("bindings"));
    }

    #[test]
    fn access_link_datagrams_other_than_router_solicitations_with_hop_limit_255_are_dropped() {
        let mut config = MagConfig::new(PROXY_COA, LMAA);
        config.interfaces.push(AccessInterface::new(
            InterfaceId(2),
            AccessTechnologyType::Ieee8023,
            "fe80::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
        ));
        let mut driver = Driver::new(Mag::new(config), ParseConfig::default(), PROXY_COA, None);
        let src: Ipv6Addr = "fe80::2".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        let rs = [133, 0, 0, 0, 0, 0, 0, 0];
        let at = |hop_limit| NdDatagram { len: rs.len(), src, hop_limit };
        let now = Duration::from_secs(1_800_000_000);
        driver.handle_nd_datagram(now, InterfaceId(2), at(Some(64)), &rs);
        driver.handle_nd_datagram(now, InterfaceId(2), at(None), &rs);
        driver.handle_nd_datagram(now, InterfaceId(2), at(Some(255)), &rs[..5]);
        driver.handle_nd_datagram(now, InterfaceId(2), at(Some(255)), &[133, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(driver.counters.nd_dropped, 4);
        // A well-formed RS reaches the engine (which cannot serve it: no link-layer address).
        driver.handle_nd_datagram(now, InterfaceId(2), at(Some(255)), &rs);
        assert_eq!(driver.counters.nd_dropped, 4);
        assert_eq!(driver.counters.nd_received, 5);
        let _ = driver.drain();
    }
}
