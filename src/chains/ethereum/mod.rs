//! Ethereum and EVM chains: unsigned transactions, personal messages and EIP-712 typed data in;
//! an [`Intent`] to decide on; signatures from the key backend; the signed result out.
//!
//! Standards implemented:
//! - [EIP-155](https://eips.ethereum.org/EIPS/eip-155): replay-protected legacy transactions
//!   (`v = chainId × 2 + 35 + y`); pre-EIP-155 transactions are refused.
//! - [EIP-2718](https://eips.ethereum.org/EIPS/eip-2718): typed transaction envelopes.
//! - [EIP-2930](https://eips.ethereum.org/EIPS/eip-2930): access-list transactions (type 1).
//! - [EIP-1559](https://eips.ethereum.org/EIPS/eip-1559): fee-market transactions (type 2).
//! - [EIP-2](https://eips.ethereum.org/EIPS/eip-2): low-S signatures only.
//! - [EIP-191](https://eips.ethereum.org/EIPS/eip-191): `personal_sign` messages.
//! - [EIP-712](https://eips.ethereum.org/EIPS/eip-712): typed structured data
//!   (`eth_signTypedData_v4`).
//! - [EIP-2612](https://eips.ethereum.org/EIPS/eip-2612) permits, DAI's permit, and Uniswap
//!   [Permit2](https://github.com/Uniswap/permit2) (`PermitSingle`, `PermitTransferFrom`) are
//!   token approvals.
//! - ERC-20 (`transfer`, `transferFrom`, `approve`) calldata for tokens the registry knows.
//!
//! The chain id always comes from the wallet: a payload for another chain is refused. The
//! account index (the last path step, `m/44'/60'/account'/0/index`) selects the sending address;
//! a `from` (or permit owner) that is not that address is refused.
//!
//! Files: [`tx`] holds the transaction types and parses transactions (it tells JSON from RLP and
//! decodes RLP), `tx_json` reads an `eth_signTransaction` JSON object into one, `json` reads
//! untrusted JSON strictly (duplicate keys, big integers, JSON-RPC quantities, bytes and
//! addresses), [`calldata`] decodes ERC-20 calls, [`message`] hashes EIP-191 messages,
//! [`typed_data`] checks and hashes EIP-712 data and finds permits, `describe` builds intents,
//! [`sign`](mod@sign) asks the backend and assembles the result, [`error`] says why something was
//! refused.

pub mod calldata;
mod describe;
pub mod error;
mod json;
pub mod message;
pub mod sign;
pub mod tx;
mod tx_json;
pub mod typed_data;

use alloy_primitives::{Address, B256};

pub use error::EthError;
pub use sign::sign;
pub use tx::EthTx;

use crate::assets::TokenRegistry;
use crate::intent::Intent;
use crate::wallet::Wallet;

/// A payload to sign, as a client sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EthPayload<'a> {
    /// An unsigned transaction: a JSON object of fields (as `eth_signTransaction` takes them), or
    /// unsigned RLP (raw bytes, or 0x-hex text).
    Transaction(&'a [u8]),
    /// A `personal_sign` message: its exact bytes.
    PersonalMessage(&'a [u8]),
    /// `eth_signTypedData_v4` JSON.
    TypedData(&'a [u8]),
}

/// What is signed once the request is decoded.
#[derive(Clone, Debug)]
pub(crate) enum Body {
    Transaction(EthTx),
    Message,
}

/// A payload decoded for one wallet and index: its intent, and the digest to sign.
#[derive(Clone, Debug)]
pub struct DecodedEth {
    wallet: String,
    index: u32,
    from: Address,
    intent: Intent,
    hash: B256,
    body: Body,
}

impl DecodedEth {
    /// What the request does.
    pub fn intent(&self) -> &Intent {
        &self.intent
    }

    /// The digest the key signs (transaction signing hash, EIP-191 or EIP-712 hash).
    pub fn signing_hash(&self) -> [u8; 32] {
        self.hash.0
    }

    /// The account nonce (transactions only).
    pub fn nonce(&self) -> Option<u64> {
        self.intent.nonce
    }

    /// The address that signs.
    pub fn from_address(&self) -> Address {
        self.from
    }

    /// The account index of the signing address.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The unsigned transaction (`None` for messages).
    pub fn transaction(&self) -> Option<&EthTx> {
        match &self.body {
            Body::Transaction(tx) => Some(tx),
            Body::Message => None,
        }
    }
}

/// The signed result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EthSigned {
    /// A signed transaction, ready to broadcast.
    Transaction {
        /// The EIP-2718 encoding, 0x-hex.
        raw_tx_hex: String,
        /// Its hash (keccak256 of the raw bytes), 0x-hex.
        tx_hash: String,
    },
    /// A message or typed-data signature.
    Message {
        /// 65 bytes `r ‖ s ‖ v` (v = 27 or 28), 0x-hex.
        signature_hex: String,
    },
}

/// The wallet's chain id, or why the wallet is not an EVM wallet.
fn chain_id(wallet: &Wallet) -> Result<u64, EthError> {
    wallet
        .network()
        .chain_id()
        .ok_or_else(|| EthError::NotEthereumWallet {
            wallet: wallet.name.clone(),
            chain: wallet.chain().as_str(),
        })
}

/// The wallet's address at `index`.
pub(crate) fn our_address(wallet: &Wallet, index: u32) -> Result<Address, EthError> {
    chain_id(wallet)?;
    match wallet.account.ethereum_address(index) {
        Ok(Some(address)) => Ok(address),
        Ok(None) => Err(EthError::NotEthereumWallet {
            wallet: wallet.name.clone(),
            chain: wallet.chain().as_str(),
        }),
        Err(e) => Err(EthError::Index {
            index,
            reason: e.to_string(),
        }),
    }
}

/// Decodes a payload for `wallet`'s address at `index` (0 is the wallet's first address):
/// parses it strictly, checks chain id and sender, and explains it as an [`Intent`]. Never
/// panics, whatever the bytes.
pub fn decode(
    wallet: &Wallet,
    index: u32,
    payload: EthPayload<'_>,
    tokens: &TokenRegistry,
) -> Result<DecodedEth, EthError> {
    let chain_id = chain_id(wallet)?;
    let from = our_address(wallet, index)?;
    let (intent, hash, body) = match payload {
        EthPayload::Transaction(bytes) => {
            let parsed = tx::parse(bytes, chain_id)?;
            if let Some(claimed) = parsed.from {
                if claimed != from {
                    return Err(EthError::WrongSender {
                        field: "from",
                        expected: from.to_checksum(None),
                        found: claimed.to_checksum(None),
                        index,
                    });
                }
            }
            let intent = describe::transaction(wallet, &parsed.tx, from, tokens);
            let hash = parsed.tx.signing_hash();
            (intent, hash, Body::Transaction(parsed.tx))
        }
        EthPayload::PersonalMessage(bytes) => (
            describe::personal_message(wallet, bytes),
            message::signing_hash(bytes),
            Body::Message,
        ),
        EthPayload::TypedData(bytes) => {
            let typed = typed_data::parse(bytes, chain_id, from, index)?;
            (
                describe::typed_data(wallet, &typed, tokens),
                typed.hash,
                Body::Message,
            )
        }
    };
    Ok(DecodedEth {
        wallet: wallet.name.clone(),
        index,
        from,
        intent,
        hash,
        body,
    })
}
