// A node's balance: the parent's series against its children's, stacked, and the residual
// (parent minus children) per interval, from the public data route aggregated by delta_t.
/* global echarts */
import { esc, getJson } from "./http.js";
import { localAxis } from "./timeaxis.js";

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
const fmt = (x) =>
  x == null ? "—" : Number(x).toLocaleString("en", { maximumFractionDigits: Math.abs(x) < 10 ? 3 : 1 });
const PALETTE = ["--m2", "--m3", "--m4", "--m5", "--m1"];

async function series(d, mid) {
  const q = new URLSearchParams({
    since: d.since, till: d.till, delta_t: d.deltaT, get_last: "true", apply_multiplier: "true", is_chart: "true",
  });
  if (d.asOf) q.set("as_of", d.asOf);
  const body = await getJson(`/api/sensors/${d.cid}.${mid}/signals/${d.moid}/data?${q}`);
  const t = body.data.time;
  const v = body.data.value;
  const out = new Map();
  if (d.kind === "cumulative") {
    // registers at bucket starts: the energy of a bucket is the next register minus this one
    for (let i = 0; i + 1 < t.length; i++) {
      if (v[i] != null && v[i + 1] != null && t[i + 1] - t[i] === Number(d.deltaT) * 60000) out.set(t[i], v[i + 1] - v[i]);
    }
  } else {
    for (let i = 0; i < t.length; i++) if (v[i] != null) out.set(t[i], v[i]);
  }
  return { unit: body.unit, values: out };
}

async function draw(el) {
  const d = el.dataset;
  const children = JSON.parse(d.children || "[]");
  const parent = await series(d, d.mid);
  const kids = await Promise.all(children.map(async (c) => ({ ...c, ...(await series(d, c.mid)) })));
  const withData = kids.filter((k) => k.values.size);
  const times = [...parent.values.keys()].sort((a, b) => a - b);
  const residual = times.map((t) => {
    if (!withData.length || withData.some((k) => !k.values.has(t))) return [t, null];
    return [t, parent.values.get(t) - withData.reduce((s, k) => s + k.values.get(t), 0)];
  });
  const unit = parent.unit;
  const u = esc(unit);
  const all = withData.map((k, i) => ({
    id: `c${k.mid}`, name: k.name, type: "line", stack: "children", step: "start", showSymbol: false,
    areaStyle: { opacity: 0.55 }, lineStyle: { width: 0.5 },
    itemStyle: { color: css(PALETTE[i % PALETTE.length]) },
    data: times.map((t) => [t, k.values.get(t) ?? null]),
  }));
  all.push({
    id: "parent", name: `${d.name} (parent)`, type: "line", step: "start", showSymbol: false,
    lineStyle: { width: 2, color: css("--fg") }, itemStyle: { color: css("--fg") },
    data: times.map((t) => [t, parent.values.get(t)]),
  });
  all.push({
    id: "residual", name: "residual (parent − children)", type: "line", step: "start", showSymbol: false,
    lineStyle: { width: 1.5, type: "dashed", color: "#d32f2f" }, itemStyle: { color: "#d32f2f" },
    data: residual,
  });
  const chart = echarts.init(el);
  // ticks on the local boundaries of the page's time zone
  const ax = localAxis(d.tz || "UTC", Number(d.since), Number(d.till), Math.max(2, Math.floor(el.clientWidth / 90)));
  chart.setOption({
    animation: false,
    useUTC: true,
    textStyle: { color: css("--fg") },
    legend: { top: 0, textStyle: { color: css("--fg") } },
    grid: { left: 64, right: 16, top: 50, bottom: 56 },
    tooltip: { trigger: "axis", valueFormatter: (v) => `${fmt(v)} ${unit}` },
    xAxis: {
      type: "time", min: Number(d.since), max: Number(d.till),
      axisTick: { customValues: ax.ticks },
      axisLabel: { customValues: ax.ticks, formatter: ax.label, color: css("--muted"), hideOverlap: true, alignMaxLabel: "right" },
    },
    yAxis: { type: "value", name: unit, nameTextStyle: { color: css("--muted") }, axisLabel: { color: css("--muted") }, splitLine: { lineStyle: { color: css("--line") } } },
    dataZoom: [{ type: "inside" }, { type: "slider", height: 18, bottom: 8 }],
    series: all,
  });
  new ResizeObserver(() => chart.resize()).observe(el);
  const sum = (vals) => vals.reduce((s, x) => s + (x ?? 0), 0);
  const energy = d.kind !== "instantaneous";
  const agg = (vals) => {
    const v = vals.filter((x) => x != null);
    return v.length ? (energy ? sum(v) : sum(v) / v.length) : null;
  };
  const pTot = agg(times.map((t) => parent.values.get(t)));
  const rTot = agg(residual.map((p) => p[1]));
  const label = energy ? "total" : "mean";
  const missing = kids.filter((k) => !k.values.size).map((k) => k.name);
  el.parentElement.querySelector(".summary").innerHTML =
    `<div><dt>parent ${label}</dt><dd>${fmt(pTot)} ${u}</dd></div>` +
    withData.map((k) => `<div><dt>${esc(k.name)}</dt><dd>${fmt(agg([...k.values.values()]))} ${u}</dd></div>`).join("") +
    `<div><dt>residual ${label}</dt><dd>${fmt(rTot)} ${u}${pTot ? ` (${((rTot / pTot) * 100).toFixed(1)} %)` : ""}</dd></div>` +
    (missing.length ? `<div><dt>without this signal</dt><dd>${esc(missing.join(", "))}</dd></div>` : "");
  el.dataset.stacked = String(withData.length);
  el.dataset.state = "drawn";
}

for (const el of document.querySelectorAll(".balance[data-moid]")) {
  draw(el).catch((err) => {
    el.dataset.state = "error";
    el.textContent = `Could not load: ${err.message}`;
  });
}
