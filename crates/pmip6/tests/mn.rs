//! End to end on the testbed: the mobile node's agent (`pmip6 mn`) submits its own flow rule to
//! the LMA's MN channel over the data path (draft §4.4, terminal-driven), the LMA moves the
//! correspondent's flow to 3G, the agent steers the flow's uplink after it; a submission from
//! the correspondent node (not an address of the mobile node) is refused.
//!
//! Needs root (network namespaces); without it the test fails saying so. The testbed is named
//! `mn<pid>` and removed when the test ends, also when it fails.

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use pmip6::testbed::Testbed;
use pmip6::testbed::topology::{CN, LMAA, MAGS, Node};
use pmip6::testbed::traffic::{Counts, Receiver, Sender};
use serde_json::Value;

/// How long a condition may take before the test fails.
const LIMIT: Duration = Duration::from_secs(10);
/// The correspondent node's source port.
const CN_PORT: u16 = 5001;

/// A testbed removed when the test ends, whether it passed or not.
struct Bed {
    bed: Testbed,
    root: PathBuf,
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Err(e) = self.bed.down(&mut |_| {}) {
            eprintln!("cannot remove the testbed: {e:#}");
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Bed {
    fn up() -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the mobile node test builds a testbed of network namespaces and must run as root; it is not skipped"
        );
        let prefix = format!("mn{}", std::process::id());
        let root = std::env::temp_dir().join(format!("pmip6-testbed-{prefix}"));
        let mut bed = Testbed::new(&prefix, &root).expect("a testbed");
        bed.exe = PathBuf::from(env!("CARGO_BIN_EXE_pmip6"));
        let guard = Self { bed, root };
        if let Err(e) = guard.bed.up(true, &mut |line| eprintln!("[{prefix}] {line}")) {
            panic!("testbed {prefix} did not come up: {e:#}");
        }
        guard
    }

    fn ns(&self, node: Node) -> String {
        self.bed.names.namespace(node)
    }

    /// `pmip6 ARGS` in the namespace of `node`.
    fn pmip6(&self, node: Node, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(node)])
            .arg(&self.bed.exe)
            .args(args)
            .output()
            .expect("ip netns exec runs")
    }

    /// `ip -6 route get` in the mobile node for the uplink of the flow: the interface.
    fn uplink_dev(&self, from: Ipv6Addr) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.ns(Node::Mn), "-6", "route", "get", &CN.to_string(), "from", &from.to_string()])
            .args(["ipproto", "udp", "sport", "9000", "dport", &CN_PORT.to_string()])
            .output()
            .expect("ip runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut words = text.split_whitespace();
        words.find(|w| *w == "dev");
        words.next().unwrap_or_default().to_owned()
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn last(counts: &Counts) -> Option<String> {
    counts.get(&CN_PORT).and_then(|f| f.last_interface.clone())
}

fn wait_for(receiver: &Receiver, done: impl Fn(&Counts) -> bool) -> Counts {
    let deadline = Instant::now() + LIMIT;
    loop {
        let counts = receiver.counts();
        if done(&counts) || Instant::now() > deadline {
            return counts;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_mobile_node_moves_its_own_flow_to_3g_and_the_correspondent_cannot() {
    let bed = Bed::up();
    let [wlan, umts] = &MAGS;
    let addr1 = bed.bed.mobile_node_address(wlan).expect("if1 has an address");
    let lma = LMAA.to_string();
    let rule = ["mn", "rules", "add", "--lma", &lma, "--dst-port", "9000", "--protocol", "udp", "--to", "utran"];

    // The correspondent node reaches the MN channel too, but from no mobile node's prefix.
    let refused = bed.pmip6(Node::Cn, &rule);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("403"), "{}", text(&refused));

    // The mobile node, over its MAG's tunnel.
    let added = bed.pmip6(Node::Mn, &rule);
    assert!(added.status.success(), "{}", text(&added));
    let listed = bed.pmip6(Node::Mn, &["mn", "rules", "list", "--lma", &lma, "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("JSON rules");
    assert_eq!(listed["rules"].as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed["rules"][0]["target"], "att:7", "{listed}");

    // The correspondent's flow to port 9000 of if1's address arrives on if2 (3G).
    let receiver = Receiver::start(&bed.ns(Node::Mn)).expect("a receiver");
    let sender = Sender::start(&bed.ns(Node::Cn), CN, addr1, &[CN_PORT], 200).expect("a sender");
    let counts = wait_for(&receiver, |c| last(c).as_deref() == Some(umts.access));
    assert_eq!(last(&counts).as_deref(), Some(umts.access), "{counts:?}");

    // The agent sees the flow go through if2, and steers its uplink there.
    let status = bed.pmip6(Node::Mn, &["mn", "status", "--lma", &lma, "--json"]);
    let status: Value = serde_json::from_slice(&status.stdout).expect("JSON status");
    let flow = status["lma"]["flows"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["src_port"] == CN_PORT)
        .unwrap_or_else(|| panic!("no flow from port {CN_PORT}: {status}"));
    assert_eq!(flow["via"]["mn_ll_id"], umts.mn_mac, "{status}");
    assert_eq!(flow["rule"]["tier"], "mobile-node", "{status}");
    assert_eq!(bed.uplink_dev(addr1), wlan.access, "before steering, the uplink leaves by the first default route");
    let steered = bed.pmip6(Node::Mn, &["mn", "steer-uplink", "--lma", &lma]);
    assert!(steered.status.success(), "{}", text(&steered));
    assert_eq!(bed.uplink_dev(addr1), umts.access, "{}", text(&steered));

    // Rules cleared: the flow goes back to if1, and so does its uplink.
    let cleared = bed.pmip6(Node::Mn, &["mn", "rules", "clear", "--lma", &lma]);
    assert!(cleared.status.success(), "{}", text(&cleared));
    let counts = wait_for(&receiver, |c| last(c).as_deref() == Some(wlan.access));
    assert_eq!(last(&counts).as_deref(), Some(wlan.access), "{counts:?}");
    let steered = bed.pmip6(Node::Mn, &["mn", "steer-uplink", "--lma", &lma]);
    assert!(steered.status.success(), "{}", text(&steered));
    assert_eq!(bed.uplink_dev(addr1), wlan.access, "{}", text(&steered));

    // The LMA counted the correspondent's refusal.
    let status = pmip6_daemon::api::client::request_blocking(&bed.bed.lma_socket(), "GET", "/status", None)
        .expect("the control API answers");
    let status: Value = serde_json::from_str(&status.body).expect("JSON status");
    assert_eq!(status["mn_api"]["counters"]["refused_source"], 1, "{status}");
    assert!(status["mn_api"]["counters"]["accepted"].as_u64().is_some_and(|n| n >= 5), "{status}");

    sender.stop();
    let counts = receiver.stop();
    eprintln!("flow {CN_PORT}: {:?}", counts.get(&CN_PORT).map(|f| &f.by_interface));
}
