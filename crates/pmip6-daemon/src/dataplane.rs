//! The daemon's data plane: the engine's intents applied to the kernel through
//! `pmip6-dataplane` — tunnels, routes and rules ([`Routing`]), and at the LMA the flow map and
//! its queue ([`FlowMap`], [`Queue`]).
//!
//! The engines promise an order (a steering entry into a tunnel is added after the tunnel and
//! removed before it); [`DataPlane::apply`] keeps it: intents are applied in the order they
//! were drained, and consecutive steering changes go to the kernel as one nftables transaction,
//! so that a move (remove + add of one flow's element) is atomic.
//!
//! A failure to apply one intent is counted and logged and the others still go through: the
//! signalling must not stop because the kernel refused one route.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use pmip6_dataplane::nfqueue::Queue;
use pmip6_dataplane::routing::{Role, Routing, RoutingConfig, TunnelBackend};
use pmip6_dataplane::steering::{FlowMap, SteeringBackend, SteeringConfig};
use pmip6_engine::flow::{Route, SteeringIntent};
use pmip6_engine::{Intent, Resource};
use pmip6_wire::Prefix;
use tokio::io::unix::AsyncFd;

/// How the data plane is set up (the `[dataplane]` table of the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPlaneSettings {
    /// Whether intents are applied to the kernel (else only logged).
    pub enabled: bool,
    /// How tunnels are built.
    pub tunnel: TunnelBackend,
    /// How flows are steered (LMA only).
    pub steering: SteeringBackend,
    /// The first routing table of ours.
    pub table_base: u32,
    /// The first rule priority of ours.
    pub rule_priority: u32,
    /// The route and rule protocol that marks ours.
    pub protocol: u8,
    /// The MTU of tunnel devices (`tun` backend): the transport MTU less the 40-octet outer header
    /// (RFC 2473 §7), so that the kernel itself answers Packet Too Big for inner packets.
    pub tunnel_mtu: u32,
    /// The NFQUEUE number (LMA, `learn` and `nfqueue` steering).
    pub queue: u16,
    /// The nftables table of ours (LMA).
    pub nft_table: String,
}

impl Default for DataPlaneSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            tunnel: TunnelBackend::Auto,
            steering: SteeringBackend::Learn,
            table_base: 0x7000,
            rule_priority: 1000,
            protocol: 0x9d,
            tunnel_mtu: RoutingConfig::DEFAULT_TUNNEL_MTU,
            queue: 0,
            nft_table: "pmip6".to_owned(),
        }
    }
}

/// Why the data plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    /// Tunnels, routes or rules.
    #[error("routing: {0}")]
    Routing(#[from] pmip6_dataplane::routing::RoutingError),
    /// The flow map.
    #[error("flow steering: {0}")]
    Steering(#[from] pmip6_dataplane::steering::SteeringError),
    /// The queue.
    #[error("NFQUEUE {queue}: {source}")]
    Queue {
        /// The queue number.
        queue: u16,
        /// Why.
        source: std::io::Error,
    },
}

/// What [`DataPlane::apply`] counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataPlaneCounters {
    /// Intents applied.
    pub applied: u64,
    /// Intents the kernel refused (logged).
    pub failed: u64,
    /// Steering transactions.
    pub transactions: u64,
}

/// The kernel side of one daemon.
#[derive(Debug)]
pub struct DataPlane {
    routing: Routing,
    flows: Option<FlowMap>,
    queue: Option<AsyncFd<Queue>>,
    /// Counters.
    pub counters: DataPlaneCounters,
}

