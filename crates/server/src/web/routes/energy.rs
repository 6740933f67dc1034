//! `GET /api/energy`: the energy the user's answers took, per day (Settings shows the last 30
//! days), with how it was measured.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::web::error::WebError;
use crate::web::json::iso_time;
use crate::web::session::CurrentUser;
use crate::web::WebState;

/// Days Settings shows.
pub const DAYS: u32 = 30;

/// `GET /api/energy`: `{days: [{date, joules, answers, estimated}], total_joules}`, oldest day
/// first, only days with answers.
#[utoipa::path(get, operation_id = "energy_by_day", path = "/api/energy", tag = "web", responses((status = 200, description = "`{days: [{date: \"2026-12-04\", joules, answers, estimated}], total_joules}` for the last 30 days (UTC)", body = Object), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn by_day(State(st): State<WebState>, CurrentUser(user): CurrentUser) -> Result<Json<Value>, WebError> {
    let days = st.store.energy_by_day(user.id, DAYS).await?;
    let total: i64 = days.iter().map(|d| d.microjoules).sum();
    let days: Vec<Value> = days
        .iter()
        .map(|d| json!({"date": date(d.day), "joules": d.microjoules as f64 / 1e6, "answers": d.answers, "estimated": d.estimated}))
        .collect();
    Ok(Json(json!({"days": days, "total_joules": total as f64 / 1e6})))
}

/// `YYYY-MM-DD` of a day number since 1970-01-01.
fn date(days: i64) -> String {
    iso_time(days * 86_400_000)[..10].to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::date(0), "1970-01-01");
        assert_eq!(super::date(20_791), "2026-12-04");
        assert_eq!(super::date(11_016), "2000-02-29");
    }
}
