//! `pmip6 testbed`: the draft's Figure 4 on one machine, with the real daemons.
//!
//! - [`topology`]: the five namespaces, their links and addresses;
//! - [`traffic`]: UDP flows from the correspondent node to the mobile node, counted per
//!   arrival interface at the mobile node;
//! - [`demo`]: the draft's use case, step by step (`--prefix-mode shared`: the draft's §5.4
//!   virtual interface, one prefix on both interfaces);
//! - [`measure`]: attach, re-attach and move latencies from packet timestamps, and losses.
//!
//! What `up` makes is recorded in a state directory (`/run/pmip6-testbed/<prefix>` by default):
//! the generated configurations, the daemons' process ids, logs, status files and control
//! sockets. `down` removes exactly that: the daemons it started, the namespaces of its prefix
//! and the directory.

pub mod demo;
pub mod measure;
pub mod topology;
pub mod traffic;

use std::fmt::Write as _;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub use topology::PrefixMode;
use topology::{LMAA, MAG_LINK_LOCAL, MAGS, MN_ID, MagSite, Names, Node, PREFIX_POOL};

/// How long `up` waits for a daemon or an attachment before it gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// One testbed: its names and its state directory.
#[derive(Debug, Clone)]
pub struct Testbed {
    /// The namespace names.
    pub names: Names,
    /// Where its files live.
    pub dir: PathBuf,
    /// The `pmip6` executable the daemons run.
    pub exe: PathBuf,
    /// Unique prefixes per interface, or the draft's virtual interface (one MAC, one prefix).
    pub prefix_mode: PrefixMode,
}

/// The daemons of the testbed: (node, configuration file stem).
const DAEMONS: [(Node, &str); 3] = [(Node::Lma, "lma"), (Node::Mag1, "mag1"), (Node::Mag2, "mag2")];

impl Testbed {
    /// The testbed whose namespaces start with `prefix`, with its state under `state_root`.
    pub fn new(prefix: &str, state_root: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the pmip6 executable")?;
        Ok(Self { names: Names::new(prefix), dir: state_root.join(prefix), exe, prefix_mode: PrefixMode::Unique })
    }

    /// The same testbed in `mode`.
    pub fn with_prefix_mode(mut self, mode: PrefixMode) -> Self {
        self.prefix_mode = mode;
        self
    }

    /// The prefix mode of the testbed that is up, as its LMA configuration says.
    pub fn running_prefix_mode(&self) -> Option<PrefixMode> {
        let text = std::fs::read_to_string(self.file("lma", "toml")).ok()?;
        Some(if text.lines().any(|l| l.trim() == "prefix_mode = \"shared\"") {
            PrefixMode::Shared
        } else {
            PrefixMode::Unique
        })
    }

    /// The file of `stem` with extension `ext` in the state directory.
    pub fn file(&self, stem: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{stem}.{ext}"))
    }

    /// The control socket of the LMA.
    pub fn lma_socket(&self) -> PathBuf {
        self.file("lma", "sock")
    }

    /// Whether every namespace exists and every daemon runs.
    pub fn is_up(&self) -> bool {
        topology::existing_namespaces(&self.names).len() == topology::NODES.len()
            && DAEMONS.iter().all(|(_, stem)| self.daemon_pid(stem).is_some_and(alive))
    }

    fn daemon_pid(&self, stem: &str) -> Option<Pid> {
        let text = std::fs::read_to_string(self.file(stem, "pid")).ok()?;
        text.trim().parse().ok().map(Pid::from_raw)
    }

