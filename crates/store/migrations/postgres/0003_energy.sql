-- daehwa store, PostgreSQL schema v3: the energy each answer took (see the SQLite migration).
ALTER TABLE messages ADD COLUMN energy_uj BIGINT;
ALTER TABLE messages ADD COLUMN energy_method TEXT CHECK (energy_method IN ('rapl', 'estimate'));
