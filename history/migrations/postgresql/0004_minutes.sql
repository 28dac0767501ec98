-- The minutes the roll-up has not reached (bucket_ms at or after rollup.through_ms), in a
-- table of their own whose primary key leads with the time: a snapshot that opens a new
-- minute adds its index entries at the right edge of this table's index instead of one leaf
-- page per coin of `candles`' (symbol, span, bucket_ms) index. The roll-up moves them into
-- `candles` with the coarser rows it writes. Same columns as `candles`, so both are read
-- alike; `span` is always '1m'. `candles` keeps the minutes before the mark.
CREATE TABLE minutes (
    symbol      TEXT             NOT NULL,
    span        TEXT             NOT NULL CHECK (span = '1m'),
    bucket_ms   BIGINT           NOT NULL,
    source      SMALLINT         NOT NULL,
    open_ms     BIGINT,
    open        DOUBLE PRECISION,
    high        DOUBLE PRECISION,
    low         DOUBLE PRECISION,
    close_ms    BIGINT,
    close       DOUBLE PRECISION,
    market_cap  DOUBLE PRECISION,
    rank_ms     BIGINT,
    rank        INTEGER,
    volume_24h  DOUBLE PRECISION,
    volume_from DOUBLE PRECISION,
    volume_to   DOUBLE PRECISION,
    PRIMARY KEY (bucket_ms, symbol, span)
-- Room for the new versions of the open minute's rows (heap-only updates), as in `candles`.
) WITH (fillfactor = 50);
INSERT INTO minutes
    SELECT * FROM candles
    WHERE span = '1m' AND bucket_ms >= (SELECT through_ms FROM rollup WHERE id = 1);
DELETE FROM candles
    WHERE span = '1m' AND bucket_ms >= (SELECT through_ms FROM rollup WHERE id = 1);
