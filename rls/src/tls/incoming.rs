//! [`incoming`]: the gRPC listener's connections as tonic takes them, [`GrpcStream`]s —
//! plain TCP, or TLS terminated here with the configuration of the moment. Handshakes run
//! on tasks of their own, so that a slow client holds up no other.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

use super::ServerTls;

/// Longest TLS handshake: a client that takes longer is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for tonic to take them.
const READY_CONNECTIONS: usize = 64;

/// One gRPC connection.
pub enum GrpcStream {
    /// Plain HTTP/2.
    Plain(TcpStream),
    /// HTTP/2 over TLS.
    Tls(Box<TlsStream<TcpStream>>),
}

/// The connections of `listener`: TLS when `tls` is given, with its configuration at the
/// time of each handshake. A failed handshake is logged and dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
) -> Pin<Box<dyn Stream<Item = io::Result<GrpcStream>> + Send>> {
    let plain = TcpIncoming::from(listener).with_nodelay(Some(true));
    let Some(tls) = tls else {
        return Box::pin(plain.map(|tcp| tcp.map(GrpcStream::Plain)));
    };
    let (ready, taken) = mpsc::channel(READY_CONNECTIONS);
    tokio::spawn(accept(plain, tls, ready));
    Box::pin(ReceiverStream::new(taken))
}

/// Accepts connections and hands each to a handshake task, until tonic stops taking them.
async fn accept(
    mut plain: TcpIncoming,
    tls: Arc<ServerTls>,
    ready: mpsc::Sender<io::Result<GrpcStream>>,
) {
    loop {
        let tcp = tokio::select! {
            tcp = plain.next() => tcp,
            () = ready.closed() => return,
        };
        match tcp {
            None => return,
            Some(Err(error)) => tracing::debug!(%error, "gRPC accept failed"),
            Some(Ok(tcp)) => {
                let (acceptor, ready) = (tls.acceptor(), ready.clone());
                tokio::spawn(async move {
                    let peer = tcp.peer_addr().ok();
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = ready.send(Ok(GrpcStream::Tls(Box::new(stream)))).await;
                        }
                        Ok(Err(error)) => tracing::info!(?peer, %error, "TLS handshake refused"),
                        Err(_) => tracing::info!(?peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

impl GrpcStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            GrpcStream::Plain(tcp) => tcp,
            GrpcStream::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl Connected for GrpcStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.tcp().connect_info()
    }
}

impl AsyncRead for GrpcStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            GrpcStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            GrpcStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for GrpcStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            GrpcStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            GrpcStream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    // hyper writes a response's frames in one `writev` when the stream can.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            GrpcStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            GrpcStream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            GrpcStream::Plain(s) => s.is_write_vectored(),
            GrpcStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            GrpcStream::Plain(s) => Pin::new(s).poll_flush(cx),
            GrpcStream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            GrpcStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            GrpcStream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
