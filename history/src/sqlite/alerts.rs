//! [`AlertStore`] on SQLite: writes on the writer thread, each one transaction
//! (`BEGIN IMMEDIATE`); reads on the reader thread.

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::SqliteStore;
use crate::Error;
use crate::alerts::sql::*;
use crate::alerts::{
    Alert, AlertPage, AlertState, AlertStore, Attempt, Channel, Decision, Message, Next, Rotation,
    Rule, before_bound, cut_alerts, message_ids,
};

fn channel_at(r: &Row<'_>, at: usize) -> rusqlite::Result<Channel> {
    Ok(Channel {
        id: r.get(at)?,
        user_id: r.get(at + 1)?,
        kind: r.get(at + 2)?,
        target: r.get(at + 3)?,
        secret: r.get(at + 4)?,
        previous_secret: r.get(at + 5)?,
        previous_until: r.get(at + 6)?,
        disabled: r.get(at + 7)?,
        created: r.get(at + 8)?,
    })
}

fn rule_and_channel(r: &Row<'_>) -> rusqlite::Result<(Rule, Channel)> {
    Ok((
        Rule {
            id: r.get(0)?,
            user_id: r.get(1)?,
            metric: r.get(2)?,
            condition: r.get(3)?,
            channel_id: r.get(4)?,
            created: r.get(5)?,
        },
        channel_at(r, 6)?,
    ))
}

fn message_at(r: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: r.get(0)?,
        user_id: r.get(1)?,
        channel_id: r.get(2)?,
        body: r.get(3)?,
        created: r.get(4)?,
        status: r.get(5)?,
        attempts: r.get(6)?,
        next_attempt: r.get(7)?,
    })
}

