-- daehwa store, SQLite schema v3: the energy each answer took (microjoules, and how it was
-- obtained: 'rapl' counters or an 'estimate' from CPU time), shown under the answer and summed
-- per user per day in Settings. NULL for answers written before v3 or by a backend that does not
-- measure energy.
ALTER TABLE messages ADD COLUMN energy_uj INTEGER;
ALTER TABLE messages ADD COLUMN energy_method TEXT CHECK (energy_method IN ('rapl', 'estimate'));
