//! The pcap tap of a real exchange, read by tshark: an LMA and a MAG driver, each with a tap,
//! register mn1 over raw Mobility Header sockets in a network namespace of their own (the LMA
//! on 2001:db8:ffff::1, the MAG on ::2, both on its loopback); then tshark must decode the PBU
//! (MH type 5) and the PBA (6) in both files with the right sources, and flag nothing as
//! malformed.
//!
//! Needs root (a namespace, raw sockets) and the Debian package tshark; CI has both. Without
//! either the test fails, never skips.

use std::fs::File;
use std::net::Ipv6Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pcap_file::DataLink;
use pcap_file::pcap::PcapReader;
use pmip6_daemon::config::{LmaFile, MagFile, interface_index};
use pmip6_daemon::tap::Tap;
use pmip6_daemon::{start_lma, start_mag};
use pmip6_wire::checksum::pseudo_header_checksum;

const LMAA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
const PROXY_COA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2);

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status();
    assert!(matches!(status, Ok(s) if s.success()), "ip {} failed: {status:?}", args.join(" "));
}

/// One namespace with both addresses on its loopback and a scratch directory, removed on drop.
struct Namespace {
    name: String,
    dir: PathBuf,
}

impl Namespace {
    fn new() -> Self {
        let pid = std::process::id();
        let guard = Self {
            name: format!("pmip6-tap-{pid}"),
            dir: std::env::temp_dir().join(format!("pmip6-tap-tshark-{pid}")),
        };
        let _ = std::fs::create_dir_all(&guard.dir);
        ip(&["netns", "add", &guard.name]);
        ip(&["-n", &guard.name, "link", "set", "lo", "up"]);
        for addr in ["2001:db8:ffff::1/128", "2001:db8:ffff::2/128"] {
            ip(&["-n", &guard.name, "addr", "add", addr, "dev", "lo", "nodad"]);
        }
        guard
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "this test creates a network namespace and must run as root (CI does); it was not skipped");
}

