//! Id ranges, the `userns-remap` value, and the subordinate-id allocator.

use std::fmt;

/// One past the highest id: ranges must end at or below 2^32.
pub(crate) const ID_LIMIT: u64 = 1 << 32;
/// dockerd (and every image with a full `nobody`) needs 65536 ids.
pub(crate) const MIN_COUNT: u64 = 65536;

/// A half-open range of ids `[start, start + count)`, within 2^32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct IdRange {
    pub start: u64,
    pub count: u64,
}

impl IdRange {
    pub fn new(start: u64, count: u64) -> Option<Self> {
        (count > 0 && start.checked_add(count)? <= ID_LIMIT).then_some(IdRange { start, count })
    }

    pub(crate) fn single(id: u32) -> Self {
        IdRange {
            start: u64::from(id),
            count: 1,
        }
    }

    pub fn end(&self) -> u64 {
        self.start + self.count
    }

    pub(crate) fn last(&self) -> u64 {
        self.end() - 1
    }

    pub fn overlaps(&self, other: &IdRange) -> bool {
        self.start < other.end() && other.start < self.end()
    }

    pub(crate) fn contains(&self, id: u32) -> bool {
        self.overlaps(&IdRange::single(id))
    }
}

impl fmt::Display for IdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{} ({} ids)", self.start, self.last(), self.count)
    }
}

/// The lowest range of `count` ids within `[min, max]` (inclusive, as
/// shadow's SUB_*_MIN/MAX are) that overlaps none of `taken`.
pub(crate) fn first_fit(taken: &[IdRange], min: u64, max: u64, count: u64) -> Option<IdRange> {
    let max = max.min(ID_LIMIT - 1);
    if count == 0 || min > max {
        return None;
    }
    let mut sorted: Vec<&IdRange> = taken.iter().collect();
    sorted.sort_unstable();
    let mut low = min;
    for range in sorted {
        if range.end() <= low {
            continue;
        }
        if range.start > max {
            break;
        }
        if range.start >= low && range.start - low >= count {
            break;
        }
        low = range.end();
        if low > max {
            return None;
        }
    }
    (max - low + 1 >= count).then_some(IdRange { start: low, count })
}

/// Errors in a `userns-remap` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SpecError {
    #[error("the remap user is empty")]
    Empty,
    #[error(
        "{0:?} has more than two ':'-separated parts (expected USER, USER:GROUP, UID or UID:GID)"
    )]
    TooManyParts(String),
    #[error("\"root\" turns remapping off in dockerd; use `docker-userns disable` instead")]
    Root,
    #[error("{0:?} has an empty part")]
    EmptyPart(String),
}

/// Who container root becomes, as dockerd's `userns-remap` accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    Name(String),
    Id(u32),
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Name(name) => f.write_str(name),
            Principal::Id(id) => write!(f, "{id}"),
        }
    }
}

/// A parsed `userns-remap` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemapSpec {
    /// `default`: the `dockremap` user, created when missing.
    pub(crate) default: bool,
    pub(crate) user: Principal,
    pub(crate) group: Option<Principal>,
}

pub(crate) const DEFAULT_SPEC: &str = "default";
pub(crate) const DEFAULT_USER: &str = "dockremap";

impl RemapSpec {
    pub(crate) fn parse(value: &str) -> Result<Self, SpecError> {
        if value.is_empty() {
            return Err(SpecError::Empty);
        }
        let parts: Vec<&str> = value.split(':').collect();
        if parts.len() > 2 {
            return Err(SpecError::TooManyParts(value.into()));
        }
        if parts.iter().any(|p| p.is_empty()) {
            return Err(SpecError::EmptyPart(value.into()));
        }
        if parts[0] == "root" || parts[0] == "0" {
            return Err(SpecError::Root);
        }
        let default = parts[0] == DEFAULT_SPEC;
        let user = if default {
            Principal::Name(DEFAULT_USER.into())
        } else {
            principal(parts[0])
        };
        Ok(RemapSpec {
            default,
            user,
            group: parts.get(1).map(|g| principal(g)),
        })
    }
}

/// dockerd treats a part that parses as a 32-bit signed integer as an id.
fn principal(part: &str) -> Principal {
    match part.parse::<i32>() {
        Ok(id) if id >= 0 => Principal::Id(id as u32),
        _ => Principal::Name(part.into()),
    }
}

