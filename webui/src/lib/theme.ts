/** Light/dark theme: the user's choice (remembered) or the system's, applied as `<html data-theme>`. */

export type ThemeChoice = "system" | "light" | "dark";
export const THEME_STORAGE_KEY = "daehwa.theme";

export function storedTheme(): ThemeChoice {
  try {
    const v = localStorage.getItem(THEME_STORAGE_KEY);
    if (v === "light" || v === "dark" || v === "system") return v;
  } catch {
    // no storage: follow the system
  }
  return "system";
}

export function storeTheme(choice: ThemeChoice): void {
  try {
    localStorage.setItem(THEME_STORAGE_KEY, choice);
  } catch {
    // private mode
  }
}

function systemDark(): boolean {
  return typeof matchMedia === "function" && matchMedia("(prefers-color-scheme: dark)").matches;
}

export function resolveTheme(choice: ThemeChoice): "light" | "dark" {
  if (choice === "system") return systemDark() ? "dark" : "light";
  return choice;
}

/** Applies the theme now and, for "system", whenever the system's changes; returns an unsubscribe. */
export function applyTheme(choice: ThemeChoice): () => void {
  const set = () => {
    document.documentElement.dataset.theme = resolveTheme(choice);
  };
  set();
  if (choice !== "system" || typeof matchMedia !== "function") return () => {};
  const mq = matchMedia("(prefers-color-scheme: dark)");
  mq.addEventListener("change", set);
  return () => mq.removeEventListener("change", set);
}
