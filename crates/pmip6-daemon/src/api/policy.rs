//! The JSON form of operator rules and flow targets, both ways.
//!
//! ```json
//! {
//!   "selector": { "version": 6, "src_addr": "2001:db8::/64", "dst_addr": "2001:db8:100::1",
//!                 "src_port": 443, "dst_port": "5000-5100", "protocol": 17, "flow_label": 5,
//!                 "traffic_class": 0, "spi": "1-9" },
//!   "target": "wlan",
//!   "mn_id": "mn1@example.net",
//!   "locked": false,
//!   "fallback": "next-rule"
//! }
//! ```
//!
//! - `selector`: every field optional (a wildcard); a range is `N`, `"N"` or `"START-END"`; an
//!   address range is `"ADDR"`, `"ADDR/LEN"` or `"START-END"`. `version` is 6 unless given as 4
//!   (or the addresses are IPv4). `protocol` is the IPv6 Next Header or the IPv4 Protocol,
//!   `traffic_class` the IPv6 Traffic Class or the IPv4 DS field; `flow_label` is IPv6 only.
//! - `target` (see [`target_from_json`]): an access technology (`"wlan"`, `"att:4"`, `4`), an
//!   interface of the MN by MN-LL-ID (`"interface:02:00:00:00:00:01"`), a MAG
//!   (`"mag:2001:db8::2"` or the bare address), `"balance"`, or
//!   `{"split": [{"target": "wlan", "weight": 3}, ...]}`.
//! - `mn_id` (optional): the rule applies to that mobile node only; else to all.
//! - `locked` (false): a locked rule beats the mobile node's own rules.
//! - `fallback`: `"next-rule"` (default) or `"base-route"`.
//!
//! Unknown keys are refused, like the configuration files.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use pmip6_engine::flow::{Choice, Fallback, OperatorRule, Rule, Scope, TargetSpec};
use pmip6_engine::lma::LinkLayerId;
use pmip6_wire::AccessTechnologyType;
use pmip6_wire::selector::{FieldRange, Ipv4Selector, Ipv6Selector, TrafficSelector};
use serde_json::{Map, Value, json};

use super::{hex_colon, mn_text, parse_hex_colon, parse_mn};

/// Access technology names accepted in targets, with their RFC 5213 §8.5 numbers.
const ACCESS_TECHNOLOGIES: &[(&str, u8)] = &[
    ("virtual", 1),
    ("ppp", 2),
    ("ethernet", 3),
    ("ieee8023", 3),
    ("wlan", 4),
    ("wifi", 4),
    ("ieee80211", 4),
    ("wimax", 5),
    ("ieee80216e", 5),
    ("geran", 6),
    ("utran", 7),
    ("3g", 7),
    ("eutran", 8),
    ("lte", 8),
    ("ehrpd", 9),
    ("hrpd", 10),
    ("1xrtt", 11),
    ("umb", 12),
    ("nb-iot", 13),
];

fn access_technology(text: &str) -> Option<AccessTechnologyType> {
    let lower = text.to_ascii_lowercase();
    if let Ok(n) = lower.parse::<u8>() {
        return Some(AccessTechnologyType::from(n));
    }
    ACCESS_TECHNOLOGIES.iter().find(|(name, _)| *name == lower).map(|(_, n)| AccessTechnologyType::from(*n))
}

fn interface(text: &str) -> Result<LinkLayerId, String> {
    parse_hex_colon(text)
        .and_then(|bytes| LinkLayerId::new(&bytes))
        .ok_or_else(|| format!("`{text}` is not a link-layer identifier (hex octets, `02:00:00:00:00:01`)"))
}

