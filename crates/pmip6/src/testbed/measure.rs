//! `pmip6 testbed measure`: attach latency, flow-move latency and the datagrams a move loses or
//! reorders, on a testbed of its own, reported as median, p99 and max (measured and reported,
//! not asserted against wall time).
//!
//! How each figure is taken:
//!
//! - **Attach** (RS → RA): an `AF_PACKET` socket in the mobile node's namespace sees every frame
//!   of its interfaces, with the kernel's receive timestamp (`SO_TIMESTAMPNS`); the clock starts
//!   at the first Router Solicitation leaving the interface (`PACKET_OUTGOING`) after the link
//!   comes up and stops at the first Router Advertisement arriving on it with a Prefix
//!   Information option from the pool. Each fresh attachment starts from a link that has been
//!   down until the LMA's `/bindings` shows the binding de-registered (the entry may still sit in
//!   its MinDelayBeforeBCEDelete window: this is the attach of a node the domain has just let
//!   go, not of one it never saw). Each re-attachment is a link flap: down and up again at once,
//!   so the MAG sees the carrier go and come back within a millisecond or two and the node's
//!   Router Solicitation may meet the MAG's de-registration in flight. Whether the MAG noticed
//!   the flap at all depends on when the kernel reports the carrier change (its link watch
//!   batches carrier events, at most once a second); each re-attachment is therefore classed by
//!   the PBUs the LMA accepted meanwhile (the attachment's sequence number in `/bindings`):
//!   none (answered from the MAG's binding) or a de-registration and a registration.
//! - **RS → address usable**: the same clock to the `RTM_NEWADDR` of a pool address on that
//!   interface, from an rtnetlink socket in the mobile node's namespace (time taken when the
//!   notification is read, on its own thread). The testbed turns duplicate address detection
//!   off, so this is SLAAC without DAD.
//! - **Tunnel and routes programmed**: after each RA, `ip -6 route show table all proto 157`
//!   in the LMA's namespace must hold the advertised prefix, and in the MAG's the prefix on its
//!   access link and a default route into a tunnel (in a table of its own). Checked after the RA
//!   arrived: what is there then was there when the RA was sent only because the daemons apply
//!   the data plane before the message that announces it.
//! - **Flow move**: two UDP flows from the correspondent node at a fixed rate each; one of them
//!   moves back and forth between 3G (`utran`) and WLAN (`wlan`) through `POST /flows/move`;
//!   the clock runs from just before the call to the receiver's first datagram of that flow on
//!   the new interface ([`FlowCount::switched_at`], `Instant::now()` at the receiver).
//!   Datagrams lost and reordered come from the sequence numbers: over the whole run, around
//!   each move (from the call to 100 ms after the switch) and, as a control, in the 100 ms
//!   before each call, when nothing moves.
//! - **Forwarding** (optional): one flow following the prefix route and one steered to the
//!   other MAG, each sent as fast as the correspondent node's thread can for the same time, in
//!   the order steered, unsteered, unsteered, steered; the rate each arrives at at the mobile
//!   node, and their ratio.
//!
//! p99 is the nearest-rank percentile: with 100 samples, the 99th smallest.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IoSliceMut;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, LinkAddr, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv,
    recvmsg, setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;
use pmip6_daemon::api::client;
use pmip6_wire::nd::NdMessage;
use serde::Serialize;

use super::topology::{self, CN, MAGS, MN_ID, MagSite, Node};
use super::traffic::{Counts, FlowCount, Receiver, Sender, enter_namespace};
use super::{Testbed, in_pool};

/// The two flows of the move measurement (correspondent node source ports): the first stays,
/// the second moves.
pub const MOVE_FLOWS: [u16; 2] = [5001, 5002];
/// The flows of the forwarding measurement: unsteered, steered.
pub const FORWARDING_FLOWS: [u16; 2] = [5003, 5004];

/// How long one attachment may take before it counts as failed (a lost first RS is retried by
/// the mobile node after its 4 s RtrSolicitationInterval).
const ATTACH_TIMEOUT: Duration = Duration::from_secs(6);
/// How long a flow move may take before it counts as failed.
const MOVE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the flows run on the new path after each move, before the next.
const MOVE_SETTLE: Duration = Duration::from_millis(100);

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// Fresh attachments, and as many re-attachments.
    pub attachments: usize,
    /// Flow moves.
    pub moves: usize,
    /// Datagrams per second of each flow during the moves.
    pub rate: u32,
    /// How long each forwarding blast lasts; `None` skips the forwarding measurement.
    pub forwarding: Option<Duration>,
    /// Leave the testbed up at the end.
    pub keep: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { attachments: 100, moves: 50, rate: 5000, forwarding: None, keep: false }
    }
}

/// Median, p99 and max of a set of durations, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Samples.
    pub count: usize,
    /// Smallest.
    pub min_ms: f64,
    /// Median (the lower of the two middle samples for an even count).
    pub median_ms: f64,
    /// Nearest-rank 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Summary {
    /// The summary of `samples` (all zero when there are none).
    pub fn of(samples: &[Duration]) -> Self {
        let mut sorted: Vec<f64> = samples.iter().map(|d| ms(*d)).collect();
        sorted.sort_by(f64::total_cmp);
        let Some(&max_ms) = sorted.last() else { return Self::default() };
        let rank = |p: f64| {
            // Nearest rank: the smallest sample with at least p of the samples at or below it.
            let k = (p * sorted.len() as f64).ceil() as usize;
            sorted[k.clamp(1, sorted.len()) - 1]
        };
        Self { count: sorted.len(), min_ms: sorted[0], median_ms: rank(0.5), p99_ms: rank(0.99), max_ms }
    }
}

