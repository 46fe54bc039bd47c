//! One token: found by label (or slot), logged in with the user PIN, used through the session
//! pool, and reconnected after a fault.
//!
//! # States
//!
//! - **up**: a slot, a generation, sessions logged in.
//! - **down** (absent, removed, failing): every operation answers [`Pkcs11Error::Unavailable`]
//!   naming the token. The next operation reconnects — re-initialises the module if the fault
//!   happened in its current generation, finds the token by label again (its slot id may have
//!   changed), logs in — at most once per [`RECONNECT_INTERVAL`]; operations in between fail fast
//!   instead of piling up on a dead device. A token that comes back is used again without a
//!   restart.
//! - **pin refused** (`CKR_PIN_INCORRECT`, `CKR_PIN_LOCKED`, ...): final for this process. Custos
//!   never presents a refused PIN twice, because real HSMs lock the user after a few failures.
//!
//! Login state belongs to the token within the process (PKCS#11): every session of the process
//! on a token is logged in once one is, and a second `Token` on the same token in one process
//! shares that login. A server has one `Token` per token.
//!
//! Slots are always looked up by token label when a label is configured: SoftHSM2 gives a token a
//! new slot id when it is initialised, and network HSMs renumber slots across restarts.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::error::{classify, rv_name, Fault, Pkcs11Error};
use super::module::Module;
use super::session_pool::{Acquire, Pooled, SessionPool};
use crate::secret::SecretString;

pub use super::settings::{TokenSelector, TokenSettings, TokenStatus};

/// The least time between two reconnection attempts of a token that is down.
pub const RECONNECT_INTERVAL: Duration = Duration::from_millis(500);
/// How long an operation waits for a free session before the token is reported busy.
pub const SESSION_WAIT: Duration = Duration::from_secs(10);

enum Health {
    Up,
    Down(String),
    PinRefused(String),
}

struct Conn {
    slot: Option<Slot>,
    /// The module generation the slot, login and `health` refer to.
    generation: u64,
    health: Health,
    last_attempt: Option<Instant>,
}

/// A connection to one token.
pub struct Token {
    module: Arc<Module>,
    selector: TokenSelector,
    name: String,
    pin: SecretString,
    pool: SessionPool,
    conn: Mutex<Conn>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("module", &self.module.path())
            .field("token", &self.selector)
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

/// Lets [`Token::run`] tell a stale session (retry with a fresh one) from the operation's error.
enum Ran<T> {
    Done(Result<T, CkError>),
    Stale,
}

impl Token {
    /// Loads the module (an error if the library cannot be loaded) and tries to connect. A token
    /// that is absent or failing now is returned *down*: operations report it unavailable and
    /// reconnect later.
    pub fn open(settings: TokenSettings) -> Result<Token, Pkcs11Error> {
        let module = Module::load(&settings.module)?;
        let name = settings.token.to_string();
        let token = Token {
            module,
            selector: settings.token,
            name,
            pin: settings.pin,
            pool: SessionPool::new(settings.sessions, SESSION_WAIT),
            conn: Mutex::new(Conn {
                slot: None,
                generation: 0,
                health: Health::Down("not connected yet".into()),
                last_attempt: None,
            }),
        };
        if let Err(e) = token.connected() {
            tracing::warn!(token = %token.name, error = %e, "hsm token not available at start");
        }
        Ok(token)
    }

    /// `token 'custos'`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The module path.
    pub fn module_path(&self) -> &Path {
        self.module.path()
    }

    /// The slot and generation to use, connecting (or reconnecting) first if needed.
    fn connected(&self) -> Result<(Slot, u64), Pkcs11Error> {
        let mut conn = self.conn.lock().expect("token lock poisoned");
        let current = self.module.generation();
        match (&conn.health, conn.slot) {
            (Health::PinRefused(rv), _) => {
                return Err(Pkcs11Error::PinRefused {
                    token: self.name.clone(),
                    rv: rv.clone(),
                })
            }
            (Health::Up, Some(slot)) if conn.generation == current => {
                return Ok((slot, current));
            }
            (Health::Up, _) => {}
            (Health::Down(reason), _) => {
                let recent = conn
                    .last_attempt
                    .is_some_and(|at| at.elapsed() < RECONNECT_INTERVAL);
                if recent && conn.generation == current {
                    return Err(self.unavailable(reason.clone()));
                }
            }
        }
        conn.last_attempt = Some(Instant::now());
        let mut generation = current;
        if matches!(conn.health, Health::Down(_)) && conn.generation == current {
            generation = self.module.reinitialize(current);
        }
        match self.attach() {
            Ok((slot, pooled)) => {
                let was_down = matches!(conn.health, Health::Down(_));
                conn.slot = Some(slot);
                conn.generation = pooled.generation;
                conn.health = Health::Up;
                let generation = pooled.generation;
                self.pool.put(pooled);
                if was_down {
                    tracing::info!(token = %self.name, slot = slot.id(), "hsm token connected");
                }
                Ok((slot, generation))
            }
            Err(e) => {
                conn.generation = generation;
                conn.health = match &e {
                    Pkcs11Error::PinRefused { rv, .. } => Health::PinRefused(rv.clone()),
                    Pkcs11Error::Unavailable { reason, .. } => Health::Down(reason.clone()),
                    other => Health::Down(other.to_string()),
                };
                Err(e)
            }
        }
    }

