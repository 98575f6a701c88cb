//! The allocator: which subordinate ids the remap user owns, which range
//! to add when they fall short, and whose ids its ranges collide with.

use std::path::Path;

use crate::config::ParseError;
use crate::config::login_defs::{IdKind, LoginDefs};
use crate::config::passwd::{Groups, Passwd};
use crate::config::subid::{SubIdEntry, SubIdFile};
use crate::ids::{self, IdRange};
use crate::paths::{SUBGID, SUBUID};

use super::Mapping;

#[derive(Debug, thiserror::Error)]
pub enum AllocateError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(
        "{file}: no free range of {count} ids left within {min}..={max} (SUB_{kind}_MIN/MAX in login.defs); free one or raise SUB_{kind}_MAX"
    )]
    NoFreeRange {
        file: std::path::PathBuf,
        kind: &'static str,
        count: u64,
        min: u64,
        max: u64,
    },
}

impl AllocateError {
    /// The input file position behind this error, if any.
    pub fn location(&self) -> Option<crate::error::Location> {
        match self {
            AllocateError::Parse(e) => e.location(),
            AllocateError::NoFreeRange { .. } => None,
        }
    }
}

/// Which subordinate-id file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubIdKind {
    Uid,
    Gid,
}

impl SubIdKind {
    pub fn path(self) -> &'static Path {
        Path::new(self.path_str())
    }

    pub fn path_str(self) -> &'static str {
        match self {
            SubIdKind::Uid => SUBUID,
            SubIdKind::Gid => SUBGID,
        }
    }

    fn id_kind(self) -> IdKind {
        match self {
            SubIdKind::Uid => IdKind::Uid,
            SubIdKind::Gid => IdKind::Gid,
        }
    }
}

/// The account databases that say which ids are in use.
pub struct IdSources<'a> {
    pub passwd: &'a Passwd,
    pub groups: &'a Groups,
    pub login_defs: &'a LoginDefs,
}

/// Inputs to the range decision for one file, shared by planning and by
/// the re-check under lock at apply time.
pub struct RangeNeed<'a> {
    pub kind: SubIdKind,
    pub file: &'a SubIdFile,
    pub owner: &'a str,
    pub owner_uid: Option<u32>,
    pub count: u64,
    /// Ids that belong to accounts (uids for subuid, gids for subgid).
    pub in_use: Vec<IdRange>,
    pub bounds: (u64, u64),
}

/// The range to add, if the owner's stacked ranges fall short of `count`.
pub fn range_to_add(
    need: &RangeNeed<'_>,
    display: &Path,
) -> Result<Option<IdRange>, AllocateError> {
    let have: u64 = owned_ranges(need).iter().map(|r| r.count).sum();
    if have >= need.count {
        return Ok(None);
    }
    let missing = need.count - have;
    let mut taken: Vec<IdRange> = need.file.taken().collect();
    taken.extend(need.in_use.iter().copied());
    let (min, max) = need.bounds;
    ids::first_fit(&taken, min, max, missing)
        .map(Some)
        .ok_or(AllocateError::NoFreeRange {
            file: display.to_owned(),
            kind: match need.kind {
                SubIdKind::Uid => "UID",
                SubIdKind::Gid => "GID",
            },
            count: missing,
            min,
            max,
        })
}

pub fn owned_ranges(need: &RangeNeed<'_>) -> Vec<IdRange> {
    match need.owner_uid {
        Some(uid) => need.file.ranges_of(need.owner, uid),
        None => need
            .file
            .ranges_of(need.owner, u32::MAX)
            .into_iter()
            .collect(),
    }
}

pub fn range_need<'a>(
    sources: &IdSources<'_>,
    kind: SubIdKind,
    file: &'a SubIdFile,
    owner: &'a str,
    owner_uid: Option<u32>,
    count: u64,
    creating: bool,
) -> Result<RangeNeed<'a>, AllocateError> {
    let mut in_use: Vec<IdRange> = match kind {
        SubIdKind::Uid => sources
            .passwd
            .entries
            .iter()
            .map(|e| IdRange::single(e.uid))
            .collect(),
        SubIdKind::Gid => sources
            .groups
            .entries
            .iter()
            .map(|e| IdRange::single(e.gid))
            .collect(),
    };
    if creating {
        // The account's id is not known yet; keep clear of where it will go.
        let (min, max) = sources.login_defs.system_bounds(kind.id_kind())?;
        in_use.extend(IdRange::new(min, max - min + 1));
    }
    Ok(RangeNeed {
        kind,
        file,
        owner,
        owner_uid,
        count,
        in_use,
        bounds: sources.login_defs.subordinate_bounds(kind.id_kind())?,
    })
}

/// A range of the remap user's that another owner or account can reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    /// The remap user's line in the subid file, when the clash is with
    /// another line of it.
    pub line: Option<usize>,
    pub message: String,
}

