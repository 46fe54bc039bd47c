//! Span handling: where in the policy text a problem is. The TOML deserializer and the file
//! structs ([`crate::policy::file`]) keep byte ranges (`toml::Spanned`); this file turns them into
//! 1-based line and column numbers, collects the problems the validation finds, and renders them
//! as `file:line:column: message`, in file order.

use std::fmt;
use std::ops::Range;

/// One problem in a policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// 1-based line (0 when the problem has no position).
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Plain sentence.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Every problem found in a policy file (never empty).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors {
    /// The file name to prefix each error with, when known.
    pub file: Option<String>,
    /// The problems, in file order.
    pub errors: Vec<PolicyError>,
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match &self.file {
                Some(file) => write!(f, "{file}:{e}")?,
                None => write!(f, "{e}")?,
            }
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let mut safe = offset;
    while !text.is_char_boundary(safe) {
        safe -= 1;
    }
    let before = &text[..safe];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The problems found in one policy text, each placed at its line and column.
pub(super) struct Diagnostics<'t> {
    text: &'t str,
    errors: Vec<PolicyError>,
}

impl<'t> Diagnostics<'t> {
    /// No problems yet, in `text`.
    pub(super) fn new(text: &'t str) -> Self {
        Diagnostics {
            text,
            errors: Vec::new(),
        }
    }

    /// Records a problem at the start of `span` (a byte range of the text).
    pub(super) fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.errors.push(PolicyError {
            line,
            column,
            message: message.into(),
        });
    }

    /// The 1-based line where `span` starts.
    pub(super) fn line_of(&self, span: Range<usize>) -> usize {
        line_col(self.text, span.start).0
    }

    /// How many problems were recorded so far.
    pub(super) fn count(&self) -> usize {
        self.errors.len()
    }

    /// `Ok` when nothing was recorded, else every problem, in file order.
    pub(super) fn finish(mut self) -> Result<(), PolicyErrors> {
        if self.errors.is_empty() {
            return Ok(());
        }
        self.errors.sort_by_key(|e| (e.line, e.column));
        Err(PolicyErrors {
            file: None,
            errors: self.errors,
        })
    }
}

/// A syntax or shape error of the TOML deserializer, at its span.
pub(super) fn toml_error(text: &str, e: &toml::de::Error) -> PolicyErrors {
    let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
    PolicyErrors {
        file: None,
        errors: vec![PolicyError {
            line,
            column,
            message: e.message().trim().to_owned(),
        }],
    }
}
