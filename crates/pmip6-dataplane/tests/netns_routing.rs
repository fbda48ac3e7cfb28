//! `routing` against a real kernel, in network namespaces: the routes and rules it makes (read
//! back through netlink and, independently, through `ip -j`), real packets through the tunnel
//! between an LMA and a MAG, the clean-up after a crash, and the tun forwarder's refusal of
//! tunnelled packets from strangers. `TunnelBackend::Auto` picks ip6tnl where the kernel has
//! ip6tnl devices, else seg6 where it has seg6 lightweight tunnels, else tun; the expectations
//! follow the backend picked, which is checked against independent probes with `ip`. The
//! ip6tnl backend's own test is `#[ignore]`d (this project's test machine has no ip6_tunnel):
//! run it with `--ignored` on a kernel with `CONFIG_IPV6_TUNNEL`; elsewhere it fails loudly.
//! Needs root; fails loudly otherwise.
//!
//! Each `Routing` runs on a thread that has entered its namespace (`setns`) before building its
//! runtime. Namespaces are named after the test and the process id, and removed by a guard even
//! when the test fails.

use std::fs::File;
use std::net::Ipv6Addr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use pmip6_dataplane::routing::{
    KernelState, Role, RouteEntry, RouteKind, Routing, RoutingConfig, RoutingError, RuleEntry, TunnelBackend,
};
use pmip6_dataplane::tunnel::TunnelCounters;
use pmip6_engine::{Intent, InterfaceId, Resource};
use pmip6_wire::Prefix;

const LMAA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
const PROXY_COA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2);
const CN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 2);
const MN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 1, 0, 0, 0, 5);
const HNP: Prefix = Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 1, 0, 0, 0, 0), 64);
const TABLE_BASE: u32 = 0x7000;
const PRIORITY: u32 = 1000;
const PROTOCOL: u8 = 0x9d;

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status();
    assert!(matches!(status, Ok(s) if s.success()), "ip {} failed: {status:?}", args.join(" "));
}

fn ip_json(ns: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new("ip").args(["-n", ns, "-j"]).args(args).output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        other => panic!("ip -n {ns} -j {}: {other:?}", args.join(" ")),
    };
    match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => panic!("ip -j {}: {e}: {}", args.join(" "), String::from_utf8_lossy(&out.stdout)),
    }
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "this test creates network namespaces and must run as root (CI does); it was not skipped");
}

