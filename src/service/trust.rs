//! Which client certificates are trusted, now: the client CA, the revocation list and the
//! certificate rules of [`super::identity`], checked at the TLS handshake and again at every call.
//!
//! A client certificate is accepted when
//! 1. it chains to the configured client CA and is within its validity (rustls-webpki, with the
//!    clientAuth usage), and — when `[tls] crl_file` is set — the CRL of its issuer does not list
//!    it. A certificate whose issuer has no CRL in the file is refused (its status is unknown):
//!    the CRL must come from the client CA itself (checked when it is loaded);
//! 2. its serial is not in `[tls] revoked_serials` and its principal is not in
//!    `revoked_principals`;
//! 3. [`super::identity`] accepts it: the clientAuth extended key usage is present, no SAN claims
//!    a host principal.
//!
//! [`ClientTrust::verifier`] is the rustls verifier of the server's handshake; the edge calls
//! [`ClientTrust::authenticate`] with the connection's certificate chain at every call, so a
//! revocation reloaded while a connection is open refuses that connection's next call too.
//!
//! An accepted chain is remembered ([`super::verified_chains`]) under the revocation set in force
//! and for the time all its certificates are valid, so the calls of an open connection do not
//! verify its signatures again.
//!
//! [`ClientTrust::reload`] (SIGHUP in `custos serve`) reads the CRL again and swaps in the new
//! revocation set atomically; if the CRL cannot be read or does not verify, the set in force
//! stays, and the caller logs why.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use super::identity::principal_from_certificate;
use super::verified_chains::{chain_id, VerifiedChains};
use crate::signing::contract::Principal;

/// The largest serial number accepted in the configuration: RFC 5280 allows 20 octets.
pub const MAX_SERIAL_BYTES: usize = 20;

/// What is revoked: a CRL file, and serials and principals listed in the configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revocation {
    /// A CRL (PEM, one or more `X509 CRL` blocks; or one DER CRL) issued by the client CA.
    pub crl_file: Option<PathBuf>,
    /// Serial numbers: big-endian magnitude without leading zero bytes ([`parse_serial`]).
    pub serials: Vec<Vec<u8>>,
    /// Principals, as [`super::identity`] names them (DNS names lower-case).
    pub principals: Vec<String>,
}

/// What a loaded revocation set holds (for the log line of a start or a reload).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevocationSummary {
    /// CRLs loaded.
    pub crls: usize,
    /// Certificates the CRLs revoke.
    pub crl_entries: usize,
    /// Serials listed in the configuration.
    pub serials: usize,
    /// Principals listed in the configuration.
    pub principals: usize,
}

/// Why trust material was refused, or why a client certificate is not trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The client CA file holds no usable certificate.
    #[error("client ca {path}: {reason}")]
    Ca {
        /// The file (or `client_ca` when given as PEM text).
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The CRL file is not a CRL of the client CA.
    #[error("crl {path}: {reason}")]
    Crl {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The certificate chain does not verify (expired, another CA, revoked by the CRL, ...).
    #[error("client certificate refused: {}", chain_reason(.0))]
    Chain(rustls::Error),
    /// The certificate's serial is listed in `revoked_serials`.
    #[error("client certificate serial {serial} is revoked (tls.revoked_serials)")]
    RevokedSerial {
        /// Serial, hex.
        serial: String,
    },
    /// The certificate's principal is listed in `revoked_principals`.
    #[error("principal {principal} is revoked (tls.revoked_principals)")]
    RevokedPrincipal {
        /// The principal.
        principal: String,
    },
    /// No certificate was presented.
    #[error("no client certificate")]
    NoCertificate,
    /// The certificate does not name an acceptable principal (see [`super::identity`]).
    #[error("{0}")]
    Identity(String),
}

impl TrustError {
    /// The rustls error a refused handshake reports (its alert).
    fn to_rustls(&self) -> rustls::Error {
        match self {
            TrustError::Chain(e) => e.clone(),
            TrustError::RevokedSerial { .. } | TrustError::RevokedPrincipal { .. } => {
                rustls::Error::InvalidCertificate(CertificateError::Revoked)
            }
            other => rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(StringError(other.to_string()))),
            )),
        }
    }
}

