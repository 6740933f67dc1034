/** Settings: the energy the user's answers took, per day over the last 30 days. */
import { useEffect, useState } from "preact/hooks";
import { api } from "../lib/api";
import { formatJoules, formatWh } from "../lib/energy";
import type { EnergyReport } from "../lib/types";
import { useI18n } from "../i18n";

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));

export function EnergySection() {
  const { t } = useI18n();
  const [report, setReport] = useState<EnergyReport | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    api.energy().then(setReport).catch((e) => setError(errorText(e)));
  }, []);
  const anyEstimate = report?.days.some((d) => d.estimated) ?? false;
  return (
    <section data-testid="energy-section">
      <h3>{t("settings.energy")}</h3>
      <p class="muted small">{t("settings.energyIntro")}</p>
      {error && <p class="error">{t("common.error", { message: error })}</p>}
      {report && report.days.length === 0 && <p class="muted small">{t("settings.energyNone")}</p>}
      {report && report.days.length > 0 && (
        <>
          <table class="energy-table">
            <thead>
              <tr>
                <th>{t("settings.energyDay")}</th>
                <th>{t("settings.energyAnswers")}</th>
                <th>{t("settings.energyJoules")}</th>
              </tr>
            </thead>
            <tbody>
              {report.days.map((d) => (
                <tr data-testid="energy-day">
                  <td>{d.date}</td>
                  <td>{d.answers}</td>
                  <td>
                    {formatJoules(d.joules)}
                    {d.estimated ? " *" : ""}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <p data-testid="energy-total">{t("settings.energyTotal", { joules: formatJoules(report.total_joules), wh: formatWh(report.total_joules) })}</p>
          {anyEstimate && <p class="muted small">{t("settings.energyEstimated")}</p>}
        </>
      )}
    </section>
  );
}
