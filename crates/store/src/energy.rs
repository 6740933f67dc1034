//! The energy a user's answers took, per day (Settings shows it).

use crate::error::Result;
use crate::types::{EnergyDay, UserId};
use crate::{now_ms, with_pool, Store};

const DAY_MS: i64 = 86_400_000;

impl Store {
    /// The actor's answers of the last `days` days (today included, UTC) that have an energy
    /// figure: joules, answers and whether any figure was estimated, oldest day first.
    pub async fn energy_by_day(&self, actor: UserId, days: u32) -> Result<Vec<EnergyDay>> {
        let today = now_ms().div_euclid(DAY_MS);
        let since = (today - i64::from(days.max(1)) + 1) * DAY_MS;
        // SUM of a BIGINT is NUMERIC in PostgreSQL: cast it back.
        const SQL: &str = "SELECT m.created_at / 86400000 AS day, CAST(SUM(m.energy_uj) AS BIGINT), COUNT(*), \
               CAST(SUM(CASE WHEN m.energy_method = 'estimate' THEN 1 ELSE 0 END) AS BIGINT) \
             FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE c.user_id = $1 AND m.energy_uj IS NOT NULL AND m.created_at >= $2 \
             GROUP BY m.created_at / 86400000 ORDER BY day";
        let rows: Vec<(i64, i64, i64, i64)> = with_pool!(self, pool => {
            sqlx::query_as(SQL).bind(actor).bind(since).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(|(day, microjoules, answers, estimated)| EnergyDay { day, microjoules, answers, estimated: estimated > 0 }).collect())
    }
}
