//! Time spent in each phase of a command (stop, move, shift, ...), for
//! the report: where a long migration went is the first thing to ask.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

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

    pub fn get(&self, name: &str) -> Option<Duration> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
    }

    pub fn total(&self) -> Duration {
        self.0.iter().map(|(_, d)| *d).sum()
    }

    /// `{"stop": 1.23, "move": 0.01, ...}` in seconds; `null` when no
    /// phase ran, so the key is always there for scripts.
    pub fn to_json(&self) -> Value {
        if self.is_empty() {
            return Value::Null;
        }
        let phases: Map<String, Value> = self
            .0
            .iter()
            .map(|(name, spent)| ((*name).to_owned(), Value::from(spent.as_secs_f64())))
            .collect();
        Value::Object(phases)
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
        let json = phases.to_json();
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["stop", "move"]);
        assert_eq!(json["stop"], 2.0);
    }

    #[test]
    fn no_phase_is_null_in_json() {
        assert_eq!(Phases::default().to_json(), Value::Null);
    }
}
