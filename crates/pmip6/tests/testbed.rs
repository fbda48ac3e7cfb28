//! End to end on the testbed: the draft's Figure 4 in five network namespaces, the real `pmip6 lma`
//! and `pmip6 mag` daemons, an unmodified Linux host as the mobile node, real UDP sockets.
//!
//! Each test builds a testbed of its own (namespaces `tb<letter><pid>-*`, state in a temporary
//! directory) and removes it when it ends, also when it fails. The tests need root, which CI has:
//! without it each one fails saying so; none is skipped.
//!
//! Times are measured and printed (`--nocapture`), never asserted: conditions are polled until a
//! deadline that only bounds a failing test.

use std::collections::BTreeSet;
use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pmip6::testbed::Testbed;
use pmip6::testbed::topology::{self, CN, MAGS, MN_ID, MagSite, Node};
use pmip6::testbed::traffic::{Counts, RECEIVE_PORT, Receiver, Sender, enter_namespace};
use pmip6_daemon::api::client;
use serde_json::Value;

/// How long a condition may take before the test fails. Generous: CI machines are busy, and
/// the figures the tests print are what tells whether something is slow.
const LIMIT: Duration = Duration::from_secs(10);

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the testbed tests create network namespaces and must run as root (CI does); they are not skipped"
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A testbed that is removed (`down`) when the test ends, whether it passed or not.
struct Bed {
    bed: Testbed,
    root: PathBuf,
}

impl Bed {
    /// Builds the testbed of the test with letter `tag` and starts the daemons; with `attach`,
    /// both of the mobile node's interfaces attach.
    fn up(tag: char, attach: bool) -> Self {
        require_root();
        let prefix = format!("tb{tag}{}", std::process::id());
        let root = std::env::temp_dir().join(format!("pmip6-testbed-{prefix}"));
        let mut bed = Testbed::new(&prefix, &root).expect("a testbed");
        // `Testbed::new` takes the running executable, which here is the test binary.
        bed.exe = PathBuf::from(env!("CARGO_BIN_EXE_pmip6"));
        let guard = Self { bed, root };
        let start = Instant::now();
        if let Err(e) = guard.bed.up(attach, &mut |line| eprintln!("[{prefix}] {line}")) {
            panic!("testbed {prefix} did not come up: {e:#}");
        }
        eprintln!("[{prefix}] up in {:.1} ms", ms(start.elapsed()));
        guard
    }

    fn prefix(&self) -> &str {
        self.bed.names.prefix()
    }

    fn ns(&self, node: Node) -> String {
        self.bed.names.namespace(node)
    }

    /// The control socket of the daemon `stem` (`lma`, `mag1`, `mag2`).
    fn socket(&self, stem: &str) -> PathBuf {
        self.bed.file(stem, "sock")
    }

    /// One control API exchange that must answer 200 with JSON.
    fn api(&self, stem: &str, method: &str, path: &str, body: Option<String>) -> Value {
        let answer = client::request_blocking(&self.socket(stem), method, path, body)
            .unwrap_or_else(|e| panic!("{stem} {method} {path}: {e}"));
        assert_eq!(answer.status, 200, "{stem} {method} {path}: {}", answer.body);
        serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{stem} {path}: not JSON ({e}): {}", answer.body))
    }

    /// The LMA's binding cache.
    fn lma_bindings(&self) -> Vec<Value> {
        self.api("lma", "GET", "/bindings", None).as_array().cloned().expect("/bindings is an array")
    }

    /// Attaches the mobile node's interface toward `site`, printing the time it took.
    fn attach(&self, site: &MagSite) -> (Ipv6Addr, Duration) {
        let (addr, took) =
            self.bed.attach(site).unwrap_or_else(|e| panic!("{} did not attach: {e:#}\n{}", site.access, self.logs()));
        eprintln!("[{}] {} attached: {addr} in {:.1} ms", self.prefix(), site.access, ms(took));
        (addr, took)
    }

    fn address(&self, site: &MagSite) -> Ipv6Addr {
        self.bed.mobile_node_address(site).unwrap_or_else(|| panic!("{} has no address from the pool", site.access))
    }

