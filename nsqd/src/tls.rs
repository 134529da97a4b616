//! TLS: the rustls server configuration built from the `--tls-*` flags, the HTTPS listener, the
//! plain-HTTP answer under `--tls-required=true`, and the names `/stats` shows for a TLS session.
//!
//! rustls implements TLS 1.2 and 1.3 only: `--tls-min-version=tls1.0` (upstream's default) and
//! `tls1.1` therefore mean "TLS 1.2 or later". The crypto provider is *ring*.

use crate::error::NsqdError;
use crate::options::{Options, TlsRequired};
use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rustls::ServerConfig;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConnection, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Deadline for a TLS handshake (the TCP upgrade and HTTPS).
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// `--tls-required` after applying "a client auth policy forces it on" (upstream's rule).
pub fn effective_tls_required(options: &Options) -> TlsRequired {
    if !options.tls_client_auth_policy.is_empty() && options.tls_required == TlsRequired::No {
        TlsRequired::Yes
    } else {
        options.tls_required
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the server configuration from the flags: `None` without `--tls-cert`/`--tls-key`.
/// Errors carry upstream's startup messages.
pub fn server_config(options: &Options) -> Result<Option<Arc<ServerConfig>>, NsqdError> {
    let required = effective_tls_required(options);
    if options.tls_cert.is_empty() && options.tls_key.is_empty() {
        if required != TlsRequired::No {
            return Err(NsqdError::Config(
                "cannot require TLS client connections without TLS key and cert".to_owned(),
            ));
        }
        return Ok(None);
    }
    build(options)
        .map(|config| Some(Arc::new(config)))
        .map_err(|err| NsqdError::Config(format!("failed to build TLS config - {err}")))
}

fn build(options: &Options) -> Result<ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&options.tls_cert)
        .map_err(|err| format!("open {}: {err}", options.tls_cert))?
        .collect::<Result<_, _>>()
        .map_err(|err| format!("{}: {err}", options.tls_cert))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", options.tls_cert));
    }
    let key = PrivateKeyDer::from_pem_file(&options.tls_key)
        .map_err(|err| format!("{}: {err}", options.tls_key))?;
    let provider = provider();
    let versions: &[&rustls::SupportedProtocolVersion] = match options.tls_min_version.as_str() {
        "tls1.3" => &[&rustls::version::TLS13],
        _ => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|err| err.to_string())?;
    let builder = match options.tls_client_auth_policy.as_str() {
        "require" => builder.with_client_cert_verifier(Arc::new(AnyClientCert {
            provider: Arc::clone(&provider),
        })),
        "require-verify" => {
            let mut roots = rustls::RootCertStore::empty();
            if options.tls_root_ca_file.is_empty() {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            } else {
                for cert in load_certs(&options.tls_root_ca_file)? {
                    roots.add(cert).map_err(|err| err.to_string())?;
                }
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|err| err.to_string())?;
            builder.with_client_cert_verifier(verifier)
        }
        // Upstream treats any other value as "no client certificate".
        _ => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|err| err.to_string())
}

/// Certificates from a PEM file (`--tls-root-ca-file`).
pub(crate) fn load_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .map_err(|err| format!("open {path}: {err}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("{path}: {err}"))
}

/// `--tls-client-auth-policy=require`: a certificate must be presented; it is not verified
/// (Go's `tls.RequireAnyClientCert`), but the handshake signature still is.
#[derive(Debug)]
struct AnyClientCert {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What `/stats` and the auth server learn about a finished handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSessionInfo {
    /// `TLS1.2` / `TLS1.3`.
    pub version: String,
    /// Go's constant name of the cipher suite.
    pub cipher_suite: String,
    /// ALPN protocol, if any.
    pub negotiated_protocol: String,
    /// Subject common name of the client's certificate ("" without one).
    pub common_name: String,
}

impl TlsSessionInfo {
    pub(crate) fn of(connection: &ServerConnection) -> Self {
        let version = match connection.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLS1.2".to_owned(),
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLS1.3".to_owned(),
            Some(other) => format!("Unknown {}", u16::from(other)),
            None => String::new(),
        };
        let cipher_suite = connection
            .negotiated_cipher_suite()
            .map(|suite| cipher_suite_name(u16::from(suite.suite())))
            .unwrap_or_default();
        let negotiated_protocol = connection
            .alpn_protocol()
            .map(|proto| String::from_utf8_lossy(proto).into_owned())
            .unwrap_or_default();
        let common_name = connection
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|cert| common_name(cert))
            .unwrap_or_default();
        Self {
            version,
            cipher_suite,
            negotiated_protocol,
            common_name,
        }
    }
}

