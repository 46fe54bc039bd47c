//! Development certificates: a throw-away CA, a server certificate for loopback, and one client
//! certificate per principal (subjectAltName URI such as `spiffe://custos.dev/payments`).
//!
//! For `custos dev env` and the tests only: the CA key is written next to the certificates so more
//! clients can be issued; a production deployment gets its certificates from its own PKI. Private
//! keys (ECDSA P-256) are written with mode 0600.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::secret::SecretString;

/// The trust domain of development principals.
pub const DEV_TRUST_DOMAIN: &str = "spiffe://custos.dev";

/// The principals a development environment gets certificates for: file stem and SAN URI.
pub const DEV_PRINCIPALS: [&str; 5] = [
    "payments",
    "approver-1",
    "approver-2",
    "admin",
    "broadcaster",
];

/// The SAN URI of a development principal: `spiffe://custos.dev/<name>`.
pub fn dev_principal_uri(name: &str) -> String {
    format!("{DEV_TRUST_DOMAIN}/{name}")
}

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevCertError {
    /// rcgen refused the parameters (a bad name, usually).
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// An issued certificate and its private key, PEM.
pub struct IssuedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: SecretString,
}

impl IssuedCert {
    /// The certificate's serial number (big-endian, no leading zero bytes), as a CRL or
    /// `[tls] revoked_serials` names it.
    pub fn serial(&self) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .expect("an issued certificate is one PEM certificate");
        let (_, cert) = <x509_parser::certificate::X509Certificate as x509_parser::prelude::FromDer<_>>::from_der(&der)
            .expect("an issued certificate parses");
        crate::service::trust::normalize_serial(cert.raw_serial())
    }
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("key_pem", &self.key_pem)
            .finish_non_exhaustive()
    }
}

/// A development certificate authority.
pub struct DevCa {
    cert_pem: String,
    key_pem: SecretString,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
}

impl DevCa {
    /// A new CA named `common_name`, valid for ten years.
    pub fn generate(common_name: &str) -> Result<Self, DevCertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Custos development");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, 3650);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(DevCa {
            cert_pem: cert.pem(),
            key_pem: SecretString::new(key.serialize_pem()),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM (the trust root for both sides).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PEM.
    pub fn key_pem(&self) -> &SecretString {
        &self.key_pem
    }

    /// A server certificate for `names` (DNS names or IP addresses), valid for one year.
    pub fn server_cert(&self, names: &[&str]) -> Result<IssuedCert, DevCertError> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone())?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate whose subjectAltName is the URI `principal_uri`, valid for one year.
    pub fn client_cert(&self, principal_uri: &str) -> Result<IssuedCert, DevCertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = vec![SanType::URI(principal_uri.try_into()?)];
        params
            .distinguished_name
            .push(DnType::CommonName, principal_uri);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    /// A client certificate naming only a DNS name (principals without a URI).
    pub fn client_cert_dns(&self, dns_name: &str) -> Result<IssuedCert, DevCertError> {
        let mut params = CertificateParams::new(vec![dns_name.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, dns_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    /// A certificate revocation list of this CA listing `revoked` (PEM), valid for 30 days.
    /// `number` is the CRL number (increase it with each new list).
    pub fn crl(&self, revoked: &[&IssuedCert], number: u64) -> Result<String, DevCertError> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::hours(1),
            next_update: now + Duration::days(30),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|cert| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&cert.serial()),
                    revocation_time: now - Duration::minutes(5),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }

    /// Issues a certificate with `params` as given (key usage digitalSignature, one year): for
    /// tests of what the server refuses (no extended key usage, odd names).
    pub fn issue(&self, mut params: CertificateParams) -> Result<IssuedCert, DevCertError> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, 365);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: SecretString::new(key.serialize_pem()),
        })
    }
}

/// Where [`write_dev_pki`] put everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevPkiPaths {
    /// CA certificate.
    pub ca_cert: PathBuf,
    /// CA key (0600).
    pub ca_key: PathBuf,
    /// Server certificate.
    pub server_cert: PathBuf,
    /// Server key (0600).
    pub server_key: PathBuf,
    /// Per principal: (name, SAN URI, certificate, key).
    pub clients: Vec<DevClientPaths>,
}

/// One client's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevClientPaths {
    /// File stem (`payments`).
    pub name: String,
    /// The principal (`spiffe://custos.dev/payments`).
    pub principal: String,
    /// Certificate.
    pub cert: PathBuf,
    /// Key (0600).
    pub key: PathBuf,
}

