//! The LMA's flow steering in real network namespaces: the nftables flow map read back by the
//! library and by `nft -j`, moves, clean-up, real UDP packets leaving by the device their mark
//! selects, the NFQUEUE path of `learn` mode, and the time of a move in a 10,000-element map.
//! Needs root (CI runs as root); fails loudly otherwise.
//!
//! Each test makes its own namespaces (tag + process id), removed by a guard even on failure.
//! The library runs on threads that have entered the namespace (`setns`); the nftables context
//! keeps the namespace it was created in, so later calls may come from any thread, but
//! `FlowMap::close` (ip6tables) must run in the namespace.

use std::fs::File;
use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use pmip6_dataplane::nfqueue::Queue;
use pmip6_dataplane::steering::{FlowMap, MapElement, SteeringBackend, SteeringConfig, SteeringError, flow_element};
use pmip6_engine::flow::classify::protocol;
use pmip6_engine::flow::{FlowKey, Route, Steering, SteeringIntent, classify};
use pmip6_wire::Prefix;
use pmip6_wire::selector::{FieldRange, Ipv6Selector, TrafficSelector};

const POOL: Prefix = Prefix { addr: Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0), len: 48 };
const MN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 5);
const CN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xf, 0, 0, 0, 0, 2);
const MAG1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 2);
const MAG2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 2);
const M1: u32 = 101;
const M2: u32 = 102;
const QUEUE: u16 = 7;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "this test creates network namespaces and must run as root (CI does); it was not skipped");
}

fn run(program: &str, args: &[&str]) -> std::process::Output {
    match Command::new(program).args(args).output() {
        Ok(o) => o,
        Err(e) => panic!("{program} {}: {e}", args.join(" ")),
    }
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(out.status.success(), "{program} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) {
    ok("ip", args);
}

/// Namespaces removed on drop (which also removes their links, tables and rules).
struct Namespaces(Vec<String>);

impl Namespaces {
    fn new(tag: &str, roles: &[&str]) -> Self {
        let pid = std::process::id();
        let mut guard = Self(Vec::new());
        for role in roles {
            let ns = format!("pmip6-st{tag}-{role}-{pid}");
            ip(&["netns", "add", &ns]);
            guard.0.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        guard
    }

    fn name(&self, i: usize) -> &str {
        &self.0[i]
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn enter(ns: &str) {
    let file = match File::open(format!("/run/netns/{ns}")) {
        Ok(f) => f,
        Err(e) => panic!("open namespace {ns}: {e}"),
    };
    // SAFETY: a valid descriptor of a network namespace; affects only the calling thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a thread inside `ns`.
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let handle = s.spawn(|| {
            enter(ns);
            f()
        });
        match handle.join() {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e),
        }
    })
}

fn config(mode: SteeringBackend) -> SteeringConfig {
    SteeringConfig { mode, table: "pmip6".to_owned(), queue: QUEUE, mobile_node_prefixes: vec![POOL] }
}

fn marks(peer: Ipv6Addr) -> Option<u32> {
    match peer {
        MAG1 => Some(M1),
        MAG2 => Some(M2),
        _ => None,
    }
}

fn udp_key(src_port: u16) -> FlowKey {
    FlowKey::v6(CN, MN, protocol::UDP, Some((src_port, 2000)), 0)
}

fn flow(src_port: u16, peer: Ipv6Addr) -> Steering {
    Steering::Flow { key: udp_key(src_port), route: Route::Tunnel(peer) }
}

/// The element the library's map holds for a flow key, if any.
fn mark_in(elements: &[MapElement], key: &FlowKey) -> Option<u32> {
    let (map, fields) = flow_element(key);
    elements.iter().find(|e| e.map == map && e.key == fields).map(|e| e.mark)
}

/// The elements of the table as `nft -j` (a process, independent of the library) lists them:
/// (map, key fields as JSON text, mark).
fn nft_listing(ns: &str) -> Vec<(String, String, u64)> {
    let text = ok("ip", &["netns", "exec", ns, "nft", "-j", "list", "table", "inet", "pmip6"]);
    let json: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => panic!("nft -j output: {e}: {text}"),
    };
    let mut out = Vec::new();
    for map in json["nftables"].as_array().into_iter().flatten().filter_map(|o| o.get("map")) {
        for elem in map["elem"].as_array().into_iter().flatten() {
            out.push((
                map["name"].as_str().unwrap_or_default().to_owned(),
                elem[0]["concat"].to_string(),
                elem[1].as_u64().unwrap_or(u64::MAX),
            ));
        }
    }
    out
}

