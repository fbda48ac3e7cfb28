//! The event loop around an engine: socket readable, the engine's next deadline, shutdown.
//!
//! The loop is thin on purpose (the timer part is quinn's `drive_timer`): read the clock, feed
//! the engine, then drain its outputs in a fixed order — data-plane intents are applied to the
//! kernel first ([`DataPlane`]), then the messages are sent, so that a PBA or a Router
//! Advertisement leaves only once the tunnel and routes it announces exist; events are logged
//! and counted. Each wake-up does bounded work: at most [`DATAGRAMS_PER_WAKEUP`] datagrams (or
//! queued packets) are read before the outputs are drained.
//!
//! Inputs: the Mobility Header socket; at a MAG, the access links' Router Solicitations and
//! their carrier changes (a link going down is a detach); at an LMA, the packets of unknown
//! flows from the NFQUEUE (`learn` steering) or every packet (`nfqueue`); the control API;
//! the engine's next deadline; shutdown.

use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pmip6_engine::lma::Lma;
use pmip6_engine::mag::Mag;
use pmip6_engine::{Intent, InterfaceId, Now, Received, Transmit};
use pmip6_wire::nd::{NdMessage, RouterAdvertisement, RouterSolicitation};
use pmip6_wire::{Message, ParseConfig};

use crate::api::{self, ApiServer, Call, Request, Response};
use crate::dataplane::DataPlane;
use crate::link_monitor::{LinkChange, LinkMonitor};
use crate::metrics::Metrics;
use crate::mh_socket::{MhDatagram, MhSocket, RECEIVE_BUFFER};
use crate::nd_socket::{self, ALL_ROUTERS, ND_HOP_LIMIT, NdDatagram, NdSocket};
use crate::tap::{Direction, Tap};

/// Datagrams read in one wake-up before the engine's outputs are drained.
pub const DATAGRAMS_PER_WAKEUP: usize = 64;

/// Queued packets given their verdict in one pass; the kernel holds at most 1024 per queue by
/// default, so one pass empties it.
pub const QUEUED_PER_WAKEUP: usize = 1024;

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
    /// Answers a control API request against the engine ([`crate::api`]).
    fn answer(driver: &mut Driver<Self>, now: Now, request: Request) -> Response
    where
        Self: Sized;
    /// Counts what `event` means in `metrics` (retransmissions, heartbeat misses) and names the
    /// mobile node and the peer it is about, for the log line.
    fn account_event(&self, metrics: &Metrics, event: &Self::Event) -> EventSubject;
    /// A downlink packet the kernel queued (an unknown flow in `learn` steering, every packet
    /// in `nfqueue`): where it goes, or `None` when it is not ours to steer. Engines that do
    /// not steer flows return `None`.
    fn handle_queued_packet(&mut self, now: Now, packet: &[u8]) -> Option<pmip6_engine::flow::Route> {
        let _ = (now, packet);
        None
    }
    /// Access link `interface` lost its carrier: every mobile node attached there has left
    /// (RFC 5213 §6.9.1.4). Engines without access links ignore it.
    fn handle_link_down(&mut self, now: Now, interface: InterfaceId) {
        let _ = (now, interface);
    }
}

