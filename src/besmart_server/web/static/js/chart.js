// One chart per signal of a sensor page: fetches the public chart route (the session cookie
// authenticates it), draws each origin in its own style, marks meter installation periods and
// swaps, refetches finer data on zoom, and offers CSV of what is drawn and the curl call.
/* global echarts */
import { getJson, esc } from "./http.js";
import { localAxis } from "./timeaxis.js";

const ORIGINS = {
  1: { name: "measured", line: "solid", color: "--m1" },
  2: { name: "predicted", line: "dashed", color: "--m2" },
  3: { name: "calculated", line: [8, 3, 2, 3], color: "--m3" },
  4: { name: "estimated", line: "dotted", color: "--m4" },
  5: { name: "corrected", line: "solid", color: "--m5", symbols: true },
};

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
const iso = (ms) => new Date(ms).toISOString().replace(".000Z", "Z");
const fmt = (x) =>
  x == null ? "—" : Number(x).toLocaleString("en", { maximumFractionDigits: Math.abs(x) < 10 ? 3 : 1 });

// Full times in the page's time zone (tooltips, the axis pointer).
function zoned(tz) {
  const full = new Intl.DateTimeFormat("en-GB", {
    timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  });
  return (v) => `${full.format(v)} ${tz}`;
}

// The x axis's ticks and labels on the local boundaries of [a, b] (about one per 90 px).
function xTicks(el, a, b) {
  const ax = localAxis(el.dataset.tz || "UTC", a, b, Math.max(2, Math.floor(el.clientWidth / 90)));
  return {
    axisTick: { customValues: ax.ticks },
    axisLabel: { customValues: ax.ticks, formatter: ax.label, color: css("--muted"), hideOverlap: true, alignMaxLabel: "right" },
  };
}

function chartUrl(el, since, till, maxPoints, register, moid = el.dataset.moid) {
  const d = el.dataset;
  const q = new URLSearchParams({ since, till, max_points: maxPoints });
  if (d.asOf) q.set("as_of", d.asOf);
  if (register) q.set("register", "true");
  return `/api/sensors/${d.cid}.${d.mid}/signals/${moid}/chart?${q}`;
}

function pairs(s, shift = 0) {
  const out = new Array(s.time.length);
  for (let i = 0; i < s.time.length; i++) out[i] = [s.time[i] + shift, s.value[i]];
  return out;
}

function seriesOf(body, step) {
  return body.series.map((s) => {
    const o = ORIGINS[s.origin] || { name: String(s.origin), line: "solid", color: "--m1" };
    return {
      id: `o${s.origin}`,
      name: `${o.name}`,
      type: "line",
      data: pairs(s),
      step: step ? "start" : false,
      showSymbol: Boolean(o.symbols),
      symbolSize: 4,
      sampling: undefined,
      connectNulls: false,
      lineStyle: { width: 1.5, type: o.line, color: css(o.color) },
      itemStyle: { color: css(o.color) },
      areaStyle: step && s.origin === 1 ? { opacity: 0.15 } : undefined,
    };
  });
}

// A forecast's P10-P90 band: one polygon through the P10 points and back along the P90 ones
// (each reduced on its own by the chart route), clipped to the plot.
async function bandSeries(el, since, till, maxPoints, state) {
  const [lo, hi] = await Promise.all(
    el.dataset.band.split(",").map((moid) => getJson(chartUrl(el, since, till, maxPoints, false, moid))),
  );
  const pick = (b) => b.series.find((s) => s.origin === 2) || b.series[0];
  const p10 = pick(lo);
  const p90 = pick(hi);
  if (!p10 || !p90) return null;
  const low = pairs(p10).filter((p) => p[1] != null);
  const high = pairs(p90).filter((p) => p[1] != null);
  el.dataset.bandPoints = String(low.length + high.length);
  if (!low.length || !high.length) return null;
  state.extra.push({ name: "forecast P10", unit: lo.unit, data: low }, { name: "forecast P90", unit: hi.unit, data: high });
  const color = css("--m2");
  const ys = [...low, ...high].map((p) => p[1]);
  return {
    id: "band",
    name: "forecast P10–P90",
    type: "custom",
    clip: true,
    silent: true,
    z: 1,
    itemStyle: { color, opacity: 0.25 },
    // two items only so that the y axis spans the band; the polygon is drawn once
    data: [[low[0][0], Math.min(...ys)], [high[0][0], Math.max(...ys)]],
    renderItem: (params, api) => {
      if (params.dataIndex !== 0) return null;
      const points = [...low, ...high.slice().reverse()].map((p) => api.coord(p));
      return { type: "polygon", shape: { points }, style: { fill: color, opacity: 0.25 } };
    },
  };
}

