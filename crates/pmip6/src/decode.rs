//! Decoding a capture into one [`Record`] per Mobility Header or Router Solicitation/
//! Advertisement, and writing the records as text or as JSON lines.
//!
//! A Mobility Header over IPv6 is parsed with its checksum verified
//! ([`Message::parse_checked`]); over IPv4/UDP without (RFC 5844 does not settle the
//! pseudo-header), which the record says. An RS/RA is parsed with its ICMPv6 checksum verified.
//! What does not parse becomes an error record with the codec's error kind and the offset within
//! the Mobility Header or ICMPv6 message; decoding goes on with the next frame. Frames that hold
//! neither are counted as skipped.

use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use pmip6_wire::nd::NdMessage;
use pmip6_wire::{Error, Message, ParseConfig};
use serde::{Serialize, Serializer};

use crate::capture::{Capture, CaptureError, Extracted, ND_HOP_LIMIT, Packet, Protocol, RawFrame, Transport, extract};

/// What was found in one frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// 1-based frame number.
    pub frame: u64,
    /// Capture time in seconds since the epoch (JSON: a number, `null` when the capture has none).
    #[serde(serialize_with = "seconds")]
    pub time: Option<Duration>,
    /// IP source (`null` when the link layer could not be read).
    pub src: Option<IpAddr>,
    /// IP destination.
    pub dst: Option<IpAddr>,
    /// How the message travelled.
    pub transport: Option<Transport>,
    /// Mobility Header (`"mh"`) or RS/RA (`"nd"`).
    pub protocol: Option<Protocol>,
    /// Whether the checksum was verified; absent on error records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<ChecksumCheck>,
    /// The one-line human form: the message's `Display`, or the error.
    pub text: String,
    /// The decoded message (`"message"`) or what went wrong (`"error"`).
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Remarks about the layers around the message.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The result of decoding a frame's message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It decoded.
    Message(Decoded),
    /// It did not.
    Error(RecordError),
}

/// A decoded message; serialized as the wire crate serializes it (`{"BindingUpdate": {...}}`,
/// `{"RouterAdvertisement": {...}}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Decoded {
    /// A Mobility Header message.
    Mobility(Message),
    /// A Router Solicitation or Advertisement.
    RouterDiscovery(NdMessage),
}

/// Why a frame's message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordError {
    /// Error kind, kebab-case: `truncated`, `bad-checksum`, `option-overrun`, ...,
    /// `unsupported-link-type`.
    pub kind: &'static str,
    /// Octet offset within the Mobility Header or ICMPv6 message (`null` for link-type errors).
    pub offset: Option<usize>,
    /// The error in words.
    pub detail: String,
}

/// Whether a record's checksum was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ChecksumCheck {
    /// It verified.
    #[serde(rename = "verified")]
    Verified,
    /// Mobility Header over IPv4/UDP: not checked.
    #[serde(rename = "not verified (UDP transport)")]
    NotVerifiedUdp,
}

/// Counts over a whole capture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Frames read.
    pub packets: u64,
    /// Records with a decoded message.
    pub decoded: u64,
    /// Error records.
    pub errors: u64,
    /// Frames holding neither a Mobility Header nor an RS/RA.
    pub skipped: u64,
    /// Set when the capture file could not be read to its end.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "display_option")]
    pub capture_error: Option<CaptureError>,
}

/// How records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// One line of text per record.
    Text,
    /// One JSON object per line.
    Json,
}

fn seconds<S: Serializer>(time: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(t) => s.serialize_f64(t.as_secs_f64()),
        None => s.serialize_none(),
    }
}

fn display_option<S: Serializer, T: fmt::Display>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

