-- Exchange metrics' records and the accounts that watch them (issue 12).

-- One value per metric per poll, unchanged polls included. `metric` is the metric's id,
-- `exchange:pair:metric` (e.g. 'kraken:btc-usd:volume'); `time_ms` the poll's time.
CREATE TABLE metric_records (
    metric  TEXT    NOT NULL,
    time_ms INTEGER NOT NULL,
    value   REAL    NOT NULL,
    PRIMARY KEY (metric, time_ms)
) STRICT, WITHOUT ROWID;

CREATE TABLE users (
    id         TEXT    NOT NULL PRIMARY KEY,  -- 'usr_' + 16 hex digits
    name       TEXT    NOT NULL,
    created_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- API keys, stored only as the SHA-256 of the key. `prefix` is the key's first characters,
-- shown in listings so that a user can tell their keys apart.
CREATE TABLE api_keys (
    id           TEXT    NOT NULL PRIMARY KEY,  -- 'key_' + 16 hex digits
    user_id      TEXT    NOT NULL REFERENCES users (id),
    prefix       TEXT    NOT NULL,
    hash         BLOB    NOT NULL UNIQUE,
    created_ms   INTEGER NOT NULL,
    last_used_ms INTEGER,
    revoked_ms   INTEGER
) STRICT, WITHOUT ROWID;
CREATE INDEX api_keys_by_user ON api_keys (user_id, id);

-- Who watches which metric. The tracked set is TOPCOINS_PAIRS plus every (exchange, pair) here.
CREATE TABLE watchlist (
    user_id    TEXT    NOT NULL REFERENCES users (id),
    metric     TEXT    NOT NULL,
    exchange   TEXT    NOT NULL,
    pair       TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, metric)
) STRICT, WITHOUT ROWID;
CREATE INDEX watchlist_by_pair ON watchlist (exchange, pair);