function periodMarks(el, since, till) {
  const periods = JSON.parse(el.dataset.periods || "[]");
  const areas = [];
  const swaps = [];
  periods.forEach((p, i) => {
    const a = Math.max(p.since, since);
    const b = Math.min(p.till ?? till, till);
    if (b > a) {
      areas.push([
        { xAxis: a, name: p.meter || "", itemStyle: { color: i % 2 ? "rgba(128,128,128,0.10)" : "rgba(128,128,128,0.04)" } },
        { xAxis: b },
      ]);
    }
    if (i > 0 && p.since > since && p.since < till) swaps.push({ xAxis: p.since, name: `swap → ${p.meter || "?"}` });
  });
  return {
    id: "periods",
    name: "installation periods",
    type: "line",
    data: [],
    markArea: { silent: true, label: { color: css("--muted"), position: "insideTopLeft", fontSize: 11 }, data: areas },
    markLine: {
      silent: true,
      symbol: "none",
      lineStyle: { color: "#d32f2f", type: "solid", width: 1.5 },
      label: { formatter: "{b}", position: "insideEndBottom", color: css("--fg"), fontSize: 11 },
      data: swaps,
    },
  };
}

// Validation flags (the VEE events of the window) as shaded spans labelled by rule: errors in
// the error colour, warnings in the late colour; a span too narrow to see is widened to 1/300 of
// the window so that a one-point spike still shows.
async function flagSeries(el, since, till) {
  const d = el.dataset;
  const body = await getJson(`/api/sensors/${d.cid}.${d.mid}/signals/${d.moid}/quality?${new URLSearchParams({ since, till })}`);
  const min = (till - since) / 300;
  const data = body.events.map((e) => {
    const color = e.severity === "error" ? css("--error") : css("--late");
    const open = e.state === "open";
    return [
      { xAxis: Math.max(e.since, since), name: `${e.rule}${open ? "" : ` (${e.state})`}`, itemStyle: { color, opacity: open ? 0.22 : 0.1 } },
      { xAxis: Math.min(Math.max(e.till, e.since + min), till) },
    ];
  });
  return {
    count: body.events.length,
    series: {
      id: "flags",
      name: "validation flags",
      type: "line",
      data: [],
      itemStyle: { color: css("--late") },
      markArea: { silent: false, label: { color: css("--fg"), position: "insideTop", fontSize: 10 }, data },
    },
  };
}

function renderSummary(el, body) {
  const dl = el.parentElement.querySelector(".summary");
  const wanted = (el.dataset.summary || "").split(",").filter(Boolean);
  const s = body.summary || {};
  const unit = esc(body.unit);
  const label = { sum: body.mode === "energy" ? "total" : "sum", mean: "mean", min: "min", max: "max" };
  const parts = wanted.map((k) => `<div><dt>${label[k] || k}</dt><dd>${fmt(s[k])} ${unit}</dd></div>`);
  const what = body.mode === "energy" ? `energy per ${Math.round(body.bucket_ms / 60000)} min` : body.mode;
  parts.push(`<div><dt>points</dt><dd>${body.series.reduce((n, x) => n + x.points, 0).toLocaleString("en")}</dd></div>`);
  parts.push(`<div><dt>shown as</dt><dd>${what}</dd></div>`);
  for (const w of body.warnings || []) parts.push(`<div class="warning"><dt>note</dt><dd>${esc(w)}</dd></div>`);
  const fc = body.forecast;
  if (fc && fc.compared) {
    const pct = (x) => (x == null ? "—" : `${(x * 100).toFixed(1)} %`);
    parts.push(`<div class="forecast"><dt>predicted vs measured (${fc.compared} points)</dt><dd>MAE ${fmt(fc.mae)} ${unit}, rMAE ${pct(fc.rmae)}, skill vs persistence 1 d ${fmt(fc.skill_1d)}, 7 d ${fmt(fc.skill_7d)}</dd></div>`);
  }
  dl.innerHTML = parts.join("");
}

function toCsv(state) {
  const lines = ["time_utc,time_ms,series,value,unit"];
  const unit = state.body.unit;
  for (const s of state.shown) {
    for (const [t, v] of s.data) lines.push(`${iso(t)},${t},${s.name},${v ?? ""},${unit}`);
  }
  for (const x of state.extra) {
    for (const [t, v] of x.data) lines.push(`${iso(t)},${t},${x.name},${v ?? ""},${x.unit}`);
  }
  return lines.join("\n") + "\n";
}

function download(name, text) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  a.download = name;
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

