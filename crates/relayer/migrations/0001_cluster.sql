-- Keyscope relayer store on Postgres, shared by every instance of one relayer deployment.

-- Every op any instance accepted: its record, and the columns the instances query by.
CREATE TABLE ops (
    hash         BYTEA PRIMARY KEY,
    sender       BYTEA NOT NULL,
    -- The sender's shard: the instance holding its lease is the only one that writes this row.
    shard        INTEGER NOT NULL,
    -- received | claimed | sent | mined | dropped
    state        TEXT NOT NULL,
    ord          BIGINT NOT NULL,
    block_number BIGINT,
    -- Who wrote the row last, under which shard epoch.
    writer       TEXT NOT NULL,
    epoch        BIGINT NOT NULL,
    record       TEXT NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ops_unfinished ON ops (shard, ord) WHERE state NOT IN ('mined', 'dropped');
CREATE INDEX ops_mined ON ops (shard, block_number) WHERE state = 'mined';

-- The audit log: one hash chain for the whole deployment; audit_head serialises its appends.
CREATE TABLE audit (
    seq   BIGINT PRIMARY KEY,
    entry TEXT NOT NULL
);
CREATE TABLE audit_head (
    id       BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    next_seq BIGINT NOT NULL,
    hash     BYTEA NOT NULL
);
INSERT INTO audit_head (next_seq, hash) VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000');

-- ERC-7562 reputation, per instance (each sees its own traffic).
CREATE TABLE reputation (
    instance TEXT NOT NULL,
    address  BYTEA NOT NULL,
    entry    TEXT NOT NULL,
    PRIMARY KEY (instance, address)
);

-- The deployment's shape, fixed by its first instance.
CREATE TABLE cluster (
    id     BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    shards INTEGER NOT NULL
);

-- Live instances: where each one serves JSON-RPC (ops for its shards are forwarded there).
CREATE TABLE instances (
    name       TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    seen_at    TIMESTAMPTZ NOT NULL
);

-- Sender shards and bundle keys, each leased to one instance. Taking a lease over raises its epoch: a
-- write made under an older epoch is refused (fencing).
CREATE TABLE shard_leases (
    shard      INTEGER PRIMARY KEY,
    owner      TEXT,
    epoch      BIGINT NOT NULL DEFAULT 0,
    expires_at TIMESTAMPTZ NOT NULL DEFAULT 'epoch'
);
CREATE TABLE key_leases (
    address    BYTEA PRIMARY KEY,
    owner      TEXT,
    epoch      BIGINT NOT NULL DEFAULT 0,
    expires_at TIMESTAMPTZ NOT NULL DEFAULT 'epoch'
);