fn nft_mark(listing: &[(String, String, u64)], src_port: u16) -> Option<u64> {
    let fields = serde_json::json!([CN.to_string(), MN.to_string(), src_port, 2000]).to_string();
    listing.iter().find(|(m, k, _)| m == "udp6" && *k == fields).map(|(_, _, v)| *v)
}

fn queue_rule_count(ns: &str) -> usize {
    let rules = ok("ip", &["netns", "exec", ns, "ip6tables", "-w", "-t", "mangle", "-S", "PREROUTING"]);
    rules.lines().filter(|l| l.contains("NFQUEUE") && l.contains("2001:db8:100::/48")).count()
}

#[test]
fn map_reads_back_moves_one_element_and_closes_cleanly() {
    require_root();
    let nss = Namespaces::new("m", &["lma"]);
    let ns = nss.name(0).to_owned();
    // Leftovers of a previous run, and a table that is not ours.
    ok("ip", &["netns", "exec", &ns, "nft", "add table inet pmip6; add chain inet pmip6 stale"]);
    ok("ip", &["netns", "exec", &ns, "nft", "add table inet other; add chain inet other keep"]);
    let leftover = [
        "netns",
        "exec",
        &ns,
        "ip6tables",
        "-w",
        "-t",
        "mangle",
        "-A",
        "PREROUTING",
        "-d",
        "2001:db8:100::/48",
        "-m",
        "mark",
        "--mark",
        "0",
        "-j",
        "NFQUEUE",
        "--queue-num",
        "7",
        "--queue-bypass",
    ];
    ok("ip", &leftover);
    ok("ip", &leftover);
    assert_eq!(queue_rule_count(&ns), 2);

    let mut map = in_ns(&ns, || FlowMap::open(config(SteeringBackend::Learn))).unwrap_or_else(|e| panic!("open: {e}"));
    assert_eq!(queue_rule_count(&ns), 1, "leftover rules replaced by exactly one");
    let listing = ok("ip", &["netns", "exec", &ns, "nft", "list", "table", "inet", "pmip6"]);
    assert!(!listing.contains("stale"), "the previous run's table is gone: {listing}");

    let report = map
        .apply(&[SteeringIntent::Add(flow(1000, MAG1)), SteeringIntent::Add(flow(1001, MAG2))], &marks)
        .unwrap_or_else(|e| panic!("apply: {e}"));
    assert_eq!((report.applied, report.added, report.deleted), (2, 2, 0));
    let elements = map.elements().unwrap_or_else(|e| panic!("elements: {e}"));
    assert_eq!(elements.len(), 2, "{elements:?}");
    assert_eq!(mark_in(&elements, &udp_key(1000)), Some(M1));
    assert_eq!(mark_in(&elements, &udp_key(1001)), Some(M2));
    let listing = nft_listing(&ns);
    assert_eq!(listing.len(), 2, "{listing:?}");
    assert_eq!(nft_mark(&listing, 1000), Some(u64::from(M1)), "{listing:?}");
    assert_eq!(nft_mark(&listing, 1001), Some(u64::from(M2)), "{listing:?}");

    // Idempotent: the same add again changes nothing.
    let report = map.apply(&[SteeringIntent::Add(flow(1000, MAG1))], &marks).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.applied, report.ignored, report.added), (0, 1, 0));

    // A move: remove + add in one transaction changes exactly that element.
    let report = map
        .apply(&[SteeringIntent::Remove(flow(1000, MAG1)), SteeringIntent::Add(flow(1000, MAG2))], &marks)
        .unwrap_or_else(|e| panic!("move: {e}"));
    assert_eq!((report.applied, report.added, report.deleted), (2, 1, 1));
    println!("move in a 2-element map: {:?} (transaction {:?})", report.elapsed, report.transaction);
    let after = map.elements().unwrap_or_else(|e| panic!("elements: {e}"));
    assert_eq!(mark_in(&after, &udp_key(1000)), Some(M2));
    let changed: Vec<_> = after.iter().filter(|e| !elements.contains(e)).collect();
    assert_eq!(changed.len(), 1, "exactly one element changed: {changed:?}");
    assert_eq!(nft_mark(&nft_listing(&ns), 1000), Some(u64::from(M2)));

    // An unknown peer fails the whole batch and changes nothing.
    let stranger = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 2);
    let err = map.apply(&[SteeringIntent::Remove(flow(1001, MAG2)), SteeringIntent::Add(flow(1001, stranger))], &marks);
    assert!(err.is_err());
    assert_eq!(map.elements().unwrap_or_default(), after);

    in_ns(&ns, move || map.close()).unwrap_or_else(|e| panic!("close: {e}"));
    let out = run("ip", &["netns", "exec", &ns, "nft", "list", "table", "inet", "pmip6"]);
    assert!(!out.status.success(), "table removed at close");
    assert_eq!(queue_rule_count(&ns), 0, "NFQUEUE rule removed at close");
    ok("ip", &["netns", "exec", &ns, "nft", "list", "table", "inet", "other"]);
}