/// Why webpki refused a chain, in words.
fn chain_reason(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(e) => match e {
            CertificateError::Revoked => "revoked by the certificate revocation list".into(),
            CertificateError::UnknownRevocationStatus => {
                "its revocation status is unknown: the crl file holds no list of its issuer".into()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired".into(),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not valid yet".into()
            }
            CertificateError::UnknownIssuer => "not issued by the client ca".into(),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "its extended key usage does not include clientAuth".into()
            }
            other => format!("{other:?}"),
        },
        other => other.to_string(),
    }
}

#[derive(Debug)]
struct StringError(String);

impl std::fmt::Display for StringError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StringError {}

/// Parses a serial number as written in the configuration: hex digits, optionally separated by
/// `:` (as `openssl x509 -serial` or browsers print it), at most [`MAX_SERIAL_BYTES`] bytes once
/// leading zeros are dropped.
pub fn parse_serial(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text.trim().chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "expected a serial number in hex (such as 1f:0a:33), got {text:?}"
        ));
    }
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    let bytes = hex::decode(&padded).map_err(|e| format!("serial {text:?}: {e}"))?;
    let serial = normalize_serial(&bytes);
    if serial.len() > MAX_SERIAL_BYTES {
        return Err(format!(
            "serial {text:?} is {} bytes, more than the {MAX_SERIAL_BYTES} RFC 5280 allows",
            serial.len()
        ));
    }
    Ok(serial)
}

/// A serial's magnitude without leading zero bytes (DER integers carry one for a high bit).
pub fn normalize_serial(raw: &[u8]) -> Vec<u8> {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    raw[start..].to_vec()
}

/// The revocation state in force.
struct TrustState {
    webpki: Arc<dyn ClientCertVerifier>,
    serials: BTreeSet<Vec<u8>>,
    principals: BTreeSet<String>,
    summary: RevocationSummary,
    /// The chains accepted under this state (a reload starts afresh).
    verified: VerifiedChains,
}

/// What does not change while the server runs: the client CA and the crypto provider.
struct Anchors {
    roots: Arc<RootCertStore>,
    ca_certs: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

/// The client trust of one server: the client CA and a reloadable revocation set.
pub struct ClientTrust {
    anchors: Anchors,
    hints: Vec<DistinguishedName>,
    state: RwLock<Arc<TrustState>>,
}

impl std::fmt::Debug for ClientTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTrust")
            .field("summary", &self.summary())
            .finish_non_exhaustive()
    }
}

