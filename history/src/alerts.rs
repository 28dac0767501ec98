//! Alert rules, their channels and state, what fired, and the outbox of deliveries
//! (migration 0006). One trait, [`AlertStore`], implemented by both backends and held to the
//! same behavioural suite.
//!
//! **Never lost:** the alerts process decides, then [`AlertStore::commit_alerts`] stores the
//! rules' new states, the alerts and the messages that carry them in one transaction, and
//! only then is anything delivered: a message is in the outbox (`pending`) until an attempt
//! succeeds, runs out of retries (`failed`) or its channel is gone (`disabled`, a 410).
//! Every attempt's outcome is kept ([`AlertStore::record_attempt`]).
//!
//! **Never twice:** an alert's `dedupe` key is unique, so the same decision stored again
//! (the same sample evaluated twice) stores nothing, and a message none of whose alerts was
//! new is not stored either.

use std::future::Future;

use crate::Error;

/// Where a user's alerts go. Rules of one user with the same kind and target share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// `chn_…`.
    pub id: String,
    pub user_id: String,
    /// `webhook`, `slack`, `nats` or `email`.
    pub kind: String,
    /// The URL, the e-mail address, or empty (`nats`).
    pub target: String,
    /// `whsec_…`: signs webhooks.
    pub secret: String,
    /// The secret before the last rotation, which also signs until `previous_until`.
    pub previous_secret: Option<String>,
    pub previous_until: Option<i64>,
    /// When the endpoint answered 410 Gone; nothing is delivered to it since.
    pub disabled: Option<i64>,
    pub created: i64,
}

/// A rule: a condition on one metric, and the channel its alerts go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `rul_…`.
    pub id: String,
    pub user_id: String,
    /// `exchange:pair:metric` or `coin:SYMBOL:price`.
    pub metric: String,
    /// The condition as JSON (`topcoins_schemas::alert::Condition`).
    pub condition: String,
    pub channel_id: String,
    pub created: i64,
}

/// A rule's evaluation state.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertState {
    pub rule_id: String,
    pub firing: bool,
    /// Since when the condition has held, while it waits out the rule's pending period.
    pub pending_since: Option<i64>,
    pub last_fired: Option<i64>,
    /// The time of the last sample evaluated.
    pub last_sample: i64,
}

/// One alert: a rule fired, resolved, or a test.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// `alr_…`.
    pub id: String,
    pub user_id: String,
    pub rule_id: String,
    pub metric: String,
    /// `fired`, `resolved` or `test`.
    pub kind: String,
    pub time: i64,
    pub value: f64,
    pub average: Option<f64>,
    /// Unique: the same decision is stored once.
    pub dedupe: String,
    pub message_id: String,
}

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `msg_…`: the `webhook-id` of every attempt.
    pub id: String,
    pub user_id: String,
    pub channel_id: String,
    /// What every attempt sends.
    pub body: String,
    pub created: i64,
    /// `pending`, `delivered`, `failed` or `disabled`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt: Option<i64>,
}

/// One delivery attempt's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub message_id: String,
    /// 1 for the first.
    pub attempt: i32,
    pub time: i64,
    /// The HTTP status, for the channels that have one.
    pub status_code: Option<i32>,
    /// `delivered`, or what went wrong.
    pub outcome: String,
}

/// What an attempt leaves the message as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Delivered,
    /// Tried again at this time (Unix ms).
    Retry(i64),
    /// Out of retries.
    Failed,
    /// The endpoint is gone (410): the channel is disabled, and this message and every other
    /// pending one of the channel with it.
    Disabled,
}

impl Next {
    pub(crate) fn status(self) -> &'static str {
        match self {
            Next::Delivered => "delivered",
            Next::Retry(_) => "pending",
            Next::Failed => "failed",
            Next::Disabled => "disabled",
        }
    }

    pub(crate) fn at(self) -> Option<i64> {
        match self {
            Next::Retry(at) => Some(at),
            _ => None,
        }
    }
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    Rotated(Channel),
    NoRule,
    /// An earlier rotation's grace lasts until then.
    InGrace(i64),
}

/// One evaluation's decisions, committed together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub states: Vec<AlertState>,
    pub alerts: Vec<Alert>,
    pub messages: Vec<Message>,
}

/// A page of a user's alerts, newest first, with what became of their messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertPage {
    pub alerts: Vec<Alert>,
    /// The messages the alerts went out in.
    pub messages: Vec<Message>,
    /// Every attempt of those messages, by message and attempt.
    pub attempts: Vec<Attempt>,
    /// `(time, id)` of the last alert, when there are more.
    pub next: Option<(i64, String)>,
}

/// Alert rules, channels, state and the outbox.
pub trait AlertStore: Send + Sync {
    /// Stores `rule` with `channel`, or with the user's channel of the same kind and target if
    /// there is one (enabled again if it was disabled); returns both as stored.
    fn create_rule(
        &self,
        rule: Rule,
        channel: Channel,
    ) -> impl Future<Output = Result<(Rule, Channel), Error>> + Send;