/// A single-choice target from its text: `att:N` or a name, `interface:LLID`, `mag:ADDR`, or
/// a bare number (ATT), IPv6 address (MAG) or MAC address (interface).
fn target_from_text(text: &str) -> Result<TargetSpec, String> {
    let text = text.trim();
    if let Some(att) = text.strip_prefix("att:") {
        return access_technology(att)
            .map(TargetSpec::AccessTechnology)
            .ok_or_else(|| format!("`{att}` is not an access technology"));
    }
    if let Some(lli) = text.strip_prefix("interface:") {
        return interface(lli).map(TargetSpec::Interface);
    }
    if let Some(mag) = text.strip_prefix("mag:") {
        return mag.parse::<Ipv6Addr>().map(TargetSpec::Mag).map_err(|_| format!("`{mag}` is not an IPv6 address"));
    }
    if text.eq_ignore_ascii_case("balance") {
        return Ok(TargetSpec::Balance);
    }
    if let Some(att) = access_technology(text) {
        return Ok(TargetSpec::AccessTechnology(att));
    }
    if let Ok(mag) = text.parse::<Ipv6Addr>() {
        return Ok(TargetSpec::Mag(mag));
    }
    if text.contains(':') && parse_hex_colon(text).is_some() {
        return interface(text).map(TargetSpec::Interface);
    }
    Err(format!(
        "`{text}` is not a target: an access technology (`wlan`, `att:4`), `interface:MN-LL-ID`, `mag:ADDRESS` or `balance`"
    ))
}

fn choice(target: TargetSpec) -> Result<Choice, String> {
    match target {
        TargetSpec::AccessTechnology(t) => Ok(Choice::AccessTechnology(t)),
        TargetSpec::Interface(l) => Ok(Choice::Interface(l)),
        TargetSpec::Mag(m) => Ok(Choice::Mag(m)),
        TargetSpec::Split(_) | TargetSpec::Balance => Err("a split member must be a single target".to_owned()),
    }
}

/// A target from its JSON form: a string ([`target_from_text`] forms), a number (an access
/// technology), `{"access_technology": N}`, `{"interface": "..."}`, `{"mag": "..."}` or
/// `{"split": [{"target": ..., "weight": N}, ...]}`.
pub fn target_from_json(value: &Value) -> Result<TargetSpec, String> {
    match value {
        Value::String(text) => target_from_text(text),
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .map(|n| TargetSpec::AccessTechnology(AccessTechnologyType::from(n)))
            .ok_or_else(|| format!("{n} is not an access technology number")),
        Value::Object(map) => {
            let [(key, inner)] = map.iter().collect::<Vec<_>>()[..] else {
                return Err("a target object has exactly one key".to_owned());
            };
            match key.as_str() {
                "access_technology" => match inner {
                    Value::String(t) => target_from_text(&format!("att:{t}")),
                    other => target_from_json(other),
                },
                "interface" => interface(inner.as_str().ok_or("`interface` is a string")?).map(TargetSpec::Interface),
                "mag" => inner
                    .as_str()
                    .and_then(|t| t.parse::<Ipv6Addr>().ok())
                    .map(TargetSpec::Mag)
                    .ok_or_else(|| "`mag` is an IPv6 address".to_owned()),
                "split" => split(inner),
                other => Err(format!("unknown target kind `{other}`")),
            }
        }
        _ => Err("a target is a string, a number or an object".to_owned()),
    }
}

fn split(value: &Value) -> Result<TargetSpec, String> {
    let members = value.as_array().ok_or("`split` is a list of {target, weight}")?;
    let mut out = Vec::new();
    for (i, member) in members.iter().enumerate() {
        let target = member.get("target").ok_or_else(|| format!("split[{i}]: `target` missing"))?;
        let weight = member
            .get("weight")
            .and_then(Value::as_u64)
            .and_then(|w| u32::try_from(w).ok())
            .ok_or_else(|| format!("split[{i}]: `weight` is a number"))?;
        out.push((choice(target_from_json(target).map_err(|e| format!("split[{i}]: {e}"))?)?, weight));
    }
    Ok(TargetSpec::Split(out))
}

/// A target's JSON form, as [`target_from_json`] reads it back.
pub fn target_to_json(target: &TargetSpec) -> Value {
    match target {
        TargetSpec::AccessTechnology(t) => json!(format!("att:{}", u8::from(*t))),
        TargetSpec::Interface(l) => json!(format!("interface:{}", hex_colon(l.as_bytes()))),
        TargetSpec::Mag(m) => json!(format!("mag:{m}")),
        TargetSpec::Balance => json!("balance"),
        TargetSpec::Split(members) => {
            let members: Vec<Value> = members
                .iter()
                .map(|(c, w)| {
                    let target = match c {
                        Choice::AccessTechnology(t) => TargetSpec::AccessTechnology(*t),
                        Choice::Interface(l) => TargetSpec::Interface(l.clone()),
                        Choice::Mag(m) => TargetSpec::Mag(*m),
                    };
                    json!({ "target": target_to_json(&target), "weight": w })
                })
                .collect();
            json!({ "split": members })
        }
    }
}