/// The LMA namespace with a correspondent (`cn`) and two "MAG" links A and B into a sink: mark
/// M1 → table 1 → A, M2 → table 2 → B, unmarked (and mark 1) → main → A.
struct Topology {
    nss: Namespaces,
}

impl Topology {
    fn new(tag: &str) -> Self {
        let nss = Namespaces::new(tag, &["lma", "cn", "sink"]);
        let (lma, cn, sink) = (nss.name(0).to_owned(), nss.name(1).to_owned(), nss.name(2).to_owned());
        let pid = std::process::id();
        let (c, a, b) = (format!("{tag}c{pid}"), format!("{tag}a{pid}"), format!("{tag}b{pid}"));
        ip(&["link", "add", &c, "netns", &lma, "type", "veth", "peer", "name", "cn0", "netns", &cn]);
        for (dev, peer, mac, local, remote) in [
            (&a, "pa", "02:00:00:00:0a:02", "2001:db8:a::1/64", MAG1),
            (&b, "pb", "02:00:00:00:0b:02", "2001:db8:b::1/64", MAG2),
        ] {
            ip(&["link", "add", dev, "netns", &lma, "type", "veth", "peer", "name", peer, "netns", &sink]);
            ip(&["-n", &sink, "link", "set", peer, "address", mac]);
            ip(&["-n", &sink, "link", "set", peer, "up"]);
            ip(&["-n", &lma, "addr", "add", local, "dev", dev, "nodad"]);
            ip(&["-n", &lma, "link", "set", dev, "up"]);
            let remote = remote.to_string();
            ip(&["-n", &lma, "neigh", "replace", &remote, "lladdr", mac, "dev", dev, "nud", "permanent"]);
        }
        ip(&["-n", &lma, "addr", "add", "2001:db8:f::1/64", "dev", &c, "nodad"]);
        ip(&["-n", &lma, "link", "set", &c, "up"]);
        ip(&["-n", &cn, "addr", "add", "2001:db8:f::2/64", "dev", "cn0", "nodad"]);
        ip(&["-n", &cn, "link", "set", "cn0", "up"]);
        ip(&["-n", &cn, "-6", "route", "add", "default", "via", "2001:db8:f::1"]);
        ok("ip", &["netns", "exec", &lma, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        let (m1, m2, mag1, mag2) = (M1.to_string(), M2.to_string(), MAG1.to_string(), MAG2.to_string());
        ip(&["-n", &lma, "-6", "route", "add", "2001:db8:100::/48", "via", &mag1, "dev", &a]);
        ip(&["-n", &lma, "-6", "route", "add", "2001:db8:100::/48", "via", &mag1, "dev", &a, "table", "1"]);
        ip(&["-n", &lma, "-6", "route", "add", "2001:db8:100::/48", "via", &mag2, "dev", &b, "table", "2"]);
        ip(&["-n", &lma, "-6", "rule", "add", "fwmark", &m1, "lookup", "1"]);
        ip(&["-n", &lma, "-6", "rule", "add", "fwmark", &m2, "lookup", "2"]);
        let counting = "add table inet count\nadd counter inet count a\nadd counter inet count b\n\
                        add chain inet count c { type filter hook prerouting priority 0; }\n\
                        add rule inet count c iifname \"pa\" udp dport 2000 counter name a\n\
                        add rule inet count c iifname \"pb\" udp dport 2000 counter name b\n";
        ok("ip", &["netns", "exec", &sink, "nft", counting]);
        // Let the cn learn the LMA's link-layer address before counting.
        std::thread::sleep(Duration::from_millis(50));
        Self { nss }
    }

    fn lma(&self) -> &str {
        self.nss.name(0)
    }

    /// Our UDP datagrams (destination port 2000) that arrived at the sink by A and by B,
    /// counted by nftables in the sink namespace (link counters also see MLD and ND).
    fn counters(&self) -> (u64, u64) {
        let text =
            ok("ip", &["netns", "exec", self.nss.name(2), "nft", "-j", "list", "counters", "table", "inet", "count"]);
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let mut a = None;
        let mut b = None;
        for c in json["nftables"].as_array().into_iter().flatten().filter_map(|o| o.get("counter")) {
            match c["name"].as_str() {
                Some("a") => a = c["packets"].as_u64(),
                Some("b") => b = c["packets"].as_u64(),
                _ => {}
            }
        }
        match (a, b) {
            (Some(a), Some(b)) => (a, b),
            _ => panic!("sink counters: {text}"),
        }
    }

    /// Sends `n` UDP datagrams of the flow `src_port` → MN:2000 from the correspondent.
    fn send(&self, src_port: u16, n: usize) {
        in_ns(self.nss.name(1), || {
            let socket = UdpSocket::bind(SocketAddrV6::new(CN, src_port, 0, 0))
                .unwrap_or_else(|e| panic!("bind {src_port}: {e}"));
            for _ in 0..n {
                socket
                    .send_to(b"pmip6 steering test", SocketAddrV6::new(MN, 2000, 0, 0))
                    .unwrap_or_else(|e| panic!("send: {e}"));
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn packets_leave_by_the_device_their_flow_is_steered_to() {
    require_root();
    let topo = Topology::new("p");
    let mut map =
        in_ns(topo.lma(), || FlowMap::open(config(SteeringBackend::Learn))).unwrap_or_else(|e| panic!("open: {e}"));
    map.apply(&[SteeringIntent::Add(flow(1000, MAG1)), SteeringIntent::Add(flow(1001, MAG2))], &marks)
        .unwrap_or_else(|e| panic!("apply: {e}"));

    let (a0, b0) = topo.counters();
    topo.send(1000, 30);
    topo.send(1001, 10);
    let (a1, b1) = topo.counters();
    println!("before the move: A +{}, B +{}", a1 - a0, b1 - b0);
    assert_eq!(a1 - a0, 30, "flow 1 leaves by A");
    assert_eq!(b1 - b0, 10, "flow 2 leaves by B");

    // Move flow 1 to MAG2 (B): its next packets switch.
    map.apply(&[SteeringIntent::Remove(flow(1000, MAG1)), SteeringIntent::Add(flow(1000, MAG2))], &marks)
        .unwrap_or_else(|e| panic!("move: {e}"));
    topo.send(1000, 30);
    let (a2, b2) = topo.counters();
    println!("after the move: A +{}, B +{}", a2 - a1, b2 - b1);
    assert_eq!(a2 - a1, 0, "flow 1 no longer leaves by A");
    assert_eq!(b2 - b1, 30, "flow 1 now leaves by B");

    // Back to the base route (mark 1: main table, A).
    map.apply(
        &[
            SteeringIntent::Remove(flow(1000, MAG2)),
            SteeringIntent::Add(Steering::Flow { key: udp_key(1000), route: Route::PrefixRoute }),
        ],
        &marks,
    )
    .unwrap_or_else(|e| panic!("move: {e}"));
    topo.send(1000, 20);
    let (a3, b3) = topo.counters();
    assert_eq!((a3 - a2, b3 - b2), (20, 0), "the base route (mark 1, main table) is A");
    in_ns(topo.lma(), move || map.close()).unwrap_or_else(|e| panic!("close: {e}"));
}

/// Waits until the queue's descriptor is readable (proving `AsRawFd` names the right socket).
fn readable(queue: &Queue, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd { fd: queue.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd for the duration of the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    rc > 0 && pfd.revents & libc::POLLIN != 0
}

#[test]
fn learn_mode_queues_the_first_packet_only() {
    require_root();
    let topo = Topology::new("q");
    let (mut map, mut queue) = in_ns(topo.lma(), || {
        let map = FlowMap::open(config(SteeringBackend::Learn)).unwrap_or_else(|e| panic!("open: {e}"));
        let queue = Queue::open(QUEUE).unwrap_or_else(|e| panic!("queue: {e}"));
        (map, queue)
    });
    queue.set_nonblocking(true);
    let (a0, b0) = topo.counters();

    // An unknown flow: its first packet reaches the queue, unmarked.
    std::thread::scope(|s| {
        s.spawn(|| topo.send(1003, 1));
        assert!(readable(&queue, Duration::from_secs(3)), "the first packet reaches the queue");
    });
    let packet = queue.recv().unwrap_or_else(|e| panic!("recv: {e}"));
    assert_eq!(packet.mark(), 0);
    let info = classify(packet.payload()).unwrap_or_else(|e| panic!("classify: {e}"));
    assert_eq!((info.key.src, info.key.dst, info.key.transport_ports()), (CN, MN, Some((1003, 2000))));
    let key = info.key;
    queue.verdict(packet, Some(M2)).unwrap_or_else(|e| panic!("verdict: {e}"));
    std::thread::sleep(Duration::from_millis(100));
    let (a1, b1) = topo.counters();
    assert_eq!((a1 - a0, b1 - b0), (0, 1), "the verdict's mark sends it out B");

    // The classifier's flow enters the map: later packets are marked in the kernel.
    map.apply(&[SteeringIntent::Add(Steering::Flow { key, route: Route::Tunnel(MAG2) })], &marks)
        .unwrap_or_else(|e| panic!("apply: {e}"));
    topo.send(1003, 10);
    assert!(!readable(&queue, Duration::from_millis(300)), "no later packet reaches the queue");
    assert!(matches!(queue.recv(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));
    let (a2, b2) = topo.counters();
    assert_eq!((a2 - a1, b2 - b1), (0, 10), "later packets by B");
    drop(queue);
    in_ns(topo.lma(), move || map.close()).unwrap_or_else(|e| panic!("close: {e}"));
}

/// `nfqueue` steering (the draft's own design, §5.3): every packet to the pools reaches the
/// queue, before and after the classifier knows its flow, and its verdict's mark alone picks the
/// way out; the map is never written.
#[test]
fn nfqueue_mode_queues_every_packet_and_the_verdict_steers_it() {
    require_root();
    let topo = Topology::new("n");
    let (mut map, mut queue) = in_ns(topo.lma(), || {
        let map = FlowMap::open(config(SteeringBackend::NfQueue)).unwrap_or_else(|e| panic!("open: {e}"));
        let queue = Queue::open(QUEUE).unwrap_or_else(|e| panic!("queue: {e}"));
        (map, queue)
    });
    queue.set_nonblocking(true);
    let mut key = None;
    for (round, mark) in [(0, M2), (1, M1)] {
        let (a0, b0) = topo.counters();
        std::thread::scope(|s| {
            s.spawn(|| topo.send(1004, 5));
            for n in 0..5 {
                assert!(readable(&queue, Duration::from_secs(3)), "round {round}: packet {n} reaches the queue");
                let packet = queue.recv().unwrap_or_else(|e| panic!("recv: {e}"));
                let info = classify(packet.payload()).unwrap_or_else(|e| panic!("classify: {e}"));
                key = Some(info.key);
                queue.verdict(packet, Some(mark)).unwrap_or_else(|e| panic!("verdict: {e}"));
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        let (a1, b1) = topo.counters();
        let expected = if mark == M2 { (0, 5) } else { (5, 0) };
        assert_eq!((a1 - a0, b1 - b0), expected, "round {round}: the verdicts' mark picks the device");
        // The classifier's flow is reported to the map, which writes nothing in this mode.
        let flow = key.unwrap_or_else(|| panic!("a classified packet"));
        let report = map
            .apply(&[SteeringIntent::Add(Steering::Flow { key: flow, route: Route::Tunnel(MAG2) })], &marks)
            .unwrap_or_else(|e| panic!("apply: {e}"));
        assert_eq!((report.added, report.ignored), (0, 1), "round {round}");
    }
    drop(queue);
    in_ns(topo.lma(), move || map.close()).unwrap_or_else(|e| panic!("close: {e}"));
}

#[test]
fn move_time_in_a_10000_element_map() {
    require_root();
    let nss = Namespaces::new("t", &["lma"]);
    let mut map =
        in_ns(nss.name(0), || FlowMap::open(config(SteeringBackend::Learn))).unwrap_or_else(|e| panic!("open: {e}"));
    let key = |i: u32| {
        let dst = Ipv6Addr::from(u128::from(MN) + u128::from(i / 1000));
        FlowKey::v6(CN, dst, protocol::UDP, Some((10_000 + (i % 1000) as u16, 443)), 0)
    };
    let adds: Vec<_> =
        (0..10_000).map(|i| SteeringIntent::Add(Steering::Flow { key: key(i), route: Route::Tunnel(MAG1) })).collect();
    let fill = map.apply(&adds, &marks).unwrap_or_else(|e| panic!("fill: {e}"));
    assert_eq!(fill.added, 10_000);
    println!("adding 10,000 elements in one transaction: {:?}", fill.elapsed);
    let mut times = Vec::new();
    let mut transactions = Vec::new();
    for i in 0..200u32 {
        let k = key(i * 37 % 10_000);
        // 37 is prime to 10,000: 200 distinct flows, each moved once from MAG1 to MAG2.
        let (from, to) = (MAG1, MAG2);
        let r = map
            .apply(
                &[
                    SteeringIntent::Remove(Steering::Flow { key: k, route: Route::Tunnel(from) }),
                    SteeringIntent::Add(Steering::Flow { key: k, route: Route::Tunnel(to) }),
                ],
                &marks,
            )
            .unwrap_or_else(|e| panic!("move: {e}"));
        assert_eq!((r.deleted, r.added), (1, 1));
        times.push(r.elapsed);
        transactions.push(r.transaction);
    }
    times.sort();
    transactions.sort();
    println!(
        "move (delete + add, one transaction, 10,000-element map), 200 moves: median {:?}, p90 {:?}, max {:?}; nft transaction median {:?}",
        times[100], times[180], times[199], transactions[100]
    );
    assert_eq!(map.len(), 10_000);
    in_ns(nss.name(0), move || map.close()).unwrap_or_else(|e| panic!("close: {e}"));
}

fn selector(src_port: Option<u16>) -> TrafficSelector {
    let block = FieldRange::new(MN & Ipv6Addr::from(!0u128 << 64), MN | Ipv6Addr::from(u128::from(u64::MAX)));
    TrafficSelector::Ipv6(Ipv6Selector {
        dst_addr: Some(block),
        next_header: src_port.map(|_| FieldRange::exact(protocol::UDP)),
        src_port: src_port.map(FieldRange::exact),
        ..Ipv6Selector::default()
    })
}

#[test]
fn map_mode_steers_by_selector_precedence() {
    require_root();
    let topo = Topology::new("s");
    let mut map =
        in_ns(topo.lma(), || FlowMap::open(config(SteeringBackend::Map))).unwrap_or_else(|e| panic!("open: {e}"));
    let video =
        Steering::Selector { selector: Box::new(selector(Some(1000))), precedence: 0, route: Route::Tunnel(MAG2) };
    let rest = Steering::Selector { selector: Box::new(selector(None)), precedence: 1, route: Route::Tunnel(MAG1) };
    map.apply(&[SteeringIntent::Add(video.clone()), SteeringIntent::Add(rest)], &marks)
        .unwrap_or_else(|e| panic!("apply: {e}"));
    let elements = map.elements().unwrap_or_else(|e| panic!("elements: {e}"));
    println!("{elements:?}");
    assert_eq!(elements.iter().map(|e| (e.map.as_str(), e.mark)).collect::<Vec<_>>(), [("sel6_0", M2), ("sel6_1", M1)]);

    let (a0, b0) = topo.counters();
    topo.send(1000, 10);
    topo.send(1001, 10);
    let (a1, b1) = topo.counters();
    assert_eq!((a1 - a0, b1 - b0), (10, 10), "precedence 0 takes port 1000 to B, precedence 1 the rest to A");

    map.apply(&[SteeringIntent::Remove(video)], &marks).unwrap_or_else(|e| panic!("remove: {e}"));
    topo.send(1000, 10);
    let (a2, b2) = topo.counters();
    assert_eq!((a2 - a1, b2 - b1), (10, 0), "without it, port 1000 follows precedence 1");

    // What an interval map cannot express is refused, and nothing changes.
    let mut labelled = Ipv6Selector { flow_label: Some(FieldRange::exact(5)), ..Ipv6Selector::default() };
    labelled.dst_addr = Some(FieldRange::exact(MN));
    let refused = Steering::Selector {
        selector: Box::new(TrafficSelector::Ipv6(labelled)),
        precedence: 2,
        route: Route::Tunnel(MAG1),
    };
    assert!(matches!(map.apply(&[SteeringIntent::Add(refused)], &marks), Err(SteeringError::Unsupported(_))));
    assert_eq!(map.elements().unwrap_or_default().len(), 1);
    in_ns(topo.lma(), move || map.close()).unwrap_or_else(|e| panic!("close: {e}"));
}
