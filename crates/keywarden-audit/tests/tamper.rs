//! Property tests: random trails of 1..=200 entries with a checkpoint every `k` entries (and one at
//! the end, as the exporter signs), tampered in each way the crate docs list; every tampering
//! must fail with its documented error, and the untouched export must verify.

use keywarden_audit::{
    entry_hash, verify_export, Chain, Checkpoint, DeviceKey, Digest, Entry, ExportWriter, Report,
    VerifyError, GENESIS,
};
use proptest::prelude::*;
use proptest::sample::Index;

const SECRET: [u8; 32] = [42; 32];

/// One line of an export after the header.
#[derive(Debug, Clone)]
enum Rec {
    Entry(Entry, Digest),
    Checkpoint(Checkpoint),
}

/// The fields an event is made of (everything but seq).
#[derive(Debug, Clone, PartialEq)]
struct Content {
    at_ms: i64,
    kind: String,
    actor: String,
    subject: String,
    detail: String,
}

#[derive(Debug, Clone)]
struct Trail {
    records: Vec<Rec>,
    /// Number of entries.
    n: u64,
    /// Seqs that have a checkpoint, ascending; always includes `n`.
    checkpoints: Vec<u64>,
    head: Digest,
}

fn key() -> DeviceKey {
    DeviceKey::from_bytes(&SECRET)
}

/// Characters the text fields are drawn from: plain, JSON-special, control and non-ASCII.
const ALPHABET: [char; 16] = [
    'a', 'k', 'z', '0', '7', ':', ' ', '"', '\\', '{', '}', '\n', '\t', '\u{0}', 'ü', '🔑',
];

/// A string of up to 15 characters from the bits of `bits` (cheap, unlike regex strategies).
fn text(mut bits: u64) -> String {
    let len = (bits & 0xf) as usize;
    bits >>= 4;
    (0..len)
        .map(|i| ALPHABET[((bits >> (i * 4 % 60)) & 0xf) as usize ^ (i & 0xf)])
        .collect()
}

fn content() -> impl Strategy<Value = Content> {
    (any::<i64>(), any::<[u64; 4]>()).prop_map(|(at_ms, [kind, actor, subject, detail])| Content {
        at_ms,
        kind: text(kind),
        actor: text(actor),
        subject: text(subject),
        detail: format!("{{\"note\":{:?}}}", text(detail)),
    })
}

/// (contents, k): 1..=200 events, a checkpoint every k. k is at least n/8 so that a trail has at
/// most 9 checkpoints: each costs ~12 ms to verify in an unoptimised build.
fn trail_params() -> impl Strategy<Value = (Vec<Content>, u64)> {
    (prop::collection::vec(content(), 1..=200), 1u64..=25).prop_map(|(contents, k)| {
        let min_k = (contents.len() as u64).div_ceil(8);
        (contents, k.max(min_k))
    })
}

/// The honest trail: entries appended through a `Chain`, checkpoints every `every` and at the end.
fn build(contents: &[Content], every: u64) -> Trail {
    let key = key();
    let mut chain = Chain::new(0, GENESIS);
    let mut records = Vec::new();
    let mut checkpoints = Vec::new();
    let n = contents.len() as u64;
    for c in contents {
        let (entry, hash) = chain.append(c.at_ms, &c.kind, &c.actor, &c.subject, &c.detail);
        let seq = entry.seq;
        records.push(Rec::Entry(entry, hash));
        if seq % every == 0 || seq == n {
            records.push(Rec::Checkpoint(key.sign_checkpoint(
                seq,
                &hash,
                seq as i64 * 1000,
            )));
            checkpoints.push(seq);
        }
    }
    Trail {
        records,
        n,
        checkpoints,
        head: chain.head().1,
    }
}

fn contents_of(trail: &Trail) -> Vec<Content> {
    trail
        .records
        .iter()
        .filter_map(|r| match r {
            Rec::Entry(e, _) => Some(Content {
                at_ms: e.at_ms,
                kind: e.kind.clone(),
                actor: e.actor.clone(),
                subject: e.subject.clone(),
                detail: e.detail.clone(),
            }),
            Rec::Checkpoint(_) => None,
        })
        .collect()
}

