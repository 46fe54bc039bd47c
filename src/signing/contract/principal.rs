//! [`Principal`]: an authenticated caller, by the name the policy matches.
//!
//! The edge establishes it (the gRPC server from the client certificate, see
//! `crate::service::identity`; host commands as `local:` principals); the core only reads the name.

use std::fmt;

/// The URI scheme of host-side principals (`local:sighup`): actions the host itself takes. No
/// client certificate may claim one.
pub const LOCAL_SCHEME: &str = "local:";

/// Where the principal's name came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PrincipalSource {
    /// A subjectAltName URI.
    SanUri,
    /// A subjectAltName DNS name.
    SanDns,
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal {
    name: String,
    source: PrincipalSource,
}

impl Principal {
    /// A principal by name (tests, and the CLI acting locally).
    pub fn new(name: impl Into<String>, source: PrincipalSource) -> Self {
        Principal {
            name: name.into(),
            source,
        }
    }

    /// The name the policy matches (`spiffe://...` or a DNS name).
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// Where the name came from.
    pub fn source(&self) -> PrincipalSource {
        self.source
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}
