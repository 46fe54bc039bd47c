//! Sign-in challenges and sessions of the approval console, in memory.
//!
//! A challenge is 32 random bytes (hex), single use, valid for [`CHALLENGE_TTL`]. A session is
//! opened by a signature over a challenge ([`crate::governance::login`]) with a key the policy
//! enrols for an approver; its token is 32 random bytes (hex) that the page keeps in memory
//! and sends as `Authorization: Bearer …`. Only the token's SHA-256 is kept here, so this table
//! holds nothing that could be replayed. Sessions last [`SESSION_TTL`]; both tables are bounded
//! (the oldest entry gives way), so a flood of sign-in attempts costs memory for at most
//! [`MAX_ENTRIES`] of each.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long a sign-in challenge may be answered.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(120);
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(15 * 60);
/// How many challenges, and how many sessions, are kept at most.
pub const MAX_ENTRIES: usize = 1024;

/// A signed-in approver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The approver's principal (the one its key is enrolled for).
    pub principal: String,
    /// The key it signed in with (canonical text).
    pub key: String,
    expires: Instant,
}

#[derive(Default)]
struct Tables {
    challenges: HashMap<String, Instant>,
    sessions: HashMap<[u8; 32], Session>,
}

/// The console's challenges and sessions.
#[derive(Default)]
pub struct Sessions {
    tables: Mutex<Tables>,
}

fn random_hex() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("random number generator failed: {e}"))?;
    Ok(hex::encode(bytes))
}

fn token_id(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().expect("console session lock poisoned")
    }

    /// A fresh challenge.
    pub fn challenge(&self, now: Instant) -> Result<String, String> {
        let challenge = random_hex()?;
        let mut t = self.tables();
        t.challenges
            .retain(|_, issued| now.duration_since(*issued) < CHALLENGE_TTL);
        if t.challenges.len() >= MAX_ENTRIES {
            if let Some(oldest) = t
                .challenges
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(c, _)| c.clone())
            {
                t.challenges.remove(&oldest);
            }
        }
        t.challenges.insert(challenge.clone(), now);
        Ok(challenge)
    }

    /// Uses up `challenge`: whether it was issued and is still fresh.
    pub fn take_challenge(&self, challenge: &str, now: Instant) -> bool {
        self.tables()
            .challenges
            .remove(challenge)
            .is_some_and(|issued| now.duration_since(issued) < CHALLENGE_TTL)
    }

    /// Opens a session; its token.
    pub fn open(&self, principal: &str, key: &str, now: Instant) -> Result<String, String> {
        let token = random_hex()?;
        let mut t = self.tables();
        t.sessions.retain(|_, s| s.expires > now);
        if t.sessions.len() >= MAX_ENTRIES {
            if let Some(oldest) = t
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(id, _)| *id)
            {
                t.sessions.remove(&oldest);
            }
        }
        t.sessions.insert(
            token_id(&token),
            Session {
                principal: principal.to_owned(),
                key: key.to_owned(),
                expires: now + SESSION_TTL,
            },
        );
        Ok(token)
    }

    /// The live session of `token`.
    pub fn get(&self, token: &str, now: Instant) -> Option<Session> {
        let id = token_id(token);
        let mut t = self.tables();
        match t.sessions.get(&id) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                t.sessions.remove(&id);
                None
            }
            None => None,
        }
    }

    /// Ends the session of `token`.
    pub fn close(&self, token: &str) {
        self.tables().sessions.remove(&token_id(token));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_single_use_and_expire() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let c = s.challenge(t0).unwrap();
        assert_eq!(c.len(), 64);
        assert!(s.take_challenge(&c, t0));
        assert!(!s.take_challenge(&c, t0), "single use");
        let late = s.challenge(t0).unwrap();
        assert!(!s.take_challenge(&late, t0 + CHALLENGE_TTL));
        assert!(!s.take_challenge("00", t0));
    }

    #[test]
    fn sessions_expire_and_close() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let token = s.open("spiffe://x/alice", "ed25519:00", t0).unwrap();
        assert_eq!(s.get(&token, t0).unwrap().principal, "spiffe://x/alice");
        assert!(s.get(&token, t0 + SESSION_TTL).is_none());
        let token = s.open("spiffe://x/alice", "ed25519:00", t0).unwrap();
        s.close(&token);
        assert!(s.get(&token, t0).is_none());
        assert!(s.get("not a token", t0).is_none());
    }

    #[test]
    fn tables_are_bounded() {
        let s = Sessions::default();
        let t0 = Instant::now();
        for i in 0..(MAX_ENTRIES + 10) {
            s.challenge(t0 + Duration::from_millis(i as u64)).unwrap();
            s.open("p", "k", t0 + Duration::from_millis(i as u64))
                .unwrap();
        }
        assert!(s.tables().challenges.len() <= MAX_ENTRIES);
        assert!(s.tables().sessions.len() <= MAX_ENTRIES);
    }
}
