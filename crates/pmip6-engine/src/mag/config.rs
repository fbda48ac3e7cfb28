//! The MAG's configuration: its addresses, access interfaces, the static table of mobile nodes
//! (draft-bernardos-mif-pmip-02 §5.2.1), registration timers (RFC 5213 §6.9.4, §9; RFC 6275
//! §11.8, §12), heartbeats (RFC 5847) and Router Advertisement contents (RFC 4861 §6.2.1).
//!
//! Every field is public; [`MagConfig::new`] fills the defaults documented on each field. The
//! engine validates nothing that could make it panic: out-of-range values are clamped and
//! reported as [`super::MagEvent::ConfigAdjusted`] when the engine starts.

use core::net::Ipv6Addr;
use core::time::Duration;

use pmip6_wire::nd::DEFAULT_WEAK_HOST_FLAG_BIT;
use pmip6_wire::{AccessTechnologyType, HandoffIndicator, MnIdentifier, ParseConfig};

use crate::common::InterfaceId;

/// RFC 6275 §12: INITIAL_BINDACK_TIMEOUT, the first retransmission timeout of a PBU
/// (RFC 5213 §6.9.4 builds on it).
pub const INITIAL_BINDACK_TIMEOUT: Duration = Duration::from_secs(1);
/// RFC 6275 §12: MAX_BINDACK_TIMEOUT, the cap of the exponential back-off.
pub const MAX_BINDACK_TIMEOUT: Duration = Duration::from_secs(32);
/// RFC 5213 §9 / RFC 6275 §13: InitialBindackTimeoutFirstReg, the optional longer first timeout
/// of an initial registration.
pub const INITIAL_BINDACK_TIMEOUT_FIRST_REG: Duration = Duration::from_millis(1500);
/// RFC 5847 (configuration variables): default HEARTBEAT_INTERVAL.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
/// RFC 5847 (configuration variables): default MISSING_HEARTBEATS_ALLOWED.
pub const MISSING_HEARTBEATS_ALLOWED: u32 = 3;
/// RFC 4861 §6.2.1: default MaxRtrAdvInterval.
pub const MAX_RTR_ADV_INTERVAL: Duration = Duration::from_secs(600);
/// RFC 4861 §10: MAX_INITIAL_RTR_ADVERT_INTERVAL.
pub const MAX_INITIAL_RTR_ADVERT_INTERVAL: Duration = Duration::from_secs(16);
/// RFC 4861 §10: MAX_INITIAL_RTR_ADVERTISEMENTS.
pub const MAX_INITIAL_RTR_ADVERTISEMENTS: u32 = 3;
/// RFC 4861 §4.2: the largest Router Lifetime, 9000 s.
pub const MAX_ROUTER_LIFETIME: Duration = Duration::from_secs(9000);
/// RFC 8200 §5: the smallest link MTU of IPv6.
pub const MIN_IPV6_MTU: u32 = 1280;
/// RFC 2473: the IPv6 header the tunnel adds (tunnel MTU = path MTU − 40).
pub const TUNNEL_OVERHEAD: u32 = 40;

/// Everything the MAG engine needs to know at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MagConfig {
    /// Proxy-CoA: the global address of our interface towards the LMA, the source of every PBU
    /// and our end of the tunnel (RFC 5213 §6.10.1).
    pub proxy_coa: Ipv6Addr,
    /// The LMA address (LMAA) every mobile node of this MAG registers with.
    pub lmaa: Ipv6Addr,
    /// The access links we serve; an RS or attach on any other interface is ignored.
    pub interfaces: Vec<AccessInterface>,
    /// The static table mapping MAC addresses to an MN-ID and a multihoming flag (draft
    /// §5.2.1). A MAC listed twice keeps its first entry.
    pub mobile_nodes: Vec<MobileNodeEntry>,
    /// Serve MACs missing from `mobile_nodes`, with an MN-ID derived from the MAC (NAI
    /// `<12 hex digits>@<unknown_mobile_node_realm>`, multihoming off). Default `false`: an
    /// unknown MAC is not served (RFC 5213 §6.5: the MAG identifies and authorizes the MN first).
    pub serve_unknown_mobile_nodes: bool,
    /// Realm of the NAIs derived for unknown MACs. Default `"unknown.invalid"`.
    pub unknown_mobile_node_realm: String,
    /// How MuHo travels (its option type; default 18, the RFC 5096 experimental option).
    pub parse_config: ParseConfig,
    /// The first PBU Sequence Number (inject a random value, RFC 6275 §11.7.1 style).
    pub initial_sequence: u16,
    /// Our Restart Counter (RFC 5847 §5.2), sent in heartbeat responses: the driver keeps it in
    /// durable storage and increments it at every start.
    pub restart_counter: u32,
    /// Registration, refresh and retransmission.
    pub registration: RegistrationConfig,
    /// Heartbeats with the LMA.
    pub heartbeat: HeartbeatConfig,
    /// Router Advertisement contents and timing.
    pub router_advertisement: RaConfig,
}

