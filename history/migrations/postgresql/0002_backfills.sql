-- What the backfill has fetched per coin and interval (see BackfillProgress): a restart reads
-- it instead of fetching every coin's history again.
CREATE TABLE backfills (
    symbol     TEXT    NOT NULL,  -- upper case
    span       TEXT    NOT NULL,  -- '1h', '1d'
    oldest_ms  BIGINT  NOT NULL,  -- oldest bucket asked about
    newest_ms  BIGINT  NOT NULL,  -- newest bucket asked about
    complete   BOOLEAN NOT NULL,  -- nothing older is worth asking for
    fetched_ms BIGINT  NOT NULL,  -- when the newest end was last fetched
    PRIMARY KEY (symbol, span)
);