/// Namespaces named `pmip6-<tag>-<role>-<pid>`, removed on drop.
struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    fn new(tag: &str, roles: &[&str]) -> Self {
        require_root();
        let pid = std::process::id();
        let mut guard = Self { names: Vec::new() };
        for role in roles {
            let name = format!("pmip6-{tag}-{role}-{pid}");
            ip(&["netns", "add", &name]);
            guard.names.push(name.clone());
            ip(&["-n", &name, "link", "set", "lo", "up"]);
        }
        guard
    }

    fn name(&self, role: &str) -> String {
        let pid = std::process::id();
        let found = self.names.iter().find(|n| n.contains(&format!("-{role}-{pid}")));
        match found {
            Some(n) => n.clone(),
            None => panic!("no namespace {role}"),
        }
    }

    /// A veth pair `a` (in `ns_a`, with `addr_a`) – `b` (in `ns_b`, with `addr_b`), both up.
    fn link(&self, (ns_a, a, addr_a): (&str, &str, &str), (ns_b, b, addr_b): (&str, &str, &str)) {
        let (ns_a, ns_b) = (self.name(ns_a), self.name(ns_b));
        ip(&["link", "add", a, "netns", &ns_a, "type", "veth", "peer", "name", b, "netns", &ns_b]);
        for (ns, dev, addr) in [(&ns_a, a, addr_a), (&ns_b, b, addr_b)] {
            if !addr.is_empty() {
                ip(&["-n", ns, "addr", "add", addr, "dev", dev, "nodad"]);
            }
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
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

/// Runs `f` on a thread inside namespace `ns` and returns its result (a panic propagates).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_owned();
    let thread = std::thread::spawn(move || {
        enter(&ns);
        f()
    });
    match thread.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn config(role: Role, local: Ipv6Addr) -> RoutingConfig {
    RoutingConfig {
        role,
        local,
        backend: TunnelBackend::Auto,
        table_base: TABLE_BASE,
        rule_priority: PRIORITY,
        protocol: PROTOCOL,
        tunnel_mtu: RoutingConfig::DEFAULT_TUNNEL_MTU,
    }
}

/// Whether the kernel has seg6 lightweight tunnels, asked through `ip` in namespace `ns`
/// (independently of the probe in `Routing::open`).
fn kernel_has_seg6(ns: &str) -> bool {
    let add = ["-n", ns, "-6", "route", "add", "2001:db8:5e6::/64", "encap", "seg6", "mode", "encap"];
    let status = Command::new("ip")
        .args(add)
        .args(["segs", "2001:db8:5e6::1", "dev", "lo", "table", "99"])
        .stderr(std::process::Stdio::null())
        .status();
    let has = matches!(status, Ok(s) if s.success());
    if has {
        ip(&["-n", ns, "-6", "route", "del", "2001:db8:5e6::/64", "table", "99"]);
    }
    has
}

/// Whether the kernel can create ip6tnl devices, asked through `ip` in namespace `ns`
/// (independently of the probe in `Routing::open`).
fn kernel_has_ip6tnl(ns: &str) -> bool {
    let status = Command::new("ip")
        .args(["-n", ns, "link", "add", "ip6probe", "type", "ip6tnl", "mode", "ip6ip6"])
        .args(["local", "2001:db8:5e6::1", "remote", "2001:db8:5e6::2"])
        .stderr(std::process::Stdio::null())
        .status();
    let has = matches!(status, Ok(s) if s.success());
    if has {
        ip(&["-n", ns, "link", "del", "ip6probe"]);
    }
    has
}

/// The backend `Auto` must pick in `ns`: the fastest the kernel has.
fn expected_backend(ns: &str) -> TunnelBackend {
    if kernel_has_ip6tnl(ns) {
        TunnelBackend::Ip6tnl
    } else if kernel_has_seg6(ns) {
        TunnelBackend::Seg6
    } else {
        TunnelBackend::Tun
    }
}

/// Whether `backend` makes a device per tunnel (tun, ip6tnl) that the routes point at.
fn has_devices(backend: TunnelBackend) -> bool {
    matches!(backend, TunnelBackend::Tun | TunnelBackend::Ip6tnl)
}

/// The name of the device of tunnel slot 0 with `backend`.
fn device_0(backend: TunnelBackend) -> &'static str {
    if backend == TunnelBackend::Ip6tnl { "p6i0" } else { "p6t0" }
}

/// The names of the tun and ip6tnl backends' devices in `ns`.
fn tunnel_devices(ns: &str) -> Vec<String> {
    let v = ip_json(ns, &["link", "show"]);
    let list = v.as_array().cloned().unwrap_or_default();
    list.iter()
        .filter_map(|l| l.get("ifname").and_then(serde_json::Value::as_str).map(str::to_owned))
        .filter(|n| n.starts_with("p6t") || n.starts_with("p6i"))
        .collect()
}

async fn open(config: RoutingConfig) -> Routing {
    match Routing::open(config).await {
        Ok(r) => r,
        Err(e) => panic!("Routing::open failed (this kernel may lack a feature the test needs): {e}"),
    }
}

async fn apply(routing: &mut Routing, intent: Intent) {
    if let Err(e) = routing.apply(&intent).await {
        panic!("apply {intent:?}: {e}");
    }
}

async fn snapshot(routing: &Routing) -> KernelState {
    match routing.snapshot().await {
        Ok(s) => s,
        Err(e) => panic!("snapshot: {e}"),
    }
}

fn ifindex(ns: &str, name: &str) -> u32 {
    let v = ip_json(ns, &["link", "show", "dev", name]);
    match v.get(0).and_then(|l| l.get("ifindex")).and_then(serde_json::Value::as_u64) {
        Some(i) => u32::try_from(i).unwrap_or(0),
        None => panic!("no ifindex for {name} in {ns}: {v}"),
    }
}

/// The routes and rules the LMA always has: with seg6, decapsulation (route and rule) and
/// `ipproto 41 lookup main`; with tun and ip6tnl, none.
fn fixed_lma(backend: TunnelBackend, oif: u32) -> (Vec<RouteEntry>, Vec<RuleEntry>) {
    if has_devices(backend) {
        return (Vec::new(), Vec::new());
    }
    let routes = vec![RouteEntry {
        table: TABLE_BASE,
        destination: Prefix::new(LMAA, 128),
        kind: RouteKind::Seg6LocalEndDt6 { table: 254 },
        oif: Some(oif),
    }];
    let rules = vec![
        RuleEntry {
            priority: 0,
            table: TABLE_BASE,
            source: None,
            destination: Some(Prefix::new(LMAA, 128)),
            iif: None,
            fwmark: None,
            ipproto: Some(41),
        },
        RuleEntry {
            priority: PRIORITY,
            table: 254,
            source: None,
            destination: None,
            iif: None,
            fwmark: None,
            ipproto: Some(41),
        },
    ];
    (routes, rules)
}

/// Rules as `ip -j -6 rule show` lists them: (priority, table, protocol) in kernel order.
fn ip_rules(ns: &str) -> Vec<(u64, String, String)> {
    let v = ip_json(ns, &["-6", "rule", "show"]);
    let list = v.as_array().cloned().unwrap_or_default();
    list.iter()
        .map(|r| {
            let s = |k: &str| match r.get(k) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            (r.get("priority").and_then(serde_json::Value::as_u64).unwrap_or(0), s("table"), s("protocol"))
        })
        .collect()
}

/// Routes of every table as `ip -j -6 route show table all` lists them: (dst, table, protocol).
fn ip_routes(ns: &str) -> Vec<(String, String, String)> {
    let v = ip_json(ns, &["-6", "route", "show", "table", "all"]);
    let list = v.as_array().cloned().unwrap_or_default();
    list.iter()
        .map(|r| {
            let s = |k: &str| match r.get(k) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            (s("dst"), s("table"), s("protocol"))
        })
        .collect()
}

fn ours(protocol: &str) -> bool {
    protocol == PROTOCOL.to_string() || protocol == format!("{PROTOCOL:#x}")
}

/// (1) The LMA's routes and rules, exactly; gone after Remove; nothing of ours after close, and
/// the test's own route and rule untouched.
#[test]
fn lma_routes_and_rules_are_exactly_the_intents() {
    let nets = Namespaces::new("rt1", &["lma", "mag"]);
    let pid = std::process::id();
    let (to_mag, to_lma) = (format!("r1l{pid}"), format!("r1m{pid}"));
    nets.link(("lma", &to_mag, "2001:db8:ffff::1/64"), ("mag", &to_lma, "2001:db8:ffff::2/64"));
    let lma = nets.name("lma");
    // Someone else's route and rule, with another protocol: never touched.
    ip(&["-n", &lma, "-6", "route", "add", "2001:db8:aaaa::/64", "dev", &to_mag, "proto", "static"]);
    ip(&["-n", &lma, "-6", "rule", "add", "pref", "1500", "fwmark", "0x42", "lookup", "100", "proto", "static"]);
    let oif = ifindex(&lma, &to_mag);

    let backend = expected_backend(&lma);

    let ns = lma.clone();
    in_ns(&lma, move || {
        runtime().block_on(async move {
            let mut routing = open(config(Role::Lma, LMAA)).await;
            assert_eq!(routing.backend(), backend, "Auto picks ip6tnl, else seg6, else tun: the fastest there is");
            let tun = has_devices(backend);
            let (fixed_routes, fixed_rules) = fixed_lma(backend, oif);
            let state = snapshot(&routing).await;
            assert_eq!(state.routes, fixed_routes);
            assert_eq!(state.rules, fixed_rules);
            if tun {
                assert!(tunnel_devices(&ns).is_empty(), "no device before a tunnel");
            } else {
                assert_eq!(state.tunnel_source, LMAA, "the seg6 tunnel source is the LMAA");
                // Pitfall: the decapsulation rule must be consulted before the local rule.
                let rules = ip_rules(&ns);
                let decap = rules.iter().position(|(p, t, _)| *p == 0 && t == &TABLE_BASE.to_string());
                let local = rules.iter().position(|(p, t, _)| *p == 0 && t == "local");
                assert!(matches!((decap, local), (Some(d), Some(l)) if d < l), "decap rule before local: {rules:?}");
            }

            apply(&mut routing, Intent::Add(Resource::Tunnel { local: LMAA, peer: PROXY_COA })).await;
            apply(&mut routing, Intent::Add(Resource::PrefixToTunnel { prefix: HNP, peer: PROXY_COA })).await;
            // Idempotent: adding again changes nothing.
            apply(&mut routing, Intent::Add(Resource::Tunnel { local: LMAA, peer: PROXY_COA })).await;
            apply(&mut routing, Intent::Add(Resource::PrefixToTunnel { prefix: HNP, peer: PROXY_COA })).await;
            let mark = routing.mark_for(PROXY_COA);
            assert_eq!(mark, Some(TABLE_BASE + 1));
            assert_eq!(routing.mark_for(CN), None);

            let (kind, route_oif) = if tun {
                let name = device_0(backend);
                let device = routing.tunnel_device(PROXY_COA);
                assert_eq!(device.as_deref(), Some(name));
                assert_eq!(tunnel_devices(&ns), vec![name.to_owned()], "one device per peer");
                let link = ip_json(&ns, &["link", "show", "dev", name]);
                assert_eq!(link[0]["mtu"].as_u64(), Some(1460), "MTU 1500 - 40 (RFC 2473 §7): {link}");
                assert!(link[0]["flags"].to_string().contains("UP"), "{link}");
                let addresses = ip_json(&ns, &["-6", "addr", "show", "dev", name]);
                let any_address = addresses
                    .as_array()
                    .is_some_and(|l| l.iter().any(|i| i["addr_info"].as_array().is_some_and(|a| !a.is_empty())));
                assert!(!any_address, "no IPv6 address on the device: {addresses}");
                let mode = std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{name}/addr_gen_mode"))
                    .unwrap_or_default();
                assert_eq!(mode.trim(), "1", "address generation off");
                (RouteKind::OnLink, Some(ifindex(&ns, name)))
            } else {
                (RouteKind::Seg6Encap { mode: 3, segments: vec![PROXY_COA] }, Some(oif))
            };
            let mut routes = fixed_routes.clone();
            routes.push(RouteEntry {
                table: TABLE_BASE + 1,
                destination: Prefix::ALL_ZERO,
                kind: kind.clone(),
                oif: route_oif,
            });
            routes.push(RouteEntry { table: 254, destination: HNP, kind, oif: route_oif });
            routes.sort();
            let mut rules = fixed_rules.clone();
            rules.push(RuleEntry {
                priority: PRIORITY + 1,
                table: TABLE_BASE + 1,
                source: None,
                destination: None,
                iif: None,
                fwmark: Some(TABLE_BASE + 1),
                ipproto: None,
            });
            rules.sort();
            let state = snapshot(&routing).await;
            assert_eq!(state.routes, routes);
            assert_eq!(state.rules, rules);
            // Independently, through ip: the same number of routes and rules of ours.
            let ip_ours_routes: Vec<_> = ip_routes(&ns).into_iter().filter(|(_, _, p)| ours(p)).collect();
            assert_eq!(ip_ours_routes.len(), routes.len(), "{ip_ours_routes:?}");
            assert!(ip_ours_routes.iter().any(|(d, t, _)| d == "2001:db8:100:1::/64" && (t.is_empty() || t == "main")));
            assert!(ip_ours_routes.iter().any(|(d, t, _)| d == "default" && t == &(TABLE_BASE + 1).to_string()));
            let ip_ours_rules: Vec<_> = ip_rules(&ns).into_iter().filter(|(_, _, p)| ours(p)).collect();
            assert_eq!(ip_ours_rules.len(), rules.len(), "{ip_ours_rules:?}");

            apply(&mut routing, Intent::Remove(Resource::PrefixToTunnel { prefix: HNP, peer: PROXY_COA })).await;
            let state = snapshot(&routing).await;
            assert_eq!(state.routes.len(), routes.len() - 1, "only the prefix route went: {:?}", state.routes);
            apply(&mut routing, Intent::Remove(Resource::Tunnel { local: LMAA, peer: PROXY_COA })).await;
            // Idempotent: removing again succeeds.
            apply(&mut routing, Intent::Remove(Resource::PrefixToTunnel { prefix: HNP, peer: PROXY_COA })).await;
            apply(&mut routing, Intent::Remove(Resource::Tunnel { local: LMAA, peer: PROXY_COA })).await;
            assert_eq!(routing.mark_for(PROXY_COA), None);
            assert_eq!(routing.tunnel_device(PROXY_COA), None);
            let state = snapshot(&routing).await;
            assert_eq!(state.routes, fixed_routes);
            assert_eq!(state.rules, fixed_rules);
            // The device closes in the background (the kernel takes tens of milliseconds).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while !tunnel_devices(&ns).is_empty() && std::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            assert!(tunnel_devices(&ns).is_empty(), "the device goes with its tunnel");

            // A tunnel left at close goes too.
            apply(&mut routing, Intent::Add(Resource::Tunnel { local: LMAA, peer: PROXY_COA })).await;
            apply(&mut routing, Intent::Add(Resource::PrefixToTunnel { prefix: HNP, peer: PROXY_COA })).await;
            if let Err(e) = routing.close().await {
                panic!("close: {e}");
            }
            assert!(tunnel_devices(&ns).is_empty(), "no device of ours after close");
        })
    });
    let routes = ip_routes(&lma);
    assert!(!routes.iter().any(|(_, _, p)| ours(p)), "routes of ours left: {routes:?}");
    assert!(routes.iter().any(|(d, _, p)| d == "2001:db8:aaaa::/64" && p == "static"), "{routes:?}");
    let rules = ip_rules(&lma);
    assert!(!rules.iter().any(|(_, _, p)| ours(p)), "rules of ours left: {rules:?}");
    assert!(rules.iter().any(|(p, t, _)| *p == 1500 && t == "100"), "the test's rule is gone: {rules:?}");
    assert!(rules.iter().any(|(p, t, _)| *p == 0 && t == "local"), "the local rule is gone: {rules:?}");
}

/// A raw socket for echo requests of `family` and `protocol`, its receive timeout 300 ms.
fn echo_socket(family: libc::c_int, protocol: libc::c_int) -> libc::c_int {
    // SAFETY: plain socket(2); checked below.
    let fd = unsafe { libc::socket(family, libc::SOCK_RAW, protocol) };
    assert!(fd >= 0, "raw socket for protocol {protocol}: {}", std::io::Error::last_os_error());
    let timeout = libc::timeval { tv_sec: 0, tv_usec: 300_000 };
    // SAFETY: a valid timeval of the given size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            core::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    fd
}

/// Sends ICMPv6 echo requests from the calling thread's namespace to `dst` until one is
/// answered or `attempts` are used up. The host has no ping binary, so this is a raw socket.
fn ping(dst: Ipv6Addr, attempts: u16) -> bool {
    let fd = echo_socket(libc::AF_INET6, libc::IPPROTO_ICMPV6);
    // SAFETY: all-zero is a valid sockaddr_in6.
    let mut to: libc::sockaddr_in6 = unsafe { core::mem::zeroed() };
    to.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    to.sin6_addr.s6_addr = dst.octets();
    let id: u16 = 0x7e57;
    let mut answered = false;
    for seq in 0..attempts {
        // Type 128, code 0, checksum (the kernel computes it), id, seq, payload.
        let mut req = vec![128u8, 0, 0, 0];
        req.extend_from_slice(&id.to_be_bytes());
        req.extend_from_slice(&seq.to_be_bytes());
        req.extend_from_slice(b"pmip6 routing test");
        // SAFETY: valid buffer and address.
        unsafe {
            libc::sendto(
                fd,
                req.as_ptr().cast(),
                req.len(),
                0,
                (&raw const to).cast(),
                core::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            );
        }
        let deadline = std::time::Instant::now() + Duration::from_millis(300);
        while std::time::Instant::now() < deadline {
            let mut buf = [0u8; 1500];
            // SAFETY: all-zero is a valid sockaddr_in6.
            let mut from: libc::sockaddr_in6 = unsafe { core::mem::zeroed() };
            let mut len = core::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            // SAFETY: valid buffers.
            let n = unsafe {
                libc::recvfrom(fd, buf.as_mut_ptr().cast(), buf.len(), 0, (&raw mut from).cast(), &raw mut len)
            };
            if n < 8 {
                break;
            }
            if buf[0] == 129 && buf[4..6] == id.to_be_bytes() && Ipv6Addr::from(from.sin6_addr.s6_addr) == dst {
                answered = true;
                break;
            }
        }
        if answered {
            break;
        }
    }
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
    answered
}

/// Runs a `Routing` in `ns` on its own thread: opens it, applies `intents` (with the access
/// interface index filled in by the caller), reports readiness, waits for `stop` (off the
/// runtime's thread: the tun forwarder runs on that runtime), closes it, and returns the backend
/// it used and its forwarder's counters at the end.
fn spawn_routing(
    ns: &str,
    config: RoutingConfig,
    intents: Vec<Intent>,
    ready: mpsc::Sender<()>,
    stop: mpsc::Receiver<()>,
) -> std::thread::JoinHandle<(TunnelBackend, TunnelCounters)> {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        enter(&ns);
        runtime().block_on(async move {
            let mut routing = open(config).await;
            for intent in intents {
                apply(&mut routing, intent).await;
            }
            let _ = ready.send(());
            let _ = tokio::task::spawn_blocking(move || stop.recv_timeout(Duration::from_secs(60))).await;
            let counters = routing.tunnel_counters();
            let backend = routing.backend();
            if let Err(e) = routing.close().await {
                panic!("close: {e}");
            }
            (backend, counters)
        })
    })
}

