//! `pmip6 load`: a PBU load generator against a running LMA, over a real raw Mobility Header
//! socket — what a crowd of MAGs would send.
//!
//! It acts as one MAG (its Proxy-CoA is the address it binds) for `mobile_nodes` mobile nodes:
//! the first PBU of each node is an initial registration, later ones are refreshes. PBUs leave
//! at the offered rate, in batches per timer tick; every PBA is matched to its PBU by MN-ID and
//! sequence number to give the answer latency. A PBU with no answer when the run ends (after a
//! grace period) is counted lost. The report is what an operator asks of an LMA: answered rate,
//! latency percentiles, losses, status codes.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv6Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use pmip6_daemon::MhSocket;
use pmip6_wire::{
    AccessTechnologyType, BindingUpdate, BuFlags, HandoffIndicator, Message, MnIdentifier, MobilityOption, ParseConfig,
    Prefix, Timestamp,
};

/// What to offer.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The LMA address.
    pub lma: Ipv6Addr,
    /// Our address (the Proxy-CoA); must be local.
    pub from: Ipv6Addr,
    /// PBUs per second offered.
    pub rate: u32,
    /// How long to offer them.
    pub duration: Duration,
    /// Distinct mobile nodes (each PBU after the first of a node is a refresh).
    pub mobile_nodes: u32,
    /// How long to wait for the last answers.
    pub grace: Duration,
}

/// What happened.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadReport {
    /// PBUs offered per second.
    pub offered_rate: f64,
    /// PBUs sent.
    pub sent: u64,
    /// PBUs that could not be sent (socket errors; the kernel's buffer full).
    pub send_errors: u64,
    /// PBAs matched to a PBU.
    pub answered: u64,
    /// Answers per second over the offering period.
    pub answered_rate: f64,
    /// PBUs never answered.
    pub lost: u64,
    /// Answers by status code.
    pub statuses: BTreeMap<u8, u64>,
    /// Answer latency, median, in microseconds.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest.
    pub max_us: f64,
}

/// PBUs sent per timer tick at most (the tick is about a millisecond).
const BATCH: usize = 4096;

/// Offers the load and reports. Runs on the current tokio runtime.
pub async fn run(config: &LoadConfig) -> anyhow::Result<LoadReport> {
    let socket = MhSocket::bind(config.from)
        .with_context(|| format!("cannot bind a Mobility Header socket to {}", config.from))?;
    let ids: Vec<MnIdentifier> =
        (0..config.mobile_nodes.max(1)).map(|i| MnIdentifier::nai(&format!("load{i}@example.net"))).collect();
    let mut sequence: Vec<u16> = vec![0; ids.len()];
    let mut outstanding: HashMap<(usize, u16), Instant> = HashMap::new();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut report = LoadReport { offered_rate: f64::from(config.rate), ..LoadReport::default() };
    let total = (f64::from(config.rate) * config.duration.as_secs_f64()) as u64;
    let interval = Duration::from_secs_f64(1.0 / f64::from(config.rate.max(1)));
    let mut buf = vec![0u8; 4096];
    let start = Instant::now();
    let mut next = 0u64;
    let mut grace_end: Option<Instant> = None;
    loop {
        // Send what is due.
        let now = Instant::now();
        let mut batch = 0;
        while next < total && start + interval.mul_f64(next as f64) <= now && batch < BATCH {
            let mn = (next % ids.len() as u64) as usize;
            let seq = sequence[mn].wrapping_add(1);
            sequence[mn] = seq;
            let pbu = build_pbu(&ids[mn], seq, mn, next < ids.len() as u64);
            match socket.send(&pbu, config.lma).await {
                Ok(()) => {
                    report.sent += 1;
                    outstanding.insert((mn, seq), Instant::now());
                }
                Err(_) => report.send_errors += 1,
            }
            next += 1;
            batch += 1;
        }
        // Read every answer waiting.
        loop {
            match socket.try_recv(&mut buf) {
                Ok(datagram) => {
                    answer(buf.get(..datagram.len).unwrap_or(&[]), &mut outstanding, &mut latencies, &mut report)
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e).context("receiving"),
            }
        }
        if next >= total {
            let end = *grace_end.get_or_insert_with(|| Instant::now() + config.grace);
            if outstanding.is_empty() || Instant::now() >= end {
                break;
            }
        }
        // Wait for an answer or the next tick.
        let due = if next < total {
            start + interval.mul_f64(next as f64)
        } else {
            Instant::now() + Duration::from_millis(1)
        };
        let wait = due.saturating_duration_since(Instant::now()).max(Duration::from_micros(200));
        if let Ok(received) = tokio::time::timeout(wait, socket.recv(&mut buf)).await {
            let datagram = received.context("receiving")?;
            answer(buf.get(..datagram.len).unwrap_or(&[]), &mut outstanding, &mut latencies, &mut report);
        }
    }
    let offering = start.elapsed().min(config.duration.max(Duration::from_millis(1)));
    report.lost = outstanding.len() as u64;
    report.answered_rate = report.answered as f64 / offering.as_secs_f64().max(config.duration.as_secs_f64());
    latencies.sort_unstable();
    let at = |q: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() - 1) as f64 * q).round() as usize;
        latencies.get(i).map(|d| d.as_secs_f64() * 1e6).unwrap_or(0.0)
    };
    report.p50_us = at(0.5);
    report.p99_us = at(0.99);
    report.max_us = at(1.0);
    Ok(report)
}

