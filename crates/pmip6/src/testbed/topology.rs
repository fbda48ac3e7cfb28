//! The testbed's network: the draft's Figure 4 as five network namespaces joined by veth pairs.
//!
//! ```text
//!            2001:db8:c::/64            2001:db8:f1::/64   (if1, IEEE 802.11)
//!   [cn] ──────────────────── [lma] ─────────────────── [mag1] ──────────── [mn]
//!                               │     2001:db8:f2::/64   (if2, 3GPP UTRAN)    │
//!                               └────────────────────── [mag2] ──────────────┘
//! ```
//!
//! The LMAA and the Proxy-CoAs are /128 addresses on each node's loopback, reached over the
//! transport links by static routes, so that each MAG reaches the LMA through one link and the
//! LMA reaches each MAG through its own. The mobile node is an unmodified Linux host: it learns
//! its prefixes from the MAGs' Router Advertisements (SLAAC) and uses the weak host model.
//!
//! The testbed is a set-up tool, not a daemon: it builds the network with `ip` once, at `up`.
//! The daemons it starts program the data plane themselves through netlink.

use std::net::Ipv6Addr;
use std::process::Command;

use anyhow::{Context, bail};

/// The roles of the testbed's nodes, in the order they are created.
pub const NODES: [Node; 5] = [Node::Cn, Node::Lma, Node::Mag1, Node::Mag2, Node::Mn];

/// One node of Figure 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Node {
    /// The correspondent node.
    Cn,
    /// The local mobility anchor.
    Lma,
    /// The MAG of the mobile node's WLAN interface (if1).
    Mag1,
    /// The MAG of the mobile node's 3G interface (if2).
    Mag2,
    /// The mobile node.
    Mn,
}

impl Node {
    /// The short name used in namespace names (`pmip-lma`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Cn => "cn",
            Self::Lma => "lma",
            Self::Mag1 => "mag1",
            Self::Mag2 => "mag2",
            Self::Mn => "mn",
        }
    }
}

/// The LMA's address (LMAA).
pub const LMAA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
/// The correspondent node's address.
pub const CN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 2);
/// The LMA's address on the correspondent node's link.
pub const CN_GATEWAY: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 1);
/// The pool the LMA assigns home network prefixes from.
pub const PREFIX_POOL: &str = "2001:db8:100::/40";
/// The MAGs' link-local address on their access links (RFC 5213 §6.8: the same on every MAG).
pub const MAG_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// The mobile node's identifier.
pub const MN_ID: &str = "mn1@example.net";

/// How the mobile node's two interfaces get their prefixes: the draft's two configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PrefixMode {
    /// Two interfaces with their own MAC addresses, each with its own prefix and session (the
    /// draft's use case, section 3).
    #[default]
    Unique,
    /// The draft's virtual interface (section 5.4): both interfaces carry one MAC address and get
    /// one prefix; the LMA keeps one entry with a Proxy-CoA and a tunnel per interface. This
    /// kernel has no bonding driver: two interfaces with one MAC and one prefix stand in for it.
    Shared,
}

impl PrefixMode {
    /// The mobile node's MAC address on the access link of `site`: in shared mode both
    /// interfaces carry if1's.
    pub fn mn_mac(self, site: &MagSite) -> &'static str {
        match self {
            Self::Unique => site.mn_mac,
            Self::Shared => MAGS[0].mn_mac,
        }
    }

    /// The LMA configuration's `prefix_mode` value.
    pub fn key(self) -> &'static str {
        match self {
            Self::Unique => "unique",
            Self::Shared => "shared",
        }
    }
}

/// One MAG of the testbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MagSite {
    /// Its node.
    pub node: Node,
    /// Its Proxy-CoA.
    pub proxy_coa: Ipv6Addr,
    /// Its address on the transport link to the LMA.
    pub transport: Ipv6Addr,
    /// The LMA's address on that link.
    pub lma_transport: Ipv6Addr,
    /// The name of its access interface, and of the mobile node's interface facing it.
    pub access: &'static str,
    /// The access technology (RFC 5213 §8.5 Access Technology Type).
    pub access_technology: u8,
    /// The mobile node's MAC address on that access link (unique mode; see
    /// [`PrefixMode::mn_mac`]).
    pub mn_mac: &'static str,
    /// What the demo calls this access.
    pub label: &'static str,
}

