//! The cursor of a multi-task stream (`GET /events/stream?task=…`): one `id:` that resumes every
//! task of the stream, in at most [`ENTRY_LEN`] bytes per task whatever the ids' lengths.
//!
//! Format: `m`, the salt as two lower-case hex digits, then one fixed-width entry per task, each
//! the unpadded base64url of 18 bytes (so exactly 24 characters, and the base64 of one entry
//! never straddles the next; a stream keeps each task's entry encoded and re-encodes only the
//! one that moved):
//! - 4 bytes: the task, as the first bytes of SHA-256 over the salt and the task id. The server
//!   picks a salt under which no two tasks of the request share a hash, so an entry names one
//!   task of the list without carrying its id;
//! - 8 bytes: the session, as the first bytes of SHA-256 over its id ([`session_hash`]),
//!   resolved against the task's latest session on reconnect (zero when there is none);
//! - 6 bytes, big-endian: `seq << 2 | has_session << 1 | complete`.
//!
//! A cursor is plain ASCII, opaque to clients, and parsed only in exactly this form. Seqs up to
//! 2^46 fit; a session of more events than that (70 trillion) is not a case this format serves.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Characters of one entry: 18 bytes in base64url.
pub const ENTRY_LEN: usize = 24;

/// Characters before the entries: `m` and the salt in hex.
pub const FIXED_LEN: usize = 3;

/// Bytes of one entry before base64.
const ENTRY_BYTES: usize = 18;

/// Largest seq an entry holds (46 bits).
const MAX_SEQ: i64 = (1 << 46) - 1;

/// The first character of every multi-task cursor (a single-task cursor always has a `:`).
const PREFIX: char = 'm';

/// One task's place in a multi-task cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The task's hash under the cursor's salt ([`task_hash`]).
    pub task: u32,
    /// The hash of the session of the last event delivered ([`session_hash`]); `None` before
    /// any.
    pub session: Option<u64>,
    /// The last seq delivered in that session (0: none).
    pub seq: i64,
    /// The stream delivered `task_complete` for this task.
    pub complete: bool,
}

/// A parsed multi-task cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiCursor {
    /// The salt the task hashes were taken with.
    pub salt: u8,
    /// One entry per task, each task at most once.
    pub entries: Vec<Entry>,
}

/// Why a multi-task cursor was rejected (`400`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiCursorError(&'static str);

impl fmt::Display for MultiCursorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed cursor: {}", self.0)
    }
}

impl std::error::Error for MultiCursorError {}

/// The 32-bit hash that names `task_id` in a cursor written with `salt`.
pub fn task_hash(salt: u8, task_id: &str) -> u32 {
    let digest = Sha256::new()
        .chain_update([salt])
        .chain_update(task_id.as_bytes())
        .finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The 64-bit hash that names session `id` in a cursor.
pub fn session_hash(id: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(b"session:")
        .chain_update(id.as_bytes())
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

/// The first salt under which the hashes of `task_ids` are all distinct, preferring `preferred`
/// (a resuming client's salt, so its entries keep matching). `None` only if all 256 salts
/// collide, which a handful of 32-bit hashes never do in practice.
pub fn pick_salt(preferred: Option<u8>, task_ids: &[&str]) -> Option<u8> {
    preferred
        .into_iter()
        .chain(0..=u8::MAX)
        .find(|&salt| distinct(salt, task_ids))
}

/// Whether no two of `task_ids` share a hash under `salt`.
pub fn distinct(salt: u8, task_ids: &[&str]) -> bool {
    let mut hashes: Vec<u32> = task_ids.iter().map(|id| task_hash(salt, id)).collect();
    hashes.sort_unstable();
    hashes.windows(2).all(|pair| pair[0] != pair[1])
}

impl Entry {
    /// Writes the entry's [`ENTRY_LEN`] characters into `out`. A seq past [`MAX_SEQ`] is
    /// written as `MAX_SEQ` (unreachable: see the module's documentation).
    pub fn encode(&self, out: &mut [u8; ENTRY_LEN]) {
        let mut bytes = [0u8; ENTRY_BYTES];
        bytes[..4].copy_from_slice(&self.task.to_be_bytes());
        bytes[4..12].copy_from_slice(&self.session.unwrap_or(0).to_be_bytes());
        let seq = self.seq.clamp(0, MAX_SEQ) as u64;
        let packed = seq << 2 | u64::from(self.session.is_some()) << 1 | u64::from(self.complete);
        bytes[12..].copy_from_slice(&packed.to_be_bytes()[2..]);
        let written = URL_SAFE_NO_PAD
            .encode_slice(bytes, out)
            .expect("18 bytes are exactly 24 base64 characters");
        debug_assert_eq!(written, ENTRY_LEN);
    }

    fn decode(text: &[u8]) -> Result<Entry, MultiCursorError> {
        let mut bytes = [0u8; ENTRY_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(ENTRY_BYTES) => {}
            _ => return Err(MultiCursorError("an entry is not base64url")),
        }
        let task = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let mut session = [0u8; 8];
        session.copy_from_slice(&bytes[4..12]);
        let session = u64::from_be_bytes(session);
        let mut packed = [0u8; 8];
        packed[2..].copy_from_slice(&bytes[12..]);
        let packed = u64::from_be_bytes(packed);
        let has_session = packed & 2 != 0;
        let seq = (packed >> 2) as i64;
        if !has_session && (session != 0 || seq != 0) {
            return Err(MultiCursorError("a position without a session"));
        }
        Ok(Entry {
            task,
            session: has_session.then_some(session),
            seq,
            complete: packed & 1 != 0,
        })
    }
}

/// Writes the fixed part of a cursor written with `salt`.
fn write_prefix(out: &mut Vec<u8>, salt: u8) {
    out.push(PREFIX as u8);
    out.extend_from_slice(format!("{salt:02x}").as_bytes());
}

impl MultiCursor {
    /// Parses a cursor of at most `max_entries` entries, in exactly the format this server
    /// writes.
    pub fn parse(text: &str, max_entries: usize) -> Result<MultiCursor, MultiCursorError> {
        let rest = text
            .strip_prefix(PREFIX)
            .ok_or(MultiCursorError("not a multi-task cursor"))?;
        let (salt, entries) = rest
            .split_at_checked(2)
            .ok_or(MultiCursorError("too short"))?;
        if !salt.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(MultiCursorError("the salt is not lower-case hex"));
        }
        let salt = u8::from_str_radix(salt, 16).map_err(|_| MultiCursorError("bad salt"))?;
        if entries.len() % ENTRY_LEN != 0 {
            return Err(MultiCursorError("entries are 24 characters each"));
        }
        if entries.len() / ENTRY_LEN > max_entries {
            return Err(MultiCursorError("more entries than a stream has tasks"));
        }
        let entries = entries
            .as_bytes()
            .chunks(ENTRY_LEN)
            .map(Entry::decode)
            .collect::<Result<Vec<_>, _>>()?;
        let mut tasks: Vec<u32> = entries.iter().map(|e| e.task).collect();
        tasks.sort_unstable();
        if tasks.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(MultiCursorError("a task appears twice"));
        }
        Ok(MultiCursor { salt, entries })
    }
}

