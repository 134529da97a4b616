// nsqadmin page: a hand-written single-page app over nsqadmin's /api (no framework, no build).
//
// Routing uses real paths (/topics/t/c, as upstream, so bookmarks keep working) with the History
// API. Every page is { load() -> data, render(data) -> html, after?(data) }; a poller re-runs the
// current page's load/render every few seconds, and each refresh also records counters into an
// in-memory sampler that the live charts (plain SVG) draw from. With --graphite-url the pages also
// show upstream's graphite graphs (<img> of graphite's /render, URLs from graphite.js).
'use strict';

const CONFIG = JSON.parse(document.getElementById('nsqadmin-config').textContent || '{}');
const BASE = CONFIG.base_path || '';
const CHART_WINDOW_MS = 5 * 60 * 1000;
const SAMPLE_KEEP_MS = 15 * 60 * 1000;

// ---------------------------------------------------------------------------------------------
// Small helpers

const $ = (selector, root = document) => root.querySelector(selector);
const esc = (value) => String(value ?? '').replace(/[&<>"']/g, (ch) => (
  { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[ch]));
const enc = encodeURIComponent;
const fmt = (n) => (Number(n) || 0).toLocaleString('en-US');
const fmtRate = (r) => (r == null ? '—' : r >= 100 ? fmt(Math.round(r)) : r.toFixed(r >= 10 ? 1 : 2));

function fmtShort(n) {
  const abs = Math.abs(n);
  if (abs >= 1e9) return (n / 1e9).toFixed(abs >= 1e10 ? 0 : 1) + 'G';
  if (abs >= 1e6) return (n / 1e6).toFixed(abs >= 1e7 ? 0 : 1) + 'M';
  if (abs >= 1e3) return (n / 1e3).toFixed(abs >= 1e4 ? 0 : 1) + 'k';
  if (abs > 0 && abs < 100 && !Number.isInteger(n)) return n.toFixed(1);
  return String(Math.round(n));
}

function fmtDuration(ns) {
  let s = Math.floor((Number(ns) || 0) / 1e9);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

const num = (value, extra = '') => `<td class="num" data-value="${Number(value) || 0}"${extra}>${fmt(value)}</td>`;
const topicHref = (t) => `${BASE}/topics/${enc(t)}`;
const channelHref = (t, c) => `${BASE}/topics/${enc(t)}/${enc(c)}`;
const nodeHref = (n) => `${BASE}/nodes/${enc(n)}`;
const pausedBadge = (paused) => (paused ? '<span class="badge paused" data-paused="true">paused</span>' : '');
const memDisk = (mem, disk) => `<span class="split">${fmt(mem)} + ${fmt(disk)}</span>`;

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, { method = 'GET', body } = {}) {
  const init = { method, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  let response;
  try {
    response = await fetch(BASE + path, init);
  } catch (err) {
    throw new ApiError(0, `nsqadmin is unreachable (${err.message})`);
  }
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (!response.ok) {
    throw new ApiError(response.status, (data && data.message) || `${response.status} ${response.statusText}`);
  }
  return data || {};
}

// Nodes named in a failure text ("Get \"http://127.0.0.1:4151/stats?...\": dial tcp ...").
function failedNodes(message) {
  const found = new Set();
  for (const match of String(message || '').matchAll(/"https?:\/\/([^/"]+)\//g)) found.add(match[1]);
  return [...found];
}

// ---------------------------------------------------------------------------------------------
// Sampler: counters over time, per key, for rates and charts.

const samples = new Map();
const SAMPLES_STORE = 'nsqadmin.samples';
let saveTimer = null;

// Samples survive reloads and navigation within the tab (sessionStorage), so charts keep their
// history; the newest 300 points per key are kept there.
function loadSamples() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(SAMPLES_STORE) || '{}');
    const now = Date.now();
    for (const [key, list] of Object.entries(stored)) {
      const fresh = list.filter((point) => now - point.t <= SAMPLE_KEEP_MS);
      if (fresh.length) samples.set(key, fresh);
    }
  } catch (_) { sessionStorage.removeItem(SAMPLES_STORE); }
}

function saveSamplesSoon() {
  if (saveTimer) return;
  saveTimer = setTimeout(() => {
    saveTimer = null;
    const out = {};
    for (const [key, list] of samples) out[key] = list.slice(-300);
    const text = JSON.stringify(out);
    try {
      if (text.length < 2_000_000) sessionStorage.setItem(SAMPLES_STORE, text);
    } catch (_) { /* storage full: charts just start over after a reload */ }
  }, 1500);
}

function record(key, values, at = Date.now()) {
  saveSamplesSoon();
  let list = samples.get(key);
  if (!list) { list = []; samples.set(key, list); }
  const last = list[list.length - 1];
  if (last && at - last.t < 250) list.pop();
  list.push({ t: at, ...values });
  while (list.length && at - list[0].t > SAMPLE_KEEP_MS) list.shift();
}

// Messages per second between consecutive samples (counter resets are skipped).
function rateSeries(key, field = 'count') {
  const list = samples.get(key) || [];
  const out = [];
  for (let i = 1; i < list.length; i += 1) {
    const dt = (list[i].t - list[i - 1].t) / 1000;
    const dv = list[i][field] - list[i - 1][field];
    if (dt > 0 && dv >= 0) out.push([list[i].t, dv / dt]);
  }
  return out;
}

const gaugeSeries = (key, field) => (samples.get(key) || []).map((s) => [s.t, s[field]]);

function currentRate(key) {
  const series = rateSeries(key);
  return series.length ? series[series.length - 1][1] : null;
}

// ---------------------------------------------------------------------------------------------
// Charts (SVG lines; labels are HTML so they do not stretch)

function niceMax(value) {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * magnitude) return step * magnitude;
  return 10 * magnitude;
}

// The window grows with the history we have: 1 minute at first, up to CHART_WINDOW_MS.
function chartWindow(series) {
  const first = Math.min(...series.flatMap((s) => s.points.map(([t]) => t)), Date.now());
  const span = Date.now() - first;
  for (const window of [60e3, 120e3, 180e3, CHART_WINDOW_MS]) if (span <= window) return window;
  return CHART_WINDOW_MS;
}

const ago = (ms) => (ms >= 60e3 ? `−${+(ms / 60e3).toFixed(1)}m` : `−${Math.round(ms / 1e3)}s`);

function chart(title, series, id) {
  const now = Date.now();
  const windowMs = chartWindow(series);
  const from = now - windowMs;
  const visible = series.map((s) => ({ ...s, points: s.points.filter(([t]) => t >= from) }));
  const max = niceMax(Math.max(0, ...visible.flatMap((s) => s.points.map(([, v]) => v))));
  const x = (t) => ((t - from) / windowMs) * 1000;
  const y = (v) => 100 - (v / max) * 100;
  const paths = visible.map((s) => {
    if (s.points.length < 2) return '';
    const line = s.points.map(([t, v], i) => `${i ? 'L' : 'M'}${x(t).toFixed(1)},${y(v).toFixed(2)}`).join(' ');
    const first = x(s.points[0][0]).toFixed(1);
    const last = x(s.points[s.points.length - 1][0]).toFixed(1);
    return `<path class="area" fill="${s.color}" d="${line} L${last},100 L${first},100 Z"/>`
      + `<path class="line" stroke="${s.color}" d="${line}"/>`;
  }).join('');
  const hasData = visible.some((s) => s.points.length >= 2);
  const legend = visible.map((s) => {
    const last = s.points.length ? s.points[s.points.length - 1][1] : null;
    return `<span><i style="background:${s.color}"></i>${esc(s.name)} <b>${last == null ? '—' : s.fmt ? s.fmt(last) : fmtShort(last)}</b></span>`;
  }).join('');
  return `<div class="card chart" data-chart="${esc(id)}">
    <div class="chart-head"><span class="chart-title">${esc(title)}</span><span class="legend">${legend}</span></div>
    <div class="plot">
      <svg viewBox="0 0 1000 100" preserveAspectRatio="none" aria-hidden="true">
        <g class="grid"><line x1="0" x2="1000" y1="0" y2="0"/><line x1="0" x2="1000" y1="50" y2="50"/><line x1="0" x2="1000" y1="100" y2="100"/></g>
        ${paths}
      </svg>
      <span class="ylab" style="top:0%">${fmtShort(max)}</span>
      <span class="ylab" style="top:50%">${fmtShort(max / 2)}</span>
      <span class="ylab" style="top:100%">0</span>
      <span class="xlab" style="left:0%">${ago(windowMs)}</span><span class="xlab" style="left:50%">${ago(windowMs / 2)}</span><span class="xlab" style="left:100%">now</span>
      ${hasData ? '' : '<div class="empty">Collecting samples…</div>'}
    </div><div class="foot"></div></div>`;
}

