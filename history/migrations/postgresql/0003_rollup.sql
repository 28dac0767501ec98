-- The roll-up's mark (see src/rollup.rs): every sample of a minute before `through_ms` is in
-- the coarser intervals' rows too; from it on, only in the `1m` rows, which reads merge in.
-- A database written before this version has every sample in every interval: its mark is
-- the end of its newest minute.
CREATE TABLE rollup (
    id         SMALLINT PRIMARY KEY CHECK (id = 1),
    through_ms BIGINT   NOT NULL CHECK (through_ms >= 0)
);
INSERT INTO rollup (id, through_ms)
    SELECT 1, coalesce(max(bucket_ms) + 60000, 0) FROM candles WHERE span = '1m';
