//! The LMA's configuration: its address, where home network prefixes come from, who may register
//! whom, how PBUs are ordered, the RFC 5213 §9.3 timers, and the multihoming choices of the
//! draft (MuHo option type, how other MAGs are told about prefix changes, virtual interfaces).
//!
//! Every value has the default the RFCs give where they give one; `LmaConfig::new(lmaa)` builds
//! a configuration with all defaults. Random values (initial sequence numbers) and the RFC 5847
//! Restart Counter are injected here so that the engine stays deterministic.

use core::net::Ipv6Addr;
use core::time::Duration;

use pmip6_wire::{MnIdentifier, ParseConfig, Prefix};

use super::Ipv4HomeNetwork;
use crate::flow::FlowConfig;

/// How the LMA orders Proxy Binding Updates (RFC 5213 §5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageOrdering {
    /// TimestampBasedApproachInUse = 1 (the default, RFC 5213 §9.3): every PBU carries a
    /// Timestamp option within TimestampValidityWindow of the LMA's clock and newer than the last
    /// accepted one.
    #[default]
    Timestamp,
    /// The RFC 6275 sequence-number rule: a PBU's Sequence Number must be newer than the last
    /// accepted one from the same MAG (RFC 5213 §5.5, RFC 6275 §9.5.1).
    SequenceNumber,
}

/// How the LMA tells a mobile node's other MAGs that its prefix set changed (draft §5.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyMode {
    /// RFC 7077 Update Notification, reason UPDATE-SESSION-PARAMETERS, A flag set (default).
    #[default]
    UpdateNotification,
    /// RFC 5846 Binding Revocation Indication (P flag, trigger Unspecified) carrying the same
    /// options, as the draft §5.2.3 suggests; the MAG reads a BRI carrying MuHo options as a
    /// prefix-set update.
    Revocation,
    /// Tell nobody (base RFC 5213 behaviour).
    Off,
}

/// Retransmission of LMA-initiated requests (UPN, BRI): exponential back-off as RFC 6275 §11.8
/// describes for Binding Updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retransmission {
    /// Wait before the first retransmission (1 s, as INITIAL_BINDACK_TIMEOUT).
    pub initial_timeout: Duration,
    /// The wait doubles after each retransmission up to this (32 s, as MAX_BINDACK_TIMEOUT).
    pub max_timeout: Duration,
    /// Retransmissions after the first transmission before giving up (3).
    pub max_retries: u8,
}

impl Default for Retransmission {
    fn default() -> Self {
        Self { initial_timeout: Duration::from_secs(1), max_timeout: Duration::from_secs(32), max_retries: 3 }
    }
}

/// What the LMA knows about one mobile node (its policy profile, RFC 5213 §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MobileNodePolicy {
    /// The MN-Identifier the MAGs send.
    pub mn_id: MnIdentifier,
    /// Whether the mobile node is entitled to network-based mobility; `false` answers 152.
    pub enabled: bool,
    /// The MAGs (Proxy-CoAs) allowed to register this mobile node; `None`: every MAG the
    /// domain authorises. A MAG outside the list gets 154.
    pub authorized_mags: Option<Vec<Ipv6Addr>>,
    /// Prefixes this mobile node may ask for by value (a non-zero HNP in a PBU), besides free
    /// prefixes of the pools when `honour_requested_pool_prefixes` is set.
    pub prefixes: Vec<Prefix>,
}

impl MobileNodePolicy {
    /// An enabled mobile node with no restriction and no own prefixes.
    pub fn new(mn_id: MnIdentifier) -> Self {
        Self { mn_id, enabled: true, authorized_mags: None, prefixes: Vec::new() }
    }
}