async function showVersions(el, state, t) {
  const box = el.parentElement.querySelector(".versions");
  const d = el.dataset;
  // A bucket of energy spans bucket_ms; a min/max point is one stored point at its own time.
  const span = state.body.mode === "energy" ? state.body.bucket_ms : 1;
  const q = new URLSearchParams({ since: t, till: t + span, raw: "true" });
  const body = await getJson(`/api/sensors/${d.cid}.${d.mid}/signals/${d.moid}/data?${q}`);
  const x = body.data;
  const rows = x.time.map((tt, i) =>
    `<tr><td>${iso(tt)}</td><td>${fmt(x.value[i])}</td><td>${ORIGINS[x.origin[i]]?.name ?? x.origin[i]}</td><td>${esc(x.type[i])}</td><td>${x.acq_time ? iso(x.acq_time[i]) : "—"}</td></tr>`);
  box.hidden = false;
  box.innerHTML = `<h4>Versions at ${iso(t)}${span > 1 ? ` (+${Math.round(span / 60000)} min)` : ""}, in ${esc(body.unit)}</h4>` +
    (rows.length
      ? `<div class="table-wrap"><table><thead><tr><th>time</th><th>value</th><th>origin</th><th>type</th><th>acquired</th></tr></thead><tbody>${rows.join("")}</tbody></table></div>`
      : `<p class="muted">No stored point there.</p>`);
}

