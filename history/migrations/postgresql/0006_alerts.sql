-- Alert rules, their channels and state, what fired, and the outbox of deliveries (issue 13).

-- Where a user's alerts go. One channel per (user, kind, target): every rule of a user with
-- the same webhook URL (or address) shares it, its secret, and its messages, so alerts of one
-- evaluation go out as one message. `secret` signs webhooks ('whsec_' + base64); while a
-- rotation's grace lasts (`previous_until_ms`) the previous secret signs too. A channel is
-- disabled when its endpoint answers 410 Gone.
CREATE TABLE alert_channels (
    id                TEXT    NOT NULL PRIMARY KEY,  -- 'chn_' + 16 hex digits
    user_id           TEXT    NOT NULL REFERENCES users (id),
    kind              TEXT    NOT NULL,              -- webhook, slack, nats, email
    target            TEXT    NOT NULL,              -- URL, e-mail address, '' for nats
    secret            TEXT    NOT NULL,
    previous_secret   TEXT,
    previous_until_ms BIGINT,
    disabled_ms       BIGINT,
    created_ms        BIGINT NOT NULL,
    UNIQUE (user_id, kind, target)
);

-- `condition` is the rule's condition as JSON (topcoins_schemas::alert::Condition).
CREATE TABLE alert_rules (
    id         TEXT    NOT NULL PRIMARY KEY,  -- 'rul_' + 16 hex digits
    user_id    TEXT    NOT NULL REFERENCES users (id),
    metric     TEXT    NOT NULL,
    condition  TEXT    NOT NULL,
    channel_id TEXT    NOT NULL REFERENCES alert_channels (id),
    created_ms BIGINT NOT NULL
);
CREATE INDEX alert_rules_by_user ON alert_rules (user_id, id);

-- Each rule's state, written with the alerts it decided: whether it is firing, since when
-- its condition holds (the pending period), when it last fired (one alert per window).
CREATE TABLE alert_states (
    rule_id          TEXT    NOT NULL PRIMARY KEY,
    firing           BOOLEAN NOT NULL,
    pending_since_ms BIGINT,
    last_fired_ms    BIGINT,
    last_sample_ms   BIGINT NOT NULL
);

-- What fired (or resolved, or was a test). `dedupe` is unique: the same decision taken twice
-- (a sample evaluated again) stores nothing the second time.
CREATE TABLE alerts (
    id         TEXT    NOT NULL PRIMARY KEY,  -- 'alr_' + 16 hex digits
    user_id    TEXT    NOT NULL,
    rule_id    TEXT    NOT NULL,
    metric     TEXT    NOT NULL,
    kind       TEXT    NOT NULL,              -- fired, resolved, test
    time_ms    BIGINT NOT NULL,
    value      DOUBLE PRECISION    NOT NULL,
    average    DOUBLE PRECISION,
    dedupe     TEXT    NOT NULL UNIQUE,
    message_id TEXT    NOT NULL
);
CREATE INDEX alerts_by_user ON alerts (user_id, time_ms, id);

-- The outbox: one message per channel per evaluation, committed with its alerts before any
-- delivery. `body` is what every attempt sends (its id is the webhook-id).
CREATE TABLE alert_messages (
    id              TEXT    NOT NULL PRIMARY KEY,  -- 'msg_' + 16 hex digits
    user_id         TEXT    NOT NULL,
    channel_id      TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    created_ms      BIGINT NOT NULL,
    status          TEXT    NOT NULL,              -- pending, delivered, failed, disabled
    attempts        INTEGER NOT NULL,
    next_attempt_ms BIGINT
);
CREATE INDEX alert_messages_due ON alert_messages (next_attempt_ms) WHERE status = 'pending';
CREATE INDEX alert_messages_by_channel ON alert_messages (channel_id) WHERE status = 'pending';

-- Every delivery attempt's outcome.
CREATE TABLE alert_attempts (
    message_id  TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    time_ms     BIGINT NOT NULL,
    status_code INTEGER,
    outcome     TEXT    NOT NULL,
    PRIMARY KEY (message_id, attempt)
);