// ---- selectors ----------------------------------------------------------------------------------

const SELECTOR_KEYS: &[&str] =
    &["version", "src_addr", "dst_addr", "src_port", "dst_port", "protocol", "flow_label", "traffic_class", "spi"];

fn range<T: FromStr + Copy + PartialOrd>(map: &Map<String, Value>, key: &str) -> Result<Option<FieldRange<T>>, String> {
    let Some(value) = map.get(key) else { return Ok(None) };
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        Value::Null => return Ok(None),
        _ => return Err(format!("`{key}`: a number or \"START-END\"")),
    };
    let parse = |t: &str| t.trim().parse::<T>().map_err(|_| format!("`{key}`: `{t}` is out of range or not a number"));
    match text.split_once('-') {
        Some((a, b)) => Ok(Some(FieldRange::new(parse(a)?, parse(b)?))),
        None => Ok(Some(FieldRange::exact(parse(&text)?))),
    }
}

/// An address range: `ADDR`, `ADDR/LEN` or `START-END`.
fn address_range(map: &Map<String, Value>, key: &str) -> Result<Option<(IpAddr, Option<IpAddr>)>, String> {
    let Some(value) = map.get(key) else { return Ok(None) };
    if value.is_null() {
        return Ok(None);
    }
    let text = value.as_str().ok_or_else(|| format!("`{key}`: an address, ADDR/LEN or START-END"))?.trim();
    let addr = |t: &str| t.trim().parse::<IpAddr>().map_err(|_| format!("`{key}`: `{t}` is not an IP address"));
    if let Some((a, b)) = text.split_once('-') {
        return Ok(Some((addr(a)?, Some(addr(b)?))));
    }
    if let Some((a, len)) = text.split_once('/') {
        let a = addr(a)?;
        let len: u32 = len.trim().parse().map_err(|_| format!("`{key}`: `{len}` is not a prefix length"))?;
        return match a {
            IpAddr::V6(v6) if len <= 128 => {
                let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
                let n = u128::from(v6);
                Ok(Some((IpAddr::V6(Ipv6Addr::from(n & mask)), Some(IpAddr::V6(Ipv6Addr::from(n | !mask))))))
            }
            IpAddr::V4(v4) if len <= 32 => {
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                let n = u32::from(v4);
                Ok(Some((IpAddr::V4(Ipv4Addr::from(n & mask)), Some(IpAddr::V4(Ipv4Addr::from(n | !mask))))))
            }
            _ => Err(format!("`{key}`: prefix length {len} is too long")),
        };
    }
    Ok(Some((addr(text)?, None)))
}

fn v6_range(key: &str, r: Option<(IpAddr, Option<IpAddr>)>) -> Result<Option<FieldRange<Ipv6Addr>>, String> {
    match r {
        None => Ok(None),
        Some((IpAddr::V6(a), None)) => Ok(Some(FieldRange::exact(a))),
        Some((IpAddr::V6(a), Some(IpAddr::V6(b)))) => Ok(Some(FieldRange::new(a, b))),
        Some(_) => Err(format!("`{key}`: an IPv6 address in an IPv6 selector")),
    }
}

fn v4_range(key: &str, r: Option<(IpAddr, Option<IpAddr>)>) -> Result<Option<FieldRange<Ipv4Addr>>, String> {
    match r {
        None => Ok(None),
        Some((IpAddr::V4(a), None)) => Ok(Some(FieldRange::exact(a))),
        Some((IpAddr::V4(a), Some(IpAddr::V4(b)))) => Ok(Some(FieldRange::new(a, b))),
        Some(_) => Err(format!("`{key}`: an IPv4 address in an IPv4 selector")),
    }
}

