-- The minutes the roll-up has not reached (bucket_ms at or after rollup.through_ms), in a
-- table of their own clustered by time: a snapshot that opens a new minute appends its rows
-- at the end of this table (a few hundred pages for 10,000 coins) instead of dirtying one page
-- per coin in `candles`, whose rows are clustered by coin. The roll-up moves them into
-- `candles` with the coarser rows it writes. Same columns as `candles`, so both are read
-- alike; `span` is always '1m'. `candles` keeps the minutes before the mark.
CREATE TABLE minutes (
    symbol      TEXT    NOT NULL,
    span        TEXT    NOT NULL CHECK (span = '1m'),
    bucket_ms   INTEGER NOT NULL,
    source      INTEGER NOT NULL,
    open_ms     INTEGER,
    open        REAL,
    high        REAL,
    low         REAL,
    close_ms    INTEGER,
    close       REAL,
    market_cap  REAL,
    rank_ms     INTEGER,
    rank        INTEGER,
    volume_24h  REAL,
    volume_from REAL,
    volume_to   REAL,
    PRIMARY KEY (bucket_ms, symbol, span)
) STRICT, WITHOUT ROWID;
INSERT INTO minutes
    SELECT * FROM candles
    WHERE span = '1m' AND bucket_ms >= (SELECT through_ms FROM rollup WHERE id = 1);
DELETE FROM candles
    WHERE span = '1m' AND bucket_ms >= (SELECT through_ms FROM rollup WHERE id = 1);