/// Matches a PBA to its PBU (by MN-ID and sequence number) and counts it.
fn answer(
    bytes: &[u8],
    outstanding: &mut HashMap<(usize, u16), Instant>,
    latencies: &mut Vec<Duration>,
    report: &mut LoadReport,
) {
    let Ok(Message::BindingAck(ack)) = Message::parse(bytes, &ParseConfig::default()) else { return };
    let mn = ack.options.iter().find_map(|o| match o {
        MobilityOption::MnIdentifier(id) => mobile_node_index(&id.identifier),
        _ => None,
    });
    if let Some(sent_at) = mn.and_then(|mn| outstanding.remove(&(mn, ack.sequence))) {
        latencies.push(sent_at.elapsed());
        report.answered += 1;
        *report.statuses.entry(u8::from(ack.status)).or_default() += 1;
    }
}

/// The index `i` of the NAI `load<i>@example.net`.
fn mobile_node_index(nai: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(nai).ok()?;
    text.strip_prefix("load")?.strip_suffix("@example.net")?.parse().ok()
}

/// A PBU as a MAG sends it for mobile node `mn` (RFC 5213 §6.9.1.1): MN-ID, a Home Network
/// Prefix request (::/0), Handoff Indicator (new interface first, unchanged on refreshes),
/// Access Technology Type, MN Link-layer Identifier and Timestamp.
fn build_pbu(id: &MnIdentifier, sequence: u16, mn: usize, initial: bool) -> Message {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let mac = [0x02, 0x10, (mn >> 24) as u8, (mn >> 16) as u8, (mn >> 8) as u8, mn as u8];
    let handoff = if initial { HandoffIndicator::NewInterface } else { HandoffIndicator::NotChanged };
    Message::BindingUpdate(BindingUpdate {
        sequence,
        flags: BuFlags::A | BuFlags::P,
        lifetime: 900,
        options: vec![
            MobilityOption::MnIdentifier(id.clone()),
            MobilityOption::HomeNetworkPrefix(Prefix::ALL_ZERO),
            MobilityOption::HandoffIndicator(handoff),
            MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee8023),
            MobilityOption::MnLinkLayerIdentifier(mac.to_vec()),
            MobilityOption::Timestamp(Timestamp::from_unix(now)),
        ],
    })
}
