//! The request as the policy sees it ([`PolicyRequest`]: principal, time, intent), and the time
//! formats requests, test cases and reports use (RFC 3339 UTC, or unix seconds).

use serde::{Deserialize, Deserializer, Serialize};

use crate::intent::Intent;

/// One request as the policy sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    /// The mTLS identity of the requester (SAN URI or DNS name).
    pub principal: String,
    /// Request time, unix seconds UTC (JSON: an integer, or RFC 3339 text).
    #[serde(deserialize_with = "de_time")]
    pub at: i64,
    /// What the request does.
    pub intent: Intent,
}

fn de_time<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum T {
        Secs(i64),
        Text(String),
    }
    match T::deserialize(d)? {
        T::Secs(s) => Ok(s),
        T::Text(t) => parse_time(&t).map_err(serde::de::Error::custom),
    }
}

/// Parses RFC 3339 ("2024-05-06T10:00:00Z") or unix seconds into unix seconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(secs) = text.trim().parse::<i64>() {
        return Ok(secs);
    }
    time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| {
            format!("'{text}' is not RFC 3339 time (2024-05-06T10:00:00Z) or unix seconds: {e}")
        })
}

/// Formats unix seconds as RFC 3339 UTC.
pub fn format_time(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}