/// Which kind of attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttachKind {
    /// The link was down until the LMA de-registered the binding.
    Fresh,
    /// The link went down and up again at once.
    Reattach,
}

/// One attachment, from the mobile node's packets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttachSample {
    /// The interface (if1 toward mag1, if2 toward mag2).
    pub interface: String,
    /// The prefix the RA carried.
    pub prefix: String,
    /// First RS out → first RA with a pool prefix in.
    #[serde(serialize_with = "as_ms")]
    pub rs_to_ra: Duration,
    /// First RS out → a pool address on the interface (`RTM_NEWADDR`); `None` if none came.
    #[serde(serialize_with = "as_ms_opt")]
    pub rs_to_address: Option<Duration>,
    /// `ip link set up` issued → first RS out (the mobile node's own part).
    #[serde(serialize_with = "as_ms")]
    pub up_to_rs: Duration,
    /// Router Solicitations sent before the RA arrived.
    pub solicitations: u32,
    /// Whether both timestamps came from the kernel (`SO_TIMESTAMPNS`), not from the reader.
    pub kernel_timestamps: bool,
    /// The LMA's and the MAG's routes for the prefix (and the MAG's tunnel) were there after
    /// the RA.
    pub programmed: bool,
    /// PBUs the LMA accepted for this interface from the link going down to the RA (the
    /// advance of the attachment's sequence number in `/bindings`): 0 when the MAG answered
    /// from its binding without signalling, 2 for a de-registration and a new registration.
    pub signalled: Option<u64>,
}

/// All attachments of one kind.
#[derive(Debug, Clone, Serialize)]
pub struct AttachReport {
    /// Which kind.
    pub kind: AttachKind,
    /// Attachments asked for.
    pub asked: usize,
    /// The attachments that got an RA.
    pub samples: Vec<AttachSample>,
    /// Link down → the LMA shows the binding de-registered, polled through `/bindings` (fresh
    /// attachments only).
    #[serde(serialize_with = "as_ms_vec")]
    pub deregistration: Vec<Duration>,
    /// What went wrong, one line per failed attachment.
    pub failures: Vec<String>,
}

impl AttachReport {
    /// RS → RA.
    pub fn rs_to_ra(&self) -> Summary {
        Summary::of(&self.samples.iter().map(|s| s.rs_to_ra).collect::<Vec<_>>())
    }

    /// RS → RA of the attachments of `interface`.
    pub fn rs_to_ra_via(&self, interface: &str) -> Summary {
        Summary::of(&self.samples.iter().filter(|s| s.interface == interface).map(|s| s.rs_to_ra).collect::<Vec<_>>())
    }

    /// RS → RA of the attachments for which the LMA accepted `signalled` PBUs (see
    /// [`AttachSample::signalled`]); `None`: any number but 0.
    pub fn rs_to_ra_signalled(&self, signalled: Option<u64>) -> Summary {
        let matches = |s: &&AttachSample| match signalled {
            Some(n) => s.signalled == Some(n),
            None => s.signalled.is_some_and(|n| n != 0),
        };
        Summary::of(&self.samples.iter().filter(matches).map(|s| s.rs_to_ra).collect::<Vec<_>>())
    }

    /// RS → address usable.
    pub fn rs_to_address(&self) -> Summary {
        Summary::of(&self.samples.iter().filter_map(|s| s.rs_to_address).collect::<Vec<_>>())
    }

    /// Link up → RS.
    pub fn up_to_rs(&self) -> Summary {
        Summary::of(&self.samples.iter().map(|s| s.up_to_rs).collect::<Vec<_>>())
    }

    /// Attachments whose data plane was there after the RA.
    pub fn programmed(&self) -> usize {
        self.samples.iter().filter(|s| s.programmed).count()
    }
}

/// The flow moves.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MoveReport {
    /// Moves asked for.
    pub asked: usize,
    /// Datagrams per second of each flow.
    pub rate: u32,
    /// API call → first datagram of the flow on the new interface, per completed move.
    #[serde(serialize_with = "as_ms_vec")]
    pub latency: Vec<Duration>,
    /// API call → the API's answer.
    #[serde(serialize_with = "as_ms_vec")]
    pub api: Vec<Duration>,
    /// A `GET /status` round trip after each move: what the client and the control socket cost
    /// without a move (a baseline for `api` and `latency`).
    #[serde(serialize_with = "as_ms_vec")]
    pub status_round_trip: Vec<Duration>,
    /// Datagrams sent per flow over the whole run.
    pub sent_per_flow: u64,
    /// Datagrams received, both flows, over the whole run.
    pub received: u64,
    /// Datagrams lost, both flows, over the whole run (judged by the highest sequence number
    /// received).
    pub lost: u64,
    /// Datagrams reordered, both flows, over the whole run.
    pub reordered: u64,
    /// Per flow (staying, moving): lost and reordered from just before each call to
    /// [`MOVE_SETTLE`] after the flow's first datagram on the new interface.
    pub after_moves: [Losses; 2],
    /// Per flow (staying, moving): lost and reordered in the [`MOVE_SETTLE`] just before each
    /// call, when nothing moves: the control for `after_moves`.
    pub quiet: [Losses; 2],
    /// The moving flow's losses around each move, in order (even: to 3G, odd: to WLAN).
    pub per_move: Vec<Losses>,
    /// What went wrong, one line per failed move.
    pub failures: Vec<String>,
}

/// Datagrams lost and reordered in some windows of time (a datagram counted lost in one window
/// and arriving late in the next counts −1 there, so windows add up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Losses {
    /// Lost (gaps below the highest sequence number received).
    pub lost: i64,
    /// Arrived after a higher sequence number.
    pub reordered: i64,
}

