//! The LMA's answers: binding cache, mobile nodes, flows, operator rules, moves, revocations,
//! peers.

use std::collections::BTreeMap;

use pmip6_engine::Now;
use pmip6_engine::flow::{MoveError, Route, RuleRef, Tier};
use pmip6_engine::lma::{Attachment, BindingRef, BindingState, Lma, RevocationScope};
use serde_json::{Value, json};

use super::policy::{rule_from_json, rule_to_json, target_from_json};
use super::{Request, Response, hex_colon, metrics_text, mn_text, parse_mn, status};
use crate::driver::Driver;
use crate::metrics::{set_gauge, sync_counter};

/// Answers one control request against the LMA engine.
pub fn answer(driver: &mut Driver<Lma>, now: Now, request: Request) -> Response {
    match request {
        Request::Status => {
            let mut value = status(driver, now, "lma");
            let lma = &driver.engine;
            if let Some(map) = value.as_object_mut() {
                map.insert("bindings".into(), json!(lma.binding_cache().len()));
                map.insert("mobile_nodes".into(), json!(lma.binding_cache().mobile_node_count()));
                map.insert("peers".into(), json!(lma.peers().count()));
                map.insert("flow_mobility".into(), json!(lma.flow_steering().is_some()));
                if let Some(flows) = lma.flow_steering() {
                    map.insert("flows".into(), json!(flows.table().len()));
                    map.insert("flow_stats".into(), json!(flows.stats()));
                }
                if let Some(channel) = driver.api_server().and_then(|s| s.mn_channel()) {
                    map.insert("mn_api".into(), channel.status_json());
                }
            }
            Response::ok(value)
        }
        Request::Metrics => {
            refresh_gauges(driver);
            metrics_text(driver, now)
        }
        Request::Bindings => {
            Response::ok(Value::Array(driver.engine.binding_cache().iter().map(|b| binding_json(&b, now)).collect()))
        }
        Request::MobileNodes => Response::ok(mobile_nodes(&driver.engine, now)),
        Request::Flows => flows(&driver.engine, now),
        Request::Policies => match driver.engine.flow_steering() {
            None => flow_mobility_off(),
            Some(flows) => {
                let rules: Vec<Value> = flows.policy().rules().iter().map(rule_to_json).collect();
                Response::ok(json!({ "rules": rules }))
            }
        },
        Request::AddPolicy(body) => add_policy(driver, now, &body),
        Request::DeletePolicy(index) => delete_policy(driver, now, index),
        Request::MoveFlow(body) => move_flow(driver, now, &body),
        Request::Revoke(body) => revoke(driver, now, &body),
        Request::Peers => {
            let peers: Vec<Value> = driver.engine.peers().map(|p| json!(p)).collect();
            Response::ok(Value::Array(peers))
        }
        Request::Resources => Response::not_served("LMA"),
        Request::MobileNode { source, call } => super::mn_channel::answer(driver, now, source, call),
    }
}

/// Sets the gauges (and the counters the engine keeps) from the engine, before a scrape.
pub fn refresh_gauges(driver: &Driver<Lma>) {
    let m = &driver.metrics;
    let lma = &driver.engine;
    set_gauge(&m.bindings, lma.binding_cache().len());
    set_gauge(&m.mobile_nodes, lma.binding_cache().mobile_node_count());
    set_gauge(&m.peers, lma.peers().count());
    if let Some(flows) = lma.flow_steering() {
        set_gauge(&m.flows, flows.table().len());
        sync_counter(&m.flow_moves, flows.stats().moves);
    }
}

fn flow_mobility_off() -> Response {
    Response::error(409, "flow mobility is not enabled at this LMA")
}

fn state_text(state: BindingState) -> &'static str {
    match state {
        BindingState::Active => "active",
        BindingState::Deregistered => "deregistered",
    }
}

