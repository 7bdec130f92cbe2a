// Tollgate's dashboard: reads /dashboard/data and draws it with plain DOM and SVG (no library, works offline).
// Every figure is written with textContent (names come from requests), and carries its raw value in data-value.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
let timer = null;

function token() {
  const match = /(?:^|&)token=([^&]*)/.exec(location.hash.slice(1));
  if (match) sessionStorage.setItem("tollgate-token", decodeURIComponent(match[1]));
  return sessionStorage.getItem("tollgate-token");
}

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) node.setAttribute(k, v);
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

const integer = (v) => (v === null || v === undefined ? "–" : Math.round(v).toLocaleString("en-US"));
const money = (v) => (v === null || v === undefined ? "–" : "$" + Number(v).toFixed(v !== 0 && Math.abs(v) < 0.01 ? 6 : 2));
const ms = (v) => (v === null || v === undefined ? "–" : (v >= 1000 ? (v / 1000).toFixed(2) + " s" : Math.round(v) + " ms"));
const seconds = (v) => (v === null || v === undefined ? "–" : v >= 3600 ? (v / 3600).toFixed(1) + " h" : v >= 60 ? Math.round(v / 60) + " min" : Math.ceil(v) + " s");
const percent = (v) => (v === null || v === undefined ? "–" : (v * 100).toFixed(1) + "%");
const name = (v) => (v === "" || v === null || v === undefined ? "(none)" : v);

function cell(field, value, format) {
  return el("td", {"data-field": field, "data-value": value === null ? "" : value, class: format === name ? "" : "num"},
            format(value));
}

function table(id, columns, rows, keyOf, emptyText) {
  const t = $(id);
  t.replaceChildren();
  const head = el("tr");
  for (const [, title] of columns) head.append(el("th", {}, title));
  t.append(head);
  if (!rows.length) {
    const tr = el("tr");
    tr.append(el("td", {class: "empty", colspan: columns.length}, emptyText));
    t.append(tr);
    return;
  }
  for (const row of rows) {
    const tr = el("tr", {"data-key": keyOf(row)});
    for (const [field, , format] of columns) {
      tr.append(typeof format === "function" && format.length === 2 ? format(row, field) : cell(field, row[field], format));
    }
    t.append(tr);
  }
}

const GROUP_COLUMNS = [
  ["name", "name", name], ["requests", "requests", integer], ["prompt_tokens", "prompt tokens", integer],
  ["completion_tokens", "completion tokens", integer], ["cost", "cost", money], ["errors", "errors", integer],
  ["refusals", "refusals", integer], ["latency_p50_ms", "p50", ms], ["latency_p95_ms", "p95", ms],
  ["ttft_p50_ms", "TTFT p50", ms], ["ttft_p95_ms", "TTFT p95", ms],
];

function kpis(totals) {
  const items = [
    ["requests", "Requests", totals.requests, integer], ["prompt_tokens", "Prompt tokens", totals.prompt_tokens, integer],
    ["completion_tokens", "Completion tokens", totals.completion_tokens, integer], ["cost", "Cost", totals.cost, money],
    ["errors", "Errors", totals.errors, integer], ["refusals", "Refusals", totals.refusals, integer],
    ["blocks", "Guard blocks", totals.blocks, integer], ["cache_hit_rate", "Cache hit rate", totals.cache_hit_rate, percent],
    ["latency_p50_ms", "Latency p50", totals.latency_p50_ms, ms], ["latency_p95_ms", "Latency p95", totals.latency_p95_ms, ms],
    ["ttft_p50_ms", "TTFT p50", totals.ttft_p50_ms, ms], ["ttft_p95_ms", "TTFT p95", totals.ttft_p95_ms, ms],
  ];
  $("kpis").replaceChildren(...items.map(([field, label, value, format]) => {
    const box = el("div", {class: "kpi", "data-kpi": field, "data-value": value === null ? "" : value});
    box.append(el("div", {class: "label"}, label), el("div", {class: "value"}, format(value)));
    return box;
  }));
}

function chart(id, points, field, format) {
  const svg = $(id);
  svg.replaceChildren();
  const width = 600, height = 160, left = 56, bottom = 18, top = 8;
  const largest = Math.max(0, ...points.map((p) => p[field]));
  const scale = largest > 0 ? (height - bottom - top) / largest : 0;
  const slot = (width - left) / Math.max(1, points.length);
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  add("line", {class: "axis", x1: left, y1: height - bottom, x2: width, y2: height - bottom});
  add("text", {x: 2, y: top + 8}, format(largest));
  add("text", {x: 2, y: height - bottom}, format(0));
  points.forEach((p, i) => {
    const h = p[field] * scale;
    const bar = add("rect", {class: "bar", x: left + i * slot + 1, y: height - bottom - h, width: Math.max(1, slot - 2),
                              height: h, "data-value": p[field]});
    const title = document.createElementNS(SVG, "title");
    title.textContent = new Date(p.t * 1000).toLocaleTimeString() + ": " + format(p[field]);
    bar.append(title);
  });
  if (points.length) {
    add("text", {x: left, y: height - 4}, new Date(points[0].t * 1000).toLocaleTimeString());
    add("text", {x: width - 60, y: height - 4}, new Date(points[points.length - 1].t * 1000).toLocaleTimeString());
  }
}

