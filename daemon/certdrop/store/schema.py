"""The state database's tables (every one created here) and the columns added since the
first release, with the statement that adds each to an older database."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS certificates (
    name TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('requested', 'unused', 'in_use')),
    key_id TEXT NOT NULL,
    key_pem BLOB NOT NULL,
    sha256 TEXT UNIQUE,
    cert_pem BLOB,
    chain_pem BLOB,
    trusted INTEGER NOT NULL DEFAULT 0,
    trust_detail TEXT NOT NULL DEFAULT '',
    subject TEXT, sans TEXT, issuer TEXT, not_before TEXT, not_after TEXT,
    key_type TEXT, key_bits INTEGER,
    csr_pem BLOB, request TEXT, renews TEXT,
    created TEXT NOT NULL
);
-- (key_id, status): pending requests and stored keys are found by both.
DROP INDEX IF EXISTS certificates_key;
CREATE INDEX IF NOT EXISTS certificates_key_status ON certificates (key_id, status);
CREATE TABLE IF NOT EXISTS held (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('certificate', 'key')),
    key_id TEXT NOT NULL,
    pem BLOB NOT NULL,
    from_file TEXT NOT NULL,
    since TEXT NOT NULL,
    UNIQUE (kind, key_id)
);
CREATE TABLE IF NOT EXISTS pool (
    sha256 TEXT PRIMARY KEY,
    pem BLOB NOT NULL,
    subject TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pool_subject ON pool (subject);
CREATE TABLE IF NOT EXISTS drops (
    claim TEXT PRIMARY KEY,
    file TEXT NOT NULL,
    result TEXT NOT NULL,
    code TEXT, reason TEXT,
    at TEXT NOT NULL
);
-- A drop being processed: written before the costly steps, gone with its result, so a
-- drop under way when the daemon died is known at the next start (store/attempts.py).
CREATE TABLE IF NOT EXISTS attempts (
    claim TEXT PRIMARY KEY,
    file TEXT NOT NULL,
    seen TEXT NOT NULL,
    runs INTEGER NOT NULL,
    run TEXT NOT NULL,
    since TEXT NOT NULL,
    phase TEXT NOT NULL DEFAULT 'daemon'  -- store/attempts.py: where the work was
);
CREATE TABLE IF NOT EXISTS services (
    name TEXT PRIMARY KEY,
    desired TEXT,
    deployed_sha256 TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    detail TEXT NOT NULL DEFAULT '',
    updated TEXT,
    managed INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS warnings (
    sha256 TEXT NOT NULL,
    threshold TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (sha256, threshold)
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- Monotonic counts the metrics report (e.g. renewal failures by stage), kept with the
-- state so a restart does not reset them.
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS renewals (
    cert TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt TEXT,
    started TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
"""


# Columns added after the first release, with how to add them to an older database.
ADDED_COLUMNS = {
    ("services", "managed"): "ALTER TABLE services ADD COLUMN managed INTEGER NOT NULL DEFAULT 1",
    # issue 10: why a certificate is not trusted
    ("certificates", "trust_detail"): (
        "ALTER TABLE certificates ADD COLUMN trust_detail TEXT NOT NULL DEFAULT ''"
    ),
    # a run that died while the bounded child had the drop does not count against it
    ("attempts", "phase"): "ALTER TABLE attempts ADD COLUMN phase TEXT NOT NULL DEFAULT 'daemon'",
}
