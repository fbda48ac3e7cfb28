//! The control API: a local HTTP/JSON endpoint on a unix socket (and optionally TCP).
//!
//! The engine belongs to the driver loop, so the HTTP side never touches it: each handler turns
//! its request into a [`Request`], sends it with a `oneshot` reply over a bounded channel, and
//! the driver's loop answers it synchronously against the engine (`Engine::answer`, in [`lma`]
//! and [`mag`]) before flushing the transmits and intents the request produced. A full channel
//! is answered 503; a body over [`MAX_BODY`] 413; every error is `{"error": "..."}`.
//!
//! | method | path | role | what |
//! |---|---|---|---|
//! | GET | `/status` | both | role, uptime, counters |
//! | GET | `/metrics` | both | Prometheus text ([`crate::metrics`]) |
//! | GET | `/bindings` | both | LMA: binding cache; MAG: Binding Update List |
//! | GET | `/mobile-nodes` | LMA | mobile nodes with their interfaces |
//! | GET | `/flows` | LMA | flows per mobile node, with route, counters, deciding rule |
//! | GET, POST | `/policies` | LMA | operator rules: list, add one ([`policy`] has the form) |
//! | DELETE | `/policies/{index}` | LMA | remove one operator rule |
//! | POST | `/flows/move` | LMA | `{mn_id, fid, target}` |
//! | POST | `/bindings/revoke` | LMA | `{mn_id}` or `{mag}` |
//! | GET | `/peers` | LMA | MAGs with their heartbeat state |
//! | GET | `/resources` | MAG | installed data-plane resources |
//!
//! The LMA can also serve its mobile nodes on a second listener, the MN channel
//! ([`mn_channel`]: `GET`/`PUT`/`DELETE /mn/rules`, `GET /mn/flows`), reached from the mobile
//! nodes over the data path and authenticated by the source address; its requests go through
//! the same channel to the driver as [`Request::MobileNode`].

pub mod client;
pub mod lma;
pub mod mag;
pub mod mn_channel;
pub mod policy;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::body::Body as HttpBody;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use pmip6_engine::Now;
use pmip6_wire::{MnIdSubtype, MnIdentifier};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::driver::{Driver, Engine};

/// Largest request body accepted, in octets.
pub const MAX_BODY: usize = 64 * 1024;
/// Requests waiting for the driver at most; one more is answered 503.
pub const CHANNEL_BOUND: usize = 32;
/// How long a handler waits for the driver's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the control API asks the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Role, uptime, counters.
    Status,
    /// The Prometheus text.
    Metrics,
    /// The binding cache (LMA) or Binding Update List (MAG).
    Bindings,
    /// Mobile nodes with their interfaces (LMA).
    MobileNodes,
    /// Flows per mobile node (LMA).
    Flows,
    /// Operator rules (LMA).
    Policies,
    /// Add an operator rule, in the JSON form of [`policy`] (LMA).
    AddPolicy(Value),
    /// Remove the operator rule at this index (LMA).
    DeletePolicy(usize),
    /// Move one flow: `{mn_id, fid, target}` (LMA).
    MoveFlow(Value),
    /// Revoke the sessions of a mobile node or a MAG: `{mn_id}` or `{mag}` (LMA).
    Revoke(Value),
    /// MAGs and their heartbeat state (LMA).
    Peers,
    /// Installed data-plane resources (MAG).
    Resources,
    /// A mobile node's own request on the MN channel (LMA, [`mn_channel`]): the mobile node is
    /// the one whose registered prefix holds `source`, never one the request names.
    MobileNode {
        /// The request's source address, as the TCP connection reported it.
        source: std::net::IpAddr,
        /// What it asks.
        call: mn_channel::MnCall,
    },
}

/// A response body.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// JSON.
    Json(Value),
    /// Prometheus text.
    Text(String),
}

/// The driver's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Body,
}

impl Response {
    /// 200 with a JSON body.
    pub fn ok(value: Value) -> Self {
        Self { status: 200, body: Body::Json(value) }
    }

    /// An error status with `{"error": reason}`.
    pub fn error(status: u16, reason: impl Into<String>) -> Self {
        Self { status, body: Body::Json(json!({ "error": reason.into() })) }
    }

    /// 404 for a request the daemon's role does not serve.
    pub fn not_served(role: &str) -> Self {
        Self::error(404, format!("not served by a {role}"))
    }

    /// The error text, when the body is `{"error": ...}`.
    pub fn error_reason(&self) -> Option<&str> {
        match &self.body {
            Body::Json(v) => v.get("error").and_then(Value::as_str),
            Body::Text(_) => None,
        }
    }
}

/// A request and where its answer goes.
#[derive(Debug)]
pub struct Call {
    /// The request.
    pub request: Request,
    /// The answer's way back.
    pub reply: oneshot::Sender<Response>,
}

/// The channel between the HTTP handlers and the driver.
pub fn channel() -> (mpsc::Sender<Call>, mpsc::Receiver<Call>) {
    mpsc::channel(CHANNEL_BOUND)
}