/// The highest single id in `[min, max]` not in `taken`: shadow hands out
/// system ids from the top of their range down.
pub(crate) fn first_fit_descending(taken: &[IdRange], min: u64, max: u64) -> Option<u64> {
    let mut id = max.min(ID_LIMIT - 1);
    let mut sorted: Vec<&IdRange> = taken.iter().collect();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    loop {
        if id < min {
            return None;
        }
        match sorted.iter().find(|r| r.start <= id && id < r.end()) {
            Some(r) => id = r.start.checked_sub(1)?,
            None => return Some(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(start: u64, count: u64) -> IdRange {
        IdRange::new(start, count).unwrap()
    }

    #[test]
    fn first_fit_on_empty_takes_min() {
        assert_eq!(
            first_fit(&[], 100_000, 600_100_000, 65536),
            Some(r(100_000, 65536))
        );
    }

    #[test]
    fn first_fit_skips_a_range_strictly_inside_the_window() {
        let taken = [r(120_000, 10)];
        assert_eq!(
            first_fit(&taken, 100_000, 600_100_000, 65536),
            Some(r(120_010, 65536))
        );
    }

    #[test]
    fn first_fit_uses_a_hole_that_is_exactly_large_enough() {
        let taken = [r(100_000, 65536), r(231_072, 65536)];
        assert_eq!(
            first_fit(&taken, 100_000, 600_100_000, 65536),
            Some(r(165_536, 65536))
        );
    }

    #[test]
    fn first_fit_respects_max_inclusive() {
        assert_eq!(first_fit(&[], 10, 10 + 65535, 65536), Some(r(10, 65536)));
        assert_eq!(first_fit(&[], 10, 10 + 65534, 65536), None);
        assert_eq!(first_fit(&[], 0, u64::MAX, 65536), Some(r(0, 65536)));
        let top = first_fit(&[r(0, ID_LIMIT - 65536)], 0, u64::MAX, 65536).unwrap();
        assert_eq!(top.end(), ID_LIMIT);
        assert_eq!(
            first_fit(&[r(0, ID_LIMIT - 65535)], 0, u64::MAX, 65536),
            None
        );
    }

    #[test]
    fn spec_parses_like_dockerd() {
        let s = RemapSpec::parse("default").unwrap();
        assert!(s.default);
        assert_eq!(s.user, Principal::Name("dockremap".into()));
        let s = RemapSpec::parse("1000:web").unwrap();
        assert_eq!(
            (s.user, s.group),
            (Principal::Id(1000), Some(Principal::Name("web".into())))
        );
        assert_eq!(
            RemapSpec::parse("a:b:c"),
            Err(SpecError::TooManyParts("a:b:c".into()))
        );
        assert_eq!(RemapSpec::parse("root"), Err(SpecError::Root));
        assert_eq!(
            RemapSpec::parse("a:"),
            Err(SpecError::EmptyPart("a:".into()))
        );
        assert_eq!(
            RemapSpec::parse("99999999999").unwrap().user,
            Principal::Name("99999999999".into())
        );
    }

    fn arb_ranges() -> impl Strategy<Value = Vec<IdRange>> {
        prop::collection::vec((0u64..400_000, 1u64..100_000), 0..24).prop_map(|v| {
            v.into_iter()
                .filter_map(|(s, c)| IdRange::new(s, c))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn first_fit_never_overlaps_and_stays_in_bounds(
            taken in arb_ranges(), min in 0u64..200_000, span in 0u64..600_000, count in 1u64..70_000,
        ) {
            let max = min + span;
            match first_fit(&taken, min, max, count) {
                Some(got) => {
                    prop_assert_eq!(got.count, count);
                    prop_assert!(got.start >= min && got.last() <= max);
                    for t in &taken {
                        prop_assert!(!got.overlaps(t), "{} overlaps {}", got, t);
                    }
                    // First fit: no lower start would have worked.
                    let edges = std::iter::once(min).chain(taken.iter().map(|t| t.end()));
                    for start in edges.filter(|&s| s >= min && s < got.start) {
                        let candidate = IdRange { start, count };
                        if candidate.last() <= max && taken.iter().all(|t| !candidate.overlaps(t)) {
                            prop_assert!(false, "lower start {} also fits", start);
                        }
                    }
                }
                None => {
                    // No start in the window fits: check at every hole edge.
                    let mut starts = vec![min];
                    starts.extend(taken.iter().map(|t| t.end()));
                    for start in starts.into_iter().filter(|&s| s >= min) {
                        let candidate = IdRange { start, count };
                        let fits = candidate.last() <= max && taken.iter().all(|t| !candidate.overlaps(t));
                        prop_assert!(!fits, "{} was free", candidate);
                    }
                }
            }
        }

        #[test]
        fn first_fit_result_does_not_depend_on_order(mut taken in arb_ranges(), count in 1u64..70_000) {
            let a = first_fit(&taken, 1000, 500_000, count);
            taken.reverse();
            prop_assert_eq!(a, first_fit(&taken, 1000, 500_000, count));
        }
    }

    #[test]
    fn first_fit_descending_takes_the_highest_free_id() {
        assert_eq!(first_fit_descending(&[], 101, 999), Some(999));
        let taken = [IdRange::single(999), IdRange::single(998), r(500, 10)];
        assert_eq!(first_fit_descending(&taken, 101, 999), Some(997));
        assert_eq!(first_fit_descending(&[r(101, 899)], 101, 999), None);
        assert_eq!(first_fit_descending(&[r(0, 1000)], 0, 999), None);
    }
}