impl MagConfig {
    /// A configuration with no interfaces and no mobile nodes, every other field at its
    /// default.
    pub fn new(proxy_coa: Ipv6Addr, lmaa: Ipv6Addr) -> Self {
        Self {
            proxy_coa,
            lmaa,
            interfaces: Vec::new(),
            mobile_nodes: Vec::new(),
            serve_unknown_mobile_nodes: false,
            unknown_mobile_node_realm: "unknown.invalid".into(),
            parse_config: ParseConfig::default(),
            initial_sequence: 0,
            restart_counter: 0,
            registration: RegistrationConfig::default(),
            heartbeat: HeartbeatConfig::default(),
            router_advertisement: RaConfig::default(),
        }
    }
}

/// One access link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessInterface {
    /// The interface index.
    pub id: InterfaceId,
    /// Access Technology Type sent in every PBU for this link (RFC 5213 §8.5).
    pub access_technology: AccessTechnologyType,
    /// Our link-local address on this link: the RA source when the PBA carries no Link-local
    /// Address option (RFC 5213 §6.8, §6.9.1.2).
    pub link_local: Ipv6Addr,
    /// The access link's MTU, in octets. Default in [`AccessInterface::new`]: 1500.
    pub mtu: u32,
    /// Our MAC on this link, advertised in the Source Link-layer Address option of RAs
    /// (RFC 4861 §4.2); `None` leaves the option out.
    pub mac: Option<[u8; 6]>,
    /// Handoff Indicator of the first PBU of an attachment on this link (RFC 5213 §5.4.1,
    /// §8.4): 1 (new interface, the default), or 3 / 4 when the access technology tells
    /// handoffs apart. [`super::Mag::handle_attach_with_handoff`] overrides it per event.
    pub attach_handoff: HandoffIndicator,
}

impl AccessInterface {
    /// An access link with MTU 1500, no advertised MAC and Handoff Indicator 1 on attach.
    pub fn new(id: InterfaceId, access_technology: AccessTechnologyType, link_local: Ipv6Addr) -> Self {
        Self { id, access_technology, link_local, mtu: 1500, mac: None, attach_handoff: HandoffIndicator::NewInterface }
    }
}

/// One mobile node of the static table (draft §5.2.1: "a static configuration file that also
/// maps the MN's set of MAC addresses into a unique MN-ID and provides a Multi-homing request
/// indication").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MobileNodeEntry {
    /// The MN-ID sent in every PBU (RFC 4283; RFC 5213 uses the NAI subtype).
    pub mn_id: MnIdentifier,
    /// The MAC addresses of its interfaces; each becomes the MN-LL-ID of its binding.
    pub macs: Vec<[u8; 6]>,
    /// Whether PBUs carry the empty MuHo option (draft §5.2.1).
    pub multihoming: bool,
    /// Whether PBUs ask for an IPv4 home address (RFC 5844 §3.2: an IPv4 Home Address
    /// Request option).
    pub ipv4: bool,
}