/// The mobile node (MN-ID as text) and the peer an event is about, where known.
pub type EventSubject = (Option<String>, Option<Ipv6Addr>);

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
    fn answer(driver: &mut Driver<Self>, now: Now, request: Request) -> Response {
        api::lma::answer(driver, now, request)
    }
    fn handle_queued_packet(&mut self, now: Now, packet: &[u8]) -> Option<pmip6_engine::flow::Route> {
        use pmip6_engine::flow::{Route, Verdict};
        match self.handle_packet(now, packet) {
            Ok(Verdict::Flow { route, .. }) => Some(route),
            // A new flow the table cannot take follows the base route (RFC 5213 §5.6.2).
            Ok(Verdict::Refused(_)) => Some(Route::PrefixRoute),
            Ok(Verdict::NotMobileNode) | Err(_) => None,
        }
    }
    fn account_event(&self, metrics: &Metrics, event: &Self::Event) -> EventSubject {
        use pmip6_engine::lma::LmaEvent as E;
        let mn = |binding| self.binding_cache().get(binding).map(|b| api::mn_text(b.mn_id()));
        match event {
            E::BindingCreated { mn_id, proxy_coa, .. } => (Some(api::mn_text(mn_id)), Some(*proxy_coa)),
            E::BindingRefreshed { binding, proxy_coa, .. }
            | E::AttachmentAdded { binding, proxy_coa }
            | E::AttachmentRemoved { binding, proxy_coa, .. }
            | E::BindingDeregistered { binding, proxy_coa }
            | E::BindingExpired { binding, proxy_coa } => (mn(*binding), Some(*proxy_coa)),
            E::BindingHandedOff { binding, to, .. } => (mn(*binding), Some(*to)),
            E::BindingDeleted { binding, .. } => (mn(*binding), None),
            E::DeregistrationIgnored { binding, from, .. } => (binding.and_then(mn), Some(*from)),
            E::PbuHeld { candidate, from, .. } => (mn(*candidate), Some(*from)),
            E::PbuRejected { from, mn_id, .. } => (mn_id.as_ref().map(api::mn_text), Some(*from)),
            E::NotificationSent { binding, peer, attempt, .. } => {
                if *attempt > 0 {
                    metrics.retransmissions.inc();
                }
                (mn(*binding), Some(*peer))
            }
            E::NotificationAcknowledged { binding, peer, .. }
            | E::NotificationRefused { binding, peer, .. }
            | E::NotificationGivenUp { binding, peer, .. } => (mn(*binding), Some(*peer)),
            E::RevocationSent { peer, attempt, .. } => {
                if *attempt > 0 {
                    metrics.retransmissions.inc();
                }
                (None, Some(*peer))
            }
            E::PeerUnreachable { peer, missed } => {
                metrics.heartbeat_misses.inc_by(u64::from(*missed));
                metrics.peers_unreachable.inc();
                (None, Some(*peer))
            }
            E::RevocationAcknowledged { peer, .. }
            | E::RevocationFailed { peer, .. }
            | E::RevocationGivenUp { peer, .. }
            | E::PeerReachable { peer }
            | E::PeerRestarted { peer, .. } => (None, Some(*peer)),
            E::BindingErrorSent { to, .. } => (None, Some(*to)),
            E::BindingErrorReceived { from, .. } | E::Ignored { from, .. } => (None, Some(*from)),
            E::SteeringRefused { mn_id, .. } => (Some(api::mn_text(mn_id)), None),
            E::ConfigurationIgnored { .. } => (None, None),
        }
    }
}

