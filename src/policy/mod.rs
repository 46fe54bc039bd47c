//! The policy engine: policy files, evaluation, tooling.
pub mod amount_units;
pub mod file;
pub mod model;
pub mod parse;
pub mod eval;
pub mod limits;