async function draw(el) {
  const d = el.dataset;
  const since = Number(d.since);
  const till = Number(d.till);
  const chart = echarts.init(el, null, { renderer: "canvas" });
  const state = { body: null, shown: [], register: false, coarse: null, extra: [] };
  const width = () => Math.max(100, Math.round(el.clientWidth * 2));

  async function load() {
    el.dataset.state = "loading";
    const body = await getJson(chartUrl(el, since, till, width(), state.register));
    state.body = body;
    const step = body.mode === "energy";
    const series = seriesOf(body, step);
    state.coarse = series;
    state.shown = series;
    const all = [...series];
    state.extra = [];
    if (JSON.parse(d.periods || "[]").length) all.push(periodMarks(el, since, till));
    if (d.band) {
      const band = await bandSeries(el, since, till, width(), state);
      if (band) all.push(band);
    }
    if (d.compare) {
      const ps = Number(d.prevSince);
      const prev = await getJson(chartUrl(el, ps, Number(d.prevTill), width(), state.register));
      const m = prev.series.find((s) => s.origin === 1) || prev.series[0];
      if (m) {
        state.extra.push({ name: "previous period (shifted)", unit: prev.unit, data: pairs(m, since - ps) });
        all.push({
          id: "prev", name: "previous period", type: "line", data: pairs(m, since - ps), step: step ? "start" : false,
          showSymbol: false, lineStyle: { width: 1, type: "dashed", color: css("--muted") }, itemStyle: { color: css("--muted") },
        });
      }
    }
    const yAxes = [{ type: "value", name: body.unit, scale: !step, nameTextStyle: { color: css("--muted") }, axisLabel: { color: css("--muted") }, splitLine: { lineStyle: { color: css("--line") } } }];
    if (d.weatherUrl) {
      const q = new URLSearchParams({ since, till, is_chart: "true", get_last: "true" });
      const wx = await getJson(`${d.weatherUrl}?${q}`);
      const x = wx.data;
      yAxes.push({ type: "value", name: wx.unit, scale: true, position: "right", nameTextStyle: { color: css("--muted") }, axisLabel: { color: css("--muted") }, splitLine: { show: false } });
      state.extra.push({ name: d.weatherName, unit: wx.unit, data: x.time.map((t, i) => [t, x.value[i]]) });
      all.push({
        id: "weather", name: `${d.weatherName} (${wx.unit})`, type: "line", yAxisIndex: 1, showSymbol: false,
        data: x.time.map((t, i) => [t, x.value[i]]),
        lineStyle: { width: 1, color: css("--late") }, itemStyle: { color: css("--late") },
        tooltip: { valueFormatter: (v) => `${fmt(v)} ${wx.unit}` },
      });
    }
    const full = zoned(d.tz || "UTC");
    chart.setOption({
      animation: false,
      useUTC: true,
      textStyle: { color: css("--fg") },
      grid: { left: 64, right: d.weatherUrl ? 56 : 16, top: 34, bottom: 56 },
      legend: { top: 0, right: 8, textStyle: { color: css("--fg") } },
      tooltip: {
        trigger: "axis",
        valueFormatter: (v) => `${fmt(v)} ${body.unit}`,
        axisPointer: { label: { formatter: (p) => full(p.value) } },
      },
      xAxis: {
        type: "time", min: since, max: till, axisPointer: { label: { formatter: (p) => full(p.value) } },
        ...xTicks(el, since, till),
      },
      yAxis: yAxes,
      dataZoom: [
        { type: "inside", filterMode: "none" },
        { type: "slider", filterMode: "none", height: 18, bottom: 8, textStyle: { color: css("--muted") } },
      ],
      series: all,
    }, { notMerge: true });
    renderSummary(el, body);
    el.dataset.points = String(body.series.reduce((n, s) => n + s.time.length, 0));
    el.dataset.state = "drawn";
    // flags after the chart is drawn: validating a window's completeness is not on the way
    flagSeries(el, since, till).then((f) => {
      if (f.count) chart.setOption({ series: [f.series] });
      el.dataset.flags = String(f.count);
    }).catch((err) => { el.dataset.flags = "error"; console.warn(err); });
  }

  let zoomTimer = null;
  chart.on("datazoom", () => {
    const view = chart.getOption().dataZoom[0];
    chart.setOption({ xAxis: xTicks(el, view.startValue, view.endValue) });
    clearTimeout(zoomTimer);
    zoomTimer = setTimeout(async () => {
      const dz = chart.getOption().dataZoom[0];
      const a = Math.floor(dz.startValue);
      const b = Math.ceil(dz.endValue);
      if (!(b > a) || (a <= since && b >= till)) {
        chart.setOption({ series: state.coarse });
        state.shown = state.coarse;
        return;
      }
      const body = await getJson(chartUrl(el, a, b, width(), state.register));
      const fine = seriesOf(body, body.mode === "energy");
      const merged = state.coarse.map((c) => {
        const f = fine.find((x) => x.id === c.id);
        if (!f) return c;
        const before = c.data.filter((p) => p[0] < a);
        const after = c.data.filter((p) => p[0] >= b);
        return { ...c, data: [...before, ...f.data, ...after] };
      });
      state.shown = merged;
      chart.setOption({ series: merged });
      el.dataset.zoomed = `${a}-${b}`;
    }, 250);
  });

  chart.getZr().on("click", (e) => {
    if (!state.body || !chart.containPixel({ gridIndex: 0 }, [e.offsetX, e.offsetY])) return;
    const t = chart.convertFromPixel({ xAxisIndex: 0 }, [e.offsetX, e.offsetY])[0];
    let best = null;
    for (const s of state.shown) {
      for (const p of s.data) if (best == null || Math.abs(p[0] - t) < Math.abs(best - t)) best = p[0];
    }
    if (best != null) showVersions(el, state, best).catch((err) => console.warn(err));
  });

  // Keyboard: the arrow keys move a cursor over the first series' points (its tooltip shows
  // the value), Enter lists the versions of the point under it, as a click does.
  let cursor = -1;
  el.addEventListener("keydown", (ev) => {
    const s = state.shown[0];
    if (!s || !s.data.length) return;
    const step = { ArrowRight: 1, ArrowLeft: -1, PageDown: 20, PageUp: -20, Home: -Infinity, End: Infinity }[ev.key];
    if (step !== undefined) {
      cursor = Math.max(0, Math.min(s.data.length - 1, cursor < 0 && step > 0 ? 0 : cursor + step));
      chart.dispatchAction({ type: "showTip", seriesIndex: 0, dataIndex: cursor });
      el.dataset.cursor = String(s.data[cursor][0]);
      ev.preventDefault();
    } else if (ev.key === "Enter" && cursor >= 0) {
      showVersions(el, state, s.data[cursor][0]).catch((err) => console.warn(err));
      ev.preventDefault();
    }
  });

  const card = el.closest(".chart-card");
  card.querySelector(".register-toggle")?.addEventListener("change", (ev) => {
    state.register = ev.target.checked;
    load().catch(fail);
  });
  card.querySelector(".csv").addEventListener("click", () => {
    download(`${d.symbol}_${d.cid}.${d.mid}_${iso(since)}_${iso(till)}.csv`.replace(/:/g, ""), toCsv(state));
  });
  card.querySelector(".curl").addEventListener("click", async () => {
    const url = new URL(chartUrl(el, since, till, width(), state.register), location.origin);
    const cmd = `curl -s -H "Authorization: Bearer $TOKEN" '${url}'`;
    const out = card.querySelector(".curl-out");
    out.hidden = false;
    out.textContent = cmd;
    try { await navigator.clipboard.writeText(cmd); out.textContent += "\n(copied)"; } catch { /* shown above */ }
  });
  new ResizeObserver(() => chart.resize()).observe(el);

  function fail(err) {
    console.error(err);  // a drawing fault's stack, beside an HTTP error's status and body
    el.dataset.state = "error";
    el.textContent = `Could not load this chart: ${err.message}`;
  }
  await load().catch(fail);
}

for (const el of document.querySelectorAll(".chart[data-moid]")) draw(el);