/// A selector from its JSON form (see the module documentation).
pub fn selector_from_json(value: &Value) -> Result<TrafficSelector, String> {
    let map = value.as_object().ok_or("`selector` is an object")?;
    if let Some(key) = map.keys().find(|k| !SELECTOR_KEYS.contains(&k.as_str())) {
        return Err(format!("selector: unknown key `{key}` (known: {})", SELECTOR_KEYS.join(", ")));
    }
    let src = address_range(map, "src_addr")?;
    let dst = address_range(map, "dst_addr")?;
    let ipv4_addresses = [&src, &dst].iter().any(|r| matches!(r, Some((IpAddr::V4(_), _))));
    let version = match map.get("version") {
        None | Some(Value::Null) => {
            if ipv4_addresses {
                4
            } else {
                6
            }
        }
        Some(v) => v.as_u64().filter(|v| *v == 4 || *v == 6).ok_or("selector: `version` is 4 or 6")?,
    };
    if version == 6 {
        Ok(TrafficSelector::Ipv6(Ipv6Selector {
            src_addr: v6_range("src_addr", src)?,
            dst_addr: v6_range("dst_addr", dst)?,
            spi: range(map, "spi")?,
            flow_label: range(map, "flow_label")?,
            src_port: range(map, "src_port")?,
            dst_port: range(map, "dst_port")?,
            traffic_class: range(map, "traffic_class")?,
            next_header: range(map, "protocol")?,
        }))
    } else {
        if map.contains_key("flow_label") {
            return Err("selector: `flow_label` is IPv6 only".to_owned());
        }
        Ok(TrafficSelector::Ipv4(Ipv4Selector {
            src_addr: v4_range("src_addr", src)?,
            dst_addr: v4_range("dst_addr", dst)?,
            spi: range(map, "spi")?,
            src_port: range(map, "src_port")?,
            dst_port: range(map, "dst_port")?,
            ds: range(map, "traffic_class")?,
            protocol: range(map, "protocol")?,
        }))
    }
}

fn range_json<T: std::fmt::Display + Copy>(r: &Option<FieldRange<T>>) -> Option<Value> {
    r.as_ref().map(|r| match r.end {
        Some(end) => json!(format!("{}-{}", r.start, end)),
        None => json!(r.start.to_string()),
    })
}

/// A selector's JSON form, as [`selector_from_json`] reads it back.
pub fn selector_to_json(selector: &TrafficSelector) -> Value {
    let mut map = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            map.insert(key.to_owned(), v);
        }
    };
    match selector {
        TrafficSelector::Ipv6(s) => {
            put("version", Some(json!(6)));
            put("src_addr", range_json(&s.src_addr));
            put("dst_addr", range_json(&s.dst_addr));
            put("src_port", range_json(&s.src_port));
            put("dst_port", range_json(&s.dst_port));
            put("protocol", range_json(&s.next_header));
            put("flow_label", range_json(&s.flow_label));
            put("traffic_class", range_json(&s.traffic_class));
            put("spi", range_json(&s.spi));
        }
        TrafficSelector::Ipv4(s) => {
            put("version", Some(json!(4)));
            put("src_addr", range_json(&s.src_addr));
            put("dst_addr", range_json(&s.dst_addr));
            put("src_port", range_json(&s.src_port));
            put("dst_port", range_json(&s.dst_port));
            put("protocol", range_json(&s.protocol));
            put("traffic_class", range_json(&s.ds));
            put("spi", range_json(&s.spi));
        }
        TrafficSelector::Unknown { format, data } => {
            put("format", Some(json!(format)));
            put("data", Some(json!(hex_colon(data))));
        }
    }
    Value::Object(map)
}

// ---- rules --------------------------------------------------------------------------------------

const RULE_KEYS: &[&str] = &["selector", "target", "mn_id", "locked", "fallback"];

