//! Who is calling: the [`Principal`] named by the client certificate of the mutual-TLS connection.
//!
//! The principal is the certificate's first subjectAltName URI (a SPIFFE id such as
//! `spiffe://example.org/payments`), or, when it has no URI, its first DNS name. The subject's
//! common name is deliberately ignored (RFC 6125 deprecates it for identity). The TLS layer has
//! already verified the chain against the configured client CA before a request reaches this code;
//! this module only reads the name.

use tonic::Request;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::signing::contract::principal::LOCAL_SCHEME;
use crate::signing::contract::{CoreError, Principal, PrincipalSource};

/// Reads the principal from a DER certificate: SAN URI first, else SAN DNS name.
pub fn principal_from_certificate_der(der: &[u8]) -> Result<Principal, CoreError> {
    let unauthenticated = |reason: String| CoreError::Unauthenticated { reason };
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| unauthenticated(format!("client certificate does not parse: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| unauthenticated(format!("client certificate subjectAltName: {e}")))?
        .ok_or_else(|| unauthenticated("client certificate has no subjectAltName".into()))?;
    let names = &san.value.general_names;
    let uri = names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => Some(*uri),
        _ => None,
    });
    let dns = names.iter().find_map(|name| match name {
        GeneralName::DNSName(dns) => Some(*dns),
        _ => None,
    });
    match (uri, dns) {
        (Some(uri), _) if uri.to_ascii_lowercase().starts_with(LOCAL_SCHEME) => {
            Err(unauthenticated(format!(
                "client certificate names the reserved host principal {uri:?}"
            )))
        }
        (Some(uri), _) if !uri.is_empty() => Ok(Principal::new(uri, PrincipalSource::SanUri)),
        (_, Some(dns)) if !dns.is_empty() => Ok(Principal::new(
            dns.to_ascii_lowercase(),
            PrincipalSource::SanDns,
        )),
        _ => Err(unauthenticated(
            "client certificate has no subjectAltName URI or DNS name".into(),
        )),
    }
}

/// The principal of a gRPC request: the leaf of the verified client certificate chain.
pub fn principal_from_request<T>(request: &Request<T>) -> Result<Principal, CoreError> {
    let certs = request
        .peer_certs()
        .ok_or_else(|| CoreError::Unauthenticated {
            reason: "no client certificate".into(),
        })?;
    let leaf = certs.first().ok_or_else(|| CoreError::Unauthenticated {
        reason: "no client certificate".into(),
    })?;
    principal_from_certificate_der(leaf.as_ref())
}
