//! `pmip6 ctl`: the client of a daemon's control API, over its unix socket.
//!
//! Each command is one HTTP request (`pmip6_daemon::api::client`); the answer is shown as an
//! aligned table, or as the raw JSON with `--json`. An answer of 400 or more is an error with
//! the API's reason, and a non-zero exit status.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use clap::Subcommand;
use pmip6_daemon::api::client;
use serde_json::{Value, json};

/// What to ask the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum CtlCommand {
    /// The binding cache (LMA) or the Binding Update List (MAG)
    Bindings,
    /// Mobile nodes with their interfaces (LMA)
    MobileNodes,
    /// Flows per mobile node: 6-tuple, route, counters, deciding rule (LMA)
    Flows,
    /// The operator rules (LMA)
    Policies,
    /// Add an operator rule, given in its JSON form (LMA)
    PolicyAdd {
        /// The rule, e.g. '{"selector": {"dst_port": 443}, "target": "wlan"}'
        rule: String,
    },
    /// Remove the operator rule at INDEX (LMA)
    PolicyDelete {
        /// The rule's index, as `policies` lists it
        index: usize,
    },
    /// MAGs with their heartbeat state (LMA)
    Peers,
    /// Installed data-plane resources (MAG)
    Resources,
    /// Role, uptime and counters
    Status,
    /// The Prometheus text
    Metrics,
    /// Move one flow of a mobile node (LMA)
    Move {
        /// The mobile node (its NAI)
        #[arg(long, value_name = "ID")]
        mn: String,
        /// The flow's FID, as `flows` lists it
        #[arg(long, value_name = "N")]
        fid: u16,
        /// Where to: an access technology (wlan, lte, att:4), interface:MN-LL-ID, mag:ADDRESS
        #[arg(long, value_name = "TARGET")]
        to: String,
    },
    /// Revoke every session of a mobile node, or of a MAG (LMA)
    Revoke {
        /// The mobile node (its NAI)
        #[arg(long, value_name = "ID", required_unless_present = "mag", conflicts_with = "mag")]
        mn: Option<String>,
        /// The MAG (its Proxy-CoA)
        #[arg(long, value_name = "ADDRESS")]
        mag: Option<String>,
    },
}

impl CtlCommand {
    /// The HTTP method, path and body of the command.
    pub fn request(&self) -> anyhow::Result<(&'static str, String, Option<String>)> {
        Ok(match self {
            Self::Bindings => ("GET", "/bindings".into(), None),
            Self::MobileNodes => ("GET", "/mobile-nodes".into(), None),
            Self::Flows => ("GET", "/flows".into(), None),
            Self::Policies => ("GET", "/policies".into(), None),
            Self::PolicyAdd { rule } => {
                let value: Value = serde_json::from_str(rule).context("the rule is not JSON")?;
                ("POST", "/policies".into(), Some(value.to_string()))
            }
            Self::PolicyDelete { index } => ("DELETE", format!("/policies/{index}"), None),
            Self::Peers => ("GET", "/peers".into(), None),
            Self::Resources => ("GET", "/resources".into(), None),
            Self::Status => ("GET", "/status".into(), None),
            Self::Metrics => ("GET", "/metrics".into(), None),
            Self::Move { mn, fid, to } => {
                ("POST", "/flows/move".into(), Some(json!({ "mn_id": mn, "fid": fid, "target": to }).to_string()))
            }
            Self::Revoke { mn, mag } => {
                let body = match (mn, mag) {
                    (Some(mn), None) => json!({ "mn_id": mn }),
                    (None, Some(mag)) => json!({ "mag": mag }),
                    _ => bail!("give one of --mn and --mag"),
                };
                ("POST", "/bindings/revoke".into(), Some(body.to_string()))
            }
        })
    }
}

