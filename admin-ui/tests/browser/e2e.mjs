// End-to-end test of the nsqadmin page in headless Chromium (Debian's /usr/bin/chromium, driven
// by playwright-core; no browser is ever downloaded).
//
// Run by the Rust test `browser::page_in_headless_chromium`, which starts nsqlookupd, two nsqd,
// nsqadmins (lookupd mode, direct mode, read-only, and two with a fake graphite) and passes them in
// the environment:
//   NSQADMIN_E2E='{"admin":"http://127.0.0.1:P","direct_admin":"http://127.0.0.1:Q",
//                  "readonly_admin":…, "graphite":"http://127.0.0.1:G",
//                  "graphite_admin":…, "proxy_admin":…,
//                  "nsqd":[{"http":"127.0.0.1:H","tcp":"127.0.0.1:T","pid":123},…],
//                  "screenshots":"/abs/dir"}'
// Exit code 0 = every check passed. Screenshots of every page land in "screenshots".
import { chromium } from 'playwright-core';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';

const cfg = JSON.parse(process.env.NSQADMIN_E2E || '{}');
if (!cfg.admin || !cfg.nsqd || cfg.nsqd.length < 2) {
  console.error('usage: NSQADMIN_E2E=\'{"admin":…,"direct_admin":…,"nsqd":[…],"screenshots":…}\' node e2e.mjs');
  process.exit(2);
}
const [A, B] = cfg.nsqd;
const ADMIN = cfg.admin;
const DIRECT = cfg.direct_admin;
const SHOTS = cfg.screenshots || join(tmpdir(), 'admin-screenshots');
const log = (...args) => console.log(`[e2e ${new Date().toISOString().slice(11, 23)}]`, ...args);

// ---------------------------------------------------------------------------------------------
// A tiny NSQ V2 client over node:net (publish, and a consumer that answers heartbeats).