/// The next request for the driver; pending forever when there is no API.
pub async fn next_call(receiver: &mut Option<mpsc::Receiver<Call>>) -> Option<Call> {
    match receiver {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Where the API listens, as checked from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// The unix socket.
    pub socket: Option<PathBuf>,
    /// A TCP address (`127.0.0.1:9100`), if any.
    pub listen: Option<SocketAddr>,
}

/// The running API server: its tasks stop and its socket file goes when it is dropped.
#[derive(Debug)]
pub struct ApiServer {
    socket: Option<PathBuf>,
    tcp: Option<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    mn_channel: Option<mn_channel::MnChannel>,
}

impl ApiServer {
    /// The unix socket served.
    pub fn socket(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    /// The TCP address served (with the port the kernel chose for port 0).
    pub fn tcp(&self) -> Option<SocketAddr> {
        self.tcp
    }

    /// The MN channel served beside the control API (LMA), if any.
    pub fn mn_channel(&self) -> Option<&mn_channel::MnChannel> {
        self.mn_channel.as_ref()
    }

    /// Keeps the MN channel's listener alive as long as this server.
    pub fn set_mn_channel(&mut self, channel: mn_channel::MnChannel) {
        self.mn_channel = Some(channel);
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(path) = &self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds the unix socket (and the TCP address) of `settings` and spawns the servers, which
/// send their requests to `sender`. Must be called inside a tokio runtime. A stale socket file
/// (nobody listening) is replaced; a live one is an error.
pub fn start(settings: &ApiSettings, sender: mpsc::Sender<Call>) -> std::io::Result<ApiServer> {
    let mut server = ApiServer { socket: None, tcp: None, tasks: Vec::new(), mn_channel: None };
    if let Some(path) = &settings.socket {
        let listener = bind_unix(path)?;
        server.socket = Some(path.clone());
        let app = router(sender.clone());
        let path = path.clone();
        server.tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(socket = %path.display(), error = %e, "control API stopped");
            }
        }));
    }
    if let Some(addr) = settings.listen {
        let std_listener = std::net::TcpListener::bind(addr)
            .map_err(|e| std::io::Error::new(e.kind(), format!("control API on {addr}: {e}")))?;
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        server.tcp = listener.local_addr().ok();
        let app = router(sender);
        server.tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(%addr, error = %e, "control API stopped");
            }
        }));
    }
    if let Some(path) = &server.socket {
        tracing::info!(socket = %path.display(), tcp = ?server.tcp, "control API listening");
    } else if let Some(addr) = server.tcp {
        tracing::info!(%addr, "control API listening");
    }
    Ok(server)
}

fn bind_unix(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    let context = |e: std::io::Error| std::io::Error::new(e.kind(), format!("control socket {}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(context)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(context(std::io::Error::new(std::io::ErrorKind::AddrInUse, "another daemon is listening")));
        }
        std::fs::remove_file(path).map_err(context)?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(context)?;
    // Owner and group only: the API can move flows and revoke sessions.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(context)?;
    Ok(listener)
}

/// The HTTP routes, each a [`Request`] to the driver behind `sender`.
pub fn router(sender: mpsc::Sender<Call>) -> Router {
    fn fixed(request: Request) -> impl Fn(State<mpsc::Sender<Call>>) -> CallFuture + Clone {
        move |State(tx)| Box::pin(call(tx, request.clone()))
    }
    Router::new()
        .route("/status", get(fixed(Request::Status)))
        .route("/metrics", get(fixed(Request::Metrics)))
        .route("/bindings", get(fixed(Request::Bindings)))
        .route("/mobile-nodes", get(fixed(Request::MobileNodes)))
        .route("/flows", get(fixed(Request::Flows)))
        .route("/peers", get(fixed(Request::Peers)))
        .route("/resources", get(fixed(Request::Resources)))
        .route(
            "/policies",
            get(fixed(Request::Policies))
                .post(|State(tx): State<mpsc::Sender<Call>>, body: HttpBody| with_json(tx, body, Request::AddPolicy)),
        )
        .route("/policies/{index}", delete(delete_policy))
        .route(
            "/flows/move",
            post(|State(tx): State<mpsc::Sender<Call>>, body: HttpBody| with_json(tx, body, Request::MoveFlow)),
        )
        .route(
            "/bindings/revoke",
            post(|State(tx): State<mpsc::Sender<Call>>, body: HttpBody| with_json(tx, body, Request::Revoke)),
        )
        .fallback(|| async { http(Response::error(404, "no such endpoint")) })
        .method_not_allowed_fallback(|| async { http(Response::error(405, "method not allowed here")) })
        .with_state(sender)
}

type CallFuture = std::pin::Pin<Box<dyn std::future::Future<Output = axum::response::Response> + Send>>;

async fn delete_policy(
    State(tx): State<mpsc::Sender<Call>>,
    axum::extract::Path(index): axum::extract::Path<String>,
) -> axum::response::Response {
    match index.parse::<usize>() {
        Ok(index) => call(tx, Request::DeletePolicy(index)).await,
        Err(_) => http(Response::error(400, format!("`{index}` is not a rule index"))),
    }
}

async fn with_json(tx: mpsc::Sender<Call>, body: HttpBody, make: fn(Value) -> Request) -> axum::response::Response {
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => return http(Response::error(413, format!("body over {MAX_BODY} octets, or unreadable"))),
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(value) => call(tx, make(value)).await,
        Err(e) => http(Response::error(400, format!("body is not JSON: {e}"))),
    }
}

