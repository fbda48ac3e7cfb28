//! `pmip6 mn`: the mobile node's agent (draft-bernardos-mif-pmip-02 §4.4, §5.4), run on the
//! mobile node itself (in the testbed: `ip netns exec <prefix>-mn pmip6 mn ...`).
//!
//! - `pmip6 mn status [--lma ADDR]`: the node's interfaces with their link-layer addresses and
//!   global addresses (from `/proc/net/if_inet6` and `/sys/class/net`), and, with `--lma`, its
//!   interfaces and flows as the LMA sees them (`GET /mn/flows` on the LMA's MN channel).
//! - `pmip6 mn rules list|clear|add --lma ADDR ...`: the node's own flow rules at the LMA
//!   (terminal-driven and hybrid operation, draft §4.4 items 1 and 3). `add` reads the current
//!   rules, appends one and replaces the set (`PUT /mn/rules`); two agents adding at once may
//!   lose one addition. Selectors are written as the LMA sees the downlink: `--dst-port` is the
//!   node's own port.
//! - `pmip6 mn steer-uplink --lma ADDR [--watch]`: makes a moved flow's uplink follow its
//!   downlink (draft §5.4: "add, delete or change a per-host route whenever we would like to
//!   switch interface for a given connection"). For each of the node's flows that the LMA sends
//!   through an interface other than the one the kernel routes the reply through, a policy rule
//!   `from <MN address> to <CN> ipproto P sport X dport Y lookup T` sends the uplink through
//!   that interface's table (`T` = table base + interface index, holding the default route the
//!   interface learned from its MAG's Router Advertisement); rules of ours (protocol 157) no
//!   longer needed are removed, so a flow that goes back is routed by the main table again.
//!   The source address stays the flow's: the MAG tunnels every prefix of the node it serves
//!   (MuHo), and a moved flow's prefix is one of them (RFC 7864 §3.1).
//!
//! The interface the LMA uses for a flow is known by the MN-LL-ID of its attachment, which is
//! the link-layer address of the node's interface on that access link. Rules and routes are
//! made with `ip` (iproute2).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{Ipv6Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use pmip6_daemon::api::client;
use pmip6_daemon::api::mn_channel::DEFAULT_PORT;
use serde_json::{Value, json};

/// The first routing table of ours on the mobile node (one per interface: base + ifindex).
pub const TABLE_BASE: u32 = 0x7100;
/// The priority of our uplink rules: before the main table (32766).
pub const RULE_PRIORITY: u32 = 900;
/// The protocol number that tags our rules and routes, as the daemons' (RFC-less, private).
pub const RULE_PROTOCOL: u8 = 157;

/// What the mobile node's agent does.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum MnCommand {
    /// The node's interfaces and addresses, and (with --lma) its flows as the LMA sees them
    Status {
        /// The LMA's MN channel: ADDRESS or [ADDRESS]:PORT (port 8464 by default)
        #[arg(long, value_name = "ADDR")]
        lma: Option<String>,
        /// The answer as JSON
        #[arg(long)]
        json: bool,
    },
    /// The node's own flow rules at the LMA
    Rules {
        /// What to do with them.
        #[command(subcommand)]
        action: RulesAction,
    },
    /// Route each moved flow's uplink through the interface its downlink arrives on
    SteerUplink {
        /// The LMA's MN channel.
        #[command(flatten)]
        lma: LmaArg,
        /// Keep going, once a second
        #[arg(long)]
        watch: bool,
        /// Remove every rule of ours and stop
        #[arg(long, conflicts_with = "watch")]
        clear: bool,
        /// The first routing table of ours
        #[arg(long, value_name = "N", default_value_t = TABLE_BASE)]
        table_base: u32,
        /// The priority of our rules
        #[arg(long, value_name = "N", default_value_t = RULE_PRIORITY)]
        priority: u32,
    },
}

/// Where the LMA's MN channel is.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct LmaArg {
    /// The LMA's MN channel: ADDRESS or [ADDRESS]:PORT (port 8464 by default)
    #[arg(long, value_name = "ADDR")]
    pub lma: String,
}

