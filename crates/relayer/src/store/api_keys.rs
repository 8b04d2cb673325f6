//! API keys registered by accounts' owners (see `keyscope_core::api_key`), in their own redb file beside
//! the op store (`api_keys.redb` in the data directory, 0600): key id → the registration, its owner's
//! signature, when it was registered and when (if) it was revoked. A revoked key stays as a tombstone, so
//! the same registration cannot be replayed to bring it back. Writes are rare (an owner's registration or
//! revocation) and commit on the caller's thread.

use std::path::Path;

use alloy_primitives::{Address, B256, Bytes};
use keyscope_core::api_key::Registration;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{StoreError, read_err, write_err};

/// Key id (the Ed25519 public key) → [`ApiKeyRecord`] as JSON.
const API_KEYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("api_keys");

/// A registered key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRecord {
    /// What the owner signed.
    pub registration: Registration,
    /// The owner's signature, checked through the account's `isValidSignature` (again at use).
    pub owner_signature: Bytes,
    /// Unix seconds.
    pub registered_at: u64,
    /// Unix seconds, once the owner revoked it.
    pub revoked_at: Option<u64>,
}

/// The table of API keys.
pub struct ApiKeyTable {
    db: Database,
}

impl std::fmt::Debug for ApiKeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyTable").finish_non_exhaustive()
    }
}

impl ApiKeyTable {
    /// Opens (or creates) the table's file at `path`, readable by its owner only.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        let db = super::redb::open_database(path)?;
        let txn = db.begin_write().map_err(|e| open(e.to_string()))?;
        txn.open_table(API_KEYS).map_err(|e| open(e.to_string()))?;
        txn.commit().map_err(|e| open(e.to_string()))?;
        Ok(Self { db })
    }

    /// Writes `record` (replacing the key's earlier one) durably.
    pub fn put(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        let value = serde_json::to_vec(record).map_err(write_err)?;
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            let mut t = txn.open_table(API_KEYS).map_err(write_err)?;
            t.insert(record.registration.api_key.as_slice(), value.as_slice())
                .map_err(write_err)?;
        }
        txn.commit().map_err(write_err)
    }

    /// The key's record.
    pub fn get(&self, key: B256) -> Result<Option<ApiKeyRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let t = txn.open_table(API_KEYS).map_err(read_err)?;
        match t.get(key.as_slice()).map_err(read_err)? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(read_err),
            None => Ok(None),
        }
    }

    /// Every key registered for `account` (revoked ones included), oldest first.
    pub fn of_account(&self, account: Address) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let t = txn.open_table(API_KEYS).map_err(read_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(read_err)? {
            let (_, v) = row.map_err(read_err)?;
            let r: ApiKeyRecord = serde_json::from_slice(v.value()).map_err(read_err)?;
            if r.registration.account == account {
                out.push(r);
            }
        }
        out.sort_by_key(|r| r.registered_at);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyscope_core::api_key::Permission;

    #[test]
    fn records_survive_a_reopen_and_list_by_account() {
        let dir = std::env::temp_dir().join(format!("ks-apikeys-{}", std::process::id()));
        let path = dir.join("api_keys.redb");
        let _ = std::fs::remove_file(&path);
        let record = |n: u8, account: Address| ApiKeyRecord {
            registration: Registration {
                api_key: B256::repeat_byte(n),
                account,
                permission: Permission::Trade,
                expires_at: 100,
                allowed_ips: vec![],
                chain_id: 42_320,
                nonce: 0,
                issued_at: 1,
            },
            owner_signature: Bytes::from(vec![n; 65]),
            registered_at: u64::from(n),
            revoked_at: None,
        };
        let (a, b) = (Address::repeat_byte(0xa), Address::repeat_byte(0xb));
        {
            let t = ApiKeyTable::open(&path).unwrap();
            t.put(&record(2, a)).unwrap();
            t.put(&record(1, a)).unwrap();
            t.put(&record(3, b)).unwrap();
            let mut revoked = record(3, b);
            revoked.revoked_at = Some(9);
            t.put(&revoked).unwrap();
        }
        let t = ApiKeyTable::open(&path).unwrap();
        let keys: Vec<B256> = t
            .of_account(a)
            .unwrap()
            .iter()
            .map(|r| r.registration.api_key)
            .collect();
        assert_eq!(keys, vec![B256::repeat_byte(1), B256::repeat_byte(2)]);
        assert_eq!(
            t.get(B256::repeat_byte(3)).unwrap().unwrap().revoked_at,
            Some(9)
        );
        assert_eq!(t.get(B256::repeat_byte(4)).unwrap(), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