// A bar of used / limit: budgets count micro-units of money, token-limit windows tokens.
function meter(row, _field) {
  const [used, limit] = row.limit_micros !== undefined ? [row.spent_micros, row.limit_micros] : [row.used, row.limit];
  const td = el("td", {"data-field": "share", "data-value": limit ? used / limit : ""});
  const share = limit ? used / limit : 0;
  const box = el("span", {class: "meter" + (share >= 1 ? " over" : share >= 0.8 ? " warn" : "")});
  const fill = el("span");
  fill.style.width = Math.min(100, share * 100).toFixed(1) + "%";
  box.append(fill);
  td.append(box, document.createTextNode(" " + percent(share)));
  return td;
}

function render(data) {
  kpis(data.totals);
  chart("chart-requests", data.series, "requests", integer);
  chart("chart-tokens", data.series, "tokens", integer);
  chart("chart-cost", data.series, "cost", money);
  const budgets = data.budgets.filter((b) => !b.error).map((b) => ({...b, scope: b.label ? b.who + " (" + b.label + ")" : b.who}));
  table("budgets", [["budget", "budget", name], ["scope", "scope", name], ["period", "period", name],
                    ["spent", "spent", name], ["limit", "limit", name], ["remaining", "remaining", name],
                    ["currency", "currency", name], ["share", "used", meter], ["store", "store", name]],
        budgets, (b) => b.budget + "|" + b.who, "no budget has been charged yet");
  for (const failed of data.budgets.filter((b) => b.error)) setStatus("budget store " + failed.store + ": " + failed.error, true);
  const windows = data.token_limits.filter((w) => !w.error).map((w) => ({...w, scope: w.label || w.who}));
  table("token-limits", [["route", "route", name], ["scope", "scope", name], ["window", "window", name],
                         ["counts", "counts", name], ["used", "used", integer], ["limit", "limit", integer],
                         ["remaining", "remaining", integer], ["reset_in", "resets in", seconds],
                         ["share", "share", meter], ["store", "store", name]],
        windows, (w) => w.route + "|" + w.scope + "|" + w.window + "|" + w.counts, "no token limit is in use");
  for (const failed of data.token_limits.filter((w) => w.error)) setStatus("token-limit store " + failed.store + ": " + failed.error, true);
  table("refusals", [["plugin", "plugin", name], ["reason", "reason", name], ["count", "in range", integer]],
        data.refusals, (r) => r.plugin + "|" + r.reason, "no refusals in this range");
  table("refusals-total", [["plugin", "plugin", name], ["reason", "reason", name], ["count", "total", integer]],
        data.refusals_since_start, (r) => r.plugin + "|" + r.reason, "none");
  table("errors", [["provider", "provider", name], ["status", "status", name], ["count", "requests", integer]],
        data.errors, (r) => r.provider + "|" + r.status, "no errors in this range");
  const t = data.totals;
  const cacheRows = data.cache.length ? [...data.cache, {status: "hit rate", count: t.cache_hit_rate, rate: true},
    {status: "tokens saved", count: t.saved_tokens}, {status: "cost saved", count: t.saved_cost, money: true}] : [];
  table("cache", [["status", "", name], ["count", "", (v) => v]], cacheRows.map((r) => ({
    status: r.status, count: r.rate ? percent(r.count) : r.money ? money(r.count) : integer(r.count)})),
    (r) => r.status, "no cache on these routes yet");
  table("blocks", [["plugin", "guard", name], ["rule", "rule", name], ["count", "blocked", integer]],
        data.blocks, (r) => r.plugin + "|" + r.rule, "no guard blocks in this range");
  for (const dimension of ["route", "model", "provider", "consumer"]) {
    table("by-" + dimension, GROUP_COLUMNS, data.by[dimension], (r) => r.id || r.name, "no requests in this range");
  }
}

function setStatus(text, bad) {
  $("status").textContent = text;
  $("status").className = bad ? "error" : "";
}

async function load() {
  const headers = {};
  const secret = token();
  if (secret) headers.Authorization = "Bearer " + secret;
  try {
    const answer = await fetch("/dashboard/data?range=" + encodeURIComponent($("range").value), {headers});
    if (answer.status === 401) {
      $("login").hidden = false;
      $("main").hidden = true;
      document.body.dataset.state = "unauthorized";
      setStatus("token needed", true);
      return;
    }
    const data = await answer.json();
    if (!answer.ok) throw new Error(data.error || answer.statusText);
    $("login").hidden = true;
    $("main").hidden = false;
    render(data);
    document.body.dataset.state = "ready";
    document.body.dataset.loads = String(Number(document.body.dataset.loads || 0) + 1);
    setStatus("updated " + new Date(data.until * 1000).toLocaleTimeString());
  } catch (error) {
    document.body.dataset.state = "error";
    setStatus("cannot load: " + error.message, true);
  }
}

function schedule() {
  if (timer) clearInterval(timer);
  const seconds = Number($("refresh").value);
  if (seconds > 0) timer = setInterval(load, seconds * 1000);
}

$("range").addEventListener("change", load);
$("refresh").addEventListener("change", schedule);
$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("tollgate-token", $("token").value);
  load();
});
const wanted = /(?:^|&)range=([^&]*)/.exec(location.hash.slice(1));
if (wanted) $("range").value = decodeURIComponent(wanted[1]);
load();
schedule();