function sparkline(key) {
  const points = rateSeries(key).filter(([t]) => t >= Date.now() - 2 * 60 * 1000);
  if (points.length < 2) return '';
  const max = Math.max(...points.map(([, v]) => v), 0.0001);
  const t0 = points[0][0];
  const span = Math.max(points[points.length - 1][0] - t0, 1);
  const d = points.map(([t, v], i) => `${i ? 'L' : 'M'}${(((t - t0) / span) * 60).toFixed(1)},${(15 - (v / max) * 13).toFixed(1)}`).join(' ');
  return `<svg class="spark" width="60" height="16" viewBox="0 0 60 16" aria-hidden="true"><path d="${d}"/></svg>`;
}

const stat = (label, value, hint = '', key = '') => `<div class="card stat"${key ? ` data-stat="${key}"` : ''}>
  <div class="label">${esc(label)}</div><div class="value">${value}</div>${hint ? `<div class="hint">${hint}</div>` : ''}</div>`;

// ---------------------------------------------------------------------------------------------
// Graphite graphs (with --graphite-url): upstream's 120×20 sparklines, each linking to its 800×450
// graph, as <img> of graphite's /render (nsqadmin's own /render with --proxy-graphite), and rates
// from /api/graphite. They sit beside the live charts, which work without graphite.

const GRAPHITE = CONFIG.graphite_enabled && window.NsqGraphite ? {
  graphite_url: CONFIG.graphite_url || '',
  statsd_prefix: CONFIG.statsd_prefix ?? 'nsq.%s',
  statsd_counter_format: CONFIG.statsd_counter_format ?? 'stats.counters.%s.count',
  statsd_gauge_format: CONFIG.statsd_gauge_format ?? 'stats.gauges.%s',
  statsd_interval: Number(CONFIG.statsd_interval) || 60,
} : null;
const GRAPH_INTERVAL_STORE = 'nsqadmin.graph_interval';

// The timeframe: `?t=` beats the remembered choice, which beats 2h (upstream's default).
function initialGraphInterval() {
  if (!GRAPHITE) return 'off';
  const valid = (value) => value === 'off' || /^[0-9]+[a-z]+$/.test(value || '');
  const fromQuery = new URLSearchParams(location.search).get('t');
  if (valid(fromQuery)) {
    localStorage.setItem(GRAPH_INTERVAL_STORE, fromQuery);
    return fromQuery;
  }
  const stored = localStorage.getItem(GRAPH_INTERVAL_STORE);
  return valid(stored) ? stored : '2h';
}

let graphInterval = initialGraphInterval();
const graphsOn = () => Boolean(GRAPHITE) && graphInterval !== 'off';
const graphiteRates = new Map();
const graphImages = new Map();

function graph(typ, node, ns1, ns2, key, title) {
  const spark = NsqGraphite.sparklineUrl(GRAPHITE, graphInterval, typ, node, ns1, ns2, key);
  const large = NsqGraphite.largeGraphUrl(GRAPHITE, graphInterval, typ, node, ns1, ns2, key);
  const label = `${title || key.replace(/_/g, ' ')} · ${graphInterval}`;
  return `<a class="graphite" href="${esc(large)}" target="_blank" rel="noopener" title="${esc(label)} (graphite)">`
    + `<img class="graphite-spark" src="${esc(spark)}" width="120" height="20" alt="${esc(label)}" data-graphite="${esc(typ)}:${esc(key)}"></a>`;
}

function largeGraph(typ, node, key, title) {
  const url = NsqGraphite.largeGraphUrl(GRAPHITE, graphInterval, typ, node, '', '', key);
  return `<figure class="card graphite-large"><a href="${esc(url)}" target="_blank" rel="noopener">`
    + `<img src="${esc(url)}" width="800" height="450" alt="${esc(title)}" data-graphite="${esc(typ)}:${esc(key)}"></a>`
    + `<figcaption>${esc(title)} <span class="dim">· ${esc(graphInterval)}</span></figcaption></figure>`;
}

function graphiteRate(typ, node, ns1, ns2) {
  const target = NsqGraphite.rateTarget(GRAPHITE, typ, node, ns1, ns2);
  const known = graphiteRates.get(target);
  return `<span class="graphite-rate" data-graphite-rate="${esc(target)}" title="msgs/s over the last statsd interval (graphite)">${esc(known?.text || '…')}</span>`;
}

const e2eOf = (entity, topic, channel) => ({ topic, channel, percentiles: entity?.e2e_processing_latency?.percentiles || [] });

// Rates are fetched once per statsd interval per target, and filled into every cell showing it.
function fillGraphiteRates() {
  const ttl = Math.max(GRAPHITE.statsd_interval, 10) * 1000;
  const cells = [...document.querySelectorAll('#main [data-graphite-rate]')];
  const show = (target, text) => {
    for (const cell of cells) if (cell.dataset.graphiteRate === target && cell.isConnected) cell.textContent = text;
  };
  for (const target of new Set(cells.map((cell) => cell.dataset.graphiteRate))) {
    const known = graphiteRates.get(target);
    if (known && (known.pending || Date.now() - known.at < ttl)) continue;
    const entry = { text: known?.text || '', at: Date.now(), pending: true };
    graphiteRates.set(target, entry);
    api(`/api/graphite?metric=rate&target=${enc(target)}`)
      .then((data) => { entry.text = data.rate ?? 'N/A'; })
      .catch(() => { entry.text = 'ERROR'; })
      .finally(() => {
        entry.pending = false;
        entry.at = Date.now();
        for (const cell of document.querySelectorAll('#main [data-graphite-rate]')) {
          if (cell.dataset.graphiteRate === target) cell.textContent = entry.text;
        }
      });
    show(target, entry.text || '…');
  }
}

// Pages re-render on every poll: already loaded graph images are put back instead of new ones,
// so graphite is asked again only after a statsd interval (at least a minute) and nothing flickers.
function keepGraphImages() {
  const ttl = Math.max(GRAPHITE.statsd_interval, 60) * 1000;
  const seen = new Map();
  for (const img of document.querySelectorAll('#main img[data-graphite]')) {
    const src = img.getAttribute('src');
    const nth = (seen.get(src) || 0) + 1;
    seen.set(src, nth);
    const key = `${nth} ${src}`;
    const kept = graphImages.get(key);
    if (kept && Date.now() - kept.at < ttl) img.replaceWith(kept.img);
    else graphImages.set(key, { img, at: Date.now() });
  }
}

// ---------------------------------------------------------------------------------------------
// Banners, toasts, confirmation

let pageWarning = '';
let pageError = '';

function renderBanners() {
  const parts = [];
  if (pageError) {
    parts.push(`<div class="banner error" role="alert" data-banner="error"><div><strong>Error:</strong> ${esc(pageError)}</div></div>`);
  }
  if (pageWarning) {
    const nodes = failedNodes(pageWarning);
    const who = nodes.length
      ? `${nodes.length === 1 ? 'Node' : 'Nodes'} ${nodes.map((n) => `<code data-failed-node="${esc(n)}">${esc(n)}</code>`).join(', ')} did not answer; showing what the rest returned.`
      : 'Some upstream calls failed; showing what the rest returned.';
    parts.push(`<div class="banner warn" role="status" data-banner="warning"><div><strong>Partial results.</strong> ${who}
      <details><summary>Details</summary><pre>${esc(pageWarning.replace(/^WARNING: /, ''))}</pre></details></div></div>`);
  }
  $('#banners').innerHTML = parts.join('');
}

