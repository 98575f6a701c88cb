//! Time spent in each phase of a command (stop, move, shift, ...), for
//! the report: where a long migration went is the first thing to ask.

use std::time::{Duration, Instant};

use serde::ser::{Serialize, SerializeMap, Serializer};

/// Phases in the order they first ran; a phase that runs twice adds up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Phases(Vec<(&'static str, Duration)>);

impl Phases {
    /// Runs `f`, counting its time (whatever it returns) against `name`.
    pub fn time<T>(&mut self, name: &'static str, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let result = f();
        self.add(name, started.elapsed());
        result
    }

    pub fn add(&mut self, name: &'static str, spent: Duration) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += spent,
            None => self.0.push((name, spent)),
        }
    }

    pub fn extend(&mut self, other: &Phases) {
        for (name, spent) in &other.0 {
            self.add(name, *spent);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    #[cfg(test)]
    pub fn get(&self, name: &str) -> Option<Duration> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
    }

    pub fn total(&self) -> Duration {
        self.0.iter().map(|(_, d)| *d).sum()
    }

    /// The `took` line of a command's report, when a phase ran.
    pub fn took_line(&self) -> String {
        if self.is_empty() {
            return String::new();
        }
        format!("took        {}\n", self.human())
    }

    /// `12.3 s: stop 1.2 s, move 0.0 s, shift 9.8 s, ...`
    pub fn human(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(name, spent)| format!("{name} {}", seconds(*spent)))
            .collect();
        format!("{}: {}", seconds(self.total()), parts.join(", "))
    }
}

/// `{"stop": 1.23, "move": 0.01, ...}` in seconds; `null` when no phase
/// ran, so the key is always there for scripts.
impl Serialize for Phases {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.is_empty() {
            return serializer.serialize_none();
        }
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, spent) in &self.0 {
            map.serialize_entry(name, &spent.as_secs_f64())?;
        }
        map.end()
    }
}

/// A duration as seconds with a fraction, as every report gives times.
pub fn serialize_seconds<S: Serializer>(
    spent: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(spent.as_secs_f64())
}

fn seconds(spent: Duration) -> String {
    format!("{:.1} s", spent.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_that_runs_twice_adds_up_in_its_first_place() {
        let mut phases = Phases::default();
        phases.add("stop", Duration::from_millis(1500));
        phases.add("move", Duration::from_millis(100));
        phases.add("stop", Duration::from_millis(500));
        assert_eq!(phases.get("stop"), Some(Duration::from_secs(2)));
        assert_eq!(phases.total(), Duration::from_millis(2100));
        assert_eq!(phases.human(), "2.1 s: stop 2.0 s, move 0.1 s");
        let json = serde_json::to_value(&phases).unwrap();
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["stop", "move"]);
        assert_eq!(json["stop"], 2.0);
    }

    #[test]
    fn no_phase_is_null_in_json() {
        let json = serde_json::to_value(Phases::default()).unwrap();
        assert_eq!(json, serde_json::Value::Null);
    }
}
