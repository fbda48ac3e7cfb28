//! The `pmip6` command.
//!
//! What the binary owns: the command line and the exit status. The work is in the library
//! (`pmip6::capture`, `pmip6::decode`, `pmip6::demo`).
//!
//! - `pmip6 decode FILE [--json] [--muho-type N]`: every Mobility Header (over IPv6, or over
//!   IPv4/UDP port 5436) and every Router Solicitation/Advertisement in a pcap or pcapng file,
//!   one record per packet, then a summary line. Exit status 0 when the file was read, even if
//!   some packets did not decode; 1 when it could not be read (or not to its end).
//! - `pmip6 demo [--pcap FILE] [--json]`: writes the draft's Figure 4 signalling as a capture,
//!   decodes it, and shows `tshark`'s one-line view of it when tshark is installed.
//! - `pmip6 lma --config FILE` / `pmip6 mag --config FILE`: the daemons (`pmip6_daemon`), until
//!   Ctrl-C; `--log-format json` writes one JSON object per log line.
//! - `pmip6 ctl [--socket PATH] [--json] COMMAND`: a running daemon's control API
//!   (`pmip6::ctl`): bindings, mobile nodes, flows, policies, peers, status, metrics, moves,
//!   revocations.
//! - `pmip6 testbed up|down|status|demo|measure`: the draft's Figure 4 in network namespaces, with the
//!   real daemons (`pmip6::testbed`).
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pmip6::decode::{self, OutputFormat};
use pmip6::demo;
use pmip6::testbed;
use pmip6_wire::ParseConfig;