    /// Builds the network, starts the daemons and (with `attach`) attaches both of the mobile
    /// node's interfaces. Idempotent: a testbed that is up is left as it is; a partial one is
    /// removed first.
    pub fn up(&self, attach: bool, log: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
        preflight()?;
        if self.is_up() {
            let running = self.running_prefix_mode().unwrap_or_default();
            log(&format!("testbed {} is already up (prefix mode {})", self.names.prefix(), running.key()));
            if running != self.prefix_mode {
                bail!(
                    "the testbed runs in prefix mode {}, not {}: `pmip6 testbed down --prefix {}` first",
                    running.key(),
                    self.prefix_mode.key(),
                    self.names.prefix()
                );
            }
            return Ok(());
        }
        if !topology::existing_namespaces(&self.names).is_empty() || self.dir.exists() {
            log("removing what an earlier, partial testbed left");
            self.down(&mut |_| {})?;
        }
        std::fs::create_dir_all(&self.dir).with_context(|| format!("cannot create {}", self.dir.display()))?;
        let built = topology::build(&self.names, self.prefix_mode).and_then(|()| self.start_daemons());
        if let Err(e) = built {
            let _ = self.down(&mut |_| {});
            return Err(e);
        }
        log(&format!(
            "namespaces {} up; LMA and both MAGs running, prefix mode {} (state in {})",
            topology::NODES.map(|n| self.names.namespace(n)).join(", "),
            self.prefix_mode.key(),
            self.dir.display()
        ));
        if attach {
            for site in &MAGS {
                let (prefix, elapsed) = self.attach(site)?;
                log(&format!("{} ({}) attached: {prefix} in {:.1} ms", site.access, site.label, ms(elapsed)));
            }
        }
        Ok(())
    }

