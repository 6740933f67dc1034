/**
 * Settings, admins only: use-case policies (issue 17 item 3). List, create, edit and delete them,
 * assign them to users, personal API keys (`apikey:ID`) and the server's API keys (by label), and
 * read the audit trail of every change.
 */
import { useEffect, useState } from "preact/hooks";
import { api } from "../lib/api";
import {
  emptyPolicyForm,
  formOf,
  parsePolicyForm,
  parseSubject,
  policiesApi,
  subjectLabel,
  type Policy,
  type PolicyAuditEntry,
  type PolicyForm,
} from "../lib/policies";
import type { User } from "../lib/types";
import { useI18n } from "../i18n";

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));

export function PoliciesSection() {
  const { t } = useI18n();
  const [policies, setPolicies] = useState<Policy[]>([]);
  const [serverKeys, setServerKeys] = useState<string[]>([]);
  const [users, setUsers] = useState<User[]>([]);
  const [audit, setAudit] = useState<PolicyAuditEntry[] | null>(null);
  const [form, setForm] = useState<PolicyForm>(emptyPolicyForm());
  const [editing, setEditing] = useState<number | null>(null);
  const [subject, setSubject] = useState("");
  const [assignTo, setAssignTo] = useState<string>("");
  const [error, setError] = useState<string | null>(null);

  const load = async () => {
    try {
      const list = await policiesApi.list();
      setPolicies(list.policies);
      setServerKeys(list.server_keys);
      if (audit) setAudit(await policiesApi.audit());
    } catch (e) {
      setError(errorText(e));
    }
  };
  useEffect(() => {
    void load();
    api.users().then(setUsers).catch(() => setUsers([]));
  }, []);

  const set = <K extends keyof PolicyForm>(k: K, v: PolicyForm[K]) => setForm((f) => ({ ...f, [k]: v }));

  const save = async (e: Event) => {
    e.preventDefault();
    const parsed = parsePolicyForm(form);
    if (!parsed.ok) {
      setError(t(parsed.error.key));
      return;
    }
    try {
      if (editing == null) await policiesApi.create(parsed.spec);
      else await policiesApi.update(editing, parsed.spec);
      setForm(emptyPolicyForm());
      setEditing(null);
      setError(null);
      await load();
    } catch (err) {
      setError(errorText(err));
    }
  };

  const remove = async (p: Policy) => {
    if (!confirm(t("policies.deleteConfirm", { name: p.name }))) return;
    try {
      await policiesApi.remove(p.id);
      if (editing === p.id) {
        setEditing(null);
        setForm(emptyPolicyForm());
      }
      await load();
    } catch (err) {
      setError(errorText(err));
    }
  };

  const assign = async (e: Event) => {
    e.preventDefault();
    const s = parseSubject(subject);
    if (!s) {
      setError(t("policies.badSubject"));
      return;
    }
    try {
      await policiesApi.assign(s, assignTo === "" ? null : Number(assignTo));
      setSubject("");
      setError(null);
      await load();
    } catch (err) {
      setError(errorText(err));
    }
  };

  const showAudit = async () => {
    try {
      setAudit(await policiesApi.audit());
    } catch (err) {
      setError(errorText(err));
    }
  };

  const limitText = (n: number | null) => (n == null ? t("policies.noLimit") : String(n));

  return (
    <section data-testid="policies">
      <h3>{t("policies.title")}</h3>
      <p class="muted small">{t("policies.intro")}</p>
      {policies.length === 0 ? (
        <p class="muted small">{t("policies.none")}</p>
      ) : (
        <ul class="plain-list">
          {policies.map((p) => (
            <li class="policy-item" data-testid="policy-item">
              <div class="row">
                <strong class="grow">
                  {p.name} {p.is_default && <span class="badge">{t("policies.default")}</span>}
                </strong>
                <button
                  onClick={() => {
                    setEditing(p.id);
                    setForm(formOf(p));
                  }}
                  data-testid="edit-policy"
                >
                  {t("policies.edit")}
                </button>
                <button onClick={() => void remove(p)} data-testid="delete-policy">
                  {t("common.delete")}
                </button>
              </div>
              <p class="muted small">
                {t("policies.summary", {
                  models: p.allowed_models.length ? p.allowed_models.join(", ") : t("policies.allModels"),
                  perAnswer: limitText(p.max_tokens_per_answer),
                  perDay: limitText(p.max_tokens_per_day),
                })}
                {!p.show_energy && ` · ${t("policies.energyHidden")}`}
                {!p.show_marks && ` · ${t("policies.marksHidden")}`}
              </p>
              <p class="muted small" data-testid="policy-subjects">
                {p.subjects.length ? t("policies.appliesTo", { subjects: p.subjects.map((s) => subjectLabel(s, users)).join(", ") }) : t("policies.noSubjects")}
              </p>
            </li>
          ))}
        </ul>
      )}

      <form class="policy-form" onSubmit={save} data-testid="policy-form">
        <h4>{editing == null ? t("policies.new") : t("policies.editing", { name: policies.find((p) => p.id === editing)?.name ?? "" })}</h4>
        <label>
          {t("policies.name")}
          <input value={form.name} onInput={(e) => set("name", e.currentTarget.value)} data-testid="policy-name" />
        </label>
        <label>
          {t("policies.systemPrompt")}
          <textarea rows={3} value={form.systemPrompt} onInput={(e) => set("systemPrompt", e.currentTarget.value)} data-testid="policy-system" />
        </label>
        <label>
          {t("policies.allowedModels")}
          <input value={form.allowedModels} placeholder={t("policies.allowedModelsHint")} onInput={(e) => set("allowedModels", e.currentTarget.value)} data-testid="policy-models" />
        </label>
        <div class="row wrap">
          <label>
            {t("policies.perAnswer")}
            <input inputMode="numeric" value={form.maxTokensPerAnswer} onInput={(e) => set("maxTokensPerAnswer", e.currentTarget.value)} data-testid="policy-per-answer" />
          </label>
          <label>
            {t("policies.perDay")}
            <input inputMode="numeric" value={form.maxTokensPerDay} onInput={(e) => set("maxTokensPerDay", e.currentTarget.value)} data-testid="policy-per-day" />
          </label>
        </div>
        <div class="row wrap">
          <label class="inline">
            <input type="checkbox" checked={form.showEnergy} onChange={(e) => set("showEnergy", e.currentTarget.checked)} data-testid="policy-show-energy" /> {t("policies.showEnergy")}
          </label>
          <label class="inline">
            <input type="checkbox" checked={form.showMarks} onChange={(e) => set("showMarks", e.currentTarget.checked)} data-testid="policy-show-marks" /> {t("policies.showMarks")}
          </label>
          <label class="inline">
            <input type="checkbox" checked={form.isDefault} onChange={(e) => set("isDefault", e.currentTarget.checked)} data-testid="policy-default" /> {t("policies.isDefault")}
          </label>
        </div>
        <div class="row">
          <button class="primary" type="submit" data-testid="save-policy">
            {editing == null ? t("policies.create") : t("common.save")}
          </button>
          {editing != null && (
            <button
              type="button"
              onClick={() => {
                setEditing(null);
                setForm(emptyPolicyForm());
              }}
            >
              {t("common.cancel")}
            </button>
          )}
        </div>
      </form>

      <form class="row wrap" onSubmit={assign} data-testid="policy-assign">
        <input
          class="grow"
          list="policy-subjects"
          placeholder={t("policies.subjectHint")}
          aria-label={t("policies.subject")}
          value={subject}
          onInput={(e) => setSubject(e.currentTarget.value)}
          data-testid="assign-subject"
        />
        <datalist id="policy-subjects">
          {users.map((u) => (
            <option value={`user:${u.id}`}>{u.username}</option>
          ))}
          {serverKeys.map((k) => (
            <option value={`serverkey:${k}`}>{t("policies.serverKey")}</option>
          ))}
        </datalist>
        <select aria-label={t("policies.title")} value={assignTo} onChange={(e) => setAssignTo(e.currentTarget.value)} data-testid="assign-policy">
          <option value="">{t("policies.unassign")}</option>
          {policies.map((p) => (
            <option value={String(p.id)}>{p.name}</option>
          ))}
        </select>
        <button type="submit" data-testid="assign">
          {t("policies.assign")}
        </button>
      </form>
      {error && (
        <p class="error" data-testid="policy-error">
          {t("common.error", { message: error })}
        </p>
      )}

      {audit == null ? (
        <button onClick={() => void showAudit()} data-testid="show-audit">
          {t("policies.showAudit")}
        </button>
      ) : (
        <table class="energy-table" data-testid="policy-audit">
          <thead>
            <tr>
              <th>{t("policies.auditWhen")}</th>
              <th>{t("policies.auditWho")}</th>
              <th>{t("policies.auditAction")}</th>
              <th>{t("policies.auditPolicy")}</th>
              <th>{t("policies.subject")}</th>
            </tr>
          </thead>
          <tbody>
            {audit.map((a) => (
              <tr data-testid="audit-entry">
                <td>{new Date(a.at).toLocaleString()}</td>
                <td>{a.actor_name}</td>
                <td>{a.action}</td>
                <td>{a.policy_name}</td>
                <td>{a.subject ? subjectLabel(a.subject, users) : ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
