//! The journal in the data root: written before the first move, read to
//! resume an interrupted migration (and by `check`), removed at the end.
//! Only a regular file root owns, with one link, is ever taken for it.

use super::MigrateError;
use super::Migration;
use super::at::{At, Owner, temp_name};

pub(super) const NAME: &str = ".docker-userns-migrate.json";

/// The migration recorded in `root`, if any. Anything but a small regular
/// file root owns there is refused; a record that does not parse is none.
pub(super) fn read(root: &At) -> Result<Option<Migration>, MigrateError> {
    let Some(entry) = root.file(NAME)? else {
        return Ok(None);
    };
    if entry.stat.st_uid != 0 {
        return Err(MigrateError::Unexpected {
            path: entry.path,
            what: format!(
                "is owned by uid {}, not root: docker-userns did not write it; remove it",
                entry.stat.st_uid
            ),
        });
    }
    Ok(serde_json::from_slice(&entry.read()?).ok())
}

/// Nothing may wait where the journal's temp file goes.
pub(super) fn require_no_temp(root: &At) -> Result<(), MigrateError> {
    root.require_absent(&temp_name(NAME))
}

/// Records `migration`, unless it already is.
pub(super) fn write(root: &At, migration: &Migration) -> Result<(), MigrateError> {
    if read(root)?.as_ref() == Some(migration) {
        return Ok(());
    }
    let bytes = serde_json::to_vec_pretty(migration).expect("serializable");
    root.replace(
        NAME,
        &bytes,
        Owner {
            uid: 0,
            gid: 0,
            mode: 0o600,
        },
    )
}

pub(super) fn remove(root: &At) -> Result<(), MigrateError> {
    root.remove_file(NAME)
}
