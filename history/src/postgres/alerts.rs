//! [`AlertStore`] on PostgreSQL: each write one transaction.

use tokio_postgres::Row;

use super::PostgresStore;
use crate::Error;
use crate::alerts::sql::*;
use crate::alerts::{
    Alert, AlertPage, AlertState, AlertStore, Attempt, Channel, Decision, Message, Next, Rotation,
    Rule, before_bound, cut_alerts, message_ids,
};

fn channel_at(r: &Row, at: usize) -> Result<Channel, Error> {
    Ok(Channel {
        id: r.try_get(at)?,
        user_id: r.try_get(at + 1)?,
        kind: r.try_get(at + 2)?,
        target: r.try_get(at + 3)?,
        secret: r.try_get(at + 4)?,
        previous_secret: r.try_get(at + 5)?,
        previous_until: r.try_get(at + 6)?,
        disabled: r.try_get(at + 7)?,
        created: r.try_get(at + 8)?,
    })
}

fn rule_and_channel(r: &Row) -> Result<(Rule, Channel), Error> {
    Ok((
        Rule {
            id: r.try_get(0)?,
            user_id: r.try_get(1)?,
            metric: r.try_get(2)?,
            condition: r.try_get(3)?,
            channel_id: r.try_get(4)?,
            created: r.try_get(5)?,
        },
        channel_at(r, 6)?,
    ))
}

fn message_at(r: &Row) -> Result<Message, Error> {
    Ok(Message {
        id: r.try_get(0)?,
        user_id: r.try_get(1)?,
        channel_id: r.try_get(2)?,
        body: r.try_get(3)?,
        created: r.try_get(4)?,
        status: r.try_get(5)?,
        attempts: r.try_get(6)?,
        next_attempt: r.try_get(7)?,
    })
}