    /// The tail of each daemon's log, for a failure message.
    fn logs(&self) -> String {
        ["lma", "mag1", "mag2"]
            .iter()
            .map(|stem| {
                let text = std::fs::read_to_string(self.bed.file(stem, "log")).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!("--- {stem}.log\n{}", lines[lines.len().saturating_sub(8)..].join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The FID the LMA gave the correspondent node's flow from `port`.
    fn flow_id(&self, port: u16) -> u64 {
        let flows = self.api("lma", "GET", "/flows", None);
        flows["mobile_nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|mn| mn["flows"].as_array().into_iter().flatten())
            .find(|f| f["src_port"] == port)
            .and_then(|f| f["fid"].as_u64())
            .unwrap_or_else(|| panic!("the LMA has no flow from port {port}: {flows}"))
    }

    /// Moves the flow from `port` to the UTRAN access through the control API; returns the
    /// instant of the call.
    fn move_to_utran(&self, port: u16) -> Instant {
        let fid = self.flow_id(port);
        let body = format!(r#"{{"mn_id": "{MN_ID}", "fid": {fid}, "target": "utran"}}"#);
        let asked = Instant::now();
        let answer = self.api("lma", "POST", "/flows/move", Some(body));
        eprintln!(
            "[{}] move of flow {port} (FID {fid}) answered in {:.2} ms: {answer}",
            self.prefix(),
            ms(asked.elapsed())
        );
        assert_eq!(answer["fid"], fid, "the move names another flow: {answer}");
        asked
    }

    /// Has the LMA learn the correspondent node's flows to `dst` from `ports` before they start:
    /// one datagram each, too short to carry a sequence number (the receiver ignores it), then
    /// a wait until the LMA lists every flow and its flow map holds them. A flow's datagrams are
    /// then marked in the kernel from the first one on, none waits in the LMA's queue.
    fn learn_flows(&self, dst: Ipv6Addr, ports: &[u16]) {
        let (ns, list) = (self.ns(Node::Cn), ports.to_vec());
        std::thread::spawn(move || {
            enter_namespace(&ns).expect("the correspondent node's namespace");
            for port in list {
                let socket = UdpSocket::bind(SocketAddrV6::new(CN, port, 0, 0)).expect("a socket at the CN");
                socket.send_to(&[0], SocketAddrV6::new(dst, RECEIVE_PORT, 0, 0)).expect("a first datagram");
            }
        })
        .join()
        .expect("the first datagrams are sent");
        let lma_ns = self.ns(Node::Lma);
        let (_, took) = poll("the LMA learns the flows", LIMIT, || {
            let flows = self.api("lma", "GET", "/flows", None);
            let known = flows["mobile_nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|mn| mn["flows"].as_array().into_iter().flatten())
                .filter(|f| f["dst"] == dst.to_string() && ports.iter().any(|p| f["src_port"] == *p))
                .count();
            let elements = nft_map_elements(&lma_ns).len();
            if known == ports.len() && elements >= ports.len() {
                Ok(())
            } else {
                Err(format!("{known} flows, {elements} map elements: {flows}"))
            }
        });
        eprintln!("[{}] the LMA learnt {} flows in {:.1} ms", self.prefix(), ports.len(), ms(took));
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Err(e) = self.bed.down(&mut |_| {}) {
            eprintln!("[{}] down: {e:#}", self.prefix());
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Polls `check` until it gives a value or `limit` passes; then fails with `what` and the last
/// observation. Returns the value and how long it took.
fn poll<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Result<T, String>) -> (T, Duration) {
    let start = Instant::now();
    loop {
        match check() {
            Ok(value) => return (value, start.elapsed()),
            Err(seen) if start.elapsed() > limit => panic!("{what}: not within {limit:?}; last seen: {seen}"),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Polls the receiver until `done` holds.
fn wait_counts(receiver: &Receiver, what: &str, done: impl Fn(&Counts) -> bool) -> (Counts, Duration) {
    poll(what, LIMIT, || {
        let counts = receiver.counts();
        if done(&counts) { Ok(counts) } else { Err(describe(&counts)) }
    })
}

/// Stops the receiver once each flow of `ports` has `sent` datagrams, or two seconds after;
/// the counts.
fn settle(receiver: Receiver, sent: u64, ports: &[u16]) -> Counts {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !ports.iter().all(|p| received(&receiver.counts(), *p) >= sent) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    receiver.stop()
}

fn received(counts: &Counts, port: u16) -> u64 {
    counts.get(&port).map(|f| f.received).unwrap_or(0)
}

fn on(counts: &Counts, port: u16, interface: &str) -> u64 {
    counts.get(&port).and_then(|f| f.by_interface.get(interface).copied()).unwrap_or(0)
}

fn last(counts: &Counts, port: u16) -> Option<&str> {
    counts.get(&port).and_then(|f| f.last_interface.as_deref())
}

fn describe(counts: &Counts) -> String {
    counts
        .iter()
        .map(|(port, f)| {
            let per: Vec<String> = f.by_interface.iter().map(|(i, n)| format!("{i}={n}")).collect();
            format!(
                "flow {port}: {} (received {}, lost {}, reordered {})",
                per.join(" "),
                f.received,
                f.lost(),
                f.reordered
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The /64 of an address.
fn prefix64(addr: Ipv6Addr) -> Ipv6Addr {
    let s = addr.segments();
    Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)
}

fn active(bindings: &[Value]) -> Vec<&Value> {
    bindings.iter().filter(|b| b["state"] == "active").collect()
}

/// The access technology of a binding's (single) attachment.
fn att(binding: &Value) -> Option<u64> {
    binding["attachments"][0]["access_technology"].as_u64()
}

/// Runs a command; its stdout, or a panic with what it printed.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(out.status.success(), "{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the daemons installed in the namespace `ns` and left there: routes and rules tagged
/// with the project's protocol number 157, and `p6t*` tunnel devices.
fn kernel_leftovers(ns: &str) -> Vec<String> {
    let mut left = Vec::new();
    for family in ["-4", "-6"] {
        for line in run("ip", &["-n", ns, family, "route", "show", "table", "all", "proto", "157"]).lines() {
            left.push(format!("route {line}"));
        }
        for line in run("ip", &["-n", ns, family, "rule", "show"]).lines().filter(|l| l.contains("proto 157")) {
            left.push(format!("rule {line}"));
        }
    }
    for line in run("ip", &["-n", ns, "-o", "link", "show"]).lines() {
        let name = line.split(':').nth(1).map(str::trim).unwrap_or_default();
        if name.starts_with("p6t") {
            left.push(format!("device {name}"));
        }
    }
    left
}

/// The elements of the LMA's nftables flow maps (`inet pmip6`).
fn nft_map_elements(lma_ns: &str) -> Vec<String> {
    let out = run("ip", &["netns", "exec", lma_ns, "nft", "-j", "list", "table", "inet", "pmip6"]);
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("nft -j is not JSON ({e}): {out}"));
    json["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|object| object.get("map"))
        .flat_map(|map| {
            let name = map["name"].as_str().unwrap_or("?").to_owned();
            map["elem"].as_array().into_iter().flatten().map(move |e| format!("map {name}: {e}"))
        })
        .collect()
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{name}: {cmdline}"));
        }
    }
    found
}

/// Test 1: both of the mobile node's interfaces are registered, each with a prefix of its own,
/// and the correspondent node reaches the node's address on each prefix, through the interface
/// the prefix belongs to.
#[test]
fn both_interfaces_register_with_distinct_prefixes_and_are_reachable() {
    let bed = Bed::up('a', true);
    let [wlan, umts] = &MAGS;
    let (addr1, addr2) = (bed.address(wlan), bed.address(umts));
    assert_ne!(prefix64(addr1), prefix64(addr2), "if1 and if2 got addresses on the same prefix");

    let bindings = bed.lma_bindings();
    let registered = active(&bindings);
    assert_eq!(registered.len(), 2, "the LMA should hold one active binding per interface: {bindings:?}");
    for (site, addr) in [(wlan, addr1), (umts, addr2)] {
        let binding = registered
            .iter()
            .find(|b| att(b) == Some(u64::from(site.access_technology)))
            .unwrap_or_else(|| panic!("no binding with ATT {}: {bindings:?}", site.access_technology));
        assert_eq!(binding["mn_id"], MN_ID);
        assert_eq!(binding["attachments"][0]["proxy_coa"], site.proxy_coa.to_string(), "{binding}");
        assert_eq!(binding["attachments"][0]["mn_ll_id"], site.mn_mac, "{binding}");
        assert_eq!(binding["attachments"][0]["multihoming"], true, "{binding}");
        assert_eq!(binding["prefixes"], serde_json::json!([format!("{}/64", prefix64(addr))]), "{binding}");
    }

    // One flow to each address; each arrives through the interface of its prefix.
    let (to1, to2) = (5101, 5102);
    let receiver = Receiver::start(&bed.ns(Node::Mn)).expect("a receiver at the mobile node");
    let s1 = Sender::start(&bed.ns(Node::Cn), CN, addr1, &[to1], 500).expect("a sender to pref1");
    let s2 = Sender::start(&bed.ns(Node::Cn), CN, addr2, &[to2], 500).expect("a sender to pref2");
    let (counts, took) =
        wait_counts(&receiver, "datagrams to both prefixes", |c| received(c, to1) >= 50 && received(c, to2) >= 50);
    eprintln!("[{}] 50 datagrams to each prefix after {:.1} ms", bed.prefix(), ms(took));
    drop((s1, s2));
    assert_eq!(
        on(&counts, to1, wlan.access),
        received(&counts, to1),
        "pref1 arrives through if1: {}",
        describe(&counts)
    );
    assert_eq!(
        on(&counts, to2, umts.access),
        received(&counts, to2),
        "pref2 arrives through if2: {}",
        describe(&counts)
    );
}

/// An LMA crash (SIGKILL: its binding cache, flow table and kernel objects lost): the new LMA
/// removes what the old one left in the kernel, starts with a higher Restart Counter (kept in
/// its state directory), the MAGs see it in the next heartbeat and register their bindings again
/// (RFC 5847 §5.2); the LMA ends up with both bindings, the same prefixes, and the mobile node
/// is reachable on both again.
#[test]
fn an_lma_crash_is_noticed_by_the_mags_which_register_again() {
    let bed = Bed::up('g', true);
    let [wlan, umts] = &MAGS;
    let (addr1, addr2) = (bed.address(wlan), bed.address(umts));
    let before: BTreeSet<String> =
        active(&bed.lma_bindings()).iter().filter_map(|b| b["prefixes"][0].as_str().map(str::to_owned)).collect();
    assert_eq!(before.len(), 2, "two prefixes before the crash: {before:?}");
    let counter = |bed: &Bed| -> u32 {
        let file = bed.bed.dir.join("lma-state").join("lma-restart-counter");
        std::fs::read_to_string(&file).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0)
    };
    let first = counter(&bed);
    // Let the MAGs hear the first Restart Counter (heartbeats every 2 s in the testbed).
    poll("both MAGs hear a heartbeat from the LMA", LIMIT, || {
        let heard = ["mag1", "mag2"].iter().all(|stem| {
            let answer = client::request_blocking(&bed.socket(stem), "GET", "/metrics", None);
            answer.is_ok_and(|a| {
                a.body
                    .lines()
                    .any(|l| l.starts_with("pmip6_messages_received_total{type=\"heartbeat\"}") && !l.ends_with(" 0"))
            })
        });
        if heard { Ok(()) } else { Err("no heartbeat at both MAGs yet".to_owned()) }
    });
    let crashed = Instant::now();
    bed.bed.crash_and_restart_lma().unwrap_or_else(|e| panic!("the LMA did not restart: {e:#}\n{}", bed.logs()));
    assert_eq!(counter(&bed), first + 1, "the restarted LMA stored a new Restart Counter");
    let (after, took) = poll("both MAGs register again at the new LMA", LIMIT, || {
        let bindings = bed.lma_bindings();
        let prefixes: BTreeSet<String> =
            active(&bindings).iter().filter_map(|b| b["prefixes"][0].as_str().map(str::to_owned)).collect();
        if prefixes.len() == 2 { Ok(prefixes) } else { Err(format!("{bindings:?}")) }
    });
    eprintln!("[{}] both bindings back {:.0} ms after the crash", bed.prefix(), ms(took.max(crashed.elapsed())));
    assert_eq!(after, before, "the MAGs registered the same prefixes again");
    // The data plane is back: the CN reaches the mobile node on both prefixes.
    let (to1, to2) = (5701, 5702);
    let receiver = Receiver::start(&bed.ns(Node::Mn)).expect("a receiver at the mobile node");
    let s1 = Sender::start(&bed.ns(Node::Cn), CN, addr1, &[to1], 500).expect("a sender to pref1");
    let s2 = Sender::start(&bed.ns(Node::Cn), CN, addr2, &[to2], 500).expect("a sender to pref2");
    let (counts, _) =
        wait_counts(&receiver, "datagrams to both prefixes", |c| received(c, to1) >= 20 && received(c, to2) >= 20);
    drop((s1, s2));
    assert!(on(&counts, to1, wlan.access) > 0 && on(&counts, to2, umts.access) > 0, "{}", describe(&counts));
}

/// Test 2: two flows to the same address of the mobile node, 10,000 datagrams/s in all; one is
/// moved to the UTRAN access through the control API. The move loses nothing; the other flow
/// stays on if1 untouched (no loss, no reordering); and the moved flow, addressed to pref1, now
/// arrives through if2 (the mobile node is a weak host).
///
/// The moved flow may see a datagram or two reordered at the switch: the last datagrams on the
/// old path (LMA → mag1 → if1) and the first on the new one (LMA → mag2 → if2) cross two
/// different user-space tunnel forwarders, on a machine whose two cores the other tests share;
/// this is bounded here and measured by `pmip6 testbed measure` (2-3 in 50 moves).
#[test]
fn a_flow_moves_without_loss_and_the_other_stays() {
    const RATE: u32 = 5_000; // per flow
    let bed = Bed::up('b', true);
    let [wlan, umts] = &MAGS;
    let addr1 = bed.address(wlan);
    assert!(
        !topology::mobile_node_addresses(&bed.bed.names, umts.access).contains(&addr1),
        "pref1's address must live on if1 only"
    );
    let [stay, moving] = [5201u16, 5202];
    let receiver = Receiver::start(&bed.ns(Node::Mn)).expect("a receiver at the mobile node");
    bed.learn_flows(addr1, &[stay, moving]);
    let sender = Sender::start(&bed.ns(Node::Cn), CN, addr1, &[stay, moving], RATE).expect("a sender");
    let (counts, _) = wait_counts(&receiver, "both flows through if1", |c| {
        [stay, moving].iter().all(|p| on(c, *p, wlan.access) >= 1_000)
    });
    assert_eq!(last(&counts, moving), Some(wlan.access), "{}", describe(&counts));
    let before = receiver.counts();
    eprintln!("[{}] before the move: {}", bed.prefix(), describe(&before));
    for port in [stay, moving] {
        let flow = &before[&port];
        assert_eq!((flow.lost(), flow.reordered), (0, 0), "flow {port} before the move: {}", describe(&before));
    }

    let asked = bed.move_to_utran(moving);
    let (counts, _) = wait_counts(&receiver, "the moved flow through if2", |c| on(c, moving, umts.access) >= 2_000);
    let switched = counts[&moving].switched_at.map(|t| t.saturating_duration_since(asked));
    eprintln!(
        "[{}] first datagram of the moved flow on if2 {:.2} ms after the call",
        bed.prefix(),
        ms(switched.unwrap_or_default())
    );

    let sent = sender.stop();
    let counts = settle(receiver, sent, &[stay, moving]);
    eprintln!("[{}] {sent} datagrams per flow at {RATE}/s each: {}", bed.prefix(), describe(&counts));
    for port in [stay, moving] {
        let flow = &counts[&port];
        assert_eq!(flow.received, sent, "flow {port} lost datagrams: {}", describe(&counts));
        assert_eq!(flow.lost(), 0, "flow {port}: {}", describe(&counts));
    }
    assert_eq!(counts[&stay].reordered, 0, "the flow that stays was reordered: {}", describe(&counts));
    assert!(counts[&moving].reordered <= 3, "the move reordered more than the switch: {}", describe(&counts));
    let kept: BTreeSet<&str> = counts[&stay].by_interface.keys().map(String::as_str).collect();
    assert_eq!(kept, BTreeSet::from([wlan.access]), "the other flow must stay on if1: {}", describe(&counts));
    assert!(on(&counts, moving, wlan.access) > 0, "the moved flow started on if1: {}", describe(&counts));
    // Weak host: datagrams for pref1, whose address lives on if1, are taken in through if2.
    assert!(on(&counts, moving, umts.access) > 0, "nothing for pref1 arrived through if2: {}", describe(&counts));
    assert_eq!(last(&counts, moving), Some(umts.access), "the moved flow stays on if2: {}", describe(&counts));
}

/// A flow's set-up at the LMA: no datagram of two new flows at 5,000/s each is lost while the
/// LMA learns them (`learn` steering: the first packets wait in the NFQUEUE for their verdict,
/// with the mark of the route the policy picks).
///
/// Reordering is measured, not asserted: datagrams that arrive once the flow's map element is
/// installed skip the queue, and can overtake the few still waiting there if the LMA is not
/// scheduled in between. The LMA empties the queue before and right after it installs the
/// element, which leaves that window at a few microseconds; NFQUEUE has no way to close it (a
/// move, which does not pass through the queue, is held to zero reordering above).
#[test]
fn a_new_flow_is_learnt_without_loss() {
    const RATE: u32 = 5_000; // per flow
    let bed = Bed::up('f', true);
    let addr1 = bed.address(&MAGS[0]);
    let ports = [5601u16, 5602];
    let receiver = Receiver::start(&bed.ns(Node::Mn)).expect("a receiver at the mobile node");
    let sender = Sender::start(&bed.ns(Node::Cn), CN, addr1, &ports, RATE).expect("a sender");
    wait_counts(&receiver, "both flows arrive", |c| ports.iter().all(|p| received(c, *p) >= 1_000));
    let sent = sender.stop();
    let counts = settle(receiver, sent, &ports);
    eprintln!("[{}] {sent} datagrams per flow at {RATE}/s each: {}", bed.prefix(), describe(&counts));
    for port in ports {
        let flow = &counts[&port];
        assert_eq!((flow.received, flow.lost()), (sent, 0), "flow {port}: {}", describe(&counts));
        eprintln!("[{}] flow {port}: {} datagrams reordered at set-up", bed.prefix(), flow.reordered);
    }
}

/// Test 3: the mobile node's if2 goes down. mag2 notices the lost carrier and de-registers; the
/// LMA keeps if1's binding only, and the flow that had been moved to if2 fails over to if1; the
/// other flow does not notice. When if2 comes back its Router Solicitation is answered at once.
#[test]
fn detaching_if2_deregisters_it_and_the_moved_flow_fails_over() {
    let bed = Bed::up('c', true);
    let [wlan, umts] = &MAGS;
    let addr1 = bed.address(wlan);
    let [stay, moving] = [5301u16, 5302];
    let receiver = Receiver::start(&bed.ns(Node::Mn)).expect("a receiver at the mobile node");
    bed.learn_flows(addr1, &[stay, moving]);
    let sender = Sender::start(&bed.ns(Node::Cn), CN, addr1, &[stay, moving], 1_000).expect("a sender");
    wait_counts(&receiver, "both flows through if1", |c| [stay, moving].iter().all(|p| on(c, *p, wlan.access) >= 100));
    bed.move_to_utran(moving);
    wait_counts(&receiver, "the moved flow through if2", |c| on(c, moving, umts.access) >= 100);

    let detached = Instant::now();
    bed.bed.detach(umts).expect("if2 goes down");
    poll("mag2 de-registers if2 (its Binding Update List empties)", LIMIT, || {
        let list = bed.api("mag2", "GET", "/bindings", None);
        if list.as_array().is_some_and(Vec::is_empty) { Ok(()) } else { Err(list.to_string()) }
    });
    let noticed = detached.elapsed();
    poll("the LMA keeps if1's binding as its only active one", LIMIT, || {
        let bindings = bed.lma_bindings();
        let left = active(&bindings);
        if left.len() == 1 && att(left[0]) == Some(u64::from(wlan.access_technology)) {
            Ok(())
        } else {
            Err(format!("{bindings:?}"))
        }
    });
    let deregistered = detached.elapsed();
    let (counts, _) = wait_counts(&receiver, "the moved flow back on if1", |c| {
        last(c, moving) == Some(wlan.access) && c[&moving].switched_at.is_some_and(|t| t > detached)
    });
    let failover = counts[&moving].switched_at.map(|t| t - detached).unwrap_or_default();
    // MinDelayBeforeBCEDelete (1 s in the testbed) later, the de-registered entry is deleted.
    let (bindings, _) = poll("the LMA shows one binding", LIMIT, || {
        let bindings = bed.lma_bindings();
        if bindings.len() == 1 { Ok(bindings) } else { Err(format!("{bindings:?}")) }
    });
    let deleted = detached.elapsed();
    assert_eq!(bindings[0]["state"], "active", "{bindings:?}");
    assert_eq!(att(&bindings[0]), Some(u64::from(wlan.access_technology)), "{bindings:?}");
    assert_eq!(bindings[0]["prefixes"], serde_json::json!([format!("{}/64", prefix64(addr1))]), "{bindings:?}");
    eprintln!(
        "[{}] after if2 went down: mag2 de-registered within {:.1} ms, the LMA within {:.1} ms, \
         the moved flow's first datagram on if1 after {:.1} ms, the entry deleted after {:.1} ms",
        bed.prefix(),
        ms(noticed),
        ms(deregistered),
        ms(failover),
        ms(deleted)
    );

    // The link's SLAAC address went with it; re-attaching gets one again, promptly.
    poll("if2 loses its address when it goes down", LIMIT, || {
        bed.bed.mobile_node_address(umts).map_or(Ok(()), |a| Err(a.to_string()))
    });
    let (again, _) = bed.attach(umts);
    assert_ne!(prefix64(again), prefix64(addr1), "if2's prefix must differ from if1's");
    let (bindings, _) = poll("the LMA holds both interfaces again", LIMIT, || {
        let bindings = bed.lma_bindings();
        if active(&bindings).len() == 2 { Ok(bindings) } else { Err(format!("{bindings:?}")) }
    });
    let utran = active(&bindings)
        .into_iter()
        .find(|b| att(b) == Some(u64::from(umts.access_technology)))
        .unwrap_or_else(|| panic!("no UTRAN binding: {bindings:?}"))
        .clone();
    assert_eq!(utran["prefixes"], serde_json::json!([format!("{}/64", prefix64(again))]), "{utran}");

    let sent = sender.stop();
    let counts = settle(receiver, sent, &[stay]);
    eprintln!("[{}] {sent} datagrams per flow: {}", bed.prefix(), describe(&counts));
    let kept = &counts[&stay];
    let interfaces: BTreeSet<&str> = kept.by_interface.keys().map(String::as_str).collect();
    assert_eq!(interfaces, BTreeSet::from([wlan.access]), "the other flow must stay on if1: {}", describe(&counts));
    assert_eq!((kept.lost(), kept.reordered), (0, 0), "the other flow must not notice: {}", describe(&counts));
}

/// Test 4: when both of the mobile node's interfaces go down and MinDelayBeforeBCEDelete has
/// passed, nothing of the node is left: no binding, no route or rule with protocol 157, no tunnel
/// device, no element in the LMA's flow maps, at the LMA and at each MAG. After `down`, no
/// namespace and no daemon of the testbed remains.
#[test]
fn deregistration_and_down_leave_nothing_behind() {
    let bed = Bed::up('d', true);
    let [wlan, umts] = &MAGS;
    let addr1 = bed.address(wlan);
    // Something to remove: a flow in the LMA's map, moved to the other MAG.
    let port = 5401;
    let receiver = Receiver::start(&bed.ns(Node::Mn)).expect("a receiver at the mobile node");
    let sender = Sender::start(&bed.ns(Node::Cn), CN, addr1, &[port], 1_000).expect("a sender");
    wait_counts(&receiver, "the flow through if1", |c| on(c, port, wlan.access) >= 50);
    bed.move_to_utran(port);
    wait_counts(&receiver, "the flow through if2", |c| on(c, port, umts.access) >= 50);
    drop(sender);
    drop(receiver);

    let lma_ns = bed.ns(Node::Lma);
    let map = nft_map_elements(&lma_ns);
    assert!(!map.is_empty(), "the moved flow should be in the LMA's flow map");
    for node in [Node::Lma, Node::Mag1, Node::Mag2] {
        let installed = kernel_leftovers(&bed.ns(node));
        assert!(!installed.is_empty(), "the daemon in {} should have installed routes and devices", bed.ns(node));
    }

    for site in [wlan, umts] {
        bed.bed.detach(site).expect("the link goes down");
    }
    let (_, emptied) = poll("the LMA's binding cache empties", LIMIT, || {
        let bindings = bed.lma_bindings();
        if bindings.is_empty() { Ok(()) } else { Err(format!("{bindings:?}")) }
    });
    let (_, cleaned) = poll("the LMA's kernel state is removed", LIMIT, || {
        let mut left = kernel_leftovers(&lma_ns);
        left.extend(nft_map_elements(&lma_ns));
        if left.is_empty() { Ok(()) } else { Err(left.join("\n")) }
    });
    for (node, stem) in [(Node::Mag1, "mag1"), (Node::Mag2, "mag2")] {
        poll(&format!("{stem}'s kernel state is removed"), LIMIT, || {
            let left = kernel_leftovers(&bed.ns(node));
            if left.is_empty() { Ok(()) } else { Err(left.join("\n")) }
        });
        let resources = bed.api(stem, "GET", "/resources", None);
        assert_eq!(resources, serde_json::json!([]), "{stem} still holds resources");
        let list = bed.api(stem, "GET", "/bindings", None);
        assert_eq!(list, serde_json::json!([]), "{stem} still holds Binding Update List entries");
    }
    let flows = bed.api("lma", "GET", "/flows", None);
    let remaining: usize =
        flows["mobile_nodes"].as_array().into_iter().flatten().map(|m| m["flows"].as_array().map_or(0, Vec::len)).sum();
    assert_eq!(remaining, 0, "the LMA still has flows: {flows}");
    eprintln!(
        "[{}] both links down: binding cache empty after {:.1} ms, the LMA's kernel state gone after {:.1} ms",
        bed.prefix(),
        ms(emptied),
        ms(emptied + cleaned)
    );

    let pids: Vec<i32> = ["lma", "mag1", "mag2"]
        .iter()
        .map(|stem| {
            let text = std::fs::read_to_string(bed.bed.file(stem, "pid")).expect("a pid file");
            text.trim().parse().expect("a process id")
        })
        .collect();
    let dir = bed.bed.dir.display().to_string();
    let start = Instant::now();
    bed.bed.down(&mut |line| eprintln!("[{}] {line}", bed.prefix())).expect("down");
    eprintln!("[{}] down in {:.1} ms", bed.prefix(), ms(start.elapsed()));
    assert_eq!(topology::existing_namespaces(&bed.bed.names), Vec::<String>::new(), "namespaces left after down");
    let listed = run("ip", &["netns", "list"]);
    let ours: Vec<&str> = listed.lines().filter(|l| l.starts_with(&format!("{}-", bed.prefix()))).collect();
    assert!(ours.is_empty(), "namespaces left after down: {ours:?}");
    assert!(!bed.bed.dir.exists(), "the state directory is left after down");
    assert_eq!(processes_mentioning(&dir), Vec::<String>::new(), "processes of the testbed left after down");
    for pid in pids {
        assert!(!running(pid), "daemon {pid} still runs after down");
    }
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn running(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// A packet capture running in a namespace; stopped (or killed) when dropped.
struct Capture {
    child: Option<Child>,
    log: PathBuf,
}

impl Capture {
    /// Starts tcpdump on every link of namespace `ns`, writing to `pcap`; returns once it listens.
    fn start(ns: &str, pcap: &Path, log: &Path) -> Self {
        let err = std::fs::File::create(log).expect("a tcpdump log");
        let child = Command::new("ip")
            // `-Z root`: tcpdump would otherwise write the file as its own unprivileged user;
            // `--immediate-mode`: else packets wait in the kernel's ring for up to a second and
            // an interrupted capture misses them.
            .args(["netns", "exec", ns, "tcpdump", "-Z", "root", "--immediate-mode", "-i", "any", "-U", "-n", "-w"])
            .arg(pcap)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("tcpdump runs (apt-get install tcpdump)");
        let mut capture = Self { child: Some(child), log: log.to_owned() };
        poll("tcpdump listens", LIMIT, || {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains("listening on") {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = capture.child.as_mut().map(Child::try_wait) {
                panic!("tcpdump stopped ({status}): {text}");
            }
            Err(text)
        });
        capture
    }

    /// Stops tcpdump with SIGINT, so that it writes out what it has; fails if it had stopped.
    fn stop(&mut self) {
        if let Some(error) = self.end() {
            panic!("{error}");
        }
    }

    /// Stops tcpdump; what went wrong, if it had stopped before.
    fn end(&mut self) -> Option<String> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            return Some(format!("tcpdump stopped before the end of the capture ({status}): {log}"));
        }
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a process id"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.end();
    }
}

/// Runs tshark on `pcap` with display filter `filter`; one map of `fields` per packet.
fn tshark(pcap: &Path, filter: &str, fields: &[&'static str]) -> Vec<std::collections::BTreeMap<&'static str, String>> {
    let mut args = vec!["-r".to_owned(), pcap.display().to_string(), "-Y".to_owned(), filter.to_owned()];
    args.extend(["-T", "fields", "-E", "separator=/t", "-E", "aggregator=,", "-E", "occurrence=a"].map(String::from));
    for field in fields {
        args.extend(["-e".to_owned(), (*field).to_owned()]);
    }
    let out = Command::new("tshark").args(&args).output().expect("tshark runs");
    assert!(out.status.success(), "tshark {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|line| fields.iter().copied().zip(line.split('\t').map(str::to_owned)).collect())
        .collect()
}

/// Test 5: the signalling captured at the LMA, dissected by Wireshark: nothing malformed, no
/// expert warning; each attachment's PBU carries the MN-ID, an HNP request (::/0), its access
/// technology (4 for if1, then 7 for if2) and the MuHo option (type 18, which Wireshark shows as
/// the Experimental Mobility Option); each PBA accepts (status 0) with the prefix the interface
/// got, and the second PBA's MuHo tells mag2 the prefix of if1.
#[test]
fn the_signalling_on_the_wire_passes_tshark() {
    for tool in ["tshark", "tcpdump"] {
        let version = Command::new(tool).arg("--version").output();
        assert!(
            matches!(version, Ok(ref o) if o.status.success()),
            "{tool} is missing (apt-get install {tool}); this test needs it and is not skipped"
        );
    }
    let bed = Bed::up('e', false);
    let [wlan, umts] = &MAGS;
    let pcap = bed.root.join(format!("{}-lma.pcap", bed.prefix()));
    let mut capture = Capture::start(&bed.ns(Node::Lma), &pcap, &bed.root.join("tcpdump.log"));
    let (addr1, _) = bed.attach(wlan);
    let (addr2, _) = bed.attach(umts);
    let (pref1, pref2) = (prefix64(addr1), prefix64(addr2));
    // mag1 learns pref2 from the LMA's notification: the exchange is over.
    poll("mag1 learns pref2", LIMIT, || {
        let resources = bed.api("mag1", "GET", "/resources", None);
        let known = resources.as_array().into_iter().flatten().any(|r| r["prefix"] == format!("{pref2}/64"));
        if known { Ok(()) } else { Err(resources.to_string()) }
    });
    capture.stop();

    let bad = tshark(&pcap, "_ws.malformed || _ws.expert.severity >= 6291456", &["frame.number", "_ws.expert.message"]);
    assert!(bad.is_empty(), "Wireshark finds malformed packets or expert warnings: {bad:?}");

    let fields = [
        "frame.number",
        "ipv6.src",
        "ipv6.dst",
        "mip6.mhtype",
        "mip6.bu.p_flag",
        "mip6.ba.p_flag",
        "mip6.ba.status",
        "mip6.mnid.identifier",
        "mip6.nemo.mnp.pfl",
        "mip6.nemo.mnp.mnp",
        "mip6.hi",
        "mip6.att",
        "mip6.options.em",
    ];
    let packets = tshark(&pcap, "mipv6", &fields);
    let dump = packets.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join("\n");
    eprintln!("[{}] Mobility Header messages at the LMA:\n{dump}", bed.prefix());
    let find = |mhtype: &str, att: u8| {
        packets
            .iter()
            .position(|p| p["mip6.mhtype"] == mhtype && p["mip6.att"] == att.to_string())
            .unwrap_or_else(|| panic!("no message of type {mhtype} with ATT {att} captured:\n{dump}"))
    };
    let hex = |prefix: Ipv6Addr| prefix.octets().iter().map(|b| format!("{b:02x}")).collect::<String>();
    let zero = Ipv6Addr::UNSPECIFIED;
    let mut order = Vec::new();
    for (site, prefix, other) in [(wlan, pref1, None), (umts, pref2, Some(pref1))] {
        let (pbu, pba) = (find("5", site.access_technology), find("6", site.access_technology));
        order.extend([pbu, pba]);
        let (pbu, pba) = (&packets[pbu], &packets[pba]);
        // The PBU: proxy registration, MN-ID, a request for a new prefix, attachment over a new
        // interface, the access technology, and MuHo asking for the other interfaces' prefixes.
        assert_eq!(
            (pbu["ipv6.src"].as_str(), pbu["ipv6.dst"].as_str()),
            (&*site.proxy_coa.to_string(), "2001:db8:ffff::1")
        );
        assert!(matches!(pbu["mip6.bu.p_flag"].as_str(), "True" | "1"), "PBU without the P flag: {pbu:?}");
        assert_eq!(pbu["mip6.mnid.identifier"], MN_ID, "{pbu:?}");
        assert_eq!((pbu["mip6.nemo.mnp.pfl"].as_str(), pbu["mip6.nemo.mnp.mnp"].as_str()), ("0", "::"), "{pbu:?}");
        assert_eq!(pbu["mip6.hi"], "1", "{pbu:?}");
        assert_eq!(pbu["mip6.options.em"], format!("12120000{}", hex(zero)), "MuHo (type 18) request: {pbu:?}");
        // The PBA: accepted, with the interface's prefix; MuHo with if1's prefix for if2.
        assert_eq!(
            (pba["ipv6.src"].as_str(), pba["ipv6.dst"].as_str()),
            ("2001:db8:ffff::1", &*site.proxy_coa.to_string())
        );
        assert!(matches!(pba["mip6.ba.p_flag"].as_str(), "True" | "1"), "PBA without the P flag: {pba:?}");
        assert_eq!(pba["mip6.ba.status"], "0", "{pba:?}");
        assert_eq!(pba["mip6.mnid.identifier"], MN_ID, "{pba:?}");
        assert_eq!((pba["mip6.nemo.mnp.pfl"].as_str(), pba["mip6.nemo.mnp.mnp"].clone()), ("64", prefix.to_string()));
        let muho = match other {
            Some(p) => format!("12120040{}", hex(p)),
            None => format!("12120000{}", hex(zero)),
        };
        assert_eq!(pba["mip6.options.em"], muho, "MuHo (type 18) in the PBA: {pba:?}");
    }
    assert!(order.is_sorted(), "PBU and PBA of if1, then of if2, in this order: frames {order:?}\n{dump}");
    let failed = packets.iter().filter(|p| p["mip6.mhtype"] == "6" && p["mip6.ba.status"] != "0").count();
    assert_eq!(failed, 0, "every PBA accepts:\n{dump}");
}

/// The README's main job in both prefix modes, as a newcomer runs it: `pmip6 testbed demo`
/// exits 0 only if every step did what it said (attachments, the move, the failover), and
/// leaves nothing behind.
#[test]
fn the_demo_does_what_it_says_in_both_prefix_modes() {
    require_root();
    for (tag, mode) in [('u', "unique"), ('s', "shared")] {
        let prefix = format!("td{tag}{}", std::process::id());
        let root = std::env::temp_dir().join(format!("pmip6-testbed-{prefix}"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pmip6"))
            .args(["testbed", "demo", "--prefix-mode", mode, "--prefix", &prefix, "--state-dir"])
            .arg(&root)
            .output()
            .expect("run pmip6 testbed demo");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            // The demo removes its testbed even when a step fails; make sure.
            let _ = std::process::Command::new(env!("CARGO_BIN_EXE_pmip6"))
                .args(["testbed", "down", "--prefix", &prefix, "--state-dir"])
                .arg(&root)
                .output();
        }
        let _ = std::fs::remove_dir_all(&root);
        assert!(out.status.success(), "the {mode} demo failed:\n{text}");
        assert!(!text.contains("\nNO "), "a step did not do what it said:\n{text}");
        let left: Vec<String> =
            run("ip", &["netns", "list"]).lines().filter(|l| l.contains(&prefix)).map(str::to_owned).collect();
        assert!(left.is_empty(), "namespaces left by the {mode} demo: {left:?}");
    }
}