    /// Finds the slot, opens a session and logs in.
    fn attach(&self) -> Result<(Slot, Pooled), Pkcs11Error> {
        self.module.with(&self.name, |ctx, generation| {
            let slot = self.find_slot(ctx)?;
            let session = self.open_logged_in(ctx, slot)?;
            Ok((
                slot,
                Pooled {
                    session,
                    generation,
                    slot,
                },
            ))
        })
    }

    fn find_slot(&self, ctx: &Pkcs11) -> Result<Slot, Pkcs11Error> {
        let slots = ctx
            .get_slots_with_token()
            .map_err(|e| self.unavailable(format!("listing slots: {}", rv_name(&e))))?;
        let mut seen = Vec::new();
        for slot in slots {
            match &self.selector {
                TokenSelector::Slot(id) if slot.id() == *id => return Ok(slot),
                TokenSelector::Slot(_) => seen.push(slot.id().to_string()),
                TokenSelector::Label(label) => match ctx.get_token_info(slot) {
                    Ok(info) if info.label() == label => {
                        if info.user_pin_locked() {
                            return Err(Pkcs11Error::PinRefused {
                                token: self.name.clone(),
                                rv: "CKF_USER_PIN_LOCKED".into(),
                            });
                        }
                        return Ok(slot);
                    }
                    Ok(info) if info.token_initialized() => {
                        seen.push(format!("'{}'", info.label()))
                    }
                    Ok(_) => {}
                    Err(_) => {}
                },
            }
        }
        let seen = if seen.is_empty() {
            "none".to_owned()
        } else {
            seen.join(", ")
        };
        Err(self.unavailable(format!(
            "not present in the pkcs#11 module {} (tokens present: {seen})",
            self.module.path().display()
        )))
    }

    /// Opens a read-only session (signing needs no more) and logs the user in; a token already
    /// logged in through another session is fine (login state is per token, not per session).
    fn open_logged_in(&self, ctx: &Pkcs11, slot: Slot) -> Result<Session, Pkcs11Error> {
        let session = ctx
            .open_ro_session_no_drop(slot)
            .map_err(|e| self.session_error("opening a session", &e))?;
        self.login(&session)?;
        Ok(session)
    }

    fn login(&self, session: &Session) -> Result<(), Pkcs11Error> {
        let pin = AuthPin::new(self.pin.expose_secret().into());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(e) => Err(self.session_error("logging in", &e)),
        }
    }

    fn session_error(&self, what: &str, e: &CkError) -> Pkcs11Error {
        match classify(e) {
            Fault::Pin => Pkcs11Error::PinRefused {
                token: self.name.clone(),
                rv: rv_name(e),
            },
            _ => self.unavailable(format!("{what}: {}", rv_name(e))),
        }
    }

    fn unavailable(&self, reason: String) -> Pkcs11Error {
        Pkcs11Error::Unavailable {
            token: self.name.clone(),
            reason,
        }
    }

    /// Marks the token down after a fault seen in `generation` (if nothing newer happened).
    fn mark_down(&self, generation: u64, reason: &str) {
        let mut conn = self.conn.lock().expect("token lock poisoned");
        if conn.generation == generation && matches!(conn.health, Health::Up) {
            tracing::warn!(token = %self.name, %reason, "hsm token fault; it will be reconnected");
            conn.health = Health::Down(reason.to_owned());
            conn.last_attempt = None;
        }
    }

    fn mark_pin_refused(&self, rv: &str) {
        let mut conn = self.conn.lock().expect("token lock poisoned");
        tracing::error!(token = %self.name, rv, "hsm token refused the user pin; not retrying");
        conn.health = Health::PinRefused(rv.to_owned());
    }

