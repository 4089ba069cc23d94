//! How the client trusts an edge: by pinning its certificate's SHA-256 fingerprint (what
//! the cloud hands out with a match assignment, and what dev edges print), or by a set of
//! root certificates for edges with CA-issued certificates.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::ClientError;

/// How to trust the edge's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Accept exactly the certificate with this SHA-256 fingerprint (of its DER bytes).
    Pinned([u8; 32]),
    /// Accept certificates chaining to these roots, for the assignment's server name.
    Roots(Arc<RootCertStore>),
}

#[derive(Debug)]
struct PinnedVerifier {
    fingerprint: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if seen == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "edge certificate does not match the pinned fingerprint".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is offered (QUIC requires it).
        Err(rustls::Error::General("TLS 1.2 is not used".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The quinn client configuration the SDK connects with, for a trust choice: for tools
/// that open their own quinn connections to an edge.
pub fn client_config(
    trust: &Trust,
    idle_timeout: Duration,
) -> Result<quinn::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let mut tls = match trust {
        Trust::Pinned(fingerprint) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                fingerprint: *fingerprint,
                provider,
            }))
            .with_no_client_auth(),
        Trust::Roots(roots) => builder
            .with_root_certificates(roots.clone())
            .with_no_client_auth(),
    };
    tls.alpn_protocols = vec![outpost_protocol::ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|e| ClientError::Tls(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(idle_timeout)
                .map_err(|e| ClientError::Tls(e.to_string()))?,
        ))
        .keep_alive_interval(Some(idle_timeout / 4))
        .datagram_receive_buffer_size(Some(64 * 1024))
        .datagram_send_buffer_size(16 * 1024)
        .max_concurrent_bidi_streams(0u32.into())
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
    config.transport_config(Arc::new(transport));
    Ok(config)
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