/// mag1 (if1, WLAN) and mag2 (if2, 3G), as in the draft's use case.
pub const MAGS: [MagSite; 2] = [
    MagSite {
        node: Node::Mag1,
        proxy_coa: Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x11),
        transport: Ipv6Addr::new(0x2001, 0xdb8, 0xf1, 0, 0, 0, 0, 2),
        lma_transport: Ipv6Addr::new(0x2001, 0xdb8, 0xf1, 0, 0, 0, 0, 1),
        access: "if1",
        access_technology: 4, // IEEE 802.11a/b/g
        mn_mac: "02:00:00:00:01:01",
        label: "WLAN",
    },
    MagSite {
        node: Node::Mag2,
        proxy_coa: Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x12),
        transport: Ipv6Addr::new(0x2001, 0xdb8, 0xf2, 0, 0, 0, 0, 2),
        lma_transport: Ipv6Addr::new(0x2001, 0xdb8, 0xf2, 0, 0, 0, 0, 1),
        access: "if2",
        access_technology: 7, // 3GPP UTRAN
        mn_mac: "02:00:00:00:01:02",
        label: "3G",
    },
];

/// The namespace names of one testbed: `<prefix>-cn`, `<prefix>-lma`, ... (`pmip-` by default;
/// tests use their own prefix so that several testbeds can exist at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// Names with this prefix.
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The namespace of `node`.
    pub fn namespace(&self, node: Node) -> String {
        format!("{}-{}", self.prefix, node.name())
    }
}