pub(super) fn attachment_json(a: &Attachment, now: Now) -> Value {
    json!({
        "proxy_coa": a.proxy_coa().to_string(),
        "access_technology": u8::from(a.access_technology()),
        "access_technology_name": format!("{:?}", a.access_technology()),
        "mn_ll_id": a.mn_link_layer_id().map(hex_colon),
        "lifetime_left_secs": a.expires().saturating_sub(now).as_secs(),
        "lifetime_granted_secs": u64::from(a.lifetime_units()) * 4,
        "multihoming": a.multihoming(),
        "last_sequence": a.last_sequence(),
    })
}

fn binding_json(b: &BindingRef<'_>, now: Now) -> Value {
    json!({
        "id": b.id().to_string(),
        "mn_id": mn_text(b.mn_id()),
        "state": state_text(b.state()),
        "prefixes": b.prefixes().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "ipv4_home_address": b.ipv4_home_address().map(|a| a.to_string()),
        "route": b.route_peer().map(|p| p.to_string()),
        "attachments": b.attachments().map(|a| attachment_json(a, now)).collect::<Vec<_>>(),
    })
}

fn mobile_nodes(lma: &Lma, now: Now) -> Value {
    let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for b in lma.binding_cache().iter() {
        let interfaces = groups.entry(mn_text(b.mn_id())).or_default();
        for a in b.attachments() {
            let mut interface = attachment_json(a, now);
            if let Some(map) = interface.as_object_mut() {
                map.insert("binding".into(), json!(b.id().to_string()));
                map.insert("state".into(), json!(state_text(b.state())));
                map.insert("prefixes".into(), json!(b.prefixes().iter().map(ToString::to_string).collect::<Vec<_>>()));
                map.insert("ipv4_home_address".into(), json!(b.ipv4_home_address().map(|a| a.to_string())));
            }
            interfaces.push(interface);
        }
    }
    Value::Array(
        groups.into_iter().map(|(mn_id, interfaces)| json!({ "mn_id": mn_id, "interfaces": interfaces })).collect(),
    )
}

/// One flow as the control API and the MN channel show it.
pub(super) fn flow_json(f: &pmip6_engine::flow::FlowSummary, now: Now) -> Value {
    json!({
        "fid": f.fid,
        "src": f.key.src.to_string(),
        "dst": f.key.dst.to_string(),
        "src_port": f.key.src_port,
        "dst_port": f.key.dst_port,
        "flow_label": f.key.flow_label,
        "protocol": f.key.protocol,
        "version": format!("{:?}", f.key.version),
        "route": route_text(f.route),
        "rule": rule_ref_json(f.rule),
        "preferred": f.preferred,
        "pinned": f.pinned,
        "packets": f.packets,
        "bytes": f.bytes,
        "idle_secs": now.saturating_sub(f.last_seen).as_secs(),
    })
}

pub(super) fn route_text(route: Route) -> String {
    match route {
        Route::Tunnel(peer) => peer.to_string(),
        Route::PrefixRoute => "prefix-route".to_owned(),
    }
}

pub(super) fn rule_ref_json(rule: Option<RuleRef>) -> Value {
    match rule {
        None => Value::Null,
        Some(r) => {
            let tier = match r.tier {
                Tier::Pinned => "pinned",
                Tier::Locked => "locked",
                Tier::MobileNode => "mobile-node",
                Tier::OperatorDefault => "operator-default",
            };
            json!({ "tier": tier, "index": r.index })
        }
    }
}

fn flows(lma: &Lma, now: Now) -> Response {
    let Some(steering) = lma.flow_steering() else { return flow_mobility_off() };
    let mut seen = std::collections::BTreeSet::new();
    let mut nodes = Vec::new();
    for b in lma.binding_cache().iter() {
        let mn = b.mn_id();
        if !seen.insert(mn_text(mn)) {
            continue;
        }
        let flows: Vec<Value> = steering.flows(mn).iter().map(|f| flow_json(f, now)).collect();
        nodes.push(json!({ "mn_id": mn_text(mn), "flows": flows }));
    }
    Response::ok(json!({ "mobile_nodes": nodes, "stats": steering.stats() }))
}