fn checkpoint_objects(trail: &Trail) -> Vec<Checkpoint> {
    trail
        .records
        .iter()
        .filter_map(|r| match r {
            Rec::Checkpoint(cp) => Some(cp.clone()),
            Rec::Entry(..) => None,
        })
        .collect()
}

/// The strongest attacker without the key: lays out `contents` as a correctly numbered and
/// hashed chain, and puts each genuine checkpoint after the entry with its seq (dropping those
/// beyond the new end).
fn forge(contents: &[Content], checkpoints: &[Checkpoint]) -> Vec<Rec> {
    let mut prev = GENESIS;
    let mut records = Vec::new();
    for (i, c) in contents.iter().enumerate() {
        let entry = Entry {
            seq: i as u64 + 1,
            at_ms: c.at_ms,
            kind: c.kind.clone(),
            actor: c.actor.clone(),
            subject: c.subject.clone(),
            detail: c.detail.clone(),
        };
        let hash = entry_hash(&prev, &entry);
        prev = hash;
        let seq = entry.seq;
        records.push(Rec::Entry(entry, hash));
        records.extend(
            checkpoints
                .iter()
                .filter(|cp| cp.seq == seq)
                .cloned()
                .map(Rec::Checkpoint),
        );
    }
    records
}

fn write(records: &[Rec]) -> Vec<u8> {
    let key = key();
    let mut out = ExportWriter::new(Vec::new(), &key.public_hex(), 1, &GENESIS, 0).unwrap();
    for record in records {
        match record {
            Rec::Entry(e, h) => out.entry(e, h).unwrap(),
            Rec::Checkpoint(cp) => out.checkpoint(cp).unwrap(),
        }
    }
    out.finish().unwrap()
}

fn verify(records: &[Rec]) -> Result<Report, VerifyError> {
    verify_export(write(records).as_slice(), Some(&key().verifying_key()))
}

/// Index in `records` of the entry line with `seq`.
fn entry_pos(records: &[Rec], seq: u64) -> usize {
    records
        .iter()
        .position(|r| matches!(r, Rec::Entry(e, _) if e.seq == seq))
        .unwrap()
}

fn has_checkpoint(trail: &Trail, seq: u64) -> bool {
    trail.checkpoints.contains(&seq)
}

/// The first checkpoint at or after `seq` (there always is one: the last entry has one).
fn next_checkpoint(trail: &Trail, seq: u64) -> u64 {
    *trail.checkpoints.iter().find(|&&c| c >= seq).unwrap()
}

/// Expected verdict on a trail whose tail was cut off after `records`: empty, a shorter valid
/// trail (cut right after a checkpoint: undetectable from the file, see the crate docs), or an
/// unsigned tail.
fn check_truncated(records: &[Rec], original: &Trail) -> Result<(), TestCaseError> {
    let result = verify(records);
    let last_entry = records.iter().rev().find_map(|r| match r {
        Rec::Entry(e, _) => Some(e.seq),
        Rec::Checkpoint(_) => None,
    });
    let last_checkpoint = records.iter().rev().find_map(|r| match r {
        Rec::Checkpoint(cp) => Some(cp.seq),
        Rec::Entry(..) => None,
    });
    match (last_entry, records.last()) {
        (None, _) => prop_assert_eq!(result, Err(VerifyError::Empty)),
        (Some(last), Some(Rec::Checkpoint(_))) => {
            let report = result.unwrap();
            prop_assert_eq!(report.last_seq, last);
            prop_assert!(report.last_seq < original.n);
            prop_assert_ne!(report.head, original.head);
        }
        (Some(last), _) => prop_assert_eq!(
            result,
            Err(VerifyError::UnsignedTail {
                last_checkpoint,
                last_entry: last
            })
        ),
    }
    Ok(())
}