/// Runs `ip` with these arguments; an error carries what `ip` printed.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("cannot run `ip` (install iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Runs `sysctl -w` in a namespace.
fn sysctl(names: &Names, node: Node, setting: &str) -> anyhow::Result<()> {
    let ns = names.namespace(node);
    let out = Command::new("ip")
        .args(["netns", "exec", &ns, "sysctl", "-qw", setting])
        .output()
        .context("cannot run `ip netns exec ... sysctl`")?;
    if !out.status.success() {
        bail!("sysctl {setting} in {ns}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// The namespaces of `names` that exist now.
pub fn existing_namespaces(names: &Names) -> Vec<String> {
    let listed = Command::new("ip").args(["netns", "list"]).output().map(|o| o.stdout).unwrap_or_default();
    let listed = String::from_utf8_lossy(&listed);
    let present: Vec<&str> = listed.lines().filter_map(|l| l.split_whitespace().next()).collect();
    NODES.iter().map(|n| names.namespace(*n)).filter(|ns| present.contains(&ns.as_str())).collect()
}

/// Creates the five namespaces, the links and addresses, the mobile node's MAC addresses as
/// `mode` wants them. Fails, naming the step, when a piece cannot be made; the caller removes
/// what was made.
pub fn build(names: &Names, mode: PrefixMode) -> anyhow::Result<()> {
    let ns = |node| names.namespace(node);
    for node in NODES {
        ip(&["netns", "add", &ns(node)]).with_context(|| format!("cannot create the namespace {}", ns(node)))?;
        ip(&["-n", &ns(node), "link", "set", "lo", "up"])?;
        // No duplicate address detection on the testbed's links: every address is unique by
        // construction, and a tentative link-local address holds the first packets on a link
        // (neighbor discovery waits for it) for about a second.
        sysctl(names, node, "net.ipv6.conf.default.accept_dad=0")?;
        sysctl(names, node, "net.ipv6.conf.all.accept_dad=0")?;
    }
    // cn — lma.
    veth(&ns(Node::Cn), "lma", &ns(Node::Lma), "cn")?;
    address(&ns(Node::Cn), "lma", &format!("{CN}/64"))?;
    address(&ns(Node::Lma), "cn", &format!("{CN_GATEWAY}/64"))?;
    ip(&["-n", &ns(Node::Cn), "-6", "route", "add", "default", "via", &CN_GATEWAY.to_string()])?;
    address(&ns(Node::Lma), "lo", &format!("{LMAA}/128"))?;
    for node in [Node::Lma, Node::Mag1, Node::Mag2] {
        sysctl(names, node, "net.ipv6.conf.all.forwarding=1")?;
    }
    for site in MAGS {
        let (lma, mag) = (ns(Node::Lma), ns(site.node));
        let mag_name = site.node.name();
        veth(&lma, mag_name, &mag, "lma")?;
        address(&lma, mag_name, &format!("{}/64", site.lma_transport))?;
        address(&mag, "lma", &format!("{}/64", site.transport))?;
        address(&mag, "lo", &format!("{}/128", site.proxy_coa))?;
        ip(&[
            "-n",
            &lma,
            "-6",
            "route",
            "add",
            &format!("{}/128", site.proxy_coa),
            "via",
            &site.transport.to_string(),
        ])?;
        ip(&["-n", &mag, "-6", "route", "add", &format!("{LMAA}/128"), "via", &site.lma_transport.to_string()])?;
        // The access link: the MAG's end carries the fixed link-local address; the mobile
        // node's end stays down until the node attaches.
        let mn = ns(Node::Mn);
        veth(&mag, site.access, &mn, site.access)?;
        ip(&["-n", &mag, "addr", "flush", "dev", site.access])?;
        sysctl(names, site.node, &format!("net.ipv6.conf.{}.addr_gen_mode=1", site.access))?;
        address(&mag, site.access, &format!("{MAG_LINK_LOCAL}/64"))?;
        ip(&["-n", &mn, "link", "set", site.access, "address", mode.mn_mac(&site)])?;
        // The mobile node's interfaces inherit `accept_dad=0`: an address is usable as soon as
        // the RA arrives, and the demo reports the attach time without DAD.
    }
    Ok(())
}

fn veth(ns_a: &str, name_a: &str, ns_b: &str, name_b: &str) -> anyhow::Result<()> {
    ip(&["link", "add", name_a, "netns", ns_a, "type", "veth", "peer", "name", name_b, "netns", ns_b])
        .with_context(|| format!("cannot create the veth pair {ns_a}/{name_a} — {ns_b}/{name_b}"))?;
    ip(&["-n", ns_a, "link", "set", name_a, "up"])?;
    if !(ns_b.ends_with("-mn")) {
        ip(&["-n", ns_b, "link", "set", name_b, "up"])?;
    }
    Ok(())
}

fn address(ns: &str, dev: &str, cidr: &str) -> anyhow::Result<()> {
    ip(&["-n", ns, "addr", "add", cidr, "dev", dev, "nodad"])
}

/// Brings the mobile node's interface toward `site` up (an attachment: the node sends a Router
/// Solicitation) or down (a detachment).
pub fn set_mobile_node_link(names: &Names, site: &MagSite, up: bool) -> anyhow::Result<()> {
    ip(&["-n", &names.namespace(Node::Mn), "link", "set", site.access, if up { "up" } else { "down" }])
}

/// Deletes the namespaces of `names` that exist (their links and routes go with them).
pub fn destroy(names: &Names) -> Vec<String> {
    let mut removed = Vec::new();
    for ns in existing_namespaces(names) {
        if ip(&["netns", "del", &ns]).is_ok() {
            removed.push(ns);
        }
    }
    removed
}

/// The global addresses of the mobile node's interface `dev`.
pub fn mobile_node_addresses(names: &Names, dev: &str) -> Vec<Ipv6Addr> {
    let out = Command::new("ip")
        .args(["-n", &names.namespace(Node::Mn), "-6", "-o", "addr", "show", "dev", dev, "scope", "global"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet6")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .collect()
}

/// Packets received and sent on `dev` in `node`'s namespace.
pub fn link_counters(names: &Names, node: Node, dev: &str) -> Option<(u64, u64)> {
    let ns = names.namespace(node);
    let read = |which: &str| -> Option<u64> {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns, "cat", &format!("/sys/class/net/{dev}/statistics/{which}_packets")])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((read("rx")?, read("tx")?))
}
