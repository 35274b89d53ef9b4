// One calendar heatmap per signal: the share of expected points measured per UTC day, read
// from the public completeness route, with the list of gaps; the validation flags (VEE events
// of the public quality route) mark their days and are listed.
/* global echarts */
import { getJson, esc } from "./http.js";

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
// Days and times in the page's time zone (en-CA writes dates as YYYY-MM-DD).
let TZ = "UTC";
const dayOf = (ms) => new Intl.DateTimeFormat("en-CA", { timeZone: TZ, year: "numeric", month: "2-digit", day: "2-digit" }).format(ms);
const iso = (ms) => `${dayOf(ms)} ${new Intl.DateTimeFormat("en-GB", { timeZone: TZ, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(ms)}`;

function duration(ms) {
  const m = Math.round(ms / 60000);
  if (m < 120) return `${m} min`;
  if (m < 2880) return `${Math.round(m / 60)} h`;
  return `${Math.round(m / 1440)} d`;
}

// The validation flags per day of the heatmap (`starts`, sorted): each event marks every day
// it touches.
function flagsByDay(events, starts) {
  const out = new Map();
  for (const e of events) {
    starts.forEach((s, i) => {
      const end = i + 1 < starts.length ? starts[i + 1] : Infinity;
      if (e.since < end && Math.max(e.till, e.since + 1) > s) {
        const k = dayOf(s);
        if (!out.has(k)) out.set(k, []);
        out.get(k).push(e);
      }
    });
  }
  return out;
}

function detailText(detail) {
  return Object.entries(detail || {}).map(([k, v]) => `${k} ${typeof v === "number" ? Number(v.toPrecision(4)) : v}`).join(", ");
}

async function draw(el) {
  const d = el.dataset;
  TZ = d.tz || "UTC";
  const q = new URLSearchParams({ since: d.since, till: d.till, tz: TZ });
  if (d.asOf) q.set("as_of", d.asOf);
  const base = `/api/sensors/${d.cid}.${d.mid}/signals/${d.moid}`;
  const [body, quality] = await Promise.all([
    getJson(`${base}/completeness?${q}`),
    getJson(`${base}/quality?${new URLSearchParams({ since: d.since, till: d.till })}`),
  ]);
  const card = el.closest("article");
  const days = body.days;
  const data = days.day.map((t, i) => [dayOf(t), days.expected[i] ? Math.min(days.count[i] / days.expected[i], 1) : 0]);
  const flagged = flagsByDay(quality.events, days.day);
  const flagData = [...flagged.entries()].map(([day, es]) => ({
    value: [day, es.length],
    events: es,
    itemStyle: { color: es.some((e) => e.severity === "error") ? css("--error") : css("--fg") },
  }));
  const last = Number(d.till) - 1;
  // Square-ish cells of at most 40 px: a week or a month is a short row of readable days,
  // not one column stretched over the page; a year's 53 weeks still fit the width.
  const weeks = Math.ceil((last - Number(d.since)) / (7 * 86400000)) + 1;
  const cell = Math.max(10, Math.min(40, Math.floor((el.clientWidth - 56) / weeks)));
  const chart = echarts.init(el);
  chart.setOption({
    animation: false,
    tooltip: {
      formatter: (p) => p.seriesId === "flags"
        ? `${p.value[0]}: ${p.data.events.map((e) => `${esc(e.rule)} (${e.severity}, ${e.state})`).join("<br>")}`
        : `${p.value[0]}: ${(p.value[1] * 100).toFixed(1)} %${flagged.has(p.value[0]) ? ` · ${flagged.get(p.value[0]).length} flag(s)` : ""}`,
    },
    visualMap: {
      seriesIndex: 0, min: 0, max: 1, calculable: false, orient: "horizontal", left: 40, bottom: 0,
      inRange: { color: ["#b71c1c", "#f9a825", "#2e7d32"] }, textStyle: { color: css("--muted") },
      formatter: (v) => `${Math.round(v * 100)} %`,
    },
    calendar: {
      range: [dayOf(Number(d.since)), dayOf(last)], top: 28, left: 40, cellSize: [cell, Math.min(cell, 18)],
      dayLabel: { color: css("--muted"), firstDay: 1 }, monthLabel: { color: css("--muted") }, yearLabel: { show: false },
      itemStyle: { color: css("--card"), borderColor: css("--line") }, splitLine: { lineStyle: { color: css("--muted") } },
    },
    series: [
      { id: "completeness", type: "heatmap", coordinateSystem: "calendar", data },
      // a flagged day carries a diamond (error colour when any flag is an error)
      { id: "flags", name: "validation flags", type: "scatter", coordinateSystem: "calendar", symbol: "diamond",
        symbolSize: 9, data: flagData, itemStyle: { borderColor: css("--card"), borderWidth: 1 } },
    ],
  });
  new ResizeObserver(() => chart.resize()).observe(el);
  const pct = body.expected ? ((body.points / body.expected) * 100).toFixed(1) : "—";
  card.querySelector(".q-summary").textContent = body.step_ms
    ? `${body.points.toLocaleString("en")} of ${body.expected.toLocaleString("en")} expected points (${pct} %) at one per ${duration(body.step_ms)}; ${body.gap_count} gap${body.gap_count === 1 ? "" : "s"}.`
    : "Too few points to tell the reading interval.";
  const rows = body.gaps.map((g) => `<tr><td>${iso(g.since)}</td><td>${iso(g.till)}</td><td>${duration(g.till - g.since)}</td><td>${g.missing}</td></tr>`);
  card.querySelector(".gap-list").innerHTML = rows.length
    ? `<div class="table-wrap"><table><thead><tr><th scope="col">from (${esc(TZ)})</th><th scope="col">to</th><th scope="col">length</th><th scope="col">missing points</th></tr></thead><tbody>${rows.join("")}</tbody></table></div>`
    : `<p class="muted">No gaps.</p>`;
  const open = quality.events.filter((e) => e.state === "open").length;
  card.querySelector(".flag-count").textContent = `${quality.events.length} (${open} open)`;
  const flagRows = quality.events.map((e) =>
    `<tr><td>${esc(e.rule)}</td><td>${esc(e.severity)}</td><td>${esc(e.state)}</td><td>${iso(e.since)}</td><td>${iso(e.till)}</td><td>${esc(detailText(e.detail))}</td></tr>`);
  card.querySelector(".flag-list").innerHTML = flagRows.length
    ? `<div class="table-wrap"><table><thead><tr><th scope="col">rule</th><th scope="col">severity</th><th scope="col">state</th><th scope="col">from (${esc(TZ)})</th><th scope="col">to</th><th scope="col">detail</th></tr></thead><tbody>${flagRows.join("")}</tbody></table></div>`
    : `<p class="muted">No validation flags in this window.</p>`;
  el.dataset.state = "drawn";
  el.dataset.days = String(data.length);
  el.dataset.flags = String(quality.events.length);
}

for (const el of document.querySelectorAll(".heatmap[data-moid]")) {
  draw(el).catch((err) => {
    el.dataset.state = "error";
    el.textContent = `Could not load: ${err.message}`;
  });
}