/// Go's `crypto/tls` constant name for a cipher suite ID.
pub fn cipher_suite_name(id: u16) -> String {
    match id {
        0x1301 => "TLS_AES_128_GCM_SHA256",
        0x1302 => "TLS_AES_256_GCM_SHA384",
        0x1303 => "TLS_CHACHA20_POLY1305_SHA256",
        0xc02b => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        0xc02c => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        0xc02f => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        0xc030 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        0xcca8 => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0xcca9 => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        other => return format!("Unknown {other}"),
    }
    .to_owned()
}

/// Reads one DER element: (tag, contents, rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, &byte| acc << 8 | usize::from(byte));
        rest = &rest[count..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The subject common name of a DER certificate (the last CN attribute, as Go reports it).
pub fn common_name(cert: &[u8]) -> String {
    fn find(cert: &[u8]) -> Option<String> {
        const CN_OID: &[u8] = &[0x55, 0x04, 0x03];
        let (_, certificate, _) = der(cert)?;
        let (_, mut tbs, _) = der(certificate)?;
        if tbs.first() == Some(&0xa0) {
            tbs = der(tbs)?.2;
        }
        // serial number, signature algorithm, issuer, validity; then the subject.
        for _ in 0..4 {
            tbs = der(tbs)?.2;
        }
        let (_, mut subject, _) = der(tbs)?;
        let mut found = None;
        while !subject.is_empty() {
            let (_, mut set, rest) = der(subject)?;
            subject = rest;
            while !set.is_empty() {
                let (_, attribute, rest) = der(set)?;
                set = rest;
                let (_, oid, value) = der(attribute)?;
                if oid == CN_OID {
                    let (_, text, _) = der(value)?;
                    found = Some(String::from_utf8_lossy(text).into_owned());
                }
            }
        }
        found
    }
    find(cert).unwrap_or_default()
}

/// The plain-HTTP listener's only answer under `--tls-required=true` (upstream's hand-written body).
pub fn tls_required_router(https_port: u16) -> Router {
    Router::new().fallback(move || async move { tls_required_response(https_port) })
}

fn tls_required_response(https_port: u16) -> Response {
    (
        StatusCode::FORBIDDEN,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            ),
            (
                HeaderName::from_static("x-nsq-content-type"),
                HeaderValue::from_static("nsq; version=1.0"),
            ),
        ],
        format!(r#"{{"message": "TLS_REQUIRED", "https_port": {https_port}}}"#),
    )
        .into_response()
}

/// Accepts TCP connections and hands finished TLS sessions to axum. Handshakes run on their own
/// tasks (5 s deadline) so a slow client cannot hold up the listener.
pub(crate) struct HttpsListener {
    sessions: mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl HttpsListener {
    pub(crate) fn new(
        listener: TcpListener,
        config: &Arc<ServerConfig>,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let mut http_config = ServerConfig::clone(config);
        http_config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(http_config));
        let (sender, sessions) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = shutdown.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!("HTTPS: accept error - {err}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(session)) => {
                            let _ = sender.send((session, peer)).await;
                        }
                        Ok(Err(err)) => tracing::debug!("HTTPS: {peer}: TLS handshake - {err}"),
                        Err(_) => tracing::debug!("HTTPS: {peer}: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { sessions, local })
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.sessions.recv().await {
            Some(session) => session,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Serves `app` over TLS on `listener` until `shutdown`.
pub(crate) async fn serve_https(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    app: Router,
    shutdown: CancellationToken,
) {
    let listener = match HttpsListener::new(listener, &config, shutdown.clone()) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!("HTTPS: {err}");
            return;
        }
    };
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    if let Err(err) = served {
        tracing::error!("HTTPS: server error - {err}");
    }
    tracing::info!("HTTPS: closing");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_of_generated_certificates() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "nsq-rs");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client-one");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()), "client-one");

        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()), "");
        assert_eq!(common_name(b"\x30\x82garbage"), "");
    }

    #[test]
    fn go_cipher_suite_names() {
        assert_eq!(cipher_suite_name(0x1301), "TLS_AES_128_GCM_SHA256");
        assert_eq!(
            cipher_suite_name(0xc02f),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
        assert_eq!(cipher_suite_name(0x0005), "Unknown 5");
    }
}