function toast(text, bad = false) {
  const el = document.createElement('div');
  el.className = `toast${bad ? ' bad' : ''}`;
  el.textContent = text;
  const box = $('#toasts');
  box.appendChild(el);
  while (box.children.length > 3) box.firstElementChild.remove();
  setTimeout(() => el.remove(), bad ? 7000 : 3500);
}

function confirmAction(title, bodyHtml, label, danger) {
  const dialog = $('#confirm');
  $('#confirm-title').textContent = title;
  $('#confirm-body').innerHTML = bodyHtml;
  const ok = $('#confirm-ok');
  ok.textContent = label;
  ok.className = danger ? 'btn btn-danger solid' : 'btn btn-primary';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.returnValue = 'cancel';
    dialog.showModal();
    $('#confirm-cancel').focus();
  });
}

// Runs an admin action after confirmation, then refreshes the page.
async function runAction({ title, body, label, danger, method, path, payload, done, after }) {
  if (!(await confirmAction(title, body, label, danger))) return;
  try {
    const result = await api(path, { method, body: payload });
    if (result.message) {
      pageWarning = result.message;
      renderBanners();
      toast(`${done} (with warnings)`, true);
    } else {
      toast(done);
    }
    if (after) { after(); return; }
  } catch (err) {
    toast(`Failed: ${err.message}`, true);
  }
  refresh();
}

// ---------------------------------------------------------------------------------------------
// Pages

const pages = [];
const route = (pattern, name, page) => pages.push({ pattern, name, page });

function actionButtons(items) {
  if (!CONFIG.is_admin) return '';
  return items.map((item) => `<button class="btn ${item.danger ? 'btn-danger' : ''}" data-action="${item.action}">${item.label}</button>`).join('');
}

function healthStrip(nodes) {
  if (!nodes || !nodes.length) return '';
  return `<div class="health" data-health>${nodes.map((n) => `<a class="node ${n.ok ? '' : 'down'}" href="${n.ok ? nodeHref(n.node) : '#'}" data-link
    data-node-status="${esc(n.node)}" data-ok="${n.ok}" title="${esc(n.ok ? `${n.hostname} · v${n.version}` : n.error)}"><span class="dot"></span>${esc(n.node)}${n.ok ? '' : ' · unreachable'}</a>`).join('')}</div>`;
}

// Topics list, from /api/overview.
route(/^\/(?:topics\/?)?$/, 'topics', {
  title: () => 'Topics',
  load: () => api('/api/overview'),
  record(data, at) {
    for (const t of data.topics || []) {
      record(`t:${t.topic_name}`, { count: t.message_count, depth: t.depth, inflight: t.in_flight_count }, at);
      for (const c of t.channels) {
        record(`c:${t.topic_name}/${c.channel_name}`, { count: c.message_count, depth: c.depth, inflight: c.in_flight_count }, at);
      }
    }
  },
  render(data) {
    const topics = data.topics || [];
    const graphs = graphsOn();
    const filter = (state.filter || '').toLowerCase();
    const shown = topics.filter((t) => t.topic_name.toLowerCase().includes(filter));
    const totals = topics.reduce((acc, t) => ({
      depth: acc.depth + t.depth,
      backlog: acc.backlog + t.channels.reduce((sum, c) => sum + c.depth, 0),
      msgs: acc.msgs + t.message_count,
      inflight: acc.inflight + t.in_flight_count,
    }), { depth: 0, backlog: 0, msgs: 0, inflight: 0 });
    const rows = shown.map((t) => {
      const rate = currentRate(`t:${t.topic_name}`);
      const pausedChannels = t.channels.filter((c) => c.paused).length;
      const backlog = t.channels.reduce((acc, c) => acc + c.depth, 0);
      return `<tr data-topic="${esc(t.topic_name)}">
        <td><a href="${topicHref(t.topic_name)}" data-link><b>${esc(t.topic_name)}</b></a> ${pausedBadge(t.paused)}
          ${pausedChannels ? `<span class="badge paused" title="paused channels">${pausedChannels} channel${pausedChannels === 1 ? '' : 's'} paused</span>` : ''}</td>
        ${num(t.depth, ' data-col="depth"')}
        <td class="num">${memDisk(t.memory_depth, t.backend_depth)}</td>
        ${num(backlog, ' data-col="channel_depth"')}
        ${num(t.in_flight_count, ' data-col="in_flight"')}
        ${num(t.deferred_count, ' data-col="deferred"')}
        ${num(t.message_count, ' data-col="messages"')}
        <td class="num" data-col="rate">${fmtRate(rate)}${sparkline(`t:${t.topic_name}`)}</td>
        ${num(t.channels.length, ' data-col="channels"')}
        ${num(t.client_count, ' data-col="clients"')}
        <td class="num" data-col="nodes">${t.nodes.length ? t.nodes.length : '<span class="badge warn">no producers</span>'}</td>
        ${graphs ? `<td class="graph-cell" data-col="graphite_depth">${graph('topic', '*', t.topic_name, '', 'depth')}</td>
        <td class="graph-cell" data-col="graphite_messages">${graph('topic', '*', t.topic_name, '', 'message_count', 'messages')}</td>
        <td class="num" data-col="graphite_rate">${graphiteRate('topic', '*', t.topic_name, '')}</td>` : ''}
      </tr>`;
    }).join('');
    const body = topics.length
      ? `<div class="toolbar"><input class="search" id="topic-filter" placeholder="Filter topics  ( / )" value="${esc(state.filter || '')}" autocomplete="off"></div>
        <div class="card table-wrap"><table class="data" id="topics-table"><thead><tr>
        <th>Topic</th><th class="num">Depth</th><th class="num">Memory + Disk</th><th class="num" title="Messages waiting in the topic's channels">Channel depth</th><th class="num">In flight</th><th class="num">Deferred</th>
        <th class="num">Messages</th><th class="num">Msgs/s</th><th class="num">Channels</th><th class="num">Clients</th><th class="num">Nodes</th>
        ${graphs ? `<th title="graphite, ${esc(graphInterval)}">Depth · ${esc(graphInterval)}</th><th title="graphite, ${esc(graphInterval)}">Messages · ${esc(graphInterval)}</th><th class="num" title="graphite">Rate</th>` : ''}
        </tr></thead><tbody>${rows || `<tr><td colspan="${graphs ? 14 : 11}" class="notice">No topic matches the filter.</td></tr>`}</tbody></table></div>`
      : `<div class="card empty-state"><h3>No topics yet</h3>Publish a message to any node, or create a topic on the <a href="${BASE}/lookup" data-link>Lookup</a> page.</div>`;
    return `<div class="page-head"><div><h1>Topics</h1>
      <div class="sub">${fmt(topics.length)} topic${topics.length === 1 ? '' : 's'} · ${fmt(totals.depth)} queued at topics · ${fmt(totals.backlog)} in channels · ${fmt(totals.inflight)} in flight · ${fmt(totals.msgs)} published</div></div></div>
      ${healthStrip(data.nodes)}${body}`;
  },
  after() {
    const input = $('#topic-filter');
    if (!input) return;
    input.addEventListener('input', () => {
      state.filter = input.value;
      rerender();
      const again = $('#topic-filter');
      again.focus();
      again.setSelectionRange(again.value.length, again.value.length);
    });
  },
});

