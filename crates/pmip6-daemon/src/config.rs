//! The daemons' TOML configuration files, checked at start.
//!
//! Every table refuses unknown keys, and every error names the key it is about, so a typo or a
//! bad value stops the daemon before it opens a socket. Values the RFCs give a default for
//! (RFC 5213 §9.3 timers, RFC 5847 heartbeats) may be left out.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pmip6_engine::InterfaceId;
use pmip6_engine::lma::{Ipv4HomeNetwork, LmaConfig, NotifyMode};
use pmip6_engine::mag::{AccessInterface, MagConfig, MobileNodeEntry};
use pmip6_wire::{AccessTechnologyType, MnIdentifier, ParseConfig, Prefix};
use serde::Deserialize;

use crate::api::ApiSettings;
use crate::api::mn_channel::MnChannelSettings;
use crate::dataplane::DataPlaneSettings;
use pmip6_dataplane::routing::TunnelBackend;
use pmip6_dataplane::steering::SteeringBackend;
use pmip6_engine::flow::SteeringMode;

/// A configuration that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML of the expected shape (unknown key, wrong type, missing key).
    #[error("{0}")]
    Syntax(String),
    /// A value is not valid; `key` names it.
    #[error("`{key}`: {problem}")]
    Invalid {
        /// The key, as written in the file (`interfaces[0].name`).
        key: String,
        /// What is wrong.
        problem: String,
    },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), problem: problem.into() }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })
}

fn parse_prefix(key: &str, text: &str) -> Result<Prefix, ConfigError> {
    let (addr, len) = text.split_once('/').ok_or_else(|| invalid(key, format!("`{text}` is not ADDRESS/LENGTH")))?;
    let addr: Ipv6Addr = addr.parse().map_err(|_| invalid(key, format!("`{addr}` is not an IPv6 address")))?;
    let len: u8 = len.parse().map_err(|_| invalid(key, format!("`{len}` is not a prefix length")))?;
    if len > 128 {
        return Err(invalid(key, format!("prefix length {len} is over 128")));
    }
    Ok(Prefix::new(addr, len))
}

/// The first `len` bits of `addr`.
fn prefix_bits(addr: Ipv6Addr, len: u8) -> u128 {
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len.min(128))) };
    u128::from(addr) & mask
}

fn parse_mac(key: &str, text: &str) -> Result<[u8; 6], ConfigError> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for octet in &mut mac {
        let part = parts.next().ok_or_else(|| invalid(key, format!("`{text}` is not a MAC address")))?;
        *octet = u8::from_str_radix(part, 16).map_err(|_| invalid(key, format!("`{text}` is not a MAC address")))?;
    }
    if parts.next().is_some() {
        return Err(invalid(key, format!("`{text}` is not a MAC address")));
    }
    Ok(mac)
}

fn parse_config(key: &str, muho_option_type: u8) -> Result<ParseConfig, ConfigError> {
    ParseConfig::with_muho_option_type(muho_option_type)
        .ok_or_else(|| invalid(key, format!("{muho_option_type} is an assigned option type; use 18 or 71-255")))
}

fn default_muho() -> u8 {
    ParseConfig::DEFAULT_MUHO_OPTION_TYPE
}

// ---- control API ----------------------------------------------------------------------------

/// The `[api]` table: where the control API listens.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiFile {
    /// The unix socket (`/run/pmip6/lma.sock` or `/run/pmip6/mag.sock` when left out).
    pub socket: Option<PathBuf>,
    /// A TCP address too, loopback only (`127.0.0.1:9100`): the API has no authentication.
    pub listen: Option<String>,
}

/// The LMA's control socket when `[api]` names none.
pub const LMA_SOCKET: &str = "/run/pmip6/lma.sock";
/// The MAG's control socket when `[api]` names none.
pub const MAG_SOCKET: &str = "/run/pmip6/mag.sock";

/// The longest unix socket path the kernel takes (`sun_path` less its NUL).
const SOCKET_PATH_MAX: usize = 107;

impl ApiFile {
    /// Checks the table; `default_socket` is the role's socket.
    pub fn validate(&self, default_socket: &str) -> Result<ApiSettings, ConfigError> {
        let socket = self.socket.clone().unwrap_or_else(|| PathBuf::from(default_socket));
        if socket.as_os_str().is_empty() {
            return Err(invalid("api.socket", "empty"));
        }
        if socket.as_os_str().len() > SOCKET_PATH_MAX {
            return Err(invalid("api.socket", format!("longer than {SOCKET_PATH_MAX} octets")));
        }
        let listen = match &self.listen {
            None => None,
            Some(text) => {
                let addr: SocketAddr =
                    text.parse().map_err(|_| invalid("api.listen", format!("`{text}` is not ADDRESS:PORT")))?;
                if !addr.ip().is_loopback() {
                    return Err(invalid("api.listen", "not a loopback address (the API has no authentication)"));
                }
                Some(addr)
            }
        };
        Ok(ApiSettings { socket: Some(socket), listen })
    }
}

