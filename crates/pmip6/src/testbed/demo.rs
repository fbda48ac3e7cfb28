//! `pmip6 testbed demo`: the draft's use case (section 3) on a fresh testbed, step by step,
//! with what happens printed as it happens and a summary table at the end. With
//! `--prefix-mode shared`, the draft's second configuration (section 5.4, a virtual interface):
//! both interfaces carry one MAC address and get one prefix, the LMA keeps one entry with two
//! Proxy-CoAs, and flows of that one prefix move between the two accesses.
//!
//! Each step checks what it claims on the real system — an address in the mobile node's
//! namespace, datagrams arriving on an interface, a route learned by a MAG — and the demo fails
//! (exit status 1) if any step did not do what it said.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::{PrefixMode, Testbed};
use pmip6_daemon::api::client;
use serde_json::Value;

use super::topology::{CN, MAGS, MN_ID, Node};
use super::traffic::{Counts, Receiver, Sender};

/// The correspondent node's two flows: their source ports.
pub const FLOWS: [u16; 2] = [5001, 5002];
/// Datagrams per second of each flow.
pub const RATE: u32 = 1000;

/// One step's outcome.
#[derive(Debug, Clone)]
pub struct Step {
    /// What the step does.
    pub what: String,
    /// Whether it did it.
    pub ok: bool,
    /// What was measured or seen.
    pub detail: String,
}

/// Runs the demo; `keep` leaves the testbed up.
pub fn run(bed: &Testbed, keep: bool, say: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
    let result = match bed.prefix_mode {
        PrefixMode::Unique => steps(bed, say),
        PrefixMode::Shared => shared_steps(bed, say),
    };
    if keep {
        say(&format!("testbed left up: `pmip6 testbed status --prefix {}`", bed.names.prefix()));
    } else {
        bed.down(&mut |_| {})?;
        say("testbed removed");
    }
    let steps = result?;
    say("");
    say(&format!("{:<4} {:<58} {}", "ok", "step", "detail"));
    for step in &steps {
        say(&format!("{:<4} {:<58} {}", if step.ok { "yes" } else { "NO" }, step.what, step.detail));
    }
    let failed = steps.iter().filter(|s| !s.ok).count();
    if failed > 0 {
        bail!("{failed} of {} steps did not do what they said", steps.len());
    }
    Ok(())
}

