//! Who is calling: the [`Principal`] named by the client certificate of the mutual-TLS connection.
//!
//! The principal is the certificate's first subjectAltName URI (a SPIFFE id such as
//! `spiffe://example.org/payments`), or, when it has no URI, its first DNS name. The subject's
//! common name is deliberately ignored (RFC 6125 deprecates it for identity).
//!
//! A certificate becomes a principal only when:
//! - it carries the extended key usage `id-kp-clientAuth` (RFC 5280 §4.2.1.12). A server
//!   certificate of the same CA (serverAuth only), or a certificate without the extension (good
//!   for any purpose to webpki), is refused: whoever holds the server's key is not a client;
//! - no SAN URI or DNS name claims a host principal (`local:…`, in any letter case): those
//!   names are granted by the policy to signals such as SIGHUP, never to network callers;
//! - the name it yields has no surrounding whitespace or control characters.
//!
//! The chain and revocation are checked by [`super::trust`], which calls this module.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::signing::contract::principal::LOCAL_SCHEME;
use crate::signing::contract::{CoreError, Principal, PrincipalSource};

fn unauthenticated(reason: String) -> CoreError {
    CoreError::Unauthenticated { reason }
}

/// Whether `name` starts with the host scheme `local:`, in any letter case.
fn is_host_name(name: &str) -> bool {
    name.get(..LOCAL_SCHEME.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(LOCAL_SCHEME))
}

/// Reads the principal from a parsed certificate (see the module docs for what is refused).
pub fn principal_from_certificate(cert: &X509Certificate<'_>) -> Result<Principal, CoreError> {
    let eku = cert
        .extended_key_usage()
        .map_err(|e| unauthenticated(format!("client certificate extendedKeyUsage: {e}")))?;
    match eku {
        Some(eku) if eku.value.client_auth => {}
        Some(_) => {
            return Err(unauthenticated(
                "client certificate lacks the clientAuth extended key usage (a server certificate is not a client)".into(),
            ))
        }
        None => {
            return Err(unauthenticated(
                "client certificate has no extended key usage: clientAuth is required".into(),
            ))
        }
    }
    let san = cert
        .subject_alternative_name()
        .map_err(|e| unauthenticated(format!("client certificate subjectAltName: {e}")))?
        .ok_or_else(|| unauthenticated("client certificate has no subjectAltName".into()))?;
    let names = &san.value.general_names;
    for name in names {
        let (kind, text) = match name {
            GeneralName::URI(uri) => ("URI", *uri),
            GeneralName::DNSName(dns) => ("DNS name", *dns),
            _ => continue,
        };
        if is_host_name(text.trim_start()) {
            return Err(unauthenticated(format!(
                "client certificate SAN {kind} {text:?} names a reserved host principal"
            )));
        }
    }
    let uri = names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => Some(*uri),
        _ => None,
    });
    let dns = names.iter().find_map(|name| match name {
        GeneralName::DNSName(dns) => Some(*dns),
        _ => None,
    });
    let (text, principal) = match (uri, dns) {
        (Some(uri), _) if !uri.is_empty() => (uri, Principal::new(uri, PrincipalSource::SanUri)),
        (_, Some(dns)) if !dns.is_empty() => (
            dns,
            Principal::new(dns.to_ascii_lowercase(), PrincipalSource::SanDns),
        ),
        _ => {
            return Err(unauthenticated(
                "client certificate has no subjectAltName URI or DNS name".into(),
            ))
        }
    };
    if text.trim() != text || text.chars().any(char::is_control) {
        return Err(unauthenticated(format!(
            "client certificate SAN {text:?} has surrounding whitespace or control characters"
        )));
    }
    Ok(principal)
}

/// Reads the principal from a DER certificate (see [`principal_from_certificate`]).
pub fn principal_from_certificate_der(der: &[u8]) -> Result<Principal, CoreError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| unauthenticated(format!("client certificate does not parse: {e}")))?;
    principal_from_certificate(&cert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};

    fn issue(sans: Vec<SanType>, eku: Vec<ExtendedKeyUsagePurpose>) -> Vec<u8> {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.extended_key_usages = eku;
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, &issuer).unwrap().der().to_vec()
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(s.try_into().unwrap())
    }

    fn dns(s: &str) -> SanType {
        SanType::DnsName(s.try_into().unwrap())
    }

    fn refused(der: &[u8]) -> String {
        principal_from_certificate_der(der).unwrap_err().to_string()
    }

    #[test]
    fn client_auth_is_required() {
        let client = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let p = principal_from_certificate_der(&issue(vec![uri("spiffe://t/a")], client)).unwrap();
        assert_eq!(p.as_str(), "spiffe://t/a");
        let server = issue(
            vec![uri("spiffe://t/a")],
            vec![ExtendedKeyUsagePurpose::ServerAuth],
        );
        assert!(
            refused(&server).contains("lacks the clientAuth"),
            "{}",
            refused(&server)
        );
        let none = issue(vec![uri("spiffe://t/a")], vec![]);
        assert!(
            refused(&none).contains("no extended key usage"),
            "{}",
            refused(&none)
        );
        let both = issue(
            vec![dns("svc.t")],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        assert_eq!(
            principal_from_certificate_der(&both).unwrap().as_str(),
            "svc.t"
        );
    }

    #[test]
    fn host_names_are_refused_in_uris_and_dns_names_in_any_case() {
        let client = || vec![ExtendedKeyUsagePurpose::ClientAuth];
        for sans in [
            vec![uri("local:sighup")],
            vec![uri("LOCAL:sighup")],
            vec![dns("local:sighup")],
            vec![dns("Local:SIGHUP")],
            vec![uri("spiffe://t/a"), dns("local:sighup")],
            vec![dns("svc.t"), uri("lOcAl:x")],
        ] {
            let message = refused(&issue(sans.clone(), client()));
            assert!(
                message.contains("reserved host principal"),
                "{sans:?}: {message}"
            );
        }
        // "local" elsewhere is an ordinary name.
        let ok = issue(vec![dns("local.svc.t")], client());
        assert_eq!(
            principal_from_certificate_der(&ok).unwrap().as_str(),
            "local.svc.t"
        );
    }
}
