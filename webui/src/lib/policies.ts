/**
 * Use-case policies (issue 17 item 3): the admin API (`/api/policies`), the signed-in user's own
 * policy (`/api/policies/mine`, shown as a label in the chat view), and the parsing of the
 * Settings form into the policy the server takes. Parse, don't validate: `parsePolicyForm` turns
 * the form's strings into a `PolicySpec` or names the first field that is wrong.
 */
import { request } from "./api";
import type { MessageKey } from "../i18n";

/** What an admin sets on a policy (create and update take the whole of it). */
export interface PolicySpec {
  name: string;
  system_prompt: string | null;
  allowed_models: string[];
  max_tokens_per_answer: number | null;
  max_tokens_per_day: number | null;
  show_marks: boolean;
  show_energy: boolean;
  is_default: boolean;
}

/** A stored policy and the subjects (`user:ID`, `apikey:ID`, `serverkey:LABEL`) it applies to. */
export interface Policy extends PolicySpec {
  id: number;
  subjects: string[];
  created_at: number;
  updated_at: number;
}

export interface PolicyList {
  policies: Policy[];
  /** The labels of the server's `--api-key`s. */
  server_keys: string[];
}

export interface PolicyAuditEntry {
  id: number;
  /** Unix milliseconds. */
  at: number;
  actor_name: string;
  action: string;
  policy_id: number | null;
  policy_name: string;
  subject: string | null;
  old_value: unknown;
  new_value: unknown;
}

/** The policy the signed-in user's chats run under, as the chat view shows it. */
export interface MyPolicy {
  name: string;
  allowed_models: string[];
  max_tokens_per_answer: number | null;
  max_tokens_per_day: number | null;
  show_marks: boolean;
  show_energy: boolean;
  tokens_today: number;
}

/** The Settings form, as strings and checkboxes. */
export interface PolicyForm {
  name: string;
  systemPrompt: string;
  /** Comma- or newline-separated. */
  allowedModels: string;
  maxTokensPerAnswer: string;
  maxTokensPerDay: string;
  showMarks: boolean;
  showEnergy: boolean;
  isDefault: boolean;
}

export const MAX_POLICY_NAME_CHARS = 64;
/** The largest limit the server stores (a u32). */
const MAX_LIMIT = 4294967295;

export const emptyPolicyForm = (): PolicyForm => ({
  name: "",
  systemPrompt: "",
  allowedModels: "",
  maxTokensPerAnswer: "",
  maxTokensPerDay: "",
  showMarks: true,
  showEnergy: true,
  isDefault: false,
});

export function formOf(p: PolicySpec): PolicyForm {
  return {
    name: p.name,
    systemPrompt: p.system_prompt ?? "",
    allowedModels: p.allowed_models.join(", "),
    maxTokensPerAnswer: p.max_tokens_per_answer == null ? "" : String(p.max_tokens_per_answer),
    maxTokensPerDay: p.max_tokens_per_day == null ? "" : String(p.max_tokens_per_day),
    showMarks: p.show_marks,
    showEnergy: p.show_energy,
    isDefault: p.is_default,
  };
}

export type FormError = { field: keyof PolicyForm; key: MessageKey };
export type Parsed = { ok: true; spec: PolicySpec } | { ok: false; error: FormError };

/** A token limit: empty is none; otherwise a whole number from 1. */
function parseLimit(s: string): number | null | undefined {
  const t = s.trim();
  if (t === "") return null;
  if (!/^\d+$/.test(t)) return undefined;
  const n = Number(t);
  return n >= 1 && n <= MAX_LIMIT ? n : undefined;
}

export function parsePolicyForm(f: PolicyForm): Parsed {
  const name = f.name.trim();
  const chars = [...name].length;
  // eslint-disable-next-line no-control-regex
  if (chars === 0 || chars > MAX_POLICY_NAME_CHARS || /[\u0000-\u001f\u007f]/.test(name)) {
    return { ok: false, error: { field: "name", key: "policies.badName" } };
  }
  const perAnswer = parseLimit(f.maxTokensPerAnswer);
  if (perAnswer === undefined) return { ok: false, error: { field: "maxTokensPerAnswer", key: "policies.badLimit" } };
  const perDay = parseLimit(f.maxTokensPerDay);
  if (perDay === undefined) return { ok: false, error: { field: "maxTokensPerDay", key: "policies.badLimit" } };
  const models = f.allowedModels
    .split(/[,\n]/)
    .map((m) => m.trim())
    .filter((m) => m !== "");
  const system = f.systemPrompt.trim();
  return {
    ok: true,
    spec: {
      name,
      system_prompt: system === "" ? null : system,
      allowed_models: [...new Set(models)],
      max_tokens_per_answer: perAnswer,
      max_tokens_per_day: perDay,
      show_marks: f.showMarks,
      show_energy: f.showEnergy,
      is_default: f.isDefault,
    },
  };
}

/** A subject as the server takes it (`user:ID`, `apikey:ID`, `serverkey:LABEL`), or null. */
export function parseSubject(s: string): string | null {
  const t = s.trim();
  const m = /^(user|apikey):([1-9]\d{0,17})$/.exec(t) ?? /^(serverkey):([A-Za-z0-9_-]{1,64})$/.exec(t);
  return m ? `${m[1]}:${m[2]}` : null;
}

/** How a subject is shown: a user by name when known. */
export function subjectLabel(subject: string, users: { id: string; username: string }[]): string {
  const [kind, rest] = [subject.slice(0, subject.indexOf(":")), subject.slice(subject.indexOf(":") + 1)];
  if (kind === "user") {
    const u = users.find((x) => x.id === rest);
    return u ? `${u.username} (user:${rest})` : subject;
  }
  return subject;
}

async function json<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await request(method, path, body);
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export const policiesApi = {
  list: () => json<PolicyList>("GET", "/api/policies"),
  create: (spec: PolicySpec) => json<Policy>("POST", "/api/policies", spec),
  update: (id: number, spec: PolicySpec) => json<Policy>("PUT", `/api/policies/${id}`, spec),
  remove: (id: number) => json<void>("DELETE", `/api/policies/${id}`),
  /** `policyId` null takes the subject's policy away. */
  assign: (subject: string, policyId: number | null) =>
    json<{ policy: Policy | null }>("POST", "/api/policies/assign", { subject, policy_id: policyId }),
  audit: async () => (await json<{ entries: PolicyAuditEntry[] }>("GET", "/api/policies/audit")).entries,
  mine: async () => (await json<{ policy: MyPolicy | null }>("GET", "/api/policies/mine")).policy,
};