impl Engine for Mag {
    type Event = pmip6_engine::mag::MagEvent;
    fn handle_message(&mut self, now: Now, received: Received) {
        Mag::handle_message(self, now, received);
    }
    fn handle_link_down(&mut self, now: Now, interface: InterfaceId) {
        // RFC 5213 §6.9.1.4: the mobile nodes of a link without carrier have left it; each
        // session there is de-registered.
        let gone: Vec<[u8; 6]> = self
            .binding_update_list()
            .iter()
            .filter(|entry| entry.key.interface == interface)
            .map(|entry| entry.key.mac)
            .collect();
        for mac in gone {
            self.handle_detach(now, interface, mac);
        }
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
    fn answer(driver: &mut Driver<Self>, now: Now, request: Request) -> Response {
        api::mag::answer(driver, now, request)
    }
    fn account_event(&self, metrics: &Metrics, event: &Self::Event) -> EventSubject {
        use pmip6_engine::mag::MagEvent as E;
        let lma = Some(self.config().lmaa);
        match event {
            E::PbuSent { key, transmission, .. } => {
                if *transmission > 1 {
                    metrics.retransmissions.inc();
                }
                (Some(api::mn_text(&key.mn_id)), lma)
            }
            E::LmaUnreachable { missed } => {
                metrics.heartbeat_misses.inc_by(u64::from(*missed));
                metrics.peers_unreachable.inc();
                (None, lma)
            }
            E::Attached { key, .. }
            | E::AttachWhileRegistering { key }
            | E::GaveUp { key, .. }
            | E::Superseded { key, .. }
            | E::BindingAccepted { key, .. }
            | E::BindingRejected { key, .. }
            | E::UnusableAck { key, .. }
            | E::SequenceResynchronised { key, .. }
            | E::Detached { key }
            | E::Deregistered { key, .. }
            | E::BindingExpired { key }
            | E::PrefixesUpdated { key, .. }
            | E::ReregistrationRequested { key }
            | E::Revoked { key, .. } => (Some(api::mn_text(&key.mn_id)), lma),
            E::UnknownSession { mn_id, .. } => (mn_id.as_ref().map(api::mn_text), lma),
            E::UnknownPeer { src, .. } => (None, Some(*src)),
            E::StaleAck { .. } | E::Ignored { .. } | E::LmaReachable | E::LmaRestarted { .. } => (None, lma),
            _ => (None, None),
        }
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
    /// The metrics (shared with the data plane, which observes its apply times).
    pub metrics: Arc<Metrics>,
    status_file: Option<PathBuf>,
    last_status: String,
    started: Now,
    api: Option<tokio::sync::mpsc::Receiver<Call>>,
    api_server: Option<ApiServer>,
    dataplane: Option<DataPlane>,
    intents: Vec<Intent>,
    links: Option<LinkMonitor>,
    carrier: std::collections::HashMap<InterfaceId, bool>,
    tap: Option<Tap>,
}

impl<E: Engine> Driver<E> {
    /// A driver for `engine` listening on `local`.
    pub fn new(engine: E, parse: ParseConfig, local: Ipv6Addr, status_file: Option<PathBuf>) -> Self {
        Self {
            engine,
            parse,
            local,
            counters: Counters::default(),
            metrics: Arc::new(Metrics::new()),
            status_file,
            last_status: String::new(),
            started: now(),
            api: None,
            api_server: None,
            dataplane: None,
            intents: Vec::new(),
            links: None,
            carrier: std::collections::HashMap::new(),
            tap: None,
        }
    }

    /// Applies the engine's intents to the kernel through `dataplane` (without one, intents are
    /// only logged).
    pub fn attach_dataplane(&mut self, dataplane: DataPlane) {
        self.dataplane = Some(dataplane);
    }

    /// The data plane, if attached.
    pub fn dataplane(&self) -> Option<&DataPlane> {
        self.dataplane.as_ref()
    }

    /// Removes everything the data plane made (at shutdown).
    pub async fn close_dataplane(&mut self) {
        if let Some(dataplane) = self.dataplane.take() {
            dataplane.close().await;
        }
    }

    /// Records the signalling sent and received from now on in `tap` ([`crate::tap`]).
    pub fn attach_tap(&mut self, tap: Tap) {
        self.tap = Some(tap);
    }

    /// Flushes and closes the tap, if any (at shutdown).
    pub fn close_tap(&mut self) {
        if let Some(mut tap) = self.tap.take() {
            match tap.flush() {
                Ok(()) => tracing::info!(path = %tap.path().display(), counts = ?tap.counts(), "pcap tap closed"),
                Err(e) => tracing::error!(path = %tap.path().display(), error = %e, "cannot flush the pcap tap"),
            }
        }
    }

    /// Writes one record to the tap, if any; on a write error the tap is logged once and
    /// dropped (the daemon goes on without it).
    fn tap_record(&mut self, record: impl FnOnce(&mut Tap) -> io::Result<()>) {
        let Some(tap) = self.tap.as_mut() else { return };
        if let Err(e) = record(tap) {
            tracing::error!(path = %tap.path().display(), error = %e, "cannot write the pcap tap; signalling is no longer recorded");
            self.tap = None;
        }
    }

    /// Watches the carrier of the access links: a link going down detaches its mobile nodes.
    pub fn attach_link_monitor(&mut self, monitor: LinkMonitor) {
        self.links = Some(monitor);
    }

    /// A carrier change of an interface: a fall from carrier to none is a detach.
    pub fn handle_link_change(&mut self, now: Now, change: LinkChange) {
        let before = self.carrier.insert(change.interface, change.carrier);
        if !change.carrier && before != Some(false) {
            tracing::info!(interface = change.interface.0, "access link lost its carrier");
            self.engine.handle_link_down(now, change.interface);
        }
    }

    /// Packets the kernel queued: each gets its flow's route as its mark (so the first packet
    /// of a flow takes the path its later packets will), at most [`QUEUED_PER_WAKEUP`].
    ///
    /// The queue is emptied before a new flow's map element goes in (and again right after):
    /// once the element is in the kernel, the flow's next packets skip the queue, and any of
    /// its packets still waiting here would be overtaken.
    fn handle_queue(&mut self, now: Now) {
        let Some(dataplane) = self.dataplane.as_mut() else { return };
        for _ in 0..QUEUED_PER_WAKEUP {
            let Some(queue) = dataplane.queue() else { return };
            let packet = match queue.get_mut().recv() {
                Ok(packet) => packet,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the flow queue");
                    return;
                }
            };
            let route = self.engine.handle_queued_packet(now, packet.payload());
            let mark = route.and_then(|r| dataplane.mark_of(r));
            if let Some(queue) = dataplane.queue()
                && let Err(e) = queue.get_mut().verdict(packet, mark)
            {
                tracing::warn!(error = %e, "cannot give a queued packet its verdict");
            }
        }
    }

    /// Takes control API requests from `receiver` in [`Driver::run`]; `server` (the listeners)
    /// lives as long as the driver.
    pub fn attach_api(&mut self, receiver: tokio::sync::mpsc::Receiver<Call>, server: Option<ApiServer>) {
        self.api = Some(receiver);
        self.api_server = server;
    }

    /// The control API's listeners, if started.
    pub fn api_server(&self) -> Option<&ApiServer> {
        self.api_server.as_ref()
    }

    /// Time since the driver was built.
    pub fn uptime(&self, now: Now) -> Duration {
        now.saturating_sub(self.started)
    }

    /// Answers one control API request now (what [`Driver::run`] does with each request).
    pub fn answer(&mut self, request: Request) -> Response {
        E::answer(self, now(), request)
    }

    fn on_event(&self, event: &E::Event) {
        let (mn_id, peer) = self.engine.account_event(&self.metrics, event);
        let text = format!("{event:?}");
        self.metrics.event(crate::metrics::event_kind(&text));
        tracing::info!(mn_id = mn_id.as_deref(), peer = peer.map(tracing::field::display), event = %text, "event");
    }

    /// One received datagram addressed to our bound address: see [`Driver::handle_received`].
    pub fn handle_datagram(&mut self, now: Now, bytes: &[u8], src: Ipv6Addr) {
        let datagram = MhDatagram { len: bytes.len(), src, dst: self.local, hop_limit: None, dropped: None };
        self.handle_received(now, bytes, datagram);
    }

    /// One received datagram, with the destination address and hop limit the kernel reported:
    /// parsed and fed to the engine (which sees the destination), or counted and logged as
    /// malformed.
    pub fn handle_received(&mut self, now: Now, bytes: &[u8], datagram: MhDatagram) {
        let MhDatagram { src, dst, hop_limit, dropped, .. } = datagram;
        self.counters.received += 1;
        if let Some(dropped) = dropped {
            // Past capacity the kernel sheds load at the socket; the running count comes with
            // the next datagram read.
            crate::metrics::sync_counter(&self.metrics.datagrams_shed, u64::from(dropped));
        }
        // Malformed datagrams are recorded too: they are what an operator wants to see.
        self.tap_record(|tap| tap.record_mh(src, dst, bytes, Direction::Received { hop_limit }));
        match Message::parse(bytes, &self.parse) {
            Ok(message) => {
                self.metrics.message_received(&message);
                let mn_id = message.options().iter().find_map(|o| match o {
                    pmip6_wire::MobilityOption::MnIdentifier(mn) => Some(api::mn_text(mn)),
                    _ => None,
                });
                tracing::debug!(peer = %src, %dst, ?hop_limit, mn_id = mn_id.as_deref(), %message, "received");
                self.engine.handle_message(now, Received { src, dst, message });
            }
            Err(e) => {
                self.counters.malformed += 1;
                self.metrics.decode_error(&e.kind);
                tracing::warn!(peer = %src, kind = %e.kind, offset = e.offset, len = bytes.len(), "malformed Mobility Header dropped");
            }
        }
    }

    /// One ICMPv6 datagram from access link `interface`: a Router Solicitation with hop limit
    /// 255 goes to the engine; anything else is counted and dropped (RFC 4861 §6.1.1).
    pub fn handle_nd_datagram(&mut self, now: Now, interface: InterfaceId, datagram: NdDatagram, bytes: &[u8]) {
        self.counters.nd_received += 1;
        let src = datagram.src;
        // The socket does not report the destination: Router Solicitations go to all-routers
        // (RFC 4861 §6.3.7).
        let hop_limit = datagram.hop_limit;
        self.tap_record(|tap| tap.record_nd(src, ALL_ROUTERS, bytes, Direction::Received { hop_limit }));
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
            self.intents.push(intent);
        }
        while let Some(event) = self.engine.poll_event() {
            self.on_event(&event);
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
                    while let Some(datagram) = next.take() {
                        let bytes = buf.get(..datagram.len).unwrap_or(&buf);
                        self.handle_received(now(), bytes, datagram);
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
                ready = queue_readable(self.dataplane.as_mut()) => {
                    if let Err(e) = ready {
                        tracing::warn!(error = %e, "the flow queue failed; no more queued packets");
                        if let Some(dataplane) = self.dataplane.as_mut() {
                            dataplane.drop_queue();
                        }
                    }
                    self.handle_queue(now());
                    self.apply_intents().await;
                    // Packets queued while the new flows' elements went in are older than
                    // those now marked in the kernel: out with them at once.
                    self.handle_queue(now());
                }
                change = next_link_change(self.links.as_mut()) => match change {
                    Some(change) => self.handle_link_change(now(), change),
                    None => self.links = None,
                },
                call = api::next_call(&mut self.api), if self.api.is_some() => match call {
                    Some(Call { request, reply }) => {
                        // Answered against the engine now; what it produced is flushed below.
                        let response = E::answer(self, now(), request);
                        let _gone = reply.send(response);
                    }
                    None => self.api = None,
                },
                () = tokio::time::sleep_until(wake), if deadline.is_some() => {
                    self.engine.handle_timeout(now());
                }
            }
            self.flush(socket, access).await;
        }
        self.write_status();
        Ok(())
    }

