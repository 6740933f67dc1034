import { describe, expect, it } from "vitest";
import { en } from "./en";
import { ko } from "./ko";
import { detectLang, translator } from "./index";

const placeholders = (s: string) => (s.match(/\{\w+\}/g) ?? []).sort();

describe("i18n dictionaries", () => {
  it("have identical keys in English and Korean", () => {
    expect(Object.keys(ko).sort()).toEqual(Object.keys(en).sort());
  });

  it("have no empty strings and the same placeholders in both languages", () => {
    for (const key of Object.keys(en) as (keyof typeof en)[]) {
      expect(en[key].trim(), key).not.toBe("");
      expect(ko[key].trim(), key).not.toBe("");
      expect(placeholders(ko[key]), key).toEqual(placeholders(en[key]));
    }
  });

  it("are really translated (Korean strings contain Hangul apart from names and formats)", () => {
    const untranslated = (Object.keys(en) as (keyof typeof en)[]).filter(
      (k) => ko[k] === en[k] && !["app.name", "chat.branch"].includes(k),
    );
    expect(untranslated).toEqual([]);
  });
});

describe("language choice", () => {
  it("prefers the stored choice, then the browser's languages", () => {
    expect(detectLang(["ko-KR", "en-US"], null)).toBe("ko");
    expect(detectLang(["en-US", "ko"], null)).toBe("en");
    expect(detectLang(["fr-FR", "ko"], null)).toBe("ko");
    expect(detectLang(["fr-FR"], null)).toBe("en");
    expect(detectLang(["ko-KR"], "en")).toBe("en");
    expect(detectLang(["en-US"], "ko")).toBe("ko");
    expect(detectLang(["en-US"], "xx")).toBe("en");
  });

  it("fills placeholders", () => {
    expect(translator("en")("chat.branch", { index: 1, count: 2 })).toBe("1 / 2");
    expect(translator("ko")("settings.importDone", { count: 3 })).toBe("대화 3개를 가져왔습니다.");
  });
});