fn add_policy(driver: &mut Driver<Lma>, now: Now, body: &Value) -> Response {
    let Some(steering) = driver.engine.flow_steering() else { return flow_mobility_off() };
    let rule = match rule_from_json(body) {
        Ok(rule) => rule,
        Err(e) => return Response::error(400, format!("bad rule: {e}")),
    };
    let mut rules = steering.policy().rules().to_vec();
    rules.push(rule);
    let index = rules.len() - 1;
    match driver.engine.set_operator_rules(now, rules) {
        Ok(()) => {
            tracing::info!(index, "operator rule added");
            Response::ok(json!({ "index": index }))
        }
        Err(e) => Response::error(400, format!("rule refused: {}", e.error)),
    }
}

fn delete_policy(driver: &mut Driver<Lma>, now: Now, index: usize) -> Response {
    let Some(steering) = driver.engine.flow_steering() else { return flow_mobility_off() };
    let mut rules = steering.policy().rules().to_vec();
    if index >= rules.len() {
        return Response::error(404, format!("no rule {index} ({} rules)", rules.len()));
    }
    rules.remove(index);
    match driver.engine.set_operator_rules(now, rules) {
        Ok(()) => {
            tracing::info!(index, "operator rule removed");
            Response::ok(json!({ "removed": index }))
        }
        Err(e) => Response::error(400, format!("rules refused: {e}")),
    }
}

fn string_field<'a>(body: &'a Value, key: &str) -> Result<Option<&'a str>, Response> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Response::error(400, format!("`{key}` is a string"))),
    }
}

fn move_flow(driver: &mut Driver<Lma>, now: Now, body: &Value) -> Response {
    if !body.is_object() {
        return Response::error(400, "expected {\"mn_id\": ..., \"fid\": N, \"target\": ...}");
    }
    let mn = match string_field(body, "mn_id") {
        Ok(Some(text)) => match parse_mn(text) {
            Ok(mn) => mn,
            Err(e) => return Response::error(400, e),
        },
        Ok(None) => return Response::error(400, "`mn_id` missing"),
        Err(r) => return r,
    };
    let Some(fid) = body.get("fid").and_then(Value::as_u64).and_then(|f| u16::try_from(f).ok()) else {
        return Response::error(400, "`fid` is a number 0-65535");
    };
    let target = match body.get("target").map(target_from_json) {
        Some(Ok(target)) => target,
        Some(Err(e)) => return Response::error(400, e),
        None => return Response::error(400, "`target` missing"),
    };
    if driver.engine.flow_steering().is_none() {
        return flow_mobility_off();
    }
    match driver.engine.move_flow(now, &mn, fid, target) {
        Ok(route) => {
            driver.metrics.api_moves.inc();
            tracing::info!(mn_id = %mn_text(&mn), fid, route = %route_text(route), "flow moved");
            Response::ok(json!({ "mn_id": mn_text(&mn), "fid": fid, "route": route_text(route) }))
        }
        Err(e @ (MoveError::UnknownMobileNode | MoveError::UnknownFlow(_))) => {
            Response::error(404, format!("{e} (mn_id {}, fid {fid})", mn_text(&mn)))
        }
        Err(e) => Response::error(400, e.to_string()),
    }
}