impl From<Error> for RecordError {
    fn from(e: Error) -> Self {
        Self { kind: e.kind.name(), offset: Some(e.offset), detail: e.kind.to_string() }
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ERROR {}", self.kind)?;
        if let Some(offset) = self.offset {
            write!(f, " at offset {offset}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// Decodes the message of one extracted packet.
pub fn decode_packet(packet: &Packet<'_>, config: &ParseConfig) -> Record {
    let mut notes = packet.notes.clone();
    let (result, checksum) = match (packet.protocol, packet.transport, packet.pseudo_header) {
        (Protocol::MobilityHeader, Transport::Ipv6, Some((src, dst))) => {
            (Message::parse_checked(packet.payload, &src, &dst, config).map(Decoded::Mobility), ChecksumCheck::Verified)
        }
        (Protocol::MobilityHeader, _, _) => {
            (Message::parse(packet.payload, config).map(Decoded::Mobility), ChecksumCheck::NotVerifiedUdp)
        }
        (Protocol::RouterDiscovery, _, pseudo) => {
            if packet.hop_limit != ND_HOP_LIMIT {
                // RFC 4861 §6.1.1, §6.1.2: a receiver drops it.
                notes.push(format!("hop limit {}, not 255", packet.hop_limit));
            }
            let result = match pseudo {
                Some((src, dst)) => NdMessage::parse_checked(packet.payload, &src, &dst),
                None => NdMessage::parse(packet.payload),
            };
            (result.map(Decoded::RouterDiscovery), ChecksumCheck::Verified)
        }
    };
    let (text, outcome, checksum) = match result {
        Ok(decoded) => {
            let text = match &decoded {
                Decoded::Mobility(m) => m.to_string(),
                Decoded::RouterDiscovery(m) => m.to_string(),
            };
            (text, Outcome::Message(decoded), Some(checksum))
        }
        Err(e) => {
            let error = RecordError::from(e);
            (error.to_string(), Outcome::Error(error), None)
        }
    };
    Record {
        frame: packet.frame,
        time: packet.time,
        src: Some(packet.src),
        dst: Some(packet.dst),
        transport: Some(packet.transport),
        protocol: Some(packet.protocol),
        checksum,
        text,
        outcome,
        notes,
    }
}

/// Decodes one frame; `None` when it holds neither a Mobility Header nor an RS/RA.
pub fn decode_frame(frame: &RawFrame<'_>, config: &ParseConfig) -> Option<Record> {
    match extract(frame) {
        Extracted::Packet(packet) => Some(decode_packet(&packet, config)),
        Extracted::Skipped => None,
        Extracted::UnsupportedLinkType(linktype) => {
            let error = RecordError {
                kind: "unsupported-link-type",
                offset: None,
                detail: format!("link type {linktype} is not supported"),
            };
            Some(Record {
                frame: frame.number,
                time: frame.time,
                src: None,
                dst: None,
                transport: None,
                protocol: None,
                checksum: None,
                text: error.to_string(),
                outcome: Outcome::Error(error),
                notes: Vec::new(),
            })
        }
    }
}

/// Decodes every frame of `capture`, handing each record to `sink` as it is made.
pub fn decode_with(
    capture: &Capture,
    config: &ParseConfig,
    mut sink: impl FnMut(&Record) -> anyhow::Result<()>,
) -> anyhow::Result<Summary> {
    let mut summary = Summary::default();
    for frame in capture.frames() {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                summary.capture_error = Some(e);
                break;
            }
        };
        summary.packets += 1;
        match decode_frame(&frame, config) {
            Some(record) => {
                match record.outcome {
                    Outcome::Message(_) => summary.decoded += 1,
                    Outcome::Error(_) => summary.errors += 1,
                }
                sink(&record)?;
            }
            None => summary.skipped += 1,
        }
    }
    Ok(summary)
}

/// Decodes every frame of `capture` into a vector.
pub fn decode_all(capture: &Capture, config: &ParseConfig) -> (Vec<Record>, Summary) {
    let mut records = Vec::new();
    let summary = decode_with(capture, config, |r| {
        records.push(r.clone());
        Ok(())
    });
    // The sink above cannot fail.
    (records, summary.unwrap_or_default())
}

/// `secs.micros` (nine digits when the capture has sub-microsecond precision), or `-`.
fn time_text(time: Option<Duration>) -> String {
    match time {
        None => "-".into(),
        Some(t) if t.subsec_nanos() % 1_000 != 0 => {
            format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
        }
        Some(t) => format!("{}.{:06}", t.as_secs(), t.subsec_micros()),
    }
}

impl fmt::Display for Record {
    /// `#FRAME TIME SRC → DST TRANSPORT [checksum not verified] TEXT (NOTES)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {}", self.frame, time_text(self.time))?;
        if let (Some(src), Some(dst)) = (self.src, self.dst) {
            write!(f, " {src} → {dst}")?;
        }
        if let Some(transport) = self.transport {
            write!(f, " {transport}")?;
        }
        if self.checksum == Some(ChecksumCheck::NotVerifiedUdp) {
            f.write_str(" [checksum not verified: UDP transport]")?;
        }
        write!(f, " {}", self.text)?;
        if !self.notes.is_empty() {
            write!(f, " ({})", self.notes.join("; "))?;
        }
        Ok(())
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "summary: {} packets read, {} decoded, {} errors, {} skipped",
            self.packets, self.decoded, self.errors, self.skipped
        )?;
        if let Some(e) = &self.capture_error {
            write!(f, "; {e}")?;
        }
        Ok(())
    }
}

/// Writes one record as a line.
pub fn write_record(out: &mut dyn Write, record: &Record, format: OutputFormat) -> anyhow::Result<()> {
    match format {
        OutputFormat::Text => writeln!(out, "{record}")?,
        OutputFormat::Json => {
            serde_json::to_writer(&mut *out, record).context("serializing a record")?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// Writes the summary line (JSON: `{"summary": {...}}`).
pub fn write_summary(out: &mut dyn Write, summary: &Summary, format: OutputFormat) -> anyhow::Result<()> {
    match format {
        OutputFormat::Text => writeln!(out, "{summary}")?,
        OutputFormat::Json => {
            #[derive(Serialize)]
            struct Line<'a> {
                summary: &'a Summary,
            }
            serde_json::to_writer(&mut *out, &Line { summary }).context("serializing the summary")?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// Decodes the capture at `path` and writes its records and summary to `out`.
///
/// Fails when the file cannot be opened or is not a capture, and — after writing what was read
/// and the summary — when it cannot be read to its end. Undecodable messages are error records,
/// not failures.
pub fn run(path: &Path, config: &ParseConfig, format: OutputFormat, out: &mut dyn Write) -> anyhow::Result<Summary> {
    let capture = Capture::open(path)?;
    let summary = decode_with(&capture, config, |record| write_record(out, record, format))?;
    write_summary(out, &summary, format)?;
    out.flush()?;
    if let Some(e) = &summary.capture_error {
        return Err(e.clone()).with_context(|| format!("{} is damaged", path.display()));
    }
    Ok(summary)
}
