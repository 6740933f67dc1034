//! Use-case policies: what an organisation allows its users and keys to ask (issue 17 item 3).
//!
//! A [`Policy`] has a system prompt (put first in every conversation), the models allowed (none
//! listed: every model), limits on tokens per answer and per day, and whether provenance marks
//! and energy figures are shown. It applies to [`PolicySubject`]s: users, personal API keys, and
//! the server's `--api-key`s by their label.
//!
//! Precedence (one rule, [`Store::policy_for`]): a subject has at most one policy (assigning
//! another replaces it). A request is governed by the policy of the most specific subject it
//! carries (a personal API key before its owner's account), and without one by the default
//! policy (at most one policy is the default); no default means no policy.
//!
//! Every change is written, in the same transaction, to an append-only audit trail (triggers
//! refuse updates and deletes of it) with the acting admin, the time, and the values before and
//! after as JSON. Only admins may read or change policies.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Result, StoreError};
use crate::types::{ApiKeyId, PolicyId, User, UserId};
use crate::{now_ms, with_pool, Store};

/// The longest policy name accepted (in characters).
pub const MAX_POLICY_NAME_CHARS: usize = 64;
const DAY_MS: i64 = 86_400_000;

/// Who a policy applies to. Stored as `user:ID`, `apikey:ID` or `serverkey:LABEL`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PolicySubject {
    /// An account: its web sessions, and its personal API keys that have no policy of their own.
    User(UserId),
    /// One personal API key.
    ApiKey(ApiKeyId),
    /// One of the server's `--api-key`s, by its label (the first 12 hex digits of the key's
    /// SHA-256; see [`PolicySubject::server_key_label`]).
    ServerKey(String),
}

impl PolicySubject {
    /// The label of a server key: the first 12 hex digits of its SHA-256 (never the key itself;
    /// `printf %s KEY | sha256sum | cut -c1-12` gives it on the command line).
    pub fn server_key_label(key: &str) -> String {
        crate::token_hash(key)[..12].to_string()
    }
}

impl std::fmt::Display for PolicySubject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicySubject::User(u) => write!(f, "user:{u}"),
            PolicySubject::ApiKey(k) => write!(f, "apikey:{k}"),
            PolicySubject::ServerKey(l) => write!(f, "serverkey:{l}"),
        }
    }
}

impl std::str::FromStr for PolicySubject {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || StoreError::Invalid(format!("a policy subject is user:ID, apikey:ID or serverkey:LABEL, not {s:?}"));
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        let id = || rest.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(bad);
        match kind {
            "user" => Ok(PolicySubject::User(UserId(id()?))),
            "apikey" => Ok(PolicySubject::ApiKey(ApiKeyId(id()?))),
            "serverkey" if !rest.is_empty() && rest.len() <= 64 && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') => {
                Ok(PolicySubject::ServerKey(rest.to_string()))
            }
            _ => Err(bad()),
        }
    }
}

