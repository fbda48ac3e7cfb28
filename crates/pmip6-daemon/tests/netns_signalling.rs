//! End-to-end signalling between the LMA and MAG drivers over real raw Mobility Header sockets,
//! in two network namespaces joined by a veth pair. Needs root (CI runs as root); fails loudly
//! otherwise.
//!
//! The LMA and the MAG each run on a thread that has entered its namespace (`setns`) before
//! building its runtime; the test reads their status files until a deadline, then stops them
//! and inspects the engines.

use std::fs::File;
use std::net::Ipv6Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pmip6_daemon::config::{LmaFile, MagFile, interface_index};
use pmip6_daemon::{Counters, Driver, MhSocket, start_lma, start_mag};
use pmip6_engine::lma::Lma;
use pmip6_engine::mag::Mag;

const LMAA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
const PROXY_COA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2);

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status();
    assert!(matches!(status, Ok(s) if s.success()), "ip {} failed: {status:?}", args.join(" "));
}

/// Two namespaces and a veth pair between them (and, for a mobile node, a third namespace),
/// removed on drop.
struct Namespaces {
    lma: String,
    mag: String,
    extra: Vec<String>,
    dir: PathBuf,
}

impl Namespaces {
    fn new(tag: &str) -> Self {
        let pid = std::process::id();
        let lma = format!("pmip6-{tag}-lma-{pid}");
        let mag = format!("pmip6-{tag}-mag-{pid}");
        let dir = std::env::temp_dir().join(format!("pmip6-{tag}-{pid}"));
        let _ = std::fs::create_dir_all(&dir);
        // The guard exists before the first namespace, so a failure half-way still cleans up.
        let guard = Self { lma, mag, extra: Vec::new(), dir };
        ip(&["netns", "add", &guard.lma]);
        ip(&["netns", "add", &guard.mag]);
        let initial = tag.get(..1).unwrap_or("x");
        let (a, b) = (format!("{initial}l{pid}"), format!("{initial}m{pid}"));
        ip(&["link", "add", &a, "netns", &guard.lma, "type", "veth", "peer", "name", &b, "netns", &guard.mag]);
        for (ns, link, addr) in [(&guard.lma, &a, "2001:db8:ffff::1/64"), (&guard.mag, &b, "2001:db8:ffff::2/64")] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "addr", "add", addr, "dev", link, "nodad"]);
            ip(&["-n", ns, "link", "set", link, "up"]);
        }
        guard
    }
}

