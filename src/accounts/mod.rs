//! The remap account: which accounts a `userns-remap` value names
//! ([`resolve`]), which subordinate ids they get ([`allocate`]), and
//! creating, completing or removing them ([`create`]).

pub mod allocate;
pub mod create;
pub mod resolve;

use crate::ids::IdRange;

/// Who container root becomes, and with which ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub spec: String,
    pub user: String,
    pub group: String,
    /// `None` while the account is still to be created.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// In the order dockerd stacks them: the first holds container id 0.
    pub uid_ranges: Vec<IdRange>,
    pub gid_ranges: Vec<IdRange>,
}

impl Mapping {
    /// The name dockerd gives the namespaced data root: `<uid>.<gid>`.
    pub fn data_root_dir(&self) -> Option<String> {
        Some(format!(
            "{}.{}",
            self.uid_ranges.first()?.start,
            self.gid_ranges.first()?.start
        ))
    }

    pub fn uid_count(&self) -> u64 {
        self.uid_ranges.iter().map(|r| r.count).sum()
    }

    pub fn gid_count(&self) -> u64 {
        self.gid_ranges.iter().map(|r| r.count).sum()
    }
}