    /// A user's rules by id, after `after`, at most `limit`.
    fn rules(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(Rule, Channel)>, Error>> + Send;

    /// One of a user's rules.
    fn rule(
        &self,
        user_id: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<(Rule, Channel)>, Error>> + Send;

    /// Deletes one of a user's rules and its state; `false` if there is no such rule.
    fn delete_rule(
        &self,
        user_id: &str,
        id: &str,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Gives the channel of a user's rule `rule_id` a new `secret`; the old one keeps signing
    /// until `previous_until`. Refused while an earlier rotation's grace lasts at `now`.
    fn rotate_secret(
        &self,
        user_id: &str,
        rule_id: &str,
        secret: String,
        previous_until: i64,
        now: i64,
    ) -> impl Future<Output = Result<Rotation, Error>> + Send;

    /// Every rule with its channel (what the alerts process evaluates).
    fn all_rules(&self) -> impl Future<Output = Result<Vec<(Rule, Channel)>, Error>> + Send;

    /// Every rule's state.
    fn alert_states(&self) -> impl Future<Output = Result<Vec<AlertState>, Error>> + Send;

    /// Stores one evaluation's decisions in one transaction (see the module); returns the
    /// messages stored.
    fn commit_alerts(
        &self,
        decision: Decision,
    ) -> impl Future<Output = Result<Vec<String>, Error>> + Send;

    /// Pending messages due by `now`, soonest first, at most `limit`, with their channels.
    fn due_messages(
        &self,
        now: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(Message, Channel)>, Error>> + Send;

    /// Takes `message_id` (pending after `attempts` attempts, due at `now`) for one attempt,
    /// moving its next attempt to `until`; `false` if it is no longer so (another attempt
    /// took it).
    fn claim(
        &self,
        message_id: &str,
        attempts: i32,
        now: i64,
        until: i64,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Pending messages, and when the soonest is due.
    fn pending(&self) -> impl Future<Output = Result<(u64, Option<i64>), Error>> + Send;

    /// Stores an attempt's outcome and what it leaves the message (and, for
    /// [`Next::Disabled`], the channel) as.
    fn record_attempt(
        &self,
        attempt: Attempt,
        channel_id: &str,
        next: Next,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// A user's alerts, newest first, before `before` (`(time, id)`), at most `limit`.
    fn alerts(
        &self,
        user_id: &str,
        before: Option<(i64, String)>,
        limit: usize,
    ) -> impl Future<Output = Result<AlertPage, Error>> + Send;
}

/// The statements both backends share (placeholders as in [`crate::accounts`]).
pub(crate) mod sql {
    pub const SELECT_CHANNEL_BY_TARGET: &str = "SELECT id, user_id, kind, target, secret,
         previous_secret, previous_until_ms, disabled_ms, created_ms
         FROM alert_channels WHERE user_id = $1 AND kind = $2 AND target = $3";
    pub const SELECT_CHANNEL: &str = "SELECT id, user_id, kind, target, secret,
         previous_secret, previous_until_ms, disabled_ms, created_ms
         FROM alert_channels WHERE id = $1";
    pub const INSERT_CHANNEL: &str = "INSERT INTO alert_channels
         (id, user_id, kind, target, secret, created_ms) VALUES ($1, $2, $3, $4, $5, $6)";
    pub const ENABLE_CHANNEL: &str = "UPDATE alert_channels SET disabled_ms = NULL WHERE id = $1";
    pub const INSERT_RULE: &str = "INSERT INTO alert_rules
         (id, user_id, metric, condition, channel_id, created_ms) VALUES ($1, $2, $3, $4, $5, $6)";
    /// A rule and its channel: 6 rule columns, then 9 channel columns.
    pub const RULE_COLUMNS: &str = "SELECT r.id, r.user_id, r.metric, r.condition, r.channel_id,
         r.created_ms, c.id, c.user_id, c.kind, c.target, c.secret, c.previous_secret,
         c.previous_until_ms, c.disabled_ms, c.created_ms
         FROM alert_rules r JOIN alert_channels c ON c.id = r.channel_id";
    pub const RULES_OF_USER: &str = " WHERE r.user_id = $1 AND r.id > $2 ORDER BY r.id LIMIT $3";
    pub const RULE_OF_USER: &str = " WHERE r.user_id = $1 AND r.id = $2";
    pub const ALL_RULES: &str = " ORDER BY r.id";
    pub const DELETE_RULE: &str = "DELETE FROM alert_rules WHERE user_id = $1 AND id = $2";
    pub const DELETE_STATE: &str = "DELETE FROM alert_states WHERE rule_id = $1";
    /// Not while an earlier rotation's grace lasts (the secret before it would stop signing
    /// at once): `$4` is now.
    pub const ROTATE_SECRET: &str = "UPDATE alert_channels SET previous_secret = secret,
         previous_until_ms = $1, secret = $2
         WHERE id = $3 AND (previous_until_ms IS NULL OR previous_until_ms <= $4)";
    pub const SELECT_STATES: &str =
        "SELECT rule_id, firing, pending_since_ms, last_fired_ms, last_sample_ms FROM alert_states";
    pub const UPSERT_STATE: &str = "INSERT INTO alert_states
         (rule_id, firing, pending_since_ms, last_fired_ms, last_sample_ms)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (rule_id) DO UPDATE SET firing = excluded.firing,
         pending_since_ms = excluded.pending_since_ms, last_fired_ms = excluded.last_fired_ms,
         last_sample_ms = excluded.last_sample_ms";
    pub const INSERT_ALERT: &str = "INSERT INTO alerts
         (id, user_id, rule_id, metric, kind, time_ms, value, average, dedupe, message_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (dedupe) DO NOTHING";
    pub const INSERT_MESSAGE: &str = "INSERT INTO alert_messages
         (id, user_id, channel_id, body, created_ms, status, attempts, next_attempt_ms)
         VALUES ($1, $2, $3, $4, $5,
         (SELECT CASE WHEN disabled_ms IS NULL THEN 'pending' ELSE 'disabled' END
          FROM alert_channels WHERE id = $3), 0, $6)";
    /// A message and its channel: 8 message columns, then 9 channel columns.
    pub const DUE_MESSAGES: &str = "SELECT m.id, m.user_id, m.channel_id, m.body, m.created_ms,
         m.status, m.attempts, m.next_attempt_ms, c.id, c.user_id, c.kind, c.target, c.secret,
         c.previous_secret, c.previous_until_ms, c.disabled_ms, c.created_ms
         FROM alert_messages m JOIN alert_channels c ON c.id = m.channel_id
         WHERE m.status = 'pending' AND m.next_attempt_ms <= $1 AND c.disabled_ms IS NULL
         ORDER BY m.next_attempt_ms LIMIT $2";
    /// Takes a due message for one attempt: its next attempt moved to `$1` (when a process
    /// that died during the attempt lets it be tried again), only if it is still pending
    /// after `$3` attempts and due at `$4` (no other attempt took it meanwhile).
    pub const CLAIM_MESSAGE: &str = "UPDATE alert_messages SET next_attempt_ms = $1
         WHERE id = $2 AND status = 'pending' AND attempts = $3 AND next_attempt_ms <= $4";
    pub const PENDING: &str = "SELECT COUNT(*), MIN(next_attempt_ms) FROM alert_messages
         WHERE status = 'pending'";
    pub const INSERT_ATTEMPT: &str = "INSERT INTO alert_attempts
         (message_id, attempt, time_ms, status_code, outcome) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT DO NOTHING";
    /// Only the attempt that claimed it moves it on (`$5`: the attempts before this one), and
    /// only while pending (a 410 of another message may have disabled it meanwhile).
    pub const UPDATE_MESSAGE: &str = "UPDATE alert_messages
         SET status = $1, attempts = $2, next_attempt_ms = $3
         WHERE id = $4 AND status = 'pending' AND attempts = $5";
    pub const DISABLE_CHANNEL: &str =
        "UPDATE alert_channels SET disabled_ms = $1 WHERE id = $2 AND disabled_ms IS NULL";
    pub const DISABLE_PENDING: &str = "UPDATE alert_messages SET status = 'disabled',
         next_attempt_ms = NULL WHERE channel_id = $1 AND status = 'pending'";
    pub const SELECT_ALERTS: &str = "SELECT id, user_id, rule_id, metric, kind, time_ms, value,
         average, dedupe, message_id FROM alerts
         WHERE user_id = $1 AND (time_ms < $2 OR (time_ms = $2 AND id < $3))
         ORDER BY time_ms DESC, id DESC LIMIT $4";
    pub const SELECT_MESSAGE: &str = "SELECT id, user_id, channel_id, body, created_ms, status,
         attempts, next_attempt_ms FROM alert_messages WHERE id = $1";
    pub const SELECT_ATTEMPTS: &str = "SELECT message_id, attempt, time_ms, status_code, outcome
         FROM alert_attempts WHERE message_id = $1 ORDER BY attempt";
}

/// Cuts a page of alerts read with one more than `limit`.
pub(crate) fn cut_alerts(
    mut alerts: Vec<Alert>,
    limit: usize,
) -> (Vec<Alert>, Option<(i64, String)>) {
    if alerts.len() > limit {
        alerts.truncate(limit);
        let next = alerts.last().map(|a| (a.time, a.id.clone()));
        (alerts, next)
    } else {
        (alerts, None)
    }
}

/// The `(time, id)` bound of a page: before the cursor, or from the newest.
pub(crate) fn before_bound(before: Option<(i64, String)>) -> (i64, String) {
    // Ids are ASCII ('alr_' + hex), so "~" sorts after every one of them.
    before.unwrap_or((i64::MAX, "~".to_owned()))
}

/// Distinct message ids of `alerts`, in order.
pub(crate) fn message_ids(alerts: &[Alert]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for a in alerts {
        if !ids.contains(&a.message_id) {
            ids.push(a.message_id.clone());
        }
    }
    ids
}