// One topic.
route(/^\/topics\/([^/]+)\/?$/, 'topic', {
  title: ([topic]) => topic,
  load: ([topic]) => api(`/api/topics/${enc(topic)}`),
  record(data, at, [topic]) {
    record(`t:${topic}`, { count: data.message_count || 0, depth: data.depth || 0 }, at);
    for (const c of data.channels || []) {
      record(`c:${topic}/${c.channel_name}`, { count: c.message_count, depth: c.depth, inflight: c.in_flight_count }, at);
    }
  },
  render(data, [topic]) {
    const nodes = data.nodes || [];
    const channels = (data.channels || []).slice().sort((a, b) => a.channel_name.localeCompare(b.channel_name));
    const key = `t:${topic}`;
    const head = `<div class="crumbs"><a href="${BASE}/topics" data-link>Topics</a><span class="sep">/</span></div>
      <div class="page-head"><div><h1><span data-title>${esc(topic)}</span> ${pausedBadge(data.paused)}</h1>
      <div class="sub">Topic on ${nodes.length} ${nodes.length === 1 ? 'node' : 'nodes'}</div></div>
      <div class="actions">${nodes.length ? actionButtons([
        data.paused ? { action: 'unpause', label: 'Unpause topic' } : { action: 'pause', label: 'Pause topic' },
        { action: 'empty', label: 'Empty queue', danger: true },
        { action: 'delete', label: 'Delete topic', danger: true },
      ]) : ''}</div></div>`;
    if (!nodes.length) {
      return `${head}<div class="card empty-state"><h3>No producers exist for this topic</h3>No nsqd currently has <code>${esc(topic)}</code>.</div>`;
    }
    const stats = `<div class="stats">
      ${stat('Depth', fmt(data.depth), `${fmt(data.memory_depth)} memory + ${fmt(data.backend_depth)} disk`, 'depth')}
      ${stat('Messages', fmt(data.message_count), '', 'messages')}
      ${stat('Msgs/s', fmtRate(currentRate(key)), 'published, live', 'rate')}
      ${stat('Channels', fmt(channels.length), '', 'channels')}
      ${stat('Nodes', fmt(nodes.length), '', 'nodes')}</div>
      <div class="charts">
      ${chart('Publish rate (msgs/s)', [{ name: 'msgs/s', color: 'var(--chart-1)', points: rateSeries(key), fmt: fmtRate }], 'topic-rate')}
      ${chart('Depth', [{ name: 'depth', color: 'var(--chart-2)', points: gaugeSeries(key, 'depth') }], 'topic-depth')}
      </div>`;
    const nodeRows = nodes.map((n) => `<tr data-node="${esc(n.node)}">
      <td><a href="${nodeHref(n.node)}" data-link>${esc(n.node)}</a> <span class="dim">${esc(n.hostname)}</span> ${pausedBadge(n.paused)}</td>
      ${num(n.depth, ' data-col="depth"')}<td class="num">${memDisk(n.memory_depth, n.backend_depth)}</td>
      ${num(n.message_count)}${num((n.channels || []).length)}
      <td class="num">${CONFIG.is_admin ? `<button class="icon-btn" title="Tombstone this topic on ${esc(n.node)}" data-action="tombstone" data-node="${esc(n.node)}">✕</button>` : ''}</td></tr>`).join('');
    const nodesTable = `<h2 class="section">Nodes <span class="count">${nodes.length}</span></h2>
      <div class="card table-wrap"><table class="data" id="topic-nodes"><thead><tr><th>Node</th><th class="num">Depth</th><th class="num">Memory + Disk</th>
      <th class="num">Messages</th><th class="num">Channels</th><th class="num"></th></tr></thead><tbody>${nodeRows}
      <tr class="total"><td>Total</td>${num(data.depth)}<td class="num">${memDisk(data.memory_depth, data.backend_depth)}</td>${num(data.message_count)}${num(channels.length)}<td></td></tr>
      </tbody></table></div>`;
    const channelRows = channels.map((c) => {
      const ck = `c:${topic}/${c.channel_name}`;
      return `<tr data-channel="${esc(c.channel_name)}">
        <td><a href="${channelHref(topic, c.channel_name)}" data-link><b>${esc(c.channel_name)}</b></a> ${pausedBadge(c.paused)}</td>
        ${num(c.depth, ' data-col="depth"')}<td class="num">${memDisk(c.memory_depth, c.backend_depth)}</td>
        ${num(c.in_flight_count, ' data-col="in_flight"')}${num(c.deferred_count)}${num(c.requeue_count)}${num(c.timeout_count)}
        ${num(c.message_count, ' data-col="messages"')}<td class="num">${fmtRate(currentRate(ck))}${sparkline(ck)}</td>${num(c.client_count, ' data-col="clients"')}</tr>`;
    }).join('');
    const channelsTable = channels.length
      ? `<div class="card table-wrap"><table class="data" id="topic-channels"><thead><tr><th>Channel</th><th class="num">Depth</th><th class="num">Memory + Disk</th>
        <th class="num">In flight</th><th class="num">Deferred</th><th class="num">Requeued</th><th class="num">Timed out</th><th class="num">Messages</th>
        <th class="num">Msgs/s</th><th class="num">Clients</th></tr></thead><tbody>${channelRows}</tbody></table></div>`
      : `<div class="card notice">No channels exist for this topic. Messages will queue at the topic until a channel is created.</div>`;
    return `${head}${stats}${nodesTable}<h2 class="section">Channels <span class="count">${channels.length}</span></h2>${channelsTable}`
      + (graphsOn() ? topicGraphite(data, topic, nodes, channels) : '');
  },
  async act(action, button, data, [topic]) {
    const n = (data.nodes || []).length;
    const on = `on <b>${n}</b> ${n === 1 ? 'node' : 'nodes'}`;
    const path = `/api/topics/${enc(topic)}`;
    const what = `<b>${esc(topic)}</b>`;
    if (action === 'pause' || action === 'unpause' || action === 'empty') {
      const verbs = { pause: ['Pause', 'Paused'], unpause: ['Unpause', 'Unpaused'], empty: ['Empty', 'Emptied'] };
      await runAction({
        title: `${verbs[action][0]} topic?`,
        body: action === 'empty' ? `Every message queued at topic ${what} is dropped ${on}. Channels keep theirs.` : `${verbs[action][0]} topic ${what} ${on}.`,
        label: `${verbs[action][0]} topic`, danger: action === 'empty', method: 'POST', path, payload: { action },
        done: `${verbs[action][1]} topic ${topic}`,
      });
    } else if (action === 'delete') {
      await runAction({
        title: 'Delete topic?', body: `Topic ${what}, its channels and all their messages are deleted ${on} and on every lookupd.`,
        label: 'Delete topic', danger: true, method: 'DELETE', path, done: `Deleted topic ${topic}`,
        after: () => navigate(`${BASE}/topics`),
      });
    } else if (action === 'tombstone') {
      const node = button.dataset.node;
      await runAction({
        title: 'Tombstone topic producer?', body: `Node <b>${esc(node)}</b> is tombstoned for ${what} on every lookupd and the topic is deleted on that node.`,
        label: 'Tombstone', danger: true, method: 'DELETE', path: `/api/nodes/${enc(node)}`, payload: { topic },
        done: `Tombstoned ${topic} on ${node}`,
      });
    }
  },
});

