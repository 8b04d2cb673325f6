//! The matcher's journal: an append-only file of JSON lines in the relayer's data directory, one line per
//! change (a place with its matches, a cancel, a settlement batch, a fill's end). A line is written — one
//! `write` to the file, so it is in the kernel and survives a kill -9 of the process — before the client
//! gets its answer; a background task `fsync`s every `sync_ms` for power loss. On start the matcher replays
//! the file: every acknowledged order rests again in its place, every fill not known final is settled
//! again by re-sending the very transaction that carried it (same nonce: it lands at most once). A line
//! cut short by a kill (never acknowledged) is ignored.

use std::{
    fs::File,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use alloy_primitives::{Address, B256, Bytes, U256};
use keyscope_core::order::OrderJson;
use serde::{Deserialize, Serialize};

use super::events::FillStatus;

/// A settlement transaction, signed and journaled before it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SentBatch {
    pub id: u64,
    pub fills: Vec<u64>,
    pub nonce: u64,
    pub tx_hash: B256,
    /// The signed transaction (EIP-2718 bytes), re-sent as it is after a restart or a reorg.
    pub raw: Bytes,
}

/// One fact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "r", rename_all = "camelCase")]
pub(super) enum Record {
    /// An order acknowledged.
    #[serde(rename_all = "camelCase")]
    Placed {
        hash: B256,
        order: OrderJson,
        signature: Bytes,
        at_ms: u64,
        imf: u64,
    },
    /// A resting maker matched by a taker (size and price as 256-bit numbers: JSON carries them as hex
    /// strings, where a plain u128 would not survive the tagged record's round trip).
    Matched {
        id: u64,
        maker: B256,
        taker: B256,
        size: U256,
        price: U256,
    },
    /// An order left the book.
    OffBook { hash: B256, reason: String },
    /// An order is back on the book: a fill of it the chain refused for the other side's fault gave its size
    /// back (the refused fill's `FillDone` takes the size off what was matched).
    Rested { hash: B256 },
    /// A scheduled cancel set (0: cleared).
    #[serde(rename_all = "camelCase")]
    Schedule {
        account: Address,
        key: Address,
        at_ms: u64,
    },
    /// A settlement transaction signed (sent right after).
    Batch(SentBatch),
    /// A batch whose transaction never reached the chain and never will (its fills go out again).
    BatchUnsent { id: u64 },
    /// A fill settled for good, or refused.
    FillDone {
        id: u64,
        status: FillStatus,
        tx: Option<B256>,
        reason: Option<String>,
    },
}

/// Why the journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("matcher journal {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("matcher journal {path} line {line}: {reason}")]
    Corrupt {
        path: String,
        line: usize,
        reason: String,
    },
}

/// The open journal.
pub(super) struct Journal {
    path: PathBuf,
    file: File,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

impl Journal {
    /// Opens (creating, owner-only) the journal at `path` and reads every complete line. A last line cut
    /// short is dropped (and truncated away so the next line starts clean); a bad line before it is an error.
    pub(super) fn open(path: &Path) -> Result<(Self, Vec<Record>), JournalError> {
        let io = |source| JournalError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.read(true).append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path).map_err(io)?;
        let mut records = Vec::new();
        let mut good_len = 0u64;
        let mut reader = BufReader::new(&file);
        let mut line = String::new();
        let mut n = 0;
        loop {
            line.clear();
            let read = reader.read_line(&mut line).map_err(io)?;
            if read == 0 {
                break;
            }
            n += 1;
            if !line.ends_with('\n') {
                tracing::warn!(
                    line = n,
                    "matcher journal: dropping a line cut short (never acknowledged)"
                );
                break;
            }
            let batch: Vec<Record> =
                serde_json::from_str(line.trim_end()).map_err(|e| JournalError::Corrupt {
                    path: path.display().to_string(),
                    line: n,
                    reason: e.to_string(),
                })?;
            records.extend(batch);
            good_len += read as u64;
        }
        drop(reader);
        file.set_len(good_len).map_err(io)?;
        Ok((
            Self {
                path: path.to_path_buf(),
                file,
            },
            records,
        ))
    }

