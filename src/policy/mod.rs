//! The policy engine: policy files, evaluation, tooling.