    /// Applies the engine's pending intents now (the messages wait for [`Driver::flush`]).
    async fn apply_intents(&mut self) {
        while let Some(intent) = self.engine.poll_intent() {
            tracing::info!(?intent, "data-plane intent");
            self.intents.push(intent);
        }
        let intents = std::mem::take(&mut self.intents);
        if let Some(dataplane) = self.dataplane.as_mut()
            && !intents.is_empty()
        {
            let elapsed = dataplane.apply(intents).await;
            self.metrics.observe_apply(elapsed);
        }
    }

    /// Drains the outputs, applies the intents, then sends the transmits; updates the status
    /// file.
    pub async fn flush(&mut self, socket: &MhSocket, access: &[NdSocket]) {
        let outgoing = self.drain();
        self.apply_intents().await;
        for outgoing in outgoing {
            let (result, dst) = match outgoing {
                Outgoing::Mobility(message, dst) => {
                    tracing::debug!(peer = %dst, %message, "sending");
                    let result = socket.send(&message, dst).await;
                    if result.is_ok() {
                        self.metrics.message_sent(&message);
                        let src = socket.local();
                        self.tap_record(|tap| tap.record_sent_message(src, dst, &message));
                    }
                    (result, dst)
                }
                Outgoing::RouterAdvertisement(interface, dst, ra) => {
                    let Some(nd) = access.iter().find(|s| s.interface() == interface) else {
                        self.counters.unsupported_transmits += 1;
                        tracing::info!(interface = interface.0, %dst, "router advertisement for an interface without a socket");
                        continue;
                    };
                    tracing::debug!(interface = interface.0, %dst, %ra, "sending");
                    let recorded = self.tap.is_some().then(|| ra.clone());
                    let result = nd.send_ra(ra, dst).await;
                    if result.is_ok() {
                        self.metrics.router_advertisement_sent();
                        if let Some(ra) = recorded {
                            let src = nd.link_local();
                            self.tap_record(|tap| tap.record_sent_ra(src, dst, &ra));
                        }
                    }
                    (result, dst)
                }
            };
            match result {
                Ok(()) => self.counters.sent += 1,
                Err(e) => {
                    self.counters.send_errors += 1;
                    tracing::warn!(peer = %dst, error = %e, "send failed");
                }
            }
        }
        self.write_status();
    }
}

