-- Candles: one row per coin symbol, interval ("span") and bucket. Times are Unix ms (UTC).
-- Rows without a price (open IS NULL: only ranking samples so far) are never served.
CREATE TABLE candles (
    symbol      TEXT    NOT NULL,  -- upper case
    span        TEXT    NOT NULL,  -- '1m', '5m', '15m', '1h', '4h', '1d'
    bucket_ms   INTEGER NOT NULL,  -- the bucket's start, aligned to span
    source      INTEGER NOT NULL,  -- 0 recorded, 1 cryptocompare (backfilled)
    open_ms     INTEGER,           -- time of the sample that opened the candle
    open        REAL,
    high        REAL,
    low         REAL,
    close_ms    INTEGER,           -- time of the sample that closed it
    close       REAL,
    market_cap  REAL,              -- at close
    rank_ms     INTEGER,           -- time of the latest ranking sample
    rank        INTEGER,           -- at rank_ms
    volume_24h  REAL,              -- at rank_ms
    volume_from REAL,              -- backfilled rows: the provider's volumes
    volume_to   REAL,
    PRIMARY KEY (symbol, span, bucket_ms)
) STRICT, WITHOUT ROWID;