/// The `[mn_api]` table (LMA): the MN channel, where mobile nodes submit their own flow rules
/// (draft §4.4; [`crate::api::mn_channel`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MnApiFile {
    /// The TCP address, `[LMAA]:8464`: mobile nodes reach it through their MAG's tunnel.
    pub listen: Option<String>,
    /// Requests per second one source address may make (10); the burst is twice that.
    #[serde(default = "default_mn_rate")]
    pub requests_per_second: u32,
    /// Rules one mobile node may have (the engine's default, 32, when left out).
    pub max_rules: Option<usize>,
}

fn default_mn_rate() -> u32 {
    10
}

/// Rules per mobile node the configuration may allow at most.
pub const MN_RULES_MAX: usize = 1024;

impl MnApiFile {
    /// Checks the table.
    pub fn validate(&self) -> Result<MnChannelSettings, ConfigError> {
        let text = self.listen.as_deref().ok_or_else(|| invalid("mn_api.listen", "missing"))?;
        let listen: SocketAddr =
            text.parse().map_err(|_| invalid("mn_api.listen", format!("`{text}` is not [ADDRESS]:PORT")))?;
        // The channel authenticates by home network prefix, which is IPv6 (RFC 5213 §2.2).
        if !listen.is_ipv6() {
            return Err(invalid(
                "mn_api.listen",
                "not an IPv6 address: mobile nodes reach the LMA from their IPv6 prefixes",
            ));
        }
        if self.requests_per_second == 0 || self.requests_per_second > 10_000 {
            return Err(invalid("mn_api.requests_per_second", "must be 1..=10000"));
        }
        if let Some(max) = self.max_rules
            && (max == 0 || max > MN_RULES_MAX)
        {
            return Err(invalid("mn_api.max_rules", format!("must be 1..={MN_RULES_MAX}")));
        }
        Ok(MnChannelSettings { listen, requests_per_second: self.requests_per_second })
    }
}

// ---- data plane -----------------------------------------------------------------------------

/// The `[dataplane]` table: how intents reach the kernel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataPlaneFile {
    /// Whether intents are applied to the kernel (true) or only logged (false).
    pub enabled: bool,
    /// `auto` (ip6tnl where the kernel has it, else seg6, else tun), `ip6tnl`, `seg6` or `tun`.
    pub tunnel: String,
    /// LMA only: `learn` (default), `map` or `nfqueue` (DESIGN.md, "Data plane on Linux").
    pub steering: Option<String>,
    /// The first routing table of ours (0x7000).
    pub table_base: u32,
    /// The first rule priority of ours (1000).
    pub rule_priority: u32,
    /// The protocol number that tags our routes and rules (157).
    pub protocol: u8,
    /// The MTU of tunnel devices (1460: a 1500-octet transport less the outer header).
    pub tunnel_mtu: u32,
    /// LMA only: the NFQUEUE number (0).
    pub queue: Option<u16>,
    /// LMA only: the nftables table of ours (`pmip6`).
    pub nft_table: Option<String>,
}

impl Default for DataPlaneFile {
    fn default() -> Self {
        let d = DataPlaneSettings::default();
        Self {
            enabled: d.enabled,
            tunnel: "auto".to_owned(),
            steering: None,
            table_base: d.table_base,
            rule_priority: d.rule_priority,
            protocol: d.protocol,
            tunnel_mtu: d.tunnel_mtu,
            queue: None,
            nft_table: None,
        }
    }
}

/// RFC 5844 IPv4 home addresses are forwarded IPv4-in-IPv6 by the `tun` backend only (`auto`
/// picks it on kernels without ip6tnl; where it picks another, the IPv4 intents fail by name).
fn ipv4_needs_tun(dataplane: &DataPlaneSettings) -> Result<(), ConfigError> {
    match dataplane.tunnel {
        TunnelBackend::Seg6 | TunnelBackend::Ip6tnl => {
            Err(invalid("dataplane.tunnel", "IPv4 home addresses need the tun (or auto) backend"))
        }
        _ => Ok(()),
    }
}

impl DataPlaneFile {
    /// Checks the table; `lma` allows the LMA-only keys.
    pub fn validate(&self, lma: bool) -> Result<DataPlaneSettings, ConfigError> {
        let mut d = DataPlaneSettings { enabled: self.enabled, ..DataPlaneSettings::default() };
        d.tunnel = match self.tunnel.as_str() {
            "auto" => TunnelBackend::Auto,
            "tun" => TunnelBackend::Tun,
            "seg6" => TunnelBackend::Seg6,
            "ip6tnl" => TunnelBackend::Ip6tnl,
            other => return Err(invalid("dataplane.tunnel", format!("`{other}`: use auto, tun, seg6 or ip6tnl"))),
        };
        if !lma && (self.steering.is_some() || self.queue.is_some() || self.nft_table.is_some()) {
            return Err(invalid("dataplane", "steering, queue and nft_table are LMA keys"));
        }
        d.steering = match self.steering.as_deref().unwrap_or("learn") {
            "learn" => SteeringBackend::Learn,
            "map" => SteeringBackend::Map,
            "nfqueue" => SteeringBackend::NfQueue,
            other => return Err(invalid("dataplane.steering", format!("`{other}`: use learn, map or nfqueue"))),
        };
        if self.table_base < 256 || self.table_base > u32::MAX - 0x2000 {
            return Err(invalid("dataplane.table_base", "must be at least 256 (253-255 are the system's)"));
        }
        d.table_base = self.table_base;
        if self.rule_priority < 2 || self.rule_priority > 32000 {
            return Err(invalid("dataplane.rule_priority", "must be 2..=32000 (before the main table's rule)"));
        }
        d.rule_priority = self.rule_priority;
        if self.protocol <= 4 {
            return Err(invalid("dataplane.protocol", "0-4 are the kernel's and the system's"));
        }
        d.protocol = self.protocol;
        if !(1280..=65495).contains(&self.tunnel_mtu) {
            return Err(invalid("dataplane.tunnel_mtu", "must be 1280..=65495 (RFC 8200 §5 minimum MTU)"));
        }
        d.tunnel_mtu = self.tunnel_mtu;
        d.queue = self.queue.unwrap_or(0);
        if let Some(table) = &self.nft_table {
            if table.is_empty() || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(invalid("dataplane.nft_table", format!("`{table}`: letters, digits and _ only")));
            }
            d.nft_table = table.clone();
        }
        Ok(d)
    }
}