fn rules_where(
    conn: &Connection,
    tail: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<(Rule, Channel)>, Error> {
    let sql = format!("{RULE_COLUMNS}{tail}");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params, rule_and_channel)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl AlertStore for SqliteStore {
    async fn create_rule(&self, rule: Rule, channel: Channel) -> Result<(Rule, Channel), Error> {
        self.writer
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let existing = tx
                    .prepare_cached(SELECT_CHANNEL_BY_TARGET)?
                    .query_row(
                        params![channel.user_id, channel.kind, channel.target],
                        |r| channel_at(r, 0),
                    )
                    .optional()?;
                let channel = match existing {
                    Some(mut c) => {
                        if c.disabled.is_some() {
                            tx.prepare_cached(ENABLE_CHANNEL)?.execute([&c.id])?;
                            c.disabled = None;
                        }
                        c
                    }
                    None => {
                        tx.prepare_cached(INSERT_CHANNEL)?.execute(params![
                            channel.id,
                            channel.user_id,
                            channel.kind,
                            channel.target,
                            channel.secret,
                            channel.created
                        ])?;
                        channel
                    }
                };
                let rule = Rule {
                    channel_id: channel.id.clone(),
                    ..rule
                };
                tx.prepare_cached(INSERT_RULE)?.execute(params![
                    rule.id,
                    rule.user_id,
                    rule.metric,
                    rule.condition,
                    rule.channel_id,
                    rule.created
                ])?;
                tx.commit()?;
                Ok((rule, channel))
            })
            .await
    }

    async fn rules(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Rule, Channel)>, Error> {
        let (user_id, after) = (user_id.to_owned(), after.unwrap_or("").to_owned());
        self.reader
            .call(move |conn| {
                rules_where(conn, RULES_OF_USER, params![user_id, after, limit as i64])
            })
            .await
    }

    async fn rule(&self, user_id: &str, id: &str) -> Result<Option<(Rule, Channel)>, Error> {
        let (user_id, id) = (user_id.to_owned(), id.to_owned());
        self.reader
            .call(move |conn| {
                Ok(rules_where(conn, RULE_OF_USER, params![user_id, id])?
                    .into_iter()
                    .next())
            })
            .await
    }

    async fn delete_rule(&self, user_id: &str, id: &str) -> Result<bool, Error> {
        let (user_id, id) = (user_id.to_owned(), id.to_owned());
        self.writer
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let n = tx
                    .prepare_cached(DELETE_RULE)?
                    .execute(params![user_id, id])?;
                if n > 0 {
                    tx.prepare_cached(DELETE_STATE)?.execute([&id])?;
                }
                tx.commit()?;
                Ok(n > 0)
            })
            .await
    }

    async fn rotate_secret(
        &self,
        user_id: &str,
        rule_id: &str,
        secret: String,
        previous_until: i64,
        now: i64,
    ) -> Result<Rotation, Error> {
        let (user_id, rule_id) = (user_id.to_owned(), rule_id.to_owned());
        self.writer
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let Some((_, channel)) = rules_where(&tx, RULE_OF_USER, params![user_id, rule_id])?
                    .into_iter()
                    .next()
                else {
                    return Ok(Rotation::NoRule);
                };
                let n = tx.prepare_cached(ROTATE_SECRET)?.execute(params![
                    previous_until,
                    secret,
                    channel.id,
                    now
                ])?;
                if n == 0 {
                    return Ok(Rotation::InGrace(channel.previous_until.unwrap_or(now)));
                }
                let channel = tx
                    .prepare_cached(SELECT_CHANNEL)?
                    .query_row([&channel.id], |r| channel_at(r, 0))?;
                tx.commit()?;
                Ok(Rotation::Rotated(channel))
            })
            .await
    }

    async fn all_rules(&self) -> Result<Vec<(Rule, Channel)>, Error> {
        self.reader
            .call(move |conn| rules_where(conn, ALL_RULES, []))
            .await
    }

    async fn alert_states(&self) -> Result<Vec<AlertState>, Error> {
        self.reader
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(SELECT_STATES)?;
                let rows = stmt.query_map([], |r| {
                    Ok(AlertState {
                        rule_id: r.get(0)?,
                        firing: r.get(1)?,
                        pending_since: r.get(2)?,
                        last_fired: r.get(3)?,
                        last_sample: r.get(4)?,
                    })
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn commit_alerts(&self, decision: Decision) -> Result<Vec<String>, Error> {
        self.writer
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut stored = Vec::new();
                {
                    let mut state = tx.prepare_cached(UPSERT_STATE)?;
                    for s in &decision.states {
                        state.execute(params![
                            s.rule_id,
                            s.firing,
                            s.pending_since,
                            s.last_fired,
                            s.last_sample
                        ])?;
                    }
                    let mut alert = tx.prepare_cached(INSERT_ALERT)?;
                    let mut fresh: Vec<&str> = Vec::new();
                    for a in &decision.alerts {
                        let n = alert.execute(params![
                            a.id,
                            a.user_id,
                            a.rule_id,
                            a.metric,
                            a.kind,
                            a.time,
                            a.value,
                            a.average,
                            a.dedupe,
                            a.message_id
                        ])?;
                        if n > 0 {
                            fresh.push(&a.message_id);
                        }
                    }
                    let mut message = tx.prepare_cached(INSERT_MESSAGE)?;
                    for m in &decision.messages {
                        if !fresh.contains(&m.id.as_str()) {
                            continue;
                        }
                        message.execute(params![
                            m.id,
                            m.user_id,
                            m.channel_id,
                            m.body,
                            m.created,
                            m.next_attempt.unwrap_or(m.created)
                        ])?;
                        stored.push(m.id.clone());
                    }
                }
                tx.commit()?;
                Ok(stored)
            })
            .await
    }

    async fn due_messages(&self, now: i64, limit: usize) -> Result<Vec<(Message, Channel)>, Error> {
        self.reader
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(DUE_MESSAGES)?;
                let rows = stmt.query_map(params![now, limit as i64], |r| {
                    Ok((message_at(r)?, channel_at(r, 8)?))
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn claim(
        &self,
        message_id: &str,
        attempts: i32,
        now: i64,
        until: i64,
    ) -> Result<bool, Error> {
        let message_id = message_id.to_owned();
        self.writer
            .call(move |conn| {
                Ok(conn
                    .prepare_cached(CLAIM_MESSAGE)?
                    .execute(params![until, message_id, attempts, now])?
                    > 0)
            })
            .await
    }

    async fn pending(&self) -> Result<(u64, Option<i64>), Error> {
        self.reader
            .call(move |conn| {
                let (n, next): (i64, Option<i64>) = conn
                    .prepare_cached(PENDING)?
                    .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok((n.max(0) as u64, next))
            })
            .await
    }

    async fn record_attempt(
        &self,
        attempt: Attempt,
        channel_id: &str,
        next: Next,
    ) -> Result<(), Error> {
        let channel_id = channel_id.to_owned();
        self.writer
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.prepare_cached(INSERT_ATTEMPT)?.execute(params![
                    attempt.message_id,
                    attempt.attempt,
                    attempt.time,
                    attempt.status_code,
                    attempt.outcome
                ])?;
                tx.prepare_cached(UPDATE_MESSAGE)?.execute(params![
                    next.status(),
                    attempt.attempt,
                    next.at(),
                    attempt.message_id,
                    attempt.attempt - 1
                ])?;
                if next == Next::Disabled {
                    tx.prepare_cached(DISABLE_CHANNEL)?
                        .execute(params![attempt.time, channel_id])?;
                    tx.prepare_cached(DISABLE_PENDING)?.execute([&channel_id])?;
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn alerts(
        &self,
        user_id: &str,
        before: Option<(i64, String)>,
        limit: usize,
    ) -> Result<AlertPage, Error> {
        let user_id = user_id.to_owned();
        let (time, id) = before_bound(before);
        self.reader
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(SELECT_ALERTS)?;
                let rows = stmt.query_map(params![user_id, time, id, limit as i64 + 1], |r| {
                    Ok(Alert {
                        id: r.get(0)?,
                        user_id: r.get(1)?,
                        rule_id: r.get(2)?,
                        metric: r.get(3)?,
                        kind: r.get(4)?,
                        time: r.get(5)?,
                        value: r.get(6)?,
                        average: r.get(7)?,
                        dedupe: r.get(8)?,
                        message_id: r.get(9)?,
                    })
                })?;
                let (alerts, next) = cut_alerts(rows.collect::<Result<_, _>>()?, limit);
                let mut messages = Vec::new();
                let mut attempts = Vec::new();
                let mut message = conn.prepare_cached(SELECT_MESSAGE)?;
                let mut tries = conn.prepare_cached(SELECT_ATTEMPTS)?;
                for id in message_ids(&alerts) {
                    if let Some(m) = message.query_row([&id], message_at).optional()? {
                        messages.push(m);
                    }
                    let rows = tries.query_map([&id], |r| {
                        Ok(Attempt {
                            message_id: r.get(0)?,
                            attempt: r.get(1)?,
                            time: r.get(2)?,
                            status_code: r.get(3)?,
                            outcome: r.get(4)?,
                        })
                    })?;
                    for a in rows {
                        attempts.push(a?);
                    }
                }
                Ok(AlertPage {
                    alerts,
                    messages,
                    attempts,
                    next,
                })
            })
            .await
    }
}