/// Registration lifetimes and retransmission (RFC 5213 §6.9.1, §6.9.4; RFC 6275 §11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrationConfig {
    /// Lifetime requested in every PBU. Default 3600 s (sent in units of 4 s, rounded down).
    pub requested_lifetime: Duration,
    /// When to refresh, as a percentage of the granted lifetime (1..=99, clamped). Default 80.
    pub refresh_percent: u8,
    /// First retransmission timeout. Default INITIAL_BINDACK_TIMEOUT, 1 s.
    pub initial_bindack_timeout: Duration,
    /// First retransmission timeout of an initial registration, if set (RFC 5213 §9
    /// InitialBindackTimeoutFirstReg, 1.5 s when used). Default `None`: use
    /// `initial_bindack_timeout`.
    pub initial_bindack_timeout_first_reg: Option<Duration>,
    /// Cap of the doubling timeout. Default MAX_BINDACK_TIMEOUT, 32 s.
    pub max_bindack_timeout: Duration,
    /// Transmissions of one PBU (the first included) before giving up. Default 5 (at least 1).
    pub max_transmissions: u32,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self {
            requested_lifetime: Duration::from_secs(3600),
            refresh_percent: 80,
            initial_bindack_timeout: INITIAL_BINDACK_TIMEOUT,
            initial_bindack_timeout_first_reg: None,
            max_bindack_timeout: MAX_BINDACK_TIMEOUT,
            max_transmissions: 5,
        }
    }
}

/// Heartbeats (RFC 5847).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatConfig {
    /// Interval between requests while bindings exist; `None` sends none (requests from the
    /// LMA are answered anyway). Default 60 s.
    pub interval: Option<Duration>,
    /// Unanswered requests in a row before the LMA is reported unreachable. Default 3.
    pub missing_allowed: u32,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self { interval: Some(HEARTBEAT_INTERVAL), missing_allowed: MISSING_HEARTBEATS_ALLOWED }
    }
}

/// Router Advertisements to the mobile nodes (RFC 4861 §6.2.1, RFC 5213 §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaConfig {
    /// Interval of unsolicited RAs once the first few are out. Default MaxRtrAdvInterval,
    /// 600 s.
    pub interval: Duration,
    /// RAs sent at the shorter `initial_interval` after each accepted registration (RFC 4861
    /// §6.2.4), the first one at once. Default 3.
    pub initial_count: u32,
    /// Interval of those first RAs (capped at `interval`). Default 16 s.
    pub initial_interval: Duration,
    /// Router Lifetime (AdvDefaultLifetime), capped at 9000 s and at the binding's remaining
    /// lifetime. Default 1800 s (3 × MaxRtrAdvInterval).
    pub router_lifetime: Duration,
    /// Cur Hop Limit (AdvCurHopLimit). Default 64.
    pub cur_hop_limit: u8,
    /// Reachable Time in ms (AdvReachableTime). Default 0 (unspecified).
    pub reachable_time_ms: u32,
    /// Retrans Timer in ms (AdvRetransTimer): the MN's DAD waits this long per probe, so a
    /// short value shortens the time to a usable address. Default 0 (unspecified: the MN's
    /// 1000 ms).
    pub retrans_timer_ms: u32,
    /// MTU of our link towards the LMA; the advertised MTU is the smaller of the access link's
    /// MTU and this minus the tunnel's 40 octets (RFC 2473), at least 1280. `None`
    /// advertises no MTU option. Default 1500.
    pub core_link_mtu: Option<u32>,
    /// Set the weak-host flag (draft §4.1, RFC 5175) in RAs to mobile nodes whose multihoming
    /// flag is on. Default `false`.
    pub weak_host_flag: bool,
    /// Its RA flag bit number (0..=55). Default `nd::DEFAULT_WEAK_HOST_FLAG_BIT` (55).
    pub weak_host_flag_bit: u8,
}

impl Default for RaConfig {
    fn default() -> Self {
        Self {
            interval: MAX_RTR_ADV_INTERVAL,
            initial_count: MAX_INITIAL_RTR_ADVERTISEMENTS,
            initial_interval: MAX_INITIAL_RTR_ADVERT_INTERVAL,
            router_lifetime: Duration::from_secs(1800),
            cur_hop_limit: 64,
            reachable_time_ms: 0,
            retrans_timer_ms: 0,
            core_link_mtu: Some(1500),
            weak_host_flag: false,
            weak_host_flag_bit: DEFAULT_WEAK_HOST_FLAG_BIT,
        }
    }
}
