-- daehwa store, SQLite schema v4: answer provenance. `marked` says the answer was generated
-- while the statistical watermark was on (the web UI shows a "marked" label). Each stored answer
-- keeps a keyed hash of its normalised text (`exact_hash`) and keyed hashes of a bounded set of
-- its word shingles (`answer_shingles`), so an admin can match an exact or lightly edited copy
-- back to its conversation. The hashes are keyed with a server secret: the table alone does not
-- let anyone test a guessed text.
ALTER TABLE messages ADD COLUMN marked INTEGER NOT NULL DEFAULT 0 CHECK (marked IN (0, 1));
CREATE TABLE answer_fingerprints (
    message_id    INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    exact_hash    TEXT NOT NULL,
    shingle_count INTEGER NOT NULL CHECK (shingle_count >= 0)
);
CREATE INDEX answer_fingerprints_exact ON answer_fingerprints(exact_hash);
CREATE TABLE answer_shingles (
    message_id INTEGER NOT NULL REFERENCES answer_fingerprints(message_id) ON DELETE CASCADE,
    hash       INTEGER NOT NULL,
    PRIMARY KEY (message_id, hash)
);
CREATE INDEX answer_shingles_hash ON answer_shingles(hash);
