//! How to reach the database: the connection URL (never with a password in it), the password
//! (from a file or the environment, held in a zeroizing type), the schema, the pool size and the
//! time bounds that make a lost database a fast `UNAVAILABLE` instead of a hang.

use std::str::FromStr;
use std::time::Duration;

use crate::secret::SecretString;

/// Connection settings of a [`super::PgEngine`].
pub struct PgSettings {
    /// `postgres://USER@HOST:PORT/DB` (or the `key=value` form). A password in it is refused.
    pub url: String,
    /// The password, if the server asks for one.
    pub password: Option<SecretString>,
    /// The schema holding Custos' tables (`search_path`); the server's default (`public`) when
    /// `None`. Several installations (or tests) can share one database, each in its schema.
    pub schema: Option<String>,
    /// Connections in the pool (each transaction holds one while it runs).
    pub pool_size: usize,
    /// Bound on opening a connection.
    pub connect_timeout: Duration,
    /// Bound on one statement, enforced by the server (`statement_timeout`) and, a little
    /// later, by the client (a server that stopped answering).
    pub statement_timeout: Duration,
    /// Bound on waiting for the state lock (`lock_timeout`).
    pub lock_timeout: Duration,
    /// A session idle inside a transaction this long is ended by the server, releasing its locks
    /// (a replica frozen mid-transaction cannot stall the others).
    pub idle_in_transaction_timeout: Duration,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

impl Clone for PgSettings {
    fn clone(&self) -> Self {
        PgSettings {
            url: self.url.clone(),
            password: self.password.as_ref().map(SecretString::duplicate),
            schema: self.schema.clone(),
            pool_size: self.pool_size,
            connect_timeout: self.connect_timeout,
            statement_timeout: self.statement_timeout,
            lock_timeout: self.lock_timeout,
            idle_in_transaction_timeout: self.idle_in_transaction_timeout,
        }
    }
}

/// Default pool size.
pub const DEFAULT_POOL_SIZE: usize = 16;

impl PgSettings {
    /// Settings for `url` with the default bounds.
    pub fn new(url: impl Into<String>) -> Self {
        PgSettings {
            url: url.into(),
            password: None,
            schema: None,
            pool_size: DEFAULT_POOL_SIZE,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(5),
            idle_in_transaction_timeout: Duration::from_secs(30),
        }
    }

    /// The driver's configuration: the URL parsed and checked, the password, the schema and the
    /// server-side bounds as session options.
    pub fn driver_config(&self) -> Result<tokio_postgres::Config, String> {
        let mut config = tokio_postgres::Config::from_str(&self.url)
            .map_err(|e| format!("the PostgreSQL URL is not valid: {e}"))?;
        check_url(&config)?;
        if let Some(password) = &self.password {
            config.password(password.expose_secret().as_bytes());
        }
        let mut options = config.get_options().unwrap_or_default().to_owned();
        let ms = |d: Duration| d.as_millis().max(1);
        for (name, value) in [
            ("statement_timeout", ms(self.statement_timeout)),
            ("lock_timeout", ms(self.lock_timeout)),
            (
                "idle_in_transaction_session_timeout",
                ms(self.idle_in_transaction_timeout),
            ),
        ] {
            options.push_str(&format!(" -c {name}={value}"));
        }
        if let Some(schema) = &self.schema {
            check_schema_name(schema)?;
            options.push_str(&format!(" -c search_path={schema}"));
        }
        config.options(options.trim());
        if config.get_application_name().is_none() {
            config.application_name("custos");
        }
        config.connect_timeout(self.connect_timeout);
        // A peer that vanished without closing (a partition): the kernel gives up on unacked
        // data after this, and idle connections are probed.
        config.tcp_user_timeout(self.statement_timeout + self.connect_timeout);
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        Ok(config)
    }

    /// How long the client waits for one exchange before it gives the connection up.
    pub fn client_timeout(&self) -> Duration {
        self.statement_timeout + Duration::from_secs(2)
    }
}

fn check_url(config: &tokio_postgres::Config) -> Result<(), String> {
    if config.get_password().is_some() {
        return Err(
            "the PostgreSQL URL holds a password: remove it and give it in a file \
                    (`password_file`) or the environment (`password_env`)"
                .into(),
        );
    }
    if config.get_hosts().is_empty() {
        return Err("the PostgreSQL URL names no host".into());
    }
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        return Err(
            "sslmode=require is not supported yet: connect over loopback or a private link \
             (records are authenticated by Custos either way)"
                .into(),
        );
    }
    Ok(())
}

/// A schema name Custos will put in `search_path`: lower-case letters, digits and `_`, not
/// starting with a digit, at most 63 bytes.
pub fn check_schema_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "schema '{name}' is not a plain name (lower-case letters, digits, '_'; at most 63)"
        ))
    }
}

/// The URL with any password masked (for messages).
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:[REDACTED]@{host}")
            }
            _ => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_in_url_is_refused_and_not_echoed() {
        let e = PgSettings::new("postgres://custos:hunter2@127.0.0.1:5432/custos")
            .driver_config()
            .unwrap_err();
        assert!(e.contains("holds a password"), "{e}");
        assert!(!e.contains("hunter2"));
        assert_eq!(
            redact_url("postgres://custos:hunter2@h/db"),
            "postgres://custos:[REDACTED]@h/db"
        );
    }

    #[test]
    fn options_carry_the_bounds_and_schema() {
        let mut s = PgSettings::new("postgres://custos@127.0.0.1:5432/custos");
        s.schema = Some("replica_a".into());
        s.password = Some(SecretString::new("pw".into()));
        let c = s.driver_config().unwrap();
        let options = c.get_options().unwrap();
        assert!(options.contains("-c statement_timeout=10000"), "{options}");
        assert!(options.contains("-c search_path=replica_a"), "{options}");
        assert_eq!(c.get_password(), Some(&b"pw"[..]));
        assert!(!format!("{s:?}").contains("pw\""));
        s.schema = Some("x; drop table".into());
        assert!(s.driver_config().is_err());
    }
}
