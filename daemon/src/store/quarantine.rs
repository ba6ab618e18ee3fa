//! Actor records that cannot be read at start: moved aside, so that one
//! corrupt record does not keep the daemon (and every other actor) from
//! being served, and kept, so that nothing is lost.
//!
//! A record in quarantine stays under its key, byte for byte, in the
//! `quarantine` tree. Each start tries it again and moves it back if it
//! reads (a daemon that knows its layout was installed); until then its id
//! stays taken and what it owns is left alone.

use std::collections::HashMap;

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::{decode, StoreError, Summary};

/// The sled tree of records in quarantine.
pub(super) const TREE: &str = "quarantine";

/// Loads the summaries of the readable records of `actors`, after moving
/// back the records of `quarantine` that read now, and moves those that
/// cannot be read into `quarantine`, logging each. Returns the summaries
/// and the keys left in quarantine, sorted. A record of a newer major
/// layout is an error: it is not corrupt, it needs a newer daemon.
pub(super) fn load(
    actors: &sled::Tree,
    quarantine: &sled::Tree,
) -> Result<(HashMap<String, Summary>, Vec<String>), StoreError> {
    for kv in quarantine.iter() {
        let (k, v) = kv?;
        if decode(&k, &v).is_ok() && !actors.contains_key(&k)? {
            move_record(quarantine, &k, actors, &k, &v)?;
            tracing::info!(
                key = %String::from_utf8_lossy(&k),
                "an actor record in quarantine reads now: restored"
            );
        }
    }
    let mut index = HashMap::new();
    for kv in actors.iter() {
        let (k, v) = kv?;
        match decode(&k, &v) {
            Ok(rec) => {
                index.insert(rec.id.clone(), Summary::of(&rec));
            }
            Err(e @ StoreError::Schema { .. }) => return Err(e),
            Err(e) => {
                let to = free_key(quarantine, &k)?;
                move_record(actors, &k, quarantine, &to, &v)?;
                tracing::warn!(
                    key = %String::from_utf8_lossy(&k),
                    quarantine_key = %String::from_utf8_lossy(&to),
                    error = %e,
                    "an actor record cannot be read: moved into quarantine; the other actors are served"
                );
            }
        }
    }
    let mut keys = Vec::new();
    for kv in quarantine.iter() {
        let (k, v) = kv?;
        let key = String::from_utf8_lossy(&k).into_owned();
        if let Err(e) = decode(&k, &v) {
            tracing::warn!(key = %key, error = %e, "an actor record is in quarantine");
        }
        keys.push(key);
    }
    keys.sort();
    Ok((index, keys))
}

/// `key`, or `key~N` for the first N not taken in `tree`: an earlier
/// record in quarantine under the same key is not overwritten.
fn free_key(tree: &sled::Tree, key: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut candidate = key.to_vec();
    let mut n = 0u32;
    while tree.contains_key(&candidate)? {
        n += 1;
        candidate = [key, format!("~{n}").as_bytes()].concat();
    }
    Ok(candidate)
}

/// Moves `value` from `from[key]` to `to[to_key]` in one transaction.
fn move_record(
    from: &sled::Tree,
    key: &[u8],
    to: &sled::Tree,
    to_key: &[u8],
    value: &[u8],
) -> Result<(), StoreError> {
    let res: Result<(), TransactionError<()>> = (from, to).transaction(|(from, to)| {
        to.insert(to_key, value)?;
        from.remove(key)?;
        Ok::<(), ConflictableTransactionError<()>>(())
    });
    match res {
        Ok(()) => Ok(()),
        Err(TransactionError::Storage(e)) => Err(e.into()),
        Err(TransactionError::Abort(())) => Err(StoreError::Sled(sled::Error::Unsupported(
            "transaction aborted".into(),
        ))),
    }
}