// ---- LMA ------------------------------------------------------------------------------------

/// How the LMA tells other MAGs of a prefix-set change, as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyKey {
    /// RFC 7077 Update Notification (default).
    #[default]
    UpdateNotification,
    /// RFC 5846 Binding Revocation Indication.
    Revocation,
    /// Nobody is told.
    Off,
}

/// How a mobile node's interfaces get their prefixes, as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrefixModeKey {
    /// One session and one prefix set per interface (RFC 5213; the draft's first
    /// configuration, default).
    #[default]
    Unique,
    /// The draft §5.4 virtual interface: one entry per mobile node, one prefix set shared by
    /// all its interfaces, one Proxy-CoA and tunnel per interface; a further interface is not
    /// taken for a handoff.
    Shared,
}

/// The RFC 5213 §9.3 and RFC 5847 timers of the LMA, each with its RFC default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LmaTimers {
    /// The longest lifetime granted, in seconds (3600).
    pub max_lifetime_secs: u64,
    /// MinDelayBeforeBCEDelete in milliseconds (10000).
    pub min_delay_before_bce_delete_ms: u64,
    /// MaxDelayBeforeNewBCEAssign in milliseconds (1500).
    pub max_delay_before_new_bce_assign_ms: u64,
    /// TimestampValidityWindow in milliseconds (300).
    pub timestamp_validity_window_ms: u64,
    /// HEARTBEAT_INTERVAL in seconds (60); 0 turns heartbeats off.
    pub heartbeat_interval_secs: u64,
}

impl Default for LmaTimers {
    fn default() -> Self {
        Self {
            max_lifetime_secs: 3600,
            min_delay_before_bce_delete_ms: 10_000,
            max_delay_before_new_bce_assign_ms: 1500,
            timestamp_validity_window_ms: 300,
            heartbeat_interval_secs: 60,
        }
    }
}

/// The LMA daemon's file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmaFile {
    /// The LMA Address: the socket is bound to it.
    pub address: Option<String>,
    /// Pools of home network prefixes, `ADDRESS/LENGTH`.
    #[serde(default)]
    pub prefix_pools: Vec<String>,
    /// Length of each allocated prefix (64).
    #[serde(default = "default_prefix_len")]
    pub allocated_prefix_len: u8,
    /// RFC 5844 IPv4 home addresses; none are offered without this table.
    pub ipv4_home_network: Option<Ipv4HomeNetworkFile>,
    /// How other MAGs hear of prefix-set changes.
    #[serde(default)]
    pub notify: NotifyKey,
    /// The MuHo option type (18, or 71-255).
    #[serde(default = "default_muho")]
    pub muho_option_type: u8,
    /// `unique` (default) or `shared` (the draft §5.4 virtual interface).
    #[serde(default)]
    pub prefix_mode: PrefixModeKey,
    /// The MAGs (Proxy-CoAs) allowed to send PBUs; left out, any MAG may. Others are answered
    /// 154 (RFC 5213 §5.3.1, NOT_AUTHORIZED_FOR_PROXY_REG).
    pub authorized_mags: Option<Vec<String>>,
    /// Timers.
    #[serde(default)]
    pub timers: LmaTimers,
    /// A file the daemon rewrites with its binding count and prefixes after each change.
    pub status_file: Option<PathBuf>,
    /// Where durable state lives: the RFC 5847 Restart Counter (`/var/lib/pmip6`).
    pub state_dir: Option<PathBuf>,
    /// The control API; none without this table.
    pub api: Option<ApiFile>,
    /// The MN channel; none without this table.
    pub mn_api: Option<MnApiFile>,
    /// The data plane (applied to the kernel unless `enabled = false`).
    #[serde(default)]
    pub dataplane: DataPlaneFile,
}

fn default_prefix_len() -> u8 {
    64
}

/// The LMA's IPv4 home network (RFC 5844): mobile nodes whose MAG asks get a home address from
/// it. Forwarded by the `tun` data-plane backend only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ipv4HomeNetworkFile {
    /// `ADDRESS/LENGTH`, e.g. `10.64.0.0/24` (/8 to /30).
    pub network: String,
    /// The mobile nodes' default router, within the network, e.g. `10.64.0.1`; every MAG
    /// presents it on its access links.
    pub default_router: String,
}