/// Runs `command` against the daemon at `socket` and writes its answer to `out`: a table, or
/// the JSON as received with `json`.
pub fn run(socket: &Path, command: &CtlCommand, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let (method, path, body) = command.request()?;
    let answer = client::request_blocking(socket, method, &path, body)?;
    if answer.status >= 400 {
        let reason = serde_json::from_str::<Value>(&answer.body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| answer.body.trim().to_owned());
        bail!("{method} {path}: {} {reason}", answer.status);
    }
    if matches!(command, CtlCommand::Metrics) {
        out.write_all(answer.body.as_bytes())?;
        return Ok(());
    }
    let value: Value = serde_json::from_str(&answer.body).context("the answer is not JSON")?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        out.write_all(render(command, &value).as_bytes())?;
    }
    Ok(())
}

/// A JSON value as one table cell: strings bare, lists joined by commas, null as `-`.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(map) => map.iter().map(|(k, v)| format!("{k}={}", cell(v))).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

/// Rows under headers, each column as wide as its widest cell, two spaces apart.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text += c;
            } else {
                let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(c.chars().count());
                text += c;
                text += &" ".repeat(pad + 2);
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

fn field(value: &Value, key: &str) -> String {
    cell(value.get(key).unwrap_or(&Value::Null))
}

fn rows_of(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The table of an answer.
pub fn render(command: &CtlCommand, value: &Value) -> String {
    match command {
        CtlCommand::Bindings if rows_of(value).iter().any(|b| b.get("attachments").is_some()) => {
            let mut rows = Vec::new();
            for b in rows_of(value) {
                for a in rows_of(b.get("attachments").unwrap_or(&Value::Null)) {
                    rows.push(vec![
                        field(b, "mn_id"),
                        field(b, "state"),
                        field(b, "prefixes"),
                        field(b, "ipv4_home_address"),
                        field(a, "proxy_coa"),
                        field(a, "access_technology"),
                        field(a, "mn_ll_id"),
                        format!("{}s", field(a, "lifetime_left_secs")),
                    ]);
                }
            }
            table(&["MN-ID", "STATE", "PREFIXES", "IPV4", "PROXY-COA", "ATT", "MN-LL-ID", "LIFETIME-LEFT"], &rows)
        }
        CtlCommand::Bindings => {
            let rows: Vec<Vec<String>> = rows_of(value)
                .iter()
                .map(|e| {
                    vec![
                        field(e, "mn_id"),
                        field(e, "interface"),
                        field(e, "mac"),
                        field(e, "state"),
                        field(e, "home_network_prefixes"),
                        field(e, "other_prefixes"),
                        format!("{}s", field(e, "lifetime_left_secs")),
                    ]
                })
                .collect();
            table(&["MN-ID", "IF", "MAC", "STATE", "HNP", "OTHER-PREFIXES", "LIFETIME-LEFT"], &rows)
        }
        CtlCommand::MobileNodes => {
            let mut rows = Vec::new();
            for n in rows_of(value) {
                for i in rows_of(n.get("interfaces").unwrap_or(&Value::Null)) {
                    rows.push(vec![
                        field(n, "mn_id"),
                        field(i, "binding"),
                        field(i, "state"),
                        field(i, "proxy_coa"),
                        field(i, "access_technology"),
                        field(i, "mn_ll_id"),
                        field(i, "prefixes"),
                    ]);
                }
            }
            table(&["MN-ID", "BINDING", "STATE", "PROXY-COA", "ATT", "MN-LL-ID", "PREFIXES"], &rows)
        }
        CtlCommand::Flows => {
            let mut rows = Vec::new();
            for n in rows_of(value.get("mobile_nodes").unwrap_or(&Value::Null)) {
                for f in rows_of(n.get("flows").unwrap_or(&Value::Null)) {
                    let rule = match f.get("rule") {
                        Some(r) if !r.is_null() => format!("{}#{}", field(r, "tier"), field(r, "index")),
                        _ => "-".to_owned(),
                    };
                    rows.push(vec![
                        field(n, "mn_id"),
                        field(f, "fid"),
                        format!("{}:{}", field(f, "src"), field(f, "src_port")),
                        format!("{}:{}", field(f, "dst"), field(f, "dst_port")),
                        field(f, "protocol"),
                        field(f, "flow_label"),
                        field(f, "route"),
                        rule,
                        field(f, "packets"),
                        field(f, "bytes"),
                    ]);
                }
            }
            table(
                &["MN-ID", "FID", "SOURCE", "DESTINATION", "PROTO", "LABEL", "ROUTE", "RULE", "PACKETS", "BYTES"],
                &rows,
            )
        }
        CtlCommand::Policies => {
            let rows: Vec<Vec<String>> = rows_of(value.get("rules").unwrap_or(&Value::Null))
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let scope = r.get("mn_id").map(cell).unwrap_or_else(|| "all".to_owned());
                    vec![
                        i.to_string(),
                        scope,
                        field(r, "selector"),
                        field(r, "target"),
                        field(r, "locked"),
                        field(r, "fallback"),
                    ]
                })
                .collect();
            table(&["#", "SCOPE", "SELECTOR", "TARGET", "LOCKED", "FALLBACK"], &rows)
        }
        CtlCommand::Peers => {
            let rows: Vec<Vec<String>> = rows_of(value)
                .iter()
                .map(|p| {
                    vec![
                        field(p, "address"),
                        field(p, "attachments"),
                        field(p, "missed_heartbeats"),
                        field(p, "unreachable"),
                        field(p, "restart_counter"),
                    ]
                })
                .collect();
            table(&["MAG", "ATTACHMENTS", "MISSED-HEARTBEATS", "UNREACHABLE", "RESTART-COUNTER"], &rows)
        }
        CtlCommand::Resources => {
            let rows: Vec<Vec<String>> = rows_of(value)
                .iter()
                .map(|r| {
                    vec![
                        field(r, "kind"),
                        field(r, "prefix"),
                        field(r, "interface"),
                        field(r, "peer"),
                        field(r, "next_hop"),
                    ]
                })
                .collect();
            table(&["KIND", "PREFIX", "INTERFACE", "PEER", "NEXT-HOP"], &rows)
        }
        CtlCommand::Status => {
            let mut rows = Vec::new();
            if let Some(map) = value.as_object() {
                for (key, v) in map {
                    match v.as_object() {
                        Some(inner) => rows.extend(inner.iter().map(|(k, v)| vec![format!("{key}.{k}"), cell(v)])),
                        None => rows.push(vec![key.clone(), cell(v)]),
                    }
                }
            }
            table(&["KEY", "VALUE"], &rows)
        }
        CtlCommand::Move { .. } => {
            format!("flow {} of {} now goes to {}\n", field(value, "fid"), field(value, "mn_id"), field(value, "route"))
        }
        CtlCommand::Revoke { .. } => format!("{} session(s) revoked\n", field(value, "revoked")),
        CtlCommand::PolicyAdd { .. } => format!("rule {} added\n", field(value, "index")),
        CtlCommand::PolicyDelete { .. } => format!("rule {} removed\n", field(value, "removed")),
        CtlCommand::Metrics => cell(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let text = table(&["A", "LONGER"], &[vec!["wide cell".into(), "x".into()], vec!["b".into(), "y".into()]]);
        assert_eq!(text, "A          LONGER\nwide cell  x\nb          y\n");
    }

    #[test]
    fn lma_bindings_render_one_row_per_attachment() {
        let value = json!([{
            "mn_id": "mn1@example.net", "state": "active", "prefixes": ["2001:db8:100::/64"],
            "ipv4_home_address": "10.64.0.2",
            "attachments": [
                { "proxy_coa": "2001:db8::2", "access_technology": 3, "mn_ll_id": "02:00:00:00:00:01", "lifetime_left_secs": 30 },
                { "proxy_coa": "2001:db8::3", "access_technology": 4, "mn_ll_id": null, "lifetime_left_secs": 20 },
            ],
        }]);
        let text = render(&CtlCommand::Bindings, &value);
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains("2001:db8::3") && text.contains("20s"), "{text}");
        assert!(text.contains("10.64.0.2"), "{text}");
    }

    #[test]
    fn requests_carry_their_bodies() {
        let mv = CtlCommand::Move { mn: "mn1@example.net".into(), fid: 3, to: "wlan".into() };
        let (method, path, body) = mv.request().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((method, path.as_str()), ("POST", "/flows/move"));
        assert!(body.is_some_and(|b| b.contains("\"fid\":3")));
        assert!(CtlCommand::PolicyAdd { rule: "{".into() }.request().is_err());
    }
}