/// An operator rule from its JSON form; the error says what is wrong.
pub fn rule_from_json(value: &Value) -> Result<OperatorRule, String> {
    let map = value.as_object().ok_or("a rule is a JSON object")?;
    if let Some(key) = map.keys().find(|k| !RULE_KEYS.contains(&k.as_str())) {
        return Err(format!("unknown key `{key}` (known: {})", RULE_KEYS.join(", ")));
    }
    let selector = match map.get("selector") {
        None => TrafficSelector::Ipv6(Ipv6Selector::default()),
        Some(s) => selector_from_json(s)?,
    };
    let target = target_from_json(map.get("target").ok_or("`target` missing")?)?;
    let scope = match map.get("mn_id") {
        None | Some(Value::Null) => Scope::AllMobileNodes,
        Some(Value::String(mn)) => Scope::MobileNode(parse_mn(mn)?),
        Some(_) => return Err("`mn_id` is a string".to_owned()),
    };
    let locked = match map.get("locked") {
        None => false,
        Some(v) => v.as_bool().ok_or("`locked` is true or false")?,
    };
    let fallback = match map.get("fallback").map(|v| v.as_str()) {
        None | Some(Some("next-rule")) => Fallback::NextRule,
        Some(Some("base-route")) => Fallback::BaseRoute,
        Some(_) => return Err("`fallback` is \"next-rule\" or \"base-route\"".to_owned()),
    };
    Ok(OperatorRule { rule: Rule { selector, target, fallback }, scope, locked })
}

/// An operator rule's JSON form, as [`rule_from_json`] reads it back.
pub fn rule_to_json(rule: &OperatorRule) -> Value {
    let mut value = json!({
        "selector": selector_to_json(&rule.rule.selector),
        "target": target_to_json(&rule.rule.target),
        "locked": rule.locked,
        "fallback": match rule.rule.fallback { Fallback::NextRule => "next-rule", Fallback::BaseRoute => "base-route" },
    });
    if let (Scope::MobileNode(mn), Some(map)) = (&rule.scope, value.as_object_mut()) {
        map.insert("mn_id".to_owned(), json!(mn_text(mn)));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_round_trips() {
        let text = json!({
            "selector": { "dst_addr": "2001:db8:100::/64", "dst_port": "5000-5100", "protocol": 17 },
            "target": "wlan",
            "mn_id": "mn1@example.net",
            "locked": true,
        });
        let rule = rule_from_json(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rule.rule.target, TargetSpec::AccessTechnology(AccessTechnologyType::Ieee80211));
        assert!(rule.locked);
        let back = rule_from_json(&rule_to_json(&rule)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, rule);
    }

    #[test]
    fn targets_in_every_form() {
        let mag: Ipv6Addr = "2001:db8::2".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        assert_eq!(target_from_json(&json!("mag:2001:db8::2")), Ok(TargetSpec::Mag(mag)));
        assert_eq!(target_from_json(&json!("2001:db8::2")), Ok(TargetSpec::Mag(mag)));
        assert_eq!(target_from_json(&json!({"mag": "2001:db8::2"})), Ok(TargetSpec::Mag(mag)));
        assert_eq!(target_from_json(&json!(4)), target_from_json(&json!("att:4")));
        assert!(matches!(target_from_json(&json!("02:00:00:00:00:01")), Ok(TargetSpec::Interface(_))));
        let split = json!({"split": [{"target": "wlan", "weight": 3}, {"target": "lte", "weight": 1}]});
        let t = target_from_json(&split).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(target_from_json(&target_to_json(&t)), Ok(t));
    }

    #[test]
    fn bad_rules_say_why() {
        for (bad, why) in [
            (json!([]), "object"),
            (json!({"target": "wlan", "colour": 1}), "unknown key `colour`"),
            (json!({}), "`target` missing"),
            (json!({"target": "carrier-pigeon"}), "not a target"),
            (json!({"target": "wlan", "selector": {"dst_port": 70000}}), "dst_port"),
            (json!({"target": "wlan", "selector": {"dst_addr": "2001:db8::/200"}}), "too long"),
            (json!({"target": "wlan", "selector": {"version": 4, "flow_label": 1}}), "IPv6 only"),
            (json!({"target": "wlan", "selector": {"dst_addr": "10.0.0.1", "src_addr": "::1"}}), "IPv4"),
            (json!({"target": {"split": [{"target": "balance", "weight": 1}]}}), "single target"),
            (json!({"target": "wlan", "fallback": "sideways"}), "fallback"),
        ] {
            match rule_from_json(&bad) {
                Ok(r) => panic!("{bad} accepted: {r:?}"),
                Err(e) => assert!(e.contains(why), "{bad}: {e}"),
            }
        }
    }
}
