//! Id maps: parsing `FROM:TO:COUNT`, refusing sets of maps that a rerun
//! could apply twice, and looking ids up.

use std::fmt;
use std::str::FromStr;

use super::ShiftError;

/// The highest valid id plus one: 4294967295 is `(uid_t)-1`, which chown
/// reads as "leave unchanged", so no range may reach it.
const ID_END: u64 = u32::MAX as u64;

/// Ids `[from, from + count)` become `[to, to + count)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdMap {
    pub(crate) from: u32,
    pub(crate) to: u32,
    pub(crate) count: u32,
}

impl IdMap {
    /// Parses `FROM:TO:COUNT` (decimal), as in /proc/PID/uid_map but with
    /// colons.
    pub fn parse(text: &str) -> Result<IdMap, ShiftError> {
        let bad = |reason: String| ShiftError::BadMap {
            text: text.to_owned(),
            reason,
        };
        let parts: Vec<&str> = text.split(':').collect();
        let [from, to, count] = parts[..] else {
            return Err(bad(format!(
                "expected three numbers separated by colons, found {}",
                parts.len()
            )));
        };
        let number = |name: &str, value: &str| {
            value
                .parse::<u32>()
                .ok()
                .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    bad(format!(
                        "{name} {value:?} is not a number from 0 to {}",
                        ID_END - 1
                    ))
                })
        };
        let map = IdMap {
            from: number("FROM", from)?,
            to: number("TO", to)?,
            count: number("COUNT", count)?,
        };
        if map.count == 0 {
            return Err(bad("COUNT must be at least 1".to_owned()));
        }
        for (name, start) in [("FROM", map.from), ("TO", map.to)] {
            if u64::from(start) + u64::from(map.count) > ID_END {
                return Err(bad(format!(
                    "{name}+COUNT-1 is {}, above the highest id {} (4294967295 is not a valid id)",
                    u64::from(start) + u64::from(map.count) - 1,
                    ID_END - 1
                )));
            }
        }
        Ok(map)
    }

    fn source(&self) -> (u64, u64) {
        (
            u64::from(self.from),
            u64::from(self.from) + u64::from(self.count),
        )
    }

    fn target(&self) -> (u64, u64) {
        (
            u64::from(self.to),
            u64::from(self.to) + u64::from(self.count),
        )
    }

    /// The id `id` becomes, or `None` when it is outside the source range.
    pub(crate) fn apply(&self, id: u32) -> Option<u32> {
        let offset = id.wrapping_sub(self.from);
        (offset < self.count).then(|| self.to + offset)
    }
}

impl fmt::Display for IdMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.from, self.to, self.count)
    }
}

impl FromStr for IdMap {
    type Err = ShiftError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        IdMap::parse(text)
    }
}

fn overlap(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Refuses maps of one kind (`"uid"` or `"gid"`) that are ambiguous or not
/// safe to rerun. A target that overlaps a source would shift some ids
/// twice when a run is resumed; overlapping sources are ambiguous; and
/// overlapping targets would merge distinct ids.
pub(crate) fn validate(kind: &'static str, maps: &[IdMap]) -> Result<(), ShiftError> {
    let refuse = |first: &IdMap, second: &IdMap, reason: &'static str| ShiftError::Overlap {
        kind,
        first: *first,
        second: *second,
        reason,
    };
    for (i, a) in maps.iter().enumerate() {
        if overlap(a.source(), a.target()) {
            return Err(refuse(
                a,
                a,
                "its source and target ranges overlap, so resuming an interrupted shift would shift some ids twice",
            ));
        }
        for b in &maps[i + 1..] {
            if overlap(a.source(), b.source()) {
                return Err(refuse(a, b, "their source ranges overlap"));
            }
            if overlap(a.target(), b.target()) {
                return Err(refuse(
                    a,
                    b,
                    "their target ranges overlap, so distinct ids would become one",
                ));
            }
            if overlap(a.source(), b.target()) || overlap(a.target(), b.source()) {
                return Err(refuse(
                    a,
                    b,
                    "one's target overlaps the other's source, so resuming an interrupted shift would shift some ids twice",
                ));
            }
        }
    }
    Ok(())
}