impl DataPlane {
    /// Opens the data plane of an LMA (with `pools`, its mobile node prefixes, steered) or of a
    /// MAG (`pools` empty, no steering), removing what a previous run left.
    pub async fn open(
        settings: &DataPlaneSettings,
        role: Role,
        local: Ipv6Addr,
        pools: Vec<Prefix>,
    ) -> Result<Self, DataPlaneError> {
        let routing = Routing::open(RoutingConfig {
            role,
            local,
            backend: settings.tunnel,
            table_base: settings.table_base,
            rule_priority: settings.rule_priority,
            protocol: settings.protocol,
            tunnel_mtu: settings.tunnel_mtu,
        })
        .await?;
        let (flows, queue) = if role == Role::Lma {
            let flows = FlowMap::open(SteeringConfig {
                mode: settings.steering,
                table: settings.nft_table.clone(),
                queue: settings.queue,
                mobile_node_prefixes: pools,
            })?;
            let queue = if settings.steering == SteeringBackend::Map {
                None
            } else {
                let mut queue = Queue::open(settings.queue)
                    .map_err(|source| DataPlaneError::Queue { queue: settings.queue, source })?;
                queue.set_nonblocking(true);
                // SAFETY: the queue owns its netlink socket for its whole life and always reports
                // the same descriptor, which stays open until the `AsyncFd` (its owner) is dropped.
                let queue = unsafe { AsyncFd::register_with_interest(queue, tokio::io::Interest::READABLE) }
                    .map_err(|e| DataPlaneError::Queue { queue: settings.queue, source: e.into() })?;
                Some(queue)
            };
            (Some(flows), queue)
        } else {
            (None, None)
        };
        Ok(Self { routing, flows, queue, counters: DataPlaneCounters::default() })
    }

    /// The tunnel backend in use (`auto` resolved).
    pub fn tunnel_backend(&self) -> TunnelBackend {
        self.routing.backend()
    }

    /// The flow queue, when packets of unknown flows (`learn`) or every packet (`nfqueue`)
    /// come to user space.
    pub fn queue(&mut self) -> Option<&mut AsyncFd<Queue>> {
        self.queue.as_mut()
    }

    /// The mark that sends a packet the way of `route` (the verdict of a queued packet).
    pub fn mark_of(&self, route: Route) -> Option<u32> {
        FlowMap::mark_of(route, &|peer| self.routing.mark_for(peer)).ok()
    }

    /// Stops taking packets from the queue (after it failed).
    pub fn drop_queue(&mut self) {
        self.queue = None;
    }

    /// Applies `intents` in order; returns how long it took (the apply-latency metric).
    pub async fn apply(&mut self, intents: Vec<Intent>) -> Duration {
        let start = Instant::now();
        let mut latencies = Vec::new();
        let mut steering: Vec<SteeringIntent> = Vec::new();
        for intent in intents {
            let change = match &intent {
                Intent::Add(Resource::Steering(s)) => Some(SteeringIntent::Add(s.clone())),
                Intent::Remove(Resource::Steering(s)) => Some(SteeringIntent::Remove(s.clone())),
                _ => None,
            };
            if let Some(change) = change {
                steering.push(change);
                continue;
            }
            self.flush_steering(&mut steering, &mut latencies);
            let start = Instant::now();
            match self.routing.apply(&intent).await {
                Ok(()) => {
                    self.counters.applied += 1;
                    tracing::debug!(?intent, elapsed_us = start.elapsed().as_micros() as u64, "applied");
                }
                Err(e) => {
                    self.counters.failed += 1;
                    tracing::warn!(?intent, error = %e, "data-plane intent not applied");
                }
            }
        }
        self.flush_steering(&mut steering, &mut latencies);
        start.elapsed()
    }

    fn flush_steering(&mut self, steering: &mut Vec<SteeringIntent>, latencies: &mut Vec<Duration>) {
        if steering.is_empty() {
            return;
        }
        let changes = std::mem::take(steering);
        let Some(flows) = self.flows.as_mut() else {
            self.counters.failed += changes.len() as u64;
            tracing::warn!(count = changes.len(), "steering intents without a flow map (not an LMA)");
            return;
        };
        let routing = &self.routing;
        match flows.apply(&changes, &|peer| routing.mark_for(peer)) {
            Ok(report) => {
                self.counters.applied += changes.len() as u64;
                self.counters.transactions += 1;
                latencies.push(report.elapsed);
                tracing::debug!(
                    changes = changes.len(),
                    elapsed_us = report.elapsed.as_micros() as u64,
                    "flow map updated"
                );
            }
            Err(e) => {
                self.counters.failed += changes.len() as u64;
                tracing::warn!(count = changes.len(), error = %e, "flow map not updated");
            }
        }
    }

    /// Removes everything the data plane made.
    pub async fn close(self) {
        if let Some(flows) = self.flows
            && let Err(e) = flows.close()
        {
            tracing::warn!(error = %e, "flow map not removed");
        }
        drop(self.queue);
        if let Err(e) = self.routing.close().await {
            tracing::warn!(error = %e, "routes and rules not removed");
        }
    }
}
