//! The rules, their state and the metrics' trailing windows; evaluation of each new value.
//!
//! **One alert per rule per window, and none while it fires.** A rule whose condition holds
//! (for its pending period, `for`) fires if it is not firing already and did not fire within
//! its window; it stays firing until the condition clears, which sends `alert.resolved` when
//! the rule asks for it. An average or a change is evaluated only over a window that holds
//! at least 90 % of the samples it should (see [`Series::stats`]): after a restart, a gap, or
//! a rule on a metric newly tracked, nothing fires until the window has filled.

use std::collections::{BTreeMap, HashMap};

use topcoins_history::{Alert, AlertState, Channel, Decision, Message, Rule};
use topcoins_schemas::alert::{AlertBody, AlertData, Checked, Condition, ConditionType};

use crate::window::Series;

/// Maps keyed by metric or rule id: foldhash, as the API node's hot maps (no untrusted keys
/// reach these: rules are the users' own, checked, and metrics the exchanges').
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A rule as evaluated: the stored rule, its channel and its checked condition.
#[derive(Debug, Clone)]
pub struct Watched {
    pub rule: Rule,
    pub channel: Channel,
    pub checked: Checked,
    /// The condition's window as written (`1h`), for the bodies.
    pub window: String,
}

/// What an evaluation decided for one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub rule_id: String,
    /// `fired` or `resolved`.
    pub kind: &'static str,
    pub metric: String,
    pub time: i64,
    pub value: f64,
    pub average: Option<f64>,
}

/// One rule on a metric, with its state.
struct Slot {
    watched: Watched,
    state: Option<AlertState>,
    /// Where its window started at the last evaluation (see [`Series::stats_after`]).
    cursor: u64,
    /// Changed since the last [`Engine::take_dirty`].
    dirty: bool,
}

/// One watched metric: its samples and the rules on it.
#[derive(Default)]
struct Entry {
    series: Series,
    slots: Vec<Slot>,
    /// The rules' longest window: how far back the samples must reach.
    keep_ms: i64,
    /// Read from the database (or tried).
    seeded: bool,
}

#[derive(Default)]
pub struct Engine {
    metrics: Map<String, Entry>,
    /// Each rule's metric.
    rules: Map<String, String>,
    /// Metrics with a slot changed since the last [`Engine::take_dirty`].
    dirty: Vec<String>,
}

fn parse(rule: &Rule) -> Result<(Checked, String), String> {
    serde_json::from_str::<Condition>(&rule.condition)
        .map_err(|e| e.to_string())
        .and_then(|c| {
            let window = c.window_text();
            c.check().map(|k| (k, window)).map_err(|e| e.message)
        })
}

