//! [`HttpCaller`]: `GET` requests over HTTP/1.1 (one connection per worker: a connection
//! carries one request at a time) or HTTP/2 (prior knowledge; workers share connections),
//! opened again when one breaks. A 2xx answer counts as allowed, 429 as limited.

use std::sync::Arc;
use std::time::Duration;

use http::header::HOST;
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::error::HarnessError;
use crate::generator::Caller;
use crate::stats::Outcome;

/// Where the requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `host:port`, to connect to and as the `host` header.
    pub authority: String,
    /// Path and query.
    pub path: String,
    /// HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
    pub http2: bool,
}

impl Target {
    /// Reads `http://HOST:PORT/PATH`; only plain `http` is spoken.
    pub fn parse(url: &str, http2: bool) -> Result<Target, HarnessError> {
        let invalid = |why: &str| HarnessError::Workload(format!("--target {url}: {why}"));
        let uri: Uri = url.parse().map_err(|_| invalid("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(invalid("write http://HOST:PORT/PATH (TLS is not spoken)"));
        }
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        Ok(Target {
            authority: format!("{}:{port}", authority.host()),
            path: uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string()),
            http2,
        })
    }
}

/// An open connection.
enum Sender {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

/// Sends request number `n` as `GET` with the headers of key `n`. A clone shares an
/// HTTP/2 connection and opens its own HTTP/1.1 one.
pub struct HttpCaller {
    target: Arc<Target>,
    headers: Arc<Vec<HeaderMap>>,
    sender: Option<Sender>,
}

impl Clone for HttpCaller {
    fn clone(&self) -> Self {
        let sender = match &self.sender {
            Some(Sender::H2(sender)) => Some(Sender::H2(sender.clone())),
            _ => None,
        };
        HttpCaller {
            target: self.target.clone(),
            headers: self.headers.clone(),
            sender,
        }
    }
}

/// What an HTTP answer counts as: 2xx allowed, 429 limited, anything else neither.
pub fn outcome(status: StatusCode) -> Outcome {
    match status {
        s if s.is_success() => Outcome::Ok,
        StatusCode::TOO_MANY_REQUESTS => Outcome::OverLimit,
        _ => Outcome::Unknown,
    }
}

/// How `loadtest http` names an outcome in its report.
pub fn label(outcome: Outcome) -> String {
    match outcome {
        Outcome::Ok => "2xx".into(),
        Outcome::OverLimit => "429".into(),
        Outcome::Unknown => "other status".into(),
        Outcome::Error(tonic::Code::DeadlineExceeded) => "timed out".into(),
        Outcome::Error(_) => "connection failed".into(),
    }
}

impl HttpCaller {
    /// A caller of `target` sending `headers[n]` with request `n`, connected before it
    /// returns (so that an unreachable target is an error, not a run of failures).
    pub async fn connect(
        target: Arc<Target>,
        headers: Arc<Vec<HeaderMap>>,
        timeout: Duration,
    ) -> Result<HttpCaller, HarnessError> {
        let sender = match tokio::time::timeout(timeout, open(&target)).await {
            Ok(Ok(sender)) => sender,
            Ok(Err(why)) => return Err(unreachable(&target, &why)),
            Err(_) => return Err(unreachable(&target, "timed out")),
        };
        Ok(HttpCaller {
            target,
            headers,
            sender: Some(sender),
        })
    }

    async fn send(&mut self, number: u32) -> Result<StatusCode, String> {
        if self.sender.is_none() {
            self.sender = Some(open(&self.target).await?);
        }
        let mut request = Request::get(self.target.path.as_str())
            .header(HOST, self.target.authority.as_str())
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        if let Some(headers) = self.headers.get(number as usize) {
            request.headers_mut().extend(headers.clone());
        }
        let response = match self.sender.as_mut() {
            Some(Sender::H1(sender)) => {
                sender.ready().await.map_err(|e| e.to_string())?;
                sender.send_request(request).await
            }
            Some(Sender::H2(sender)) => {
                sender.ready().await.map_err(|e| e.to_string())?;
                sender.send_request(request).await
            }
            None => return Err("not connected".into()),
        }
        .map_err(|e| e.to_string())?;
        let status = response.status();
        // Read to the end, so that the connection can carry the next request.
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(status)
    }
}

impl Caller for HttpCaller {
    async fn call(&mut self, number: u32, _timeout: Duration) -> Outcome {
        match self.send(number).await {
            Ok(status) => outcome(status),
            Err(_) => {
                // Broken or refused: the next request opens a new connection.
                self.sender = None;
                Outcome::Error(tonic::Code::Unavailable)
            }
        }
    }
}

fn unreachable(target: &Target, why: &str) -> HarnessError {
    HarnessError::Workload(format!("cannot connect to {}: {why}", target.authority))
}

async fn open(target: &Target) -> Result<Sender, String> {
    let stream = TcpStream::connect(&target.authority)
        .await
        .map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let io = TokioIo::new(stream);
    if target.http2 {
        let (sender, connection) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        Ok(Sender::H2(sender))
    } else {
        let (sender, connection) = http1::handshake(io).await.map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        Ok(Sender::H1(sender))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_a_plain_http_url_with_a_port() {
        let target = Target::parse("http://127.0.0.1:10000/api?x=1", false).expect("valid");
        assert_eq!(target.authority, "127.0.0.1:10000");
        assert_eq!(target.path, "/api?x=1");
        assert_eq!(
            Target::parse("http://envoy", true)
                .expect("valid")
                .authority,
            "envoy:80"
        );
        assert!(Target::parse("https://envoy/", false).is_err());
        assert!(Target::parse("envoy:10000", false).is_err());
    }

    #[test]
    fn two_hundreds_are_allowed_and_429_limited() {
        assert_eq!(outcome(StatusCode::OK), Outcome::Ok);
        assert_eq!(outcome(StatusCode::NO_CONTENT), Outcome::Ok);
        assert_eq!(outcome(StatusCode::TOO_MANY_REQUESTS), Outcome::OverLimit);
        assert_eq!(outcome(StatusCode::SERVICE_UNAVAILABLE), Outcome::Unknown);
        assert_eq!(
            label(Outcome::Error(tonic::Code::Unavailable)),
            "connection failed"
        );
    }
}