    /// Appends one change (its records as one line) with a single write.
    pub(super) fn append(&mut self, records: &[Record]) -> Result<(), JournalError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut line = serde_json::to_vec(records).expect("records serialize");
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|source| JournalError::Io {
                path: self.path.display().to_string(),
                source,
            })
    }

    /// A handle to `fsync` the file from another task.
    pub(super) fn sync_handle(&self) -> Result<File, JournalError> {
        self.file.try_clone().map_err(|source| JournalError::Io {
            path: self.path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn off(n: u8) -> Record {
        Record::OffBook {
            hash: B256::repeat_byte(n),
            reason: "cancelled".into(),
        }
    }

    #[test]
    fn lines_come_back_in_order_and_a_torn_last_line_is_dropped() {
        let dir = tempdir();
        let path = dir.join("matcher.journal");
        {
            let (mut j, r) = Journal::open(&path).unwrap();
            assert!(r.is_empty());
            j.append(&[off(1), off(2)]).unwrap();
            j.append(&[off(3)]).unwrap();
        }
        // Every kind of record survives the file as it went in (large numbers included).
        let kinds = every_kind();
        {
            let other = dir.join("kinds.journal");
            let (mut j, _) = Journal::open(&other).unwrap();
            j.append(&kinds).unwrap();
            let (_, back) = Journal::open(&other).unwrap();
            assert_eq!(back, kinds);
        }
        // A kill in the middle of a write leaves a line without its end.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(br#"[{"r":"offBook","hash":"0x04"#)
            .unwrap();
        let (mut j, r) = Journal::open(&path).unwrap();
        assert_eq!(r, vec![off(1), off(2), off(3)]);
        // The torn tail is gone: the next line starts clean.
        j.append(&[off(5)]).unwrap();
        let (_, r) = Journal::open(&path).unwrap();
        assert_eq!(r, vec![off(1), off(2), off(3), off(5)]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn a_corrupt_line_before_the_end_is_an_error_not_a_silent_loss() {
        let dir = tempdir();
        let path = dir.join("matcher.journal");
        std::fs::write(&path, b"not json\n[]\n").unwrap();
        assert!(matches!(
            Journal::open(&path),
            Err(JournalError::Corrupt { line: 1, .. })
        ));
    }

    fn every_kind() -> Vec<Record> {
        let order = keyscope_core::order::OrderBuilder::new(
            Address::repeat_byte(1),
            Address::repeat_byte(2),
            0,
            true,
            U256::from(u128::MAX),
            U256::from(u128::MAX - 1),
        )
        .expiry_ms(u64::MAX)
        .nonce(u64::MAX)
        .build(0)
        .unwrap();
        vec![
            Record::Placed {
                hash: B256::repeat_byte(9),
                order: (&order).into(),
                signature: Bytes::from(vec![7u8; 65]),
                at_ms: 1,
                imf: u64::MAX,
            },
            Record::Matched {
                id: u64::MAX,
                maker: B256::repeat_byte(1),
                taker: B256::repeat_byte(2),
                size: U256::from(u128::MAX),
                price: U256::from(u128::MAX - 5),
            },
            off(4),
            Record::Rested {
                hash: B256::repeat_byte(4),
            },
            Record::Schedule {
                account: Address::repeat_byte(3),
                key: Address::repeat_byte(4),
                at_ms: u64::MAX,
            },
            Record::Batch(SentBatch {
                id: 5,
                fills: vec![1, u64::MAX],
                nonce: 6,
                tx_hash: B256::repeat_byte(8),
                raw: Bytes::from(vec![1, 2, 3]),
            }),
            Record::BatchUnsent { id: 5 },
            Record::FillDone {
                id: 1,
                status: FillStatus::Refused,
                tx: Some(B256::repeat_byte(6)),
                reason: Some("why".into()),
            },
        ]
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "keyscope-journal-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