    /// Brings the mobile node's interface toward `site` up and waits until it has an address
    /// from the pool; returns the address and the time it took.
    pub fn attach(&self, site: &MagSite) -> anyhow::Result<(Ipv6Addr, Duration)> {
        let start = Instant::now();
        topology::set_mobile_node_link(&self.names, site, true)?;
        let deadline = start + READY_TIMEOUT;
        loop {
            if let Some(addr) = self.mobile_node_address(site) {
                return Ok((addr, start.elapsed()));
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not get an address within {READY_TIMEOUT:?}; see {}",
                    site.access,
                    self.file(site.node.name(), "log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Takes the mobile node's interface toward `site` down.
    pub fn detach(&self, site: &MagSite) -> anyhow::Result<()> {
        topology::set_mobile_node_link(&self.names, site, false)
    }

    /// The mobile node's address from the pool on the interface toward `site`.
    pub fn mobile_node_address(&self, site: &MagSite) -> Option<Ipv6Addr> {
        topology::mobile_node_addresses(&self.names, site.access).into_iter().find(in_pool)
    }

    fn start_daemons(&self) -> anyhow::Result<()> {
        std::fs::write(self.file("lma", "toml"), self.lma_config()).context("cannot write lma.toml")?;
        for site in &MAGS {
            std::fs::write(self.file(site.node.name(), "toml"), self.mag_config(site))
                .context("cannot write a MAG configuration")?;
        }
        for (node, stem) in DAEMONS {
            self.spawn_daemon(node, stem)?;
        }
        // Ready when each daemon has written its status file.
        let deadline = Instant::now() + READY_TIMEOUT;
        for (_, stem) in DAEMONS {
            while !self.file(stem, "status").exists() {
                if !self.daemon_pid(stem).is_some_and(alive) {
                    bail!("the {stem} daemon stopped: {}", tail(&self.file(stem, "log")));
                }
                if Instant::now() > deadline {
                    bail!("the {stem} daemon is not ready after {READY_TIMEOUT:?}: {}", tail(&self.file(stem, "log")));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    }

    /// Starts the daemon of `node` (configuration file stem `stem`) with `ip netns exec`; its
    /// log goes to `<stem>.log` (appended) and its process id to `<stem>.pid`.
    fn spawn_daemon(&self, node: Node, stem: &str) -> anyhow::Result<()> {
        let role = if node == Node::Lma { "lma" } else { "mag" };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.file(stem, "log"))
            .context("cannot open a log file")?;
        let err = log.try_clone().context("cannot share the log file")?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.names.namespace(node)])
            .arg(&self.exe)
            .args([role, "--config"])
            .arg(self.file(stem, "toml"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        // Its own process group: the daemon outlives `pmip6 testbed up` and a Ctrl-C in the
        // terminal that ran it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().with_context(|| format!("cannot start the {stem} daemon"))?;
        std::fs::write(self.file(stem, "pid"), child.id().to_string()).context("cannot write a pid file")?;
        Ok(())
    }

    /// Kills the LMA daemon without warning (SIGKILL: a crash, its state lost) and starts it
    /// again from its configuration; returns once the new one has written its status.
    pub fn crash_and_restart_lma(&self) -> anyhow::Result<()> {
        let pid = self.daemon_pid("lma").context("the LMA is not running")?;
        let _ = kill(pid, Signal::SIGKILL);
        let deadline = Instant::now() + READY_TIMEOUT;
        while alive(pid) {
            reap(pid);
            if Instant::now() > deadline {
                bail!("the LMA (pid {pid}) does not die");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = std::fs::remove_file(self.file("lma", "status"));
        self.spawn_daemon(Node::Lma, "lma")?;
        while !self.file("lma", "status").exists() {
            if !self.daemon_pid("lma").is_some_and(alive) {
                bail!("the restarted LMA stopped: {}", tail(&self.file("lma", "log")));
            }
            if Instant::now() > deadline {
                bail!("the restarted LMA is not ready: {}", tail(&self.file("lma", "log")));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// The LMA's configuration.
    pub fn lma_config(&self) -> String {
        let q = |p: PathBuf| format!("{:?}", p.display().to_string());
        format!(
            "# Generated by `pmip6 testbed up`.\naddress = \"{LMAA}\"\nprefix_pools = [\"{PREFIX_POOL}\"]\n\
             allocated_prefix_len = 64\nprefix_mode = \"{}\"\nstatus_file = {}\nstate_dir = {}\n\n[api]\nsocket = {}\n\n\
             # MinDelayBeforeBCEDelete shortened from 10 s: a de-registered binding is gone in a second.\n\
             [timers]\nmin_delay_before_bce_delete_ms = 1000\n\n[mn_api]\nlisten = \"[{LMAA}]:8464\"\n",
            self.prefix_mode.key(),
            q(self.file("lma", "status")),
            q(self.dir.join("lma-state")),
            q(self.lma_socket()),
        )
    }

    /// The configuration of the MAG at `site`.
    pub fn mag_config(&self, site: &MagSite) -> String {
        let stem = site.node.name();
        let q = |p: PathBuf| format!("{:?}", p.display().to_string());
        format!(
            "# Generated by `pmip6 testbed up`.\nproxy_coa = \"{}\"\nlma_address = \"{LMAA}\"\n\
             router_solicitations = true\nstatus_file = {}\nstate_dir = {}\n\n[api]\nsocket = {}\n\n\
             # Heartbeats every 2 s (RFC 5847 default 60 s): an LMA restart is noticed at once.\n\
             [timers]\nheartbeat_interval_secs = 2\n\n\
             [[interfaces]]\nname = \"{}\"\naccess_technology = {}\nlink_local = \"{MAG_LINK_LOCAL}\"\n\n\
             [[mobile_nodes]]\nmn_id = \"{MN_ID}\"\nmacs = [\"{}\"]\nmultihoming = true\ninterface = \"{}\"\n",
            site.proxy_coa,
            q(self.file(stem, "status")),
            q(self.dir.join(format!("{stem}-state"))),
            q(self.file(stem, "sock")),
            site.access,
            site.access_technology,
            self.prefix_mode.mn_mac(site),
            site.access,
        )
    }

    /// Stops the daemons it started, removes its namespaces and its state directory. Returns
    /// what it removed, for the report.
    pub fn down(&self, log: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
        for (_, stem) in DAEMONS {
            if let Some(pid) = self.daemon_pid(stem) {
                if stop(pid) {
                    log(&format!("stopped the {stem} daemon (pid {pid})"));
                }
            }
        }
        for ns in topology::destroy(&self.names) {
            log(&format!("removed namespace {ns}"));
        }
        let left = topology::existing_namespaces(&self.names);
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).with_context(|| format!("cannot remove {}", self.dir.display()))?;
        }
        if !left.is_empty() {
            bail!("namespaces could not be removed: {}", left.join(", "));
        }
        Ok(())
    }

    /// A text report: daemons, the LMA's bindings, the mobile node's addresses and counters.
    pub fn status(&self) -> String {
        let mut out = String::new();
        let namespaces = topology::existing_namespaces(&self.names);
        let _ = writeln!(out, "testbed {}: {} of 5 namespaces", self.names.prefix(), namespaces.len());
        if let Some(mode) = self.running_prefix_mode() {
            let _ = writeln!(out, "  prefix mode {}", mode.key());
        }
        for (_, stem) in DAEMONS {
            let state = match self.daemon_pid(stem) {
                Some(pid) if alive(pid) => format!("running (pid {pid})"),
                Some(_) => "stopped".to_owned(),
                None => "not started".to_owned(),
            };
            let _ = writeln!(out, "  {stem:<5} {state}");
        }
        // The LMA's bindings and flows, through its control API (as `pmip6 ctl` shows them).
        for (title, command) in
            [("LMA bindings:", crate::ctl::CtlCommand::Bindings), ("LMA flows:", crate::ctl::CtlCommand::Flows)]
        {
            let path = if matches!(command, crate::ctl::CtlCommand::Flows) { "/flows" } else { "/bindings" };
            let answer = pmip6_daemon::api::client::request_blocking(&self.lma_socket(), "GET", path, None);
            let Ok(answer) = answer else { continue };
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&answer.body) else { continue };
            let _ = writeln!(out, "{title}");
            for line in crate::ctl::render(&command, &value).lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        if namespaces.len() == topology::NODES.len() {
            let _ = writeln!(out, "mobile node {MN_ID}:");
            let _ = writeln!(out, "  {:<4} {:<5} {:<28} {:>10} {:>10}", "if", "via", "address", "rx pkts", "tx pkts");
            for site in &MAGS {
                let addr = self.mobile_node_address(site).map(|a| a.to_string()).unwrap_or_else(|| "-".to_owned());
                let (rx, tx) = topology::link_counters(&self.names, Node::Mn, site.access).unwrap_or_default();
                let _ = writeln!(out, "  {:<4} {:<5} {addr:<28} {rx:>10} {tx:>10}", site.access, site.label);
            }
        }
        out
    }
}

/// Whether `addr` lies in the testbed's prefix pool (2001:db8:100::/40).
pub fn in_pool(addr: &Ipv6Addr) -> bool {
    let s = addr.segments();
    s[0] == 0x2001 && s[1] == 0xdb8 && s[2] >> 8 == 0x01
}

fn alive(pid: Pid) -> bool {
    kill(pid, None).is_ok()
}

/// SIGINT, then SIGKILL after three seconds; true if the process was running.
fn stop(pid: Pid) -> bool {
    if kill(pid, Signal::SIGINT).is_err() {
        return false;
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while alive(pid) && Instant::now() < deadline {
        reap(pid);
        std::thread::sleep(Duration::from_millis(10));
    }
    if alive(pid) {
        let _ = kill(pid, Signal::SIGKILL);
        reap(pid);
    }
    true
}

/// Collects the exit status of our own child (when `up` and `down` run in one process), so it
/// does not linger as a zombie that still answers signals.
fn reap(pid: Pid) {
    let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What `up` needs: root, network namespaces, `ip`.
pub fn preflight() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the testbed creates network namespaces and must run as root (try: sudo pmip6 testbed up)");
    }
    let out = Command::new("ip").arg("-V").output();
    if !matches!(out, Ok(ref o) if o.status.success()) {
        bail!("`ip` (iproute2) is missing: apt-get install iproute2");
    }
    if !Path::new("/proc/self/ns/net").exists() {
        bail!("this kernel has no network namespaces (/proc/self/ns/net is missing)");
    }
    Ok(())
}