// The topic page's graphite graphs: per node and total, then per channel (upstream's rows).
function topicGraphite(data, topic, nodes, channels) {
  const rows = [...nodes.map((n) => ({ label: n.node, node: n.node, e2e: e2eOf(n, topic, '') })),
    { label: 'Total', node: '*', e2e: e2eOf(data, topic, '') }];
  const withE2e = rows.some((r) => r.e2e.percentiles.length);
  const nodeRows = rows.map((r) => `<tr data-node="${esc(r.node)}"${r.node === '*' ? ' class="total"' : ''}><td>${esc(r.label)}</td>
    <td class="graph-cell">${graph('topic', r.node, topic, '', 'depth')}</td>
    <td class="graph-cell">${graph('topic', r.node, topic, '', 'message_count', 'messages')}</td>
    <td class="num">${graphiteRate('topic', r.node, topic, '')}</td>
    ${withE2e ? `<td class="graph-cell">${r.e2e.percentiles.length ? graph('e2e', r.node, r.e2e, '', 'e2e_processing_latency', 'e2e latency (ms)') : ''}</td>` : ''}</tr>`).join('');
  const channelE2e = channels.some((c) => e2eOf(c, topic, c.channel_name).percentiles.length);
  const channelRows = channels.map((c) => {
    const e2e = e2eOf(c, topic, c.channel_name);
    const cell = (key, title) => `<td class="graph-cell">${graph('channel', '*', topic, c.channel_name, key, title)}</td>`;
    return `<tr data-channel="${esc(c.channel_name)}"><td><b>${esc(c.channel_name)}</b></td>${cell('depth')}${cell('in_flight_count', 'in flight')}
      ${cell('deferred_count', 'deferred')}${cell('requeue_count', 'requeued')}${cell('timeout_count', 'timed out')}${cell('message_count', 'messages')}
      <td class="num">${graphiteRate('channel', '*', topic, c.channel_name)}</td>${cell('clients')}
      ${channelE2e ? `<td class="graph-cell">${e2e.percentiles.length ? graph('e2e', '*', e2e, '', 'e2e_processing_latency', 'e2e latency (ms)') : ''}</td>` : ''}</tr>`;
  }).join('');
  return `<h2 class="section">Graphite <span class="count">${esc(graphInterval)}</span></h2>
    <div class="card table-wrap"><table class="data graphite-table" id="topic-graphite"><thead><tr><th>Node</th><th>Depth</th><th>Messages</th>
    <th class="num">Rate</th>${withE2e ? '<th>E2E latency</th>' : ''}</tr></thead><tbody>${nodeRows}</tbody></table></div>
    ${channels.length ? `<div class="card table-wrap graphite-gap"><table class="data graphite-table" id="topic-channels-graphite"><thead><tr><th>Channel</th><th>Depth</th>
    <th>In flight</th><th>Deferred</th><th>Requeued</th><th>Timed out</th><th>Messages</th><th class="num">Rate</th><th>Clients</th>
    ${channelE2e ? '<th>E2E latency</th>' : ''}</tr></thead><tbody>${channelRows}</tbody></table></div>` : ''}`;
}

// The channel page's graphite graphs: per node and total.
function channelGraphite(data, topic, channel, nodes) {
  const rows = [...nodes.map((n) => ({ label: n.node, node: n.node, e2e: e2eOf(n, topic, channel) })),
    { label: 'Total', node: '*', e2e: e2eOf(data, topic, channel) }];
  const withE2e = rows.some((r) => r.e2e.percentiles.length);
  const body = rows.map((r) => {
    const cell = (key, title) => `<td class="graph-cell">${graph('channel', r.node, topic, channel, key, title)}</td>`;
    return `<tr data-node="${esc(r.node)}"${r.node === '*' ? ' class="total"' : ''}><td>${esc(r.label)}</td>${cell('depth')}${cell('in_flight_count', 'in flight')}
      ${cell('deferred_count', 'deferred')}${cell('requeue_count', 'requeued')}${cell('timeout_count', 'timed out')}${cell('message_count', 'messages')}
      <td class="num">${graphiteRate('channel', r.node, topic, channel)}</td>${cell('clients')}
      ${withE2e ? `<td class="graph-cell">${r.e2e.percentiles.length ? graph('e2e', r.node, r.e2e, '', 'e2e_processing_latency', 'e2e latency (ms)') : ''}</td>` : ''}</tr>`;
  }).join('');
  return `<h2 class="section">Graphite <span class="count">${esc(graphInterval)}</span></h2>
    <div class="card table-wrap"><table class="data graphite-table" id="channel-graphite"><thead><tr><th>Node</th><th>Depth</th><th>In flight</th>
    <th>Deferred</th><th>Requeued</th><th>Timed out</th><th>Messages</th><th class="num">Rate</th><th>Clients</th>
    ${withE2e ? '<th>E2E latency</th>' : ''}</tr></thead><tbody>${body}</tbody></table></div>`;
}

// One channel.
route(/^\/topics\/([^/]+)\/([^/]+)\/?$/, 'channel', {
  title: ([topic, channel]) => `${topic} / ${channel}`,
  load: ([topic, channel]) => api(`/api/topics/${enc(topic)}/${enc(channel)}`),
  record(data, at, [topic, channel]) {
    if (data.channel_name) {
      record(`c:${topic}/${channel}`, { count: data.message_count, depth: data.depth, inflight: data.in_flight_count }, at);
    }
  },
  render(data, [topic, channel]) {
    const key = `c:${topic}/${channel}`;
    const found = Boolean(data.channel_name);
    const nodes = data.nodes || [];
    const head = `<div class="crumbs"><a href="${BASE}/topics" data-link>Topics</a><span class="sep">/</span><a href="${topicHref(topic)}" data-link>${esc(topic)}</a><span class="sep">/</span></div>
      <div class="page-head"><div><h1><span data-title>${esc(channel)}</span> ${pausedBadge(data.paused)}</h1>
      <div class="sub">Channel of <a href="${topicHref(topic)}" data-link>${esc(topic)}</a>${found ? ` on ${nodes.length} ${nodes.length === 1 ? 'node' : 'nodes'}` : ''}</div></div>
      <div class="actions">${found ? actionButtons([
        data.paused ? { action: 'unpause', label: 'Unpause channel' } : { action: 'pause', label: 'Pause channel' },
        { action: 'empty', label: 'Empty queue', danger: true },
        { action: 'delete', label: 'Delete channel', danger: true },
      ]) : ''}</div></div>`;
    if (!found) {
      return `${head}<div class="card empty-state"><h3>Channel not found</h3>No nsqd producing <code>${esc(topic)}</code> has a channel <code>${esc(channel)}</code>.</div>`;
    }
    const stats = `<div class="stats">
      ${stat('Depth', fmt(data.depth), `${fmt(data.memory_depth)} memory + ${fmt(data.backend_depth)} disk`, 'depth')}
      ${stat('In flight', fmt(data.in_flight_count), '', 'in_flight')}
      ${stat('Deferred', fmt(data.deferred_count), '', 'deferred')}
      ${stat('Requeued', fmt(data.requeue_count), '', 'requeued')}
      ${stat('Timed out', fmt(data.timeout_count), '', 'timed_out')}
      ${stat('Messages', fmt(data.message_count), '', 'messages')}
      ${stat('Msgs/s', fmtRate(currentRate(key)), 'live', 'rate')}
      ${stat('Clients', fmt(data.client_count), '', 'clients')}</div>
      <div class="charts">
      ${chart('Message rate (msgs/s)', [{ name: 'msgs/s', color: 'var(--chart-1)', points: rateSeries(key), fmt: fmtRate }], 'channel-rate')}
      ${chart('Depth and in flight', [
        { name: 'depth', color: 'var(--chart-2)', points: gaugeSeries(key, 'depth') },
        { name: 'in flight', color: 'var(--chart-3)', points: gaugeSeries(key, 'inflight') }], 'channel-depth')}
      </div>`;
    const nodeRows = nodes.map((n) => `<tr data-node="${esc(n.node)}">
      <td><a href="${nodeHref(n.node)}" data-link>${esc(n.node)}</a> <span class="dim">${esc(n.hostname)}</span> ${pausedBadge(n.paused)}</td>
      ${num(n.depth, ' data-col="depth"')}<td class="num">${memDisk(n.memory_depth, n.backend_depth)}</td>${num(n.in_flight_count)}${num(n.deferred_count)}
      ${num(n.requeue_count)}${num(n.timeout_count)}${num(n.message_count)}${num(n.client_count)}</tr>`).join('');
    const nodesTable = `<h2 class="section">Nodes <span class="count">${nodes.length}</span></h2>
      <div class="card table-wrap"><table class="data" id="channel-nodes"><thead><tr><th>Node</th><th class="num">Depth</th><th class="num">Memory + Disk</th>
      <th class="num">In flight</th><th class="num">Deferred</th><th class="num">Requeued</th><th class="num">Timed out</th><th class="num">Messages</th><th class="num">Clients</th>
      </tr></thead><tbody>${nodeRows}<tr class="total"><td>Total</td>${num(data.depth)}<td class="num">${memDisk(data.memory_depth, data.backend_depth)}</td>
      ${num(data.in_flight_count)}${num(data.deferred_count)}${num(data.requeue_count)}${num(data.timeout_count)}${num(data.message_count)}${num(data.client_count)}</tr></tbody></table></div>`;
    const clients = data.clients || [];
    const flags = (c) => [
      c.tls ? `<span class="badge ok" title="${esc(`${c.tls_version} ${c.tls_cipher_suite}`)}">TLS</span>` : '',
      c.snappy ? '<span class="badge info">snappy</span>' : '',
      c.deflate ? '<span class="badge info">deflate</span>' : '',
      c.sample_rate > 0 ? `<span class="badge warn">sampled ${c.sample_rate}%</span>` : '',
      c.authed ? `<span class="badge ok" title="${esc(c.auth_identity_url)}">auth ${esc(c.auth_identity)}</span>` : '',
    ].filter(Boolean).join(' ');
    const clientRows = clients.map((c) => `<tr data-client="${esc(c.client_id)}">
      <td><b>${esc(c.hostname || c.client_id)}</b><div class="dim mono">${esc(c.client_id)}</div></td>
      <td class="mono">${esc(c.remote_address)}</td>
      <td data-col="user_agent">${esc(c.user_agent || '—')}<div class="dim">${esc(c.version)}</div></td>
      <td><a href="${nodeHref(c.node)}" data-link>${esc(c.node)}</a></td>
      ${num(c.ready_count, ' data-col="ready"')}${num(c.in_flight_count, ' data-col="in_flight"')}${num(c.finish_count, ' data-col="finished"')}
      ${num(c.requeue_count, ' data-col="requeued"')}${num(c.message_count, ' data-col="messages"')}
      <td class="num" data-col="connected" title="since ${esc(new Date(c.connect_ts * 1000).toISOString())}">${fmtDuration(c.connected)}</td>
      <td data-col="flags">${flags(c) || '<span class="dim">plain</span>'}</td></tr>`).join('');
    const clientsTable = clients.length
      ? `<div class="card table-wrap"><table class="data" id="channel-clients"><thead><tr><th>Client</th><th>Address</th><th>User agent</th><th>Node</th>
        <th class="num">RDY</th><th class="num">In flight</th><th class="num">Finished</th><th class="num">Requeued</th><th class="num">Messages</th>
        <th class="num">Connected</th><th>TLS · compression</th></tr></thead><tbody>${clientRows}</tbody></table></div>`
      : '<div class="card notice">No clients are connected to this channel.</div>';
    return `${head}${stats}${nodesTable}${graphsOn() ? channelGraphite(data, topic, channel, nodes) : ''}
      <h2 class="section">Clients <span class="count">${clients.length}</span></h2>${clientsTable}`;
  },
  async act(action, button, data, [topic, channel]) {
    const n = (data.nodes || []).length;
    const on = `on <b>${n}</b> ${n === 1 ? 'node' : 'nodes'}`;
    const path = `/api/topics/${enc(topic)}/${enc(channel)}`;
    const what = `<b>${esc(topic)} / ${esc(channel)}</b>`;
    if (action === 'delete') {
      await runAction({
        title: 'Delete channel?', body: `Channel ${what} and all its messages are deleted ${on} and on every lookupd.`,
        label: 'Delete channel', danger: true, method: 'DELETE', path, done: `Deleted channel ${topic}/${channel}`,
        after: () => navigate(topicHref(topic)),
      });
      return;
    }
    const verbs = { pause: ['Pause', 'Paused'], unpause: ['Unpause', 'Unpaused'], empty: ['Empty', 'Emptied'] };
    await runAction({
      title: `${verbs[action][0]} channel?`,
      body: action === 'empty' ? `Every queued, in-flight and deferred message of channel ${what} is dropped ${on}.` : `${verbs[action][0]} channel ${what} ${on}.`,
      label: `${verbs[action][0]} channel`, danger: action === 'empty', method: 'POST', path, payload: { action },
      done: `${verbs[action][1]} channel ${topic}/${channel}`,
    });
  },
});