async fn call(tx: mpsc::Sender<Call>, request: Request) -> axum::response::Response {
    http(ask(&tx, request).await)
}

/// Sends `request` to the driver and waits for its answer (503 when the channel is full, the
/// daemon stops, or no answer comes within [`ANSWER_TIMEOUT`]).
async fn ask(tx: &mpsc::Sender<Call>, request: Request) -> Response {
    let (reply, answer) = oneshot::channel();
    match tx.try_send(Call { request, reply }) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => return Response::error(503, "busy: too many requests waiting"),
        Err(mpsc::error::TrySendError::Closed(_)) => return Response::error(503, "the daemon is stopping"),
    }
    match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
        Ok(Ok(response)) => response,
        Ok(Err(_)) => Response::error(503, "the daemon is stopping"),
        Err(_) => Response::error(503, "no answer from the daemon in time"),
    }
}

fn http(response: Response) -> axum::response::Response {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match response.body {
        Body::Json(value) => (status, axum::Json(value)).into_response(),
        Body::Text(text) => {
            (status, [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
                .into_response()
        }
    }
}

// ---- shared by both roles -------------------------------------------------------------------------

/// The status both roles share: role, local address, uptime, the driver's counters.
pub fn status<E: Engine>(driver: &Driver<E>, now: Now, role: &str) -> Value {
    let c = &driver.counters;
    json!({
        "role": role,
        "local": driver.local.to_string(),
        "uptime_secs": driver.uptime(now).as_secs(),
        "counters": {
            "received": c.received,
            "malformed": c.malformed,
            "sent": c.sent,
            "send_errors": c.send_errors,
            "unsupported_transmits": c.unsupported_transmits,
            "nd_received": c.nd_received,
            "nd_dropped": c.nd_dropped,
        },
    })
}

/// Brings the metrics the driver counts itself up to date, then encodes every metric.
pub fn metrics_text<E: Engine>(driver: &Driver<E>, now: Now) -> Response {
    use crate::metrics::sync_counter;
    let m = &driver.metrics;
    let c = &driver.counters;
    sync_counter(&m.datagrams_received, c.received);
    sync_counter(&m.sends, c.sent);
    sync_counter(&m.send_errors, c.send_errors);
    sync_counter(&m.nd_received, c.nd_received);
    sync_counter(&m.nd_dropped, c.nd_dropped);
    m.uptime_seconds.set(i64::try_from(driver.uptime(now).as_secs()).unwrap_or(i64::MAX));
    Response { status: 200, body: Body::Text(m.encode()) }
}

/// A MN-ID as the API writes it: the NAI itself, or `subtype:hex` for other kinds.
pub fn mn_text(mn: &MnIdentifier) -> String {
    match (mn.subtype, std::str::from_utf8(&mn.identifier)) {
        (MnIdSubtype::Nai, Ok(text)) => text.to_owned(),
        _ => mn.to_string(),
    }
}

/// A MN-ID as the API reads it: an NAI, with or without the `nai:` prefix.
pub fn parse_mn(text: &str) -> Result<MnIdentifier, String> {
    let nai = text.strip_prefix("nai:").unwrap_or(text);
    if nai.is_empty() {
        return Err("empty mn_id".to_owned());
    }
    Ok(MnIdentifier::nai(nai))
}

/// Link-layer octets as `02:00:00:00:00:01`.
pub fn hex_colon(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// `02:00:00:00:00:01` (or `0200...` without separators) as octets.
pub fn parse_hex_colon(text: &str) -> Option<Vec<u8>> {
    let digits: String = text.chars().filter(|c| *c != ':' && *c != '-').collect();
    if digits.is_empty() || digits.len() % 2 != 0 || digits.len() > 256 {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| digits.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_read_and_write() {
        let mn = parse_mn("nai:mn1@example.net").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mn, MnIdentifier::nai("mn1@example.net"));
        assert_eq!(mn_text(&mn), "mn1@example.net");
        assert!(parse_mn("nai:").is_err());
        assert_eq!(parse_hex_colon("02:00:00:00:00:01"), Some(vec![2, 0, 0, 0, 0, 1]));
        assert_eq!(parse_hex_colon("0g"), None);
        assert_eq!(parse_hex_colon("abc"), None);
        assert_eq!(hex_colon(&[2, 0xab]), "02:ab");
    }
}
