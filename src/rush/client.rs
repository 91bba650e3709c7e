//! One keep-alive HTTP/1.1 connection per rush worker, on hyper's low-level
//! client: no pool to share, no per-request allocation beyond the request.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where requests go: a socket address and the `Host` to name.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub authority: String,
    /// `Authorization: Bearer <key>` sent with every request (`crema rush --key`).
    pub authorization: Option<http::HeaderValue>,
}

impl Target {
    /// `http://host:port` (no path, no TLS).
    pub async fn resolve(url: &str) -> Result<Target, String> {
        let uri: http::Uri = url.parse().map_err(|err| format!("target {url:?}: {err}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("target {url:?}: only http:// URLs are supported"));
        }
        if !matches!(uri.path(), "" | "/") {
            return Err(format!("target {url:?}: give the server's root, without a path"));
        }
        let authority = uri.authority().ok_or_else(|| format!("target {url:?}: no host"))?.to_string();
        let host_port = if uri.port().is_some() { authority.clone() } else { format!("{authority}:80") };
        let addr = tokio::net::lookup_host(&host_port)
            .await
            .map_err(|err| format!("target {url:?}: {err}"))?
            .next()
            .ok_or_else(|| format!("target {url:?}: no address"))?;
        Ok(Target { addr, authority, authorization: None })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no answer in time")]
    Timeout,
    #[error("{0}")]
    Io(String),
}

/// A connection that reconnects lazily after it breaks or the server closes it.
pub struct Connection {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    pub fn new(target: Target) -> Connection {
        Connection { target, sender: None }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, CallError> {
        let stream = TcpStream::connect(self.target.addr).await.map_err(|err| CallError::Io(err.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| CallError::Io(err.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Sends one request and reads the whole answer, within `timeout`
    /// (connecting included). A failed call drops the connection.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), CallError> {
        self.call_with(method, path, body, None, timeout).await.map(|answer| (answer.status, answer.body))
    }

    /// [`Connection::call`] with an optional `Idempotency-Key`, answering the
    /// `Retry-After` header (whole seconds) too.
    pub async fn call_with(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        idempotency_key: Option<&str>,
        timeout: Duration,
    ) -> Result<Answer, CallError> {
        match tokio::time::timeout(timeout, self.call_inner(method, path, body, idempotency_key)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(err)) => {
                self.sender = None;
                Err(err)
            }
            Err(_) => {
                self.sender = None;
                Err(CallError::Timeout)
            }
        }
    }

    async fn call_inner(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, CallError> {
        if self.sender.as_ref().is_none_or(|sender| sender.is_closed()) {
            self.sender = Some(self.connect().await?);
        }
        let sender = self.sender.as_mut().expect("connected above");
        sender.ready().await.map_err(|err| CallError::Io(err.to_string()))?;
        let mut request = Request::builder().method(method).uri(path).header(header::HOST, &self.target.authority);
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        if let Some(authorization) = &self.target.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        let request = request.body(Full::new(body.unwrap_or_default())).map_err(|err| CallError::Io(err.to_string()))?;
        let response = sender.send_request(request).await.map_err(|err| CallError::Io(err.to_string()))?;
        let status = response.status();
        let retry_after_s = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<u64>().ok());
        let body = response.into_body().collect().await.map_err(|err| CallError::Io(err.to_string()))?.to_bytes();
        Ok(Answer { status, retry_after_s, body })
    }
}

/// One answer: status, `Retry-After` in seconds if given, body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub retry_after_s: Option<u64>,
    pub body: Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// `crema rush --key` sends the key on every request, marked sensitive.
    #[tokio::test]
    async fn a_target_with_a_key_sends_it_as_a_bearer_token() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buffer = [0u8; 1024];
            while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                let read = socket.read(&mut buffer).await.unwrap();
                head.extend_from_slice(&buffer[..read]);
            }
            socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await.unwrap();
            String::from_utf8(head).unwrap().to_ascii_lowercase()
        });
        let mut authorization = http::HeaderValue::from_static("Bearer crema_k");
        authorization.set_sensitive(true);
        let target = Target { addr, authority: addr.to_string(), authorization: Some(authorization) };
        let mut connection = Connection::new(target);
        let (status, _) = connection.call(Method::GET, "/stats", None, Duration::from_secs(5)).await.unwrap();
        assert_eq!(status, 200);
        assert!(server.await.unwrap().contains("authorization: bearer crema_k\r\n"));
    }
}
