//! The byte encoding every governance statement is signed in: versioned, domain-separated,
//! unambiguous, and simple enough to rebuild in a browser or a twenty-line script.
//!
//! ```text
//! statement = str(domain) ‖ field_1 ‖ … ‖ field_n        (the fields and their order are fixed
//!                                                         by the domain, which names a version)
//! str(s)    = u32_be(byte length of s) ‖ the UTF-8 bytes of s
//! list(xs)  = u32_be(number of items) ‖ str(x_1) ‖ … ‖ str(x_k)
//! ```
//!
//! Every field is text (numbers are written in decimal ASCII), so the encoding has two shapes
//! and no others. Because every field carries its length, no choice of field values can make
//! two different statements encode to the same bytes, and because the first field is the
//! domain (`custos/vote/v1`, `custos/policy/v1`, `custos/console-login/v1`), a signature made
//! for one kind of statement never verifies as another.

/// Builds one statement.
#[derive(Debug, Default)]
pub struct Statement {
    bytes: Vec<u8>,
}

/// Why a text cannot go into a statement.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodingError {
    /// A field longer than the encoding's 32-bit length.
    #[error("a statement field of {0} bytes is longer than 4 GiB")]
    TooLong(usize),
}

fn len32(n: usize) -> Result<[u8; 4], EncodingError> {
    u32::try_from(n)
        .map(u32::to_be_bytes)
        .map_err(|_| EncodingError::TooLong(n))
}

impl Statement {
    /// A statement of `domain` (its first field).
    pub fn new(domain: &str) -> Result<Self, EncodingError> {
        let mut s = Statement::default();
        s.str(domain)?;
        Ok(s)
    }

    /// Appends one text field.
    pub fn str(&mut self, text: &str) -> Result<&mut Self, EncodingError> {
        self.bytes.extend_from_slice(&len32(text.len())?);
        self.bytes.extend_from_slice(text.as_bytes());
        Ok(self)
    }

    /// Appends one list of texts.
    pub fn list<S: AsRef<str>>(&mut self, items: &[S]) -> Result<&mut Self, EncodingError> {
        self.bytes.extend_from_slice(&len32(items.len())?);
        for item in items {
            self.str(item.as_ref())?;
        }
        Ok(self)
    }

    /// The encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_length_prefixed() {
        let mut s = Statement::new("d/v1").unwrap();
        s.str("ab").unwrap().list(&["x", ""]).unwrap();
        assert_eq!(
            s.into_bytes(),
            b"\0\0\0\x04d/v1\0\0\0\x02ab\0\0\0\x02\0\0\0\x01x\0\0\0\0".to_vec()
        );
    }

    #[test]
    fn moving_a_boundary_changes_the_bytes() {
        let mut a = Statement::new("d").unwrap();
        a.str("ab").unwrap().str("c").unwrap();
        let mut b = Statement::new("d").unwrap();
        b.str("a").unwrap().str("bc").unwrap();
        assert_ne!(a.into_bytes(), b.into_bytes());
    }
}
