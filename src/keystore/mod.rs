//! The sealed key store (a sled directory): envelope-encrypted seeds and wallets.
