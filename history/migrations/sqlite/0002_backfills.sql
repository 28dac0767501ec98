-- What the backfill has fetched per coin and interval (see BackfillProgress): a restart reads
-- it instead of fetching every coin's history again.
CREATE TABLE backfills (
    symbol     TEXT    NOT NULL,  -- upper case
    span       TEXT    NOT NULL,  -- '1h', '1d'
    oldest_ms  INTEGER NOT NULL,  -- oldest bucket asked about
    newest_ms  INTEGER NOT NULL,  -- newest bucket asked about
    complete   INTEGER NOT NULL,  -- 1: nothing older is worth asking for
    fetched_ms INTEGER NOT NULL,  -- when the newest end was last fetched
    PRIMARY KEY (symbol, span)
) STRICT, WITHOUT ROWID;