/// Waits for every thread, re-raising the first panic; returns their results.
fn join_all<T>(threads: Vec<std::thread::JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::new();
    for t in threads {
        match t.join() {
            Ok(v) => results.push(v),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    results
}

/// (2) cn — lma — mag — mn: a ping from the correspondent node to the mobile node's address goes
/// down the tunnel and its answer comes up it, as IPv6-in-IPv6 on the LMA–MAG link.
#[test]
fn packets_cross_the_tunnel_both_ways() {
    let nets = Namespaces::new("rt2", &["cn", "lma", "mag", "mn"]);
    let pid = std::process::id();
    let (lma_to_mag, mag_to_lma, mag_access, mn_if) =
        (format!("r2l{pid}"), format!("r2m{pid}"), format!("r2a{pid}"), format!("r2n{pid}"));
    nets.link(("cn", &format!("r2c{pid}"), "2001:db8:c::2/64"), ("lma", &format!("r2d{pid}"), "2001:db8:c::1/64"));
    nets.link(("lma", &lma_to_mag, "2001:db8:ffff::1/64"), ("mag", &mag_to_lma, "2001:db8:ffff::2/64"));
    nets.link(("mag", &mag_access, "fe80::1/64"), ("mn", &mn_if, "2001:db8:100:1::5/64"));
    let (cn, lma, mag, mn) = (nets.name("cn"), nets.name("lma"), nets.name("mag"), nets.name("mn"));
    ip(&["-n", &cn, "-6", "route", "add", "default", "via", "2001:db8:c::1"]);
    ip(&["-n", &mn, "-6", "route", "add", "default", "via", "fe80::1", "dev", &mn_if]);
    let access = InterfaceId(ifindex(&mag, &mag_access));

    // Sanity: the ping helper works where no tunnel is involved.
    assert!(
        in_ns(&cn, || ping(Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 1), 10)),
        "cn cannot ping the LMA directly"
    );

    // What a registration of the MN's prefix at this MAG produces on both sides.
    let lma_intents = vec![
        Intent::Add(Resource::Tunnel { local: LMAA, peer: PROXY_COA }),
        Intent::Add(Resource::PrefixToTunnel { prefix: HNP, peer: PROXY_COA }),
    ];
    let mag_intents = vec![
        Intent::Add(Resource::Tunnel { local: PROXY_COA, peer: LMAA }),
        Intent::Add(Resource::SourceRouteToTunnel { prefix: HNP, interface: access, peer: LMAA }),
        Intent::Add(Resource::PrefixToAccess { prefix: HNP, interface: access, next_hop: None }),
    ];
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_lma_tx, stop_lma_rx) = mpsc::channel();
    let (stop_mag_tx, stop_mag_rx) = mpsc::channel();
    let lma_thread = spawn_routing(&lma, config(Role::Lma, LMAA), lma_intents, ready_tx.clone(), stop_lma_rx);
    let mag_thread = spawn_routing(&mag, config(Role::Mag, PROXY_COA), mag_intents, ready_tx, stop_mag_rx);
    let both_ready = ready_rx.recv_timeout(Duration::from_secs(10)).is_ok()
        && ready_rx.recv_timeout(Duration::from_secs(10)).is_ok();
    if !both_ready {
        // One side failed: its panic says why.
        let _ = stop_lma_tx.send(());
        let _ = stop_mag_tx.send(());
        join_all(vec![lma_thread, mag_thread]);
        panic!("the data planes did not come up");
    }

    // Capture on the LMA–MAG link while pinging: the packets there must be IPv6-in-IPv6
    // (next header 41) between the LMAA and the Proxy-CoA, both ways.
    let capture = Command::new("ip")
        .args(["netns", "exec", &lma, "tcpdump", "-n", "-l", "-c", "4", "-i", &lma_to_mag, "ip6 and ip6[6] == 41"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn();
    let mut capture = match capture {
        Ok(child) => child,
        Err(e) => panic!("tcpdump (needed to check the wire format): {e}"),
    };
    std::thread::sleep(Duration::from_millis(1000));
    let started = std::time::Instant::now();
    let answered = in_ns(&cn, || ping(MN, 10));
    let elapsed = started.elapsed();
    // A second exchange, so that tcpdump sees its four packets and exits by itself.
    let again = in_ns(&cn, || ping(MN, 3));
    // Round-trip times through the tunnel, for the record (not asserted).
    let mut rtts = in_ns(&cn, || {
        (0..20)
            .map(|_| {
                let t = std::time::Instant::now();
                ping(MN, 1).then(|| t.elapsed())
            })
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default()
    });
    rtts.sort();
    eprintln!("echo round trip through the tunnel, median of {}: {:?}", rtts.len(), rtts.get(rtts.len() / 2));
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline && matches!(capture.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = capture.kill();
    let captured =
        capture.wait_with_output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let _ = stop_lma_tx.send(());
    let _ = stop_mag_tx.send(());
    let results = join_all(vec![lma_thread, mag_thread]);
    eprintln!("first echo answered after {elapsed:?}; backends and counters (lma, mag): {results:?}");
    assert!(answered && again, "no echo reply from the mobile node {MN} through the tunnel");
    let down = format!("IP6 {LMAA} > {PROXY_COA}: IP6 {CN} > {MN}");
    let up = format!("IP6 {PROXY_COA} > {LMAA}: IP6 {MN} > {CN}");
    assert!(captured.contains(&down), "no encapsulated echo request {down} on the LMA–MAG link: {captured}");
    assert!(captured.contains(&up), "no encapsulated echo reply {up} on the LMA–MAG link: {captured}");
    for (side, (backend, counters)) in ["lma", "mag"].iter().zip(&results) {
        if *backend == TunnelBackend::Tun {
            assert!(counters.encapsulated_packets >= 2, "{side}: {counters:?}");
            assert!(counters.decapsulated_packets >= 2, "{side}: {counters:?}");
            assert_eq!(counters.dropped_not_a_peer + counters.dropped_malformed, 0, "{side}: {counters:?}");
        }
    }
    for ns in [&lma, &mag] {
        assert!(tunnel_devices(ns).is_empty(), "devices left in {ns}");
    }
}

/// (3) A `Routing` dropped without `close` (a crash) leaves its state — with tun, its rules:
/// the devices, and the routes through them, go with the process; with ip6tnl its devices stay
/// too — the next `open` removes it, and its `close` leaves nothing. Devices that merely look
/// like ours (named `p6i…`, of another kind) are never touched.
#[test]
fn open_after_a_crash_removes_the_leftovers() {
    let nets = Namespaces::new("rt3", &["lma", "mag"]);
    let pid = std::process::id();
    let (to_mag, to_lma) = (format!("r3l{pid}"), format!("r3m{pid}"));
    nets.link(("lma", &to_mag, "2001:db8:ffff::1/64"), ("mag", &to_lma, "2001:db8:ffff::2/64"));
    let lma = nets.name("lma");
    let oif = ifindex(&lma, &to_mag);
    let backend = expected_backend(&lma);

    in_ns(&lma, || {
        runtime().block_on(async {
            let mut routing = open(config(Role::Lma, LMAA)).await;
            apply(&mut routing, Intent::Add(Resource::Tunnel { local: LMAA, peer: PROXY_COA })).await;
            apply(&mut routing, Intent::Add(Resource::PrefixToTunnel { prefix: HNP, peer: PROXY_COA })).await;
            drop(routing);
        })
    });
    let left_routes = ip_routes(&lma).into_iter().filter(|(_, _, p)| ours(p)).count();
    let left_rules = ip_rules(&lma).into_iter().filter(|(_, _, p)| ours(p)).count();
    if backend == TunnelBackend::Tun {
        assert!(tunnel_devices(&lma).is_empty(), "the devices go with their descriptors");
        assert_eq!(left_routes, 0, "the routes through the devices go with them");
        assert_eq!(left_rules, 1, "the crash left the fwmark rule");
    } else if backend == TunnelBackend::Ip6tnl {
        assert_eq!(tunnel_devices(&lma), vec!["p6i0".to_owned()], "ip6tnl devices outlive the process");
        assert_eq!(left_routes, 2, "the crash left the tunnel and prefix routes");
        assert_eq!(left_rules, 1, "the crash left the fwmark rule");
    } else {
        assert_eq!(left_routes, 3, "the crash left the decapsulation, tunnel and prefix routes");
    }
    // Named like ours, but veth: not ours, open and close leave them.
    let (look_alike, look_alike_peer) = (format!("p6iv{pid}"), format!("p6iw{pid}"));
    ip(&["-n", &lma, "link", "add", &look_alike, "type", "veth", "peer", "name", &look_alike_peer]);
    // And what an older run may have left in one of our tables.
    ip(&["-n", &lma, "-6", "route", "add", "2001:db8:9::/64", "dev", &to_mag, "proto", "157", "table", "28673"]);

    let ns = lma.clone();
    in_ns(&lma, move || {
        runtime().block_on(async move {
            let routing = open(config(Role::Lma, LMAA)).await;
            let (fixed_routes, fixed_rules) = fixed_lma(backend, oif);
            let state = snapshot(&routing).await;
            assert_eq!(state.routes, fixed_routes, "leftover routes after open");
            assert_eq!(state.rules, fixed_rules, "leftover rules after open");
            let local_rules = ip_rules(&ns).into_iter().filter(|(_, t, _)| t == "local").count();
            assert_eq!(local_rules, 1, "exactly one local rule");
            if let Err(e) = routing.close().await {
                panic!("close: {e}");
            }
        })
    });
    assert!(!ip_routes(&lma).iter().any(|(_, _, p)| ours(p)));
    assert!(!ip_rules(&lma).iter().any(|(_, _, p)| ours(p)));
    let devices = tunnel_devices(&lma);
    assert_eq!(devices.len(), 2, "only the look-alikes are left: {devices:?}");
    assert!(devices.contains(&look_alike) && devices.contains(&look_alike_peer), "{devices:?}");
}

/// An IPv6 packet (next header 59, no payload) from `source` to `destination`.
fn inner_packet(source: Ipv6Addr, destination: Ipv6Addr) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0, 0, 59, 64];
    p.extend_from_slice(&source.octets());
    p.extend_from_slice(&destination.octets());
    p
}

/// Sends `packet` inside IPv6 (next header 41) from `source` to `destination`, from the calling
/// thread's namespace, through a raw socket as the tun forwarder does.
fn send_tunnelled(source: Ipv6Addr, destination: Ipv6Addr, packet: &[u8]) {
    // SAFETY: plain socket(2); checked below.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_RAW, 41) };
    assert!(fd >= 0, "raw protocol-41 socket: {}", std::io::Error::last_os_error());
    let address = |a: Ipv6Addr| {
        // SAFETY: all-zero is a valid sockaddr_in6.
        let mut sa: libc::sockaddr_in6 = unsafe { core::mem::zeroed() };
        sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sa.sin6_addr.s6_addr = a.octets();
        sa
    };
    let (from, to) = (address(source), address(destination));
    let len = core::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    // SAFETY: valid address and buffer for each call; our descriptor.
    let (bound, sent) = unsafe {
        let bound = libc::bind(fd, (&raw const from).cast(), len);
        let sent = libc::sendto(fd, packet.as_ptr().cast(), packet.len(), 0, (&raw const to).cast(), len);
        libc::close(fd);
        (bound, sent)
    };
    assert_eq!(bound, 0, "bind {source}");
    assert_eq!(usize::try_from(sent).ok(), Some(packet.len()), "send from {source}");
}

/// (4) RFC 5213 §5.6.1: the LMA accepts tunnelled packets only from its tunnel end points. With
/// the tun backend, protocol-41 packets from an address of the MAG's link that is no tunnel
/// peer are dropped and counted; the same packet from the Proxy-CoA is decapsulated.
#[test]
fn tunnelled_packets_from_strangers_are_dropped_and_counted() {
    let nets = Namespaces::new("rt4", &["lma", "mag"]);
    let pid = std::process::id();
    let (to_mag, to_lma) = (format!("r4l{pid}"), format!("r4m{pid}"));
    nets.link(("lma", &to_mag, "2001:db8:ffff::1/64"), ("mag", &to_lma, "2001:db8:ffff::2/64"));
    let (lma, mag) = (nets.name("lma"), nets.name("mag"));
    let stranger = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 3);
    ip(&["-n", &mag, "addr", "add", "2001:db8:ffff::3/64", "dev", &to_lma, "nodad"]);

    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel();
    let intents = vec![Intent::Add(Resource::Tunnel { local: LMAA, peer: PROXY_COA })];
    let lma_config = RoutingConfig { backend: TunnelBackend::Tun, ..config(Role::Lma, LMAA) };
    let lma_thread = spawn_routing(&lma, lma_config, intents, ready_tx, stop_rx);
    if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
        let _ = stop_tx.send(());
        join_all(vec![lma_thread]);
        panic!("the LMA did not come up");
    }
    let packet = inner_packet(MN, CN);
    in_ns(&mag, move || {
        for _ in 0..3 {
            send_tunnelled(stranger, LMAA, &packet);
        }
        send_tunnelled(PROXY_COA, LMAA, &packet);
    });
    std::thread::sleep(Duration::from_millis(300));
    let _ = stop_tx.send(());
    let results = join_all(vec![lma_thread]);
    let (backend, counters) = results[0];
    assert_eq!(backend, TunnelBackend::Tun);
    assert_eq!(counters.dropped_not_a_peer, 3, "{counters:?}");
    assert_eq!(counters.decapsulated_packets, 1, "{counters:?}");
    assert_eq!(counters.decapsulated_bytes, 40, "{counters:?}");
}

