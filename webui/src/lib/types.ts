/** Shapes of the server's JSON API (see webui/README.md for the contract this UI assumes). */

export interface User {
  id: string;
  username: string;
  is_admin: boolean;
}

export interface AuthState {
  needs_setup: boolean;
  user: User | null;
}

export interface ModelInfo {
  id: string;
  name: string;
  context_length: number;
  /** Sent when the server has several models (each loads on first use). */
  state?: "loaded" | "loading" | "unloaded";
  /** For models in the server's models directory: file size (all parts), quantization, source. */
  size_bytes?: number;
  quant?: string | null;
  source?: string | null;
}

/** A model file in the server's models directory (`GET /api/admin/pulls`). */
export interface LocalModel {
  name: string;
  size_bytes: number;
  quant: string | null;
  context_length: number | null;
  architecture: string | null;
  source: string | null;
}

/** A pull from Hugging Face started from Settings. */
export interface Pull {
  id: number;
  model: string;
  state: "running" | "done" | "failed";
  file: string | null;
  done_bytes: number;
  total_bytes: number;
  name: string | null;
  source: string | null;
  error: string | null;
}

export interface PullsState {
  models_dir: string | null;
  models: LocalModel[];
  pulls: Pull[];
}

export interface ConversationSummary {
  id: string;
  title: string;
  updated_at: string;
  model: string | null;
}

export interface ConversationSettings {
  temperature?: number;
}

export type MessageRole = "system" | "user" | "assistant";
export type MessageStatus = "streaming" | "complete" | "incomplete";

export interface Message {
  id: string;
  parent_id: string | null;
  role: MessageRole;
  content: string;
  status: MessageStatus;
  created_at: string;
  model?: string | null;
  /** The energy the answer took (assistant messages, when the server measured it). */
  energy?: Energy | null;
  /** The answer was generated with the server's provenance watermark on. */
  marked?: boolean;
}

/** A stored answer that a searched text is a copy of (`POST /api/provenance/match`, admins). */
export interface AnswerMatch {
  conversation_id: string;
  message_id: string;
  owner_id: string;
  owner: string;
  /** Jaccard similarity of the keyed word-shingle sketches, 0 to 1 (1 for an exact copy). */
  similarity: number;
  /** The normalised texts are identical. */
  exact: boolean;
}

/** `rapl`: the CPU's energy counters; `estimate`: CPU time times a per-core power figure. */
export interface Energy {
  joules: number;
  method: "rapl" | "estimate";
}

/** `GET /api/energy`: the user's answers of the last 30 days (UTC), per day with answers. */
export interface EnergyReport {
  days: { date: string; joules: number; answers: number; estimated: boolean }[];
  total_joules: number;
}

export interface Conversation {
  id: string;
  title: string;
  system_prompt: string | null;
  model: string | null;
  settings: ConversationSettings | null;
  messages: Message[];
}

export interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  created_at?: string;
  last_used_at?: string | null;
}

export interface CreatedApiKey extends ApiKey {
  /** The full secret: the server returns it exactly once. */
  key: string;
}

export interface Usage {
  prompt_tokens?: number;
  completion_tokens?: number;
  total_tokens?: number;
  energy?: Energy;
}

export interface ApiErrorBody {
  message: string;
  type?: string;
  param?: string | null;
  code?: string | null;
}