impl Namespaces {
    /// A mobile node's namespace, linked to the MAG's by a veth pair whose MAG end `ma<pid>`
    /// carries `fe80::1` and whose node end `mn<pid>` has the MAC `02:00:00:00:00:01`, left down.
    /// Returns the namespace and the two link names.
    fn add_mobile_node(&mut self) -> (String, String, String) {
        let pid = std::process::id();
        let ns = format!("pmip6-sig-mn-{pid}");
        ip(&["netns", "add", &ns]);
        self.extra.push(ns.clone());
        let (access, node) = (format!("ma{pid}"), format!("mn{pid}"));
        ip(&["link", "add", &access, "netns", &self.mag, "type", "veth", "peer", "name", &node, "netns", &ns]);
        ip(&["-n", &self.mag, "addr", "add", "fe80::1/64", "dev", &access, "nodad"]);
        ip(&["-n", &self.mag, "link", "set", &access, "up"]);
        ip(&["-n", &ns, "link", "set", &node, "address", "02:00:00:00:00:01"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        (ns, access, node)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in [&self.lma, &self.mag].into_iter().chain(&self.extra) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "this test creates network namespaces and must run as root (CI does); it was not skipped");
}

fn enter(ns: &str) {
    let file = File::open(Path::new("/run/netns").join(ns));
    let file = match file {
        Ok(f) => f,
        Err(e) => panic!("cannot open namespace {ns}: {e}"),
    };
    // SAFETY: a valid namespace descriptor; this affects the calling thread only.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    }
}

async fn until(stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn spawn_lma(ns: &str, status: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(Lma, Counters)> {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        enter(&ns);
        let text = format!(
            "address = \"{LMAA}\"\nprefix_pools = [\"2001:db8:100::/40\"]\nstatus_file = {:?}\n",
            status.display().to_string()
        );
        let settings = LmaFile::from_toml(&text).and_then(|f| f.validate());
        let settings = match settings {
            Ok(s) => s,
            Err(e) => panic!("LMA configuration: {e}"),
        };
        runtime().block_on(async move {
            let (mut driver, socket): (Driver<Lma>, MhSocket) = match start_lma(settings) {
                Ok(started) => started,
                Err(e) => panic!("LMA socket: {e}"),
            };
            if let Err(e) = driver.run(&socket, &[], until(stop)).await {
                panic!("LMA driver: {e}");
            }
            (driver.engine, driver.counters)
        })
    })
}

/// The MAG's configuration: mn1 on access interface `access`, attached at start (without
/// router solicitations) or by its Router Solicitation.
fn mag_config(status: &Path, access: &str, static_attach: bool) -> String {
    format!(
        "proxy_coa = \"{PROXY_COA}\"\nlma_address = \"{LMAA}\"\nattach_static_at_start = {static_attach}\n\
         router_solicitations = {}\nstatus_file = {:?}\n\
         [[interfaces]]\nname = \"{access}\"\naccess_technology = 3\nlink_local = \"fe80::1\"\n\
         [[mobile_nodes]]\nmn_id = \"mn1@example.net\"\nmacs = [\"02:00:00:00:00:01\"]\n",
        !static_attach,
        status.display().to_string()
    )
}

fn spawn_mag(ns: &str, text: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(Mag, Counters)> {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        enter(&ns);
        let settings = MagFile::from_toml(&text).and_then(|f| f.validate(interface_index));
        let settings = match settings {
            Ok(s) => s,
            Err(e) => panic!("MAG configuration: {e}"),
        };
        runtime().block_on(async move {
            let (mut driver, socket, access) = match start_mag(settings) {
                Ok(started) => started,
                Err(e) => panic!("MAG socket: {e}"),
            };
            if let Err(e) = driver.run(&socket, &access, until(stop)).await {
                panic!("MAG driver: {e}");
            }
            (driver.engine, driver.counters)
        })
    })
}

/// Reads `path` until `accept` holds for its contents or the deadline passes.
fn wait_for(path: &Path, deadline: Instant, accept: impl Fn(&str) -> bool) -> Result<String, String> {
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if accept(&text) {
            return Ok(text);
        }
        if Instant::now() > deadline {
            return Err(text);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn line_value(text: &str, key: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok())).unwrap_or(0)
}

/// Malformed Mobility Headers whose checksum is right (the kernel fills it in), so they reach
/// the LMA's parser: a PBU whose option overruns the message, a PBU with a bad Payload Proto,
/// a message whose Header Len claims more than was sent, and a PBU with an option of length
/// zero where the Home Network Prefix needs 18.
fn malformed_burst() -> Vec<Vec<u8>> {
    let mut pbu_overrun = vec![59, 1, 5, 0, 0, 0, 0, 1, 0x80, 0, 0, 100, 8, 200, 0, 0];
    pbu_overrun[1] = 1; // Header Len 1: 16 octets
    let bad_proto = vec![6, 1, 5, 0, 0, 0, 0, 1, 0x80, 0, 0, 100, 0, 0, 0, 0];
    let short = vec![59, 3, 5, 0, 0, 0, 0, 1];
    let bad_hnp = vec![59, 1, 5, 0, 0, 0, 0, 1, 0x80, 0, 0, 100, 22, 0, 1, 0];
    let mut out = Vec::new();
    for _ in 0..25 {
        out.extend([pbu_overrun.clone(), bad_proto.clone(), short.clone(), bad_hnp.clone()]);
    }
    out
}

#[test]
fn mag_registers_with_lma_across_namespaces_after_a_malformed_burst() {
    require_root();
    let ns = Namespaces::new("sig");
    let lma_status = ns.dir.join("lma.status");
    let mag_status = ns.dir.join("mag.status");
    let stop = Arc::new(AtomicBool::new(false));
    let lma = spawn_lma(&ns.lma, lma_status.clone(), stop.clone());

    // The LMA is up when its status file exists.
    let up = wait_for(&lma_status, Instant::now() + Duration::from_secs(10), |t| t.contains("bindings 0"));
    assert!(up.is_ok(), "the LMA did not start: {up:?}");

    // A burst of malformed messages from the MAG's namespace.
    let mag_ns = ns.mag.clone();
    let sender = std::thread::spawn(move || {
        enter(&mag_ns);
        runtime().block_on(async {
            let socket = match MhSocket::bind(PROXY_COA) {
                Ok(s) => s,
                Err(e) => panic!("sender socket: {e}"),
            };
            let burst = malformed_burst();
            for bytes in &burst {
                if let Err(e) = socket.send_bytes(bytes, LMAA).await {
                    panic!("send: {e}");
                }
            }
            burst.len()
        })
    });
    let sent = sender.join().unwrap_or_else(|_| panic!("the sender panicked"));
    let burst = wait_for(&lma_status, Instant::now() + Duration::from_secs(10), |t| line_value(t, "malformed ") > 0);
    assert!(burst.is_ok(), "no malformed message reached the LMA's parser (sent {sent}): {burst:?}");

    // Now the MAG attaches mn1 from its static table and registers it.
    let mag = spawn_mag(&ns.mag, mag_config(&mag_status, "lo", true), stop.clone());
    let deadline = Instant::now() + Duration::from_secs(15);
    let bound = wait_for(&lma_status, deadline, |t| t.contains("bindings 1") && t.contains("nai:mn1@example.net"));
    let mag_bound = wait_for(&mag_status, deadline, |t| t.contains("bound 1"));
    stop.store(true, Ordering::Relaxed);
    let (lma, lma_counters) = lma.join().unwrap_or_else(|_| panic!("the LMA thread panicked"));
    let (mag, mag_counters) = mag.join().unwrap_or_else(|_| panic!("the MAG thread panicked"));

    eprintln!("LMA status:\n{}\nMAG status:\n{}", bound.as_deref().unwrap_or("-"), mag_bound.as_deref().unwrap_or("-"));
    assert!(bound.is_ok(), "no binding at the LMA: {bound:?}");
    assert!(mag_bound.is_ok(), "the MAG got no PBA: {mag_bound:?}");
    assert_eq!(lma.binding_cache().len(), 1);
    let binding = lma.binding_cache().iter().next();
    assert!(binding.is_some_and(|b| b.primary().proxy_coa() == PROXY_COA && !b.prefixes().is_empty()));
    assert!(mag.binding_update_list().iter().any(|e| e.is_bound()));
    assert!(lma_counters.malformed > 0, "{lma_counters:?}");
    assert!(lma_counters.sent >= 1 && mag_counters.sent >= 1, "{lma_counters:?} {mag_counters:?}");
    assert_eq!(mag_counters.malformed, 0, "{mag_counters:?}");
}

/// A real Linux host as the mobile node: its kernel's Router Solicitation (source link-layer
/// address 02:00:00:00:00:01, in the MAG's table) reaches the MAG's access-link socket, the MAG
/// registers it with the LMA, and the Router Advertisement it then sends makes the host
/// configure an address from the home network prefix the LMA assigned.
#[test]
fn a_router_solicitation_registers_the_node_and_its_address_comes_from_the_home_prefix() {
    require_root();
    let mut ns = Namespaces::new("rs");
    let (mn_ns, access, node) = ns.add_mobile_node();
    let lma_status = ns.dir.join("lma.status");
    let mag_status = ns.dir.join("mag.status");
    let stop = Arc::new(AtomicBool::new(false));
    let lma = spawn_lma(&ns.lma, lma_status.clone(), stop.clone());
    let mag = spawn_mag(&ns.mag, mag_config(&mag_status, &access, false), stop.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    let up = wait_for(&mag_status, deadline, |t| t.contains("entries 0"));
    assert!(up.is_ok(), "the MAG did not start: {up:?}");
    // The node's link comes up now: its kernel solicits a router once its link-local address
    // is usable.
    ip(&["-n", &mn_ns, "link", "set", &node, "up"]);
    let bound = wait_for(&lma_status, deadline, |t| t.contains("nai:mn1@example.net Active"));
    let mag_bound = wait_for(&mag_status, deadline, |t| t.contains("bound 1"));
    let mut address = String::new();
    while Instant::now() < deadline {
        let out = Command::new("ip").args(["-n", &mn_ns, "-6", "addr", "show", "dev", &node]).output();
        address = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        if address.contains("inet6 2001:db8:1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mag_text = std::fs::read_to_string(&mag_status).unwrap_or_default();
    stop.store(true, Ordering::Relaxed);
    let (lma, _) = lma.join().unwrap_or_else(|_| panic!("the LMA thread panicked"));
    let (_, mag_counters) = mag.join().unwrap_or_else(|_| panic!("the MAG thread panicked"));
    assert!(bound.is_ok(), "no binding at the LMA: {bound:?}");
    assert!(mag_bound.is_ok(), "the MAG got no PBA: {mag_bound:?}");
    assert!(mag_counters.nd_received > 0, "{mag_text}");
    let prefix = lma.binding_cache().iter().next().and_then(|b| b.prefixes().first().copied());
    let Some(prefix) = prefix else { panic!("no prefix at the LMA") };
    // The host's SLAAC address lies in the assigned /64.
    let in_prefix = address
        .split_whitespace()
        .filter_map(|word| word.split_once('/').and_then(|(a, _)| a.parse::<Ipv6Addr>().ok()))
        .any(|a| a.segments()[..4] == prefix.addr.segments()[..4]);
    assert!(in_prefix, "the node has no address from {prefix}: {address}\nMAG status:\n{mag_text}");
}
