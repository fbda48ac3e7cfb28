//! The control API end to end: the LMA driver runs with its API on a unix socket in a temporary
//! directory, a MAG's PBU reaches it over a real raw Mobility Header socket on the loopback of
//! a network namespace of the test's own, and the test asks the API over HTTP (the client
//! `pmip6 ctl` uses). Needs root (raw sockets, a network namespace; CI runs as root) and fails
//! loudly otherwise.
//!
//! `a_full_channel_is_answered_503` needs no root: nobody drains the channel.

use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pmip6_daemon::api::client::{Answer, request};
use pmip6_daemon::api::{self, ApiSettings};
use pmip6_daemon::config::LmaFile;
use pmip6_daemon::{MhSocket, start_lma};
use pmip6_engine::mag::{AccessInterface, Mag, MagConfig, MobileNodeEntry};
use pmip6_engine::{InterfaceId, Transmit};
use pmip6_wire::{AccessTechnologyType, Message, MnIdentifier};
use serde_json::Value;

const LOOPBACK: Ipv6Addr = Ipv6Addr::LOCALHOST;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pmip6-api-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {e}", dir.display());
    }
    dir
}

/// The PBU a MAG at `proxy_coa` sends when `mn1` attaches.
fn pbu(proxy_coa: Ipv6Addr, lmaa: Ipv6Addr) -> Message {
    let mut config = MagConfig::new(proxy_coa, lmaa);
    config.interfaces.push(AccessInterface::new(
        InterfaceId(2),
        AccessTechnologyType::Ieee8023,
        "fe80::1".parse().expect("address"),
    ));
    config.mobile_nodes.push(MobileNodeEntry {
        mn_id: MnIdentifier::nai("mn1@example.net"),
        macs: vec![[2, 0, 0, 0, 0, 1]],
        multihoming: false,
        ipv4: false,
    });
    let mut mag = Mag::new(config);
    mag.handle_attach(pmip6_daemon::driver::now(), InterfaceId(2), [2, 0, 0, 0, 0, 1]);
    std::iter::from_fn(|| mag.poll_transmit())
        .find_map(|t| match t {
            Transmit::Mobility { message, .. } => Some(message),
            Transmit::RouterAdvertisement { .. } => None,
        })
        .expect("a PBU on attach")
}

async fn get(socket: &Path, path: &str) -> Answer {
    match request(socket, "GET", path, None).await {
        Ok(answer) => answer,
        Err(e) => panic!("GET {path}: {e}"),
    }
}

async fn post(socket: &Path, path: &str, body: &str) -> Answer {
    match request(socket, "POST", path, Some(body.to_owned())).await {
        Ok(answer) => answer,
        Err(e) => panic!("POST {path}: {e}"),
    }
}

fn json(answer: &Answer) -> Value {
    serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", answer.body))
}

/// Checks the Prometheus text format line by line and returns the samples: name with labels,
/// and value.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    assert!(text.ends_with("# EOF\n"), "no # EOF at the end");
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let word = comment.split(' ').next().unwrap_or("");
            assert!(["HELP", "TYPE", "UNIT", "EOF"].contains(&word), "bad comment line: {line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let name = series.split('{').next().unwrap_or("");
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')), "bad labels: {line}");
        }
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        samples.push((series.to_owned(), value));
    }
    samples
}

fn sample(samples: &[(String, f64)], series: &str) -> Option<f64> {
    samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v)
}