impl Losses {
    /// Adds what `flow` counted between `start` and `end`.
    fn add(&mut self, start: &Counts, end: &Counts, flow: u16) {
        let (a, b) = (start.get(&flow).cloned().unwrap_or_default(), end.get(&flow).cloned().unwrap_or_default());
        let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.lost += signed(b.lost()) - signed(a.lost());
        self.reordered += signed(b.reordered) - signed(a.reordered);
    }
}

/// Steered vs unsteered forwarding.
#[derive(Debug, Clone, Serialize)]
pub struct ForwardingReport {
    /// How long each flow was sent (two blasts each, in the order steered, unsteered,
    /// unsteered, steered).
    #[serde(serialize_with = "as_ms")]
    pub duration: Duration,
    /// Datagrams sent and received on if1 by the flow following the prefix route.
    pub unsteered_sent: u64,
    /// Received of those.
    pub unsteered_received: u64,
    /// Datagrams sent by the flow steered to mag2.
    pub steered_sent: u64,
    /// Received of those on if2.
    pub steered_received: u64,
}

impl ForwardingReport {
    /// Datagrams per second received of the unsteered flow.
    pub fn unsteered_rate(&self) -> f64 {
        self.unsteered_received as f64 / self.duration.as_secs_f64()
    }

    /// Datagrams per second received of the steered flow.
    pub fn steered_rate(&self) -> f64 {
        self.steered_received as f64 / self.duration.as_secs_f64()
    }

    /// Steered ÷ unsteered receive rate.
    pub fn ratio(&self) -> f64 {
        self.steered_rate() / self.unsteered_rate().max(f64::MIN_POSITIVE)
    }
}

/// Everything measured in one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Fresh attachments.
    pub fresh: AttachReport,
    /// Re-attachments.
    pub reattach: AttachReport,
    /// Flow moves.
    pub moves: MoveReport,
    /// Steered vs unsteered forwarding, if measured.
    pub forwarding: Option<ForwardingReport>,
}

/// Brings up `bed`, measures, and takes it down (unless `options.keep`); progress goes to `say`.
pub fn run(bed: &Testbed, options: &Options, say: &mut dyn FnMut(&str)) -> anyhow::Result<Report> {
    // Its own testbed: one that exists already is someone's, and `run` takes its testbed down.
    if !topology::existing_namespaces(&bed.names).is_empty() || bed.dir.exists() {
        bail!(
            "testbed {} exists; measure brings up its own: choose another --prefix or take it down first",
            bed.names.prefix()
        );
    }
    say(&format!("== bringing up testbed {}", bed.names.prefix()));
    bed.up(true, say)?;
    let result = measure_all(bed, options, say);
    if options.keep {
        say(&format!("testbed left up: `pmip6 testbed status --prefix {}`", bed.names.prefix()));
    } else {
        bed.down(&mut |_| {})?;
        say("testbed removed");
    }
    result
}

/// Every measurement on a testbed that is up with both interfaces attached.
pub fn measure_all(bed: &Testbed, options: &Options, say: &mut dyn FnMut(&str)) -> anyhow::Result<Report> {
    say(&format!("== {} fresh attachments, alternating if1 and if2", options.attachments));
    let fresh = measure_attachments(bed, AttachKind::Fresh, options.attachments)?;
    say(&format!("   {} answered, {} failed", fresh.samples.len(), fresh.failures.len()));
    say(&format!("== {} re-attachments (link flaps), alternating if1 and if2", options.attachments));
    let reattach = measure_attachments(bed, AttachKind::Reattach, options.attachments)?;
    say(&format!("   {} answered, {} failed", reattach.samples.len(), reattach.failures.len()));
    say(&format!("== {} flow moves, two flows at {} datagrams/s each", options.moves, options.rate));
    let moves = measure_moves(bed, options.moves, options.rate)?;
    say(&format!("   {} completed, {} failed", moves.latency.len(), moves.failures.len()));
    let forwarding = match options.forwarding {
        Some(duration) => {
            say(&format!("== forwarding: unsteered then steered, {:.1} s each", duration.as_secs_f64()));
            Some(measure_forwarding(bed, duration)?)
        }
        None => None,
    };
    Ok(Report { fresh, reattach, moves, forwarding })
}

/// `count` attachments of `kind`, alternating between the two MAGs. Both of the mobile node's
/// interfaces must be attached; they are again at the end.
pub fn measure_attachments(bed: &Testbed, kind: AttachKind, count: usize) -> anyhow::Result<AttachReport> {
    let watch = Watch::start(&bed.names.namespace(Node::Mn))?;
    let mut report =
        AttachReport { kind, asked: count, samples: Vec::new(), deregistration: Vec::new(), failures: Vec::new() };
    for i in 0..count {
        let site = &MAGS[i % MAGS.len()];
        wait_binding(bed, site, true, Duration::from_secs(5))
            .with_context(|| format!("{} is not registered before attachment {i}", site.access))?;
        watch.drain();
        let sequence_before = attachment_sequence(bed, site)?;
        let down = Instant::now();
        bed.detach(site)?;
        if kind == AttachKind::Fresh {
            match wait_binding(bed, site, false, Duration::from_secs(5)) {
                Ok(()) => report.deregistration.push(down.elapsed()),
                Err(e) => report.failures.push(format!("{i} ({}): {e:#}", site.access)),
            }
        }
        let since = SystemTime::now();
        link_up(bed, site)?;
        match watch.attachment(site.access, since, ATTACH_TIMEOUT) {
            Ok(seen) => {
                let programmed = programmed(bed, site, &seen.prefix);
                let sequence_after = attachment_sequence(bed, site)?;
                let signalled = sequence_before.zip(sequence_after).map(|(a, b)| b.wrapping_sub(a) & 0xffff);
                report.samples.push(AttachSample { programmed, signalled, ..seen });
            }
            Err(e) => report.failures.push(format!("{i} ({}): {e:#}", site.access)),
        }
        // The next attachment starts from a registered interface with its address.
        wait_binding(bed, site, true, Duration::from_secs(5))
            .with_context(|| format!("{} did not register again after attachment {i}", site.access))?;
        wait_address(bed, site, Duration::from_secs(5))?;
    }
    watch.stop();
    Ok(report)
}

