-- daehwa store, PostgreSQL schema v2 (the same table as migrations/sqlite/0002_responses.sql):
-- stored OpenAI Responses, owned by 'user:<id>', 'key:<sha256 of an --api-key>' or 'anyone'.

CREATE TABLE responses (
    id                   TEXT   PRIMARY KEY,
    owner                TEXT   NOT NULL,
    user_id              BIGINT REFERENCES users (id) ON DELETE CASCADE,
    previous_response_id TEXT,
    model                TEXT   NOT NULL,
    response             TEXT   NOT NULL,
    input_items          TEXT   NOT NULL,
    conversation         TEXT   NOT NULL,
    created_at           BIGINT NOT NULL
);
CREATE INDEX responses_owner ON responses (owner, created_at);
CREATE INDEX responses_user ON responses (user_id);
CREATE INDEX responses_created ON responses (created_at);