impl Serialize for PolicySubject {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PolicySubject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What an admin sets on a policy (create and update take the whole of it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub name: String,
    /// Put first, as a system message, in every request under the policy.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// The models allowed (by the name a request uses); empty allows every model.
    #[serde(default)]
    pub allowed_models: Vec<String>,
    /// The most tokens one answer may have; a request asking more is refused, one asking
    /// nothing gets this.
    #[serde(default)]
    pub max_tokens_per_answer: Option<u32>,
    /// The most tokens a subject's answers may have per UTC day.
    #[serde(default)]
    pub max_tokens_per_day: Option<u32>,
    /// Whether the provenance mark header and label are shown.
    #[serde(default = "yes")]
    pub show_marks: bool,
    /// Whether `usage.energy` and the UI's energy figures are shown.
    #[serde(default = "yes")]
    pub show_energy: bool,
    /// Whether the policy applies to everyone without one of their own (at most one is).
    #[serde(default)]
    pub is_default: bool,
}

fn yes() -> bool {
    true
}

impl PolicySpec {
    fn check(&self) -> Result<()> {
        let n = self.name.chars().count();
        if n == 0 || n > MAX_POLICY_NAME_CHARS || self.name.trim() != self.name || self.name.chars().any(char::is_control) {
            return Err(StoreError::Invalid(format!(
                "a policy name has 1 to {MAX_POLICY_NAME_CHARS} characters, no leading or trailing spaces and no control characters"
            )));
        }
        if self.allowed_models.iter().any(|m| m.trim().is_empty()) {
            return Err(StoreError::Invalid("an allowed model name cannot be empty".into()));
        }
        if self.max_tokens_per_answer == Some(0) || self.max_tokens_per_day == Some(0) {
            return Err(StoreError::Invalid("a token limit is at least 1 (leave it out for no limit)".into()));
        }
        Ok(())
    }
}

/// A stored policy and the subjects it is assigned to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub id: PolicyId,
    #[serde(flatten)]
    pub spec: PolicySpec,
    pub subjects: Vec<PolicySubject>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Policy {
    /// Whether a request may use `model` (every model when none is listed).
    pub fn allows_model(&self, model: &str) -> bool {
        self.spec.allowed_models.is_empty() || self.spec.allowed_models.iter().any(|m| m == model)
    }
}

/// One entry of the audit trail.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyAudit {
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    /// The admin who acted (`None` once their account is gone; the name stays).
    pub actor_id: Option<UserId>,
    pub actor_name: String,
    /// `create`, `update`, `delete`, `assign` or `unassign`.
    pub action: String,
    pub policy_id: Option<PolicyId>,
    pub policy_name: String,
    pub subject: Option<String>,
    pub old_value: Option<Value>,
    pub new_value: Option<Value>,
}

type PolicyRow = (i64, String, Option<String>, String, Option<i64>, Option<i64>, bool, bool, bool, i64, i64);

macro_rules! policy_columns {
    () => {
        "id, name, system_prompt, allowed_models, max_tokens_per_answer, max_tokens_per_day, show_marks, show_energy, is_default, created_at, updated_at"
    };
}

fn limit(column: &str, v: Option<i64>) -> Result<Option<u32>> {
    v.map(|n| u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("policies.{column}: {n}")))).transpose()
}

fn policy_of(r: PolicyRow, subjects: Vec<PolicySubject>) -> Result<Policy> {
    let (id, name, system_prompt, models, per_answer, per_day, show_marks, show_energy, is_default, created_at, updated_at) = r;
    let allowed_models = serde_json::from_str(&models).map_err(|e| StoreError::Corrupt(format!("policies.allowed_models: {e}")))?;
    Ok(Policy {
        id: PolicyId(id),
        spec: PolicySpec {
            name,
            system_prompt,
            allowed_models,
            max_tokens_per_answer: limit("max_tokens_per_answer", per_answer)?,
            max_tokens_per_day: limit("max_tokens_per_day", per_day)?,
            show_marks,
            show_energy,
            is_default,
        },
        subjects,
        created_at,
        updated_at,
    })
}

/// The audit trail's JSON of a policy (its settings and subjects).
fn audit_value(p: &Policy) -> String {
    json!({"spec": p.spec, "subjects": p.subjects}).to_string()
}

const AUDIT_SQL: &str = "INSERT INTO policy_audit (at, actor_id, actor_name, action, policy_id, policy_name, subject, old_value, new_value) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// One audit row to write.
struct Audit<'a> {
    actor: &'a User,
    action: &'static str,
    policy: PolicyId,
    policy_name: &'a str,
    subject: Option<String>,
    old: Option<String>,
    new: Option<String>,
}