/// Why the ip6tnl test is ignored here, and what it says when run where it cannot pass.
const NEEDS_IP6TNL: &str = "needs a kernel with ip6_tunnel (CONFIG_IPV6_TUNNEL)";

/// (5) The LMA with `TunnelBackend::Ip6tnl`: one ip6tnl device per peer as `ip` shows it (mode
/// ip6ip6, local and remote, encaplimit none, hop limit 64, MTU 1460, up, no address), the
/// routes of the tun backend into it, nothing fixed; the device goes with its tunnel, stays
/// after a crash and goes at the next open. Run with `--ignored` on a kernel with
/// `CONFIG_IPV6_TUNNEL`; on any other kernel it fails, saying so.
#[test]
#[ignore = "needs a kernel with ip6_tunnel (CONFIG_IPV6_TUNNEL)"]
fn lma_with_the_ip6tnl_backend() {
    let nets = Namespaces::new("rt5", &["lma", "mag"]);
    let pid = std::process::id();
    let (to_mag, to_lma) = (format!("r5l{pid}"), format!("r5m{pid}"));
    nets.link(("lma", &to_mag, "2001:db8:ffff::1/64"), ("mag", &to_lma, "2001:db8:ffff::2/64"));
    let lma = nets.name("lma");
    assert!(
        kernel_has_ip6tnl(&lma),
        "{NEEDS_IP6TNL}: `ip link add ... type ip6tnl` fails on this kernel; the test was run, not skipped, and fails"
    );
    let ip6tnl = || RoutingConfig { backend: TunnelBackend::Ip6tnl, ..config(Role::Lma, LMAA) };

    let ns = lma.clone();
    in_ns(&lma, move || {
        runtime().block_on(async move {
            let mut routing = match Routing::open(ip6tnl()).await {
                Ok(r) => r,
                Err(e) => panic!("{NEEDS_IP6TNL}: Routing::open with the ip6tnl backend failed: {e}"),
            };
            assert_eq!(routing.backend(), TunnelBackend::Ip6tnl);
            let state = snapshot(&routing).await;
            assert!(state.routes.is_empty() && state.rules.is_empty(), "nothing fixed with ip6tnl: {state:?}");
            assert!(tunnel_devices(&ns).is_empty(), "no device before a tunnel, the probe is gone");

            for _ in 0..2 {
                apply(&mut routing, Intent::Add(Resource::Tunnel { local: LMAA, peer: PROXY_COA })).await;
                apply(&mut routing, Intent::Add(Resource::PrefixToTunnel { prefix: HNP, peer: PROXY_COA })).await;
            }
            assert_eq!(routing.tunnel_device(PROXY_COA).as_deref(), Some("p6i0"));
            assert_eq!(routing.mark_for(PROXY_COA), Some(TABLE_BASE + 1));
            assert_eq!(tunnel_devices(&ns), vec!["p6i0".to_owned()], "one device per peer");
            let link = ip_json(&ns, &["-d", "link", "show", "dev", "p6i0"]);
            let info = &link[0]["linkinfo"];
            assert_eq!(info["info_kind"].as_str(), Some("ip6tnl"), "{link}");
            let data = &info["info_data"];
            assert_eq!(data["proto"].as_str(), Some("ip6ip6"), "{link}");
            assert_eq!(data["local"].as_str(), Some(LMAA.to_string().as_str()), "{link}");
            assert_eq!(data["remote"].as_str(), Some(PROXY_COA.to_string().as_str()), "{link}");
            // RFC 2473 §4.1.1: no Tunnel Encapsulation Limit option.
            assert_eq!(data["ip6_tnl_f_ign_encap_limit"].as_bool(), Some(true), "encaplimit none: {link}");
            assert_eq!(data["ttl"].as_u64(), Some(64), "{link}");
            assert_eq!(link[0]["mtu"].as_u64(), Some(1460), "MTU 1500 - 40 (RFC 2473 §7): {link}");
            assert!(link[0]["flags"].to_string().contains("UP"), "{link}");
            let addresses = ip_json(&ns, &["-6", "addr", "show", "dev", "p6i0"]);
            let any_address = addresses
                .as_array()
                .is_some_and(|l| l.iter().any(|i| i["addr_info"].as_array().is_some_and(|a| !a.is_empty())));
            assert!(!any_address, "no IPv6 address on the device: {addresses}");
            let mode = std::fs::read_to_string("/proc/sys/net/ipv6/conf/p6i0/addr_gen_mode").unwrap_or_default();
            assert_eq!(mode.trim(), "1", "address generation off");

            let device = Some(ifindex(&ns, "p6i0"));
            let mut routes = vec![
                RouteEntry {
                    table: TABLE_BASE + 1,
                    destination: Prefix::ALL_ZERO,
                    kind: RouteKind::OnLink,
                    oif: device,
                },
                RouteEntry { table: 254, destination: HNP, kind: RouteKind::OnLink, oif: device },
            ];
            routes.sort();
            let fwmark_rule = RuleEntry {
                priority: PRIORITY + 1,
                table: TABLE_BASE + 1,
                source: None,
                destination: None,
                iif: None,
                fwmark: Some(TABLE_BASE + 1),
                ipproto: None,
            };
            let state = snapshot(&routing).await;
            assert_eq!(state.routes, routes);
            assert_eq!(state.rules, vec![fwmark_rule]);

            apply(&mut routing, Intent::Remove(Resource::PrefixToTunnel { prefix: HNP, peer: PROXY_COA })).await;
            assert_eq!(snapshot(&routing).await.routes.len(), 1, "only the prefix route went");
            apply(&mut routing, Intent::Remove(Resource::Tunnel { local: LMAA, peer: PROXY_COA })).await;
            apply(&mut routing, Intent::Remove(Resource::Tunnel { local: LMAA, peer: PROXY_COA })).await;
            let state = snapshot(&routing).await;
            assert!(state.routes.is_empty() && state.rules.is_empty(), "{state:?}");
            assert!(tunnel_devices(&ns).is_empty(), "the device goes with its tunnel");

            // A crash leaves the device, the routes through it and the fwmark rule.
            apply(&mut routing, Intent::Add(Resource::Tunnel { local: LMAA, peer: PROXY_COA })).await;
            apply(&mut routing, Intent::Add(Resource::PrefixToTunnel { prefix: HNP, peer: PROXY_COA })).await;
            drop(routing);
            assert_eq!(tunnel_devices(&ns).len(), 1, "the device outlives the process");
            let routing = match Routing::open(ip6tnl()).await {
                Ok(r) => r,
                Err(e) => panic!("reopen: {e}"),
            };
            assert!(tunnel_devices(&ns).is_empty(), "open removes the devices a crash left");
            let state = snapshot(&routing).await;
            assert!(state.routes.is_empty() && state.rules.is_empty(), "{state:?}");
            if let Err(e) = routing.close().await {
                panic!("close: {e}");
            }
        })
    });
    assert!(!ip_routes(&lma).iter().any(|(_, _, p)| ours(p)));
    assert!(!ip_rules(&lma).iter().any(|(_, _, p)| ours(p)));
    assert!(tunnel_devices(&lma).is_empty());
}