/// 32 cases per property by default: checkpoint signatures dominate the run time, and ed25519
/// verification is slow in unoptimised test builds. `PROPTEST_CASES=n` runs more.
fn config() -> ProptestConfig {
    if std::env::var_os("PROPTEST_CASES").is_some() {
        ProptestConfig::default()
    } else {
        ProptestConfig::with_cases(32)
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn untouched_export_verifies((contents, every) in trail_params()) {
        let trail = build(&contents, every);
        prop_assert_eq!(
            verify(&trail.records),
            Ok(Report {
                entries: trail.n,
                first_seq: 1,
                last_seq: trail.n,
                checkpoints: trail.checkpoints.len() as u64,
                head: trail.head,
                key_hex: key().public_hex(),
            })
        );
    }

    #[test]
    fn an_edited_field_is_an_edited_entry(
        (contents, every) in trail_params(),
        which in any::<Index>(),
        field in 0..6usize,
        byte in any::<u8>(),
    ) {
        let mut trail = build(&contents, every);
        let seq = which.index(trail.n as usize) as u64 + 1;
        let pos = entry_pos(&trail.records, seq);
        let Rec::Entry(entry, hash) = &mut trail.records[pos] else { unreachable!() };
        match field {
            0 => entry.at_ms = entry.at_ms.wrapping_add(1 + i64::from(byte)),
            1 => entry.kind.push(char::from(byte.max(1))),
            2 => entry.actor.insert(0, 'x'),
            3 => entry.subject.clear(),
            4 => entry.detail.push(' '),
            _ => hash[usize::from(byte) % 32] ^= 1,
        }
        // Clearing an empty subject changes nothing; everything else is an edit.
        prop_assume!(field != 3 || !contents[seq as usize - 1].subject.is_empty());
        prop_assert_eq!(verify(&trail.records), Err(VerifyError::EditedEntry { seq }));
    }

    #[test]
    fn an_edit_with_its_own_hash_recomputed_breaks_the_link_to_the_next_entry(
        (contents, every) in trail_params(),
        which in any::<Index>(),
    ) {
        let mut trail = build(&contents, every);
        let seq = which.index(trail.n as usize) as u64 + 1;
        let prev = match seq {
            1 => GENESIS,
            _ => match &trail.records[entry_pos(&trail.records, seq - 1)] {
                Rec::Entry(_, h) => *h,
                Rec::Checkpoint(_) => unreachable!(),
            },
        };
        let pos = entry_pos(&trail.records, seq);
        let Rec::Entry(entry, hash) = &mut trail.records[pos] else { unreachable!() };
        entry.detail.push(' ');
        *hash = entry_hash(&prev, entry);
        let expected = if has_checkpoint(&trail, seq) {
            VerifyError::CheckpointMismatch { seq }
        } else {
            VerifyError::EditedEntry { seq: seq + 1 }
        };
        prop_assert_eq!(verify(&trail.records), Err(expected));
    }

    #[test]
    fn an_edit_with_all_hashes_recomputed_fails_at_the_next_checkpoint(
        (contents, every) in trail_params(),
        which in any::<Index>(),
        field in 0..5usize,
    ) {
        let trail = build(&contents, every);
        let seq = which.index(trail.n as usize) as u64 + 1;
        let mut edited = contents_of(&trail);
        let c = &mut edited[seq as usize - 1];
        match field {
            0 => c.at_ms = c.at_ms.wrapping_add(1),
            1 => c.kind.push('x'),
            2 => c.actor.push('x'),
            3 => c.subject.push('x'),
            _ => c.detail.push(' '),
        }
        let forged = forge(&edited, &checkpoint_objects(&trail));
        prop_assert_eq!(
            verify(&forged),
            Err(VerifyError::CheckpointMismatch { seq: next_checkpoint(&trail, seq) })
        );
    }

    #[test]
    fn a_deleted_entry_is_missing(
        (contents, every) in trail_params(),
        which in any::<Index>(),
        keep_checkpoint in any::<bool>(),
    ) {
        let mut trail = build(&contents, every);
        let seq = which.index(trail.n as usize) as u64 + 1;
        let pos = entry_pos(&trail.records, seq);
        let checkpointed = has_checkpoint(&trail, seq);
        trail.records.remove(pos);
        if checkpointed && keep_checkpoint {
            // The entry's checkpoint stays where the entry was.
            prop_assert_eq!(
                verify(&trail.records),
                Err(VerifyError::CheckpointBeyondChain { seq, last: seq - 1 })
            );
        } else {
            if checkpointed {
                trail.records.remove(pos);
            }
            if seq < trail.n {
                prop_assert_eq!(
                    verify(&trail.records),
                    Err(VerifyError::MissingEntries { expected: seq, found: seq + 1 })
                );
            } else {
                // Deleting the last entry with its checkpoint is cutting the tail.
                check_truncated(&trail.records, &trail)?;
            }
        }
    }

    #[test]
    fn a_deleted_entry_with_the_rest_renumbered_and_rehashed_fails_at_a_checkpoint(
        (contents, every) in trail_params(),
        which in any::<Index>(),
    ) {
        let trail = build(&contents, every);
        let seq = which.index(trail.n as usize) as u64 + 1;
        let mut remaining = contents_of(&trail);
        remaining.remove(seq as usize - 1);
        let forged = forge(&remaining, &checkpoint_objects(&trail));
        let new_last = trail.n - 1;
        let expected = match trail.checkpoints.iter().find(|&&c| c >= seq && c <= new_last) {
            Some(&c) => Err(VerifyError::CheckpointMismatch { seq: c }),
            None if new_last == 0 => Err(VerifyError::Empty),
            // Deleting the last entry when the one before it is checkpointed is a cut at a
            // checkpoint: undetectable from the file alone (see `check_truncated`).
            None if seq == trail.n && has_checkpoint(&trail, new_last) => {
                let report = verify(&forged);
                prop_assert!(report.is_ok(), "{:?}", report);
                return Ok(());
            }
            None => Err(VerifyError::UnsignedTail {
                last_checkpoint: trail.checkpoints.iter().rev().find(|&&c| c < seq).copied(),
                last_entry: new_last,
            }),
        };
        prop_assert_eq!(verify(&forged), expected);
    }

    #[test]
    fn an_inserted_forged_entry_is_caught(
        (contents, every) in trail_params(),
        which in any::<Index>(),
        forged_content in content(),
        renumber in any::<bool>(),
    ) {
        let trail = build(&contents, every);
        // The forged entry takes seq `at` and goes before the original entry `at` (if any).
        let at = which.index(trail.n as usize + 1) as u64 + 1;
        let records = if renumber {
            // Renumber and re-hash everything after it, checkpoints moved along their seq.
            let mut all = contents_of(&trail);
            all.insert(at as usize - 1, forged_content);
            forge(&all, &checkpoint_objects(&trail))
        } else {
            // Slip it in with the seq it displaces and a correct hash from its predecessor.
            let prev = match at {
                1 => GENESIS,
                _ => match &trail.records[entry_pos(&trail.records, at - 1)] {
                    Rec::Entry(_, h) => *h,
                    Rec::Checkpoint(_) => unreachable!(),
                },
            };
            let entry = Entry {
                seq: at,
                at_ms: forged_content.at_ms,
                kind: forged_content.kind,
                actor: forged_content.actor,
                subject: forged_content.subject,
                detail: forged_content.detail,
            };
            let hash = entry_hash(&prev, &entry);
            let pos = if at > trail.n { trail.records.len() } else { entry_pos(&trail.records, at) };
            let mut records = trail.records.clone();
            records.insert(pos, Rec::Entry(entry, hash));
            records
        };
        let expected = if at > trail.n {
            VerifyError::UnsignedTail { last_checkpoint: Some(trail.n), last_entry: trail.n + 1 }
        } else if renumber {
            VerifyError::CheckpointMismatch { seq: next_checkpoint(&trail, at) }
        } else {
            VerifyError::OutOfOrder { previous: at, found: at }
        };
        prop_assert_eq!(verify(&records), Err(expected));
    }

    #[test]
    fn swapped_entries_are_out_of_order(
        (contents, every) in trail_params(),
        a in any::<Index>(),
        b in any::<Index>(),
        with_checkpoints in any::<bool>(),
    ) {
        let trail = build(&contents, every);
        prop_assume!(trail.n >= 2);
        let (x, y) = (a.index(trail.n as usize) as u64 + 1, b.index(trail.n as usize) as u64 + 1);
        prop_assume!(x != y);
        let (i, j) = (x.min(y), x.max(y));
        // Each entry as a group: its line, then its checkpoint line if any.
        let mut groups: Vec<Vec<Rec>> = Vec::new();
        for record in &trail.records {
            match record {
                Rec::Entry(..) => groups.push(vec![record.clone()]),
                Rec::Checkpoint(_) => groups.last_mut().unwrap().push(record.clone()),
            }
        }
        let (gi, gj) = (i as usize - 1, j as usize - 1);
        if with_checkpoints {
            groups.swap(gi, gj);
        } else {
            let first = groups[gi][0].clone();
            groups[gi][0] = std::mem::replace(&mut groups[gj][0], first);
        }
        let records: Vec<Rec> = groups.into_iter().flatten().collect();
        // Entry j now stands where i should; the next item shows it was moved, not a gap.
        let found = if !with_checkpoints && has_checkpoint(&trail, i) || j == i + 1 { i } else { i + 1 };
        prop_assert_eq!(verify(&records), Err(VerifyError::OutOfOrder { previous: j, found }));
    }

    #[test]
    fn swapped_entries_renumbered_and_rehashed_fail_at_a_checkpoint(
        (contents, every) in trail_params(),
        a in any::<Index>(),
        b in any::<Index>(),
    ) {
        let trail = build(&contents, every);
        let (x, y) = (a.index(trail.n as usize), b.index(trail.n as usize));
        let (i, j) = (x.min(y), x.max(y));
        let mut swapped = contents_of(&trail);
        prop_assume!(swapped[i] != swapped[j]);
        swapped.swap(i, j);
        let forged = forge(&swapped, &checkpoint_objects(&trail));
        prop_assert_eq!(
            verify(&forged),
            Err(VerifyError::CheckpointMismatch { seq: next_checkpoint(&trail, i as u64 + 1) })
        );
    }

    #[test]
    fn a_duplicated_entry_is_out_of_order(
        (contents, every) in trail_params(),
        which in any::<Index>(),
    ) {
        let mut trail = build(&contents, every);
        let seq = which.index(trail.n as usize) as u64 + 1;
        let pos = entry_pos(&trail.records, seq);
        let copy = trail.records[pos].clone();
        trail.records.insert(pos + 1, copy);
        prop_assert_eq!(
            verify(&trail.records),
            Err(VerifyError::OutOfOrder { previous: seq, found: seq })
        );
    }

    #[test]
    fn an_edited_checkpoint_is_a_bad_signature(
        (contents, every) in trail_params(),
        which in any::<Index>(),
        field in 0..4usize,
    ) {
        let mut trail = build(&contents, every);
        let positions: Vec<usize> = trail
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Rec::Checkpoint(_)))
            .map(|(p, _)| p)
            .collect();
        let pos = positions[which.index(positions.len())];
        let Rec::Checkpoint(cp) = &mut trail.records[pos] else { unreachable!() };
        match field {
            0 => cp.at_ms = cp.at_ms.wrapping_add(1),
            1 => cp.hash[0] ^= 0x80,
            2 => cp.signature[63] ^= 0x01,
            _ => cp.seq += 1,
        }
        let seq = cp.seq;
        prop_assert_eq!(verify(&trail.records), Err(VerifyError::BadSignature { seq }));
    }

    #[test]
    fn a_truncated_tail_is_an_unsigned_tail(
        (contents, every) in trail_params(),
        cut in any::<Index>(),
    ) {
        let trail = build(&contents, every);
        // Drop 1..=all trailing lines (the header stays).
        let drop = cut.index(trail.records.len()) + 1;
        let kept = &trail.records[..trail.records.len() - drop];
        check_truncated(kept, &trail)?;
    }

    #[test]
    fn entries_appended_after_the_last_checkpoint_are_an_unsigned_tail(
        (contents, every) in trail_params(),
        extra in prop::collection::vec(content(), 1..5),
    ) {
        let trail = build(&contents, every);
        let mut chain = Chain::new(trail.n, trail.head);
        let mut records = trail.records.clone();
        for c in &extra {
            let (e, h) = chain.append(c.at_ms, &c.kind, &c.actor, &c.subject, &c.detail);
            records.push(Rec::Entry(e, h));
        }
        prop_assert_eq!(
            verify(&records),
            Err(VerifyError::UnsignedTail {
                last_checkpoint: Some(trail.n),
                last_entry: trail.n + extra.len() as u64,
            })
        );
    }
}
