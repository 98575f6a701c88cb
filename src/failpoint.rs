//! Named crash points, compiled in only with the `failpoints` feature so
//! tests can abort the process at every step and prove nothing is lost.
//!
//! `DOCKER_USERNS_FAILPOINT=NAME:N` aborts at the N-th time NAME is
//! reached (N defaults to 1). Without the feature, `hit` is empty.

#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static HITS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);
    let Ok(wanted) = std::env::var("DOCKER_USERNS_FAILPOINT") else {
        return;
    };
    let (point, nth) = match wanted.split_once(':') {
        Some((point, n)) => (point.to_owned(), n.parse().unwrap_or(1)),
        None => (wanted, 1),
    };
    if point != name {
        return;
    }
    let mut hits = HITS.lock().unwrap_or_else(|e| e.into_inner());
    let count = hits
        .get_or_insert_with(HashMap::new)
        .entry(point)
        .or_insert(0);
    *count += 1;
    if *count == nth {
        eprintln!("docker-userns: failpoint {name}:{nth} reached, aborting");
        std::process::abort();
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