impl Engine {
    /// Replaces the rules (keeping the state of those that stay, taking `stored` for the
    /// others); returns the metrics that have no samples yet (to read from the database).
    pub fn set_rules(
        &mut self,
        rules: Vec<(Rule, Channel)>,
        stored: Vec<AlertState>,
    ) -> Vec<String> {
        let mut stored: Map<String, AlertState> =
            stored.into_iter().map(|s| (s.rule_id.clone(), s)).collect();
        // The states held now win over the stored ones (they may be newer).
        for entry in self.metrics.values_mut() {
            for slot in entry.slots.drain(..) {
                if let Some(state) = slot.state {
                    stored.insert(slot.watched.rule.id.clone(), state);
                }
            }
        }
        let kept_dirty = std::mem::take(&mut self.dirty);
        self.rules.clear();
        let mut rules = rules;
        rules.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        for (rule, channel) in rules {
            let (checked, window) = match parse(&rule) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(rule = %rule.id, error = %e, "alerts: a stored rule does not parse; skipped");
                    continue;
                }
            };
            let state = stored.remove(&rule.id);
            self.rules.insert(rule.id.clone(), rule.metric.clone());
            let entry = self.metrics.entry(rule.metric.clone()).or_default();
            entry.slots.push(Slot {
                watched: Watched {
                    rule,
                    channel,
                    checked,
                    window,
                },
                state,
                cursor: 0,
                dirty: false,
            });
        }
        self.metrics.retain(|_, e| !e.slots.is_empty());
        for entry in self.metrics.values_mut() {
            entry.keep_ms = entry
                .slots
                .iter()
                .map(|s| s.watched.checked.window_ms)
                .max()
                .unwrap_or(0);
        }
        // States changed and not committed yet stay to be committed.
        for metric in kept_dirty {
            if let Some(entry) = self.metrics.get_mut(&metric) {
                for slot in &mut entry.slots {
                    slot.dirty = slot.state.is_some();
                }
                self.dirty.push(metric);
            }
        }
        self.metrics
            .iter()
            .filter(|(_, e)| !e.seeded)
            .map(|(m, _)| m.clone())
            .collect()
    }

    /// The rule `id` as evaluated.
    pub fn rule(&self, id: &str) -> Option<&Watched> {
        let metric = self.rules.get(id)?;
        self.metrics
            .get(metric)?
            .slots
            .iter()
            .map(|s| &s.watched)
            .find(|w| w.rule.id == id)
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Every metric a rule watches.
    pub fn metrics(&self) -> impl Iterator<Item = &str> {
        self.metrics.keys().map(String::as_str)
    }

    /// How far back `metric`'s samples must reach: its rules' longest window.
    pub fn keep_ms(&self, metric: &str) -> i64 {
        self.metrics.get(metric).map_or(0, |e| e.keep_ms)
    }

    /// Adds samples read from the database, oldest first, without evaluating them (and marks
    /// the metric read).
    pub fn seed(&mut self, metric: &str, samples: impl IntoIterator<Item = (i64, f64)>) {
        if let Some(entry) = self.metrics.get_mut(metric) {
            entry.seeded = true;
            for (t, v) in samples {
                entry.series.push(t, v);
            }
        }
    }

    /// Evaluates every rule on `metric` for a new sample, then keeps the sample. A sample not
    /// newer than the last one (a notice seen twice) is not evaluated again.
    pub fn observe(&mut self, metric: &str, time: i64, value: f64, out: &mut Vec<Event>) {
        let Some(entry) = self.metrics.get_mut(metric) else {
            return;
        };
        if !value.is_finite() || entry.series.last_time().is_some_and(|t| time <= t) {
            return;
        }
        let mut changed = false;
        for slot in &mut entry.slots {
            let c = slot.watched.checked;
            let stats = entry
                .series
                .stats_after(&mut slot.cursor, time, c.window_ms);
            let (holds, average) = match c.kind {
                ConditionType::PriceAbove => (Some(value > c.level), None),
                ConditionType::PriceBelow => (Some(value < c.level), None),
                ConditionType::AboveAverage => match stats {
                    Some(s) if s.covered => (Some(value > c.level * s.average), Some(s.average)),
                    _ => (None, None),
                },
                ConditionType::BelowAverage => match stats {
                    Some(s) if s.covered => (Some(value < s.average / c.level), Some(s.average)),
                    _ => (None, None),
                },
                ConditionType::ChangePct => match stats {
                    Some(s) if s.covered && s.first != 0.0 => (
                        Some(((value - s.first) / s.first).abs() * 100.0 > c.level),
                        Some(s.first),
                    ),
                    _ => (None, None),
                },
            };
            let id = &slot.watched.rule.id;
            let state = slot.state.get_or_insert_with(|| AlertState {
                rule_id: id.clone(),
                firing: false,
                pending_since: None,
                last_fired: None,
                last_sample: time,
            });
            state.last_sample = time;
            let before = (state.firing, state.pending_since, state.last_fired);
            let mut event = None;
            match holds {
                // Not enough samples to say: nothing changes.
                None => {}
                Some(true) if !state.firing => {
                    let since = *state.pending_since.get_or_insert(time);
                    let waited = time - since >= c.pending_ms;
                    let quiet = state.last_fired.is_none_or(|f| time - f >= c.window_ms);
                    if waited && quiet {
                        state.firing = true;
                        state.pending_since = None;
                        state.last_fired = Some(time);
                        event = Some("fired");
                    }
                }
                Some(true) => {}
                Some(false) => {
                    state.pending_since = None;
                    if state.firing {
                        state.firing = false;
                        if c.notify_resolved {
                            event = Some("resolved");
                        }
                    }
                }
            }
            if let Some(kind) = event {
                out.push(Event {
                    rule_id: id.clone(),
                    kind,
                    metric: metric.to_owned(),
                    time,
                    value,
                    average,
                });
            }
            if before != (state.firing, state.pending_since, state.last_fired) && !slot.dirty {
                slot.dirty = true;
                changed = true;
            }
        }
        entry.series.push(time, value);
        entry.series.trim(time - entry.keep_ms);
        if changed {
            self.dirty.push(metric.to_owned());
        }
    }

    /// The states changed since the last call.
    pub fn take_dirty(&mut self) -> Vec<AlertState> {
        let mut out = Vec::new();
        for metric in self.dirty.drain(..) {
            let Some(entry) = self.metrics.get_mut(&metric) else {
                continue;
            };
            for slot in &mut entry.slots {
                if std::mem::take(&mut slot.dirty)
                    && let Some(state) = &slot.state
                {
                    out.push(state.clone());
                }
            }
        }
        out.sort_by(|a, b| a.rule_id.cmp(&b.rule_id));
        out.dedup_by(|a, b| a.rule_id == b.rule_id);
        out
    }

    /// One evaluation's events as a decision: an alert each, and one message per channel and
    /// kind (alerts of one user to one channel in one evaluation travel together).
    pub fn decide(&self, events: &[Event], states: Vec<AlertState>, now: i64) -> Decision {
        let mut groups: BTreeMap<(String, &'static str), Vec<(&Watched, &Event)>> = BTreeMap::new();
        for e in events {
            if let Some(w) = self.rule(&e.rule_id) {
                groups
                    .entry((w.channel.id.clone(), e.kind))
                    .or_default()
                    .push((w, e));
            }
        }
        let mut decision = Decision {
            states,
            ..Default::default()
        };
        for ((channel_id, kind), members) in groups {
            let message_id = new_id("msg_");
            let mut data = Vec::new();
            for (w, e) in &members {
                let alert = Alert {
                    id: new_id("alr_"),
                    user_id: w.rule.user_id.clone(),
                    rule_id: w.rule.id.clone(),
                    metric: e.metric.clone(),
                    kind: kind.to_owned(),
                    time: e.time,
                    value: e.value,
                    average: e.average,
                    dedupe: format!("{}:{kind}:{}", w.rule.id, e.time),
                    message_id: message_id.clone(),
                };
                data.push(alert_data(&alert, w));
                decision.alerts.push(alert);
            }
            let user_id = members[0].0.rule.user_id.clone();
            let Some(body) = AlertBody::new(kind, rfc3339(now), data) else {
                continue;
            };
            decision.messages.push(Message {
                id: message_id,
                user_id,
                channel_id,
                body: serde_json::to_string(&body).unwrap_or_default(),
                created: now,
                status: "pending".to_owned(),
                attempts: 0,
                next_attempt: Some(now),
            });
        }
        decision
    }
}

/// An alert as its body carries it.
pub fn alert_data(alert: &Alert, w: &Watched) -> AlertData {
    AlertData {
        alert_id: alert.id.clone(),
        rule_id: alert.rule_id.clone(),
        metric: alert.metric.clone(),
        condition: w.checked.kind.as_str().to_owned(),
        value: alert.value,
        average: alert.average,
        factor: w.checked.level,
        window: w.window.clone(),
        time: rfc3339(alert.time),
    }
}

/// `prefix` and 16 random hex digits.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::random::<u64>())
}