// Nodes list.
route(/^\/nodes\/?$/, 'nodes', {
  title: () => 'Nodes',
  load: () => api('/api/nodes'),
  render(data) {
    const nodes = data.nodes || [];
    const lookupds = (CONFIG.nsqlookupd || []).length;
    const failed = failedNodes(data.message).filter((addr) => !nodes.some((n) => `${n.broadcast_address}:${n.http_port}` === addr)
      && !(CONFIG.nsqlookupd || []).includes(addr));
    const rows = nodes.map((n) => {
      const id = n.broadcast_address.includes(':') ? `[${n.broadcast_address}]:${n.http_port}` : `${n.broadcast_address}:${n.http_port}`;
      const conns = (n.remote_addresses || []).length;
      const topics = (n.topics || []).map((t) => `<a class="chip ${t.tombstoned ? 'tomb' : ''}" href="${topicHref(t.topic)}" data-link title="${t.tombstoned ? 'tombstoned' : ''}">${esc(t.topic)}</a>`).join('');
      return `<tr data-node="${esc(id)}">
        <td><a href="${nodeHref(id)}" data-link><b>${esc(n.hostname)}</b> <span class="mono">${esc(id)}</span></a></td>
        <td class="mono">${esc(n.broadcast_address)}</td><td class="num mono">${esc(n.tcp_port)}</td><td class="num mono">${esc(n.http_port)}</td>
        <td>${esc(n.version)} ${n.out_of_date ? '<span class="badge warn">out of date</span>' : ''}</td>
        ${CONFIG.lookupd_mode ? `<td class="num"><span class="badge ${conns === lookupds ? 'ok' : 'warn'}" title="${esc((n.remote_addresses || []).join('\n'))}">${conns} / ${lookupds}</span></td>` : ''}
        <td class="wrap"><div class="chips">${topics || '<span class="dim">none</span>'}</div></td></tr>`;
    }).join('');
    const failedRows = failed.map((addr) => `<tr class="failed" data-node="${esc(addr)}" data-failed="true"><td colspan="${CONFIG.lookupd_mode ? 7 : 6}"><b>${esc(addr)}</b> · unreachable</td></tr>`).join('');
    return `<div class="page-head"><div><h1>Nodes</h1><div class="sub">${CONFIG.lookupd_mode ? `${nodes.length} nsqd registered with ${lookupds} lookupd${lookupds === 1 ? '' : 's'}`
      : `${(CONFIG.nsqd || []).length} nsqd configured directly`}${failed.length ? ` · <span class="badge bad">${failed.length} unreachable</span>` : ''}</div></div></div>
      ${nodes.length || failed.length ? `<div class="card table-wrap"><table class="data" id="nodes-table"><thead><tr><th>Node</th><th>Broadcast address</th><th class="num">TCP</th><th class="num">HTTP</th>
      <th>Version</th>${CONFIG.lookupd_mode ? '<th class="num">Lookupd links</th>' : ''}<th>Topics</th></tr></thead><tbody>${rows}${failedRows}</tbody></table></div>`
        : '<div class="card empty-state"><h3>No nodes</h3>No nsqd has registered yet.</div>'}`;
  },
});

