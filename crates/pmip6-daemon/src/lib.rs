//! The Linux daemons of pmip6: the thin driver around the sans-IO engines.
//!
//! This crate owns what the engines leave out: sockets (a raw Mobility Header socket, in
//! [`mh_socket`]; raw ICMPv6 per access link, in [`nd_socket`]), the clock (wall time, read once
//! per wake-up, in [`driver`]), the configuration files ([`config`]), the kernel's link
//! notifications ([`link_monitor`]) and the bridge to the data plane ([`dataplane`], which
//! applies the engines' intents through `pmip6-dataplane`). The protocol itself stays in
//! `pmip6-engine`.
//!
//! - `pmip6 lma --config FILE` runs [`run_lma`]; `pmip6 mag --config FILE` runs [`run_mag`].
//!   With `--pcap FILE`, both record their signalling to FILE ([`tap`]).
//! - Both stop on SIGINT or SIGTERM, removing every kernel object they made; a MAG first
//!   de-registers its sessions.
//! - With an `[api]` table, both serve the control API ([`api`]) on a unix socket (and
//!   optionally loopback TCP), with Prometheus metrics ([`metrics`]); `pmip6 ctl` is its client.
//! - With an `[mn_api]` table, the LMA serves its mobile nodes' own flow rules on TCP
//!   ([`api::mn_channel`]); `pmip6 mn` is its client.
//! - Unless `[dataplane] enabled = false`, intents are applied to the kernel at once.

pub mod api;
pub mod config;
pub mod dataplane;
pub mod driver;
pub mod link_monitor;
pub mod metrics;
pub mod mh_socket;
pub mod nd_socket;
pub mod restart;
pub mod tap;

use std::path::Path;

use pmip6_engine::lma::Lma;
use pmip6_engine::mag::Mag;

pub use dataplane::DataPlane;
pub use driver::{Counters, Driver, Engine};
pub use link_monitor::LinkMonitor;
pub use mh_socket::MhSocket;
pub use nd_socket::NdSocket;
use pmip6_dataplane::routing::Role;

/// A value for the engines' injected randomness (initial sequence numbers), from the clock and
/// the process id; good enough to differ across restarts.
pub fn seed() -> u64 {
    let nanos = driver::now().as_nanos();
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
    mixed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, fields included (`mn_id`, `peer`, ...).
    Json,
}

/// Logs to standard error, at the level `RUST_LOG` names (info by default). Calling it twice
/// is harmless.
pub fn init_logging() {
    init_logging_as(LogFormat::Text);
}

/// Logs to standard error in `format`, at the level `RUST_LOG` names (info by default). The
/// first call decides; later ones are harmless.
pub fn init_logging_as(format: LogFormat) {
    let level =
        std::env::var("RUST_LOG").ok().and_then(|l| l.parse::<tracing::Level>().ok()).unwrap_or(tracing::Level::INFO);
    let builder = tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr);
    let _already_set = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The next Restart Counter from `file`, logged; an error names the file.
fn restart_counter(file: &Path) -> std::io::Result<u32> {
    let counter = restart::next_restart_counter(file)
        .map_err(|e| std::io::Error::new(e.kind(), format!("restart counter {}: {e}", file.display())))?;
    tracing::info!(restart_counter = counter, file = %file.display(), "restart counter");
    Ok(counter)
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (systemd's stop).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::error!(error = %e, "cannot wait for SIGTERM; stopping");
            return;
        }
    };
    tokio::select! {
        result = tokio::signal::ctrl_c() => {
            if let Err(e) = result {
                tracing::error!(error = %e, "cannot wait for Ctrl-C; stopping");
            }
        }
        _ = term.recv() => tracing::info!("SIGTERM"),
    }
}

/// An error of a daemon at start or while running.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is not valid.
    #[error("configuration")]
    Config(#[from] config::ConfigError),
    /// A socket or the runtime failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The data plane could not start.
    #[error("data plane")]
    DataPlane(#[from] dataplane::DataPlaneError),
}

/// Opens the pcap tap at `path`, if given, naming the file in the error.
fn open_tap(path: Option<&Path>) -> std::io::Result<Option<tap::Tap>> {
    let Some(path) = path else { return Ok(None) };
    let tap = tap::Tap::create(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("pcap tap {}: {e}", path.display())))?;
    tracing::info!(path = %path.display(), "recording signalling");
    Ok(Some(tap))
}

/// Runs the LMA daemon with the configuration at `path` until Ctrl-C, recording its signalling
/// to the pcap file `pcap` if given ([`tap`]).
pub fn run_lma(path: &Path, pcap: Option<&Path>) -> Result<(), DaemonError> {
    init_logging();
    let mut settings = config::load_lma(path)?;
    let tap = open_tap(pcap)?;
    // RFC 5847 §5.2: a new Restart Counter at every start, stored before anything is sent.
    settings.engine.restart_counter = restart_counter(&settings.restart_counter_file)?;
    let seed = seed();
    settings.engine.initial_sequence = seed as u16;
    settings.engine.initial_heartbeat_sequence = (seed >> 16) as u32;
    let rt = runtime()?;
    rt.block_on(async {
        let dataplane = settings.dataplane.clone();
        let pools = settings.engine.prefix_pools.clone();
        let (mut driver, socket) = start_lma(settings)?;
        if let Some(tap) = tap {
            driver.attach_tap(tap);
        }
        if dataplane.enabled {
            let local = driver.local;
            let opened = DataPlane::open(&dataplane, Role::Lma, local, pools).await?;
            tracing::info!(backend = ?opened.tunnel_backend(), steering = ?dataplane.steering, "data plane ready");
            driver.attach_dataplane(opened);
        }
        let result = driver.run(&socket, &[], shutdown_signal()).await;
        driver.close_dataplane().await;
        driver.close_tap();
        tracing::info!(counters = ?driver.counters, "LMA stopped");
        Ok(result?)
    })
}