class NsqConn {
  constructor(addr) {
    const [host, port] = [addr.slice(0, addr.lastIndexOf(':')), Number(addr.slice(addr.lastIndexOf(':') + 1))];
    this.socket = net.connect({ host, port });
    this.buffer = Buffer.alloc(0);
    this.waiters = [];
    this.frames = [];
    this.messages = 0;
    this.closed = false;
    this.socket.on('data', (chunk) => { this.buffer = Buffer.concat([this.buffer, chunk]); this.drain(); });
    this.socket.on('error', () => { this.closed = true; });
    this.socket.on('close', () => { this.closed = true; for (const w of this.waiters.splice(0)) w.reject(new Error('closed')); });
    this.ready = new Promise((resolve, reject) => { this.socket.once('connect', resolve); this.socket.once('error', reject); });
  }
  drain() {
    while (this.buffer.length >= 8) {
      const size = this.buffer.readUInt32BE(0);
      if (this.buffer.length < 4 + size) return;
      const type = this.buffer.readUInt32BE(4);
      const data = this.buffer.subarray(8, 4 + size);
      this.buffer = this.buffer.subarray(4 + size);
      if (type === 0 && data.toString() === '_heartbeat_') { this.socket.write('NOP\n'); continue; }
      if (type === 2) { this.messages += 1; continue; }
      const frame = { type, text: data.toString() };
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve(frame); else this.frames.push(frame);
    }
  }
  next() {
    if (this.frames.length) return Promise.resolve(this.frames.shift());
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
  send(line, body) {
    const parts = [Buffer.from(line)];
    if (body !== undefined) {
      const bytes = Buffer.from(body);
      const size = Buffer.alloc(4);
      size.writeUInt32BE(bytes.length);
      parts.push(size, bytes);
    }
    this.socket.write(Buffer.concat(parts));
  }
  async expectOk(what) {
    const frame = await this.next();
    if (frame.type !== 0 || frame.text !== 'OK') throw new Error(`${what}: got ${JSON.stringify(frame)}`);
  }
  close() { this.socket.destroy(); }
}

async function publish(addr, topic, count) {
  const conn = new NsqConn(addr);
  await conn.ready;
  conn.send('  V2');
  for (let i = 0; i < count; i += 1) {
    conn.send(`PUB ${topic}\n`, `${topic} message ${i} ${Date.now()}`);
    await conn.expectOk(`PUB ${topic}`);
  }
  conn.close();
}

async function consume(addr, topic, channel, userAgent, rdy) {
  const conn = new NsqConn(addr);
  await conn.ready;
  conn.send('  V2');
  conn.send('IDENTIFY\n', JSON.stringify({
    client_id: 'e2e-consumer', hostname: 'e2e-consumer-host', user_agent: userAgent, feature_negotiation: true,
  }));
  const identify = await conn.next();
  if (identify.type !== 0) throw new Error(`IDENTIFY: ${identify.text}`);
  conn.send(`SUB ${topic} ${channel}\n`);
  await conn.expectOk('SUB');
  conn.send(`RDY ${rdy}\n`);
  return conn;
}

// ---------------------------------------------------------------------------------------------
// Helpers

async function getJson(url) {
  const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return response.json();
}

const nsqdStats = (node, topic) => getJson(`http://${node.http}/stats?format=json&topic=${encodeURIComponent(topic)}`);
const statsTopic = async (node, topic) => ((await nsqdStats(node, topic)).topics || [])[0];
const statsChannel = async (node, topic, channel) => ((await statsTopic(node, topic))?.channels || []).find((c) => c.channel_name === channel);

async function eventually(what, check, timeout = 20000) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const result = await check();
      if (result) return result;
      last = 'condition false';
    } catch (err) {
      last = err.message;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (${last})`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
  log('ok:', what);
}

// ---------------------------------------------------------------------------------------------
// Graphite

// The `target` values of a graph URL (relative URLs resolve against the page).
function targetsOf(src) {
  return new URL(src, 'http://page.invalid/').searchParams.getAll('target');
}

async function graphSources(page, selector) {
  return page.locator(selector).evaluateAll((imgs) => imgs.map((img) => ({
    src: img.getAttribute('src'), absolute: img.src, loaded: img.complete && img.naturalWidth > 0,
  })));
}

async function allLoaded(page, selector) {
  return eventually(`graphite images loaded (${selector})`, async () => {
    const imgs = await graphSources(page, selector);
    return imgs.length > 0 && imgs.every((img) => img.loaded) ? imgs : null;
  });
}

async function graphiteChecks(page, shot) {
  const G = cfg.graphite_admin;
  const P = cfg.proxy_admin;
  const nodeKey = (node) => node.http.replace(/[.:]/g, '_');
  const spark = (target, interval = 60) => `summarize(${target},"${interval}sec","avg")`;

  // Straight from graphite, upstream's default names (prefix nsq.%s, stats.counters/gauges).
  await page.goto(`${G}/topics/e2e_live`);
  await page.locator('#topic-graphite img[data-graphite]').first().waitFor();
  check(await page.locator('#graph-interval').inputValue() === '2h', 'graph timeframe defaults to 2h');
  const topicImgs = await allLoaded(page, '#topic-graphite img[data-graphite], #topic-channels-graphite img[data-graphite]');
  check(topicImgs.every((img) => img.src.startsWith(`${cfg.graphite}/render?`)), 'topic graphs load from graphite itself');
  const targets = topicImgs.flatMap((img) => targetsOf(img.src));
  for (const expected of [
    spark('sumSeries(stats.gauges.nsq.*.topic.e2e_live.depth)'),
    spark('sumSeries(stats.counters.nsq.*.topic.e2e_live.message_count.count)'),
    spark(`sumSeries(stats.gauges.nsq.${nodeKey(A)}.topic.e2e_live.depth)`),
    spark(`sumSeries(stats.counters.nsq.${nodeKey(B)}.topic.e2e_live.message_count.count)`),
    spark('sumSeries(stats.gauges.nsq.*.topic.e2e_live.channel.workers.depth)'),
    spark('sumSeries(stats.gauges.nsq.*.topic.e2e_live.channel.workers.in_flight_count)'),
    spark('sumSeries(stats.counters.nsq.*.topic.e2e_live.channel.workers.requeue_count.count)'),
    spark('sumSeries(stats.counters.nsq.*.topic.e2e_live.channel.workers.message_count.count)'),
    spark('sumSeries(stats.gauges.nsq.*.topic.e2e_live.channel.workers.clients)'),
  ]) check(targets.includes(expected), `topic page graphs ${expected}`);
  check(new URL(topicImgs[0].src).searchParams.get('from') === '-2h', 'sparklines cover -2h');
  const large = await page.locator('#topic-graphite tr[data-node="*"] a.graphite').first().getAttribute('href');
  check(targetsOf(large).includes(spark('sumSeries(stats.gauges.nsq.*.topic.e2e_live.depth)'))
    && new URL(large).searchParams.get('width') === '800', 'sparklines link to the 800×450 graph');
  const rate = page.locator('#topic-graphite tr[data-node="*"] [data-graphite-rate]');
  check(await rate.getAttribute('data-graphite-rate') === 'sumSeries(stats.counters.nsq.*.topic.e2e_live.message_count.count)', 'rate target is the topic message count');
  await eventually('graphite rate 120 / 60 s', async () => (await rate.innerText()) === '2.00');
  await page.waitForTimeout(1500);
  await shot('graphite-topic');

  // The timeframe selector changes every graph.
  await page.selectOption('#graph-interval', '24h');
  await eventually('graphs redrawn for 24h', async () => {
    const imgs = await graphSources(page, '#topic-graphite img[data-graphite]');
    return imgs.length > 0 && imgs.every((img) => new URL(img.src).searchParams.get('from') === '-24h');
  });
  await page.selectOption('#graph-interval', '2h');

  // Channel, topics list, node and counter pages.
  await page.goto(`${G}/topics/e2e_live/workers`);
  const channelImgs = await allLoaded(page, '#channel-graphite img[data-graphite]');
  check(channelImgs.flatMap((img) => targetsOf(img.src)).includes(spark(`sumSeries(stats.gauges.nsq.${nodeKey(A)}.topic.e2e_live.channel.workers.depth)`)),
    'channel page graphs per-node channel depth');
  await page.goto(`${G}/topics`);
  const listImgs = await allLoaded(page, 'tr[data-topic="e2e_live"] img[data-graphite]');
  check(listImgs.flatMap((img) => targetsOf(img.src)).includes(spark('sumSeries(stats.counters.nsq.*.topic.e2e_live.message_count.count)')),
    'topics list graphs each topic');
  await eventually('topics list graphite rate', async () => (await page.locator('tr[data-topic="e2e_live"] [data-graphite-rate]').innerText()) === '2.00');
  await shot('graphite-topics');
  await page.goto(`${G}/nodes/${A.http}`);
  const nodeImgs = await allLoaded(page, '#node-graphite img[data-graphite]');
  const nodeTargets = nodeImgs.flatMap((img) => targetsOf(img.src));
  check(nodeImgs.length === 4
    && nodeTargets.includes(spark(`stats.gauges.nsq.${nodeKey(A)}.mem.heap_objects`))
    && nodeTargets.includes(spark(`stats.gauges.nsq.${nodeKey(A)}.mem.*_bytes`))
    && nodeTargets.includes(spark(`scale(movingAverage(stats.counters.nsq.${nodeKey(A)}.mem.gc_runs.count,45),0.016666666666666666)`)),
  'node page draws the four memory graphs');
  await page.goto(`${G}/counter`);
  const counterImgs = await allLoaded(page, '#counter-graphite img[data-graphite]');
  check(targetsOf(counterImgs[0].src).includes(spark('scale(sumSeries(stats.counters.nsq.*.topic.*.channel.*.message_count.count),0.016666666666666666)')),
    'counter page graphs the cluster message rate');

  // Through nsqadmin's /render, with the proxied nsqadmin's statsd flags.
  await page.goto(`${P}/topics/e2e_live`);
  const proxied = await allLoaded(page, '#topic-graphite img[data-graphite], #topic-channels-graphite img[data-graphite]');
  check(proxied.every((img) => img.absolute.startsWith(`${P}/render?`) && img.src.startsWith('/render?')),
    'with --proxy-graphite the page loads graphs from nsqadmin\'s /render');
  const proxiedTargets = proxied.flatMap((img) => targetsOf(img.src));
  for (const expected of [
    spark('sumSeries(prod.*.topic.e2e_live.depth)', 10),
    spark('sumSeries(stats_counts.prod.*.topic.e2e_live.message_count)', 10),
    spark(`sumSeries(prod.${nodeKey(A)}.topic.e2e_live.depth)`, 10),
    spark('sumSeries(stats_counts.prod.*.topic.e2e_live.channel.workers.requeue_count)', 10),
  ]) check(proxiedTargets.includes(expected), `proxied topic page graphs ${expected}`);
  const proxiedRate = page.locator('#topic-graphite tr[data-node="*"] [data-graphite-rate]');
  await eventually('graphite rate 120 / 10 s', async () => (await proxiedRate.innerText()) === '12.00');
  check((await page.locator('#footer').innerText()).includes('graphite (proxied)'), 'footer says graphite is proxied');
  await shot('graphite-proxied');
}

// ---------------------------------------------------------------------------------------------

const consoleErrors = [];
let context;
let userDataDir;
const background = { stop: false };

async function main() {
  await mkdir(SHOTS, { recursive: true });
  userDataDir = await mkdtemp(join(tmpdir(), 'nsqadmin-e2e-profile-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1360, height: 860 },
    colorScheme: 'light',
  });
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(20000);
  await page.addInitScript(() => localStorage.setItem('nsqadmin.refresh', '1000'));
  page.on('console', (message) => { if (message.type() === 'error') consoleErrors.push(`${page.url()}: ${message.text()}`); });
  page.on('pageerror', (err) => consoleErrors.push(`${page.url()}: ${err.message}`));
  const shot = async (name) => {
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
    log('screenshot', `${name}.png`);
  };
  const confirm = async (name) => {
    await page.locator('#confirm[open]').waitFor();
    if (name) await shot(name);
    await page.click('#confirm-ok');
    await page.locator('#confirm[open]').waitFor({ state: 'detached' }).catch(() => {});
    await eventually('dialog closed', () => page.evaluate(() => !document.getElementById('confirm').open));
  };
  const cellValue = (selector) => page.locator(selector).first().getAttribute('data-value');

  // Background traffic so the live charts have something to draw.
  const liveTraffic = (async () => {
    let i = 0;
    while (!background.stop) {
      for (const node of [A, B]) {
        fetch(`http://${node.http}/mpub?topic=e2e_live`, {
          method: 'POST', body: Array.from({ length: 5 + (i % 7) }, (_, k) => `live ${i} ${k}`).join('\n'), signal: AbortSignal.timeout(800),
        }).catch(() => {});
      }
      i += 1;
      await new Promise((resolve) => setTimeout(resolve, 400));
    }
  })();
  await fetch(`http://${A.http}/topic/create?topic=e2e_live`, { method: 'POST' });
  await fetch(`http://${A.http}/channel/create?topic=e2e_live&channel=workers`, { method: 'POST' });
  await fetch(`http://${B.http}/topic/create?topic=e2e_live`, { method: 'POST' });
  await fetch(`http://${B.http}/channel/create?topic=e2e_live&channel=workers`, { method: 'POST' });

  // 1. A topic published on both nodes shows its total depth in the topics list.
  await publish(A.tcp, 'e2e_orders', 3);
  await publish(B.tcp, 'e2e_orders', 4);
  await eventually('both nodes produce e2e_orders', async () => (await getJson(`${ADMIN}/api/topics/e2e_orders`)).nodes?.length === 2);
  const nsqdDepth = (await statsTopic(A, 'e2e_orders')).depth + (await statsTopic(B, 'e2e_orders')).depth;
  check(nsqdDepth === 7, `nsqd /stats depths add up to 7 (got ${nsqdDepth})`);
  await page.goto(`${ADMIN}/`);
  await eventually('topics list shows e2e_orders depth 7', async () => (await cellValue('tr[data-topic="e2e_orders"] td[data-col="depth"]')) === '7');
  check(await page.locator('tr[data-topic="e2e_orders"] td[data-col="nodes"]').innerText() === '2', 'topics list shows e2e_orders on 2 nodes');
  await page.waitForTimeout(3500);
  await shot('topics');

  // 2. Create a channel from the Lookup page (confirm dialog); it lands on both nodes.
  await page.click('a[data-nav="lookup"]');
  await page.locator('#create-form').waitFor();
  await shot('lookup');
  await page.fill('#create-topic', 'e2e_orders');
  await page.fill('#create-channel', 'e2e_billing');
  await page.click('#create-form button[type="submit"]');
  await confirm('confirm-create');
  await eventually('topic page after create', () => page.locator('body[data-page="topic"] [data-title]').innerText().then((t) => t === 'e2e_orders'));
  for (const node of [A, B]) {
    await eventually(`e2e_billing exists on ${node.http}`, async () => Boolean(await statsChannel(node, 'e2e_orders', 'e2e_billing')));
  }
  await page.click('#topic-channels tr[data-channel="e2e_billing"] a');
  await eventually('channel page', () => page.locator('body[data-page="channel"] [data-title]').innerText().then((t) => t === 'e2e_billing'));
  await eventually('channel depth 7 on the page', async () => (await page.locator('[data-stat="depth"] .value').innerText()) === '7');

  // 3. A consumer with a user agent appears on the channel page.
  const consumer = await consume(A.tcp, 'e2e_orders', 'e2e_billing', 'nsqadmin-e2e/1.0', 2);
  await eventually('client row with the user agent', async () => (await page.locator('#channel-clients td[data-col="user_agent"]').first().innerText()).includes('nsqadmin-e2e/1.0'));
  await eventually('client holds 2 in flight', async () => (await cellValue('#channel-clients td[data-col="in_flight"]')) === '2');
  check((await page.locator('#channel-clients tr[data-client="e2e-consumer"]').innerText()).includes(A.http), 'client row names its nsqd');
  await eventually('consumer received 2 messages', () => consumer.messages === 2);
  await page.waitForTimeout(2500);
  await shot('channel');

  // 4. Pause the channel (confirm): paused on both nodes; then unpause.
  await page.click('button[data-action="pause"]');
  await confirm('confirm-pause');
  for (const node of [A, B]) {
    await eventually(`e2e_billing paused on ${node.http}`, async () => (await statsChannel(node, 'e2e_orders', 'e2e_billing')).paused === true);
  }
  await page.locator('h1 [data-paused="true"]').waitFor();
  check(true, 'page shows the channel paused');
  await page.click('button[data-action="unpause"]');
  await confirm();
  for (const node of [A, B]) {
    await eventually(`e2e_billing unpaused on ${node.http}`, async () => (await statsChannel(node, 'e2e_orders', 'e2e_billing')).paused === false);
  }

  // 5. Empty the channel: depth and in flight go to 0 on both nodes.
  await page.click('button[data-action="empty"]');
  await confirm('confirm-empty');
  for (const node of [A, B]) {
    await eventually(`e2e_billing emptied on ${node.http}`, async () => {
      const channel = await statsChannel(node, 'e2e_orders', 'e2e_billing');
      return channel.depth === 0 && channel.in_flight_count === 0;
    });
  }
  await eventually('page shows depth 0', async () => (await page.locator('[data-stat="depth"] .value').innerText()) === '0');

  // 6. Delete the channel: gone from both nodes; the page goes to the topic.
  await page.click('button[data-action="delete"]');
  await confirm();
  for (const node of [A, B]) {
    await eventually(`e2e_billing deleted on ${node.http}`, async () => !(await statsChannel(node, 'e2e_orders', 'e2e_billing')));
  }
  await eventually('topic page after channel delete', () => page.locator('body[data-page="topic"] [data-title]').innerText().then((t) => t === 'e2e_orders'));
  consumer.close();

  // 7. Topic: pause (both nodes), unpause, then delete (gone from both nodes).
  await page.click('button[data-action="pause"]');
  await confirm();
  for (const node of [A, B]) {
    await eventually(`e2e_orders paused on ${node.http}`, async () => (await statsTopic(node, 'e2e_orders')).paused === true);
  }
  await page.click('button[data-action="unpause"]');
  await confirm();
  for (const node of [A, B]) {
    await eventually(`e2e_orders unpaused on ${node.http}`, async () => (await statsTopic(node, 'e2e_orders')).paused === false);
  }
  await page.click('button[data-action="delete"]');
  await confirm('confirm-delete-topic');
  for (const node of [A, B]) {
    await eventually(`e2e_orders deleted on ${node.http}`, async () => !(await statsTopic(node, 'e2e_orders')));
  }
  await eventually('back on the topics list', () => page.locator('body[data-page="topics"]').count().then((n) => n === 1));

  // 8. Lookup page: a topic only lookupd knows is listed as inactive and can be deleted there.
  const inactive = async () => (await getJson(`${ADMIN}/api/topics?inactive=true`)).topics || {};
  await page.click('a[data-nav="lookup"]');
  await page.fill('#create-topic', 'e2e_inactive');
  await page.fill('#create-channel', 'e2e_idle');
  await page.click('#create-form button[type="submit"]');
  await confirm();
  await eventually('topic page says no producers', async () => (await page.locator('body[data-page="topic"] .empty-state').innerText()).includes('No producers'));
  await page.click('a[data-nav="lookup"]');
  await page.locator('#inactive-table tr[data-topic="e2e_inactive"] span.chip[data-channel="e2e_idle"]').waitFor();
  await shot('lookup-inactive');
  await page.click('button[data-action="delete-channel"][data-channel="e2e_idle"]');
  await confirm();
  await eventually('e2e_idle gone from lookupd', async () => !((await inactive()).e2e_inactive || []).includes('e2e_idle'));
  await page.locator('#inactive-table span.chip[data-channel="e2e_idle"]').waitFor({ state: 'detached' });
  await page.click('button[data-action="delete-topic"][data-topic="e2e_inactive"]');
  await confirm();
  await eventually('e2e_inactive gone from lookupd', async () => !('e2e_inactive' in (await inactive())));
  check(true, 'inactive topic and channel deleted from the Lookup page');

  // 9. A read-only user sees no action buttons.
  if (cfg.readonly_admin) {
    await page.goto(`${cfg.readonly_admin}/topics/e2e_live`);
    await page.locator('#topic-nodes').waitFor();
    check(await page.locator('[data-action]').count() === 0, 'read-only page has no action buttons');
    check((await page.locator('#footer').innerText()).includes('read-only'), 'read-only page says so');
    await page.goto(`${cfg.readonly_admin}/lookup`);
    await page.locator('body[data-page="lookup"] h1').waitFor();
    check(await page.locator('#create-form').count() === 0, 'read-only lookup page has no create form');
  }

  // 10. The other pages.
  await page.goto(`${ADMIN}/topics/e2e_live`);
  await page.locator('#topic-channels').waitFor();
  await page.waitForTimeout(4000);
  await shot('topic');
  await page.goto(`${ADMIN}/topics/e2e_live/workers`);
  await page.locator('#channel-nodes').waitFor();
  await page.waitForTimeout(2500);
  await shot('channel-live');
  await page.click('a[data-nav="nodes"]');
  await page.locator(`#nodes-table tr[data-node="${A.http}"]`).waitFor();
  await page.locator(`#nodes-table tr[data-node="${B.http}"]`).waitFor();
  await shot('nodes');
  await page.click(`#nodes-table tr[data-node="${A.http}"] a`);
  await page.locator('body[data-page="node"] .topic-card[data-topic="e2e_live"]').waitFor();
  await shot('node');
  await page.click('a[data-nav="counter"]');
  await eventually('counter shows a total', async () => Number(await page.locator('#counter-value').getAttribute('data-total')) > 0);
  await page.waitForTimeout(4000);
  await shot('counter');

  // 11. Graphite graphs (only with --graphite-url): <img> of graphite's /render with upstream's
  // target names, straight from graphite or through nsqadmin's /render (--proxy-graphite).
  check(await page.locator('img[data-graphite]').count() === 0 && await page.locator('#graph-interval-box').isHidden(),
    'no graphite graphs or timeframe selector without --graphite-url');
  if (cfg.graphite_admin) await graphiteChecks(page, shot);

  // 12. A node goes down: the page says which one and shows the rest.
  process.kill(B.pid, 'SIGSTOP');
  log('nsqd B stopped (SIGSTOP)', B.http);
  await page.goto(`${ADMIN}/`);
  await eventually('warning banner names the hung node', async () => (await page.locator('[data-banner="warning"]').innerText()).includes(B.http));
  await page.locator(`[data-node-status="${B.http}"][data-ok="false"]`).waitFor();
  await page.locator(`[data-node-status="${A.http}"][data-ok="true"]`).waitFor();
  check(await page.locator('tr[data-topic="e2e_live"]').count() === 1, 'topics list still shows e2e_live from node A');
  await shot('node-down-lookupd');
  await page.goto(`${ADMIN}/topics/e2e_live`);
  await eventually('topic page warns about the hung node', async () => (await page.locator('[data-banner="warning"]').innerText()).includes(B.http));
  check(await page.locator(`#topic-nodes tr[data-node="${A.http}"]`).count() === 1, 'topic page still shows node A');

  process.kill(B.pid, 'SIGKILL');
  log('nsqd B killed (SIGKILL)', B.http);
  if (DIRECT) {
    await page.goto(`${DIRECT}/`);
    await eventually('direct mode: banner names the dead node', async () => (await page.locator('[data-banner="warning"]').innerText()).includes(B.http));
    await page.locator(`[data-node-status="${B.http}"][data-ok="false"]`).waitFor();
    check(await page.locator('tr[data-topic="e2e_live"]').count() === 1, 'direct mode: topics list still works');
    await shot('node-down-direct');
    await page.click('a[data-nav="nodes"]');
    await page.locator(`#nodes-table tr[data-failed="true"][data-node="${B.http}"]`).waitFor();
    await page.locator(`#nodes-table tr[data-node="${A.http}"]`).waitFor();
    check(true, 'direct mode: nodes page lists the dead node as unreachable');
    await shot('nodes-down-direct');
  }

  check(consoleErrors.length === 0, `no console errors (${consoleErrors.join(' | ')})`);
  background.stop = true;
  await liveTraffic;
}

let failed = false;
try {
  await main();
  log('PASS');
} catch (err) {
  failed = true;
  console.error('E2E FAILED:', err.stack || err.message);
  if (consoleErrors.length) console.error('console errors:', consoleErrors);
  try {
    const page = context?.pages()[0];
    if (page) await page.screenshot({ path: join(SHOTS, 'failure.png'), fullPage: true });
  } catch (_) { /* best effort */ }
} finally {
  background.stop = true;
  try { await context?.close(); } catch (_) { /* ignore */ }
  if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