fn steps(bed: &Testbed, say: &mut dyn FnMut(&str)) -> anyhow::Result<Vec<Step>> {
    let mut steps = Vec::new();
    let mut record = |say: &mut dyn FnMut(&str), what: &str, ok: bool, detail: String| {
        say(&format!("{} {what}: {detail}", if ok { "  ✓" } else { "  ✗" }));
        steps.push(Step { what: what.to_owned(), ok, detail });
    };
    say("== bringing up the draft's Figure 4: cn, lma, mag1 (WLAN), mag2 (3G), mn");
    bed.up(false, say)?;
    let [wlan, umts] = &MAGS;

    say("== if1 attaches to mag1 (IEEE 802.11): Router Solicitation, PBU, PBA, Router Advertisement");
    let (addr1, took) = bed.attach(wlan)?;
    record(say, "if1 attaches and gets pref1 by SLAAC", true, format!("{addr1} after {:.1} ms", ms(took)));

    say("== if2 attaches to mag2 (3GPP UTRAN) with MuHo: mag2 learns pref1 too");
    let (addr2, took) = bed.attach(umts)?;
    let distinct = prefix64(addr1) != prefix64(addr2);
    record(
        say,
        "if2 attaches and gets pref2, distinct from pref1",
        distinct,
        format!("{addr2} after {:.1} ms", ms(took)),
    );

    say(&format!("== cn starts two flows to {addr1} (ports {} and {}), {RATE} datagrams/s each", FLOWS[0], FLOWS[1]));
    let receiver = Receiver::start(&bed.names.namespace(Node::Mn))?;
    let sender = Sender::start(&bed.names.namespace(Node::Cn), CN, addr1, &FLOWS, RATE)?;
    let counts = wait_for(&receiver, Duration::from_secs(3), |c| FLOWS.iter().all(|p| arrived(c, *p) >= 200));
    let both_on_if1 = FLOWS.iter().all(|p| last(&counts, *p) == Some(wlan.access));
    record(say, "both flows reach the mobile node through if1", both_on_if1, describe(&counts));

    let [stay, moving] = FLOWS;
    say(&format!("== the operator moves flow {moving} to 3G through the control API (`pmip6 ctl move`)"));
    let fid = flow_id(bed, moving)?;
    let body = format!(r#"{{"mn_id": "{MN_ID}", "fid": {fid}, "target": "utran"}}"#);
    let asked = Instant::now();
    let answer = request(bed, "POST", "/flows/move", Some(body))?;
    let answered = asked.elapsed();
    let counts =
        wait_for(&receiver, Duration::from_secs(2), |c| last(c, moving) == Some(umts.access) && arrived(c, moving) > 0);
    let moved = last(&counts, moving) == Some(umts.access);
    let latency = counts.get(&moving).and_then(|f| f.switched_at).map(|t| t.saturating_duration_since(asked));
    record(
        say,
        &format!("flow {moving} (FID {fid}) moves to if2 (3G)"),
        answer.status == 200 && moved,
        format!(
            "API answered in {:.2} ms; first datagram on if2 {} after the call",
            ms(answered),
            latency.map(|l| format!("{:.2} ms", ms(l))).unwrap_or_else(|| "never".to_owned())
        ),
    );
    std::thread::sleep(Duration::from_millis(500));
    let counts = receiver.counts();
    let untouched =
        counts.get(&stay).is_some_and(|f| f.by_interface.len() == 1) && last(&counts, stay) == Some(wlan.access);
    record(say, &format!("flow {stay} stays on if1 (WLAN)"), untouched, describe(&counts));
    let lost: u64 = FLOWS.iter().map(|p| counts.get(p).map(|f| f.lost()).unwrap_or(1)).sum();
    let reordered: u64 = FLOWS.iter().filter_map(|p| counts.get(p)).map(|f| f.reordered).sum();
    record(say, "the move loses no datagram", lost == 0, format!("{lost} lost, {reordered} reordered at the switch"));

    say("== if2 (3G) detaches: mag2 sees the link go down and de-registers; the LMA fails the flow over");
    say("   (the kernel reports a lost carrier in batches, up to a second late: most of the failover time)");
    let detached = Instant::now();
    bed.detach(umts)?;
    let counts = wait_for(&receiver, Duration::from_secs(3), |c| last(c, moving) == Some(wlan.access));
    let back = last(&counts, moving) == Some(wlan.access);
    let took = counts.get(&moving).and_then(|f| f.switched_at).map(|t| t.saturating_duration_since(detached));
    record(
        say,
        &format!("flow {moving} fails over to if1 when if2 detaches"),
        back,
        took.map(|t| format!("first datagram on if1 {:.1} ms after the link went down", ms(t))).unwrap_or_default(),
    );

    say("== if2 re-attaches: its Router Solicitation is answered at once");
    let (again, took) = bed.attach(umts)?;
    record(say, "if2 re-attaches and gets a prefix again", true, format!("{again} after {:.1} ms", ms(took)));

    let sent = sender.stop();
    std::thread::sleep(Duration::from_millis(100));
    let counts = receiver.stop();
    say(&format!("== stopping the flows: {sent} datagrams sent per flow"));
    say(&format!("   {}", describe(&counts)));
    Ok(steps)
}

/// The draft's section 5.4 on the testbed: one MAC, one prefix, one binding cache entry with two
/// Proxy-CoAs, flows moved between the accesses, failover on detach.
fn shared_steps(bed: &Testbed, say: &mut dyn FnMut(&str)) -> anyhow::Result<Vec<Step>> {
    let mut steps = Vec::new();
    let mut record = |say: &mut dyn FnMut(&str), what: &str, ok: bool, detail: String| {
        say(&format!("{} {what}: {detail}", if ok { "  ✓" } else { "  ✗" }));
        steps.push(Step { what: what.to_owned(), ok, detail });
    };
    let [wlan, umts] = &MAGS;
    let mac = bed.prefix_mode.mn_mac(wlan);
    say(&format!("== bringing up Figure 4 with a virtual interface (draft 5.4): if1 and if2 both carry {mac}"));
    bed.up(false, say)?;

    say("== if1 attaches to mag1 (IEEE 802.11)");
    let (addr1, took) = bed.attach(wlan)?;
    record(say, "if1 attaches and gets the prefix by SLAAC", true, format!("{addr1} after {:.1} ms", ms(took)));

    say("== if2 attaches to mag2 (3GPP UTRAN) with the same MAC: a second Proxy-CoA, not a handoff");
    let (addr2, took) = bed.attach(umts)?;
    record(
        say,
        "if2 attaches and gets the same prefix",
        prefix64(addr1) == prefix64(addr2),
        format!("{addr2} after {:.1} ms", ms(took)),
    );
    let both = [wlan.proxy_coa, umts.proxy_coa];
    let entry = wait_for_entry(bed, &both, addr1)?;
    record(say, "one LMA entry with two Proxy-CoAs, routed via mag1", entry.ok, entry.detail);
    let kept = bed.mobile_node_address(wlan);
    record(
        say,
        "if1 keeps its address (if2 took nothing from it)",
        kept == Some(addr1),
        kept.map(|a| a.to_string()).unwrap_or_else(|| "no address".to_owned()),
    );

    say(&format!("== cn starts two flows to {addr1} (ports {} and {}), {RATE} datagrams/s each", FLOWS[0], FLOWS[1]));
    let receiver = Receiver::start(&bed.names.namespace(Node::Mn))?;
    let sender = Sender::start(&bed.names.namespace(Node::Cn), CN, addr1, &FLOWS, RATE)?;
    let counts = wait_for(&receiver, Duration::from_secs(3), |c| FLOWS.iter().all(|p| arrived(c, *p) >= 200));
    let both_on_if1 = FLOWS.iter().all(|p| last(&counts, *p) == Some(wlan.access));
    record(say, "both flows reach the mobile node through if1", both_on_if1, describe(&counts));

    let [stay, moving] = FLOWS;
    let fid = flow_id(bed, moving)?;
    for (target, site) in [("utran", umts), ("wlan", wlan)] {
        say(&format!(
            "== the operator moves flow {moving} to {} (`pmip6 ctl move`): same prefix, other tunnel",
            site.label
        ));
        let outcome = move_and_wait(bed, &receiver, fid, moving, target, site.access)?;
        record(
            say,
            &format!("flow {moving} (FID {fid}) moves to {} ({})", site.access, site.label),
            outcome.0,
            outcome.1,
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let counts = receiver.counts();
    let untouched =
        counts.get(&stay).is_some_and(|f| f.by_interface.len() == 1) && last(&counts, stay) == Some(wlan.access);
    record(say, &format!("flow {stay} stays on if1 (WLAN)"), untouched, describe(&counts));
    let lost: u64 = FLOWS.iter().map(|p| counts.get(p).map(|f| f.lost()).unwrap_or(1)).sum();
    let reordered: u64 = FLOWS.iter().filter_map(|p| counts.get(p)).map(|f| f.reordered).sum();
    record(say, "the moves lose no datagram", lost == 0, format!("{lost} lost, {reordered} reordered at the switch"));

    say(&format!("== flow {moving} to 3G again; then if2 detaches: mag2 de-registers its Proxy-CoA only"));
    let outcome = move_and_wait(bed, &receiver, fid, moving, "utran", umts.access)?;
    record(say, &format!("flow {moving} moves to if2 (3G) again"), outcome.0, outcome.1);
    let detached = Instant::now();
    bed.detach(umts)?;
    let counts = wait_for(&receiver, Duration::from_secs(3), |c| last(c, moving) == Some(wlan.access));
    let took = counts.get(&moving).and_then(|f| f.switched_at).map(|t| t.saturating_duration_since(detached));
    record(
        say,
        &format!("flow {moving} fails over to if1 when if2 detaches"),
        last(&counts, moving) == Some(wlan.access),
        took.map(|t| format!("first datagram on if1 {:.1} ms after the link went down", ms(t))).unwrap_or_default(),
    );
    let entry = wait_for_entry(bed, &[wlan.proxy_coa], addr1)?;
    record(say, "the entry and its prefix stay, with mag1's Proxy-CoA only", entry.ok, entry.detail);

    say("== if2 re-attaches: it joins the same entry again");
    let (again, took) = bed.attach(umts)?;
    let entry = wait_for_entry(bed, &both, addr1)?;
    record(
        say,
        "if2 re-attaches: same prefix, one entry, two Proxy-CoAs",
        prefix64(again) == prefix64(addr1) && entry.ok,
        format!("{again} after {:.1} ms; {}", ms(took), entry.detail),
    );

    say("== if1 detaches: the prefix route passes to mag2, the only Proxy-CoA left");
    let detached = Instant::now();
    bed.detach(wlan)?;
    let counts =
        wait_for(&receiver, Duration::from_secs(3), |c| FLOWS.iter().all(|p| last(c, *p) == Some(umts.access)));
    let took = FLOWS
        .iter()
        .filter_map(|p| counts.get(p).and_then(|f| f.switched_at))
        .max()
        .map(|t| t.saturating_duration_since(detached));
    record(
        say,
        "both flows fail over to if2 when if1 detaches",
        FLOWS.iter().all(|p| last(&counts, *p) == Some(umts.access)),
        took.map(|t| format!("both on if2 {:.1} ms after the link went down", ms(t))).unwrap_or_default(),
    );
    let entry = wait_for_entry(bed, &[umts.proxy_coa], addr1)?;
    record(say, "the entry and its prefix stay, routed via mag2", entry.ok, entry.detail);

    let sent = sender.stop();
    std::thread::sleep(Duration::from_millis(100));
    let counts = receiver.stop();
    say(&format!("== stopping the flows: {sent} datagrams sent per flow"));
    say(&format!("   {}", describe(&counts)));
    Ok(steps)
}

/// Moves flow `fid` (from `port`) to `target` through the control API and waits until its
/// datagrams arrive on `dev`: whether they did, and the timings.
fn move_and_wait(
    bed: &Testbed,
    receiver: &Receiver,
    fid: u64,
    port: u16,
    target: &str,
    dev: &str,
) -> anyhow::Result<(bool, String)> {
    let body = format!(r#"{{"mn_id": "{MN_ID}", "fid": {fid}, "target": "{target}"}}"#);
    let asked = Instant::now();
    let answer = request(bed, "POST", "/flows/move", Some(body))?;
    let answered = asked.elapsed();
    let counts = wait_for(receiver, Duration::from_secs(2), |c| {
        last(c, port) == Some(dev) && c.get(&port).and_then(|f| f.switched_at).is_some_and(|t| t >= asked)
    });
    let moved = last(&counts, port) == Some(dev);
    let latency = counts.get(&port).and_then(|f| f.switched_at).map(|t| t.saturating_duration_since(asked));
    let detail = format!(
        "API answered {} in {:.2} ms; first datagram on {dev} {} after the call",
        answer.status,
        ms(answered),
        latency.map(|l| format!("{:.2} ms", ms(l))).unwrap_or_else(|| "never".to_owned())
    );
    Ok((answer.status == 200 && moved, detail))
}

/// What the LMA's binding cache says of the mobile node.
struct EntryCheck {
    ok: bool,
    detail: String,
}

/// Polls `/bindings` until the mobile node has exactly one active entry, whose prefix holds
/// `addr`, with attachments at `proxy_coas` in that order and the route at the first; gives up
/// after three seconds and reports what it saw.
fn wait_for_entry(bed: &Testbed, proxy_coas: &[Ipv6Addr], addr: Ipv6Addr) -> anyhow::Result<EntryCheck> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let answer = request(bed, "GET", "/bindings", None)?;
        let all: Value = serde_json::from_str(&answer.body)?;
        let entries: Vec<&Value> =
            all.as_array().into_iter().flatten().filter(|b| b["mn_id"] == MN_ID && b["state"] == "active").collect();
        let coas: Vec<String> = entries
            .iter()
            .flat_map(|b| b["attachments"].as_array().into_iter().flatten())
            .filter_map(|a| a["proxy_coa"].as_str().map(str::to_owned))
            .collect();
        let prefixes: Vec<String> = entries
            .iter()
            .flat_map(|b| b["prefixes"].as_array().into_iter().flatten())
            .filter_map(|p| p.as_str().map(str::to_owned))
            .collect();
        let route = entries.first().and_then(|b| b["route"].as_str()).unwrap_or("-").to_owned();
        let wanted: Vec<String> = proxy_coas.iter().map(ToString::to_string).collect();
        let holds = |p: &String| {
            p.split('/').next().and_then(|a| a.parse::<Ipv6Addr>().ok()).is_some_and(|a| prefix64(a) == prefix64(addr))
        };
        let ok = entries.len() == 1
            && coas == wanted
            && prefixes.len() == 1
            && prefixes.iter().all(holds)
            && wanted.first() == Some(&route);
        if ok || Instant::now() > deadline {
            let detail = format!(
                "{} entr{}, prefix {}, Proxy-CoAs [{}], route via {route}",
                entries.len(),
                if entries.len() == 1 { "y" } else { "ies" },
                prefixes.join(" "),
                coas.join(", ")
            );
            return Ok(EntryCheck { ok, detail });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The FID the LMA gave the correspondent node's flow from `port`.
fn flow_id(bed: &Testbed, port: u16) -> anyhow::Result<u64> {
    let answer = request(bed, "GET", "/flows", None)?;
    let flows: serde_json::Value = serde_json::from_str(&answer.body)?;
    flows["mobile_nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|mn| mn["flows"].as_array().into_iter().flatten())
        .find(|f| f["src_port"] == port)
        .and_then(|f| f["fid"].as_u64())
        .ok_or_else(|| anyhow::anyhow!("the LMA has no flow from port {port}: {}", answer.body))
}

fn request(bed: &Testbed, method: &str, path: &str, body: Option<String>) -> anyhow::Result<client::Answer> {
    Ok(client::request_blocking(&bed.lma_socket(), method, path, body)?)
}

fn prefix64(a: Ipv6Addr) -> [u16; 4] {
    let s = a.segments();
    [s[0], s[1], s[2], s[3]]
}

fn arrived(counts: &Counts, port: u16) -> u64 {
    counts.get(&port).map(|f| f.received).unwrap_or(0)
}

fn last(counts: &Counts, port: u16) -> Option<&str> {
    counts.get(&port).and_then(|f| f.last_interface.as_deref())
}

/// Polls the receiver until `done` holds or `limit` passes; returns the last counts.
fn wait_for(receiver: &Receiver, limit: Duration, done: impl Fn(&Counts) -> bool) -> Counts {
    let deadline = Instant::now() + limit;
    loop {
        let counts = receiver.counts();
        if done(&counts) || Instant::now() > deadline {
            return counts;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn describe(counts: &Counts) -> String {
    FLOWS
        .iter()
        .map(|p| match counts.get(p) {
            Some(f) => {
                let per: Vec<String> = f.by_interface.iter().map(|(i, n)| format!("{i}={n}")).collect();
                format!("flow {p}: {}", per.join(" "))
            }
            None => format!("flow {p}: nothing"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
