//! Intents for Ethereum payloads: what a transaction, a message or typed data really does.
//!
//! - No `to`: [`ActionKind::ContractCreation`] with the value sent.
//! - No calldata: [`ActionKind::Transfer`] of the value to `to`.
//! - Calldata to a token the registry knows, with zero ETH value, that decodes exactly as ERC-20
//!   `transfer`/`transferFrom`/`approve`: [`ActionKind::TokenTransfer`] or
//!   [`ActionKind::TokenApproval`] with the real recipient or spender and the token amount.
//! - Any other calldata (unknown contract, inexact decoding, a token call that also sends ETH):
//!   [`ActionKind::ContractCall`] naming the contract, the selector and the value — never a plain
//!   transfer.
//!
//! The fee is the most the transaction can cost (gas limit × gas price or max fee per gas), and
//! the nonce is carried.

use alloy_primitives::Address;

use super::calldata::{decode_erc20, selector, Erc20Call};
use super::tx::EthTx;
use super::typed_data::ParsedTypedData;
use crate::assets::TokenRegistry;
use crate::intent::{ActionKind, Asset, Destination, Intent, MessageInfo};
use crate::keys::Chain;
use crate::wallet::Wallet;

/// Lower-case 0x-hex, as intents carry addresses.
pub(crate) fn addr(a: &Address) -> String {
    format!("{a:#x}")
}

fn native(wallet: &Wallet) -> Asset {
    let (symbol, decimals) = wallet.network().native_asset();
    Asset::native(symbol, decimals)
}

fn base(wallet: &Wallet, kind: ActionKind) -> Intent {
    Intent::new(
        wallet.name.clone(),
        Chain::Ethereum,
        wallet.network().name(),
        kind,
        native(wallet),
    )
}

fn token_asset(tokens: &TokenRegistry, chain_id: u64, contract: &Address) -> Option<Asset> {
    tokens.lookup(chain_id, &addr(contract)).map(|t| t.asset())
}

/// The intent of a transaction sent by `from`.
pub(crate) fn transaction(
    wallet: &Wallet,
    tx: &EthTx,
    from: Address,
    tokens: &TokenRegistry,
) -> Intent {
    let value = tx.value();
    let data = tx.input();
    let mut intent = match tx.to() {
        None => {
            let mut i = base(wallet, ActionKind::ContractCreation);
            i.amount = value;
            i
        }
        Some(to) if data.is_empty() => {
            let mut i = base(wallet, ActionKind::Transfer);
            i.destinations.push(Destination {
                address: addr(&to),
                amount: value,
            });
            i.amount = value;
            i
        }
        Some(to) => {
            let token = token_asset(tokens, tx.chain_id(), &to);
            let call = decode_erc20(data);
            match (token, call) {
                (Some(asset), Some(call)) if value.is_zero() => {
                    let (kind, dest, amount, owner) = match call {
                        Erc20Call::Transfer { to, amount } => {
                            (ActionKind::TokenTransfer, to, amount, None)
                        }
                        Erc20Call::TransferFrom { owner, to, amount } => (
                            ActionKind::TokenTransfer,
                            to,
                            amount,
                            (owner != from).then_some(owner),
                        ),
                        Erc20Call::Approve { spender, amount } => {
                            (ActionKind::TokenApproval, spender, amount, None)
                        }
                    };
                    let mut i = base(wallet, kind);
                    i.asset = asset;
                    i.destinations.push(Destination {
                        address: addr(&dest),
                        amount,
                    });
                    i.amount = amount;
                    i.token_owner = owner.as_ref().map(addr);
                    i.contract = Some(addr(&to));
                    i.selector = selector(data).map(|s| format!("0x{}", hex::encode(s)));
                    i
                }
                _ => {
                    let mut i = base(wallet, ActionKind::ContractCall);
                    i.destinations.push(Destination {
                        address: addr(&to),
                        amount: value,
                    });
                    i.amount = value;
                    i.contract = Some(addr(&to));
                    i.selector = selector(data).map(|s| format!("0x{}", hex::encode(s)));
                    i
                }
            }
        }
    };
    intent.fee = tx.max_fee();
    intent.nonce = Some(tx.nonce());
    intent
}

/// The length of a personal message that is a hash (a digest of 32 bytes).
pub const BLIND_MESSAGE_LEN: usize = 32;

/// The intent of a personal message; exactly 32 bytes is a hash signed blind
/// ([`ActionKind::BlindMessage`]).
pub(crate) fn personal_message(wallet: &Wallet, message: &[u8]) -> Intent {
    let kind = if message.len() == BLIND_MESSAGE_LEN {
        ActionKind::BlindMessage
    } else {
        ActionKind::Message
    };
    let mut i = base(wallet, kind);
    i.message = Some(MessageInfo {
        preview: Some(super::message::preview(message)),
        ..MessageInfo::default()
    });
    i
}

/// The intent of typed data: a token approval for a permit, else a typed message.
pub(crate) fn typed_data(
    wallet: &Wallet,
    typed: &ParsedTypedData,
    tokens: &TokenRegistry,
) -> Intent {
    let info = MessageInfo {
        domain_name: typed.domain.name.as_ref().map(|n| n.to_string()),
        domain_chain_id: typed.chain_id,
        verifying_contract: typed.domain.verifying_contract.as_ref().map(addr),
        primary_type: Some(typed.primary_type.clone()),
        preview: None,
        without_chain_id: typed.chain_id.is_none(),
    };
    let Some(permit) = &typed.permit else {
        let mut i = base(wallet, ActionKind::TypedMessage);
        i.message = Some(info);
        return i;
    };
    let chain_id = wallet.network().chain_id().unwrap_or_default();
    let asset = token_asset(tokens, chain_id, &permit.token).unwrap_or_else(|| Asset {
        // An approval of an unknown token is still an approval: named by its contract.
        symbol: addr(&permit.token),
        decimals: 0,
        contract: Some(addr(&permit.token)),
    });
    let mut i = base(wallet, ActionKind::TokenApproval);
    i.asset = asset;
    i.destinations.push(Destination {
        address: addr(&permit.spender),
        amount: permit.amount,
    });
    i.amount = permit.amount;
    i.contract = Some(addr(&permit.token));
    i.deadline = permit.deadline;
    i.message = Some(info);
    i
}