#[test]
fn the_api_shows_a_binding_and_metrics_that_moved() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(root, "this test needs root (raw Mobility Header sockets, a network namespace); CI runs as root");
    let dir = temp_dir("lma");
    let socket_path = dir.join("lma.sock");
    let settings_path = socket_path.clone();
    // The namespace is the thread's own: the test's traffic meets no other test's.
    let thread = std::thread::spawn(move || {
        // SAFETY: unshare on the calling thread only; no other thread shares its namespaces.
        let unshared = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(unshared, 0, "unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
        let up = std::process::Command::new("ip").args(["link", "set", "lo", "up"]).status();
        assert!(matches!(up, Ok(s) if s.success()), "ip link set lo up: {up:?}");
        let config = format!(
            "address = \"::1\"\nprefix_pools = [\"2001:db8:100::/40\"]\n[api]\nsocket = \"{}\"\n",
            settings_path.display()
        );
        let settings = LmaFile::from_toml(&config).and_then(|f| f.validate()).unwrap_or_else(|e| panic!("{e}"));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async move {
            let (mut driver, socket) = start_lma(settings).unwrap_or_else(|e| panic!("LMA: {e}"));
            let mag = MhSocket::bind(LOOPBACK).unwrap_or_else(|e| panic!("MAG socket: {e}"));
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let path = settings_path.clone();
            let client = async move {
                let before = parse_prometheus(&get(&path, "/metrics").await.body);
                assert_eq!(sample(&before, "pmip6_pbu_received_total"), Some(0.0));
                mag.send(&pbu(LOOPBACK, LOOPBACK), LOOPBACK).await.unwrap_or_else(|e| panic!("send: {e}"));
                let deadline = Instant::now() + Duration::from_secs(10);
                let bindings = loop {
                    let answer = get(&path, "/bindings").await;
                    assert_eq!(answer.status, 200, "{}", answer.body);
                    let bindings = json(&answer);
                    if bindings.as_array().is_some_and(|b| !b.is_empty()) || Instant::now() > deadline {
                        break bindings;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                };
                assert_eq!(bindings[0]["mn_id"], "mn1@example.net", "{bindings}");
                assert_eq!(bindings[0]["attachments"][0]["proxy_coa"], "::1", "{bindings}");
                let status = json(&get(&path, "/status").await);
                assert_eq!(status["role"], "lma");
                assert!(status["counters"]["received"].as_u64().is_some_and(|n| n >= 1), "{status}");
                let metrics = get(&path, "/metrics").await;
                assert_eq!(metrics.status, 200);
                let after = parse_prometheus(&metrics.body);
                assert_eq!(sample(&after, "pmip6_pbu_received_total"), Some(1.0), "{}", metrics.body);
                assert_eq!(sample(&after, "pmip6_pba_sent_total{status=\"0\"}"), Some(1.0), "{}", metrics.body);
                assert_eq!(sample(&after, "pmip6_bindings"), Some(1.0), "{}", metrics.body);
                // Errors are JSON with a reason.
                let bad = post(&path, "/policies", "{\"target\": \"wlan\", \"colour\": 1}").await;
                assert_eq!(bad.status, 400, "{}", bad.body);
                assert!(json(&bad)["error"].as_str().is_some_and(|e| e.contains("colour")), "{}", bad.body);
                let not_json = post(&path, "/flows/move", "{").await;
                assert_eq!(not_json.status, 400, "{}", not_json.body);
                let unknown =
                    post(&path, "/flows/move", "{\"mn_id\": \"mn1@example.net\", \"fid\": 9, \"target\": \"wlan\"}")
                        .await;
                assert_eq!(unknown.status, 404, "{}", unknown.body);
                let big = post(&path, "/policies", &" ".repeat(api::MAX_BODY + 1)).await;
                assert_eq!(big.status, 413, "{}", big.body);
                assert_eq!(get(&path, "/nowhere").await.status, 404);
                assert_eq!(get(&path, "/resources").await.status, 404);
                // A revocation goes through the driver and empties the cache.
                let revoked = post(&path, "/bindings/revoke", "{\"mn_id\": \"mn1@example.net\"}").await;
                assert_eq!(revoked.status, 200, "{}", revoked.body);
                let bindings = json(&get(&path, "/bindings").await);
                assert_eq!(bindings.as_array().map(Vec::len), Some(0), "{bindings}");
                let _ = stop.send(());
            };
            let run = driver.run(&socket, &[], async move {
                let _ = stopped.await;
            });
            let (result, ()) = tokio::join!(run, client);
            result.unwrap_or_else(|e| panic!("driver: {e}"));
            assert!(driver.metrics.encode().contains("pmip6_api_moves_total 0"));
            drop(driver);
        });
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
    assert!(!socket_path.exists(), "the socket file outlived the driver");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_full_channel_is_answered_503() {
    let dir = temp_dir("full");
    let path = dir.join("api.sock");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let (sender, receiver) = api::channel();
        let settings = ApiSettings { socket: Some(path.clone()), listen: None };
        let server = api::start(&settings, sender).unwrap_or_else(|e| panic!("{e}"));
        // Nobody answers: the first CHANNEL_BOUND requests wait, the next is refused at once.
        let waiting: Vec<_> = (0..api::CHANNEL_BOUND)
            .map(|_| {
                let path = path.clone();
                tokio::spawn(async move { request(&path, "GET", "/status", None).await })
            })
            .collect();
        // Let them all reach the channel before the one that must be refused.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let refused = loop {
            let answer = get(&path, "/status").await;
            if answer.status == 503 || Instant::now() > deadline {
                break answer;
            }
        };
        assert_eq!(refused.status, 503, "{}", refused.body);
        assert!(json(&refused)["error"].as_str().is_some_and(|e| e.contains("busy")), "{}", refused.body);
        // The daemon going away answers the waiting ones.
        drop(receiver);
        for task in waiting {
            let answer = task.await.expect("task").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(answer.status, 503);
        }
        drop(server);
    });
    assert!(!path.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