impl Ipv4HomeNetworkFile {
    fn validate(&self) -> Result<Ipv4HomeNetwork, ConfigError> {
        let key = "ipv4_home_network.network";
        let (addr, len) = self.network.split_once('/').ok_or_else(|| invalid(key, "expected ADDRESS/LENGTH"))?;
        let network: Ipv4Addr = addr.parse().map_err(|_| invalid(key, format!("`{addr}` is not an IPv4 address")))?;
        let prefix_len: u8 = len.parse().map_err(|_| invalid(key, format!("`{len}` is not a prefix length")))?;
        let router = &self.default_router;
        let default_router: Ipv4Addr = router
            .parse()
            .map_err(|_| invalid("ipv4_home_network.default_router", format!("`{router}` is not an IPv4 address")))?;
        let home = Ipv4HomeNetwork { network, prefix_len, default_router };
        if let Some(problem) = home.problems().into_iter().next() {
            return Err(invalid("ipv4_home_network", problem));
        }
        Ok(home)
    }
}

/// A checked LMA configuration.
#[derive(Debug, Clone)]
pub struct LmaSettings {
    /// The engine's configuration.
    pub engine: LmaConfig,
    /// Where to write the status, if anywhere.
    pub status_file: Option<PathBuf>,
    /// The file of the durable RFC 5847 Restart Counter.
    pub restart_counter_file: PathBuf,
    /// The control API, if any.
    pub api: Option<ApiSettings>,
    /// The MN channel, if any.
    pub mn_api: Option<MnChannelSettings>,
    /// The data plane.
    pub dataplane: DataPlaneSettings,
}

impl LmaFile {
    /// Parses the TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))
    }

    /// Checks every value and builds the engine configuration.
    pub fn validate(&self) -> Result<LmaSettings, ConfigError> {
        let address = self.address.as_deref().ok_or_else(|| invalid("address", "missing"))?;
        let lmaa: Ipv6Addr =
            address.parse().map_err(|_| invalid("address", format!("`{address}` is not an IPv6 address")))?;
        let mut engine = LmaConfig::new(lmaa);
        if self.allocated_prefix_len == 0 || self.allocated_prefix_len > 128 {
            return Err(invalid("allocated_prefix_len", "must be 1..=128"));
        }
        engine.allocated_prefix_len = self.allocated_prefix_len;
        for (i, text) in self.prefix_pools.iter().enumerate() {
            let key = format!("prefix_pools[{i}]");
            let pool = parse_prefix(&key, text)?;
            if pool.len > self.allocated_prefix_len {
                return Err(invalid(key, format!("/{} is longer than allocated_prefix_len", pool.len)));
            }
            engine.prefix_pools.push(pool);
        }
        if engine.prefix_pools.is_empty() {
            return Err(invalid("prefix_pools", "at least one pool is needed"));
        }
        engine.ipv4_home_network = self.ipv4_home_network.as_ref().map(Ipv4HomeNetworkFile::validate).transpose()?;
        // Two pools that overlap would hand one prefix to two mobile nodes.
        for (i, a) in engine.prefix_pools.iter().enumerate() {
            for (j, b) in engine.prefix_pools.iter().enumerate().skip(i + 1) {
                let shorter = a.len.min(b.len);
                if prefix_bits(a.addr, shorter) == prefix_bits(b.addr, shorter) {
                    return Err(invalid(format!("prefix_pools[{j}]"), format!("overlaps prefix_pools[{i}] ({a})")));
                }
            }
        }
        if let Some(mags) = &self.authorized_mags {
            let mut list = Vec::new();
            for (i, text) in mags.iter().enumerate() {
                let addr: Ipv6Addr = text.parse().map_err(|_| {
                    invalid(format!("authorized_mags[{i}]"), format!("`{text}` is not an IPv6 address"))
                })?;
                list.push(addr);
            }
            engine.authorized_mags = Some(list);
        }
        engine.notify = match self.notify {
            NotifyKey::UpdateNotification => NotifyMode::UpdateNotification,
            NotifyKey::Revocation => NotifyMode::Revocation,
            NotifyKey::Off => NotifyMode::Off,
        };
        engine.parse = parse_config("muho_option_type", self.muho_option_type)?;
        engine.virtual_interface = self.prefix_mode == PrefixModeKey::Shared;
        let t = &self.timers;
        if t.max_lifetime_secs == 0 {
            return Err(invalid("timers.max_lifetime_secs", "must not be 0"));
        }
        engine.max_lifetime = Duration::from_secs(t.max_lifetime_secs);
        engine.min_delay_before_bce_delete = Duration::from_millis(t.min_delay_before_bce_delete_ms);
        engine.max_delay_before_new_bce_assign = Duration::from_millis(t.max_delay_before_new_bce_assign_ms);
        engine.timestamp_validity_window = Duration::from_millis(t.timestamp_validity_window_ms);
        engine.heartbeat_interval =
            (t.heartbeat_interval_secs > 0).then(|| Duration::from_secs(t.heartbeat_interval_secs));
        let api = self.api.as_ref().map(|a| a.validate(LMA_SOCKET)).transpose()?;
        let mn_api = self.mn_api.as_ref().map(MnApiFile::validate).transpose()?;
        if let Some(max) = self.mn_api.as_ref().and_then(|m| m.max_rules)
            && let Some(flow) = engine.flow.as_mut()
        {
            flow.mn_rules.max_rules = max;
        }
        let dataplane = self.dataplane.validate(true)?;
        if engine.ipv4_home_network.is_some() {
            ipv4_needs_tun(&dataplane)?;
        }
        // `map` steering compiles policies into selector elements; the others key by flow.
        if let Some(flow) = engine.flow.as_mut() {
            flow.mode = match dataplane.steering {
                SteeringBackend::Map => SteeringMode::PerSelector,
                SteeringBackend::Learn | SteeringBackend::NfQueue => SteeringMode::PerFlow,
            };
        }
        let restart_counter_file = restart_counter_file(self.state_dir.as_ref(), "lma")?;
        Ok(LmaSettings { engine, status_file: self.status_file.clone(), restart_counter_file, api, mn_api, dataplane })
    }
}