/// The maps of one kind, for lookups during the walk.
#[derive(Debug, Clone, Default)]
pub(crate) struct Mapper {
    maps: Vec<IdMap>,
}

impl Mapper {
    pub(crate) fn new(maps: &[IdMap]) -> Self {
        Mapper {
            maps: maps.to_vec(),
        }
    }

    /// The new id, or `None` when `id` is outside every source range.
    pub(crate) fn map(&self, id: u32) -> Option<u32> {
        self.maps.iter().find_map(|m| m.apply(id))
    }

    /// Whether `id` is one the maps give: inside a target range.
    pub(crate) fn is_target(&self, id: u32) -> bool {
        let id = u64::from(id);
        self.maps.iter().any(|m| {
            let (start, end) = m.target();
            (start..end).contains(&id)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(text: &str) -> IdMap {
        IdMap::parse(text).unwrap()
    }

    #[test]
    fn parses_from_to_count() {
        assert_eq!(
            map("0:100000:65536"),
            IdMap {
                from: 0,
                to: 100000,
                count: 65536
            }
        );
        assert_eq!(map("0:100000:65536").to_string(), "0:100000:65536");
        assert_eq!(map("4294967294:0:1").apply(4294967294), Some(0));
    }

    #[test]
    fn rejects_malformed_maps_with_the_reason() {
        for (text, reason) in [
            ("", "three numbers"),
            ("0:1", "three numbers"),
            ("0:1:2:3", "three numbers"),
            ("a:1:2", "FROM \"a\""),
            ("0:-1:2", "TO \"-1\""),
            ("0:+1:2", "TO \"+1\""),
            ("0: 1:2", "TO \" 1\""),
            ("0:1:4294967296", "COUNT"),
            ("0:1:0", "at least 1"),
            ("4294967295:0:1", "above the highest id"),
            ("0:4294901760:65536", "TO+COUNT-1 is 4294967295"),
        ] {
            let error = IdMap::parse(text).unwrap_err().to_string();
            assert!(error.contains(reason), "{text:?}: {error}");
            assert!(error.contains("FROM:TO:COUNT"), "{text:?}: {error}");
        }
    }

    #[test]
    fn apply_maps_only_the_source_range() {
        let m = map("10:1000:5");
        assert_eq!(m.apply(9), None);
        assert_eq!(m.apply(10), Some(1000));
        assert_eq!(m.apply(14), Some(1004));
        assert_eq!(m.apply(15), None);
        let all = Mapper::new(&[m, map("0:2000:10")]);
        assert_eq!(all.map(3), Some(2003));
        assert_eq!(all.map(12), Some(1002));
        assert_eq!(all.map(500), None);
    }

    #[test]
    fn refuses_maps_a_rerun_would_apply_twice() {
        let ok = [map("0:100000:65536"), map("65536:300000:10")];
        validate("uid", &ok).unwrap();
        for (maps, reason) in [
            (
                vec![map("0:1000:65536")],
                "source and target ranges overlap",
            ),
            (vec![map("5:5:1")], "source and target ranges overlap"),
            (
                vec![map("0:100000:65536"), map("100000:200000:65536")],
                "target overlaps the other's source",
            ),
            (
                vec![map("0:100000:10"), map("5:200000:10")],
                "source ranges overlap",
            ),
            (
                vec![map("0:100000:10"), map("20:100005:10")],
                "target ranges overlap",
            ),
        ] {
            let error = validate("uid", &maps).unwrap_err().to_string();
            assert!(error.contains(reason), "{maps:?}: {error}");
            assert!(error.starts_with("uid maps"), "{error}");
        }
    }
}
