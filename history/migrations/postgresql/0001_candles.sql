-- Candles: one row per coin symbol, interval ("span") and bucket. Times are Unix ms (UTC).
-- Rows without a price (open IS NULL: only ranking samples so far) are never served.
CREATE TABLE candles (
    symbol      TEXT             NOT NULL,  -- upper case
    span        TEXT             NOT NULL,  -- '1m', '5m', '15m', '1h', '4h', '1d'
    bucket_ms   BIGINT           NOT NULL,  -- the bucket's start, aligned to span
    source      SMALLINT         NOT NULL,  -- 0 recorded, 1 cryptocompare (backfilled)
    open_ms     BIGINT,                     -- time of the sample that opened the candle
    open        DOUBLE PRECISION,
    high        DOUBLE PRECISION,
    low         DOUBLE PRECISION,
    close_ms    BIGINT,                     -- time of the sample that closed it
    close       DOUBLE PRECISION,
    market_cap  DOUBLE PRECISION,           -- at close
    rank_ms     BIGINT,                     -- time of the latest ranking sample
    rank        INTEGER,                    -- at rank_ms
    volume_24h  DOUBLE PRECISION,           -- at rank_ms
    volume_from DOUBLE PRECISION,           -- backfilled rows: the provider's volumes
    volume_to   DOUBLE PRECISION,
    PRIMARY KEY (symbol, span, bucket_ms)
-- Room on each page for the new versions of the rows of open buckets, which every snapshot
-- updates: an update that fits on its page is a heap-only tuple (no index entry written).
) WITH (fillfactor = 50);