/// Reads and checks an LMA configuration file.
pub fn load_lma(path: &Path) -> Result<LmaSettings, ConfigError> {
    LmaFile::from_toml(&read(path)?)?.validate()
}

// ---- MAG ------------------------------------------------------------------------------------

/// One access interface of the MAG, by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceFile {
    /// The kernel's interface name.
    pub name: String,
    /// The Access Technology Type (RFC 5213 §8.5), a number (3: IEEE 802.3).
    pub access_technology: u8,
    /// Our link-local address on the link.
    pub link_local: String,
}

/// One mobile node of the static table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MobileNodeFile {
    /// The MN-Identifier, an NAI.
    pub mn_id: String,
    /// Its MAC addresses, `aa:bb:cc:dd:ee:ff`.
    pub macs: Vec<String>,
    /// Whether PBUs carry the MuHo request.
    #[serde(default)]
    pub multihoming: bool,
    /// Whether PBUs ask for an IPv4 home address (RFC 5844; the LMA needs an
    /// `ipv4_home_network`, and both data planes the `tun` backend).
    #[serde(default)]
    pub ipv4: bool,
    /// The access interface the node is on when `attach_static_at_start` attaches it (the
    /// first interface if absent).
    pub interface: Option<String>,
}

/// The MAG daemon's file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MagFile {
    /// The Proxy-CoA: the socket is bound to it.
    pub proxy_coa: Option<String>,
    /// The LMA address.
    pub lma_address: Option<String>,
    /// The MuHo option type (18, or 71-255).
    #[serde(default = "default_muho")]
    pub muho_option_type: u8,
    /// Timers.
    #[serde(default)]
    pub timers: MagTimers,
    /// Access interfaces.
    #[serde(default)]
    pub interfaces: Vec<InterfaceFile>,
    /// The static mobile-node table.
    #[serde(default)]
    pub mobile_nodes: Vec<MobileNodeFile>,
    /// Attach every MAC of the static table at start, without waiting for a Router
    /// Solicitation (signalling tests without mobile nodes).
    #[serde(default)]
    pub attach_static_at_start: bool,
    /// Listen for Router Solicitations and send Router Advertisements on every access
    /// interface (true); each interface's `link_local` must then be one of its addresses.
    #[serde(default = "yes")]
    pub router_solicitations: bool,
    /// A file the daemon rewrites with its Binding Update List after each change.
    pub status_file: Option<PathBuf>,
    /// Where durable state lives: the RFC 5847 Restart Counter (`/var/lib/pmip6`).
    pub state_dir: Option<PathBuf>,
    /// The control API; none without this table.
    pub api: Option<ApiFile>,
    /// The data plane (applied to the kernel unless `enabled = false`).
    #[serde(default)]
    pub dataplane: DataPlaneFile,
}

/// A checked MAG configuration.
#[derive(Debug, Clone)]
pub struct MagSettings {
    /// The engine's configuration.
    pub engine: MagConfig,
    /// The attachments to make at start: interface and MAC (empty unless
    /// `attach_static_at_start`).
    pub attach_at_start: Vec<(InterfaceId, [u8; 6])>,
    /// The access links to open ICMPv6 sockets on: name, index, our link-local address
    /// (empty when `router_solicitations` is off).
    pub access_links: Vec<(String, InterfaceId, Ipv6Addr)>,
    /// Where to write the status, if anywhere.
    pub status_file: Option<PathBuf>,
    /// The file of the durable RFC 5847 Restart Counter.
    pub restart_counter_file: PathBuf,
    /// The control API, if any.
    pub api: Option<ApiSettings>,
    /// The data plane.
    pub dataplane: DataPlaneSettings,
}

/// Where durable state lives when `state_dir` is left out.
pub const STATE_DIR: &str = "/var/lib/pmip6";

/// The Restart Counter file of `role` in `state_dir` (the default one when `None`).
fn restart_counter_file(state_dir: Option<&PathBuf>, role: &str) -> Result<PathBuf, ConfigError> {
    let dir = state_dir.cloned().unwrap_or_else(|| PathBuf::from(STATE_DIR));
    if dir.as_os_str().is_empty() {
        return Err(invalid("state_dir", "empty"));
    }
    Ok(dir.join(format!("{role}-restart-counter")))
}