impl AlertStore for PostgresStore {
    async fn create_rule(&self, rule: Rule, channel: Channel) -> Result<(Rule, Channel), Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let existing = tx
            .query_opt(
                SELECT_CHANNEL_BY_TARGET,
                &[&channel.user_id, &channel.kind, &channel.target],
            )
            .await?;
        let channel = match existing {
            Some(row) => {
                let mut c = channel_at(&row, 0)?;
                if c.disabled.is_some() {
                    tx.execute(ENABLE_CHANNEL, &[&c.id]).await?;
                    c.disabled = None;
                }
                c
            }
            None => {
                tx.execute(
                    INSERT_CHANNEL,
                    &[
                        &channel.id,
                        &channel.user_id,
                        &channel.kind,
                        &channel.target,
                        &channel.secret,
                        &channel.created,
                    ],
                )
                .await?;
                channel
            }
        };
        let rule = Rule {
            channel_id: channel.id.clone(),
            ..rule
        };
        tx.execute(
            INSERT_RULE,
            &[
                &rule.id,
                &rule.user_id,
                &rule.metric,
                &rule.condition,
                &rule.channel_id,
                &rule.created,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok((rule, channel))
    }

    async fn rules(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Rule, Channel)>, Error> {
        let client = self.client().await?;
        let sql = format!("{RULE_COLUMNS}{RULES_OF_USER}");
        let rows = client
            .query(&sql, &[&user_id, &after.unwrap_or(""), &(limit as i64)])
            .await?;
        rows.iter().map(rule_and_channel).collect()
    }

    async fn rule(&self, user_id: &str, id: &str) -> Result<Option<(Rule, Channel)>, Error> {
        let client = self.client().await?;
        let sql = format!("{RULE_COLUMNS}{RULE_OF_USER}");
        match client.query_opt(&sql, &[&user_id, &id]).await? {
            Some(row) => Ok(Some(rule_and_channel(&row)?)),
            None => Ok(None),
        }
    }

    async fn delete_rule(&self, user_id: &str, id: &str) -> Result<bool, Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx.execute(DELETE_RULE, &[&user_id, &id]).await?;
        if n > 0 {
            tx.execute(DELETE_STATE, &[&id]).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn rotate_secret(
        &self,
        user_id: &str,
        rule_id: &str,
        secret: String,
        previous_until: i64,
        now: i64,
    ) -> Result<Rotation, Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let sql = format!("{RULE_COLUMNS}{RULE_OF_USER} FOR UPDATE OF c");
        let Some(row) = tx.query_opt(&sql, &[&user_id, &rule_id]).await? else {
            return Ok(Rotation::NoRule);
        };
        let (_, channel) = rule_and_channel(&row)?;
        let n = tx
            .execute(
                ROTATE_SECRET,
                &[&previous_until, &secret, &channel.id, &now],
            )
            .await?;
        if n == 0 {
            return Ok(Rotation::InGrace(channel.previous_until.unwrap_or(now)));
        }
        let row = tx.query_one(SELECT_CHANNEL, &[&channel.id]).await?;
        let channel = channel_at(&row, 0)?;
        tx.commit().await?;
        Ok(Rotation::Rotated(channel))
    }

    async fn all_rules(&self) -> Result<Vec<(Rule, Channel)>, Error> {
        let client = self.client().await?;
        let sql = format!("{RULE_COLUMNS}{ALL_RULES}");
        let rows = client.query(&sql, &[]).await?;
        rows.iter().map(rule_and_channel).collect()
    }

    async fn alert_states(&self) -> Result<Vec<AlertState>, Error> {
        let client = self.client().await?;
        let rows = client.query(SELECT_STATES, &[]).await?;
        rows.iter()
            .map(|r| {
                Ok(AlertState {
                    rule_id: r.try_get(0)?,
                    firing: r.try_get(1)?,
                    pending_since: r.try_get(2)?,
                    last_fired: r.try_get(3)?,
                    last_sample: r.try_get(4)?,
                })
            })
            .collect()
    }

    async fn commit_alerts(&self, decision: Decision) -> Result<Vec<String>, Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let state = tx.prepare_cached(UPSERT_STATE).await?;
        for s in &decision.states {
            tx.execute(
                &state,
                &[
                    &s.rule_id,
                    &s.firing,
                    &s.pending_since,
                    &s.last_fired,
                    &s.last_sample,
                ],
            )
            .await?;
        }
        let alert = tx.prepare_cached(INSERT_ALERT).await?;
        let mut fresh: Vec<&str> = Vec::new();
        for a in &decision.alerts {
            let n = tx
                .execute(
                    &alert,
                    &[
                        &a.id,
                        &a.user_id,
                        &a.rule_id,
                        &a.metric,
                        &a.kind,
                        &a.time,
                        &a.value,
                        &a.average,
                        &a.dedupe,
                        &a.message_id,
                    ],
                )
                .await?;
            if n > 0 {
                fresh.push(&a.message_id);
            }
        }
        let message = tx.prepare_cached(INSERT_MESSAGE).await?;
        let mut stored = Vec::new();
        for m in &decision.messages {
            if !fresh.contains(&m.id.as_str()) {
                continue;
            }
            tx.execute(
                &message,
                &[
                    &m.id,
                    &m.user_id,
                    &m.channel_id,
                    &m.body,
                    &m.created,
                    &m.next_attempt.unwrap_or(m.created),
                ],
            )
            .await?;
            stored.push(m.id.clone());
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn due_messages(&self, now: i64, limit: usize) -> Result<Vec<(Message, Channel)>, Error> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(DUE_MESSAGES).await?;
        let rows = client.query(&stmt, &[&now, &(limit as i64)]).await?;
        rows.iter()
            .map(|r| Ok((message_at(r)?, channel_at(r, 8)?)))
            .collect()
    }

    async fn claim(
        &self,
        message_id: &str,
        attempts: i32,
        now: i64,
        until: i64,
    ) -> Result<bool, Error> {
        let client = self.client().await?;
        Ok(client
            .execute(CLAIM_MESSAGE, &[&until, &message_id, &attempts, &now])
            .await?
            > 0)
    }

    async fn pending(&self) -> Result<(u64, Option<i64>), Error> {
        let client = self.client().await?;
        let row = client.query_one(PENDING, &[]).await?;
        let n: i64 = row.try_get(0)?;
        Ok((n.max(0) as u64, row.try_get(1)?))
    }

    async fn record_attempt(
        &self,
        attempt: Attempt,
        channel_id: &str,
        next: Next,
    ) -> Result<(), Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            INSERT_ATTEMPT,
            &[
                &attempt.message_id,
                &attempt.attempt,
                &attempt.time,
                &attempt.status_code,
                &attempt.outcome,
            ],
        )
        .await?;
        tx.execute(
            UPDATE_MESSAGE,
            &[
                &next.status(),
                &attempt.attempt,
                &next.at(),
                &attempt.message_id,
                &(attempt.attempt - 1),
            ],
        )
        .await?;
        if next == Next::Disabled {
            tx.execute(DISABLE_CHANNEL, &[&attempt.time, &channel_id])
                .await?;
            tx.execute(DISABLE_PENDING, &[&channel_id]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn alerts(
        &self,
        user_id: &str,
        before: Option<(i64, String)>,
        limit: usize,
    ) -> Result<AlertPage, Error> {
        let client = self.client().await?;
        let (time, id) = before_bound(before);
        let rows = client
            .query(SELECT_ALERTS, &[&user_id, &time, &id, &(limit as i64 + 1)])
            .await?;
        let alerts = rows
            .iter()
            .map(|r| {
                Ok(Alert {
                    id: r.try_get(0)?,
                    user_id: r.try_get(1)?,
                    rule_id: r.try_get(2)?,
                    metric: r.try_get(3)?,
                    kind: r.try_get(4)?,
                    time: r.try_get(5)?,
                    value: r.try_get(6)?,
                    average: r.try_get(7)?,
                    dedupe: r.try_get(8)?,
                    message_id: r.try_get(9)?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let (alerts, next) = cut_alerts(alerts, limit);
        let mut messages = Vec::new();
        let mut attempts = Vec::new();
        for id in message_ids(&alerts) {
            if let Some(r) = client.query_opt(SELECT_MESSAGE, &[&id]).await? {
                messages.push(message_at(&r)?);
            }
            for r in client.query(SELECT_ATTEMPTS, &[&id]).await? {
                attempts.push(Attempt {
                    message_id: r.try_get(0)?,
                    attempt: r.try_get(1)?,
                    time: r.try_get(2)?,
                    status_code: r.try_get(3)?,
                    outcome: r.try_get(4)?,
                });
            }
        }
        Ok(AlertPage {
            alerts,
            messages,
            attempts,
            next,
        })
    }
}
