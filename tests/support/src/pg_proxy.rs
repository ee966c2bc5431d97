//! A TCP proxy in front of the test cluster's socket that can misbehave the way real networks
//! and poolers do: freeze (stop passing bytes either way, connections left open, as a frozen
//! host or a network that drops packets does), or refuse the `options` startup parameter as
//! PgBouncer does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::watch;

use crate::cluster::cluster;

/// PgBouncer's answer to a startup packet with `options` (an ErrorResponse: severity, code,
/// message), as it sends it unless told `ignore_startup_parameters = options`.
const UNSUPPORTED_OPTIONS: &[u8] =
    b"SFATAL\0VFATAL\0C08P01\0Munsupported startup parameter: options\0\0";

/// The protocol code of an SSLRequest (sent instead of a startup packet to ask for TLS).
const SSL_REQUEST: u32 = 80_877_103;

/// A running proxy; it stops with the test's runtime.
pub struct PgProxy {
    addr: SocketAddr,
    frozen: watch::Sender<bool>,
    refused: Arc<AtomicUsize>,
}

impl PgProxy {
    /// Starts a proxy to the test cluster; with `refuse_options`, it answers a startup packet
    /// that carries `options` as PgBouncer does.
    pub async fn start(refuse_options: bool) -> PgProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let socket = tokio::task::spawn_blocking(|| {
            let cluster = cluster();
            cluster
                .socket_dir()
                .join(format!(".s.PGSQL.{}", cluster.port()))
        })
        .await
        .expect("cluster thread");
        let (frozen, watching) = watch::channel(false);
        let refused = Arc::new(AtomicUsize::new(0));
        let counter = refused.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (socket, frozen, counter) = (socket.clone(), watching.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(server) = UnixStream::connect(&socket).await else {
                        return;
                    };
                    relay(client, server, refuse_options, frozen, &counter).await;
                });
            }
        });
        PgProxy {
            addr,
            frozen,
            refused,
        }
    }

    /// The URL of `url`'s database through this proxy.
    pub fn url(&self, url: &str) -> String {
        let database = url.rsplit('/').next().expect("a database name");
        format!("postgres://postgres@{}/{database}", self.addr)
    }

    /// Stops passing bytes, either way, on every connection (they stay open).
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Passes bytes again.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// Startup packets refused so far for carrying `options`.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Relays one connection, checking its startup packet first.
async fn relay(
    mut client: TcpStream,
    server: UnixStream,
    refuse_options: bool,
    frozen: watch::Receiver<bool>,
    refused: &AtomicUsize,
) {
    let Some(startup) = startup_packet(&mut client).await else {
        return;
    };
    if refuse_options && startup.windows(8).any(|w| w == b"options\0") {
        refused.fetch_add(1, Ordering::Relaxed);
        let mut answer = vec![b'E'];
        answer.extend_from_slice(&(UNSUPPORTED_OPTIONS.len() as u32 + 4).to_be_bytes());
        answer.extend_from_slice(UNSUPPORTED_OPTIONS);
        let _ = client.write_all(&answer).await;
        return;
    }
    let (client_read, client_write) = client.into_split();
    let (server_read, mut server_write) = server.into_split();
    if server_write.write_all(&startup).await.is_err() {
        return;
    }
    let gone = AtomicBool::new(false);
    tokio::join!(
        pass(client_read, server_write, frozen.clone(), &gone),
        pass(server_read, client_write, frozen, &gone),
    );
}

/// The client's startup packet (length included), answering an SSLRequest with "no" first.
async fn startup_packet(client: &mut TcpStream) -> Option<Vec<u8>> {
    loop {
        let len = client.read_u32().await.ok()?;
        let mut packet = len.to_be_bytes().to_vec();
        packet.resize(usize::try_from(len).ok()?.max(4), 0);
        client.read_exact(&mut packet[4..]).await.ok()?;
        if len == 8 && packet[4..8] == SSL_REQUEST.to_be_bytes() {
            client.write_all(b"N").await.ok()?;
            continue;
        }
        return Some(packet);
    }
}

/// Copies `from` to `to`, holding whatever arrives while frozen, until either side closes.
async fn pass(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut frozen: watch::Receiver<bool>,
    gone: &AtomicBool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    while !gone.load(Ordering::Relaxed) {
        let n = match from.read(&mut buf).await {
            Ok(n) if n > 0 => n,
            _ => break,
        };
        if frozen.wait_for(|frozen| !*frozen).await.is_err()
            || to.write_all(&buf[..n]).await.is_err()
        {
            break;
        }
    }
    gone.store(true, Ordering::Relaxed);
    let _ = to.shutdown().await;
}