fn revoke(driver: &mut Driver<Lma>, now: Now, body: &Value) -> Response {
    let (mn, mag) = match (string_field(body, "mn_id"), string_field(body, "mag")) {
        (Ok(mn), Ok(mag)) => (mn, mag),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let cache = driver.engine.binding_cache();
    let (scope, sessions, what) = match (mn, mag) {
        (Some(mn), None) => {
            let mn = match parse_mn(mn) {
                Ok(mn) => mn,
                Err(e) => return Response::error(400, e),
            };
            let sessions = cache.sessions(&mn).count();
            let what = format!("mobile node {}", mn_text(&mn));
            (RevocationScope::MobileNode(mn), sessions, what)
        }
        (None, Some(mag)) => {
            let Ok(mag) = mag.parse() else { return Response::error(400, format!("`{mag}` is not an IPv6 address")) };
            let sessions = cache.iter().filter(|b| b.attachments().any(|a| a.proxy_coa() == mag)).count();
            (RevocationScope::Mag(mag), sessions, format!("MAG {mag}"))
        }
        _ => return Response::error(400, "give exactly one of `mn_id` and `mag`"),
    };
    if sessions == 0 {
        return Response::error(404, format!("no session of {what}"));
    }
    tracing::info!(scope = ?scope, sessions, "revocation asked through the control API");
    driver.engine.revoke(now, scope);
    Response::ok(json!({ "revoked": sessions }))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;
    use std::time::Duration;

    use pmip6_engine::flow::FlowConfig;
    use pmip6_engine::lma::LmaConfig;
    use pmip6_wire::{Message, ParseConfig, Prefix};

    use super::*;
    use crate::api::Body;
    use crate::driver::Outgoing;

    use crate::driver::tests::{LMAA, PROXY_COA};
    const NOW: Duration = Duration::from_secs(1_800_000_000);

    /// The octets of the PBU a MAG sends when `mn1` attaches.
    fn pbu() -> Vec<u8> {
        crate::driver::tests::valid_pbu(NOW)
    }

    fn lma(flows: bool) -> Driver<Lma> {
        let mut config = LmaConfig::new(LMAA);
        config.prefix_pools.push(Prefix::new("2001:db8:100::".parse().unwrap_or(Ipv6Addr::UNSPECIFIED), 40));
        config.flow = flows.then(FlowConfig::default);
        let mut driver = Driver::new(Lma::new(config), ParseConfig::default(), LMAA, None);
        driver.handle_datagram(NOW, &pbu(), PROXY_COA);
        let sent = driver.drain();
        assert!(sent.iter().any(|o| matches!(o, Outgoing::Mobility(Message::BindingAck(_), _))), "{sent:?}");
        driver
    }

    fn json_of(response: &Response) -> &Value {
        match &response.body {
            Body::Json(v) => v,
            Body::Text(t) => panic!("text: {t}"),
        }
    }

    #[test]
    fn bindings_show_a_registered_mobile_node() {
        let mut driver = lma(false);
        let response = answer(&mut driver, NOW, Request::Bindings);
        assert_eq!(response.status, 200);
        let bindings = json_of(&response);
        assert_eq!(bindings[0]["mn_id"], "mn1@example.net");
        assert_eq!(bindings[0]["state"], "active");
        assert_eq!(bindings[0]["attachments"][0]["proxy_coa"], PROXY_COA.to_string());
        assert_eq!(bindings[0]["attachments"][0]["access_technology"], 3);
        assert_eq!(bindings[0]["attachments"][0]["mn_ll_id"], "02:00:00:00:00:01");
        assert!(bindings[0]["attachments"][0]["lifetime_left_secs"].as_u64().is_some_and(|s| s > 0));
        let nodes = answer(&mut driver, NOW, Request::MobileNodes);
        assert_eq!(json_of(&nodes)[0]["interfaces"].as_array().map(Vec::len), Some(1));
        let peers = answer(&mut driver, NOW, Request::Peers);
        assert_eq!(json_of(&peers)[0]["address"], PROXY_COA.to_string());
        let status = answer(&mut driver, NOW, Request::Status);
        assert_eq!(json_of(&status)["bindings"], 1);
        assert_eq!(json_of(&status)["role"], "lma");
    }

    #[test]
    fn moving_an_unknown_flow_is_a_404_with_the_reason() {
        let mut driver = lma(true);
        let body = json!({ "mn_id": "mn1@example.net", "fid": 7, "target": "wlan" });
        let response = answer(&mut driver, NOW, Request::MoveFlow(body));
        assert_eq!(response.status, 404, "{response:?}");
        assert!(response.error_reason().is_some_and(|r| r.contains("fid 7")), "{response:?}");
        let bad = answer(&mut driver, NOW, Request::MoveFlow(json!({ "mn_id": "mn1@example.net", "fid": 7 })));
        assert_eq!(bad.status, 400);
        let bad = answer(&mut driver, NOW, Request::MoveFlow(json!({ "mn_id": 3, "fid": 1, "target": "wlan" })));
        assert_eq!(bad.status, 400);
        // Without flow mobility, a move is refused as such.
        let mut plain = lma(false);
        let body = json!({ "mn_id": "mn1@example.net", "fid": 7, "target": "wlan" });
        assert_eq!(answer(&mut plain, NOW, Request::MoveFlow(body)).status, 409);
    }

    #[test]
    fn policies_are_added_listed_and_removed_and_bad_ones_are_400() {
        let mut driver = lma(true);
        let bad = answer(&mut driver, NOW, Request::AddPolicy(json!({ "target": "wlan", "selector": { "port": 1 } })));
        assert_eq!(bad.status, 400);
        assert!(bad.error_reason().is_some_and(|r| r.contains("unknown key `port`")), "{bad:?}");
        let backwards = json!({ "target": "wlan", "selector": { "dst_port": "443-80" } });
        let refused = answer(&mut driver, NOW, Request::AddPolicy(backwards));
        assert_eq!(refused.status, 400, "{refused:?}");
        let rule = json!({ "target": "wlan", "selector": { "dst_port": 443 } });
        assert_eq!(answer(&mut driver, NOW, Request::AddPolicy(rule)).status, 200);
        let list = answer(&mut driver, NOW, Request::Policies);
        assert_eq!(json_of(&list)["rules"][0]["target"], "att:4");
        assert_eq!(answer(&mut driver, NOW, Request::DeletePolicy(3)).status, 404);
        assert_eq!(answer(&mut driver, NOW, Request::DeletePolicy(0)).status, 200);
        let list = answer(&mut driver, NOW, Request::Policies);
        assert_eq!(json_of(&list)["rules"].as_array().map(Vec::len), Some(0));
    }

    #[test]
    fn a_revocation_goes_out_and_unknown_scopes_are_404() {
        let mut driver = lma(false);
        assert_eq!(answer(&mut driver, NOW, Request::Revoke(json!({ "mn_id": "nobody" }))).status, 404);
        assert_eq!(answer(&mut driver, NOW, Request::Revoke(json!({}))).status, 400);
        assert_eq!(answer(&mut driver, NOW, Request::Revoke(json!({ "mag": "nonsense" }))).status, 400);
        let response = answer(&mut driver, NOW, Request::Revoke(json!({ "mn_id": "mn1@example.net" })));
        assert_eq!(response.status, 200, "{response:?}");
        let sent = driver.drain();
        assert!(sent.iter().any(|o| matches!(o, Outgoing::Mobility(Message::BindingRevocation(_), _))), "{sent:?}");
        assert_eq!(driver.engine.binding_cache().len(), 0);
    }

    #[test]
    fn metrics_show_the_pbu_and_the_pba() {
        let mut driver = lma(false);
        let response = answer(&mut driver, NOW, Request::Metrics);
        let Body::Text(text) = &response.body else { panic!("not text") };
        assert!(text.contains("pmip6_pbu_received_total 1"), "{text}");
        assert!(text.contains("pmip6_bindings 1"), "{text}");
        assert!(text.contains("pmip6_events_total{kind=\"BindingCreated\"} 1"), "{text}");
    }
}
