-- Exact per-repository, per-UTC-day rollups of the production deployments
-- and changes, kept by the processor beside the facts (one row per repo and
-- day, written whole at a higher version whenever a fact of that day
-- changes). Queries take the whole days of a window from here and only the
-- partial days at its edges from the facts, so they deduplicate a few rows
-- per repo and day instead of every fact. The lists are the exact values,
-- ascending, so every quantile is the one the facts give; the team is not
-- here but joined at query time from the teams table.
CREATE TABLE IF NOT EXISTS repo_days (
    repo              String,
    day               Date,
    deployments       UInt32,
    failed            UInt32,
    rework            UInt32,
    recovery_seconds  Array(Int64),
    changes           UInt32,
    lead_time_seconds Array(UInt64),
    version           UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (repo, day);

-- Installs with facts from before this migration: their rollups from the
-- latest live facts, at version 0 so that any row the processor writes wins.
INSERT INTO {db}.repo_days (repo, day, deployments, failed, rework, recovery_seconds, changes, lead_time_seconds, version)
SELECT repo, day, sum(deployments), sum(failed), sum(rework), arraySort(groupArrayArray(recovery)),
    sum(changes), arraySort(groupArrayArray(lead_times)), toUInt64(0)
FROM (
    SELECT repo, toDate(finished_at) AS day, toUInt32(1) AS deployments, toUInt32(failed) AS failed,
        toUInt32(rework) AS rework,
        if(failed = 1 AND recovered_at IS NOT NULL,
            [toUInt64(assumeNotNull(recovered_at)) - toUInt64(finished_at)], emptyArrayInt64()) AS recovery,
        toUInt32(0) AS changes, emptyArrayUInt64() AS lead_times
    FROM (
        SELECT repo, finished_at, production, failed, rework, recovered_at, live FROM {db}.deployments
        ORDER BY version DESC LIMIT 1 BY repo, deployment_id, finished_at)
    WHERE live = 1 AND production = 1
    UNION ALL
    SELECT repo, toDate(deployed_at) AS day, toUInt32(0), toUInt32(0), toUInt32(0), emptyArrayInt64(),
        toUInt32(1), [lead_time_seconds]
    FROM (
        SELECT repo, deployed_at, lead_time_seconds, live FROM {db}.changes
        ORDER BY version DESC LIMIT 1 BY repo, sha, deployed_at)
    WHERE live = 1)
GROUP BY repo, day;
