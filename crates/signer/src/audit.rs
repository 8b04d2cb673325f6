//! The audit trail: one JSON line per decision (signed or refused, for which key, account and op, and
//! why), each carrying the hash of the line before it and a signature by the sidecar's audit key over its
//! own hash. Deleting, reordering or editing a line breaks the chain at that line; a restarted sidecar
//! checks the whole trail and continues it. Lines are flushed to the OS as they are written (not fsynced
//! one by one: that would cost each signature a disk round trip).

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use alloy::signers::{Signature, SignerSync, local::PrivateKeySigner};
use alloy_primitives::{Address, B256, keccak256};
use serde::{Deserialize, Serialize};

use crate::SignerError;

/// What the sidecar decided about one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Unix seconds (the sidecar's view of chain time).
    pub time: u64,
    /// The key asked to sign.
    pub key: Address,
    /// The account the op is for.
    pub account: Address,
    /// The op's hash (zero when the request did not decode far enough to have one).
    pub user_op_hash: B256,
    /// "signed" or "refused".
    pub outcome: String,
    /// Why it was refused; the op's expiry when signed.
    pub detail: String,
}

/// One line of the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The line's position in the trail, from 0.
    pub seq: u64,
    /// The previous line's `hash` (zero for the first), chaining the trail.
    pub prev: B256,
    /// What was decided.
    #[serde(flatten)]
    pub decision: Decision,
    /// keccak256 of the line's JSON without `hash` and `sig`.
    pub hash: B256,
    /// The audit key's signature over `hash`.
    pub sig: alloy_primitives::Bytes,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    seq: u64,
    prev: B256,
    #[serde(flatten)]
    decision: &'a Decision,
}

fn body_hash(seq: u64, prev: B256, decision: &Decision) -> B256 {
    keccak256(
        serde_json::to_vec(&Body {
            seq,
            prev,
            decision,
        })
        .expect("a decision serializes"),
    )
}

/// The append-only trail.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    signer: PrivateKeySigner,
    next_seq: u64,
    prev: B256,
}

impl AuditLog {
    /// Opens (or starts) the trail at `path`, written by `signer`; an existing trail must verify against
    /// `signer`'s address, so a sidecar never continues a trail that was tampered with.
    pub fn open(path: &Path, signer: PrivateKeySigner) -> Result<Self, SignerError> {
        let (next_seq, prev) = if path.exists() {
            verify(path, signer.address())?
        } else {
            (0, B256::ZERO)
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| fail(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            signer,
            next_seq,
            prev,
        })
    }

    /// The audit key's address, which verifiers check the trail against.
    pub fn auditor(&self) -> Address {
        self.signer.address()
    }

    /// Appends `decision`.
    pub fn record(&mut self, decision: Decision) -> Result<(), SignerError> {
        let hash = body_hash(self.next_seq, self.prev, &decision);
        let sig = self
            .signer
            .sign_hash_sync(&hash)
            .map_err(|e| fail(&self.path, e))?;
        let entry = Entry {
            seq: self.next_seq,
            prev: self.prev,
            decision,
            hash,
            sig: sig.as_bytes().to_vec().into(),
        };
        let mut line = serde_json::to_vec(&entry).map_err(|e| fail(&self.path, e))?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|e| fail(&self.path, e))?;
        self.file.flush().map_err(|e| fail(&self.path, e))?;
        self.next_seq += 1;
        self.prev = hash;
        Ok(())
    }
}

fn fail(path: &Path, e: impl std::fmt::Display) -> SignerError {
    SignerError::Audit {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Checks the whole trail at `path` against `auditor`: every line's hash, its link to the line before, and
/// its signature. Returns the next sequence number and the last hash.
pub fn verify(path: &Path, auditor: Address) -> Result<(u64, B256), SignerError> {
    let file = File::open(path).map_err(|e| fail(path, e))?;
    let (mut seq, mut prev) = (0u64, B256::ZERO);
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| fail(path, e))?;
        let at = |what: &str| fail(path, format!("line {}: {what}", i + 1));
        let entry: Entry = serde_json::from_str(&line).map_err(|e| at(&e.to_string()))?;
        if entry.seq != seq || entry.prev != prev {
            return Err(at(
                "out of sequence: a line was removed, reordered or inserted",
            ));
        }
        if body_hash(entry.seq, entry.prev, &entry.decision) != entry.hash {
            return Err(at(
                "its contents do not match its hash: the line was edited",
            ));
        }
        let sig = Signature::from_raw(&entry.sig).map_err(|e| at(&e.to_string()))?;
        if sig.recover_address_from_prehash(&entry.hash).ok() != Some(auditor) {
            return Err(at(&format!("not signed by the audit key {auditor}")));
        }
        seq += 1;
        prev = entry.hash;
    }
    Ok((seq, prev))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(n: u64) -> Decision {
        Decision {
            time: 1_800_000_000 + n,
            key: Address::repeat_byte(1),
            account: Address::repeat_byte(2),
            user_op_hash: keccak256(n.to_be_bytes()),
            outcome: "signed".into(),
            detail: String::new(),
        }
    }

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("keyscope-audit-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn a_trail_continues_across_restarts_and_verifies() {
        let path = temp("restart");
        let key = PrivateKeySigner::random();
        let mut log = AuditLog::open(&path, key.clone()).unwrap();
        log.record(decision(0)).unwrap();
        log.record(decision(1)).unwrap();
        drop(log);
        let mut log = AuditLog::open(&path, key.clone()).unwrap();
        log.record(decision(2)).unwrap();
        assert_eq!(verify(&path, key.address()).unwrap().0, 3);
        // Another key's sidecar cannot continue (or claim) it.
        assert!(AuditLog::open(&path, PrivateKeySigner::random()).is_err());
    }

    #[test]
    fn edits_deletions_and_reorders_are_caught() {
        let path = temp("tamper");
        let key = PrivateKeySigner::random();
        let mut log = AuditLog::open(&path, key.clone()).unwrap();
        for n in 0..3 {
            log.record(decision(n)).unwrap();
        }
        let good = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = good.lines().collect();
        let edited = good.replacen("\"signed\"", "\"refused\"", 1);
        let deleted = format!("{}\n{}\n", lines[0], lines[2]);
        let reordered = format!("{}\n{}\n{}\n", lines[1], lines[0], lines[2]);
        for (bad, why) in [
            (edited, "edited"),
            (deleted, "sequence"),
            (reordered, "sequence"),
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = verify(&path, key.address()).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
        std::fs::write(&path, good).unwrap();
        verify(&path, key.address()).unwrap();
    }
}
