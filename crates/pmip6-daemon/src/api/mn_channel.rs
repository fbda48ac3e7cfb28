//! The MN channel: how a mobile node submits its own flow rules to the LMA and reads its flows
//! (draft-bernardos-mif-pmip-02 §4.4 items 1 and 3, terminal-driven and hybrid operation: "the
//! terminal may provide its policy to the LMA"; "the policies must be exchanged in both
//! directions").
//!
//! A second HTTP/JSON listener of the LMA daemon (`[mn_api] listen = "[LMAA]:8464"`), reached
//! by mobile nodes over the data path: the MN's TCP connection to the LMAA goes up its MAG's
//! tunnel like any other uplink packet. It serves four endpoints and nothing else:
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/mn/rules` | this MN's own rules, and the rules in force for it with their tier |
//! | PUT | `/mn/rules` | replace this MN's rules: `{"rules": [RULE, ...]}` (or a bare list) |
//! | DELETE | `/mn/rules` | remove this MN's rules |
//! | GET | `/mn/flows` | this MN's interfaces as the LMA sees them, and its flows with the interface each goes through |
//!
//! A RULE is the operator rule form of [`super::policy`] (`selector`, `target`, `fallback`)
//! without `mn_id` and `locked`: the mobile node is never named by the request.
//!
//! # Authentication: the source address
//!
//! The request's source address identifies the mobile node: it must lie in a home network
//! prefix the binding cache holds, in an active binding, for some mobile node; that node is the
//! one the request is about, and its MN-ID comes from the binding. Any other source gets 403,
//! counted and logged. The PMIPv6 domain is what makes the source address trustworthy:
//!
//! - a MAG tunnels to the LMA only packets arriving on its access link from a mobile node
//!   whose prefix it serves, with a source in that prefix (RFC 5213 §6.10.3, the MAG's
//!   source-based uplink route `from <prefix> iif <access link>`), and each prefix belongs to
//!   one mobile node (RFC 5213 §2.2, per-MN prefix model);
//! - TCP's handshake proves the client receives what the LMA sends to that address, and the
//!   LMA sends traffic for a home network prefix only into the tunnel of the MAG serving it
//!   (RFC 5213 §5.6.2), so a host elsewhere that forges an MN's source address never completes
//!   the connection.
//!
//! What it does not protect against: a compromised or malicious MAG, or anyone on the path
//! between a MAG and the LMA (the tunnels are not encrypted; RFC 5213's IPsec protects the
//! signalling only), who can both send and receive as any mobile node behind it; an attacker
//! on a shared access link who can answer for the mobile node's address; and, within the mobile
//! node, any process: the channel authenticates the node, not its applications. Deployments
//! should drop packets with a home-network-prefix source arriving at the LMA other than from a
//! tunnel (ingress filtering), which makes the TCP argument hold without relying on routing.
//! A per-MN key (an HMAC over the request) is not implemented yet.
//!
//! # Limits
//!
//! Bodies over [`MAX_MN_BODY`] octets are answered 413; requests over the per-source rate
//! (`requests_per_second`, with a burst of twice that) 429, before they reach the driver; the
//! rule count and what rules may select and target are the engine's [`MnRuleLimits`]
//! (draft §4.4: rules only for the MN's own prefixes, bounded in number). A full driver
//! channel is 503, like the control API. Every refusal is counted ([`MnChannelCounters`],
//! shown in the control API's `/status` as `mn_api`) and logged.
//!
//! [`MnRuleLimits`]: pmip6_engine::flow::MnRuleLimits

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Body as HttpBody;
use axum::extract::{ConnectInfo, State};
use axum::routing::get;
use pmip6_engine::Now;
use pmip6_engine::flow::{Route, Rule, RuleError, Tier};
use pmip6_engine::lma::{BindingState, Lma};
use pmip6_wire::{MnIdentifier, Prefix};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::lma::{attachment_json, rule_ref_json};
use super::policy::{rule_from_json, rule_to_json};
use super::{Call, Request, Response, ask, hex_colon, http, mn_text};
use crate::driver::Driver;

/// The port of the MN channel in the examples.
pub const DEFAULT_PORT: u16 = 8464;
/// Largest request body accepted on the MN channel, in octets (a full set of rules fits).
pub const MAX_MN_BODY: usize = 16 * 1024;
/// Sources whose request rate is remembered at most; beyond, the idlest are forgotten.
pub const RATE_TABLE_MAX: usize = 4096;

/// What a mobile node asks on the MN channel.
#[derive(Debug, Clone, PartialEq)]
pub enum MnCall {
    /// Its own rules and the rules in force for it.
    Rules,
    /// Replace its rules with these (the JSON body).
    SetRules(Value),
    /// Remove its rules.
    ClearRules,
    /// Its interfaces and flows.
    Flows,
}

impl MnCall {
    /// The endpoint, for logs (never the body: it is the client's).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Rules => "GET /mn/rules",
            Self::SetRules(_) => "PUT /mn/rules",
            Self::ClearRules => "DELETE /mn/rules",
            Self::Flows => "GET /mn/flows",
        }
    }
}

/// Where the MN channel listens and how much it takes, as checked from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MnChannelSettings {
    /// The TCP address (the LMAA and [`DEFAULT_PORT`] usually).
    pub listen: SocketAddr,
    /// Requests per second one source may make (the burst is twice that).
    pub requests_per_second: u32,
}

/// What the MN channel counted.
#[derive(Debug, Default)]
pub struct MnChannelCounters {
    /// Requests received.
    pub requests: AtomicU64,
    /// Requests answered 2xx.
    pub accepted: AtomicU64,
    /// Requests from a source outside every registered prefix (403).
    pub refused_source: AtomicU64,
    /// Requests over the per-source rate (429).
    pub rate_limited: AtomicU64,
    /// Requests refused otherwise: bad JSON, bad or refused rules, too large (4xx).
    pub bad: AtomicU64,
}

impl MnChannelCounters {
    fn snapshot(&self) -> Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "requests": get(&self.requests),
            "accepted": get(&self.accepted),
            "refused_source": get(&self.refused_source),
            "rate_limited": get(&self.rate_limited),
            "bad": get(&self.bad),
        })
    }
}

/// The running MN channel: its listener stops when it is dropped.
#[derive(Debug)]
pub struct MnChannel {
    addr: SocketAddr,
    counters: Arc<MnChannelCounters>,
    task: tokio::task::JoinHandle<()>,
}

impl MnChannel {
    /// The address served (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it counted so far.
    pub fn counters(&self) -> &MnChannelCounters {
        &self.counters
    }

    /// Its address and counters, for the control API's `/status`.
    pub fn status_json(&self) -> Value {
        json!({ "listen": self.addr.to_string(), "counters": self.counters.snapshot() })
    }
}

impl Drop for MnChannel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A token bucket per source address.
#[derive(Debug)]
struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        Self { per_second, burst: per_second * 2.0, buckets: Mutex::new(HashMap::new()) }
    }

    /// Whether `source` may make one more request now.
    fn allow(&self, source: IpAddr, now: Instant) -> bool {
        let Ok(mut buckets) = self.buckets.lock() else { return false };
        if buckets.len() >= RATE_TABLE_MAX && !buckets.contains_key(&source) {
            // Forget the sources whose bucket has refilled: they are as if never seen.
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst);
            if buckets.len() >= RATE_TABLE_MAX {
                // Still full: a flood of sources. Refuse newcomers rather than grow.
                return false;
            }
        }
        let (tokens, at) = buckets.entry(source).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Clone)]
struct ChannelState {
    sender: mpsc::Sender<Call>,
    counters: Arc<MnChannelCounters>,
    limiter: Arc<RateLimiter>,
}

/// Binds the MN channel's TCP address and spawns its server, which sends its requests to
/// `sender` (the control API's channel to the driver). Must be called inside a tokio runtime.
pub fn start(settings: &MnChannelSettings, sender: mpsc::Sender<Call>) -> std::io::Result<MnChannel> {
    let addr = settings.listen;
    let std_listener = std::net::TcpListener::bind(addr)
        .map_err(|e| std::io::Error::new(e.kind(), format!("MN channel on {addr}: {e}")))?;
    std_listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    let local = listener.local_addr().unwrap_or(addr);
    let counters = Arc::new(MnChannelCounters::default());
    let state = ChannelState {
        sender,
        counters: counters.clone(),
        limiter: Arc::new(RateLimiter::new(settings.requests_per_second)),
    };
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(%addr, error = %e, "MN channel stopped");
        }
    });
    tracing::info!(addr = %local, "MN channel listening");
    Ok(MnChannel { addr: local, counters, task })
}

fn router(state: ChannelState) -> Router {
    Router::new()
        .route(
            "/mn/rules",
            get(|s: State<ChannelState>, c: ConnectInfo<SocketAddr>| serve(s, c, None, |_| MnCall::Rules))
                .put(|s: State<ChannelState>, c: ConnectInfo<SocketAddr>, body: HttpBody| {
                    serve(s, c, Some(body), MnCall::SetRules)
                })
                .delete(|s: State<ChannelState>, c: ConnectInfo<SocketAddr>| serve(s, c, None, |_| MnCall::ClearRules)),
        )
        .route(
            "/mn/flows",
            get(|s: State<ChannelState>, c: ConnectInfo<SocketAddr>| serve(s, c, None, |_| MnCall::Flows)),
        )
        .fallback(|| async {
            http(Response::error(404, "no such endpoint (the MN channel serves /mn/rules and /mn/flows)"))
        })
        .method_not_allowed_fallback(|| async { http(Response::error(405, "method not allowed here")) })
        .with_state(state)
}

/// One request: rate limit, body, then the driver's answer; counts the outcome.
async fn serve(
    State(state): State<ChannelState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Option<HttpBody>,
    make: fn(Value) -> MnCall,
) -> axum::response::Response {
    let counters = &state.counters;
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let source = peer.ip();
    if !state.limiter.allow(source, Instant::now()) {
        let n = counters.rate_limited.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(%source, rate_limited = n, "MN channel: over the request rate");
        return http(Response::error(429, "too many requests from this address; slow down"));
    }
    let value = match body {
        None => Value::Null,
        Some(body) => match axum::body::to_bytes(body, MAX_MN_BODY).await {
            Err(_) => {
                counters.bad.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%source, "MN channel: body over {MAX_MN_BODY} octets, or unreadable");
                return http(Response::error(413, format!("body over {MAX_MN_BODY} octets, or unreadable")));
            }
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(value) => value,
                Err(e) => {
                    counters.bad.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%source, error = %e, "MN channel: body is not JSON");
                    return http(Response::error(400, format!("body is not JSON: {e}")));
                }
            },
        },
    };
    let response = ask(&state.sender, Request::MobileNode { source, call: make(value) }).await;
    match response.status {
        200..=299 => counters.accepted.fetch_add(1, Ordering::Relaxed),
        403 => counters.refused_source.fetch_add(1, Ordering::Relaxed),
        400..=499 => counters.bad.fetch_add(1, Ordering::Relaxed),
        _ => 0,
    };
    http(response)
}

// ---- the driver's side -------------------------------------------------------------------------

fn prefix_holds(prefix: &Prefix, addr: Ipv6Addr) -> bool {
    let len = u32::from(prefix.len.min(128));
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
    u128::from(prefix.addr) & mask == u128::from(addr) & mask
}

/// The mobile node whose registered home network prefix (in an active binding) holds
/// `source`: the only identity the MN channel accepts (see the module documentation).
pub fn mobile_node_of(lma: &Lma, source: IpAddr) -> Option<MnIdentifier> {
    // An IPv4 source (or IPv4-mapped) is no home network prefix of ours.
    let IpAddr::V6(addr) = source else { return None };
    if addr.to_ipv4_mapped().is_some() {
        return None;
    }
    lma.binding_cache()
        .iter()
        .filter(|b| b.state() == BindingState::Active)
        .find(|b| b.prefixes().iter().any(|p| prefix_holds(p, addr)))
        .map(|b| b.mn_id().clone())
}

/// Answers one MN channel request against the LMA engine: finds the mobile node from the
/// source address, then serves it.
pub fn answer(driver: &mut Driver<Lma>, now: Now, source: IpAddr, call: MnCall) -> Response {
    let Some(mn) = mobile_node_of(&driver.engine, source) else {
        tracing::warn!(%source, call = call.name(), "MN channel: refused, the source is in no registered prefix");
        return Response::error(
            403,
            format!("{source} is not within a home network prefix registered for a mobile node"),
        );
    };
    if driver.engine.flow_steering().is_none() {
        return Response::error(409, "flow mobility is not enabled at this LMA");
    }
    match call {
        MnCall::Rules => rules(&driver.engine, &mn),
        MnCall::SetRules(body) => set_rules(driver, now, &mn, &body),
        MnCall::ClearRules => set_rules(driver, now, &mn, &json!({ "rules": [] })),
        MnCall::Flows => flows(&driver.engine, now, &mn),
    }
}

/// A mobile node rule's JSON form: the operator form without `mn_id` and `locked`.
fn mn_rule_json(rule: &Rule) -> Value {
    let operator = pmip6_engine::flow::OperatorRule {
        rule: rule.clone(),
        scope: pmip6_engine::flow::Scope::AllMobileNodes,
        locked: false,
    };
    let mut value = rule_to_json(&operator);
    if let Some(map) = value.as_object_mut() {
        map.remove("locked");
    }
    value
}

fn rules(lma: &Lma, mn: &MnIdentifier) -> Response {
    let Some(steering) = lma.flow_steering() else { return Response::error(409, "flow mobility is off") };
    let effective = steering.effective_rules(mn);
    let own: Vec<Value> =
        effective.iter().filter(|(r, _)| r.tier == Tier::MobileNode).map(|(_, rule)| mn_rule_json(rule)).collect();
    let in_force: Vec<Value> = effective
        .iter()
        .map(|(r, rule)| json!({ "rule": mn_rule_json(rule), "from": rule_ref_json(Some(*r)) }))
        .collect();
    let limits = &steering.config().mn_rules;
    Response::ok(json!({
        "mn_id": mn_text(mn),
        "rules": own,
        "effective": in_force,
        "limits": {
            "enabled": limits.enabled,
            "max_rules": limits.max_rules,
            "allow_mag_targets": limits.allow_mag_targets,
            "allow_split": limits.allow_split,
            "access_technologies": limits.access_technologies.as_ref().map(|a| a.iter().map(|t| u8::from(*t)).collect::<Vec<_>>()),
        },
    }))
}

fn parse_rules(body: &Value) -> Result<Vec<Rule>, String> {
    let list = match body {
        Value::Array(list) => list,
        Value::Object(map) => match map.get("rules") {
            Some(Value::Array(list)) if map.len() == 1 => list,
            _ => return Err("expected {\"rules\": [RULE, ...]} or a list of rules".to_owned()),
        },
        _ => return Err("expected {\"rules\": [RULE, ...]} or a list of rules".to_owned()),
    };
    let mut rules = Vec::with_capacity(list.len().min(1024));
    for (i, value) in list.iter().enumerate() {
        // Draft §4.4 item 1: the terminal provides its policy for its own flows. The mobile
        // node is the one the source address belongs to; a rule cannot name another one, nor
        // lock itself against the operator.
        for key in ["mn_id", "locked"] {
            if value.get(key).is_some() {
                return Err(format!(
                    "rule {i}: `{key}` is not accepted here (the mobile node is the request's source)"
                ));
            }
        }
        let rule = rule_from_json(value).map_err(|e| format!("rule {i}: {e}"))?;
        rules.push(rule.rule);
    }
    Ok(rules)
}

fn set_rules(driver: &mut Driver<Lma>, now: Now, mn: &MnIdentifier, body: &Value) -> Response {
    let rules = match parse_rules(body) {
        Ok(rules) => rules,
        Err(e) => {
            tracing::info!(mn_id = %mn_text(mn), error = %e, "MN channel: bad rules");
            return Response::error(400, format!("bad rules: {e}"));
        }
    };
    let count = rules.len();
    match driver.engine.set_mobile_node_rules(now, mn, rules) {
        Ok(()) => {
            tracing::info!(mn_id = %mn_text(mn), rules = count, "mobile node rules replaced through the MN channel");
            Response::ok(json!({ "mn_id": mn_text(mn), "rules": count }))
        }
        Err(e) => {
            tracing::info!(mn_id = %mn_text(mn), reason = %e, "MN channel: rules refused");
            let status = match e.error {
                RuleError::MobileNodeRulesDisabled => 409,
                RuleError::UnknownMobileNode => 404,
                _ => 400,
            };
            Response::error(status, format!("rules refused: {e}"))
        }
    }
}

fn flows(lma: &Lma, now: Now, mn: &MnIdentifier) -> Response {
    let Some(steering) = lma.flow_steering() else { return Response::error(409, "flow mobility is off") };
    let sessions: Vec<_> = lma.binding_cache().sessions(mn).collect();
    let mut interfaces = Vec::new();
    for b in &sessions {
        for a in b.attachments() {
            let mut interface = attachment_json(a, now);
            if let Some(map) = interface.as_object_mut() {
                map.insert("binding".into(), json!(b.id().to_string()));
                map.insert("prefixes".into(), json!(b.prefixes().iter().map(ToString::to_string).collect::<Vec<_>>()));
                map.insert("ipv4_home_address".into(), json!(b.ipv4_home_address().map(|a| a.to_string())));
            }
            interfaces.push(interface);
        }
    }
    // The attachment a route goes through: the tunnel's MAG, or for the base route the MAG
    // serving the destination's prefix (RFC 5213 §5.6.2).
    let via = |route: Route, dst: Ipv6Addr| -> Value {
        let peer = match route {
            Route::Tunnel(peer) => Some(peer),
            Route::PrefixRoute => {
                sessions.iter().find(|b| b.prefixes().iter().any(|p| prefix_holds(p, dst))).and_then(|b| b.route_peer())
            }
        };
        let Some(peer) = peer else { return Value::Null };
        sessions
            .iter()
            .flat_map(|b| b.attachments())
            .find(|a| a.proxy_coa() == peer)
            .map(|a| {
                json!({
                    "proxy_coa": peer.to_string(),
                    "access_technology": u8::from(a.access_technology()),
                    "mn_ll_id": a.mn_link_layer_id().map(hex_colon),
                })
            })
            .unwrap_or_else(|| json!({ "proxy_coa": peer.to_string() }))
    };
    let flows: Vec<Value> = steering
        .flows(mn)
        .iter()
        .map(|f| {
            let mut flow = super::lma::flow_json(f, now);
            if let Some(object) = flow.as_object_mut() {
                object.insert("via".to_owned(), via(f.route, f.key.dst));
            }
            flow
        })
        .collect();
    Response::ok(json!({ "mn_id": mn_text(mn), "interfaces": interfaces, "flows": flows }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pmip6_engine::flow::FlowConfig;
    use pmip6_engine::lma::LmaConfig;
    use pmip6_engine::mag::{AccessInterface, Mag, MagConfig, MobileNodeEntry};
    use pmip6_engine::{InterfaceId, Transmit};
    use pmip6_wire::{AccessTechnologyType, Message, ParseConfig};

    use super::*;
    use crate::api::Body;
    use crate::driver::Outgoing;

    const LMAA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
    const MAG1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2);
    const NOW: Duration = Duration::from_secs(1_800_000_000);

    /// The PBU a MAG at `proxy_coa` sends when `mn` attaches.
    fn pbu(proxy_coa: Ipv6Addr, mn: &str, mac: [u8; 6]) -> Vec<u8> {
        let mut config = MagConfig::new(proxy_coa, LMAA);
        config.interfaces.push(AccessInterface::new(
            InterfaceId(2),
            AccessTechnologyType::Ieee80211,
            "fe80::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
        ));
        config.mobile_nodes.push(MobileNodeEntry {
            mn_id: MnIdentifier::nai(mn),
            macs: vec![mac],
            multihoming: false,
            ipv4: false,
        });
        let mut mag = Mag::new(config);
        mag.handle_attach(NOW, InterfaceId(2), mac);
        let message = std::iter::from_fn(|| mag.poll_transmit())
            .find_map(|t| match t {
                Transmit::Mobility { message, .. } => Some(message),
                Transmit::RouterAdvertisement { .. } => None,
            })
            .expect("a PBU on attach");
        message.to_vec(&proxy_coa, &LMAA).expect("the PBU emits")
    }

    /// An LMA with flow mobility and two mobile nodes registered through one MAG.
    fn lma() -> Driver<Lma> {
        let mut config = LmaConfig::new(LMAA);
        config.prefix_pools.push(Prefix::new("2001:db8:100::".parse().unwrap_or(Ipv6Addr::UNSPECIFIED), 40));
        config.flow = Some(FlowConfig::default());
        let mut driver = Driver::new(Lma::new(config), ParseConfig::default(), LMAA, None);
        for (mn, mac) in [("mn1@example.net", [2, 0, 0, 0, 0, 1]), ("mn2@example.net", [2, 0, 0, 0, 0, 2])] {
            driver.handle_datagram(NOW, &pbu(MAG1, mn, mac), MAG1);
            let sent = driver.drain();
            assert!(sent.iter().any(|o| matches!(o, Outgoing::Mobility(Message::BindingAck(_), _))), "{sent:?}");
        }
        driver
    }

    /// The prefix of `mn` in the binding cache.
    fn prefix_of(driver: &Driver<Lma>, mn: &str) -> Prefix {
        let mn = MnIdentifier::nai(mn);
        driver
            .engine
            .binding_cache()
            .sessions(&mn)
            .next()
            .and_then(|b| b.prefixes().first().copied())
            .expect("a prefix")
    }

    /// An address in `prefix` (interface identifier ::1234).
    fn address_in(prefix: Prefix) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(u128::from(prefix.addr) | 0x1234))
    }

    fn json_of(response: &Response) -> &Value {
        match &response.body {
            Body::Json(v) => v,
            Body::Text(t) => panic!("text: {t}"),
        }
    }

    fn own_rules(driver: &Driver<Lma>, mn: &str) -> usize {
        let mn = MnIdentifier::nai(mn);
        driver
            .engine
            .flow_steering()
            .map(|s| s.effective_rules(&mn).iter().filter(|(r, _)| r.tier == Tier::MobileNode).count())
            .unwrap_or(0)
    }

    fn port_rule(port: u16) -> Value {
        json!({ "selector": { "dst_port": port, "protocol": 17 }, "target": "utran" })
    }

    #[test]
    fn a_source_outside_every_registered_prefix_is_403() {
        let mut driver = lma();
        for source in [
            "2001:db8:c::2".parse::<IpAddr>().unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            IpAddr::V6(LMAA),
            IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ] {
            for call in [MnCall::Rules, MnCall::SetRules(json!({ "rules": [port_rule(9000)] })), MnCall::Flows] {
                let response = answer(&mut driver, NOW, source, call);
                assert_eq!(response.status, 403, "{source}: {response:?}");
                assert!(response.error_reason().is_some_and(|r| r.contains("not within")), "{response:?}");
            }
        }
        assert_eq!(own_rules(&driver, "mn1@example.net"), 0);
        assert_eq!(own_rules(&driver, "mn2@example.net"), 0);
    }

    #[test]
    fn a_source_inside_its_prefix_sets_that_mobile_nodes_rules_only() {
        let mut driver = lma();
        let source = address_in(prefix_of(&driver, "mn1@example.net"));
        let body = json!({ "rules": [port_rule(9000), port_rule(9001)] });
        let response = answer(&mut driver, NOW, source, MnCall::SetRules(body));
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(json_of(&response)["mn_id"], "mn1@example.net");
        assert_eq!(own_rules(&driver, "mn1@example.net"), 2);
        assert_eq!(own_rules(&driver, "mn2@example.net"), 0);
        let listed = answer(&mut driver, NOW, source, MnCall::Rules);
        assert_eq!(listed.status, 200);
        assert_eq!(json_of(&listed)["rules"][0]["target"], "att:7");
        assert_eq!(json_of(&listed)["rules"][1]["selector"]["dst_port"], "9001");
        let flows = answer(&mut driver, NOW, source, MnCall::Flows);
        assert_eq!(flows.status, 200, "{flows:?}");
        assert_eq!(json_of(&flows)["interfaces"][0]["proxy_coa"], MAG1.to_string());
        assert_eq!(json_of(&flows)["interfaces"][0]["mn_ll_id"], "02:00:00:00:00:01");
        // The other node, from its own prefix, sees its own (empty) rules and can clear them.
        let other = address_in(prefix_of(&driver, "mn2@example.net"));
        let listed = answer(&mut driver, NOW, other, MnCall::Rules);
        assert_eq!(json_of(&listed)["mn_id"], "mn2@example.net");
        assert_eq!(json_of(&listed)["rules"].as_array().map(Vec::len), Some(0));
        assert_eq!(answer(&mut driver, NOW, other, MnCall::ClearRules).status, 200);
        assert_eq!(own_rules(&driver, "mn1@example.net"), 2);
        assert_eq!(answer(&mut driver, NOW, source, MnCall::ClearRules).status, 200);
        assert_eq!(own_rules(&driver, "mn1@example.net"), 0);
    }

    #[test]
    fn a_rule_for_another_mobile_nodes_prefix_is_400_with_the_engines_reason() {
        let mut driver = lma();
        let source = address_in(prefix_of(&driver, "mn1@example.net"));
        let theirs = prefix_of(&driver, "mn2@example.net");
        let rule = json!({ "selector": { "dst_addr": format!("{}/{}", theirs.addr, theirs.len) }, "target": "wlan" });
        let response = answer(&mut driver, NOW, source, MnCall::SetRules(json!({ "rules": [port_rule(9000), rule] })));
        assert_eq!(response.status, 400, "{response:?}");
        let reason = response.error_reason().unwrap_or_default();
        assert!(reason.contains("rule 1") && reason.contains("not within the mobile node's own prefixes"), "{reason}");
        // Nothing of a refused set is applied.
        assert_eq!(own_rules(&driver, "mn1@example.net"), 0);
        // Naming a mobile node, or locking, is refused before the engine.
        for bad in [
            json!({ "rules": [{ "target": "wlan", "mn_id": "mn2@example.net" }] }),
            json!({ "rules": [{ "target": "wlan", "locked": true }] }),
            json!({ "rules": [{ "target": "carrier-pigeon" }] }),
            json!({ "policy": [] }),
            json!("rules"),
        ] {
            let response = answer(&mut driver, NOW, source, MnCall::SetRules(bad.clone()));
            assert_eq!(response.status, 400, "{bad}: {response:?}");
        }
        assert_eq!(own_rules(&driver, "mn2@example.net"), 0);
    }

    #[test]
    fn too_many_rules_are_400_with_the_limit() {
        let mut driver = lma();
        let source = address_in(prefix_of(&driver, "mn1@example.net"));
        let limit = driver.engine.flow_steering().map(|s| s.config().mn_rules.max_rules).unwrap_or(0);
        let rules: Vec<Value> = (0..=limit).map(|i| port_rule(10_000 + i as u16)).collect();
        let response = answer(&mut driver, NOW, source, MnCall::SetRules(json!({ "rules": rules })));
        assert_eq!(response.status, 400, "{response:?}");
        let reason = response.error_reason().unwrap_or_default();
        assert!(reason.contains(&format!("at most {limit} allowed")), "{reason}");
        assert_eq!(own_rules(&driver, "mn1@example.net"), 0);
        let rules: Vec<Value> = (0..limit).map(|i| port_rule(10_000 + i as u16)).collect();
        let response = answer(&mut driver, NOW, source, MnCall::SetRules(Value::Array(rules)));
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(own_rules(&driver, "mn1@example.net"), limit);
    }

    #[test]
    fn the_rate_limiter_refills_and_forgets() {
        let limiter = RateLimiter::new(2);
        let at = Instant::now();
        let a = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert!((0..4).all(|_| limiter.allow(a, at)));
        assert!(!limiter.allow(a, at));
        assert!(limiter.allow(a, at + std::time::Duration::from_millis(600)));
        let b = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        assert!(limiter.allow(b, at));
    }

    #[tokio::test]
    async fn the_listener_refuses_a_source_outside_the_prefixes_over_tcp() {
        let (sender, mut receiver) = crate::api::channel();
        let settings = MnChannelSettings { listen: "[::1]:0".parse().expect("address"), requests_per_second: 100 };
        let Ok(channel) = start(&settings, sender) else {
            eprintln!("no IPv6 loopback here; skipped");
            return;
        };
        let mut driver = lma();
        let addr = channel.local_addr();
        let answering = async {
            while let Some(Call { request, reply }) = receiver.recv().await {
                let _ = reply.send(crate::api::lma::answer(&mut driver, NOW, request));
            }
        };
        let asking = async {
            let get = crate::api::client::request_tcp(addr, "GET", "/mn/flows", None).await;
            let put = crate::api::client::request_tcp(addr, "PUT", "/mn/rules", Some("[".to_owned())).await;
            let other = crate::api::client::request_tcp(addr, "GET", "/flows", None).await;
            (get, put, other)
        };
        let (get, put, other) = tokio::select! {
            answers = asking => answers,
            () = answering => panic!("the channel closed"),
        };
        assert_eq!(get.map(|a| a.status).ok(), Some(403));
        assert_eq!(put.map(|a| a.status).ok(), Some(400));
        assert_eq!(other.map(|a| a.status).ok(), Some(404));
        assert_eq!(channel.counters().refused_source.load(Ordering::Relaxed), 1);
        assert_eq!(channel.counters().bad.load(Ordering::Relaxed), 1);
    }
}
