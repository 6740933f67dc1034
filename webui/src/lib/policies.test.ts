import { describe, expect, it } from "vitest";
import { emptyPolicyForm, formOf, parsePolicyForm, parseSubject, subjectLabel } from "./policies";

describe("the policy form", () => {
  it("parses a full form into the policy the server takes", () => {
    const parsed = parsePolicyForm({
      ...emptyPolicyForm(),
      name: "  학교 ",
      systemPrompt: " Be a tutor. ",
      allowedModels: "smollm2, qwen3\nsmollm2,, ",
      maxTokensPerAnswer: "200",
      maxTokensPerDay: " 5000 ",
      showEnergy: false,
    });
    expect(parsed).toEqual({
      ok: true,
      spec: {
        name: "학교",
        system_prompt: "Be a tutor.",
        allowed_models: ["smollm2", "qwen3"],
        max_tokens_per_answer: 200,
        max_tokens_per_day: 5000,
        show_marks: true,
        show_energy: false,
        is_default: false,
      },
    });
  });

  it("leaves empty fields as no limit and no system prompt", () => {
    const parsed = parsePolicyForm({ ...emptyPolicyForm(), name: "open" });
    expect(parsed.ok && parsed.spec).toMatchObject({ system_prompt: null, allowed_models: [], max_tokens_per_answer: null, max_tokens_per_day: null });
  });

  it("names the field that is wrong", () => {
    const bad = (f: Partial<ReturnType<typeof emptyPolicyForm>>) => {
      const p = parsePolicyForm({ ...emptyPolicyForm(), name: "x", ...f });
      return p.ok ? null : p.error;
    };
    expect(bad({ name: "   " })).toEqual({ field: "name", key: "policies.badName" });
    expect(bad({ name: "가".repeat(65) })).toEqual({ field: "name", key: "policies.badName" });
    expect(bad({ name: "a\u0007b" })).toEqual({ field: "name", key: "policies.badName" });
    expect(bad({ name: "가".repeat(64) })).toBeNull();
    expect(bad({ maxTokensPerAnswer: "0" })).toEqual({ field: "maxTokensPerAnswer", key: "policies.badLimit" });
    expect(bad({ maxTokensPerAnswer: "1.5" })).toEqual({ field: "maxTokensPerAnswer", key: "policies.badLimit" });
    expect(bad({ maxTokensPerDay: "-3" })).toEqual({ field: "maxTokensPerDay", key: "policies.badLimit" });
    expect(bad({ maxTokensPerDay: "4294967296" })).toEqual({ field: "maxTokensPerDay", key: "policies.badLimit" });
    expect(bad({ maxTokensPerDay: "4294967295" })).toBeNull();
  });

  it("round-trips a stored policy through the form", () => {
    const spec = {
      name: "api",
      system_prompt: null,
      allowed_models: ["a", "b"],
      max_tokens_per_answer: 10,
      max_tokens_per_day: null,
      show_marks: false,
      show_energy: true,
      is_default: true,
    };
    expect(parsePolicyForm(formOf(spec))).toEqual({ ok: true, spec });
  });
});

describe("policy subjects", () => {
  it("accepts users, personal keys and server keys only", () => {
    expect(parseSubject(" user:12 ")).toBe("user:12");
    expect(parseSubject("apikey:3")).toBe("apikey:3");
    expect(parseSubject("serverkey:0a1b2c3d4e5f")).toBe("serverkey:0a1b2c3d4e5f");
    for (const bad of ["user:0", "user:x", "group:1", "serverkey:", "serverkey:a b", "apikey:-1", "12"]) {
      expect(parseSubject(bad), bad).toBeNull();
    }
  });

  it("shows a user by name when known", () => {
    const users = [{ id: "7", username: "bob" }];
    expect(subjectLabel("user:7", users)).toBe("bob (user:7)");
    expect(subjectLabel("user:8", users)).toBe("user:8");
    expect(subjectLabel("serverkey:abc", users)).toBe("serverkey:abc");
  });
});
