// One calendar heatmap per signal: the share of expected points measured per UTC day, read
// from the public completeness route, with the list of gaps.
/* global echarts */

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
const iso = (ms) => new Date(ms).toISOString().slice(0, 16).replace("T", " ");
const dayOf = (ms) => new Date(ms).toISOString().slice(0, 10);

function duration(ms) {
  const m = Math.round(ms / 60000);
  if (m < 120) return `${m} min`;
  if (m < 2880) return `${Math.round(m / 60)} h`;
  return `${Math.round(m / 1440)} d`;
}

async function draw(el) {
  const d = el.dataset;
  const q = new URLSearchParams({ since: d.since, till: d.till });
  if (d.asOf) q.set("as_of", d.asOf);
  const r = await fetch(`/api/sensors/${d.cid}.${d.mid}/signals/${d.moid}/completeness?${q}`, {
    credentials: "same-origin",
  });
  if (!r.ok) throw new Error(`${r.status} ${await r.text()}`);
  const body = await r.json();
  const card = el.closest("article");
  const days = body.days;
  const data = days.day.map((t, i) => [dayOf(t), days.expected[i] ? Math.min(days.count[i] / days.expected[i], 1) : 0]);
  const last = Number(d.till) - 1;
  const chart = echarts.init(el);
  chart.setOption({
    animation: false,
    tooltip: { formatter: (p) => `${p.value[0]}: ${(p.value[1] * 100).toFixed(1)} %` },
    visualMap: {
      min: 0, max: 1, calculable: false, orient: "horizontal", left: "center", bottom: 0,
      inRange: { color: ["#b71c1c", "#f9a825", "#2e7d32"] }, textStyle: { color: css("--muted") },
      formatter: (v) => `${Math.round(v * 100)} %`,
    },
    calendar: {
      range: [dayOf(Number(d.since)), dayOf(last)], top: 28, left: 40, right: 16, cellSize: ["auto", 14],
      dayLabel: { color: css("--muted"), firstDay: 1 }, monthLabel: { color: css("--muted") }, yearLabel: { show: false },
      itemStyle: { color: css("--card"), borderColor: css("--line") }, splitLine: { lineStyle: { color: css("--muted") } },
    },
    series: [{ type: "heatmap", coordinateSystem: "calendar", data }],
  });
  new ResizeObserver(() => chart.resize()).observe(el);
  const pct = body.expected ? ((body.points / body.expected) * 100).toFixed(1) : "—";
  card.querySelector(".q-summary").textContent = body.step_ms
    ? `${body.points.toLocaleString("en")} of ${body.expected.toLocaleString("en")} expected points (${pct} %) at one per ${duration(body.step_ms)}; ${body.gap_count} gap${body.gap_count === 1 ? "" : "s"}.`
    : "Too few points to tell the reading interval.";
  const rows = body.gaps.map((g) => `<tr><td>${iso(g.since)}</td><td>${iso(g.till)}</td><td>${duration(g.till - g.since)}</td><td>${g.missing}</td></tr>`);
  card.querySelector(".gap-list").innerHTML = rows.length
    ? `<div class="table-wrap"><table><thead><tr><th scope="col">from (UTC)</th><th scope="col">to</th><th scope="col">length</th><th scope="col">missing points</th></tr></thead><tbody>${rows.join("")}</tbody></table></div>`
    : `<p class="muted">No gaps.</p>`;
  el.dataset.state = "drawn";
  el.dataset.days = String(data.length);
}

for (const el of document.querySelectorAll(".heatmap[data-moid]")) {
  draw(el).catch((err) => {
    el.dataset.state = "error";
    el.textContent = `Could not load: ${err.message}`;
  });
}
