//! PKCS#11 modules loaded into this process: one per library path, initialised once, and
//! re-initialised (`C_Finalize` + `C_Initialize`) to reconnect after a token fault.
//!
//! A module is process-wide state in PKCS#11: `C_Initialize` may run once per process, and the
//! sessions and object handles of every token behind it die together at `C_Finalize`. So the
//! module is shared ([`Module::load`] returns the same one for the same path) and carries a
//! *generation* that grows at each re-initialisation: a session or handle remembers the generation
//! it was made in and is discarded, never used, once it is stale.
//!
//! Every call into the library runs under a read lock ([`Module::with`]); re-initialisation takes
//! the write lock, so it waits for calls in flight and no call ever runs against a finalised
//! library. Callers never re-initialise while they hold the read lock.
//!
//! Re-initialisation is how a token that went away comes back: SoftHSM2 reads its token
//! directory at `C_Initialize` only, and network HSMs (Luna, CloudHSM) recover a lost connection
//! the same way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};

use super::error::{rv_name, Pkcs11Error};

/// One loaded PKCS#11 library.
pub struct Module {
    path: PathBuf,
    state: RwLock<State>,
}

struct State {
    context: Pkcs11,
    generation: u64,
    /// `Err` when the last `C_Initialize` failed (the module is loaded but unusable until a
    /// later re-initialisation succeeds).
    initialized: Result<(), String>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn loaded() -> &'static Mutex<HashMap<PathBuf, Arc<Module>>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();
    LOADED.get_or_init(|| Mutex::new(HashMap::new()))
}

impl Module {
    /// The module at `path`, loaded and initialised on first use; the same one afterwards. A
    /// library that cannot be loaded is an error; one whose `C_Initialize` fails is returned
    /// uninitialised (its tokens report unavailable) so that a server can start and retry.
    pub fn load(path: &Path) -> Result<Arc<Module>, Pkcs11Error> {
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let mut modules = loaded().lock().expect("module registry lock poisoned");
        if let Some(module) = modules.get(&key) {
            return Ok(module.clone());
        }
        if !key.is_file() {
            return Err(Pkcs11Error::Load {
                module: path.to_owned(),
                reason: "no such file".into(),
            });
        }
        let context = Pkcs11::new(&key).map_err(|e| Pkcs11Error::Load {
            module: path.to_owned(),
            reason: e.to_string(),
        })?;
        let initialized = initialize(&context);
        if let Err(reason) = &initialized {
            tracing::warn!(module = %path.display(), %reason, "pkcs#11 C_Initialize failed; will retry");
        }
        let module = Arc::new(Module {
            path: path.to_owned(),
            state: RwLock::new(State {
                context,
                generation: 1,
                initialized,
            }),
        });
        modules.insert(key, module.clone());
        Ok(module)
    }

    /// The library path, as configured.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current generation (grows at each re-initialisation).
    pub fn generation(&self) -> u64 {
        self.state.read().expect("module lock poisoned").generation
    }

    /// Runs `f` with the library context and the current generation, under the read lock.
    /// `Unavailable` (naming `token`) if the module is not initialised.
    pub fn with<R>(
        &self,
        token: &str,
        f: impl FnOnce(&Pkcs11, u64) -> Result<R, Pkcs11Error>,
    ) -> Result<R, Pkcs11Error> {
        let state = self.state.read().expect("module lock poisoned");
        if let Err(reason) = &state.initialized {
            return Err(Pkcs11Error::Unavailable {
                token: token.to_owned(),
                reason: format!(
                    "the pkcs#11 module {} is not initialised: {reason}",
                    self.path.display()
                ),
            });
        }
        f(&state.context, state.generation)
    }

    /// Finalises and initialises the library again, unless someone already did since `seen`
    /// (the generation the caller's failure happened in). Returns the generation now current.
    /// Every session and object handle of the old generation is dead afterwards.
    pub fn reinitialize(&self, seen: u64) -> u64 {
        let mut state = self.state.write().expect("module lock poisoned");
        if state.generation != seen {
            return state.generation;
        }
        if state.initialized.is_ok() {
            if let Err(e) = state.context.clone().finalize() {
                tracing::debug!(module = %self.path.display(), error = %rv_name(&e), "C_Finalize failed");
            }
        }
        state.initialized = initialize(&state.context);
        state.generation += 1;
        match &state.initialized {
            Ok(()) => tracing::info!(
                module = %self.path.display(),
                generation = state.generation,
                "pkcs#11 module re-initialised"
            ),
            Err(reason) => tracing::warn!(
                module = %self.path.display(),
                %reason,
                "pkcs#11 module re-initialisation failed"
            ),
        }
        state.generation
    }
}

fn initialize(context: &Pkcs11) -> Result<(), String> {
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => Ok(()),
        // Someone else in this process initialised it (another binding): usable as it is.
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(()),
        Err(e) => Err(rv_name(&e)),
    }
}