/// What to do with the node's rules.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum RulesAction {
    /// The node's rules, and the rules in force for it with their tier
    List {
        /// The LMA's MN channel.
        #[command(flatten)]
        lma: LmaArg,
        /// The answer as JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove the node's rules
    Clear {
        /// The LMA's MN channel.
        #[command(flatten)]
        lma: LmaArg,
    },
    /// Add one rule: flows matching the selector (as the LMA sees the downlink) go to TARGET
    Add {
        /// The LMA's MN channel.
        #[command(flatten)]
        lma: LmaArg,
        /// The correspondent's address (ADDR, ADDR/LEN or START-END)
        #[arg(long, value_name = "ADDR")]
        src_addr: Option<String>,
        /// The node's own address (one of its prefixes)
        #[arg(long, value_name = "ADDR")]
        dst_addr: Option<String>,
        /// The correspondent's port (N or START-END)
        #[arg(long, value_name = "PORT")]
        src_port: Option<String>,
        /// The node's own port (N or START-END)
        #[arg(long, value_name = "PORT")]
        dst_port: Option<String>,
        /// udp, tcp or a protocol number
        #[arg(long, value_name = "PROTO")]
        protocol: Option<String>,
        /// Where to: an access technology (wlan, utran, lte, att:N) or interface:MN-LL-ID
        #[arg(long, value_name = "TARGET")]
        to: String,
        /// When the target is not attached: next-rule (default) or base-route
        #[arg(long, value_name = "WHAT")]
        fallback: Option<String>,
    },
}

/// The MN channel's address from `ADDRESS` or `[ADDRESS]:PORT`.
pub fn parse_lma(text: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    let addr: Ipv6Addr = bare.parse().with_context(|| format!("`{text}` is not an IPv6 address or [ADDRESS]:PORT"))?;
    Ok(SocketAddr::from((addr, DEFAULT_PORT)))
}

/// One network interface of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The kernel's name.
    pub name: String,
    /// The kernel's index.
    pub index: u32,
    /// The link-layer address, `02:00:00:00:01:01`.
    pub mac: Option<String>,
    /// The operational state (`up`, `down`, ...).
    pub state: String,
    /// Global addresses with their prefix length.
    pub addresses: Vec<(Ipv6Addr, u8)>,
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

/// The node's interfaces (but loopback), with their global IPv6 addresses.
pub fn interfaces() -> Vec<Interface> {
    let mut by_name: BTreeMap<String, Interface> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/sys/class/net") {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "lo" {
                continue;
            }
            let base = format!("/sys/class/net/{name}");
            let index = read_trimmed(&format!("{base}/ifindex")).and_then(|i| i.parse().ok()).unwrap_or(0);
            let mac = read_trimmed(&format!("{base}/address")).filter(|m| !m.is_empty());
            let state = read_trimmed(&format!("{base}/operstate")).unwrap_or_default();
            by_name.insert(name.clone(), Interface { name, index, mac, state, addresses: Vec::new() });
        }
    }
    // /proc/net/if_inet6: address (32 hex digits), index, prefix length, scope, flags, name.
    let text = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [hex, _, len, scope, _, name] = fields[..] else { continue };
        let (Ok(bits), Ok(len), Ok(scope)) =
            (u128::from_str_radix(hex, 16), u8::from_str_radix(len, 16), u8::from_str_radix(scope, 16))
        else {
            continue;
        };
        // Scope 0 is global (link-local is 0x20, host 0x10).
        if scope == 0
            && let Some(interface) = by_name.get_mut(name)
        {
            interface.addresses.push((Ipv6Addr::from(bits), len));
        }
    }
    by_name.into_values().collect()
}