/// (6) An explicit `TunnelBackend::Ip6tnl` opens only where the kernel has ip6tnl (checked
/// independently with `ip`): elsewhere `Routing::open` fails with `Unsupported` naming
/// `CONFIG_IPV6_TUNNEL` and leaves nothing behind (no probe device, no route, no rule), and
/// `Auto` does not pick ip6tnl.
#[test]
fn explicit_ip6tnl_backend_needs_the_kernel_option() {
    let nets = Namespaces::new("rt6", &["lma", "mag"]);
    let pid = std::process::id();
    let (to_mag, to_lma) = (format!("r6l{pid}"), format!("r6m{pid}"));
    nets.link(("lma", &to_mag, "2001:db8:ffff::1/64"), ("mag", &to_lma, "2001:db8:ffff::2/64"));
    let lma = nets.name("lma");
    let has_ip6tnl = kernel_has_ip6tnl(&lma);

    in_ns(&lma, move || {
        runtime().block_on(async move {
            let explicit = RoutingConfig { backend: TunnelBackend::Ip6tnl, ..config(Role::Lma, LMAA) };
            match (has_ip6tnl, Routing::open(explicit).await) {
                (true, Ok(routing)) => {
                    assert_eq!(routing.backend(), TunnelBackend::Ip6tnl);
                    if let Err(e) = routing.close().await {
                        panic!("close: {e}");
                    }
                }
                (false, Err(RoutingError::Unsupported(message))) => {
                    assert!(message.contains("CONFIG_IPV6_TUNNEL"), "names the kernel option: {message}");
                }
                (true, Err(e)) => panic!("ip can create ip6tnl devices here, Routing::open failed: {e}"),
                (false, Err(e)) => panic!("expected Unsupported naming CONFIG_IPV6_TUNNEL, got: {e}"),
                (false, Ok(_)) => panic!("Routing::open succeeded with ip6tnl where ip cannot create one"),
            }
            let routing = open(config(Role::Lma, LMAA)).await;
            let picked = routing.backend();
            assert_eq!(picked == TunnelBackend::Ip6tnl, has_ip6tnl, "Auto picks ip6tnl exactly where it exists");
            if let Err(e) = routing.close().await {
                panic!("close: {e}");
            }
        })
    });
    assert!(tunnel_devices(&lma).is_empty(), "no device left, the probe included");
    assert!(!ip_routes(&lma).iter().any(|(_, _, p)| ours(p)));
    assert!(!ip_rules(&lma).iter().any(|(_, _, p)| ours(p)));
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// As [`ping`], over IPv4 (ICMP echo; a raw ICMP socket leaves the checksum to us).
fn ping4(dst: std::net::Ipv4Addr, attempts: u16) -> bool {
    let fd = echo_socket(libc::AF_INET, libc::IPPROTO_ICMP);
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut to: libc::sockaddr_in = unsafe { core::mem::zeroed() };
    to.sin_family = libc::AF_INET as libc::sa_family_t;
    to.sin_addr.s_addr = u32::from_ne_bytes(dst.octets());
    let id: u16 = 0x7e54;
    let mut answered = false;
    for seq in 0..attempts {
        let mut req = vec![8u8, 0, 0, 0];
        req.extend_from_slice(&id.to_be_bytes());
        req.extend_from_slice(&seq.to_be_bytes());
        req.extend_from_slice(b"pmip6 routing test");
        let sum = checksum(&req);
        req[2..4].copy_from_slice(&sum.to_be_bytes());
        // SAFETY: valid buffer and address.
        unsafe {
            libc::sendto(
                fd,
                req.as_ptr().cast(),
                req.len(),
                0,
                (&raw const to).cast(),
                core::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
        }
        let deadline = std::time::Instant::now() + Duration::from_millis(300);
        while std::time::Instant::now() < deadline {
            let mut buf = [0u8; 1500];
            // SAFETY: valid buffer; a raw IPv4 socket returns the IP header too.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 28 {
                break;
            }
            let header = usize::from(buf[0] & 0x0f) * 4;
            let icmp = &buf[header..];
            if icmp[0] == 0 && icmp[4..6] == id.to_be_bytes() && buf[12..16] == dst.octets() {
                answered = true;
                break;
            }
        }
        if answered {
            break;
        }
    }
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
    answered
}

/// (2b) RFC 5844: the same path for an IPv4 home address. cn (192.0.2.2) — lma — mag — mn
/// (10.64.0.2, default router 10.64.0.1 on the MAG's access link): an IPv4 ping crosses the
/// tunnel both ways as IPv4-in-IPv6 (next header 4), and close leaves no IPv4 route, rule or
/// address.
#[test]
fn ipv4_home_address_packets_cross_the_tunnel_both_ways() {
    use std::net::Ipv4Addr;
    let nets = Namespaces::new("rt4", &["cn", "lma", "mag", "mn"]);
    let pid = std::process::id();
    let (cn_if, lma_cn, lma_to_mag, mag_to_lma, mag_access, mn_if) = (
        format!("r4c{pid}"),
        format!("r4d{pid}"),
        format!("r4l{pid}"),
        format!("r4m{pid}"),
        format!("r4a{pid}"),
        format!("r4n{pid}"),
    );
    nets.link(("cn", &cn_if, ""), ("lma", &lma_cn, ""));
    nets.link(("lma", &lma_to_mag, "2001:db8:ffff::1/64"), ("mag", &mag_to_lma, "2001:db8:ffff::2/64"));
    nets.link(("mag", &mag_access, ""), ("mn", &mn_if, ""));
    let (cn, lma, mag, mn) = (nets.name("cn"), nets.name("lma"), nets.name("mag"), nets.name("mn"));
    ip(&["-n", &cn, "addr", "add", "192.0.2.2/24", "dev", &cn_if]);
    ip(&["-n", &lma, "addr", "add", "192.0.2.1/24", "dev", &lma_cn]);
    ip(&["-n", &cn, "route", "add", "default", "via", "192.0.2.1"]);
    ip(&["-n", &mn, "addr", "add", "10.64.0.2/24", "dev", &mn_if]);
    ip(&["-n", &mn, "route", "add", "default", "via", "10.64.0.1"]);
    let access = InterfaceId(ifindex(&mag, &mag_access));
    let home = Ipv4Addr::new(10, 64, 0, 2);

    let lma_intents = vec![
        Intent::Add(Resource::Tunnel { local: LMAA, peer: PROXY_COA }),
        Intent::Add(Resource::Ipv4HomeAddressToTunnel { address: home, peer: PROXY_COA }),
    ];
    let mag_intents = vec![
        Intent::Add(Resource::Tunnel { local: PROXY_COA, peer: LMAA }),
        Intent::Add(Resource::Ipv4SourceRouteToTunnel { address: home, interface: access, peer: LMAA }),
        Intent::Add(Resource::Ipv4HomeAddressToAccess { address: home, interface: access }),
        // The MAG presents the mobile nodes' default router on the access link.
        Intent::Add(Resource::Ipv4DefaultRouterOnAccess { address: Ipv4Addr::new(10, 64, 0, 1), interface: access }),
    ];
    let mut lma_config = config(Role::Lma, LMAA);
    lma_config.backend = TunnelBackend::Tun;
    let mut mag_config = config(Role::Mag, PROXY_COA);
    mag_config.backend = TunnelBackend::Tun;
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_lma_tx, stop_lma_rx) = mpsc::channel();
    let (stop_mag_tx, stop_mag_rx) = mpsc::channel();
    let lma_thread = spawn_routing(&lma, lma_config, lma_intents, ready_tx.clone(), stop_lma_rx);
    let mag_thread = spawn_routing(&mag, mag_config, mag_intents, ready_tx, stop_mag_rx);
    let both_ready = ready_rx.recv_timeout(Duration::from_secs(10)).is_ok()
        && ready_rx.recv_timeout(Duration::from_secs(10)).is_ok();
    if !both_ready {
        let _ = stop_lma_tx.send(());
        let _ = stop_mag_tx.send(());
        join_all(vec![lma_thread, mag_thread]);
        panic!("the data planes did not come up");
    }
    let ours_v4 = |ns: &str| {
        let routes = ip_json(ns, &["-4", "route", "show", "table", "all", "proto", &PROTOCOL.to_string()]);
        let rules = ip_json(ns, &["-4", "rule", "show"]);
        let rules = rules
            .as_array()
            .map(|r| r.iter().filter(|r| r["protocol"].as_str() == Some(&PROTOCOL.to_string())).count())
            .unwrap_or(0);
        let addresses = ip_json(ns, &["-4", "addr", "show"]);
        let addresses = addresses
            .as_array()
            .map(|links| {
                links
                    .iter()
                    .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
                    .filter(|a| a["local"].as_str() == Some("10.64.0.1"))
                    .count()
            })
            .unwrap_or(0);
        (routes.as_array().map_or(0, Vec::len), rules, addresses)
    };
    // The MAG holds the access route, the source rule and the tunnel table's IPv4 default.
    let at_mag = ours_v4(&mag);

    let capture = Command::new("ip")
        .args(["netns", "exec", &lma, "tcpdump", "-n", "-l", "-c", "2", "-i", &lma_to_mag, "ip6 and ip6[6] == 4"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn();
    let mut capture = match capture {
        Ok(child) => child,
        Err(e) => panic!("tcpdump (needed to check the wire format): {e}"),
    };
    std::thread::sleep(Duration::from_millis(1000));
    let answered = in_ns(&cn, move || ping4(home, 10));
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline && matches!(capture.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = capture.kill();
    let captured =
        capture.wait_with_output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let _ = stop_lma_tx.send(());
    let _ = stop_mag_tx.send(());
    let results = join_all(vec![lma_thread, mag_thread]);
    eprintln!("backends and counters (lma, mag): {results:?}; captured: {captured}");
    assert!(answered, "no IPv4 echo reply from the mobile node {home} through the tunnel");
    assert_eq!(at_mag, (2, 1, 1), "access route + tunnel-table default, one source rule, the router address");
    let down = format!("IP6 {LMAA} > {PROXY_COA}: IP 192.0.2.2 > {home}");
    let up = format!("IP6 {PROXY_COA} > {LMAA}: IP {home} > 192.0.2.2");
    assert!(captured.contains(&down), "no IPv4-in-IPv6 echo request {down} on the LMA–MAG link: {captured}");
    assert!(captured.contains(&up), "no IPv4-in-IPv6 echo reply {up} on the LMA–MAG link: {captured}");
    for (side, (backend, counters)) in ["lma", "mag"].iter().zip(&results) {
        assert_eq!(*backend, TunnelBackend::Tun);
        assert!(counters.encapsulated_packets >= 1 && counters.decapsulated_packets >= 1, "{side}: {counters:?}");
        assert_eq!(counters.dropped_not_a_peer + counters.dropped_malformed, 0, "{side}: {counters:?}");
    }
    for ns in [&lma, &mag] {
        assert_eq!(ours_v4(ns), (0, 0, 0), "IPv4 routes, rules or addresses of ours left in {ns}");
        assert!(tunnel_devices(ns).is_empty(), "devices left in {ns}");
    }
}
