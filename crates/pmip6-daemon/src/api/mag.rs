//! The MAG's answers: Binding Update List and installed resources.

use std::collections::BTreeSet;

use pmip6_engine::mag::{BindingState, BulEntry, Mag, PbuKind};
use pmip6_engine::{Now, Resource};
use serde_json::{Value, json};

use super::{Request, Response, hex_colon, metrics_text, mn_text, status};
use crate::driver::Driver;
use crate::metrics::set_gauge;

/// Answers one control request against the MAG engine.
pub fn answer(driver: &mut Driver<Mag>, now: Now, request: Request) -> Response {
    match request {
        Request::Status => {
            let mut value = status(driver, now, "mag");
            let list = driver.engine.binding_update_list();
            if let Some(map) = value.as_object_mut() {
                map.insert("lma".into(), json!(driver.engine.config().lmaa.to_string()));
                map.insert("bindings".into(), json!(list.len()));
                map.insert("bound".into(), json!(list.iter().filter(|e| e.is_bound()).count()));
                map.insert("resources".into(), json!(driver.engine.installed_resources().count()));
            }
            Response::ok(value)
        }
        Request::Metrics => {
            refresh_gauges(driver);
            metrics_text(driver, now)
        }
        Request::Bindings => {
            Response::ok(Value::Array(driver.engine.binding_update_list().iter().map(|e| entry_json(e, now)).collect()))
        }
        Request::Resources => {
            Response::ok(Value::Array(driver.engine.installed_resources().map(resource_json).collect()))
        }
        Request::MobileNodes
        | Request::Flows
        | Request::Policies
        | Request::AddPolicy(_)
        | Request::DeletePolicy(_)
        | Request::MoveFlow(_)
        | Request::Revoke(_)
        | Request::Peers
        | Request::MobileNode { .. } => Response::not_served("MAG"),
    }
}

/// Sets the gauges from the engine, before a scrape.
pub fn refresh_gauges(driver: &Driver<Mag>) {
    let list = driver.engine.binding_update_list();
    set_gauge(&driver.metrics.bindings, list.len());
    let nodes: BTreeSet<_> = list.iter().map(|e| &e.key.mn_id).collect();
    set_gauge(&driver.metrics.mobile_nodes, nodes.len());
}

fn kind_text(kind: PbuKind) -> &'static str {
    match kind {
        PbuKind::Registration => "registration",
        PbuKind::Refresh => "refresh",
        PbuKind::Reregistration => "re-registration",
        PbuKind::Deregistration => "de-registration",
    }
}

fn entry_json(e: &BulEntry, now: Now) -> Value {
    let state = match e.state {
        BindingState::Registering => "registering",
        BindingState::Bound => "bound",
        BindingState::Deregistering => "deregistering",
    };
    json!({
        "mn_id": mn_text(&e.key.mn_id),
        "interface": e.key.interface.0,
        "mac": hex_colon(&e.key.mac),
        "state": state,
        "access_technology": u8::from(e.access_technology),
        "multihoming": e.multihoming,
        "home_network_prefixes": e.home_network_prefixes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "other_prefixes": e.other_prefixes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "mn_link_local": e.mn_link_local.to_string(),
        "lifetime_left_secs": e.remaining_lifetime(now).as_secs(),
        "pending": e.pending.map(|p| json!({
            "kind": kind_text(p.kind),
            "sequence": p.sequence,
            "transmissions": p.transmissions,
        })),
    })
}

fn resource_json(r: &Resource) -> Value {
    match r {
        Resource::Tunnel { local, peer } => {
            json!({ "kind": "tunnel", "local": local.to_string(), "peer": peer.to_string() })
        }
        Resource::PrefixToTunnel { prefix, peer } => {
            json!({ "kind": "prefix-to-tunnel", "prefix": prefix.to_string(), "peer": peer.to_string() })
        }
        Resource::PrefixToAccess { prefix, interface, next_hop } => json!({
            "kind": "prefix-to-access",
            "prefix": prefix.to_string(),
            "interface": interface.0,
            "next_hop": next_hop.map(|h| h.to_string()),
        }),
        Resource::SourceRouteToTunnel { prefix, interface, peer } => json!({
            "kind": "source-route-to-tunnel",
            "prefix": prefix.to_string(),
            "interface": interface.0,
            "peer": peer.to_string(),
        }),
        Resource::Ipv4HomeAddressToTunnel { address, peer } => json!({
            "kind": "ipv4-home-address-to-tunnel",
            "address": address.to_string(),
            "peer": peer.to_string(),
        }),
        Resource::Ipv4HomeAddressToAccess { address, interface } => json!({
            "kind": "ipv4-home-address-to-access",
            "address": address.to_string(),
            "interface": interface.0,
        }),
        Resource::Ipv4DefaultRouterOnAccess { address, interface } => json!({
            "kind": "ipv4-default-router-on-access",
            "address": address.to_string(),
            "interface": interface.0,
        }),
        Resource::Ipv4SourceRouteToTunnel { address, interface, peer } => json!({
            "kind": "ipv4-source-route-to-tunnel",
            "address": address.to_string(),
            "interface": interface.0,
            "peer": peer.to_string(),
        }),
        Resource::Steering(s) => json!({ "kind": "steering", "detail": format!("{s:?}") }),
    }
}
