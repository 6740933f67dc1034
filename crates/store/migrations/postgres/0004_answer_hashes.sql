-- daehwa store, PostgreSQL schema v4: answer provenance (see the SQLite migration).
ALTER TABLE messages ADD COLUMN marked BOOLEAN NOT NULL DEFAULT FALSE;
CREATE TABLE answer_fingerprints (
    message_id    BIGINT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    exact_hash    TEXT NOT NULL,
    shingle_count BIGINT NOT NULL CHECK (shingle_count >= 0)
);
CREATE INDEX answer_fingerprints_exact ON answer_fingerprints(exact_hash);
CREATE TABLE answer_shingles (
    message_id BIGINT NOT NULL REFERENCES answer_fingerprints(message_id) ON DELETE CASCADE,
    hash       BIGINT NOT NULL,
    PRIMARY KEY (message_id, hash)
);
CREATE INDEX answer_shingles_hash ON answer_shingles(hash);