/// Runs the MAG daemon with the configuration at `path` until Ctrl-C, recording its signalling
/// (Router Solicitations and Advertisements included) to the pcap file `pcap` if given
/// ([`tap`]).
pub fn run_mag(path: &Path, pcap: Option<&Path>) -> Result<(), DaemonError> {
    init_logging();
    let mut settings = config::load_mag(path)?;
    let tap = open_tap(pcap)?;
    // RFC 5847 §5.2: a new Restart Counter at every start, stored before anything is sent.
    settings.engine.restart_counter = restart_counter(&settings.restart_counter_file)?;
    let rt = runtime()?;
    rt.block_on(async {
        let dataplane = settings.dataplane.clone();
        let (mut driver, socket, access) = start_mag(settings)?;
        if let Some(tap) = tap {
            driver.attach_tap(tap);
        }
        if dataplane.enabled {
            let local = driver.local;
            let opened = DataPlane::open(&dataplane, Role::Mag, local, Vec::new()).await?;
            tracing::info!(backend = ?opened.tunnel_backend(), "data plane ready");
            driver.attach_dataplane(opened);
        }
        // RFC 5213 §6.9.1.4: a mobile node leaving its access link is detected by the link's
        // carrier going down.
        driver.attach_link_monitor(LinkMonitor::open()?);
        let result = driver.run(&socket, &access, shutdown_signal()).await;
        // Leaving service: the LMA hears of it now rather than when the lifetimes run out.
        driver.engine.deregister_all(driver::now());
        driver.flush(&socket, &access).await;
        driver.close_dataplane().await;
        driver.close_tap();
        tracing::info!(counters = ?driver.counters, "MAG stopped");
        Ok(result?)
    })
}

/// Opens the MAG's Mobility Header socket and its access-link sockets and builds its driver,
/// with the start-up attachments of `attach_static_at_start` already fed to the engine. Must be
/// called inside a tokio runtime.
pub fn start_mag(mut settings: config::MagSettings) -> std::io::Result<(Driver<Mag>, MhSocket, Vec<NdSocket>)> {
    settings.engine.initial_sequence = seed() as u16;
    let proxy_coa = settings.engine.proxy_coa;
    let parse = settings.engine.parse_config;
    let socket = MhSocket::bind(proxy_coa)?;
    let mut access = Vec::new();
    for (name, interface, link_local) in &settings.access_links {
        let nd = NdSocket::open(name, *interface, *link_local)
            .map_err(|e| std::io::Error::new(e.kind(), format!("access interface {name} ({link_local}): {e}")))?;
        access.push(nd);
    }
    tracing::info!(%proxy_coa, lmaa = %settings.engine.lmaa, "MAG listening");
    let mut mag = Mag::new(settings.engine);
    let now = driver::now();
    for (interface, mac) in settings.attach_at_start {
        mag.handle_attach(now, interface, mac);
    }
    let mut driver = Driver::new(mag, parse, proxy_coa, settings.status_file);
    start_api(&mut driver, settings.api.as_ref())?;
    Ok((driver, socket, access))
}

/// Starts the control API of `settings` (if any) and attaches it to `driver`.
fn start_api<E: Engine>(driver: &mut Driver<E>, settings: Option<&api::ApiSettings>) -> std::io::Result<()> {
    if let Some(settings) = settings {
        let (sender, receiver) = api::channel();
        let server = api::start(settings, sender)?;
        driver.attach_api(receiver, Some(server));
    }
    Ok(())
}

/// Opens the LMA's socket, builds its driver and starts its control API (with an `[api]`
/// table) and its MN channel (with an `[mn_api]` table). Must be called inside a tokio runtime.
pub fn start_lma(settings: config::LmaSettings) -> std::io::Result<(Driver<Lma>, MhSocket)> {
    let lmaa = settings.engine.lmaa;
    let parse = settings.engine.parse;
    let socket = MhSocket::bind(lmaa)?;
    tracing::info!(%lmaa, "LMA listening");
    let mut driver = Driver::new(Lma::new(settings.engine), parse, lmaa, settings.status_file);
    match &settings.mn_api {
        None => start_api(&mut driver, settings.api.as_ref())?,
        Some(mn_api) => {
            // The MN channel shares the control API's way to the driver; without an `[api]`
            // table the control API itself stays closed.
            let (sender, receiver) = api::channel();
            let none = api::ApiSettings { socket: None, listen: None };
            let mut server = api::start(settings.api.as_ref().unwrap_or(&none), sender.clone())?;
            server.set_mn_channel(api::mn_channel::start(mn_api, sender)?);
            driver.attach_api(receiver, Some(server));
        }
    }
    Ok((driver, socket))
}