impl ClientTrust {
    /// Trust in client certificates of the CA(s) in `ca_pem`, minus `revocation`.
    pub fn new(ca_pem: &[u8], revocation: &Revocation) -> Result<Arc<Self>, TrustError> {
        let ca_error = |reason: String| TrustError::Ca {
            path: "client_ca".into(),
            reason,
        };
        let ca_certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| ca_error(format!("invalid PEM: {e}")))?;
        let mut roots = RootCertStore::empty();
        for cert in &ca_certs {
            roots
                .add(cert.clone())
                .map_err(|e| ca_error(format!("not a usable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(ca_error("no certificate".into()));
        }
        let hints = roots.subjects();
        let anchors = Anchors {
            roots: Arc::new(roots),
            ca_certs,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        };
        let state = anchors.build_state(revocation)?;
        Ok(Arc::new(ClientTrust {
            anchors,
            hints,
            state: RwLock::new(Arc::new(state)),
        }))
    }

    /// Reads `revocation` again (the CRL file included) and puts it in force; on error the set
    /// in force stays.
    pub fn reload(&self, revocation: &Revocation) -> Result<RevocationSummary, TrustError> {
        let state = self.anchors.build_state(revocation)?;
        let summary = state.summary;
        *self.state.write().expect("trust lock poisoned") = Arc::new(state);
        Ok(summary)
    }

    /// What the set in force holds.
    pub fn summary(&self) -> RevocationSummary {
        self.current().summary
    }

    /// The rustls verifier for the server's handshake (client certificates mandatory).
    pub fn verifier(self: &Arc<Self>) -> Arc<dyn ClientCertVerifier> {
        Arc::new(Verifier(self.clone()))
    }

    /// The principal of a certificate chain (leaf first), if the trust in force accepts it.
    pub fn authenticate(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<Principal, TrustError> {
        let (leaf, intermediates) = chain.split_first().ok_or(TrustError::NoCertificate)?;
        let state = self.current();
        let id = chain_id(chain);
        if let Some(principal) = state.verified.get(&id, now) {
            return Ok(principal);
        }
        state
            .webpki
            .verify_client_cert(leaf, intermediates, now)
            .map_err(TrustError::Chain)?;
        let (_, cert) = X509Certificate::from_der(leaf.as_ref())
            .map_err(|e| TrustError::Identity(format!("client certificate does not parse: {e}")))?;
        let serial = normalize_serial(cert.raw_serial());
        if state.serials.contains(&serial) {
            return Err(TrustError::RevokedSerial {
                serial: hex::encode(&serial),
            });
        }
        let principal =
            principal_from_certificate(&cert).map_err(|e| TrustError::Identity(e.to_string()))?;
        if state.principals.contains(principal.as_str()) {
            return Err(TrustError::RevokedPrincipal {
                principal: principal.to_string(),
            });
        }
        state.verified.insert(id, chain, &principal);
        Ok(principal)
    }

    /// How many accepted chains the trust in force remembers (tests).
    pub fn remembered_chains(&self) -> usize {
        self.current().verified.len()
    }

    fn current(&self) -> Arc<TrustState> {
        self.state.read().expect("trust lock poisoned").clone()
    }
}

impl Anchors {
    fn build_state(&self, revocation: &Revocation) -> Result<TrustState, TrustError> {
        let mut builder =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), self.provider.clone());
        let mut summary = RevocationSummary {
            serials: revocation.serials.len(),
            principals: revocation.principals.len(),
            ..RevocationSummary::default()
        };
        if let Some(path) = &revocation.crl_file {
            let crls = self.read_crls(path, &mut summary)?;
            builder = builder.with_crls(crls).only_check_end_entity_revocation();
        }
        let webpki = builder.build().map_err(|e| match &revocation.crl_file {
            Some(path) => TrustError::Crl {
                path: path.clone(),
                reason: e.to_string(),
            },
            None => TrustError::Ca {
                path: "client_ca".into(),
                reason: e.to_string(),
            },
        })?;
        Ok(TrustState {
            webpki,
            serials: revocation
                .serials
                .iter()
                .map(|s| normalize_serial(s))
                .collect(),
            principals: revocation.principals.iter().cloned().collect(),
            summary,
            verified: VerifiedChains::default(),
        })
    }

    /// Reads the CRLs of `path` and checks each is issued and signed by a client CA.
    fn read_crls(
        &self,
        path: &Path,
        summary: &mut RevocationSummary,
    ) -> Result<Vec<CertificateRevocationListDer<'static>>, TrustError> {
        let bytes = std::fs::read(path).map_err(|source| TrustError::Read {
            path: path.to_owned(),
            source,
        })?;
        let refuse = |reason: String| TrustError::Crl {
            path: path.to_owned(),
            reason,
        };
        let crls: Vec<CertificateRevocationListDer<'static>> =
            if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
                CertificateRevocationListDer::pem_slice_iter(&bytes)
                    .collect::<Result<_, _>>()
                    .map_err(|e| refuse(format!("invalid PEM: {e}")))?
            } else {
                vec![CertificateRevocationListDer::from(bytes)]
            };
        if crls.is_empty() {
            return Err(refuse("no X509 CRL in the file".into()));
        }
        for (i, crl) in crls.iter().enumerate() {
            let (rest, parsed) = CertificateRevocationList::from_der(crl.as_ref())
                .map_err(|e| refuse(format!("crl {i} does not parse: {e}")))?;
            if !rest.is_empty() {
                return Err(refuse(format!("crl {i} has trailing bytes")));
            }
            self.check_issuer(&parsed)
                .map_err(|reason| refuse(format!("crl {i}: {reason}")))?;
            if let Some(next) = parsed.next_update() {
                if next.timestamp() < crate::signing::now_unix() {
                    tracing::warn!(crl = %path.display(), next_update = %next, "the CRL is past its next update: issue a fresh one");
                }
            }
            summary.crls += 1;
            summary.crl_entries += parsed.iter_revoked_certificates().count();
        }
        Ok(crls)
    }

    /// The CRL's issuer must be a client CA whose key signed it.
    fn check_issuer(&self, crl: &CertificateRevocationList<'_>) -> Result<(), String> {
        for der in &self.ca_certs {
            let Ok((_, ca)) = X509Certificate::from_der(der.as_ref()) else {
                continue;
            };
            if ca.subject().as_raw() != crl.issuer().as_raw() {
                continue;
            }
            return crl
                .verify_signature(ca.public_key())
                .map_err(|e| format!("signature does not verify with the client CA's key: {e}"));
        }
        Err(format!(
            "issued by {}, which is not the client CA",
            crl.issuer()
        ))
    }
}

