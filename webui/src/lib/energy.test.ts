import { describe, expect, it } from "vitest";
import { energyTooltip, formatJoules, formatWh } from "./energy";
import { translator } from "../i18n";

describe("energy figures", () => {
  it("formats joules at every scale", () => {
    expect(formatJoules(0.004)).toBe("4.0 mJ");
    expect(formatJoules(0.42)).toBe("0.42 J");
    expect(formatJoules(12.4)).toBe("12 J");
    expect(formatJoules(3400)).toBe("3.4 kJ");
    expect(formatJoules(45000)).toBe("45 kJ");
    expect(formatJoules(-1)).toBe("–");
    expect(formatWh(7200)).toBe("2.0 Wh");
    expect(formatWh(36)).toBe("10.0 mWh");
  });

  it("says how the figure was obtained, in Korean and English", () => {
    const en = translator("en");
    const ko = translator("ko");
    expect(energyTooltip({ joules: 1.5, method: "estimate" }, en)).toContain("estimate");
    expect(energyTooltip({ joules: 1.5, method: "rapl" }, en)).toContain("RAPL");
    expect(energyTooltip({ joules: 1.5, method: "estimate" }, ko)).toContain("추정");
    expect(energyTooltip({ joules: 1.5, method: "rapl" }, ko)).toContain("RAPL");
    expect(energyTooltip({ joules: 1.5, method: "rapl" }, ko)).toContain("1.50 J");
  });
});
