-- Facts are versioned rows: the processor writes a fact again (higher
-- version) when it changes, and a tombstone (live = 0) when it vanishes or
-- its time moves. The time is part of the sorting key so that a tombstone
-- replaces exactly the row it retracts, in the same partition.
CREATE TABLE IF NOT EXISTS deployments (
    repo          String,
    deployment_id String,
    service       String,
    environment   String,
    sha           String,
    status        String,
    finished_at   DateTime('UTC'),
    production    UInt8,
    rollback      UInt8,
    failed        UInt8,
    rework        UInt8,
    changes       UInt32,
    approximate   UInt8,
    incidents     UInt32,
    recovered_at  Nullable(DateTime('UTC')),
    live          UInt8,
    version       UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(finished_at)
ORDER BY (repo, deployment_id, finished_at);

CREATE TABLE IF NOT EXISTS changes (
    repo              String,
    sha               String,
    deployment_id     String,
    committed_at      DateTime('UTC'),
    deployed_at       DateTime('UTC'),
    lead_time_seconds UInt64,
    live              UInt8,
    version           UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(deployed_at)
ORDER BY (repo, sha, deployed_at);

CREATE TABLE IF NOT EXISTS incidents (
    incident_id     String,
    source          String,
    service         String,
    repo            String,
    opened_at       DateTime('UTC'),
    resolved_at     Nullable(DateTime('UTC')),
    deployment_repo String,
    deployment_id   String,
    attribution     String,
    live            UInt8,
    version         UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(opened_at)
ORDER BY (incident_id, opened_at);

-- Which team owns each repository ('repo:owner/name') and incident-side
-- service ('service:name'), from the current configuration. Joined at query
-- time, so changing the configuration re-attributes all history.
CREATE TABLE IF NOT EXISTS teams (
    entity  String,
    team    String,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY entity;
