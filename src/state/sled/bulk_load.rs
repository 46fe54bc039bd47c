//! Bulk loading of the ledger: reservations recorded without checks, each bucket written once.
//! For benchmarks (`custos bench`) and tests of large ledgers, never for the service (it bypasses
//! the caps).

use super::ledger::Record;
use super::{storage, SledState};
use crate::policy::limits::{LedgerKey, ReservationPlan, Usage};
use crate::state::buckets::{self, bucket_key, key_prefix, minute_of};
use crate::state::StateError;

impl SledState {
    /// Records reservations without checks or flush: bulk loading for benchmarks and tests of
    /// large ledgers. Not for the service (it bypasses the caps).
    ///
    /// Takes any number of entries (a slice, or an iterator producing them lazily) and writes each
    /// bucket once: usage is first aggregated in memory per (key, minute), rolled up into the
    /// coarser levels, added to what the tree already holds, and written in key order in batches.
    pub fn load_unchecked<I, E>(&self, entries: I) -> Result<(), StateError>
    where
        I: IntoIterator<Item = E>,
        E: std::borrow::Borrow<(String, ReservationPlan)>,
    {
        use std::collections::HashMap;
        const BATCH: usize = 50_000;
        // Ledger keys interned; per (key, minute) usage.
        let mut key_ids: HashMap<LedgerKey, u32> = HashMap::new();
        let mut minutes: HashMap<(u32, i64), Usage> = HashMap::new();
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        for entry in entries {
            let (id, plan) = entry.borrow();
            let minute = minute_of(plan.at);
            for key in &plan.keys {
                let n = key_ids.len() as u32;
                let k = match key_ids.get(key) {
                    Some(k) => *k,
                    None => *key_ids.entry(key.clone()).or_insert(n),
                };
                let e = minutes.entry((k, minute)).or_default();
                e.sum = e.sum.saturating_add(plan.amount);
                e.count += 1;
            }
            let record = Record {
                at: plan.at,
                amount: plan.amount,
                keys: plan.keys.clone(),
                hold_until: None,
                released: false,
            };
            batch.insert(id.as_bytes(), serde_json::to_vec(&record).map_err(storage)?);
            pending += 1;
            if pending == BATCH {
                self.ledger_reservations
                    .apply_batch(std::mem::take(&mut batch))
                    .map_err(storage)?;
                pending = 0;
            }
        }
        self.ledger_reservations
            .apply_batch(batch)
            .map_err(storage)?;

        // Keys in the byte order of their prefixes, minutes in order: the bucket keys of one
        // ledger key then come out level by level, each level in time order (the tree's order).
        let mut keys: Vec<(Vec<u8>, u32)> =
            key_ids.iter().map(|(k, id)| (key_prefix(k), *id)).collect();
        keys.sort_unstable();
        let mut rank = vec![0u32; keys.len()];
        for (r, (_, id)) in keys.iter().enumerate() {
            rank[*id as usize] = r as u32;
        }
        let mut minutes: Vec<((u32, i64), Usage)> = minutes
            .into_iter()
            .map(|((k, m), u)| ((rank[k as usize], m), u))
            .collect();
        minutes.sort_unstable_by_key(|(k, _)| *k);
        drop(key_ids);

        // Two writers on disjoint key ranges (sled takes concurrent writers; a batch is slower
        // than plain inserts at this size).
        let merge_existing = !self.ledger_buckets.is_empty();
        let split = minutes.len() / 2;
        let split = split
            + minutes[split..].partition_point(|((k, _), _)| {
                minutes.get(split).is_some_and(|((r, _), _)| k == r)
            });
        let (a, b) = minutes.split_at(split);
        let keys = &keys;
        std::thread::scope(|s| {
            let other = s.spawn(|| self.write_buckets(keys, b, merge_existing));
            let mine = self.write_buckets(keys, a, merge_existing);
            other
                .join()
                .map_err(|_| StateError::Storage("bulk loader thread panicked".into()))?
                .and(mine)
        })
    }

    /// Rolls per-minute usage (sorted by key rank, then minute) up into every level and adds it
    /// to the tree.
    fn write_buckets(
        &self,
        keys: &[(Vec<u8>, u32)],
        minutes: &[((u32, i64), Usage)],
        merge_existing: bool,
    ) -> Result<(), StateError> {
        let write = |k: Vec<u8>, add: Usage| -> Result<(), StateError> {
            let old = if merge_existing {
                match self.ledger_buckets.get(&k).map_err(storage)? {
                    Some(v) => buckets::decode(&v).unwrap_or_default(),
                    None => Usage::default(),
                }
            } else {
                Usage::default()
            };
            let new = Usage {
                sum: old.sum.saturating_add(add.sum),
                count: old.count.saturating_add(add.count),
            };
            self.ledger_buckets
                .insert(k, &buckets::encode(new)[..])
                .map_err(storage)?;
            Ok(())
        };
        let mut i = 0;
        while i < minutes.len() {
            let r = minutes[i].0 .0;
            let j = i + minutes[i..].partition_point(|((k, _), _)| *k == r);
            let prefix = &keys[r as usize].0;
            for (level, size) in buckets::LEVELS.iter().enumerate() {
                // Roll the minutes of this key up into aligned buckets of this level (in order).
                let mut cur: Option<(i64, Usage)> = None;
                for ((_, m), u) in &minutes[i..j] {
                    let start = m.div_euclid(*size) * size;
                    match &mut cur {
                        Some((s, acc)) if *s == start => {
                            acc.sum = acc.sum.saturating_add(u.sum);
                            acc.count = acc.count.saturating_add(u.count);
                        }
                        _ => {
                            if let Some((s, acc)) = cur.take() {
                                write(bucket_key(prefix, level, s), acc)?;
                            }
                            cur = Some((start, *u));
                        }
                    }
                }
                if let Some((s, acc)) = cur {
                    write(bucket_key(prefix, level, s), acc)?;
                }
            }
            i = j;
        }
        Ok(())
    }
}
