// A time axis in the page's time zone: ticks on local boundaries (hours, midnights, Mondays,
// first days of months and years) and their labels. ECharts itself places ticks only in UTC or
// in the browser's zone, so the ticks are computed here and handed over as customValues.

const HOUR = 3_600_000;
const DAY = 86_400_000;
// (count, unit) steps from finest to coarsest; a week starts on Monday.
const STEPS = [[1, "h"], [2, "h"], [3, "h"], [6, "h"], [12, "h"], [1, "d"], [2, "d"], [1, "w"], [1, "m"], [3, "m"], [6, "m"], [1, "y"], [5, "y"]];
const APPROX = { h: HOUR, d: DAY, w: 7 * DAY, m: 30.4 * DAY, y: 365.25 * DAY };

function wallClock(tz) {
  const f = new Intl.DateTimeFormat("en-US", {
    timeZone: tz, hourCycle: "h23", year: "numeric", month: "numeric", day: "numeric", hour: "numeric", minute: "numeric",
  });
  const wall = (ms) => {
    const p = {};
    for (const x of f.formatToParts(ms)) p[x.type] = Number(x.value);
    return { y: p.year, mo: p.month - 1, d: p.day, h: p.hour, mi: p.minute };
  };
  const offset = (ms) => {
    const w = wall(ms);
    return Date.UTC(w.y, w.mo, w.d, w.h, w.mi) - Math.floor(ms / 60000) * 60000;
  };
  // local wall time → UTC ms (Date.UTC carries overflowing fields over: hour 25 is tomorrow)
  const utc = (y, mo, d, h = 0) => {
    const naive = Date.UTC(y, mo, d, h);
    return naive - offset(naive - offset(naive));
  };
  return { wall, utc };
}

/** Ticks within [a, b] on local boundaries, at most about `most` of them, and their labels. */
export function localAxis(tz, a, b, most) {
  const { wall, utc } = wallClock(tz);
  const [n, unit] = STEPS.find(([k, u]) => (b - a) / (k * APPROX[u]) <= most) || STEPS[STEPS.length - 1];
  const w = wall(a);
  const at = (i) => {
    if (unit === "h") return utc(w.y, w.mo, w.d, Math.floor(w.h / n) * n + i * n);
    if (unit === "d") return utc(w.y, w.mo, w.d + i * n);
    if (unit === "w") return utc(w.y, w.mo, w.d - ((new Date(Date.UTC(w.y, w.mo, w.d)).getUTCDay() + 6) % 7) + 7 * i);
    if (unit === "m") return utc(w.y, Math.floor(w.mo / n) * n + i * n, 1);
    return utc(Math.floor(w.y / n) * n + i * n, 0, 1);
  };
  const ticks = [];
  for (let i = 0; i < 1000; i++) {
    const t = at(i);
    if (t > b) break;
    if (t >= a && t !== ticks[ticks.length - 1]) ticks.push(t);
  }
  const short = (opts) => new Intl.DateTimeFormat("en-GB", { timeZone: tz, ...opts });
  const hm = short({ hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  const dm = short({ day: "numeric", month: "short" });
  const mon = short({ month: "short" });
  const yr = short({ year: "numeric" });
  const label = (t) => {
    const x = wall(t);
    if (unit === "h" && (x.h || x.mi)) return hm.format(t);
    if (unit === "h" || unit === "d" || unit === "w") return dm.format(t);
    if (unit === "m" && x.mo) return mon.format(t);
    return yr.format(t);
  };
  return { ticks, label };
}
