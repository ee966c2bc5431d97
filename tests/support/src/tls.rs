//! TLS in tests: a self-signed certificate for `localhost` as the server's PEM files, and a
//! client connection that trusts it and asks for a protocol by ALPN.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{CertifiedKey, KeyPair};
use taskstream::config::TlsFiles;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// A self-signed certificate for `localhost`, and the server's files of it (named for `name`).
/// The files are removed by [`cleanup`] once the server has read them.
pub fn certificate(name: &str) -> (CertifiedKey<KeyPair>, TlsFiles) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("self-signed certificate");
    let dir = std::env::temp_dir().join(format!("taskstream-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    (certified, TlsFiles { cert, key })
}

/// Removes the files of [`certificate`].
pub fn cleanup(files: &TlsFiles) {
    if let Some(dir) = files.cert.parent() {
        std::fs::remove_dir_all(dir).expect("clean up");
    }
}

/// A TLS connection to `addr` that trusts `certified` and offers `alpn` (`h2`, `http/1.1`).
pub async fn connect(
    addr: SocketAddr,
    certified: &CertifiedKey<KeyPair>,
    alpn: &str,
) -> TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    roots
        .add(certified.cert.der().clone())
        .expect("trust the certificate");
    let mut client = ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    client.alpn_protocols = vec![alpn.as_bytes().to_vec()];
    let tcp = TcpStream::connect(addr).await.expect("connect");
    TlsConnector::from(Arc::new(client))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake")
}
