//! An HTTP/1 client of the control API over its unix socket (`pmip6 ctl`, tests), and of the
//! LMA's MN channel over TCP (`pmip6 mn`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// Largest answer read, in octets.
pub const MAX_ANSWER: usize = 64 * 1024 * 1024;
/// How long one exchange may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error(
        "cannot connect to the control socket {path} (is the daemon running, with an [api] table in its configuration?)"
    )]
    Connect {
        /// The socket.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TCP address could not be reached.
    #[error("cannot connect to {addr} (is the LMA's MN channel, [mn_api], reachable from here?)")]
    ConnectTcp {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("control API: {0}")]
    Http(String),
    /// No answer in time.
    #[error("control API: no answer within {0:?}")]
    Timeout(Duration),
}

/// An HTTP answer: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// Sends one request (`method` `GET`, `POST` or `DELETE`; `body` JSON for POST) to the API on
/// the unix socket at `socket`.
pub async fn request(socket: &Path, method: &str, path: &str, body: Option<String>) -> Result<Answer, ClientError> {
    tokio::time::timeout(TIMEOUT, exchange(socket, method, path, body))
        .await
        .unwrap_or(Err(ClientError::Timeout(TIMEOUT)))
}

async fn exchange(socket: &Path, method: &str, path: &str, body: Option<String>) -> Result<Answer, ClientError> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect { path: socket.display().to_string(), source })?;
    over(stream, method, path, body).await
}

/// Sends one request (`method` `GET`, `PUT`, `POST` or `DELETE`; `body` JSON) over TCP to
/// `addr` (the LMA's MN channel).
pub async fn request_tcp(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<Answer, ClientError> {
    let exchange = async {
        let stream =
            tokio::net::TcpStream::connect(addr).await.map_err(|source| ClientError::ConnectTcp { addr, source })?;
        over(stream, method, path, body).await
    };
    tokio::time::timeout(TIMEOUT, exchange).await.unwrap_or(Err(ClientError::Timeout(TIMEOUT)))
}

/// [`request_tcp`] on a runtime of its own, for callers without one.
pub fn request_tcp_blocking(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<Answer, ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Http(format!("runtime: {e}")))?;
    runtime.block_on(request_tcp(addr, method, path, body))
}

/// One exchange over a connected stream.
async fn over<S>(stream: S, method: &str, path: &str, body: Option<String>) -> Result<Answer, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let driving = tokio::spawn(connection);
    let mut builder = hyper::Request::builder().method(method).uri(path).header(hyper::header::HOST, "localhost");
    if body.is_some() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let request =
        builder.body(Full::new(Bytes::from(body.unwrap_or_default()))).map_err(|e| ClientError::Http(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(|e| ClientError::Http(e.to_string()))?;
    let status = response.status().as_u16();
    let bytes = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
        .to_bytes();
    driving.abort();
    Ok(Answer { status, body: String::from_utf8_lossy(&bytes).into_owned() })
}

/// [`request`] on a runtime of its own, for callers without one.
pub fn request_blocking(socket: &Path, method: &str, path: &str, body: Option<String>) -> Result<Answer, ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Http(format!("runtime: {e}")))?;
    runtime.block_on(request(socket, method, path, body))
}