/// The remap user's lines in a subid file, each with every other owner's
/// line whose range overlaps it, in file order; lines that clash with
/// nobody are left out.
pub fn overlapping_lines<'f>(
    file: &'f SubIdFile,
    mapping: &Mapping,
) -> Vec<(&'f SubIdEntry, Vec<&'f SubIdEntry>)> {
    let uid = mapping.uid.map(|u| u.to_string());
    let is_ours = |owner: &str| owner == mapping.user || Some(owner) == uid.as_deref();
    file.entries
        .iter()
        .filter(|e| is_ours(&e.owner))
        .map(|entry| {
            let others = file
                .entries
                .iter()
                .filter(|other| !is_ours(&other.owner) && other.range.overlaps(&entry.range))
                .collect();
            (entry, others)
        })
        .filter(|(_, others): &(_, Vec<_>)| !others.is_empty())
        .collect()
}

/// Ranges already owned by the remap user that collide with someone else's
/// range or with an account's id.
pub fn collisions(
    file: &SubIdFile,
    passwd: &Passwd,
    groups: &Groups,
    mapping: &Mapping,
    kind: SubIdKind,
) -> Vec<Collision> {
    let ours = match kind {
        SubIdKind::Uid => &mapping.uid_ranges,
        SubIdKind::Gid => &mapping.gid_ranges,
    };
    let mut out: Vec<Collision> = overlapping_lines(file, mapping)
        .into_iter()
        .map(|(entry, others)| {
            let other = others[0];
            Collision {
                line: Some(entry.line),
                message: format!(
                    "{}'s range {} overlaps {}'s range {} (line {}): files of one can be reached by the other",
                    mapping.user, entry.range, other.owner, other.range, other.line
                ),
            }
        })
        .collect();
    let accounts: Vec<(String, u32)> = match kind {
        SubIdKind::Uid => passwd
            .entries
            .iter()
            .map(|e| (e.name.clone(), e.uid))
            .collect(),
        SubIdKind::Gid => groups
            .entries
            .iter()
            .map(|e| (e.name.clone(), e.gid))
            .collect(),
    };
    for range in ours {
        if let Some((name, id)) = accounts.iter().find(|(_, id)| range.contains(*id)) {
            out.push(Collision {
                line: None,
                message: format!(
                    "{}'s range {range} contains the id {id} of account {name}",
                    mapping.user
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_line() -> impl Strategy<Value = String> {
        prop_oneof![
            ("[a-z]{1,6}", 0u64..700_000, 1u64..100_000)
                .prop_map(|(o, s, c)| format!("{o}:{s}:{c}")),
            (0u32..3000, 0u64..700_000, 1u64..100_000).prop_map(|(o, s, c)| format!("{o}:{s}:{c}")),
            (0u64..700_000, 1u64..100_000).prop_map(|(s, c)| format!("x:{s}:{c}\r")),
            (0u64..700_000, 1u64..100_000).prop_map(|(s, c)| format!(" y : {s} : {c} ")),
            "[a-z:#0-9 ]{0,20}",
        ]
    }

    #[test]
    fn overlapping_lines_pair_each_of_ours_with_every_other_owner_it_overlaps() {
        let text = "dockremap:100000:65536\nalice:150000:10\nbob:160000:10\n4000:300000:10\ncarol:300005:10\ndave:500000:10\n";
        let file = SubIdFile::parse(Path::new("/etc/subuid"), text.as_bytes()).unwrap();
        let mapping = Mapping {
            spec: "default".into(),
            user: "dockremap".into(),
            group: "dockremap".into(),
            uid: Some(4000),
            gid: Some(4000),
            uid_ranges: vec![],
            gid_ranges: vec![],
        };
        let found: Vec<(usize, Vec<&str>)> = overlapping_lines(&file, &mapping)
            .into_iter()
            .map(|(ours, others)| (ours.line, others.iter().map(|o| o.owner.as_str()).collect()))
            .collect();
        assert_eq!(found, vec![(1, vec!["alice", "bob"]), (4, vec!["carol"])]);
    }

    proptest! {
        #[test]
        fn allocated_ranges_overlap_nothing_any_line_claims(
            lines in prop::collection::vec(arb_line(), 0..30),
            ids in prop::collection::vec(0u32..700_000, 0..10),
            count in 65536u64..140_000,
        ) {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let file = SubIdFile::parse(Path::new("/etc/subuid"), text.as_bytes()).unwrap();
            let need = RangeNeed {
                kind: SubIdKind::Uid,
                file: &file,
                owner: "dockremap",
                owner_uid: Some(4000),
                count,
                in_use: ids.iter().map(|&i| IdRange::single(i)).collect(),
                bounds: (100_000, 600_100_000),
            };
            let added = range_to_add(&need, Path::new("/etc/subuid")).unwrap().expect("the owner has no range");
            prop_assert_eq!(added.count, count);
            prop_assert!(added.start >= 100_000 && added.last() <= 600_100_000);
            for taken in file.taken() {
                prop_assert!(!added.overlaps(&taken), "{} overlaps {}", added, taken);
            }
            for id in ids {
                prop_assert!(!added.overlaps(&IdRange::single(id)));
            }
            // Appending keeps every existing byte and parses back to our line.
            let appended = file.with_appended("dockremap", added);
            prop_assert!(appended.starts_with(&text));
            let again = SubIdFile::parse(Path::new("/etc/subuid"), appended.as_bytes()).unwrap();
            prop_assert_eq!(again.ranges_of("dockremap", 4000), vec![added]);
        }
    }
}
