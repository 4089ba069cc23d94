//! The edge's certificate and its QUIC server configuration.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use quinn::crypto::rustls::QuicServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use crate::config::{EdgeConfig, TlsSource};

/// Datagrams queued for sending per connection before quinn drops the oldest: a few
/// snapshots' worth, so a stalled path never holds stale state.
const DATAGRAM_SEND_BUFFER: usize = 16 * 1024;
/// Datagrams buffered per connection on receipt, until the connection's reader takes them
/// into the seat's inbox (`worker::QuicLink`), before quinn drops the oldest.
const DATAGRAM_RECEIVE_BUFFER: usize = 64 * 1024;

/// A loaded certificate: chain, key and the leaf's fingerprint.
pub struct Certificate {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf certificate's DER bytes; clients may pin it.
    pub fingerprint: [u8; 32],
}

impl Certificate {
    /// Loads or generates the certificate the config names.
    pub fn load(source: &TlsSource) -> anyhow::Result<Self> {
        let (chain, key) = match source {
            TlsSource::SelfSigned => {
                let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
                    .context("generating a self-signed certificate")?;
                let key = PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der());
                (
                    vec![generated.cert.der().clone()],
                    PrivateKeyDer::Pkcs8(key),
                )
            }
            TlsSource::Files { cert, key } => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .with_context(|| format!("reading certificate {}", cert.display()))?
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("parsing certificate {}", cert.display()))?;
                anyhow::ensure!(!chain.is_empty(), "no certificate in {}", cert.display());
                let key = PrivateKeyDer::from_pem_file(key)
                    .with_context(|| format!("reading private key {}", key.display()))?;
                (chain, key)
            }
        };
        let fingerprint = fingerprint(&chain[0]);
        Ok(Self {
            chain,
            key,
            fingerprint,
        })
    }

    /// The quinn server configuration for this certificate and edge config.
    pub fn server_config(&self, config: &EdgeConfig) -> anyhow::Result<quinn::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .context("certificate and key do not match")?;
        tls.alpn_protocols = vec![outpost_protocol::ALPN.to_vec()];
        let mut server =
            quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
        server.transport_config(Arc::new(transport_config(config.idle_timeout)?));
        Ok(server)
    }
}

/// Transport settings shared by the edge and clients: datagrams on, bounded buffers, a
/// keep-alive well inside the idle timeout, and only the one control stream per peer.
pub fn transport_config(idle_timeout: Duration) -> anyhow::Result<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(quinn::IdleTimeout::try_from(idle_timeout)?))
        .keep_alive_interval(Some(idle_timeout / 4))
        .datagram_receive_buffer_size(Some(DATAGRAM_RECEIVE_BUFFER))
        .datagram_send_buffer_size(DATAGRAM_SEND_BUFFER)
        .max_concurrent_bidi_streams(1u32.into())
        .max_concurrent_uni_streams(0u32.into())
        // BBR paces by measured bandwidth and round trip; loss-based controllers (Cubic,
        // NewReno) read a lossy mobile link's random loss as congestion, shrink to a couple
        // of packets per round trip and batch a dozen tick datagrams into each, so one lost
        // packet loses more inputs or snapshots than redundancy covers.
        .congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()))
        // Acknowledgements ride the next datagram rather than a packet of their own: ask
        // the peer to wait for up to its ack delay (25 ms here) instead of answering every
        // second packet (`docs/netcode.md`, "Transport choices").
        .ack_frequency_config(Some(ack_frequency()));
    Ok(transport)
}

/// SHA-256 of a certificate's DER bytes.
pub fn fingerprint(cert: &CertificateDer<'_>) -> [u8; 32] {
    Sha256::digest(cert.as_ref()).into()
}

/// The acknowledgement frequency asked of the peer: the edge's and the SDK's are the same.
fn ack_frequency() -> quinn::AckFrequencyConfig {
    let mut ack = quinn::AckFrequencyConfig::default();
    ack.ack_eliciting_threshold(ACK_ELICITING_THRESHOLD.into());
    ack
}

/// Ack-eliciting packets a peer may take in before it must acknowledge: a tick's datagrams
/// both ways (30–60 Hz) meet within the ack delay, so the acknowledgement is carried.
const ACK_ELICITING_THRESHOLD: u32 = 8;