/// Waits until the data plane's flow queue is readable (readiness cleared: the caller reads
/// until `WouldBlock`); never completes without a queue.
async fn queue_readable(dataplane: Option<&mut DataPlane>) -> io::Result<()> {
    match dataplane.and_then(DataPlane::queue) {
        Some(queue) => {
            let mut guard = queue.readable_mut().await?;
            guard.clear_ready();
            Ok(())
        }
        None => std::future::pending().await,
    }
}

/// The next carrier change; never completes without a monitor.
async fn next_link_change(links: Option<&mut LinkMonitor>) -> Option<LinkChange> {
    match links {
        Some(links) => links.next().await,
        None => std::future::pending().await,
    }
}

fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pmip6_engine::InterfaceId;
    use pmip6_engine::lma::LmaConfig;
    use pmip6_engine::mag::{AccessInterface, MagConfig, MobileNodeEntry};
    use pmip6_wire::{AccessTechnologyType, MnIdentifier, Prefix};

    pub(crate) const LMAA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
    pub(crate) const PROXY_COA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2);

    /// The octets of the PBU a MAG at `PROXY_COA` sends to `LMAA` when `mn1` attaches (shared
    /// with the control API's tests).
    pub(crate) fn valid_pbu(now: Now) -> Vec<u8> {
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
            ipv4: false,
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