/// `count` moves of the second of [`MOVE_FLOWS`], alternating 3G and WLAN, with both flows at
/// `rate` datagrams per second to the address of if1.
pub fn measure_moves(bed: &Testbed, count: usize, rate: u32) -> anyhow::Result<MoveReport> {
    let [wlan, umts] = &MAGS;
    let addr = wait_address(bed, wlan, Duration::from_secs(5))?;
    wait_address(bed, umts, Duration::from_secs(5))?;
    let receiver = Receiver::start(&bed.names.namespace(Node::Mn))?;
    let sender = Sender::start(&bed.names.namespace(Node::Cn), CN, addr, &MOVE_FLOWS, rate)?;
    let warm = u64::from(rate / 10).max(100);
    let counts = wait_for(&receiver, Duration::from_secs(5), |c| MOVE_FLOWS.iter().all(|p| received(c, *p) >= warm));
    if !MOVE_FLOWS.iter().all(|p| received(&counts, *p) >= warm) {
        bail!("the flows do not reach the mobile node: {counts:?}");
    }
    let moving = MOVE_FLOWS[1];
    let fid = flow_id(bed, moving)?;
    let mut report = MoveReport { asked: count, rate, ..MoveReport::default() };
    let targets = [("utran", umts.access), ("wlan", wlan.access)];
    for i in 0..count {
        let (target, interface) = targets[i % 2];
        let body = format!(r#"{{"mn_id": "{MN_ID}", "fid": {fid}, "target": "{target}"}}"#);
        let quiet_start = receiver.counts();
        std::thread::sleep(MOVE_SETTLE);
        let quiet_end = receiver.counts();
        for (losses, flow) in report.quiet.iter_mut().zip(MOVE_FLOWS) {
            losses.add(&quiet_start, &quiet_end, flow);
        }
        let asked = Instant::now();
        let answer = client::request_blocking(&bed.lma_socket(), "POST", "/flows/move", Some(body))?;
        report.api.push(asked.elapsed());
        if answer.status != 200 {
            report.failures.push(format!("move {i} to {target}: {} {}", answer.status, answer.body.trim()));
            continue;
        }
        let deadline = asked + MOVE_TIMEOUT;
        let switched = loop {
            let counts = receiver.counts();
            let flow = counts.get(&moving);
            let at = flow.and_then(|f| f.switched_at).filter(|t| *t > asked);
            if let Some(at) = at.filter(|_| flow.and_then(|f| f.last_interface.as_deref()) == Some(interface)) {
                break Some(at);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        match switched {
            Some(at) => report.latency.push(at - asked),
            None => {
                report.failures.push(format!("move {i} to {target}: no datagram on {interface} in {MOVE_TIMEOUT:?}"))
            }
        }
        std::thread::sleep(MOVE_SETTLE);
        let moved = receiver.counts();
        for (losses, flow) in report.after_moves.iter_mut().zip(MOVE_FLOWS) {
            losses.add(&quiet_end, &moved, flow);
        }
        let asked = Instant::now();
        client::request_blocking(&bed.lma_socket(), "GET", "/status", None)?;
        report.status_round_trip.push(asked.elapsed());
        let mut this = Losses::default();
        this.add(&quiet_end, &moved, moving);
        report.per_move.push(this);
    }
    let sent = sender.stop();
    std::thread::sleep(Duration::from_millis(200));
    let after = receiver.stop();
    report.sent_per_flow = sent;
    for port in MOVE_FLOWS {
        let end = after.get(&port).cloned().unwrap_or_default();
        report.received += end.received;
        report.lost += end.lost();
        report.reordered += end.reordered;
    }
    Ok(report)
}

/// One flow following the prefix route to if1 and one steered to mag2, each sent as fast as
/// the sender can, twice for `duration`, one after the other.
pub fn measure_forwarding(bed: &Testbed, duration: Duration) -> anyhow::Result<ForwardingReport> {
    let [wlan, umts] = &MAGS;
    let addr = wait_address(bed, wlan, Duration::from_secs(5))?;
    let (cn, mn) = (bed.names.namespace(Node::Cn), bed.names.namespace(Node::Mn));
    let receiver = Receiver::start(&mn)?;
    let [plain, steered] = FORWARDING_FLOWS;
    // The steered flow: learned by the LMA at a low rate, moved to 3G, then blasted.
    {
        let warm = Sender::start(&cn, CN, addr, &[steered], 200)?;
        wait_for(&receiver, Duration::from_secs(3), |c| received(c, steered) >= 20);
        let fid = flow_id(bed, steered)?;
        let body = format!(r#"{{"mn_id": "{MN_ID}", "fid": {fid}, "target": "utran"}}"#);
        let answer = client::request_blocking(&bed.lma_socket(), "POST", "/flows/move", Some(body))?;
        if answer.status != 200 {
            bail!("cannot steer flow {steered}: {} {}", answer.status, answer.body.trim());
        }
        let counts = wait_for(&receiver, Duration::from_secs(2), |c| last(c, steered) == Some(umts.access));
        if last(&counts, steered) != Some(umts.access) {
            bail!("flow {steered} does not arrive on {} after the move", umts.access);
        }
        warm.stop();
    }
    let blast = |port: u16, interface: &str| -> anyhow::Result<(u64, u64)> {
        let before = on_interface(&receiver.counts(), port, interface);
        let sender = Sender::start(&cn, CN, addr, &[port], 10_000_000)?;
        std::thread::sleep(duration);
        let sent = sender.stop();
        std::thread::sleep(Duration::from_millis(300));
        Ok((sent, on_interface(&receiver.counts(), port, interface) - before))
    };
    // Steered, unsteered, unsteered, steered: a drift in the machine's load weighs on both.
    let mut report = ForwardingReport {
        duration: duration * 2,
        unsteered_sent: 0,
        unsteered_received: 0,
        steered_sent: 0,
        steered_received: 0,
    };
    for steer in [true, false, false, true] {
        if steer {
            let (sent, got) = blast(steered, umts.access)?;
            report.steered_sent += sent;
            report.steered_received += got;
        } else {
            let (sent, got) = blast(plain, wlan.access)?;
            report.unsteered_sent += sent;
            report.unsteered_received += got;
        }
    }
    receiver.stop();
    Ok(report)
}

impl Report {
    /// The report as a table, with DESIGN.md's goals beside the figures.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{:<58} {:>5} {:>9} {:>9} {:>9}   goal", "what (ms)", "n", "median", "p99", "max");
        let mut row = |what: &str, s: &Summary, goal: &str| {
            let _ = writeln!(
                out,
                "{what:<58} {:>5} {:>9.3} {:>9.3} {:>9.3}   {goal}",
                s.count, s.median_ms, s.p99_ms, s.max_ms
            );
        };
        for (name, a) in [("fresh attach", &self.fresh), ("re-attach", &self.reattach)] {
            row(&format!("{name}: RS out → RA with prefix in"), &a.rs_to_ra(), "p99 ≤ 2");
            for site in &MAGS {
                let via = a.rs_to_ra_via(site.access);
                row(&format!("  of which via {} ({})", site.access, site.node.name()), &via, "");
            }
            if a.kind == AttachKind::Reattach {
                row("  of which answered from the MAG's binding (no PBU)", &a.rs_to_ra_signalled(Some(0)), "");
                row("  of which after PBUs (de-registration, registration)", &a.rs_to_ra_signalled(None), "");
            }
            row(&format!("{name}: RS out → pool address on the MN (no DAD)"), &a.rs_to_address(), "");
            row(&format!("{name}: link up → RS out (the MN's own delay)"), &a.up_to_rs(), "");
            if a.kind == AttachKind::Fresh {
                row(&format!("{name}: link down → LMA de-registered (polled)"), &Summary::of(&a.deregistration), "");
            }
        }
        let m = &self.moves;
        row("flow move: API call → first datagram on the new interface", &Summary::of(&m.latency), "≤ 1");
        row("flow move: API call → API answer", &Summary::of(&m.api), "");
        row("  baseline: GET /status round trip (no move)", &Summary::of(&m.status_round_trip), "");
        let _ = writeln!(out);
        for a in [&self.fresh, &self.reattach] {
            let kernel = a.samples.iter().filter(|s| s.kernel_timestamps).count();
            let extra = a.samples.iter().filter(|s| s.solicitations > 1).count();
            let _ = writeln!(
                out,
                "{:?}: {} of {} answered; tunnel and routes there after the RA in {} of {}; kernel timestamps on {}; \
                 answered only after a retransmitted RS: {}",
                a.kind,
                a.samples.len(),
                a.asked,
                a.programmed(),
                a.samples.len(),
                kernel,
                extra
            );
            for failure in &a.failures {
                let _ = writeln!(out, "  failed: {failure}");
            }
        }
        let _ = writeln!(
            out,
            "flow moves: {} of {} completed at {} datagrams/s per flow; {} sent per flow, {} received; \
             over the whole run lost {}, reordered {}   goal: 0 lost, 0 reordered",
            m.latency.len(),
            m.asked,
            m.rate,
            m.sent_per_flow,
            m.received,
            m.lost,
            m.reordered,
        );
        let [(stay, moving), (quiet_stay, quiet_moving)] =
            [(m.after_moves[0], m.after_moves[1]), (m.quiet[0], m.quiet[1])];
        let _ = writeln!(
            out,
            "  around the moves (call → {} ms after the switch): moving flow lost {} reordered {}, staying flow lost {} \
             reordered {}",
            MOVE_SETTLE.as_millis(),
            moving.lost,
            moving.reordered,
            stay.lost,
            stay.reordered
        );
        let by_target = |parity: usize| {
            let moves = m.per_move.iter().skip(parity).step_by(2);
            let hit = moves.clone().filter(|l| l.lost != 0 || l.reordered != 0).count();
            format!("{hit} of {}", moves.count())
        };
        let _ = writeln!(
            out,
            "  moves with a loss or reordering of the moving flow: to 3G {}, to WLAN {}",
            by_target(0),
            by_target(1)
        );
        let _ = writeln!(
            out,
            "  control ({} ms before each call, nothing moving): moving flow lost {} reordered {}, staying flow lost {} \
             reordered {}",
            MOVE_SETTLE.as_millis(),
            quiet_moving.lost,
            quiet_moving.reordered,
            quiet_stay.lost,
            quiet_stay.reordered
        );
        for failure in &m.failures {
            let _ = writeln!(out, "  failed: {failure}");
        }
        if let Some(f) = &self.forwarding {
            let _ = writeln!(
                out,
                "forwarding over {:.1} s each: unsteered {:.0} datagrams/s received ({} sent, {} received), \
                 steered {:.0}/s ({} sent, {} received); steered ÷ unsteered {:.2}   goal ≥ 0.9",
                f.duration.as_secs_f64(),
                f.unsteered_rate(),
                f.unsteered_sent,
                f.unsteered_received,
                f.steered_rate(),
                f.steered_sent,
                f.steered_received,
                f.ratio()
            );
        }
        out
    }

    /// The report as JSON: the summaries, then every sample.
    pub fn json(&self) -> serde_json::Value {
        let attach = |a: &AttachReport| {
            serde_json::json!({
                "rs_to_ra": a.rs_to_ra(),
                "rs_to_address": a.rs_to_address(),
                "up_to_rs": a.up_to_rs(),
                "deregistration": Summary::of(&a.deregistration),
                "programmed": a.programmed(),
                "detail": a,
            })
        };
        serde_json::json!({
            "fresh": attach(&self.fresh),
            "reattach": attach(&self.reattach),
            "moves": {
                "latency": Summary::of(&self.moves.latency),
                "api": Summary::of(&self.moves.api),
                "detail": self.moves,
            },
            "forwarding": self.forwarding.as_ref().map(|f| serde_json::json!({
                "unsteered_rate": f.unsteered_rate(),
                "steered_rate": f.steered_rate(),
                "ratio": f.ratio(),
                "detail": f,
            })),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The mobile node's view: its Router Solicitations and Advertisements, and its addresses.

/// Something the mobile node's namespace saw.
#[derive(Debug, Clone)]
struct Seen {
    at: SystemTime,
    kernel: bool,
    interface: String,
    what: What,
}

#[derive(Debug, Clone)]
enum What {
    /// A Router Solicitation left the interface.
    Solicitation,
    /// A Router Advertisement arrived, with these pool prefixes.
    Advertisement(Vec<String>),
    /// A pool address appeared on the interface.
    Address,
}

/// Two threads in the mobile node's namespace: an `AF_PACKET` reader of RS and RA, an
/// rtnetlink reader of new addresses.
struct Watch {
    events: mpsc::Receiver<Seen>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Watch {
    fn start(ns: &str) -> anyhow::Result<Self> {
        let (tx, events) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for reader in [packet_reader as fn(&OwnedFd, &mpsc::Sender<Seen>, &AtomicBool), address_reader] {
            let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<()>>();
            let (ns, tx, stop) = (ns.to_owned(), tx.clone(), stop.clone());
            let open = if threads.is_empty() { open_packet_socket } else { open_address_socket };
            threads.push(std::thread::spawn(move || {
                let socket = match enter_namespace(&ns).and_then(|()| open()) {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                reader(&socket, &tx, &stop);
            }));
            ready_rx.recv().context("a watch thread ended")??;
        }
        Ok(Self { events, stop, threads })
    }

    fn drain(&self) {
        while self.events.try_recv().is_ok() {}
    }

    /// Waits for the first RS on `interface` after `since`, the RA with a pool prefix after
    /// it, and a pool address.
    fn attachment(&self, interface: &str, since: SystemTime, limit: Duration) -> anyhow::Result<AttachSample> {
        let deadline = Instant::now() + limit;
        let (mut rs, mut ra, mut address) = (None::<Seen>, None::<(Seen, String)>, None::<SystemTime>);
        let mut solicitations = 0;
        while ra.is_none() || address.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(seen) = self.events.recv_timeout(left) else { break };
            if seen.interface != interface || seen.at < since {
                continue;
            }
            match &seen.what {
                What::Solicitation if ra.is_none() => {
                    solicitations += 1;
                    rs.get_or_insert(seen);
                }
                What::Advertisement(prefixes) if rs.is_some() && ra.is_none() => {
                    if let Some(prefix) = prefixes.first() {
                        ra = Some((seen.clone(), prefix.clone()));
                    }
                }
                What::Address => {
                    address.get_or_insert(seen.at);
                }
                _ => {}
            }
        }
        let Some(rs) = rs else { bail!("no Router Solicitation left {interface} in {limit:?}") };
        let Some((ra, prefix)) = ra else {
            bail!("no Router Advertisement with a pool prefix reached {interface} in {limit:?} ({solicitations} RS)")
        };
        let after_rs = |t: SystemTime| t.duration_since(rs.at).unwrap_or_default();
        Ok(AttachSample {
            interface: interface.to_owned(),
            prefix,
            rs_to_ra: after_rs(ra.at),
            rs_to_address: address.map(after_rs),
            up_to_rs: rs.at.duration_since(since).unwrap_or_default(),
            solicitations,
            kernel_timestamps: rs.kernel && ra.kernel,
            programmed: false,
            signalled: None,
        })
    }

    fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.halt();
    }
}

fn read_timeout(socket: &OwnedFd) -> anyhow::Result<()> {
    setsockopt(socket, sockopt::ReceiveTimeout, &TimeVal::new(0, 50_000)).context("SO_RCVTIMEO")
}

fn open_packet_socket() -> anyhow::Result<OwnedFd> {
    let socket = socket(AddressFamily::Packet, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::EthAll)
        .context("cannot open an AF_PACKET socket")?;
    setsockopt(&socket, sockopt::ReceiveTimestampns, &true).context("SO_TIMESTAMPNS")?;
    read_timeout(&socket)?;
    Ok(socket)
}

fn open_address_socket() -> anyhow::Result<OwnedFd> {
    let socket = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)
        .context("cannot open an rtnetlink socket")?;
    let groups = u32::try_from(nix::libc::RTMGRP_IPV6_IFADDR).unwrap_or_default();
    bind(socket.as_raw_fd(), &NetlinkAddr::new(0, groups)).context("cannot join RTMGRP_IPV6_IFADDR")?;
    read_timeout(&socket)?;
    Ok(socket)
}

fn interface_name(names: &mut BTreeMap<u32, String>, index: u32) -> String {
    names
        .entry(index)
        .or_insert_with(|| {
            nix::net::if_::if_indextoname(index).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        })
        .clone()
}

/// Ethernet (14) + IPv6 (40): where the ICMPv6 message starts in a frame without extension
/// headers (RS and RA carry none).
const ICMP_OFFSET: usize = 54;

fn packet_reader(socket: &OwnedFd, tx: &mpsc::Sender<Seen>, stop: &AtomicBool) {
    let mut names = BTreeMap::new();
    let mut buf = [0u8; 2048];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    while !stop.load(Ordering::Relaxed) {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let Ok(msg) = recvmsg::<LinkAddr>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()) else {
            continue;
        };
        let read_at = SystemTime::now();
        let stamp = msg.cmsgs().ok().and_then(|mut c| {
            c.find_map(|m| match m {
                ControlMessageOwned::ScmTimestampns(ts) => {
                    let secs = u64::try_from(ts.tv_sec()).ok()?;
                    let nanos = u32::try_from(ts.tv_nsec()).ok()?;
                    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
                }
                _ => None,
            })
        });
        let (bytes, Some(from)) = (msg.bytes, msg.address) else { continue };
        let frame = &buf[..bytes];
        // IPv6 (0x86dd), Next Header ICMPv6 (58), type 133 or 134.
        if frame.len() <= ICMP_OFFSET || frame[12..14] != [0x86, 0xdd] || frame[20] != 58 {
            continue;
        }
        let outgoing = from.pkttype() == nix::libc::PACKET_OUTGOING;
        let what = match NdMessage::parse(&frame[ICMP_OFFSET..]) {
            Ok(NdMessage::RouterSolicitation(_)) if outgoing => What::Solicitation,
            Ok(NdMessage::RouterAdvertisement(ra)) if !outgoing => What::Advertisement(
                ra.prefixes()
                    .filter(|p| in_pool(&p.prefix))
                    .map(|p| format!("{}/{}", p.prefix, p.prefix_len))
                    .collect(),
            ),
            _ => continue,
        };
        let index = u32::try_from(from.ifindex()).unwrap_or_default();
        let seen = Seen {
            at: stamp.unwrap_or(read_at),
            kernel: stamp.is_some(),
            interface: interface_name(&mut names, index),
            what,
        };
        if tx.send(seen).is_err() {
            return;
        }
    }
}

fn address_reader(socket: &OwnedFd, tx: &mpsc::Sender<Seen>, stop: &AtomicBool) {
    let mut names = BTreeMap::new();
    let mut buf = vec![0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let Ok(bytes) = recv(socket.as_raw_fd(), &mut buf, MsgFlags::empty()) else { continue };
        let at = SystemTime::now();
        for (index, addr) in new_addresses(&buf[..bytes]) {
            if in_pool(&addr) {
                let seen =
                    Seen { at, kernel: false, interface: interface_name(&mut names, index), what: What::Address };
                if tx.send(seen).is_err() {
                    return;
                }
            }
        }
    }
}

/// The (interface index, address) of each `RTM_NEWADDR` in a netlink datagram.
fn new_addresses(mut data: &[u8]) -> Vec<(u32, Ipv6Addr)> {
    const HEADER: usize = 16; // struct nlmsghdr
    const IFADDRMSG: usize = 8; // struct ifaddrmsg
    let u32_at = |b: &[u8], at: usize| b.get(at..at + 4).and_then(|s| s.try_into().ok()).map(u32::from_ne_bytes);
    let u16_at = |b: &[u8], at: usize| b.get(at..at + 2).and_then(|s| s.try_into().ok()).map(u16::from_ne_bytes);
    let mut found = Vec::new();
    while let Some(len) = u32_at(data, 0).and_then(|l| usize::try_from(l).ok()) {
        if len < HEADER || len > data.len() {
            break;
        }
        let message = &data[..len];
        if u16_at(message, 4) == Some(nix::libc::RTM_NEWADDR) && message.len() >= HEADER + IFADDRMSG {
            let index = u32_at(message, HEADER + 4).unwrap_or_default();
            let mut attrs = &message[HEADER + IFADDRMSG..];
            while let (Some(alen), Some(kind)) = (u16_at(attrs, 0).map(usize::from), u16_at(attrs, 2)) {
                if alen < 4 || alen > attrs.len() {
                    break;
                }
                if kind == nix::libc::IFA_ADDRESS
                    && let Ok(octets) = <[u8; 16]>::try_from(&attrs[4..alen])
                {
                    found.push((index, Ipv6Addr::from(octets)));
                }
                attrs = &attrs[((alen + 3) & !3).min(attrs.len())..];
            }
        }
        data = &data[((len + 3) & !3).min(data.len())..];
    }
    found
}

// ---------------------------------------------------------------------------------------------
// The daemons' view.

/// Whether the LMA holds an active binding for the mobile node's interface toward `site`.
fn binding_active(bed: &Testbed, site: &MagSite) -> anyhow::Result<bool> {
    let answer = client::request_blocking(&bed.lma_socket(), "GET", "/bindings", None)?;
    let bindings: serde_json::Value = serde_json::from_str(&answer.body).context("the LMA's /bindings")?;
    let proxy_coa = site.proxy_coa.to_string();
    Ok(bindings.as_array().into_iter().flatten().any(|b| {
        b["state"] == "active"
            && b["attachments"].as_array().into_iter().flatten().any(|a| {
                a["proxy_coa"] == proxy_coa.as_str() && a["mn_ll_id"].as_str().is_some_and(|m| m == site.mn_mac)
            })
    }))
}

/// The last sequence number the LMA accepted for the mobile node's interface toward `site`.
fn attachment_sequence(bed: &Testbed, site: &MagSite) -> anyhow::Result<Option<u64>> {
    let answer = client::request_blocking(&bed.lma_socket(), "GET", "/bindings", None)?;
    let bindings: serde_json::Value = serde_json::from_str(&answer.body).context("the LMA's /bindings")?;
    let proxy_coa = site.proxy_coa.to_string();
    Ok(bindings
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|b| b["attachments"].as_array().into_iter().flatten())
        .find(|a| a["proxy_coa"] == proxy_coa.as_str() && a["mn_ll_id"].as_str().is_some_and(|m| m == site.mn_mac))
        .and_then(|a| a["last_sequence"].as_u64()))
}

/// Polls the LMA until the binding toward `site` is (`active`) or is no longer active.
fn wait_binding(bed: &Testbed, site: &MagSite, active: bool, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while binding_active(bed, site)? != active {
        if Instant::now() > deadline {
            bail!(
                "the LMA's binding for {} is {} after {limit:?}",
                site.access,
                if active { "not active" } else { "still active" }
            );
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    Ok(())
}

fn wait_address(bed: &Testbed, site: &MagSite, limit: Duration) -> anyhow::Result<Ipv6Addr> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(addr) = bed.mobile_node_address(site) {
            return Ok(addr);
        }
        if Instant::now() > deadline {
            bail!("{} has no pool address after {limit:?}", site.access);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The routes the daemons installed (protocol 157) in `node`'s namespace, every table.
fn daemon_routes(bed: &Testbed, node: Node) -> String {
    let ns = bed.names.namespace(node);
    let out = Command::new("ip").args(["-n", &ns, "-6", "route", "show", "table", "all", "proto", "157"]).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

/// Whether the LMA routes `prefix` (into its tunnel) and the MAG at `site` routes it onto its
/// access link and has a default route into its tunnel for the node's traffic.
fn programmed(bed: &Testbed, site: &MagSite, prefix: &str) -> bool {
    let starts = |text: &str, head: &str| text.lines().any(|l| l.starts_with(head));
    let lma = daemon_routes(bed, Node::Lma);
    let mag = daemon_routes(bed, site.node);
    starts(&lma, &format!("{prefix} dev "))
        && starts(&mag, &format!("{prefix} dev {} ", site.access))
        && mag.lines().any(|l| l.starts_with("default dev ") && l.contains(" table "))
}

/// The FID the LMA gave the correspondent node's flow from `port`.
fn flow_id(bed: &Testbed, port: u16) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let answer = client::request_blocking(&bed.lma_socket(), "GET", "/flows", None)?;
        let flows: serde_json::Value = serde_json::from_str(&answer.body)?;
        let fid = flows["mobile_nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|mn| mn["flows"].as_array().into_iter().flatten())
            .find(|f| f["src_port"] == port)
            .and_then(|f| f["fid"].as_u64());
        match fid {
            Some(fid) => return Ok(fid),
            None if Instant::now() > deadline => bail!("the LMA has no flow from port {port}: {}", answer.body),
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

fn received(counts: &Counts, port: u16) -> u64 {
    counts.get(&port).map(|f| f.received).unwrap_or(0)
}

fn last(counts: &Counts, port: u16) -> Option<&str> {
    counts.get(&port).and_then(|f| f.last_interface.as_deref())
}

fn on_interface(counts: &Counts, port: u16, interface: &str) -> u64 {
    counts.get(&port).and_then(|f: &FlowCount| f.by_interface.get(interface).copied()).unwrap_or(0)
}

fn wait_for(receiver: &Receiver, limit: Duration, done: impl Fn(&Counts) -> bool) -> Counts {
    let deadline = Instant::now() + limit;
    loop {
        let counts = receiver.counts();
        if done(&counts) || Instant::now() > deadline {
            return counts;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn as_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(ms(*d))
}

fn as_ms_opt<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&ms(*d)),
        None => s.serialize_none(),
    }
}

fn as_ms_vec<S: serde::Serializer>(d: &[Duration], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(d.iter().map(|d| ms(*d)))
}

/// Brings the mobile node's interface toward `site` up and returns at once
/// (`Testbed::attach` also waits for the address by polling, which is not what is timed here).
fn link_up(bed: &Testbed, site: &MagSite) -> anyhow::Result<()> {
    topology::set_mobile_node_link(&bed.names, site, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = Summary::of(&samples);
        assert_eq!((s.count, s.min_ms, s.median_ms, s.p99_ms, s.max_ms), (100, 1.0, 50.0, 99.0, 100.0));
        assert_eq!(Summary::of(&[]), Summary::default());
        assert_eq!(Summary::of(&[Duration::from_millis(3)]).p99_ms, 3.0);
    }

    #[test]
    fn new_addresses_reads_rtm_newaddr() {
        // nlmsghdr (len 44, RTM_NEWADDR) + ifaddrmsg (AF_INET6, /64, index 7) + IFA_ADDRESS.
        let mut m = Vec::new();
        m.extend_from_slice(&44u32.to_ne_bytes());
        m.extend_from_slice(&nix::libc::RTM_NEWADDR.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[10, 64, 0, 0]);
        m.extend_from_slice(&7u32.to_ne_bytes());
        m.extend_from_slice(&20u16.to_ne_bytes());
        m.extend_from_slice(&nix::libc::IFA_ADDRESS.to_ne_bytes());
        let addr: Ipv6Addr = "2001:db8:100::1".parse().unwrap();
        m.extend_from_slice(&addr.octets());
        assert_eq!(new_addresses(&m), vec![(7, addr)]);
        assert!(new_addresses(&m[..20]).is_empty());
    }
}
