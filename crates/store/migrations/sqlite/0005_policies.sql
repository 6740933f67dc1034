-- daehwa store, SQLite schema v5: use-case policies (issue 17 item 3).
-- A policy limits what its subjects may ask: a system prompt put first, the models allowed
-- (a JSON array of names; empty allows every model), tokens per answer and per day, and whether
-- provenance marks and energy figures are shown. A subject (a user, a personal API key, or one of
-- the server's --api-keys by its label) has at most one policy; the default policy, if any,
-- applies to everyone else.
CREATE TABLE policies (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    name                  TEXT    NOT NULL,
    system_prompt         TEXT,
    allowed_models        TEXT    NOT NULL DEFAULT '[]',
    max_tokens_per_answer INTEGER CHECK (max_tokens_per_answer > 0),
    max_tokens_per_day    INTEGER CHECK (max_tokens_per_day > 0),
    show_marks            BOOLEAN NOT NULL DEFAULT 1,
    show_energy           BOOLEAN NOT NULL DEFAULT 1,
    is_default            BOOLEAN NOT NULL DEFAULT 0,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
);
CREATE UNIQUE INDEX policies_name_lower ON policies (lower(name));
-- At most one default policy.
CREATE UNIQUE INDEX policies_one_default ON policies (is_default) WHERE is_default = 1;

-- Who a policy applies to: 'user:ID', 'apikey:ID' (a personal key) or 'serverkey:LABEL'.
CREATE TABLE policy_assignments (
    subject    TEXT    PRIMARY KEY,
    policy_id  INTEGER NOT NULL REFERENCES policies (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
);
CREATE INDEX policy_assignments_policy ON policy_assignments (policy_id);

-- The append-only trail of changes: who (kept by name too, so it outlives the account), when,
-- what, and the values before and after as JSON.
CREATE TABLE policy_audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor_id    INTEGER,
    actor_name  TEXT    NOT NULL,
    action      TEXT    NOT NULL CHECK (action IN ('create', 'update', 'delete', 'assign', 'unassign')),
    policy_id   INTEGER,
    policy_name TEXT    NOT NULL,
    subject     TEXT,
    old_value   TEXT,
    new_value   TEXT
);
CREATE TRIGGER policy_audit_no_update BEFORE UPDATE ON policy_audit
BEGIN SELECT RAISE(ABORT, 'policy_audit is append-only'); END;
CREATE TRIGGER policy_audit_no_delete BEFORE DELETE ON policy_audit
BEGIN SELECT RAISE(ABORT, 'policy_audit is append-only'); END;

-- Tokens generated per subject per UTC day (days since 1970-01-01), for the daily limits.
CREATE TABLE policy_usage (
    subject TEXT    NOT NULL,
    day     INTEGER NOT NULL,
    tokens  INTEGER NOT NULL,
    PRIMARY KEY (subject, day)
);