#[derive(Parser)]
#[command(name = "pmip6", version, about = "Proxy Mobile IPv6 with multihoming and flow mobility")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Decode every Mobility Header and Router Solicitation/Advertisement in a capture
    Decode {
        /// A pcap or pcapng file
        file: PathBuf,
        /// One JSON object per line instead of text
        #[arg(long)]
        json: bool,
        /// Option type of the MuHo option: 18 (experimental, RFC 5096) or an unassigned type 71-255
        #[arg(long, value_name = "N", default_value_t = ParseConfig::DEFAULT_MUHO_OPTION_TYPE, value_parser = muho_type)]
        muho_type: u8,
    },
    /// Write the draft's Figure 4 signalling as a capture and decode it
    Demo {
        /// Where to write the capture
        #[arg(long, value_name = "FILE", default_value = "target/pmip6-demo.pcap")]
        pcap: PathBuf,
        /// Decoded records as JSON lines on standard output (the rest goes to standard error)
        #[arg(long)]
        json: bool,
    },
    /// Run the local mobility anchor daemon until Ctrl-C
    Lma {
        /// The LMA's TOML configuration
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// How log lines are written
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Record every Mobility Header message sent and received to FILE (pcap, raw IPv6)
        #[arg(long, value_name = "FILE")]
        pcap: Option<PathBuf>,
    },
    /// Run the mobile access gateway daemon until Ctrl-C
    Mag {
        /// The MAG's TOML configuration
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// How log lines are written
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Record every Mobility Header message sent and received, and the Router Solicitations
        /// and Advertisements of the access links, to FILE (pcap, raw IPv6)
        #[arg(long, value_name = "FILE")]
        pcap: Option<PathBuf>,
    },
    /// Query or steer a running daemon through its control API
    /// Offer Proxy Binding Updates to an LMA at a fixed rate and report answers and latency (root)
    Load {
        /// The LMA address
        #[arg(long)]
        lma: std::net::Ipv6Addr,
        /// Our address, acting as one MAG's Proxy-CoA (must be local)
        #[arg(long)]
        from: std::net::Ipv6Addr,
        /// PBUs per second
        #[arg(long, default_value_t = 10_000)]
        rate: u32,
        /// Seconds of load
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Distinct mobile nodes (PBUs after a node's first are refreshes)
        #[arg(long, default_value_t = 10_000)]
        mobile_nodes: u32,
        /// The report as JSON
        #[arg(long)]
        json: bool,
    },
    Ctl {
        /// The daemon's control socket
        #[arg(long, value_name = "PATH", default_value = pmip6_daemon::config::LMA_SOCKET)]
        socket: PathBuf,
        /// The answer as JSON instead of a table
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: pmip6::ctl::CtlCommand,
    },
    /// The mobile node's agent: its flows and own rules at the LMA, uplink steering (run on the MN)
    Mn {
        #[command(subcommand)]
        command: pmip6::mn::MnCommand,
    },
    /// The draft's Figure 4 in network namespaces, with the real daemons (root)
    Testbed {
        #[command(subcommand)]
        action: TestbedAction,
        /// Namespace names start with this (`pmip` gives pmip-cn, pmip-lma, ...)
        #[arg(long, global = true, default_value = "pmip")]
        prefix: String,
        /// Where the testbed keeps its configurations, logs and sockets
        #[arg(long, global = true, value_name = "DIR", default_value = "/run/pmip6-testbed")]
        state_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum TestbedAction {
    /// Build the namespaces, start the LMA and both MAGs, attach both of the mobile node's interfaces
    Up {
        /// Leave the mobile node's interfaces down
        #[arg(long)]
        no_attach: bool,
        /// unique: a prefix per interface; shared: the draft's virtual interface (5.4), one MAC and one prefix on both
        #[arg(long, value_enum, default_value_t = testbed::PrefixMode::Unique)]
        prefix_mode: testbed::PrefixMode,
    },
    /// Stop the daemons and remove everything `up` made
    Down,
    /// Bindings, the mobile node's prefixes per interface, and packet counters
    Status,
    /// The draft's use case step by step, on a fresh testbed; exit status 0 only if every step did what it said
    Demo {
        /// Leave the testbed up at the end
        #[arg(long)]
        keep: bool,
        /// unique: the use case of section 3; shared: the virtual interface of section 5.4
        #[arg(long, value_enum, default_value_t = testbed::PrefixMode::Unique)]
        prefix_mode: testbed::PrefixMode,
    },
    /// Attach latency, flow-move latency and losses on a testbed of its own: median, p99, max
    Measure {
        /// Fresh attachments, and as many re-attachments (link flaps)
        #[arg(long, default_value_t = 100)]
        attachments: usize,
        /// Flow moves, alternating 3G and WLAN
        #[arg(long, default_value_t = 50)]
        moves: usize,
        /// Datagrams per second of each of the two flows during the moves
        #[arg(long, default_value_t = 5000)]
        rate: u32,
        /// Also compare steered with unsteered forwarding, blasting each for this many milliseconds
        #[arg(long, value_name = "MS")]
        forwarding: Option<u64>,
        /// The report as JSON on standard output (progress goes to standard error)
        #[arg(long)]
        json: bool,
        /// Leave the testbed up at the end
        #[arg(long)]
        keep: bool,
    },
}

fn muho_type(text: &str) -> Result<u8, String> {
    let value: u8 = text.parse().map_err(|_| format!("`{text}` is not a number from 0 to 255"))?;
    ParseConfig::with_muho_option_type(value).map(|_| value).ok_or_else(|| {
        format!("{value} is an assigned mobility option type; MuHo travels as 18 (experimental) or an unassigned type 71-255")
    })
}

fn format(json: bool) -> OutputFormat {
    if json { OutputFormat::Json } else { OutputFormat::Text }
}

/// How the daemons write their log lines.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// One human-readable line per event
    Text,
    /// One JSON object per line
    Json,
}

fn init_logging(format: LogFormat) {
    pmip6_daemon::init_logging_as(match format {
        LogFormat::Text => pmip6_daemon::LogFormat::Text,
        LogFormat::Json => pmip6_daemon::LogFormat::Json,
    });
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match cli.command {
        Cmd::Decode { file, json, muho_type } => {
            let config = ParseConfig::with_muho_option_type(muho_type)
                .ok_or_else(|| anyhow::anyhow!("invalid MuHo option type {muho_type}"))?;
            decode::run(&file, &config, format(json), &mut out)?;
        }
        Cmd::Demo { pcap, json } => {
            if json {
                demo::run(&pcap, OutputFormat::Json, &mut out, &mut std::io::stderr())?;
            } else {
                // Text: legend, records and tshark's view share standard output; `out` is
                // flushed before tshark's lines are written.
                let mut info = std::io::stdout();
                demo::run(&pcap, OutputFormat::Text, &mut out, &mut info)?;
            }
        }
        Cmd::Lma { config, log_format, pcap } => {
            init_logging(log_format);
            pmip6_daemon::run_lma(&config, pcap.as_deref())?;
        }
        Cmd::Mag { config, log_format, pcap } => {
            init_logging(log_format);
            pmip6_daemon::run_mag(&config, pcap.as_deref())?;
        }
        Cmd::Load { lma, from, rate, seconds, mobile_nodes, json } => {
            let config = pmip6::load::LoadConfig {
                lma,
                from,
                rate,
                duration: std::time::Duration::from_secs(seconds),
                mobile_nodes,
                grace: std::time::Duration::from_secs(1),
            };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let report = runtime.block_on(pmip6::load::run(&config))?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&report)?)?;
            } else {
                writeln!(
                    out,
                    "offered {:.0}/s  sent {}  answered {} ({:.0}/s)  lost {}  send errors {}  latency p50 {:.0} µs  p99 {:.0} µs  max {:.0} µs  statuses {:?}",
                    report.offered_rate,
                    report.sent,
                    report.answered,
                    report.answered_rate,
                    report.lost,
                    report.send_errors,
                    report.p50_us,
                    report.p99_us,
                    report.max_us,
                    report.statuses
                )?;
            }
        }
        Cmd::Ctl { socket, json, command } => pmip6::ctl::run(&socket, &command, json, &mut out)?,
        Cmd::Mn { command } => pmip6::mn::run(&command, &mut out)?,
        Cmd::Testbed { action, prefix, state_dir } => {
            let bed = testbed::Testbed::new(&prefix, &state_dir)?;
            let mut say = |line: &str| println!("{line}");
            match action {
                TestbedAction::Up { no_attach, prefix_mode } => {
                    bed.with_prefix_mode(prefix_mode).up(!no_attach, &mut say)?;
                }
                TestbedAction::Down => bed.down(&mut say)?,
                TestbedAction::Status => print!("{}", bed.status()),
                TestbedAction::Demo { keep, prefix_mode } => {
                    testbed::demo::run(&bed.with_prefix_mode(prefix_mode), keep, &mut say)?;
                }
                TestbedAction::Measure { attachments, moves, rate, forwarding, json, keep } => {
                    let forwarding = forwarding.map(std::time::Duration::from_millis);
                    let options = testbed::measure::Options { attachments, moves, rate, forwarding, keep };
                    let report = testbed::measure::run(&bed, &options, &mut |line| eprintln!("{line}"))?;
                    if json {
                        writeln!(out, "{}", report.json())?;
                    } else {
                        write!(out, "{}", report.table())?;
                    }
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A reader that went away (`| head`) is not a failure.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("pmip6: {e:#}");
            ExitCode::FAILURE
        }
    }
}
