/** Energy figures as people read them: joules for an answer, watt-hours for a day's total. */
import type { Energy } from "./types";
import type { Translate } from "../i18n";

/** `0.42 J`, `12 J`, `3.4 kJ`: two significant digits below 10, whole numbers above. */
export function formatJoules(j: number): string {
  if (!Number.isFinite(j) || j < 0) return "–";
  if (j >= 1000) return `${(j / 1000).toFixed(j >= 10000 ? 0 : 1)} kJ`;
  if (j >= 10) return `${Math.round(j)} J`;
  if (j >= 0.01) return `${j.toFixed(2)} J`;
  return `${(j * 1000).toFixed(1)} mJ`;
}

/** Watt-hours (1 Wh = 3600 J), for a day's total. */
export function formatWh(j: number): string {
  const wh = j / 3600;
  return wh >= 1 ? `${wh.toFixed(1)} Wh` : `${(wh * 1000).toFixed(1)} mWh`;
}

/** The tooltip saying how the figure was obtained. */
export function energyTooltip(e: Energy, t: Translate): string {
  return t(e.method === "rapl" ? "energy.rapl" : "energy.estimate", { joules: formatJoules(e.joules), wh: formatWh(e.joules) });
}