fn enter(ns: &str) {
    let file = match File::open(Path::new("/run/netns").join(ns)) {
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

fn tap(path: &Path) -> Tap {
    match Tap::create(path) {
        Ok(tap) => tap,
        Err(e) => panic!("tap {}: {e}", path.display()),
    }
}

/// Runs the LMA with a tap at `pcap` until `stop`; the tap is closed (flushed) before the
/// thread ends.
fn spawn_lma(ns: &str, status: &Path, pcap: &Path, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let (ns, status, pcap) = (ns.to_owned(), status.to_owned(), pcap.to_owned());
    std::thread::spawn(move || {
        enter(&ns);
        let text = format!(
            "address = \"{LMAA}\"\nprefix_pools = [\"2001:db8:100::/40\"]\nstatus_file = {:?}\n",
            status.display().to_string()
        );
        let settings = match LmaFile::from_toml(&text).and_then(|f| f.validate()) {
            Ok(s) => s,
            Err(e) => panic!("LMA configuration: {e}"),
        };
        runtime().block_on(async move {
            let (mut driver, socket) = match start_lma(settings) {
                Ok(started) => started,
                Err(e) => panic!("LMA socket: {e}"),
            };
            driver.attach_tap(tap(&pcap));
            if let Err(e) = driver.run(&socket, &[], until(stop)).await {
                panic!("LMA driver: {e}");
            }
            driver.close_tap();
        });
    })
}

/// Runs the MAG (mn1 attached from its static table) with a tap at `pcap` until `stop`.
fn spawn_mag(ns: &str, status: &Path, pcap: &Path, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let (ns, status, pcap) = (ns.to_owned(), status.to_owned(), pcap.to_owned());
    std::thread::spawn(move || {
        enter(&ns);
        let text = format!(
            "proxy_coa = \"{PROXY_COA}\"\nlma_address = \"{LMAA}\"\nattach_static_at_start = true\n\
             router_solicitations = false\nstatus_file = {:?}\n\
             [[interfaces]]\nname = \"lo\"\naccess_technology = 3\nlink_local = \"fe80::1\"\n\
             [[mobile_nodes]]\nmn_id = \"mn1@example.net\"\nmacs = [\"02:00:00:00:00:01\"]\n",
            status.display().to_string()
        );
        let settings = match MagFile::from_toml(&text).and_then(|f| f.validate(interface_index)) {
            Ok(s) => s,
            Err(e) => panic!("MAG configuration: {e}"),
        };
        runtime().block_on(async move {
            let (mut driver, socket, access) = match start_mag(settings) {
                Ok(started) => started,
                Err(e) => panic!("MAG socket: {e}"),
            };
            driver.attach_tap(tap(&pcap));
            if let Err(e) = driver.run(&socket, &access, until(stop)).await {
                panic!("MAG driver: {e}");
            }
            driver.close_tap();
        });
    })
}

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

/// tshark's standard output for `args`; fails loudly without tshark.
fn tshark(args: &[&str]) -> String {
    let output = match Command::new("tshark").args(args).output() {
        Ok(output) => output,
        Err(e) => panic!("cannot run tshark (install the Debian package tshark; CI does): {e}"),
    };
    assert!(output.status.success(), "tshark {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every record of `path` as raw IPv6 with a checksum that verifies (recomputed here).
fn check_records(path: &Path) -> usize {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = PcapReader::new(file).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(reader.header().datalink, DataLink::IPV6);
    let mut count = 0;
    while let Some(packet) = reader.next_packet() {
        let packet = packet.unwrap_or_else(|e| panic!("{}: record {count}: {e}", path.display()));
        let data = &packet.data;
        assert!(data.len() > 40, "record {count} is too short: {data:?}");
        let octets = |range: std::ops::Range<usize>| <[u8; 16]>::try_from(&data[range]).unwrap_or([0; 16]);
        let (src, dst) = (Ipv6Addr::from(octets(8..24)), Ipv6Addr::from(octets(24..40)));
        assert_eq!(usize::from(u16::from_be_bytes([data[4], data[5]])), data.len() - 40, "record {count}");
        assert_eq!(pseudo_header_checksum(&src, &dst, data[6], &data[40..]), 0, "record {count}: checksum");
        count += 1;
    }
    count
}

#[test]
fn tshark_decodes_the_pbu_and_pba_each_tap_recorded() {
    require_root();
    let ns = Namespace::new();
    let (lma_status, mag_status) = (ns.dir.join("lma.status"), ns.dir.join("mag.status"));
    let (lma_pcap, mag_pcap) = (ns.dir.join("lma.pcap"), ns.dir.join("mag.pcap"));
    let stop = Arc::new(AtomicBool::new(false));
    let lma = spawn_lma(&ns.name, &lma_status, &lma_pcap, stop.clone());
    let up = wait_for(&lma_status, Instant::now() + Duration::from_secs(10), |t| t.contains("bindings 0"));
    assert!(up.is_ok(), "the LMA did not start: {up:?}");
    let mag = spawn_mag(&ns.name, &mag_status, &mag_pcap, stop.clone());
    let bound = wait_for(&mag_status, Instant::now() + Duration::from_secs(15), |t| t.contains("bound 1"));
    stop.store(true, Ordering::Relaxed);
    let lma = lma.join();
    let mag = mag.join();
    assert!(lma.is_ok() && mag.is_ok(), "a driver thread panicked");
    assert!(bound.is_ok(), "the MAG got no PBA: {bound:?}");

    for (name, path) in [("LMA", &lma_pcap), ("MAG", &mag_pcap)] {
        let file = path.display().to_string();
        assert!(check_records(path) >= 2, "{name}: fewer than two records");
        let fields = tshark(&["-r", &file, "-T", "fields", "-e", "mip6.mhtype", "-e", "ipv6.src"]);
        eprintln!("{name} tap:\n{fields}");
        let lines: Vec<&str> = fields.lines().collect();
        assert!(lines.contains(&format!("5\t{PROXY_COA}").as_str()), "{name}: no PBU from the MAG: {fields}");
        assert!(lines.contains(&format!("6\t{LMAA}").as_str()), "{name}: no PBA from the LMA: {fields}");
        let malformed = tshark(&["-r", &file, "-Y", "_ws.malformed"]);
        assert!(malformed.trim().is_empty(), "{name}: tshark found malformed packets:\n{malformed}");
    }
}

/// Without root: a MAG driver's tap records a Router Solicitation it received (hop limit 255,
/// to all-routers), one that crossed a router (hop limit 64, dropped by the driver but
/// recorded), and a malformed Mobility Header; tshark reads them with good checksums.
#[test]
fn tshark_reads_what_a_driver_received_including_dropped_and_malformed_datagrams() {
    use pmip6_daemon::Driver;
    use pmip6_daemon::nd_socket::NdDatagram;
    use pmip6_engine::InterfaceId;
    use pmip6_engine::mag::{AccessInterface, Mag, MagConfig};
    use pmip6_wire::{AccessTechnologyType, ParseConfig};

    let dir = std::env::temp_dir().join(format!("pmip6-tap-driver-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("mag.pcap");
    let link_local = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    let host = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
    let mut config = MagConfig::new(PROXY_COA, LMAA);
    config.interfaces.push(AccessInterface::new(InterfaceId(2), AccessTechnologyType::Ieee8023, link_local));
    let mut driver = Driver::new(Mag::new(config), ParseConfig::default(), PROXY_COA, None);
    driver.attach_tap(tap(&path));
    let now = Duration::from_secs(1_800_000_000);
    let rs = [133, 0, 0, 0, 0, 0, 0, 0];
    for hop_limit in [Some(255), Some(64)] {
        driver.handle_nd_datagram(now, InterfaceId(2), NdDatagram { len: rs.len(), src: host, hop_limit }, &rs);
    }
    let short = [59, 3, 5, 0, 0, 0, 0, 1];
    driver.handle_datagram(now, &short, LMAA);
    assert_eq!(driver.counters.malformed, 1);
    driver.close_tap();

    assert_eq!(check_records(&path), 3);
    let file = path.display().to_string();
    let fields = tshark(&[
        "-r",
        &file,
        "-T",
        "fields",
        "-e",
        "ipv6.src",
        "-e",
        "ipv6.dst",
        "-e",
        "ipv6.hlim",
        "-e",
        "icmpv6.type",
        "-e",
        "icmpv6.checksum.status",
        "-e",
        "mip6.mhtype",
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{fields}");
    let lines: Vec<&str> = fields.lines().collect();
    assert_eq!(lines.len(), 3, "{fields}");
    // `icmpv6.checksum.status` 1 is Wireshark's "Good" (0 bad, 2 unverified).
    assert_eq!(lines[0], format!("{host}\tff02::2\t255\t133\t1\t"), "{fields}");
    assert_eq!(lines[1], format!("{host}\tff02::2\t64\t133\t1\t"), "{fields}");
    assert!(lines[2].starts_with(&format!("{LMAA}\t{PROXY_COA}\t64\t\t\t5")), "{fields}");
}