/// The handshake side of [`ClientTrust`].
#[derive(Debug)]
struct Verifier(Arc<ClientTrust>);

impl ClientCertVerifier for Verifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.0.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        match self.0.authenticate(&chain, now) {
            Ok(principal) => {
                tracing::debug!(%principal, "client certificate accepted");
                Ok(ClientCertVerified::assertion())
            }
            Err(e) => {
                tracing::info!(error = %e, "TLS handshake refused");
                Err(e.to_rustls())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.anchors.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.anchors.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .anchors
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_parse_in_the_usual_spellings() {
        assert_eq!(parse_serial("1f:0A:33").unwrap(), vec![0x1f, 0x0a, 0x33]);
        assert_eq!(parse_serial("00ff").unwrap(), vec![0xff]);
        assert_eq!(parse_serial("abc").unwrap(), vec![0x0a, 0xbc]);
        assert_eq!(parse_serial(&"00".repeat(3)).unwrap(), Vec::<u8>::new());
        for bad in ["", "xyz", "12 34", "é1"] {
            assert!(parse_serial(bad).is_err(), "{bad:?}");
        }
        assert!(parse_serial(&"ab".repeat(21)).is_err());
        assert!(parse_serial(&format!("00{}", "ab".repeat(20))).is_ok());
    }

    #[test]
    fn an_accepted_chain_is_remembered_only_for_its_validity_and_revocation_set() {
        use crate::service::devcerts::{dev_principal_uri, DevCa};
        use std::time::Duration;
        let ca = DevCa::generate("memo test ca").unwrap();
        let issued = ca.client_cert(&dev_principal_uri("alice")).unwrap();
        let leaf = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        let chain = [leaf];
        let trust = ClientTrust::new(ca.cert_pem().as_bytes(), &Revocation::default()).unwrap();
        let now = UnixTime::now();
        let at = |secs: u64| UnixTime::since_unix_epoch(Duration::from_secs(secs));

        let principal = trust.authenticate(&chain, now).unwrap();
        assert_eq!(trust.remembered_chains(), 1);
        assert_eq!(trust.authenticate(&chain, now).unwrap(), principal);
        assert_eq!(trust.remembered_chains(), 1);

        // Remembered, yet refused outside the certificate's validity (issued an hour ago).
        for when in [
            at(now.as_secs() + 40 * 365 * 86_400),
            at(now.as_secs() - 2 * 3600),
        ] {
            match trust.authenticate(&chain, when) {
                Err(TrustError::Chain(_)) => {}
                other => panic!("expected an expired chain to be refused, got {other:?}"),
            }
        }
        // Another chain (a different leaf) is not answered from the memo.
        let other = ca.client_cert(&dev_principal_uri("bob")).unwrap();
        let other = [CertificateDer::from_pem_slice(other.cert_pem.as_bytes()).unwrap()];
        assert_ne!(trust.authenticate(&other, now).unwrap(), principal);
        assert_eq!(trust.remembered_chains(), 2);

        // A reload revoking the serial refuses the remembered chain at once.
        let revocation = Revocation {
            serials: vec![issued.serial()],
            ..Revocation::default()
        };
        trust.reload(&revocation).unwrap();
        assert_eq!(trust.remembered_chains(), 0);
        match trust.authenticate(&chain, now) {
            Err(TrustError::RevokedSerial { .. }) => {}
            other => panic!("expected the revoked serial to be refused, got {other:?}"),
        }
        assert_eq!(trust.remembered_chains(), 0);
    }
}
