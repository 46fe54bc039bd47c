//! ERC-20 calldata, decoded exactly: `transfer(address,uint256)`, `approve(address,uint256)` and
//! `transferFrom(address,address,uint256)`.
//!
//! Exact means: the 4-byte selector, then exactly the ABI words of the arguments (no fewer, no
//! more), each address word with its 12 leading bytes zero. Anything else — a short or long
//! payload, dirty address padding, another selector — is not a token action, and the caller
//! describes the transaction as a contract call instead.

use alloy_primitives::{Address, U256};

/// `transfer(address,uint256)`.
pub const TRANSFER: [u8; 4] = [0xa9, 0x05, 0x9c, 0xbb];
/// `approve(address,uint256)`.
pub const APPROVE: [u8; 4] = [0x09, 0x5e, 0xa7, 0xb3];
/// `transferFrom(address,address,uint256)`.
pub const TRANSFER_FROM: [u8; 4] = [0x23, 0xb8, 0x72, 0xdd];

/// An ERC-20 call decoded exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Erc20Call {
    /// `transfer(to, amount)`: our tokens to `to`.
    Transfer {
        /// Recipient.
        to: Address,
        /// Amount in token base units.
        amount: U256,
    },
    /// `transferFrom(owner, to, amount)`: `owner`'s tokens (through our allowance, or ours) to
    /// `to`.
    TransferFrom {
        /// Whose tokens move.
        owner: Address,
        /// Recipient.
        to: Address,
        /// Amount in token base units.
        amount: U256,
    },
    /// `approve(spender, amount)`: `spender` may move up to `amount` of our tokens.
    Approve {
        /// Spender.
        spender: Address,
        /// Allowance (2^256 − 1 is unlimited).
        amount: U256,
    },
}

/// The selector of `data`, if it has one.
pub fn selector(data: &[u8]) -> Option<[u8; 4]> {
    data.get(..4).map(|s| [s[0], s[1], s[2], s[3]])
}

/// Decodes `data` as one of the three ERC-20 calls, exactly; `None` otherwise.
pub fn decode_erc20(data: &[u8]) -> Option<Erc20Call> {
    let selector = selector(data)?;
    let args = &data[4..];
    if !args.len().is_multiple_of(32) {
        return None;
    }
    let words: Vec<&[u8]> = args.chunks_exact(32).collect();
    match (selector, words.as_slice()) {
        (TRANSFER, [to, amount]) => Some(Erc20Call::Transfer {
            to: address_word(to)?,
            amount: U256::from_be_slice(amount),
        }),
        (APPROVE, [spender, amount]) => Some(Erc20Call::Approve {
            spender: address_word(spender)?,
            amount: U256::from_be_slice(amount),
        }),
        (TRANSFER_FROM, [owner, to, amount]) => Some(Erc20Call::TransferFrom {
            owner: address_word(owner)?,
            to: address_word(to)?,
            amount: U256::from_be_slice(amount),
        }),
        _ => None,
    }
}

/// An ABI address word: 12 zero bytes, then the address.
fn address_word(word: &[u8]) -> Option<Address> {
    if word.len() != 32 || word[..12].iter().any(|b| *b != 0) {
        return None;
    }
    Some(Address::from_slice(&word[12..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::keccak256;

    #[test]
    fn selectors_are_the_erc20_signatures() {
        for (sel, sig) in [
            (TRANSFER, "transfer(address,uint256)"),
            (APPROVE, "approve(address,uint256)"),
            (TRANSFER_FROM, "transferFrom(address,address,uint256)"),
        ] {
            assert_eq!(&keccak256(sig)[..4], &sel[..], "{sig}");
        }
    }

    fn word_addr(byte: u8) -> Vec<u8> {
        let mut w = vec![0u8; 12];
        w.extend([byte; 20]);
        w
    }

    #[test]
    fn exact_decoding_only() {
        let mut data = TRANSFER.to_vec();
        data.extend(word_addr(0x11));
        data.extend(U256::from(5u8).to_be_bytes::<32>());
        assert_eq!(
            decode_erc20(&data),
            Some(Erc20Call::Transfer {
                to: Address::repeat_byte(0x11),
                amount: U256::from(5u8)
            })
        );
        // Extra byte, extra word, short word, dirty padding, wrong selector.
        let mut extra = data.clone();
        extra.push(0);
        assert_eq!(decode_erc20(&extra), None);
        let mut word = data.clone();
        word.extend([0u8; 32]);
        assert_eq!(decode_erc20(&word), None);
        assert_eq!(decode_erc20(&data[..data.len() - 1]), None);
        let mut dirty = data.clone();
        dirty[4] = 1;
        assert_eq!(decode_erc20(&dirty), None);
        let mut other = data.clone();
        other[0] ^= 1;
        assert_eq!(decode_erc20(&other), None);
        // transfer's arguments under approve's selector decode as an approval; under
        // transferFrom's (which has three words) they do not decode.
        let mut approve = data.clone();
        approve[..4].copy_from_slice(&APPROVE);
        assert!(matches!(
            decode_erc20(&approve),
            Some(Erc20Call::Approve { .. })
        ));
        let mut from = data;
        from[..4].copy_from_slice(&TRANSFER_FROM);
        assert_eq!(decode_erc20(&from), None);
        assert_eq!(decode_erc20(&[]), None);
        assert_eq!(decode_erc20(&TRANSFER[..3]), None);
    }
}