fn ask(lma: SocketAddr, method: &str, path: &str, body: Option<String>) -> anyhow::Result<Value> {
    let answer = client::request_tcp_blocking(lma, method, path, body)?;
    let value: Value = serde_json::from_str(&answer.body).unwrap_or(Value::String(answer.body.clone()));
    if answer.status >= 400 {
        let reason = value.get("error").and_then(Value::as_str).map(str::to_owned).unwrap_or(answer.body);
        bail!("the LMA answered {}: {reason}", answer.status);
    }
    Ok(value)
}

/// Runs one `pmip6 mn` command, writing what it shows to `out`.
pub fn run(command: &MnCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        MnCommand::Status { lma, json } => status(lma.as_deref(), *json, out),
        MnCommand::Rules { action } => rules(action, out),
        MnCommand::SteerUplink { lma, watch, clear, table_base, priority } => {
            let lma = parse_lma(&lma.lma)?;
            let settings = Steering { table_base: *table_base, priority: *priority };
            if *clear {
                let removed = settings.apply(&[])?;
                writeln!(out, "removed {} uplink rule(s)", removed.removed)?;
                return Ok(());
            }
            loop {
                match steer_once(lma, &settings) {
                    Ok(change) => {
                        for line in &change.lines {
                            writeln!(out, "{line}")?;
                        }
                        if !*watch {
                            writeln!(out, "{} uplink rule(s) in place", change.in_place)?;
                        }
                    }
                    Err(e) if *watch => eprintln!("pmip6 mn: {e:#}"),
                    Err(e) => return Err(e),
                }
                out.flush()?;
                if !*watch {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn status(lma: Option<&str>, as_json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let local = interfaces();
    let flows = lma.map(|l| parse_lma(l).and_then(|addr| ask(addr, "GET", "/mn/flows", None))).transpose()?;
    if as_json {
        let local: Vec<Value> = local
            .iter()
            .map(|i| {
                json!({
                    "name": i.name, "index": i.index, "mac": i.mac, "state": i.state,
                    "addresses": i.addresses.iter().map(|(a, l)| format!("{a}/{l}")).collect::<Vec<_>>(),
                })
            })
            .collect();
        writeln!(out, "{}", json!({ "interfaces": local, "lma": flows }))?;
        return Ok(());
    }
    writeln!(out, "{:<10} {:<18} {:<6} addresses", "interface", "link-layer", "state")?;
    for i in &local {
        let addresses: Vec<String> = i.addresses.iter().map(|(a, l)| format!("{a}/{l}")).collect();
        let addresses = if addresses.is_empty() { "-".to_owned() } else { addresses.join(" ") };
        writeln!(out, "{:<10} {:<18} {:<6} {addresses}", i.name, i.mac.as_deref().unwrap_or("-"), i.state)?;
    }
    let Some(flows) = flows else { return Ok(()) };
    let by_mac = |mac: &Value| -> String {
        mac.as_str()
            .and_then(|m| local.iter().find(|i| i.mac.as_deref() == Some(m)))
            .map(|i| i.name.clone())
            .unwrap_or_else(|| "?".to_owned())
    };
    writeln!(out, "\nthe LMA knows this node as {}", flows["mn_id"].as_str().unwrap_or("?"))?;
    writeln!(out, "{:<10} {:<24} {:<6} prefixes", "interface", "MAG (Proxy-CoA)", "ATT")?;
    for a in flows["interfaces"].as_array().into_iter().flatten() {
        let prefixes: Vec<&str> = a["prefixes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        writeln!(
            out,
            "{:<10} {:<24} {:<6} {}",
            by_mac(&a["mn_ll_id"]),
            a["proxy_coa"].as_str().unwrap_or("?"),
            a["access_technology"].to_string(),
            prefixes.join(" ")
        )?;
    }
    let list = flows["flows"].as_array().cloned().unwrap_or_default();
    writeln!(out, "\n{} flow(s)", list.len())?;
    if !list.is_empty() {
        writeln!(out, "{:<5} {:<40} {:<40} {:<5} {:<10} rule", "fid", "from (CN)", "to (MN)", "proto", "via")?;
    }
    for f in &list {
        let rule = match &f["rule"] {
            Value::Null => "-".to_owned(),
            r => format!("{} {}", r["tier"].as_str().unwrap_or("?"), r["index"]),
        };
        writeln!(
            out,
            "{:<5} {:<40} {:<40} {:<5} {:<10} {rule}",
            f["fid"].to_string(),
            format!("[{}]:{}", f["src"].as_str().unwrap_or("?"), f["src_port"]),
            format!("[{}]:{}", f["dst"].as_str().unwrap_or("?"), f["dst_port"]),
            f["protocol"].to_string(),
            by_mac(&f["via"]["mn_ll_id"]),
        )?;
    }
    Ok(())
}

fn protocol_number(text: &str) -> anyhow::Result<u8> {
    match text.to_ascii_lowercase().as_str() {
        "udp" => Ok(17),
        "tcp" => Ok(6),
        "sctp" => Ok(132),
        "icmpv6" | "ipv6-icmp" => Ok(58),
        other => other.parse().with_context(|| format!("`{text}` is not udp, tcp or a protocol number")),
    }
}

fn rules(action: &RulesAction, out: &mut dyn Write) -> anyhow::Result<()> {
    match action {
        RulesAction::List { lma, json } => {
            let value = ask(parse_lma(&lma.lma)?, "GET", "/mn/rules", None)?;
            if *json {
                writeln!(out, "{value}")?;
                return Ok(());
            }
            writeln!(
                out,
                "rules of {} (at most {}):",
                value["mn_id"].as_str().unwrap_or("?"),
                value["limits"]["max_rules"]
            )?;
            for (i, rule) in value["rules"].as_array().into_iter().flatten().enumerate() {
                writeln!(out, "  {i:<3} {} -> {}", rule["selector"], rule["target"])?;
            }
            writeln!(out, "in force, in order:")?;
            for entry in value["effective"].as_array().into_iter().flatten() {
                let from = &entry["from"];
                writeln!(
                    out,
                    "  {:<16} {} -> {}",
                    format!("{} {}", from["tier"].as_str().unwrap_or("?"), from["index"]),
                    entry["rule"]["selector"],
                    entry["rule"]["target"]
                )?;
            }
        }
        RulesAction::Clear { lma } => {
            ask(parse_lma(&lma.lma)?, "DELETE", "/mn/rules", None)?;
            writeln!(out, "rules removed")?;
        }
        RulesAction::Add { lma, src_addr, dst_addr, src_port, dst_port, protocol, to, fallback } => {
            let lma = parse_lma(&lma.lma)?;
            let mut selector = serde_json::Map::new();
            for (key, value) in
                [("src_addr", src_addr), ("dst_addr", dst_addr), ("src_port", src_port), ("dst_port", dst_port)]
            {
                if let Some(v) = value {
                    selector.insert(key.to_owned(), json!(v));
                }
            }
            if let Some(p) = protocol {
                selector.insert("protocol".to_owned(), json!(protocol_number(p)?));
            }
            let mut rule = json!({ "selector": selector, "target": to });
            if let (Some(f), Some(map)) = (fallback, rule.as_object_mut()) {
                map.insert("fallback".to_owned(), json!(f));
            }
            let current = ask(lma, "GET", "/mn/rules", None)?;
            let mut list = current["rules"].as_array().cloned().unwrap_or_default();
            list.push(rule);
            let count = list.len();
            ask(lma, "PUT", "/mn/rules", Some(json!({ "rules": list }).to_string()))?;
            writeln!(out, "rule {} added ({count} rule(s) at the LMA)", count - 1)?;
        }
    }
    Ok(())
}

// ---- uplink steering ------------------------------------------------------------------------------

/// One uplink policy rule of ours.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UplinkRule {
    /// The node's address (the flow's destination at the LMA).
    pub from: Ipv6Addr,
    /// The correspondent.
    pub to: Ipv6Addr,
    /// The transport protocol.
    pub protocol: u8,
    /// The node's port.
    pub sport: u16,
    /// The correspondent's port.
    pub dport: u16,
    /// The routing table (of the interface the downlink arrives on).
    pub table: u32,
}

/// Where our rules and tables go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steering {
    /// Our first routing table.
    pub table_base: u32,
    /// Our rules' priority.
    pub priority: u32,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// What changed, one line each.
    pub lines: Vec<String>,
    /// Rules of ours in place afterwards.
    pub in_place: usize,
    /// Rules removed.
    pub removed: usize,
}

fn ip(args: &[String]) -> anyhow::Result<String> {
    let out = Command::new("ip").args(args).output().context("cannot run `ip` (install iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip_json(args: &[&str]) -> anyhow::Result<Value> {
    let mut all = vec!["-6".to_owned(), "-j".to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let text = ip(&all)?;
    if text.trim().is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_str(&text).with_context(|| format!("`ip` printed what is not JSON: {text}"))
}

fn ipproto_number(value: &Value) -> Option<u8> {
    match value {
        Value::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
        Value::String(s) => protocol_number(s.trim_start_matches("ipproto-")).ok(),
        _ => None,
    }
}

impl Steering {
    /// The routing table of the interface with index `index`.
    pub fn table(&self, index: u32) -> u32 {
        self.table_base.saturating_add(index)
    }

    /// The rules of ours in the kernel now.
    pub fn installed(&self) -> anyhow::Result<Vec<UplinkRule>> {
        let rules = ip_json(&["rule", "show"])?;
        let ours = rules.as_array().into_iter().flatten().filter(|r| {
            r["priority"].as_u64() == Some(u64::from(self.priority))
                && r["protocol"].as_str().and_then(|p| p.parse::<u8>().ok()) == Some(RULE_PROTOCOL)
        });
        Ok(ours
            .filter_map(|r| {
                Some(UplinkRule {
                    from: r["src"].as_str()?.parse().ok()?,
                    to: r["dst"].as_str()?.parse().ok()?,
                    protocol: ipproto_number(&r["ipproto"])?,
                    sport: u16::try_from(r["sport"].as_u64()?).ok()?,
                    dport: u16::try_from(r["dport"].as_u64()?).ok()?,
                    table: r["table"].as_str()?.parse().ok()?,
                })
            })
            .collect())
    }

    fn rule_args(&self, verb: &str, r: &UplinkRule) -> Vec<String> {
        [
            "-6",
            "rule",
            verb,
            "priority",
            &self.priority.to_string(),
            "from",
            &r.from.to_string(),
            "to",
            &r.to.to_string(),
            "ipproto",
            &r.protocol.to_string(),
            "sport",
            &r.sport.to_string(),
            "dport",
            &r.dport.to_string(),
            "lookup",
            &r.table.to_string(),
            "protocol",
            &RULE_PROTOCOL.to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }

    /// Makes the kernel's rules of ours exactly `wanted`: adds what is missing, removes the
    /// rest.
    pub fn apply(&self, wanted: &[UplinkRule]) -> anyhow::Result<Change> {
        let installed: BTreeSet<UplinkRule> = self.installed()?.into_iter().collect();
        let wanted: BTreeSet<UplinkRule> = wanted.iter().cloned().collect();
        let mut change = Change::default();
        for r in installed.difference(&wanted) {
            ip(&self.rule_args("del", r))?;
            change.removed += 1;
            change
                .lines
                .push(format!("uplink of [{}]:{} -> [{}]:{} back to the main table", r.from, r.sport, r.to, r.dport));
        }
        for r in wanted.difference(&installed) {
            ip(&self.rule_args("add", r))?;
            change.lines.push(format!(
                "uplink of [{}]:{} -> [{}]:{} (protocol {}) through table {}",
                r.from, r.sport, r.to, r.dport, r.protocol, r.table
            ));
        }
        change.in_place = wanted.len();
        Ok(change)
    }

    /// Points the table of `interface` at the default router it learned on that link.
    fn fill_table(&self, interface: &Interface) -> anyhow::Result<bool> {
        let routes = ip_json(&["route", "show", "default", "dev", &interface.name])?;
        let Some(gateway) = routes.as_array().into_iter().flatten().find_map(|r| r["gateway"].as_str()) else {
            return Ok(false);
        };
        let table = self.table(interface.index).to_string();
        let args: Vec<String> =
            ["-6", "route", "replace", "default", "via", gateway, "dev", &interface.name, "table", &table, "proto"]
                .iter()
                .map(|s| (*s).to_owned())
                .chain([RULE_PROTOCOL.to_string()])
                .collect();
        ip(&args)?;
        Ok(true)
    }
}

/// The interface the kernel's main table sends packets to `to` through (our rules need a
/// source address and ports, which this lookup has not, so they do not change the answer).
fn kernel_choice(to: Ipv6Addr) -> Option<String> {
    let routes = ip_json(&["route", "get", &to.to_string()]).ok()?;
    routes.as_array()?.first()?["dev"].as_str().map(str::to_owned)
}

/// One pass of `steer-uplink`: asks the LMA for the node's flows and sets the rules.
pub fn steer_once(lma: SocketAddr, settings: &Steering) -> anyhow::Result<Change> {
    let answer = ask(lma, "GET", "/mn/flows", None)?;
    let local = interfaces();
    let mut wanted = Vec::new();
    let mut filled = BTreeSet::new();
    for flow in answer["flows"].as_array().into_iter().flatten() {
        let Some(protocol) = flow["protocol"].as_u64().and_then(|p| u8::try_from(p).ok()) else { continue };
        // Only port-carrying flows can be told apart from the others of the same addresses.
        if protocol != 6 && protocol != 17 {
            continue;
        }
        let Some(interface) = flow["via"]["mn_ll_id"]
            .as_str()
            .and_then(|mac| local.iter().find(|i| i.mac.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(mac))))
        else {
            continue;
        };
        let (Some(from), Some(to)) = (
            flow["dst"].as_str().and_then(|a| a.parse::<Ipv6Addr>().ok()),
            flow["src"].as_str().and_then(|a| a.parse::<Ipv6Addr>().ok()),
        ) else {
            continue;
        };
        let (Some(sport), Some(dport)) = (
            flow["dst_port"].as_u64().and_then(|p| u16::try_from(p).ok()),
            flow["src_port"].as_u64().and_then(|p| u16::try_from(p).ok()),
        ) else {
            continue;
        };
        if kernel_choice(to).as_deref() == Some(interface.name.as_str()) {
            continue;
        }
        if !filled.contains(&interface.index) {
            if !settings.fill_table(interface)? {
                // No default router on that link (yet): leave the flow to the main table.
                continue;
            }
            filled.insert(interface.index);
        }
        wanted.push(UplinkRule { from, to, protocol, sport, dport, table: settings.table(interface.index) });
    }
    settings.apply(&wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lma_addresses_read_with_and_without_a_port() {
        let lmaa: Ipv6Addr = "2001:db8:ffff::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        assert_eq!(parse_lma("2001:db8:ffff::1").ok(), Some(SocketAddr::from((lmaa, DEFAULT_PORT))));
        assert_eq!(parse_lma("[2001:db8:ffff::1]").ok(), Some(SocketAddr::from((lmaa, DEFAULT_PORT))));
        assert_eq!(parse_lma("[2001:db8:ffff::1]:9").ok(), Some(SocketAddr::from((lmaa, 9))));
        assert!(parse_lma("lma.example").is_err());
    }

    #[test]
    fn protocols_by_name_or_number() {
        assert_eq!(protocol_number("UDP").ok(), Some(17));
        assert_eq!(protocol_number("6").ok(), Some(6));
        assert!(protocol_number("quic").is_err());
        assert_eq!(ipproto_number(&json!("udp")), Some(17));
        assert_eq!(ipproto_number(&json!("ipproto-132")), Some(132));
    }
}
