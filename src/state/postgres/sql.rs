//! The statements, in one place (every one of them prepared once per connection and cached).
//!
//! Kept to what both PostgreSQL and CockroachDB run: `unnest` of parallel arrays, `INSERT … ON
//! CONFLICT … DO UPDATE`, row locks with `FOR UPDATE`, `UNION ALL` of ordered, limited subqueries.

use std::sync::OnceLock;

use crate::state::Tree;

pub const BEGIN: &str = "BEGIN";
pub const COMMIT: &str = "COMMIT";
pub const ROLLBACK: &str = "ROLLBACK";
pub const BEGIN_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// The state lock: every transaction takes it first.
pub const LOCK: &str = "SELECT id FROM custos_lock WHERE id = 1 FOR UPDATE";

pub const GET: &str = "SELECT value FROM custos_records WHERE tree = $1 AND key = $2";

pub const COUNT: &str = "SELECT COUNT(*) FROM custos_records WHERE tree = $1";

/// Range reads: `key >= $2` always (an excluded or missing lower bound is turned into an included
/// one), with or without an exclusive upper bound, in either order.
pub const SCAN_UP_TO: &str = "SELECT key, value FROM custos_records \
    WHERE tree = $1 AND key >= $2 AND key < $3 ORDER BY key LIMIT $4";
pub const SCAN_UP_OPEN: &str = "SELECT key, value FROM custos_records \
    WHERE tree = $1 AND key >= $2 ORDER BY key LIMIT $3";
pub const SCAN_DOWN_TO: &str = "SELECT key, value FROM custos_records \
    WHERE tree = $1 AND key >= $2 AND key < $3 ORDER BY key DESC LIMIT $4";
pub const SCAN_DOWN_OPEN: &str = "SELECT key, value FROM custos_records \
    WHERE tree = $1 AND key >= $2 ORDER BY key DESC LIMIT $3";

const KEYS_PART: &str = "SELECT CAST(0 AS SMALLINT) AS kind, r.tree, r.key, r.value \
    FROM unnest($1::SMALLINT[], $2::BYTEA[]) AS k(tree, key) \
    JOIN custos_records r ON r.tree = k.tree AND r.key = k.key";

/// Rows of the listed keys (`kind` 0).
pub const FETCH_KEYS: &str = KEYS_PART;

/// Trees read whole at the start of a transaction (every step writes there: digest, heads).
pub const WHOLE: [Tree; 1] = [Tree::Meta];
/// Append-only trees whose last record is read at the start of a transaction, so the next key
/// (the audit record, the outbox entry a step appends) is known to be free without a read.
pub const TAILS: [Tree; 2] = [Tree::Audit, Tree::Outbox];

/// The first read of a transaction, right after the lock: the listed keys (`kind` 0), the whole
/// `meta` tree (`kind` 1) and the last record of each append-only tree (`kind` 2).
pub fn fetch_begin() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let mut sql = KEYS_PART.to_owned();
        for tree in WHOLE {
            sql.push_str(&format!(
                " UNION ALL SELECT CAST(1 AS SMALLINT), tree, key, value FROM custos_records \
                 WHERE tree = {}",
                tree.id()
            ));
        }
        for tree in TAILS {
            sql.push_str(&format!(
                " UNION ALL (SELECT CAST(2 AS SMALLINT), tree, key, value FROM custos_records \
                 WHERE tree = {} ORDER BY key DESC LIMIT 1)",
                tree.id()
            ));
        }
        sql
    })
}

/// Removes the listed keys.
pub const DELETE: &str = "DELETE FROM custos_records WHERE (tree, key) IN \
    (SELECT tree, key FROM unnest($1::SMALLINT[], $2::BYTEA[]) AS k(tree, key))";

/// Writes the listed records.
pub const UPSERT: &str = "INSERT INTO custos_records (tree, key, value) \
    SELECT tree, key, value FROM unnest($1::SMALLINT[], $2::BYTEA[], $3::BYTEA[]) AS k(tree, key, value) \
    ON CONFLICT (tree, key) DO UPDATE SET value = excluded.value";

/// The SQL id of a tree.
pub fn tree_id(tree: Tree) -> i16 {
    i16::from(tree.id())
}

/// The tree of an SQL id.
pub fn tree_of(id: i16) -> Option<Tree> {
    Tree::ALL.into_iter().find(|t| i16::from(t.id()) == id)
}
