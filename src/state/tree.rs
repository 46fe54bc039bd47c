//! The trees (tables) of the state database, by name and by a stable one-byte id that record MACs
//! bind to (`super::auth`), so a record moved from one tree to another fails.

/// One tree of the state database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tree {
    /// Requests by (requester, request id): idempotency records, decisions, votes, results.
    Requests,
    /// Pending requests by expiry (an index).
    Pending,
    /// The audit chain by sequence.
    Audit,
    /// Signed transactions by sequence.
    Outbox,
    /// Broadcaster cursors by principal.
    Cursors,
    /// Ethereum nonce claims.
    Nonces,
    /// Heads (audit, outbox), the digest and the state's identity.
    Meta,
    /// Limit-ledger usage aggregates per time bucket.
    LedgerBuckets,
    /// Limit-ledger reservations by request.
    LedgerReservations,
    /// Limit-ledger holds by expiry (an index).
    LedgerHolds,
    /// Request keys by the client's request id (an index: ids are scoped by requester).
    RequestIds,
}

impl Tree {
    /// Every tree, in id order.
    pub const ALL: [Tree; 11] = [
        Tree::Requests,
        Tree::Pending,
        Tree::Audit,
        Tree::Outbox,
        Tree::Cursors,
        Tree::Nonces,
        Tree::Meta,
        Tree::LedgerBuckets,
        Tree::LedgerReservations,
        Tree::LedgerHolds,
        Tree::RequestIds,
    ];

    /// The name of the tree (sled tree name, SQL `tree` column, messages).
    pub fn name(self) -> &'static str {
        match self {
            Tree::Requests => "requests",
            Tree::Pending => "pending",
            Tree::Audit => "audit",
            Tree::Outbox => "outbox",
            Tree::Cursors => "cursors",
            Tree::Nonces => "nonces",
            Tree::Meta => "meta",
            Tree::LedgerBuckets => "ledger_buckets",
            Tree::LedgerReservations => "ledger_reservations",
            Tree::LedgerHolds => "ledger_holds",
            Tree::RequestIds => "request_ids",
        }
    }

    /// The stable id bound into record MACs. Never reuse or renumber one.
    pub fn id(self) -> u8 {
        match self {
            Tree::Requests => 1,
            Tree::Pending => 2,
            Tree::Audit => 3,
            Tree::Outbox => 4,
            Tree::Cursors => 5,
            Tree::Nonces => 6,
            Tree::Meta => 7,
            Tree::LedgerBuckets => 8,
            Tree::LedgerReservations => 9,
            Tree::LedgerHolds => 10,
            Tree::RequestIds => 11,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_are_distinct() {
        let ids: std::collections::BTreeSet<u8> = Tree::ALL.iter().map(|t| t.id()).collect();
        let names: std::collections::BTreeSet<&str> = Tree::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(ids.len(), Tree::ALL.len());
        assert_eq!(names.len(), Tree::ALL.len());
    }
}