    /// Runs `op` on a pooled session. Token faults mark the token down and come back as
    /// [`Pkcs11Error::Unavailable`]; a refused PIN as [`Pkcs11Error::PinRefused`]; a stale object
    /// handle after checking that the token is still there; anything else is handed back as the
    /// operation's own error (`Ok(Err(_))`) for the caller to describe.
    pub(crate) fn run<T>(
        &self,
        what: &str,
        op: impl Fn(&Session, u64) -> Result<T, CkError>,
    ) -> Result<Result<T, CkError>, Pkcs11Error> {
        for _ in 0..2 {
            let (slot, generation) = self.connected()?;
            let lease = match self.pool.acquire(generation, slot, || {
                self.module
                    .with(&self.name, |ctx, _| self.open_logged_in(ctx, slot))
            }) {
                Ok(lease) => lease,
                Err(Acquire::Busy(waited)) => {
                    return Err(self.unavailable(format!(
                        "all {} sessions stayed busy for {} s",
                        self.pool.capacity(),
                        waited.as_secs()
                    )))
                }
                Err(Acquire::Open(e)) => {
                    self.note(&e, generation);
                    return Err(e);
                }
            };
            let ran = self.module.with(&self.name, |_, current| {
                if current != lease.generation() {
                    return Ok(Ran::Stale);
                }
                Ok(Ran::Done(op(lease.session(), current)))
            });
            let result = match ran {
                Ok(Ran::Done(result)) => result,
                Ok(Ran::Stale) => {
                    lease.discard();
                    continue;
                }
                Err(e) => {
                    lease.discard();
                    return Err(e);
                }
            };
            let Err(error) = result else {
                return Ok(result);
            };
            return match classify(&error) {
                Fault::Token => {
                    lease.discard();
                    let reason = format!("{what}: {}", rv_name(&error));
                    self.mark_down(generation, &reason);
                    Err(self.unavailable(reason))
                }
                Fault::Pin => {
                    lease.discard();
                    let rv = rv_name(&error);
                    self.mark_pin_refused(&rv);
                    Err(Pkcs11Error::PinRefused {
                        token: self.name.clone(),
                        rv,
                    })
                }
                Fault::StaleHandle => {
                    drop(lease);
                    self.check_present()?;
                    Ok(Err(error))
                }
                Fault::Operation => Ok(Err(error)),
            };
        }
        Err(self.unavailable(format!(
            "{what}: the module was re-initialised twice during the operation"
        )))
    }

    /// Remembers a token-level failure to open a session.
    fn note(&self, e: &Pkcs11Error, generation: u64) {
        match e {
            Pkcs11Error::PinRefused { rv, .. } => self.mark_pin_refused(rv),
            Pkcs11Error::Unavailable { reason, .. } => self.mark_down(generation, reason),
            _ => {}
        }
    }

    /// Checks that the token is still present and answering (`C_GetTokenInfo` on its slot); marks
    /// it down and reports it unavailable if not. Used before concluding "no such key": a token
    /// whose storage vanished can answer an empty search.
    pub(crate) fn check_present(&self) -> Result<(), Pkcs11Error> {
        let (slot, generation) = self.connected()?;
        let info = self
            .module
            .with(&self.name, |ctx, _| Ok(ctx.get_token_info(slot)))?;
        match info {
            Ok(info) => match &self.selector {
                TokenSelector::Label(label) if info.label() != label => {
                    let reason = format!(
                        "slot {} now holds token '{}' instead",
                        slot.id(),
                        info.label()
                    );
                    self.mark_down(generation, &reason);
                    Err(self.unavailable(reason))
                }
                _ => Ok(()),
            },
            Err(e) => {
                let reason = format!("reading token information: {}", rv_name(&e));
                self.mark_down(generation, &reason);
                Err(self.unavailable(reason))
            }
        }
    }

    /// Runs `op` on a new read-write session (key generation, import, the unseal key), outside the
    /// pool; logs in first.
    pub(crate) fn with_rw_session<T>(
        &self,
        what: &str,
        op: impl FnOnce(&Session) -> Result<T, CkError>,
    ) -> Result<Result<T, CkError>, Pkcs11Error> {
        let (slot, generation) = self.connected()?;
        let ran = self.module.with(&self.name, |ctx, current| {
            if current != generation {
                return Err(self.unavailable(format!("{what}: the module was re-initialised")));
            }
            let session = ctx
                .open_rw_session(slot)
                .map_err(|e| self.session_error("opening a read-write session", &e))?;
            self.login(&session)?;
            Ok(op(&session))
        });
        match ran {
            Err(e) => {
                self.note(&e, generation);
                Err(e)
            }
            Ok(Err(error)) if classify(&error) == Fault::Token => {
                let reason = format!("{what}: {}", rv_name(&error));
                self.mark_down(generation, &reason);
                Err(self.unavailable(reason))
            }
            Ok(result) => Ok(result),
        }
    }

    /// Runs `op` with the library context and the token's slot (mechanism queries).
    pub(crate) fn with_context<T>(
        &self,
        op: impl FnOnce(&Pkcs11, Slot) -> Result<T, Pkcs11Error>,
    ) -> Result<T, Pkcs11Error> {
        let (slot, _) = self.connected()?;
        self.module.with(&self.name, |ctx, _| op(ctx, slot))
    }

    /// The token's state, connecting first if it is down (at most once per
    /// [`RECONNECT_INTERVAL`]).
    pub fn status(&self) -> TokenStatus {
        let connected = self.connected().and_then(|(slot, _)| {
            self.check_present()?;
            Ok(slot)
        });
        let (available, detail) = match connected {
            Ok(slot) => (true, format!("available in slot {}", slot.id())),
            Err(e) => (false, e.to_string()),
        };
        TokenStatus {
            token: self.name.clone(),
            module: self.module.path().to_owned(),
            available,
            detail,
            sessions: (self.pool.open_count(), self.pool.capacity()),
        }
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        // Close the idle sessions of the current generation (never those of an older one: their
        // handles may name other sessions now).
        let _ = self.module.with(&self.name, |_, generation| {
            for session in self.pool.drain(generation) {
                let _ = session.close();
            }
            Ok(())
        });
    }
}
