-- daehwa store, SQLite schema v2: stored OpenAI Responses (`POST /v1/responses` with `store`),
-- so a follow-up naming `previous_response_id` continues the conversation.
-- `owner` is who may read, continue and delete a response: 'user:<id>' (an account, through the
-- web session or a personal API key), 'key:<sha256 of an --api-key>' or 'anyone' (an open
-- server). An account's responses also carry `user_id`, so deleting the account removes them.
-- The JSON columns are the server's wire format, opaque to the store.

CREATE TABLE responses (
    id                   TEXT    PRIMARY KEY,
    owner                TEXT    NOT NULL,
    user_id              INTEGER REFERENCES users (id) ON DELETE CASCADE,
    -- No foreign key: deleting a response leaves the responses that continued it readable.
    previous_response_id TEXT,
    model                TEXT    NOT NULL,
    -- The Response object as returned.
    response             TEXT    NOT NULL,
    -- This request's input items (instructions excluded).
    input_items          TEXT    NOT NULL,
    -- The whole conversation as input items: the previous response's, this input, this output.
    conversation         TEXT    NOT NULL,
    created_at           INTEGER NOT NULL
);
CREATE INDEX responses_owner ON responses (owner, created_at);
CREATE INDEX responses_user ON responses (user_id);
CREATE INDEX responses_created ON responses (created_at);