// One node.
route(/^\/nodes\/([^/]+)\/?$/, 'node', {
  title: ([node]) => node,
  load: ([node]) => api(`/api/nodes/${enc(node)}`),
  record(data, at, [node]) {
    for (const t of data.topics || []) record(`n:${node}/${t.topic_name}`, { count: t.message_count, depth: t.depth }, at);
  },
  render(data, [node]) {
    const topics = data.topics || [];
    const graphs = graphsOn();
    const channelCount = topics.reduce((acc, t) => acc + (t.channels || []).length, 0);
    const depth = topics.reduce((acc, t) => acc + t.depth, 0);
    const cards = topics.map((t) => {
      const channels = t.channels || [];
      const rows = channels.map((c) => `<tr data-channel="${esc(c.channel_name)}"><td><a href="${channelHref(t.topic_name, c.channel_name)}" data-link>${esc(c.channel_name)}</a> ${pausedBadge(c.paused)}</td>
        ${num(c.depth)}<td class="num">${memDisk(c.memory_depth, c.backend_depth)}</td>${num(c.in_flight_count)}${num(c.deferred_count)}${num(c.requeue_count)}${num(c.timeout_count)}${num(c.message_count)}
        <td class="wrap">${(c.clients || []).map((cl) => `<span class="chip" title="${esc(cl.remote_address)}">${esc(cl.hostname || cl.client_id)} · ${esc(cl.user_agent || 'unknown')}</span>`).join(' ') || '<span class="dim">—</span>'}</td>
        ${graphs ? `<td class="graph-cell">${graph('channel', node, t.topic_name, c.channel_name, 'depth')} ${graph('channel', node, t.topic_name, c.channel_name, 'clients')}</td>` : ''}</tr>`).join('');
      return `<div class="card topic-card" data-topic="${esc(t.topic_name)}"><div class="card-head">
        <a href="${topicHref(t.topic_name)}" data-link><b>${esc(t.topic_name)}</b></a> ${pausedBadge(t.paused)}
        ${graphs ? `<span class="graph-pair">${graph('topic', node, t.topic_name, '', 'depth')}${graph('topic', node, t.topic_name, '', 'message_count', 'messages')}</span>` : ''}
        <span class="right"><span>depth <b>${fmt(t.depth)}</b></span><span>messages <b>${fmt(t.message_count)}</b></span>
        ${CONFIG.is_admin ? `<button class="icon-btn" title="Tombstone ${esc(t.topic_name)} on this node" data-action="tombstone" data-topic="${esc(t.topic_name)}">✕</button>` : ''}</span></div>
        ${channels.length ? `<div class="table-wrap"><table class="data"><thead><tr><th>Channel</th><th class="num">Depth</th><th class="num">Memory + Disk</th><th class="num">In flight</th>
        <th class="num">Deferred</th><th class="num">Requeued</th><th class="num">Timed out</th><th class="num">Messages</th><th>Clients</th>
        ${graphs ? `<th>Depth · clients (${esc(graphInterval)})</th>` : ''}</tr></thead><tbody>${rows}</tbody></table></div>`
          : '<div class="notice">No channels: messages queue at the topic.</div>'}</div>`;
    }).join('');
    return `<div class="crumbs"><a href="${BASE}/nodes" data-link>Nodes</a><span class="sep">/</span></div>
      <div class="page-head"><div><h1 data-title>${esc(node)}</h1><div class="sub">nsqd node</div></div></div>
      <div class="stats">${stat('Topics', fmt(topics.length))}${stat('Channels', fmt(channelCount))}${stat('Depth', fmt(depth))}
      ${stat('Messages', fmt(data.total_messages), '', 'messages')}${stat('Clients', fmt(data.total_clients), '', 'clients')}</div>
      ${graphs ? `<div class="graphite-grid" id="node-graphite">${largeGraph('node', node, '*_bytes', 'GC pressure')}${largeGraph('node', node, 'gc_pause_*', 'GC pause percentiles')}
      ${largeGraph('node', node, 'gc_runs', 'GC runs')}${largeGraph('node', node, 'heap_objects', 'Heap objects in use')}</div>` : ''}
      <h2 class="section">Topics <span class="count">${topics.length}</span></h2>${cards || '<div class="card empty-state"><h3>No topics on this node</h3></div>'}`;
  },
  async act(action, button, data, [node]) {
    const topic = button.dataset.topic;
    await runAction({
      title: 'Tombstone topic producer?', body: `Node <b>${esc(node)}</b> is tombstoned for <b>${esc(topic)}</b> on every lookupd and the topic is deleted on this node.`,
      label: 'Tombstone', danger: true, method: 'DELETE', path: `/api/nodes/${enc(node)}`, payload: { topic },
      done: `Tombstoned ${topic} on ${node}`,
    });
  },
});

// Counter: every channel's message_count, summed.
let counterShown = null;
let counterAnimation = null;
route(/^\/counter\/?$/, 'counter', {
  title: () => 'Counter',
  interval: 1000,
  load: () => api('/api/counter'),
  record(data, at) {
    const total = Object.values(data.stats || {}).reduce((acc, s) => acc + s.message_count, 0);
    record('counter', { count: total }, at);
  },
  render(data) {
    const total = Object.values(data.stats || {}).reduce((acc, s) => acc + s.message_count, 0);
    const channels = Object.keys(data.stats || {}).length;
    return `<div class="card counter"><div class="big" id="counter-value" data-total="${total}">${fmt(counterShown ?? total)}</div>
      <div class="caption">messages processed by ${fmt(channels)} channel${channels === 1 ? '' : 's'} across the cluster</div>
      <div class="rate" id="counter-rate">${fmtRate(currentRate('counter'))} msgs/s</div></div>
      <div class="charts">${chart('Messages processed per second', [{ name: 'msgs/s', color: 'var(--chart-1)', points: rateSeries('counter'), fmt: fmtRate }], 'counter-rate')}</div>
      ${graphsOn() ? `<div class="graphite-grid wide" id="counter-graphite">${largeGraph('counter', '*', 'message_count', 'Messages processed per second (graphite)')}</div>` : ''}`;
  },
  after(data) {
    const target = Object.values(data.stats || {}).reduce((acc, s) => acc + s.message_count, 0);
    const from = counterShown ?? target;
    const started = performance.now();
    cancelAnimationFrame(counterAnimation);
    const step = (now) => {
      const progress = Math.min(1, (now - started) / 900);
      counterShown = Math.round(from + (target - from) * progress);
      const el = $('#counter-value');
      if (el) el.textContent = fmt(counterShown);
      if (progress < 1 && el) counterAnimation = requestAnimationFrame(step);
    };
    counterAnimation = requestAnimationFrame(step);
  },
});

// Lookup: inactive topics, create topic/channel.
route(/^\/lookup\/?$/, 'lookup', {
  title: () => 'Lookup',
  interval: 10000,
  load: () => api('/api/topics?inactive=true'),
  render(data) {
    const inactive = Object.entries(data.topics || {});
    const lookupds = CONFIG.nsqlookupd || [];
    const rows = inactive.map(([topic, channels]) => `<tr data-topic="${esc(topic)}"><td><b>${esc(topic)}</b>
      ${CONFIG.is_admin ? `<button class="icon-btn" title="Delete topic ${esc(topic)}" data-action="delete-topic" data-topic="${esc(topic)}">✕</button>` : ''}</td>
      <td class="wrap"><div class="chips">${(channels || []).map((c) => `<span class="chip" data-channel="${esc(c)}">${esc(c)}${CONFIG.is_admin
        ? ` <button class="icon-btn" title="Delete channel ${esc(c)}" data-action="delete-channel" data-topic="${esc(topic)}" data-channel="${esc(c)}">✕</button>` : ''}</span>`).join('') || '<span class="dim">no channels</span>'}</div></td></tr>`).join('');
    const form = CONFIG.is_admin ? `<h2 class="section">Create topic / channel</h2>
      <form class="card form" id="create-form" autocomplete="off">
        <label class="field">Topic<input name="topic" id="create-topic" required pattern="[.a-zA-Z0-9_\\-]+(#ephemeral)?" maxlength="64" placeholder="orders"></label>
        <label class="field">Channel (optional)<input name="channel" id="create-channel" pattern="[.a-zA-Z0-9_\\-]+(#ephemeral)?" maxlength="64" placeholder="billing"></label>
        <button class="btn btn-primary" type="submit">Create</button>
        <span class="muted">${CONFIG.lookupd_mode ? 'Registered on every lookupd; the channel is also created on every nsqd producing the topic.' : 'Created on every configured nsqd.'}</span>
      </form>` : '';
    return `<div class="page-head"><div><h1>Lookup</h1><div class="sub">${CONFIG.lookupd_mode
      ? `nsqlookupd: ${lookupds.map((l) => `<code>${esc(l)}</code>`).join(', ')}` : `Direct mode, nsqd: ${(CONFIG.nsqd || []).map((l) => `<code>${esc(l)}</code>`).join(', ')}`}</div></div></div>
      ${form}
      <h2 class="section">Inactive topics <span class="count">${inactive.length}</span></h2>
      ${CONFIG.lookupd_mode ? (inactive.length ? `<div class="card table-wrap"><table class="data" id="inactive-table"><thead><tr><th>Topic</th><th>Channels</th></tr></thead><tbody>${rows}</tbody></table></div>`
        : '<div class="card notice">Every topic known to lookupd has at least one producer.</div>')
        : '<div class="card notice">Inactive topics are tracked by nsqlookupd; nsqadmin runs without one.</div>'}`;
  },
  after() {
    const form = $('#create-form');
    if (!form) return;
    for (const input of form.querySelectorAll('input')) {
      input.value = state.draft?.[input.name] || '';
      input.addEventListener('input', () => { state.draft = { ...(state.draft || {}), [input.name]: input.value }; });
    }
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const topic = form.topic.value.trim();
      const channel = form.channel.value.trim();
      const payload = channel ? { topic, channel } : { topic };
      await runAction({
        title: channel ? 'Create topic and channel?' : 'Create topic?',
        body: `Create ${channel ? `<b>${esc(topic)} / ${esc(channel)}</b>` : `topic <b>${esc(topic)}</b>`}.`,
        label: 'Create', method: 'POST', path: '/api/topics', payload,
        done: `Created ${channel ? `${topic}/${channel}` : topic}`,
        after: () => { state.draft = {}; navigate(topicHref(topic)); },
      });
    });
  },
  async act(action, button) {
    const { topic, channel } = button.dataset;
    if (action === 'delete-topic') {
      await runAction({ title: 'Delete topic?', body: `Delete <b>${esc(topic)}</b> from every lookupd.`, label: 'Delete topic', danger: true, method: 'DELETE', path: `/api/topics/${enc(topic)}`, done: `Deleted topic ${topic}` });
    } else if (action === 'delete-channel') {
      await runAction({ title: 'Delete channel?', body: `Delete <b>${esc(topic)} / ${esc(channel)}</b> from every lookupd.`, label: 'Delete channel', danger: true, method: 'DELETE', path: `/api/topics/${enc(topic)}/${enc(channel)}`, done: `Deleted channel ${topic}/${channel}` });
    }
  },
});