macro_rules! write_audit {
    ($tx:expr, $a:expr) => {{
        let a = $a;
        sqlx::query(AUDIT_SQL)
            .bind(now_ms())
            .bind(a.actor.id)
            .bind(&a.actor.username)
            .bind(a.action)
            .bind(a.policy)
            .bind(a.policy_name)
            .bind(a.subject)
            .bind(a.old)
            .bind(a.new)
            .execute(&mut *$tx)
            .await?;
    }};
}

impl Store {
    async fn policy_admin(&self, actor: UserId) -> Result<User> {
        match self.user(actor).await {
            Ok(u) if u.is_admin => Ok(u),
            Ok(_) | Err(StoreError::NotFound) => Err(StoreError::Forbidden("admins only")),
            Err(e) => Err(e),
        }
    }

    async fn subjects_of(&self, id: PolicyId) -> Result<Vec<PolicySubject>> {
        const SQL: &str = "SELECT subject FROM policy_assignments WHERE policy_id = $1 ORDER BY subject";
        let rows: Vec<(String,)> = with_pool!(self, pool => sqlx::query_as(SQL).bind(id).fetch_all(pool).await?);
        rows.into_iter().map(|(s,)| s.parse().map_err(|_| StoreError::Corrupt(format!("policy_assignments.subject: {s}")))).collect()
    }

    /// One policy by id, with its subjects (no admin check: the server's own lookups).
    pub async fn policy(&self, id: PolicyId) -> Result<Policy> {
        const SQL: &str = concat!("SELECT ", policy_columns!(), " FROM policies WHERE id = $1");
        let row: Option<PolicyRow> = with_pool!(self, pool => sqlx::query_as(SQL).bind(id).fetch_optional(pool).await?);
        let row = row.ok_or(StoreError::NotFound)?;
        policy_of(row, self.subjects_of(id).await?)
    }

