//! The `pmip6 lma` and `pmip6 mag` subcommands as processes.
//!
//! A bad configuration stops the daemon with the key named; and (as root, which CI is) the two
//! daemons, each started with `ip netns exec` in its own namespace joined by a veth pair,
//! register the MAG's statically attached mobile node, then stop on SIGINT with status 0.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn pmip6() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pmip6"))
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pmip6-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

#[test]
fn a_bad_configuration_names_the_key() {
    let dir = temp_dir("badconf");
    let path = dir.join("lma.toml");
    std::fs::write(&path, "address = \"2001:db8::1\"\nprefix_pools = [\"2001:db8::/999\"]\n").expect("write");
    let out = pmip6().args(["lma", "--config"]).arg(&path).output().expect("run pmip6");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("prefix_pools[0]"), "{stderr}");
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status();
    assert!(matches!(status, Ok(s) if s.success()), "ip {} failed: {status:?}", args.join(" "));
}

/// Two namespaces, a veth pair, the daemons and a directory; all removed on drop.
struct Testbed {
    namespaces: Vec<String>,
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_for(path: &Path, deadline: Instant, needle: &str) -> Result<String, String> {
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return Ok(text);
        }
        if Instant::now() > deadline {
            return Err(text);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn interrupt_and_wait(child: &mut Child, deadline: Instant) -> Option<std::process::ExitStatus> {
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn lma_and_mag_daemons_register_across_namespaces() {
    let euid = Command::new("id").arg("-u").output().expect("run id");
    assert_eq!(
        String::from_utf8_lossy(&euid.stdout).trim(),
        "0",
        "this test creates network namespaces and must run as root (CI does); it was not skipped"
    );
    let pid = std::process::id();
    let (lma_ns, mag_ns) = (format!("pmip6-bin-lma-{pid}"), format!("pmip6-bin-mag-{pid}"));
    let mut bed = Testbed { namespaces: Vec::new(), children: Vec::new(), dir: temp_dir("daemons") };
    for ns in [&lma_ns, &mag_ns] {
        ip(&["netns", "add", ns]);
        bed.namespaces.push(ns.clone());
    }
    let (a, b) = (format!("bl{pid}"), format!("bm{pid}"));
    ip(&["link", "add", &a, "netns", &lma_ns, "type", "veth", "peer", "name", &b, "netns", &mag_ns]);
    for (ns, link, addr) in [(&lma_ns, &a, "2001:db8:ffff::1/64"), (&mag_ns, &b, "2001:db8:ffff::2/64")] {
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        ip(&["-n", ns, "addr", "add", addr, "dev", link, "nodad"]);
        ip(&["-n", ns, "link", "set", link, "up"]);
    }
    let (lma_status, mag_status) = (bed.dir.join("lma.status"), bed.dir.join("mag.status"));
    let lma_conf = bed.dir.join("lma.toml");
    let mag_conf = bed.dir.join("mag.toml");
    std::fs::write(
        &lma_conf,
        format!(
            "address = \"2001:db8:ffff::1\"\nprefix_pools = [\"2001:db8:100::/40\"]\nstatus_file = {:?}\nstate_dir = {:?}\n\
             [ipv4_home_network]\nnetwork = \"10.64.0.0/24\"\ndefault_router = \"10.64.0.1\"\n",
            lma_status.display().to_string(),
            bed.dir.join("lma-state").display().to_string()
        ),
    )
    .expect("write the LMA configuration");
    std::fs::write(
        &mag_conf,
        format!(
            "proxy_coa = \"2001:db8:ffff::2\"\nlma_address = \"2001:db8:ffff::1\"\nattach_static_at_start = true\nrouter_solicitations = false\n\
             status_file = {:?}\nstate_dir = {:?}\n[[interfaces]]\nname = \"lo\"\naccess_technology = 3\nlink_local = \"fe80::1\"\n\
             [[mobile_nodes]]\nmn_id = \"mn1@example.net\"\nmacs = [\"02:00:00:00:00:01\"]\nipv4 = true\n",
            mag_status.display().to_string(),
            bed.dir.join("mag-state").display().to_string()
        ),
    )
    .expect("write the MAG configuration");
    let spawn = |ns: &str, role: &str, conf: &Path| {
        Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_pmip6"), role, "--config"])
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a daemon")
    };
    bed.children.push(spawn(&lma_ns, "lma", &lma_conf));
    let deadline = Instant::now() + Duration::from_secs(15);
    let up = wait_for(&lma_status, deadline, "bindings 0");
    assert!(up.is_ok(), "the LMA daemon did not start: {up:?}");
    bed.children.push(spawn(&mag_ns, "mag", &mag_conf));
    let lma_bound = wait_for(&lma_status, deadline, "nai:mn1@example.net Active");
    let mag_bound = wait_for(&mag_status, deadline, "bound 1");
    assert!(lma_bound.is_ok(), "no binding at the LMA: {lma_bound:?}");
    assert!(mag_bound.is_ok(), "the MAG got no PBA: {mag_bound:?}");

    // The kernel holds what the intents say, read back through netlink (`ip -j`) and nftables.
    let prefix = lma_bound.unwrap_or_default().split("prefixes=").nth(1).unwrap_or("").trim().to_owned();
    let prefix = prefix.lines().next().unwrap_or("").to_owned();
    let prefix_dst = prefix.split('/').next().unwrap_or("").trim_end_matches(':').to_owned();
    assert!(prefix_dst.starts_with("2001:db8:1"), "no prefix in the LMA's status: {prefix:?}");
    let lma_routes = ours(&lma_ns, &["-6", "route", "show", "table", "all"]);
    assert!(
        lma_routes.iter().any(|r| r.contains(&prefix_dst) && r.contains("p6t")),
        "no route of {prefix} into a tunnel at the LMA: {lma_routes:?}"
    );
    let mag_rules = ours(&mag_ns, &["-6", "rule", "show"]);
    assert!(mag_rules.iter().any(|r| r.contains(&prefix_dst)), "no source rule for {prefix} at the MAG: {mag_rules:?}");
    assert!(links(&lma_ns).iter().any(|l| l.starts_with("p6t")), "no tunnel device at the LMA");
    // RFC 5844: the first home address of 10.64.0.0/24 (.1 is the router) is routed into the
    // tunnel at the LMA; the MAG routes it on the access link, source-routes its uplink and
    // presents the default router there.
    let lma_v4 = ours(&lma_ns, &["-4", "route", "show", "table", "all"]);
    assert!(
        lma_v4.iter().any(|r| r.starts_with("10.64.0.2 ") && r.contains("p6t")),
        "no IPv4 home address route into a tunnel at the LMA: {lma_v4:?}"
    );
    let mag_v4 = ours(&mag_ns, &["-4", "route", "show", "table", "all"]);
    assert!(mag_v4.iter().any(|r| r.starts_with("10.64.0.2 dev lo")), "no IPv4 access route at the MAG: {mag_v4:?}");
    let mag_v4_rules = ours(&mag_ns, &["-4", "rule", "show"]);
    assert!(
        mag_v4_rules.iter().any(|r| r.contains("from 10.64.0.2")),
        "no IPv4 source rule at the MAG: {mag_v4_rules:?}"
    );
    assert!(router_address(&mag_ns), "no IPv4 default router address on the MAG's access link");
    assert!(nft_table_exists(&lma_ns), "no flow map at the LMA");
    assert!(nfqueue_rules(&lma_ns) == 1, "the one start-up NFQUEUE rule is missing");

    // A MAG that stops de-registers: the LMA withdraws the prefix's route at once.
    let mut mag = bed.children.pop().expect("the MAG");
    let status = interrupt_and_wait(&mut mag, Instant::now() + Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "the MAG did not stop cleanly on SIGINT: {status:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while ours(&lma_ns, &["-6", "route", "show", "table", "all"]).iter().any(|r| r.contains(&prefix_dst)) {
        assert!(Instant::now() < deadline, "the LMA still routes {prefix} after the MAG left");
        std::thread::sleep(Duration::from_millis(20));
    }
    for child in &mut bed.children {
        let status = interrupt_and_wait(child, Instant::now() + Duration::from_secs(10));
        assert!(status.is_some_and(|s| s.success()), "a daemon did not stop cleanly on SIGINT: {status:?}");
    }
    // Shutdown leaves no trace: no route, rule or device of ours, no flow map, no NFQUEUE rule.
    for ns in [&lma_ns, &mag_ns] {
        assert!(ours(ns, &["-6", "route", "show", "table", "all"]).is_empty(), "routes left in {ns}");
        assert!(ours(ns, &["-6", "rule", "show"]).is_empty(), "rules left in {ns}");
        assert!(ours(ns, &["-4", "route", "show", "table", "all"]).is_empty(), "IPv4 routes left in {ns}");
        assert!(ours(ns, &["-4", "rule", "show"]).is_empty(), "IPv4 rules left in {ns}");
        assert!(!links(ns).iter().any(|l| l.starts_with("p6t")), "tunnel devices left in {ns}");
    }
    assert!(!nft_table_exists(&lma_ns), "the flow map was left behind");
    assert!(!router_address(&mag_ns), "the default router address was left behind");
    // RFC 5847 §5.2: each daemon stored its Restart Counter before it sent anything.
    for (state, role) in [("lma-state", "lma"), ("mag-state", "mag")] {
        let file = bed.dir.join(state).join(format!("{role}-restart-counter"));
        assert_eq!(std::fs::read_to_string(&file).ok().as_deref(), Some("1\n"), "{}", file.display());
    }
    assert_eq!(nfqueue_rules(&lma_ns), 0, "the NFQUEUE rule was left behind");
}

/// Whether the MAG's access link (`lo` here) holds the IPv4 default router 10.64.0.1.
fn router_address(ns: &str) -> bool {
    let out = Command::new("ip").args(["-n", ns, "-4", "addr", "show", "dev", "lo"]).output().expect("run ip");
    String::from_utf8_lossy(&out.stdout).contains("10.64.0.1/32")
}

/// The lines of `ip -n NS ARGS` that carry our protocol (157).
fn ours(ns: &str, args: &[&str]) -> Vec<String> {
    let out = Command::new("ip").args(["-n", ns]).args(args).output().expect("run ip");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("proto 157")).map(str::to_owned).collect()
}

/// The interface names of a namespace.
fn links(ns: &str) -> Vec<String> {
    let out = Command::new("ip").args(["-n", ns, "-o", "link", "show"]).output().expect("run ip");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n).to_owned()))
        .collect()
}

fn nft_table_exists(ns: &str) -> bool {
    let out = Command::new("ip").args(["netns", "exec", ns, "nft", "list", "table", "inet", "pmip6"]).output();
    out.is_ok_and(|o| o.status.success())
}

fn nfqueue_rules(ns: &str) -> usize {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ip6tables", "-t", "mangle", "-S", "PREROUTING"])
        .output()
        .expect("run ip6tables");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("NFQUEUE")).count()
}