/// The configuration of an [`Lma`](super::Lma).
#[derive(Debug, Clone)]
pub struct LmaConfig {
    /// The LMA Address (LMAA): our tunnel end point and the source of LMA-initiated messages.
    pub lmaa: Ipv6Addr,
    /// Pools home network prefixes are allocated from (e.g. `2001:db8:100::/40`).
    pub prefix_pools: Vec<Prefix>,
    /// Length of each allocated prefix (64).
    pub allocated_prefix_len: u8,
    /// RFC 5844: the IPv4 home network home addresses are assigned from, to sessions whose PBU
    /// carries an IPv4 Home Address Request option; `None`: IPv4 home address mobility is not
    /// offered (a request is answered with IPv4 Home Address Reply status 129).
    pub ipv4_home_network: Option<Ipv4HomeNetwork>,
    /// Whether mobile nodes without a [`MobileNodePolicy`] are served (true); if not, they get
    /// 152 PROXY_REG_NOT_ENABLED.
    pub serve_unknown_mobile_nodes: bool,
    /// Per-mobile-node policy.
    pub mobile_nodes: Vec<MobileNodePolicy>,
    /// MAGs (Proxy-CoAs) allowed to send PBUs at all; `None`: any. Others get 154.
    pub authorized_mags: Option<Vec<Ipv6Addr>>,
    /// Whether a non-zero HNP a mobile node asks for is granted when it lies in a pool and is
    /// free (true); otherwise only the prefixes of its policy are.
    pub honour_requested_pool_prefixes: bool,
    /// Timestamp (default) or sequence-number ordering (RFC 5213 §5.5).
    pub ordering: MessageOrdering,
    /// TimestampValidityWindow (300 ms, RFC 5213 §9.3).
    pub timestamp_validity_window: Duration,
    /// The longest lifetime granted (3600 s); a PBU asking for more gets this.
    pub max_lifetime: Duration,
    /// MinDelayBeforeBCEDelete (10 s, RFC 5213 §9.3): how long a de-registered entry is kept.
    pub min_delay_before_bce_delete: Duration,
    /// MaxDelayBeforeNewBCEAssign (1.5 s, RFC 5213 §9.3): how long a PBU with Handoff
    /// Indicator 4 waits for the previous MAG's de-registration.
    pub max_delay_before_new_bce_assign: Duration,
    /// FixedMAGLinkLocalAddressOnAllAccessLinks (RFC 5213 §9.3): when set, every PBA carrying a
    /// Link-local Address option carries this one.
    pub fixed_mag_link_local_address: Option<Ipv6Addr>,
    /// How received messages were parsed: the MuHo option type (18 by default). The driver must
    /// parse with the same value; the PBA's MuHo options are emitted with it.
    pub parse: ParseConfig,
    /// How other MAGs hear of prefix-set changes (RFC 7077 UPN by default).
    pub notify: NotifyMode,
    /// Retransmission of notifications.
    pub notification_retransmission: Retransmission,
    /// Retransmission of LMA-initiated revocations (RFC 5846).
    pub revocation_retransmission: Retransmission,
    /// The draft §5.4 virtual-interface mode: one entry per mobile node with one shared prefix
    /// set and one attachment (Proxy-CoA, tunnel) per physical interface (false). A further
    /// interface's PBU is not taken for a handoff: it joins the entry, gets the same prefixes,
    /// and its tunnel routes them too, so flows can be steered to it; the per-prefix route
    /// stays at the first attachment. The interfaces may share one MAC address (MN-LL-ID):
    /// then a PBU from another MAG with the same ATT is a further interface when its Handoff
    /// Indicator says so (1, or RFC 7864's 6), else a handoff of that interface.
    pub virtual_interface: bool,
    /// HEARTBEAT_INTERVAL (60 s, RFC 5847 §7); `None` disables heartbeats.
    pub heartbeat_interval: Option<Duration>,
    /// MISSING_HEARTBEATS_ALLOWED (3, RFC 5847 §7).
    pub missing_heartbeats_allowed: u32,
    /// Whether a MAG's restart (a changed Restart Counter, RFC 5847 §5.3) removes its sessions
    /// (true).
    pub clean_up_on_peer_restart: bool,
    /// Our Restart Counter (RFC 5847 §5.2): the driver increments it across restarts.
    pub restart_counter: u32,
    /// First Sequence Number of LMA-initiated UPN and BRI messages (inject a random value).
    pub initial_sequence: u16,
    /// First Sequence Number of our heartbeat requests (inject a random value).
    pub initial_heartbeat_sequence: u32,
    /// Minimum interval between two Binding Error messages (RFC 6275 §9.3.3: rate-limited),
    /// 100 ms.
    pub binding_error_interval: Duration,
    /// Flow mobility (draft-bernardos-mif-pmip-02 §4.2, §5.3; RFC 7864): the steering engine's
    /// configuration, or `None` to steer nothing. The default is steering on with no operator
    /// rule, so every flow follows the per-prefix route of RFC 5213 §5.6.2 until rules or moves
    /// say otherwise.
    pub flow: Option<FlowConfig>,
}

impl LmaConfig {
    /// A configuration with every default, serving on `lmaa` with no prefix pool.
    pub fn new(lmaa: Ipv6Addr) -> Self {
        Self {
            lmaa,
            prefix_pools: Vec::new(),
            allocated_prefix_len: 64,
            ipv4_home_network: None,
            serve_unknown_mobile_nodes: true,
            mobile_nodes: Vec::new(),
            authorized_mags: None,
            honour_requested_pool_prefixes: true,
            ordering: MessageOrdering::Timestamp,
            timestamp_validity_window: Duration::from_millis(300),
            max_lifetime: Duration::from_secs(3600),
            min_delay_before_bce_delete: Duration::from_secs(10),
            max_delay_before_new_bce_assign: Duration::from_millis(1500),
            fixed_mag_link_local_address: None,
            parse: ParseConfig::default(),
            notify: NotifyMode::UpdateNotification,
            notification_retransmission: Retransmission::default(),
            revocation_retransmission: Retransmission::default(),
            virtual_interface: false,
            heartbeat_interval: Some(Duration::from_secs(60)),
            missing_heartbeats_allowed: 3,
            clean_up_on_peer_restart: true,
            restart_counter: 0,
            initial_sequence: 0,
            initial_heartbeat_sequence: 0,
            binding_error_interval: Duration::from_millis(100),
            flow: Some(FlowConfig::default()),
        }
    }

    /// What is wrong with this configuration, if anything. [`Lma::new`](super::Lma::new) does
    /// not refuse a bad configuration: it skips the unusable parts and reports each with an
    /// [`LmaEvent::ConfigurationIgnored`](super::LmaEvent::ConfigurationIgnored).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.allocated_prefix_len == 0 || self.allocated_prefix_len > 128 {
            problems.push(format!("allocated prefix length {} is not in 1..=128", self.allocated_prefix_len));
        }
        for pool in &self.prefix_pools {
            if pool.len > self.allocated_prefix_len || pool.len > 128 {
                problems.push(format!(
                    "pool {pool} is longer than the allocated prefix length /{}",
                    self.allocated_prefix_len
                ));
            }
        }
        if let Some(network) = &self.ipv4_home_network {
            problems.extend(network.problems());
        }
        if self.heartbeat_interval.is_some_and(|i| i.is_zero()) {
            problems.push("heartbeat interval is zero".into());
        }
        if self.notification_retransmission.initial_timeout.is_zero()
            || self.revocation_retransmission.initial_timeout.is_zero()
        {
            problems.push("a retransmission timeout is zero".into());
        }
        problems
    }
}