    /// Every policy, by name (admins only).
    pub async fn list_policies(&self, actor: UserId) -> Result<Vec<Policy>> {
        self.policy_admin(actor).await?;
        const SQL: &str = concat!("SELECT ", policy_columns!(), " FROM policies ORDER BY lower(name)");
        let rows: Vec<PolicyRow> = with_pool!(self, pool => sqlx::query_as(SQL).fetch_all(pool).await?);
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let subjects = self.subjects_of(PolicyId(r.0)).await?;
            out.push(policy_of(r, subjects)?);
        }
        Ok(out)
    }

    /// Creates a policy (admins only). A taken name (any case) is a [`StoreError::Conflict`];
    /// a new default replaces the old default.
    pub async fn create_policy(&self, actor: UserId, spec: &PolicySpec) -> Result<Policy> {
        spec.check()?;
        let admin = self.policy_admin(actor).await?;
        const SQL: &str = "INSERT INTO policies (name, system_prompt, allowed_models, max_tokens_per_answer, max_tokens_per_day, \
             show_marks, show_energy, is_default, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id";
        let models = serde_json::to_string(&spec.allowed_models).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let now = now_ms();
        let id: i64 = with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            if spec.is_default {
                sqlx::query("UPDATE policies SET is_default = FALSE WHERE is_default").execute(&mut *tx).await?;
            }
            let (id,): (i64,) = sqlx::query_as(SQL)
                .bind(&spec.name).bind(&spec.system_prompt).bind(&models)
                .bind(spec.max_tokens_per_answer.map(i64::from)).bind(spec.max_tokens_per_day.map(i64::from))
                .bind(spec.show_marks).bind(spec.show_energy).bind(spec.is_default).bind(now)
                .fetch_one(&mut *tx).await?;
            let new = json!({"spec": spec, "subjects": []}).to_string();
            write_audit!(tx, Audit { actor: &admin, action: "create", policy: PolicyId(id), policy_name: &spec.name, subject: None, old: None, new: Some(new) });
            tx.commit().await?;
            id
        });
        self.policy(PolicyId(id)).await
    }

    /// Replaces a policy's settings (admins only); its subjects stay.
    pub async fn update_policy(&self, actor: UserId, id: PolicyId, spec: &PolicySpec) -> Result<Policy> {
        spec.check()?;
        let admin = self.policy_admin(actor).await?;
        let old = self.policy(id).await?;
        const SQL: &str = "UPDATE policies SET name = $2, system_prompt = $3, allowed_models = $4, max_tokens_per_answer = $5, \
             max_tokens_per_day = $6, show_marks = $7, show_energy = $8, is_default = $9, updated_at = $10 WHERE id = $1";
        let models = serde_json::to_string(&spec.allowed_models).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let new = json!({"spec": spec, "subjects": old.subjects}).to_string();
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            if spec.is_default {
                sqlx::query("UPDATE policies SET is_default = FALSE WHERE is_default AND id <> $1").bind(id).execute(&mut *tx).await?;
            }
            let done = sqlx::query(SQL)
                .bind(id).bind(&spec.name).bind(&spec.system_prompt).bind(&models)
                .bind(spec.max_tokens_per_answer.map(i64::from)).bind(spec.max_tokens_per_day.map(i64::from))
                .bind(spec.show_marks).bind(spec.show_energy).bind(spec.is_default).bind(now_ms())
                .execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            write_audit!(tx, Audit { actor: &admin, action: "update", policy: id, policy_name: &spec.name, subject: None, old: Some(audit_value(&old)), new: Some(new) });
            tx.commit().await?;
        });
        self.policy(id).await
    }

    /// Deletes a policy and its assignments (admins only); the audit trail keeps it.
    pub async fn delete_policy(&self, actor: UserId, id: PolicyId) -> Result<()> {
        let admin = self.policy_admin(actor).await?;
        let old = self.policy(id).await?;
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query("DELETE FROM policies WHERE id = $1").bind(id).execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            write_audit!(tx, Audit { actor: &admin, action: "delete", policy: id, policy_name: &old.spec.name, subject: None, old: Some(audit_value(&old)), new: None });
            tx.commit().await?;
        });
        Ok(())
    }

    /// Puts `subject` under policy `id` (replacing any policy it had), or with `None` takes
    /// its policy away (admins only). Returns the policy now assigned, if any.
    pub async fn assign_policy(&self, actor: UserId, subject: &PolicySubject, id: Option<PolicyId>) -> Result<Option<Policy>> {
        let admin = self.policy_admin(actor).await?;
        let subject_text = subject.to_string();
        let current: Option<(i64,)> = with_pool!(self, pool => sqlx::query_as("SELECT policy_id FROM policy_assignments WHERE subject = $1")
            .bind(&subject_text).fetch_optional(pool).await?);
        let before = match current {
            Some((p,)) => Some(self.policy(PolicyId(p)).await?),
            None => None,
        };
        let after = match id {
            Some(p) => Some(self.policy(p).await?),
            None => None,
        };
        if before.as_ref().map(|p| p.id) == after.as_ref().map(|p| p.id) {
            return Ok(after);
        }
        let name = |p: &Option<Policy>| p.as_ref().map(|p| p.spec.name.clone());
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM policy_assignments WHERE subject = $1").bind(&subject_text).execute(&mut *tx).await?;
            if let Some(p) = &before {
                write_audit!(tx, Audit { actor: &admin, action: "unassign", policy: p.id, policy_name: &p.spec.name, subject: Some(subject_text.clone()),
                    old: Some(json!({"policy": name(&before)}).to_string()), new: Some(json!({"policy": name(&after)}).to_string()) });
            }
            if let Some(p) = &after {
                sqlx::query("INSERT INTO policy_assignments (subject, policy_id, created_at) VALUES ($1, $2, $3)")
                    .bind(&subject_text).bind(p.id).bind(now_ms()).execute(&mut *tx).await?;
                write_audit!(tx, Audit { actor: &admin, action: "assign", policy: p.id, policy_name: &p.spec.name, subject: Some(subject_text.clone()),
                    old: Some(json!({"policy": name(&before)}).to_string()), new: Some(json!({"policy": name(&after)}).to_string()) });
            }
            tx.commit().await?;
        });
        match id {
            Some(p) => self.policy(p).await.map(Some),
            None => Ok(None),
        }
    }

    /// The newest `limit` entries of the audit trail, newest first (admins only).
    pub async fn policy_audit(&self, actor: UserId, limit: u32) -> Result<Vec<PolicyAudit>> {
        self.policy_admin(actor).await?;
        const SQL: &str = "SELECT a.id, a.at, u.id, a.actor_name, a.action, a.policy_id, a.policy_name, a.subject, a.old_value, a.new_value \
             FROM policy_audit a LEFT JOIN users u ON u.id = a.actor_id ORDER BY a.id DESC LIMIT $1";
        type Row = (i64, i64, Option<i64>, String, String, Option<i64>, String, Option<String>, Option<String>, Option<String>);
        let rows: Vec<Row> = with_pool!(self, pool => sqlx::query_as(SQL).bind(i64::from(limit)).fetch_all(pool).await?);
        let value = |v: Option<String>| -> Result<Option<Value>> {
            v.map(|s| serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("policy_audit value: {e}")))).transpose()
        };
        rows.into_iter()
            .map(|(id, at, actor_id, actor_name, action, policy_id, policy_name, subject, old, new)| {
                Ok(PolicyAudit {
                    id,
                    at,
                    actor_id: actor_id.map(UserId),
                    actor_name,
                    action,
                    policy_id: policy_id.map(PolicyId),
                    policy_name,
                    subject,
                    old_value: value(old)?,
                    new_value: value(new)?,
                })
            })
            .collect()
    }

    /// The policy governing a request that carries `subjects`, most specific first (a personal
    /// key, then its owner): the first one assigned, else the default policy, else none.
    pub async fn policy_for(&self, subjects: &[PolicySubject]) -> Result<Option<Policy>> {
        for s in subjects {
            let row: Option<(i64,)> = with_pool!(self, pool => sqlx::query_as("SELECT policy_id FROM policy_assignments WHERE subject = $1")
                .bind(s.to_string()).fetch_optional(pool).await?);
            if let Some((id,)) = row {
                return self.policy(PolicyId(id)).await.map(Some);
            }
        }
        let row: Option<(i64,)> = with_pool!(self, pool => sqlx::query_as("SELECT id FROM policies WHERE is_default")
            .fetch_optional(pool).await?);
        match row {
            Some((id,)) => self.policy(PolicyId(id)).await.map(Some),
            None => Ok(None),
        }
    }

    /// Tokens generated today (UTC) for the usage key `who` (the daily limits' count).
    pub async fn policy_tokens_today(&self, who: &str) -> Result<u64> {
        let day = now_ms().div_euclid(DAY_MS);
        let row: Option<(i64,)> = with_pool!(self, pool => sqlx::query_as("SELECT tokens FROM policy_usage WHERE subject = $1 AND day = $2")
            .bind(who).bind(day).fetch_optional(pool).await?);
        Ok(row.map_or(0, |(n,)| u64::try_from(n).unwrap_or(0)))
    }

    /// Adds `tokens` to today's count of `who`.
    pub async fn add_policy_tokens(&self, who: &str, tokens: u64) -> Result<()> {
        let day = now_ms().div_euclid(DAY_MS);
        let n = i64::try_from(tokens).unwrap_or(i64::MAX);
        const SQL: &str = "INSERT INTO policy_usage (subject, day, tokens) VALUES ($1, $2, $3) \
             ON CONFLICT (subject, day) DO UPDATE SET tokens = policy_usage.tokens + excluded.tokens";
        with_pool!(self, pool => sqlx::query(SQL).bind(who).bind(day).bind(n).execute(pool).await.map(drop)?);
        Ok(())
    }
}