// ---------------------------------------------------------------------------------------------
// Router and poller

const state = { current: null, params: [], data: null, seq: 0, timer: null, loading: false, filter: '', draft: {} };

function match(pathname) {
  let path = pathname.startsWith(BASE) ? pathname.slice(BASE.length) : pathname;
  if (!path.startsWith('/')) path = `/${path}`;
  for (const entry of pages) {
    const found = path.match(entry.pattern);
    if (found) return { entry, params: found.slice(1).map((p) => decodeURIComponent(p)) };
  }
  return null;
}

function navigate(href, push = true) {
  if (push) history.pushState(null, '', href);
  loadSamples();
show();
}

function show() {
  const found = match(location.pathname);
  state.seq += 1;
  state.data = null;
  graphImages.clear();
  pageWarning = '';
  pageError = '';
  renderBanners();
  if (!found) {
    state.current = null;
    $('#main').innerHTML = '<div class="card empty-state"><h3>Page not found</h3><a href="' + BASE + '/" data-link>Back to topics</a></div>';
    return;
  }
  state.current = found.entry;
  state.params = found.params;
  document.body.dataset.page = found.entry.name;
  for (const link of document.querySelectorAll('[data-nav]')) {
    const section = found.entry.name === 'topic' || found.entry.name === 'channel' ? 'topics' : found.entry.name === 'node' ? 'nodes' : found.entry.name;
    link.classList.toggle('active', link.dataset.nav === section);
  }
  document.title = `${found.entry.page.title(found.params)} · nsqadmin`;
  $('#main').innerHTML = '<div class="loading">Loading…</div>';
  delete $('#main').dataset.loaded;
  refresh();
}

function rerender() {
  const { current, data, params } = state;
  if (!current || !data) return;
  const main = $('#main');
  const scroll = window.scrollY;
  main.innerHTML = current.page.render(data, params);
  if (current.page.after) current.page.after(data, params);
  if (graphsOn()) {
    keepGraphImages();
    fillGraphiteRates();
  }
  main.dataset.loaded = String(state.seq);
  window.scrollTo(0, scroll);
}

async function refresh() {
  const { current, params } = state;
  if (!current) return;
  const seq = state.seq;
  clearTimeout(state.timer);
  state.loading = true;
  $('#live-dot').className = 'dot busy';
  try {
    const data = await current.page.load(params);
    if (seq !== state.seq) return;
    const at = Date.now();
    if (current.page.record) current.page.record(data, at, params);
    state.data = data;
    pageWarning = data.message || '';
    pageError = '';
    renderBanners();
    rerender();
    $('#updated').textContent = `updated ${new Date(at).toLocaleTimeString()}`;
  } catch (err) {
    if (seq !== state.seq) return;
    pageError = err.message;
    renderBanners();
    if (!state.data) {
      $('#main').innerHTML = `<div class="card empty-state" data-error><h3>Could not load this page</h3>${esc(err.message)}</div>`;
      $('#main').dataset.loaded = String(state.seq);
    }
  } finally {
    if (seq === state.seq) {
      state.loading = false;
      schedule();
    }
  }
}

function schedule() {
  clearTimeout(state.timer);
  const chosen = Number($('#refresh').value);
  const interval = chosen && state.current?.page.interval ? Math.min(chosen, state.current.page.interval) : chosen;
  $('#live-dot').className = chosen ? 'dot on' : 'dot';
  if (chosen && !document.hidden) state.timer = setTimeout(refresh, interval);
}

document.addEventListener('click', (event) => {
  const link = event.target.closest('a[data-link]');
  if (link && !event.ctrlKey && !event.metaKey && !event.shiftKey && event.button === 0) {
    if (link.getAttribute('href') === '#') { event.preventDefault(); return; }
    event.preventDefault();
    navigate(link.getAttribute('href'));
    return;
  }
  const button = event.target.closest('[data-action]');
  if (button && state.current?.page.act && state.data) {
    event.preventDefault();
    button.disabled = true;
    Promise.resolve(state.current.page.act(button.dataset.action, button, state.data, state.params))
      .finally(() => { button.disabled = false; });
  }
});

document.addEventListener('keydown', (event) => {
  if (event.key === '/' && document.activeElement?.tagName !== 'INPUT' && $('#topic-filter')) {
    event.preventDefault();
    $('#topic-filter').focus();
  }
});

window.addEventListener('popstate', () => show());
document.addEventListener('visibilitychange', () => { if (!document.hidden) refresh(); });

const refreshSelect = $('#refresh');
refreshSelect.value = localStorage.getItem('nsqadmin.refresh') || '3000';
if (!refreshSelect.value) refreshSelect.value = '3000';
refreshSelect.addEventListener('change', () => {
  localStorage.setItem('nsqadmin.refresh', refreshSelect.value);
  refresh();
});

if (GRAPHITE) {
  const graphSelect = $('#graph-interval');
  const choices = NsqGraphite.INTERVALS.includes(graphInterval) ? NsqGraphite.INTERVALS : [graphInterval, ...NsqGraphite.INTERVALS];
  graphSelect.innerHTML = choices.map((value) => `<option value="${esc(value)}">${esc(value)}</option>`).join('');
  graphSelect.value = graphInterval;
  $('#graph-interval-box').hidden = false;
  graphSelect.addEventListener('change', () => {
    graphInterval = graphSelect.value;
    localStorage.setItem(GRAPH_INTERVAL_STORE, graphInterval);
    graphImages.clear();
    rerender();
  });
}

$('#footer').textContent = `nsqadmin v${CONFIG.version || '?'} · ${CONFIG.lookupd_mode
  ? `lookupd mode (${(CONFIG.nsqlookupd || []).join(', ')})` : `direct mode (${(CONFIG.nsqd || []).join(', ')})`}${GRAPHITE
  ? ` · graphite${CONFIG.proxy_graphite ? ' (proxied)' : ''}` : ''}${CONFIG.is_admin ? '' : ' · read-only'}`;

loadSamples();
show();
