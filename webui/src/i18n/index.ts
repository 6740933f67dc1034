/**
 * Language choice and lookup. The language comes from localStorage when the user picked one, else
 * from `navigator.language` (Korean for any `ko*`, English otherwise).
 */
import { createContext } from "preact";
import { useContext } from "preact/hooks";
import { en, type Dictionary, type MessageKey } from "./en";
import { ko } from "./ko";

export type Lang = "en" | "ko";
export const LANGS: readonly Lang[] = ["en", "ko"];
export const LANG_NAMES: Record<Lang, string> = { en: "English", ko: "한국어" };
export const dictionaries: Record<Lang, Dictionary> = { en, ko };
export const LANG_STORAGE_KEY = "daehwa.lang";

export type { MessageKey };

export function detectLang(navigatorLanguages: readonly string[], stored: string | null): Lang {
  if (stored === "en" || stored === "ko") return stored;
  for (const l of navigatorLanguages) {
    const tag = l.toLowerCase();
    if (tag.startsWith("ko")) return "ko";
    if (tag.startsWith("en")) return "en";
  }
  return "en";
}

export function initialLang(): Lang {
  let stored: string | null = null;
  try {
    stored = localStorage.getItem(LANG_STORAGE_KEY);
  } catch {
    stored = null;
  }
  const langs = typeof navigator === "undefined" ? [] : navigator.languages?.length ? navigator.languages : [navigator.language];
  return detectLang(langs, stored);
}

export function storeLang(lang: Lang): void {
  try {
    localStorage.setItem(LANG_STORAGE_KEY, lang);
  } catch {
    // private mode: the choice lasts for this page only
  }
}

export type Translate = (key: MessageKey, vars?: Record<string, string | number>) => string;

/** A lookup function for one language; `{name}` placeholders are filled from `vars`. */
export function translator(lang: Lang): Translate {
  const dict = dictionaries[lang];
  return (key, vars) => {
    const text = dict[key] ?? en[key] ?? key;
    if (!vars) return text;
    return text.replace(/\{(\w+)\}/g, (m, name: string) => (name in vars ? String(vars[name]) : m));
  };
}

export interface I18n {
  lang: Lang;
  t: Translate;
  setLang: (lang: Lang) => void;
}

export const I18nContext = createContext<I18n>({ lang: "en", t: translator("en"), setLang: () => {} });
export const useI18n = (): I18n => useContext(I18nContext);
