-- What the processors took from the bus, per UTC minute, event source and
-- outcome (processed, dead_lettered), with the sum of the events'
-- processing lags: the pipeline-health dashboard's counts. Rows of one
-- minute from several workers or writes sum into one as parts merge, so
-- queries sum() them. Counted as the bus delivers (at least once): a
-- batch redelivered after a crash counts again where its facts do not, so
-- these are operating figures, not metrics.
CREATE TABLE IF NOT EXISTS pipeline_minutes (
    minute          DateTime('UTC'),
    source          String,
    outcome         String,
    events          UInt64,
    lag_seconds_sum Float64
) ENGINE = SummingMergeTree((events, lag_seconds_sum))
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, source, outcome);
