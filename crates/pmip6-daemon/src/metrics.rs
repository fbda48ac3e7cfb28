//! The daemons' Prometheus metrics.
//!
//! Counters are updated by the driver as the information passes: received datagrams and their
//! decode errors (by `ErrorKind::name()`), sent messages by type (PBAs by status), and the
//! engine's events (retransmissions, heartbeat misses). Gauges (bindings, mobile nodes, flows)
//! and the counters the engine keeps itself (flow moves) are brought up to date from the engine
//! at scrape time, in the driver, so that a scrape is one consistent picture. The data plane
//! observes [`Metrics::observe_apply`].
//!
//! Every name starts with `pmip6_`; counters end in `_total` in the text format.

use std::time::Duration;

use pmip6_wire::{BaStatus, Message};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A label set of one label.
type Label = Vec<(&'static str, String)>;

fn label(name: &'static str, value: impl Into<String>) -> Label {
    vec![(name, value.into())]
}

/// Brings a counter up to `value` (a counter the engine keeps itself); never goes down.
pub fn sync_counter(counter: &Counter, value: u64) {
    let current = counter.get();
    if value > current {
        counter.inc_by(value - current);
    }
}

/// Sets a gauge from a count.
pub fn set_gauge(gauge: &Gauge, value: usize) {
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
}

/// The metrics of one daemon and the registry they are encoded from.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Mobility Header datagrams read.
    pub datagrams_received: Counter,
    /// Mobility Header datagrams the kernel dropped because the socket's buffer was full: load
    /// shed past capacity (`SO_RXQ_OVFL`).
    pub datagrams_shed: Counter,
    /// Mobility Header messages received, by message type.
    pub messages_received: Family<Label, Counter>,
    /// Proxy Binding Updates received (LMA).
    pub pbu_received: Counter,
    /// Messages sent, by message type.
    pub messages_sent: Family<Label, Counter>,
    /// Proxy Binding Acknowledgements sent, by status code (LMA).
    pub pba_sent: Family<Label, Counter>,
    /// Proxy Binding Acknowledgements received, by status code (MAG).
    pub pba_received: Family<Label, Counter>,
    /// Datagrams that did not parse, by error kind.
    pub decode_errors: Family<Label, Counter>,
    /// Messages sent successfully (Mobility Header and Router Advertisements).
    pub sends: Counter,
    /// Messages that could not be emitted or sent.
    pub send_errors: Counter,
    /// ICMPv6 datagrams read on access links (MAG).
    pub nd_received: Counter,
    /// Of those, dropped.
    pub nd_dropped: Counter,
    /// Retransmissions: PBUs (MAG), notifications and revocations (LMA).
    pub retransmissions: Counter,
    /// Heartbeat requests that went unanswered when a peer was declared unreachable.
    pub heartbeat_misses: Counter,
    /// Peers (MAGs, or the LMA at a MAG) declared unreachable.
    pub peers_unreachable: Counter,
    /// Flow moves (explicit, by rule change, by failover), as the flow engine counts them.
    pub flow_moves: Counter,
    /// Explicit flow moves asked through the control API that the engine accepted.
    pub api_moves: Counter,
    /// Engine events, by kind.
    pub events: Family<Label, Counter>,
    /// Binding cache entries (LMA) or Binding Update List entries (MAG).
    pub bindings: Gauge,
    /// Mobile nodes with at least one binding.
    pub mobile_nodes: Gauge,
    /// Live flows of the flow engine.
    pub flows: Gauge,
    /// Peers with active sessions (LMA).
    pub peers: Gauge,
    /// Seconds since the daemon started.
    pub uptime_seconds: Gauge,
    /// Time to apply one batch of data-plane intents.
    pub dataplane_apply_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered.
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("pmip6"),
            datagrams_received: Counter::default(),
            datagrams_shed: Counter::default(),
            messages_received: Family::default(),
            pbu_received: Counter::default(),
            messages_sent: Family::default(),
            pba_sent: Family::default(),
            pba_received: Family::default(),
            decode_errors: Family::default(),
            sends: Counter::default(),
            send_errors: Counter::default(),
            nd_received: Counter::default(),
            nd_dropped: Counter::default(),
            retransmissions: Counter::default(),
            heartbeat_misses: Counter::default(),
            peers_unreachable: Counter::default(),
            flow_moves: Counter::default(),
            api_moves: Counter::default(),
            events: Family::default(),
            bindings: Gauge::default(),
            mobile_nodes: Gauge::default(),
            flows: Gauge::default(),
            peers: Gauge::default(),
            uptime_seconds: Gauge::default(),
            dataplane_apply_seconds: Histogram::new(exponential_buckets(0.000_01, 4.0, 10)),
        };
        let r = &mut m.registry;
        r.register("datagrams_received", "Mobility Header datagrams read", m.datagrams_received.clone());
        r.register(
            "datagrams_shed",
            "Mobility Header datagrams the kernel dropped with the socket buffer full",
            m.datagrams_shed.clone(),
        );
        r.register("messages_received", "Mobility Header messages received, by type", m.messages_received.clone());
        r.register("pbu_received", "Proxy Binding Updates received", m.pbu_received.clone());
        r.register("messages_sent", "Messages sent, by type", m.messages_sent.clone());
        r.register("pba_sent", "Proxy Binding Acknowledgements sent, by status", m.pba_sent.clone());
        r.register("pba_received", "Proxy Binding Acknowledgements received, by status", m.pba_received.clone());
        r.register("decode_errors", "Datagrams that did not parse, by error kind", m.decode_errors.clone());
        r.register("sends", "Messages sent", m.sends.clone());
        r.register("send_errors", "Messages that could not be emitted or sent", m.send_errors.clone());
        r.register("nd_received", "ICMPv6 datagrams read on access links", m.nd_received.clone());
        r.register("nd_dropped", "ICMPv6 datagrams dropped on access links", m.nd_dropped.clone());
        r.register("retransmissions", "PBU, notification and revocation retransmissions", m.retransmissions.clone());
        r.register(
            "heartbeat_misses",
            "Unanswered heartbeat requests, counted when a peer is declared unreachable",
            m.heartbeat_misses.clone(),
        );
        r.register("peers_unreachable", "Peers declared unreachable", m.peers_unreachable.clone());
        r.register("flow_moves", "Flow moves counted by the flow engine", m.flow_moves.clone());
        r.register("api_moves", "Explicit flow moves accepted through the control API", m.api_moves.clone());
        r.register("events", "Engine events, by kind", m.events.clone());
        r.register("bindings", "Binding cache or Binding Update List entries", m.bindings.clone());
        r.register("mobile_nodes", "Mobile nodes with at least one binding", m.mobile_nodes.clone());
        r.register("flows", "Live flows of the flow engine", m.flows.clone());
        r.register("peers", "Peers with active sessions", m.peers.clone());
        r.register("uptime_seconds", "Seconds since the daemon started", m.uptime_seconds.clone());
        r.register(
            "dataplane_apply_seconds",
            "Time to apply one batch of data-plane intents",
            m.dataplane_apply_seconds.clone(),
        );
        m
    }

    /// One batch of data-plane intents applied in `elapsed`.
    pub fn observe_apply(&self, elapsed: Duration) {
        self.dataplane_apply_seconds.observe(elapsed.as_secs_f64());
    }

    /// A Mobility Header message received.
    pub fn message_received(&self, message: &Message) {
        self.messages_received.get_or_create(&label("type", message_type(message))).inc();
        match message {
            Message::BindingUpdate(_) => {
                self.pbu_received.inc();
            }
            Message::BindingAck(ack) => {
                self.pba_received.get_or_create(&label("status", status_label(ack.status))).inc();
            }
            _ => {}
        }
    }

    /// A datagram that did not parse.
    pub fn decode_error(&self, kind: &pmip6_wire::ErrorKind) {
        self.decode_errors.get_or_create(&label("kind", kind.name())).inc();
    }

    /// A Mobility Header message sent.
    pub fn message_sent(&self, message: &Message) {
        self.messages_sent.get_or_create(&label("type", message_type(message))).inc();
        if let Message::BindingAck(ack) = message {
            self.pba_sent.get_or_create(&label("status", status_label(ack.status))).inc();
        }
    }

    /// A Router Advertisement sent.
    pub fn router_advertisement_sent(&self) {
        self.messages_sent.get_or_create(&label("type", "router-advertisement")).inc();
    }

    /// An engine event, by its kind (the variant's name).
    pub fn event(&self, kind: &str) {
        self.events.get_or_create(&label("kind", kind)).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoding error would leave a partial text.
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The label of a PBA status: its number.
fn status_label(status: BaStatus) -> String {
    u8::from(status).to_string()
}

/// A short name of a message's type, for labels.
pub fn message_type(message: &Message) -> &'static str {
    match message {
        Message::BindingUpdate(_) => "pbu",
        Message::BindingAck(_) => "pba",
        Message::BindingRevocation(_) => "binding-revocation",
        Message::UpdateNotification(_) => "update-notification",
        Message::UpdateNotificationAck(_) => "update-notification-ack",
        Message::Heartbeat(_) => "heartbeat",
        Message::BindingError(_) => "binding-error",
        Message::Unknown(_) => "unknown",
    }
}

/// The kind of an event: the variant name of its `Debug` form.
pub fn event_kind(debug: &str) -> &str {
    let end = debug.find([' ', '(', '{']).unwrap_or(debug.len());
    debug.get(..end).unwrap_or(debug)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_every_family_and_the_histogram() {
        let m = Metrics::new();
        m.pbu_received.inc();
        m.decode_errors.get_or_create(&label("kind", "truncated")).inc();
        m.observe_apply(Duration::from_millis(2));
        let text = m.encode();
        assert!(text.contains("pmip6_pbu_received_total 1"), "{text}");
        assert!(text.contains("pmip6_decode_errors_total{kind=\"truncated\"} 1"), "{text}");
        assert!(text.contains("pmip6_dataplane_apply_seconds_count 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn counters_sync_upwards_only() {
        let c = Counter::default();
        sync_counter(&c, 5);
        sync_counter(&c, 3);
        assert_eq!(c.get(), 5);
        assert_eq!(event_kind("BindingCreated { binding: b0.1 }"), "BindingCreated");
        assert_eq!(event_kind("LmaReachable"), "LmaReachable");
    }
}