use topcoins_schemas::alert::rfc3339_ms as rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn rule(id: &str, metric: &str, condition: &str) -> (Rule, Channel) {
        (
            Rule {
                id: id.into(),
                user_id: "usr_a".into(),
                metric: metric.into(),
                condition: condition.into(),
                channel_id: "chn_a".into(),
                created: 0,
            },
            Channel {
                id: "chn_a".into(),
                user_id: "usr_a".into(),
                kind: "webhook".into(),
                target: "http://x/".into(),
                secret: "whsec_AAAA".into(),
                previous_secret: None,
                previous_until: None,
                disabled: None,
                created: 0,
            },
        )
    }

    fn engine(rules: Vec<(Rule, Channel)>) -> Engine {
        let mut e = Engine::default();
        e.set_rules(rules, vec![]);
        e
    }

    const M: &str = "kraken:btc-usd:volume";
    const SPIKE: &str = r#"{"type":"above_average","factor":3,"window":"1h"}"#;

    /// A steady metric sampled every minute for an hour, then the rest of `values`.
    fn run(e: &mut Engine, from: i64, values: &[f64]) -> Vec<Event> {
        let mut out = Vec::new();
        for (i, v) in values.iter().enumerate() {
            e.observe(M, from + i as i64 * MIN, *v, &mut out);
        }
        out
    }

    #[test]
    fn a_spike_fires_once_per_window_with_its_value_and_average() {
        let mut e = engine(vec![rule("rul_1", M, SPIKE)]);
        assert!(run(&mut e, 0, &[100.0; 61]).is_empty());
        // 5× the steady value: one alert, with the value and the window's average.
        let fired = run(&mut e, 61 * MIN, &[500.0]);
        assert_eq!(fired.len(), 1);
        assert_eq!(
            (fired[0].kind, fired[0].value, fired[0].average),
            ("fired", 500.0, Some(100.0))
        );
        // Back to normal, then a second spike in the same window: nothing.
        let again = run(&mut e, 62 * MIN, &[100.0, 100.0, 600.0, 100.0]);
        assert!(again.is_empty(), "{again:?}");
        // A window after the first, a spike fires again.
        let later: Vec<f64> = std::iter::repeat_n(100.0, 60).chain([700.0]).collect();
        let fired = run(&mut e, 66 * MIN, &later);
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].value, 700.0);
    }

    #[test]
    fn nothing_fires_before_the_window_has_ninety_percent_of_its_samples() {
        let mut e = engine(vec![rule("rul_1", M, SPIKE)]);
        // 50 minutes of samples (83 %) and a spike: not evaluated.
        let mut values = vec![100.0; 50];
        values.push(1000.0);
        assert!(run(&mut e, 0, &values).is_empty());
        // A gap: samples a minute apart, missing 10 of the last hour.
        let mut e = engine(vec![rule("rul_1", M, SPIKE)]);
        let mut out = Vec::new();
        for i in (0..61).filter(|i| !(20..30).contains(i)) {
            e.observe(M, i * MIN, 100.0, &mut out);
        }
        e.observe(M, 61 * MIN, 1000.0, &mut out);
        assert!(out.is_empty());
        // Seeded from the database: evaluated from the first live sample.
        let mut e = engine(vec![rule("rul_1", M, SPIKE)]);
        e.seed(M, (0..60).map(|i| (i * MIN, 100.0)));
        assert_eq!(run(&mut e, 60 * MIN, &[400.0]).len(), 1);
    }

    #[test]
    fn pending_period_resolution_and_thresholds() {
        let cond = r#"{"type":"price_above","threshold":10,"for":"2m","notify_resolved":true}"#;
        let mut e = engine(vec![rule("rul_1", M, cond)]);
        // Holds at 0 and 1 min: pending; at 2 min it has held 2 min: fires.
        let out = run(&mut e, 0, &[11.0, 12.0, 13.0, 14.0]);
        assert_eq!(
            out.iter().map(|e| (e.kind, e.time)).collect::<Vec<_>>(),
            [("fired", 2 * MIN)]
        );
        let out = run(&mut e, 4 * MIN, &[9.0, 8.0]);
        assert_eq!(out.iter().map(|e| e.kind).collect::<Vec<_>>(), ["resolved"]);
        // Cleared in its pending period: no alert.
        let mut e = engine(vec![rule("rul_1", M, cond)]);
        assert!(run(&mut e, 0, &[11.0, 9.0, 11.0, 9.0]).is_empty());
        let below = r#"{"type":"below_average","factor":2,"window":"10m"}"#;
        let mut e = engine(vec![rule("rul_2", M, below)]);
        let mut values = vec![100.0; 11];
        values.push(49.0);
        let out = run(&mut e, 0, &values);
        assert_eq!(out.len(), 1);
        let change = r#"{"type":"change_pct","percent":10,"window":"10m"}"#;
        let mut e = engine(vec![rule("rul_3", M, change)]);
        let values: Vec<f64> = (0..11)
            .map(|i| 100.0 + i as f64 * 0.5)
            .chain([112.0])
            .collect();
        let out = run(&mut e, 0, &values);
        assert_eq!(out.len(), 1);
        // From the oldest sample in the window (at 2 min: 101).
        assert_eq!(out[0].average, Some(101.0));
    }

    #[test]
    fn alerts_of_one_channel_in_one_evaluation_are_one_message() {
        let rules: Vec<_> = (0..40)
            .map(|i| {
                rule(
                    &format!("rul_{i:02}"),
                    &format!("kraken:p{i}-usd:price"),
                    r#"{"type":"price_above","threshold":1}"#,
                )
            })
            .collect();
        let mut e = engine(rules);
        let mut out = Vec::new();
        for i in 0..40 {
            e.observe(&format!("kraken:p{i}-usd:price"), 1000, 2.0, &mut out);
        }
        assert_eq!(out.len(), 40);
        let states = e.take_dirty();
        assert_eq!(states.len(), 40);
        let d = e.decide(&out, states, 1000);
        assert_eq!((d.alerts.len(), d.messages.len()), (40, 1));
        let body: AlertBody = serde_json::from_str(&d.messages[0].body).unwrap();
        assert_eq!(body.all().len(), 40);
        assert!(d.alerts.iter().all(|a| a.message_id == d.messages[0].id));
    }

    #[test]
    fn a_sample_seen_twice_is_evaluated_once() {
        let mut e = engine(vec![rule(
            "rul_1",
            M,
            r#"{"type":"price_above","threshold":1,"window":"1m"}"#,
        )]);
        let mut out = Vec::new();
        e.observe(M, 1000, 2.0, &mut out);
        e.observe(M, 1000, 2.0, &mut out);
        assert_eq!(out.len(), 1);
    }
}
