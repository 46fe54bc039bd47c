//! Shared state: limit ledger, requests, approvals, outbox, audit.