/// Writes a CA, a server certificate for `localhost`/`127.0.0.1`/`::1`, and a client certificate
/// per `(name, principal_uri)` into `dir` (created if needed): `ca.pem`, `ca.key`, `server.pem`,
/// `server.key`, `clients/<name>.pem`, `clients/<name>.key`.
pub fn write_dev_pki(
    dir: &Path,
    clients: &[(String, String)],
) -> Result<DevPkiPaths, DevCertError> {
    let ca = DevCa::generate("Custos development CA")?;
    let server = ca.server_cert(&["localhost", "127.0.0.1", "::1"])?;
    let ca_cert = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    write_file(&ca_cert, ca.cert_pem().as_bytes(), false)?;
    write_file(&ca_key, ca.key_pem().expose_secret().as_bytes(), true)?;
    let (server_cert, server_key) = write_issued(dir, "server", &server)?;
    let client_dir = dir.join("clients");
    let mut written = Vec::new();
    for (name, principal) in clients {
        let issued = ca.client_cert(principal)?;
        let (cert, key) = write_issued(&client_dir, name, &issued)?;
        written.push(DevClientPaths {
            name: name.clone(),
            principal: principal.clone(),
            cert,
            key,
        });
    }
    Ok(DevPkiPaths {
        ca_cert,
        ca_key,
        server_cert,
        server_key,
        clients: written,
    })
}

/// Writes `<dir>/<stem>.pem` and `<dir>/<stem>.key` (0600).
pub fn write_issued(
    dir: &Path,
    stem: &str,
    issued: &IssuedCert,
) -> Result<(PathBuf, PathBuf), DevCertError> {
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    write_file(&cert, issued.cert_pem.as_bytes(), false)?;
    write_file(&key, issued.key_pem.expose_secret().as_bytes(), true)?;
    Ok((cert, key))
}

/// Writes `bytes` to `path` (creating parent directories); `private` files get mode 0600 from
/// the moment they exist.
pub fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), DevCertError> {
    let fail = |source| DevCertError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(if private { 0o600 } else { 0o644 });
        let mut file = options.open(path).map_err(fail)?;
        // An existing file keeps its old mode on open: set it explicitly.
        let mode = if private { 0o600 } else { 0o644 };
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(fail)?;
        file.write_all(bytes).map_err(fail)?;
        file.sync_all().map_err(fail)?;
    }
    #[cfg(not(unix))]
    {
        let _ = private;
        let mut file = options.open(path).map_err(fail)?;
        file.write_all(bytes).map_err(fail)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::identity::principal_from_certificate_der;
    use crate::signing::contract::PrincipalSource;

    fn der(pem: &str) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("one certificate")
            .to_vec()
    }

    #[test]
    fn client_certificate_names_its_principal() {
        let ca = DevCa::generate("test CA").unwrap();
        let client = ca.client_cert("spiffe://custos.dev/payments").unwrap();
        let principal = principal_from_certificate_der(&der(&client.cert_pem)).unwrap();
        assert_eq!(principal.as_str(), "spiffe://custos.dev/payments");
        assert_eq!(principal.source(), PrincipalSource::SanUri);

        let dns = ca.client_cert_dns("Payments.Internal").unwrap();
        let principal = principal_from_certificate_der(&der(&dns.cert_pem)).unwrap();
        assert_eq!(principal.as_str(), "payments.internal");
        assert_eq!(principal.source(), PrincipalSource::SanDns);
    }

    #[test]
    fn certificates_cannot_claim_a_host_principal() {
        let ca = DevCa::generate("test CA").unwrap();
        let client = ca.client_cert("local:sighup").unwrap();
        let error = principal_from_certificate_der(&der(&client.cert_pem)).unwrap_err();
        assert!(
            error.to_string().contains("reserved host principal"),
            "{error}"
        );
    }

    #[test]
    fn keys_are_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let clients = vec![("admin".to_owned(), dev_principal_uri("admin"))];
        let paths = write_dev_pki(dir.path(), &clients).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in [&paths.ca_key, &paths.server_key, &paths.clients[0].key] {
                let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", key.display());
            }
        }
        assert!(std::fs::read_to_string(&paths.clients[0].cert)
            .unwrap()
            .contains("BEGIN CERTIFICATE"));
    }
}