fn yes() -> bool {
    true
}

fn parse_addr(key: &str, value: Option<&str>) -> Result<Ipv6Addr, ConfigError> {
    let text = value.ok_or_else(|| invalid(key, "missing"))?;
    text.parse().map_err(|_| invalid(key, format!("`{text}` is not an IPv6 address")))
}

/// The kernel's index of the interface `name`, in the caller's network namespace.
pub fn interface_index(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// The RFC 5847 timers of the MAG, each with its RFC default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MagTimers {
    /// HEARTBEAT_INTERVAL in seconds (60); 0 turns the MAG's requests off (the LMA's are
    /// answered anyway). The heartbeats carry the LMA's Restart Counter: how a MAG learns that
    /// the LMA restarted and registers its bindings again (RFC 5847 §5.2).
    pub heartbeat_interval_secs: u64,
    /// MISSING_HEARTBEATS_ALLOWED (3).
    pub missing_heartbeats_allowed: u32,
}

impl Default for MagTimers {
    fn default() -> Self {
        Self { heartbeat_interval_secs: 60, missing_heartbeats_allowed: 3 }
    }
}

impl MagFile {
    /// Parses the TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))
    }

    /// Checks every value and builds the engine configuration; `resolve` maps an interface
    /// name to its index ([`interface_index`] in a daemon).
    pub fn validate(&self, resolve: impl Fn(&str) -> Option<u32>) -> Result<MagSettings, ConfigError> {
        let proxy_coa = parse_addr("proxy_coa", self.proxy_coa.as_deref())?;
        let lmaa = parse_addr("lma_address", self.lma_address.as_deref())?;
        let mut engine = MagConfig::new(proxy_coa, lmaa);
        engine.heartbeat.interval =
            (self.timers.heartbeat_interval_secs > 0).then(|| Duration::from_secs(self.timers.heartbeat_interval_secs));
        if self.timers.missing_heartbeats_allowed == 0 {
            return Err(invalid("timers.missing_heartbeats_allowed", "must not be 0"));
        }
        engine.heartbeat.missing_allowed = self.timers.missing_heartbeats_allowed;
        engine.parse_config = parse_config("muho_option_type", self.muho_option_type)?;
        let mut names = Vec::new();
        let mut access_links = Vec::new();
        for (i, interface) in self.interfaces.iter().enumerate() {
            let key = format!("interfaces[{i}]");
            let index = resolve(&interface.name)
                .ok_or_else(|| invalid(format!("{key}.name"), format!("no interface `{}`", interface.name)))?;
            let link_local: Ipv6Addr = interface.link_local.parse().map_err(|_| {
                invalid(format!("{key}.link_local"), format!("`{}` is not an IPv6 address", interface.link_local))
            })?;
            if !link_local.is_unicast_link_local() {
                return Err(invalid(format!("{key}.link_local"), "not a link-local address"));
            }
            engine.interfaces.push(AccessInterface::new(
                InterfaceId(index),
                AccessTechnologyType::from(interface.access_technology),
                link_local,
            ));
            names.push((interface.name.clone(), InterfaceId(index)));
            if self.router_solicitations {
                access_links.push((interface.name.clone(), InterfaceId(index), link_local));
            }
        }
        if engine.interfaces.is_empty() {
            return Err(invalid("interfaces", "at least one access interface is needed"));
        }
        let mut attach_at_start = Vec::new();
        for (i, node) in self.mobile_nodes.iter().enumerate() {
            let key = format!("mobile_nodes[{i}]");
            if node.mn_id.is_empty() {
                return Err(invalid(format!("{key}.mn_id"), "empty"));
            }
            let interface = match &node.interface {
                None => names[0].1,
                Some(name) => names.iter().find(|(n, _)| n == name).map(|(_, id)| *id).ok_or_else(|| {
                    invalid(format!("{key}.interface"), format!("`{name}` is not one of `interfaces`"))
                })?,
            };
            let mut macs = Vec::new();
            for (j, mac) in node.macs.iter().enumerate() {
                macs.push(parse_mac(&format!("{key}.macs[{j}]"), mac)?);
            }
            if macs.is_empty() {
                return Err(invalid(format!("{key}.macs"), "at least one MAC is needed"));
            }
            if self.attach_static_at_start {
                attach_at_start.extend(macs.iter().map(|mac| (interface, *mac)));
            }
            engine.mobile_nodes.push(MobileNodeEntry {
                mn_id: MnIdentifier::nai(&node.mn_id),
                macs,
                multihoming: node.multihoming,
                ipv4: node.ipv4,
            });
        }
        let api = self.api.as_ref().map(|a| a.validate(MAG_SOCKET)).transpose()?;
        let dataplane = self.dataplane.validate(false)?;
        if engine.mobile_nodes.iter().any(|n| n.ipv4) {
            ipv4_needs_tun(&dataplane)?;
        }
        let restart_counter_file = restart_counter_file(self.state_dir.as_ref(), "mag")?;
        Ok(MagSettings {
            engine,
            attach_at_start,
            access_links,
            status_file: self.status_file.clone(),
            restart_counter_file,
            api,
            dataplane,
        })
    }
}