impl fmt::Display for MultiCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::with_capacity(FIXED_LEN + ENTRY_LEN * self.entries.len());
        write_prefix(&mut out, self.salt);
        for entry in &self.entries {
            let mut text = [0u8; ENTRY_LEN];
            entry.encode(&mut text);
            out.extend_from_slice(&text);
        }
        // Only ASCII was written: `m`, hex digits and base64url.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(task: u32, session: Option<u64>, seq: i64, complete: bool) -> Entry {
        Entry {
            task,
            session,
            seq,
            complete,
        }
    }

    #[test]
    fn round_trips_in_24_ascii_bytes_per_task() {
        let cursor = MultiCursor {
            salt: 0xa7,
            entries: vec![
                entry(u32::MAX, Some(u64::MAX), MAX_SEQ, true),
                entry(0, None, 0, false),
                entry(7, None, 0, true),
                entry(9, Some(0), 12, false),
            ],
        };
        let text = cursor.to_string();
        assert_eq!(text.len(), FIXED_LEN + 4 * ENTRY_LEN);
        assert!(text.starts_with("ma7"));
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(MultiCursor::parse(&text, 4), Ok(cursor));
    }

    #[test]
    fn hashes_are_stable_across_processes() {
        // Fixed values: instances of any version must agree.
        assert_eq!(session_hash("s1"), session_hash("s1"));
        assert_ne!(session_hash("s1"), session_hash("s2"));
        assert_ne!(task_hash(0, "a"), task_hash(1, "a"));
        let text = MultiCursor {
            salt: 0,
            entries: vec![entry(task_hash(0, "a"), None, 0, false)],
        }
        .to_string();
        assert_eq!(text, "m00AippeQAAAAAAAAAAAAAAAAAA");
    }

    #[test]
    fn a_salt_is_picked_that_keeps_the_tasks_apart() {
        let ids: Vec<String> = (0..100).map(|i| format!("task-{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let salt = pick_salt(Some(3), &ids).expect("a salt");
        assert_eq!(salt, 3, "the preferred salt when it works");
        assert!(distinct(salt, &ids));
        assert!(!distinct(0, &["same", "same"]));
        assert_eq!(pick_salt(None, &["same", "same"]), None);
    }

    #[test]
    fn rejects_what_it_did_not_write() {
        let good = MultiCursor {
            salt: 1,
            entries: vec![entry(1, Some(2), 3, false)],
        }
        .to_string();
        assert!(MultiCursor::parse(&good, 1).is_ok());
        assert!(
            MultiCursor::parse(&good, 0).is_err(),
            "more entries than tasks"
        );
        let twice = format!("{good}{}", &good[FIXED_LEN..]);
        assert!(MultiCursor::parse(&twice, 2).is_err(), "a task twice");
        let no_session = MultiCursor {
            salt: 1,
            entries: vec![entry(1, None, 0, false)],
        }
        .to_string();
        // The same entry with a seq but no session flag.
        let mut forged = no_session.clone().into_bytes();
        forged[FIXED_LEN + 23] = b'E';
        let forged = String::from_utf8(forged).expect("ascii");
        assert!(MultiCursor::parse(&forged, 1).is_err(), "{forged}");
        for bad in [
            "",
            "m",
            "m0",
            "mzz",
            "m0A",
            "YQ:1",
            &good[..good.len() - 1],
            &format!("{good}="),
            &format!("M{}", &good[1..]),
            &good.replace('m', "m\n"),
        ] {
            assert!(MultiCursor::parse(bad, 100).is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            MultiCursor::parse("m00", 100).map(|c| c.entries.len()),
            Ok(0)
        );
    }
}