/// Reads and checks a MAG configuration file, resolving interface names in the caller's
/// network namespace.
pub fn load_mag(path: &Path) -> Result<MagSettings, ConfigError> {
    MagFile::from_toml(&read(path)?)?.validate(interface_index)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LMA: &str = include_str!("../examples/lma.toml");
    const MAG: &str = include_str!("../examples/mag.toml");

    #[test]
    fn the_examples_load() {
        let lma = LmaFile::from_toml(LMA).and_then(|f| f.validate());
        assert!(lma.is_ok(), "{lma:?}");
        let mn_api = lma.as_ref().ok().and_then(|l| l.mn_api.clone());
        assert_eq!(mn_api.map(|m| m.listen.port()), Some(crate::api::mn_channel::DEFAULT_PORT));
        let api = lma.ok().and_then(|l| l.api);
        assert_eq!(api.and_then(|a| a.socket), Some(PathBuf::from(LMA_SOCKET)));
        let mag = MagFile::from_toml(MAG).and_then(|f| f.validate(|_| Some(7)));
        let mag = match mag {
            Ok(mag) => mag,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(mag.engine.interfaces[0].id, InterfaceId(7));
        assert!(mag.attach_at_start.is_empty());
        assert_eq!(mag.access_links, vec![("eth1".to_owned(), InterfaceId(7), "fe80::1".parse().expect("address"))]);
    }

    #[test]
    fn errors_name_the_key() {
        let e = LmaFile::from_toml("address = \"2001:db8::1\"\nprefix_pools = [\"2001:db8::/200\"]")
            .and_then(|f| f.validate());
        assert!(matches!(e, Err(ConfigError::Invalid { ref key, .. }) if key == "prefix_pools[0]"), "{e:?}");
        let e = LmaFile::from_toml("prefix_pools = [\"2001:db8::/48\"]").and_then(|f| f.validate());
        assert!(matches!(e, Err(ConfigError::Invalid { ref key, .. }) if key == "address"), "{e:?}");
        let e = LmaFile::from_toml("adress = \"::1\"");
        assert!(matches!(e, Err(ConfigError::Syntax(ref s)) if s.contains("adress")), "{e:?}");
        let e = LmaFile::from_toml(&LMA.replace("listen = \"127.0.0.1:9100\"", "listen = \"192.0.2.1:9100\""))
            .and_then(|f| f.validate());
        assert!(matches!(e, Err(ConfigError::Invalid { ref key, .. }) if key == "api.listen"), "{e:?}");
        let e = LmaFile::from_toml(&LMA.replace("[api]", "[api]\nport = 1")).and_then(|f| f.validate());
        assert!(matches!(e, Err(ConfigError::Syntax(ref s)) if s.contains("port")), "{e:?}");
        let line = LMA.lines().find(|l| l.starts_with("listen = \"[")).unwrap_or_default();
        for (bad, key) in [
            ("listen = \"192.0.2.1:8464\"", "mn_api.listen"),
            ("listen = \"8464\"", "mn_api.listen"),
            ("listen = \"[2001:db8:ffff::1]:8464\"\nmax_rules = 0", "mn_api.max_rules"),
            ("listen = \"[2001:db8:ffff::1]:8464\"\nrequests_per_second = 0", "mn_api.requests_per_second"),
        ] {
            let text =
                format!("address = \"2001:db8:ffff::1\"\nprefix_pools = [\"2001:db8:100::/40\"]\n[mn_api]\n{bad}");
            let e = LmaFile::from_toml(&text).and_then(|f| f.validate());
            assert!(matches!(e, Err(ConfigError::Invalid { key: ref k, .. }) if k == key), "{bad}: {e:?}");
        }
        let e = LmaFile::from_toml(&LMA.replace(line, &format!("{line}\nkey = 1"))).and_then(|f| f.validate());
        assert!(matches!(e, Err(ConfigError::Syntax(ref s)) if s.contains("key")), "{e:?}");
        let e = MagFile::from_toml(MAG).and_then(|f| f.validate(|_| None));
        assert!(matches!(e, Err(ConfigError::Invalid { ref key, .. }) if key == "interfaces[0].name"), "{e:?}");
        let e = LmaFile::from_toml(&LMA.replace("prefix_mode = \"unique\"", "prefix_mode = \"bonded\""));
        assert!(matches!(e, Err(ConfigError::Syntax(ref s)) if s.contains("bonded")), "{e:?}");
    }

    #[test]
    fn prefix_mode_selects_the_virtual_interface() {
        let lma = |text: &str| LmaFile::from_toml(text).and_then(|f| f.validate()).map(|s| s.engine.virtual_interface);
        assert_eq!(lma(LMA).ok(), Some(false), "unique by default");
        assert_eq!(lma(&LMA.replace("prefix_mode = \"unique\"", "prefix_mode = \"shared\"")).ok(), Some(true));
    }

    #[test]
    fn overlapping_pools_and_bad_mag_addresses_are_refused() {
        let lma = |text: &str| LmaFile::from_toml(text).and_then(|f| f.validate());
        let e = lma("address = \"2001:db8::1\"\nprefix_pools = [\"2001:db8:100::/40\", \"2001:db8:100:8000::/48\"]");
        assert!(matches!(e, Err(ConfigError::Invalid { ref key, .. }) if key == "prefix_pools[1]"), "{e:?}");
        let ok = lma("address = \"2001:db8::1\"\nprefix_pools = [\"2001:db8:100::/40\", \"2001:db8:200::/40\"]");
        assert!(ok.is_ok(), "{ok:?}");
        let e = lma("address = \"2001:db8::1\"\nprefix_pools = [\"2001:db8:100::/40\"]\nauthorized_mags = [\"mag1\"]");
        assert!(matches!(e, Err(ConfigError::Invalid { ref key, .. }) if key == "authorized_mags[0]"), "{e:?}");
        let only = lma(
            "address = \"2001:db8::1\"\nprefix_pools = [\"2001:db8:100::/40\"]\nauthorized_mags = [\"2001:db8::11\"]",
        )
        .expect("valid");
        assert_eq!(only.engine.authorized_mags, Some(vec!["2001:db8::11".parse().expect("address")]));
    }

    #[test]
    fn the_dataplane_table_is_checked_and_map_steering_keys_flows_by_selector() {
        let lma = |edit: (&str, &str)| LmaFile::from_toml(&LMA.replace(edit.0, edit.1)).and_then(|f| f.validate());
        let key_of = |e: Result<LmaSettings, ConfigError>| match e {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        assert_eq!(key_of(lma(("tunnel = \"auto\"", "tunnel = \"gre\""))), "dataplane.tunnel");
        assert_eq!(key_of(lma(("steering = \"learn\"", "steering = \"fast\""))), "dataplane.steering");
        assert_eq!(key_of(lma(("table_base = 28672", "table_base = 254"))), "dataplane.table_base");
        assert_eq!(key_of(lma(("protocol = 157", "protocol = 2"))), "dataplane.protocol");
        assert_eq!(key_of(lma(("tunnel_mtu = 1460", "tunnel_mtu = 1000"))), "dataplane.tunnel_mtu");
        assert_eq!(key_of(lma(("nft_table = \"pmip6\"", "nft_table = \"a b\""))), "dataplane.nft_table");
        let map = lma(("steering = \"learn\"", "steering = \"map\"")).expect("valid");
        assert_eq!(map.engine.flow.map(|f| f.mode), Some(SteeringMode::PerSelector));
        let default = LmaFile::from_toml("address = \"2001:db8::1\"\nprefix_pools = [\"2001:db8:100::/40\"]")
            .and_then(|f| f.validate())
            .expect("valid");
        assert!(default.dataplane.enabled, "the data plane is on unless turned off");
        // LMA-only keys in a MAG's file are refused.
        let e = MagFile::from_toml(&MAG.replace("[dataplane]", "[dataplane]\nsteering = \"map\""))
            .and_then(|f| f.validate(|_| Some(7)));
        assert!(matches!(e, Err(ConfigError::Invalid { ref key, .. }) if key == "dataplane"), "{e:?}");
    }

    #[test]
    fn ipv4_home_addresses_are_configured_and_checked() {
        let lma = |extra: &str| LmaFile::from_toml(&format!("{LMA}\n{extra}")).and_then(|f| f.validate());
        let table = "[ipv4_home_network]\nnetwork = \"10.64.0.0/24\"\ndefault_router = \"10.64.0.1\"";
        let ok = lma(table).expect("valid");
        let home = ok.engine.ipv4_home_network.expect("configured");
        assert_eq!(
            (home.network, home.prefix_len, home.default_router),
            ("10.64.0.0".parse().unwrap(), 24, "10.64.0.1".parse().unwrap())
        );
        assert!(LmaFile::from_toml(LMA).and_then(|f| f.validate()).expect("valid").engine.ipv4_home_network.is_none());
        let outside = lma(&table.replace("10.64.0.1", "10.65.0.1"));
        assert!(
            matches!(outside, Err(ConfigError::Invalid { ref key, .. }) if key == "ipv4_home_network"),
            "{outside:?}"
        );
        let bad = lma(&table.replace("10.64.0.0/24", "10.64.0.0"));
        assert!(
            matches!(bad, Err(ConfigError::Invalid { ref key, .. }) if key == "ipv4_home_network.network"),
            "{bad:?}"
        );
        let seg6 = LmaFile::from_toml(&format!("{}\n{table}", LMA.replace("tunnel = \"auto\"", "tunnel = \"seg6\"")))
            .and_then(|f| f.validate());
        assert!(matches!(seg6, Err(ConfigError::Invalid { ref key, .. }) if key == "dataplane.tunnel"), "{seg6:?}");
        // The MAG's per-node flag.
        let mag = MagFile::from_toml(&MAG.replace("multihoming = true", "multihoming = true\nipv4 = true"))
            .and_then(|f| f.validate(|_| Some(7)))
            .expect("valid");
        assert!(mag.engine.mobile_nodes[0].ipv4);
        let plain = MagFile::from_toml(MAG).and_then(|f| f.validate(|_| Some(7))).expect("valid");
        assert!(!plain.engine.mobile_nodes[0].ipv4);
    }
}
