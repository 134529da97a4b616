// Graphite graph URLs and target names, built the way upstream nsqadmin's page builds them
// (its handlebars helpers `sparkline`, `large_graph` and `rate`).
//
// nsqd pushes statsd metrics named `<prefix><stat>` (`--statsd-prefix`, `%s` = host key); the statsd
// server stores counters under `--statsd-counter-format` and gauges under `--statsd-gauge-format`
// (`%s` = the key); the page points <img> elements at graphite's `/render` (nsqadmin's own `/render`
// with `--proxy-graphite`). Pure functions, no DOM: loaded by the page before app.js, and by the
// Rust tests under node (`tests/cluster/graphite.rs`).
//
// `settings` = the page config's graphite part: { graphite_url, statsd_prefix, statsd_counter_format,
// statsd_gauge_format, statsd_interval (seconds) }.
'use strict';

(function (root) {
  // Upstream's metric types; anything else is left unwrapped.
  const METRIC_TYPES = {
    depth: 'gauge',
    in_flight_count: 'gauge',
    deferred_count: 'gauge',
    requeue_count: 'counter',
    timeout_count: 'counter',
    message_count: 'counter',
    clients: 'gauge',
    '*_bytes': 'gauge',
    'gc_pause_*': 'gauge',
    gc_runs: 'counter',
    heap_objects: 'gauge',
    e2e_processing_latency: 'gauge',
  };

  // The timeframes of the page's selector (`off` hides the graphs).
  const INTERVALS = ['1h', '2h', '12h', '24h', '48h', '168h', 'off'];

  const metricType = (key) => METRIC_TYPES[key];

  // `key` as the statsd server stores it in graphite: `stats.counters.<key>.count`,
  // `stats.gauges.<key>` with the default formats; an empty format means no wrapping.
  function formatKey(settings, type, key) {
    let format = '';
    if (type === 'counter') format = settings.statsd_counter_format;
    else if (type === 'gauge') format = settings.statsd_gauge_format;
    if (!format) return key;
    return String(format).replace(/%s/g, () => key);
  }

  // `--statsd-prefix` for a host (`host:port`, or `*` for every host): `%s` = the host with `.` and
  // `:` turned into `_`, and a trailing `.` as nsqd adds one.
  function prefix(settings, host) {
    const text = String(settings.statsd_prefix ?? '');
    if (!text) return '';
    const hostKey = String(host).replace(/[.:]/g, '_');
    const expanded = text.replace(/%s/g, () => hostKey);
    return expanded.endsWith('.') ? expanded : `${expanded}.`;
  }

  // A quantile as nsqd names its e2e gauges: quantile × 100 printed with no decimals (Go's `%.0f`,
  // half to even).
  function quantileSuffix(quantile) {
    const value = Number(quantile) * 100;
    let rounded = Math.round(value);
    if (Math.abs(value % 1) === 0.5 && rounded % 2 !== 0) rounded -= 1;
    return String(rounded);
  }

  // Graphite targets for one graph.
  //   typ 'topic':   ns1 = topic;                      key = a topic stat
  //   typ 'channel': ns1 = topic, ns2 = channel;       key = a channel stat
  //   typ 'node':    the nsqd's memory stats;          key = heap_objects, gc_runs, '*_bytes', 'gc_pause_*'
  //   typ 'e2e':     ns1 = {topic, channel, percentiles}; key = 'e2e_processing_latency' (one target per percentile)
  //   typ 'counter': every channel of every topic;     key = message_count
  // `node` is the nsqd's `host:http_port`, or `*` / '' for the whole cluster.
  function targets(settings, typ, node, ns1, ns2, key) {
    const host = node || '*';
    const p = prefix(settings, host);
    const type = metricType(key);
    if (typ === 'topic') {
      return [`sumSeries(${formatKey(settings, type, `${p}topic.${ns1}.${key}`)})`];
    }
    if (typ === 'channel') {
      return [`sumSeries(${formatKey(settings, type, `${p}topic.${ns1}.channel.${ns2}.${key}`)})`];
    }
    if (typ === 'node') {
      const target = formatKey(settings, type, `${p}mem.${key}`);
      return [key === 'gc_runs' ? `movingAverage(${target},45)` : target];
    }
    if (typ === 'e2e') {
      const e2e = ns1 || {};
      return (e2e.percentiles || []).map((percentile) => {
        const path = e2e.channel
          ? `${p}topic.${e2e.topic}.channel.${e2e.channel}.${key}_${quantileSuffix(percentile.quantile)}`
          : `${p}topic.${e2e.topic}.${key}_${quantileSuffix(percentile.quantile)}`;
        let target = formatKey(settings, type, path);
        if (host === '*') target = `averageSeries(${target})`;
        return `scale(${target},0.000001)`;
      });
    }
    if (typ === 'counter') {
      return [`sumSeries(${formatKey(settings, type, `${p}topic.*.channel.*.${key}`)})`];
    }
    return [];
  }

  function colorList(typ, key) {
    if ((typ === 'topic' || typ === 'channel') && (key === 'depth' || key === 'deferred_count')) return 'red';
    if (typ === 'node') return 'red,green,blue,purple';
    if (typ === 'counter') return 'green';
    return 'blue';
  }

  // `<graphite>/render?…` from ordered [name, value] pairs (`target` may repeat).
  function renderUrl(settings, pairs) {
    const query = pairs.map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(value)}`).join('&');
    return `${String(settings.graphite_url || '').replace(/\/+$/, '')}/render?${query}`;
  }

  const summarize = (settings, target) => `summarize(${target},"${Number(settings.statsd_interval) || 60}sec","avg")`;

  // A 120×20 sparkline over the last `interval` (`2h`).
  function sparklineUrl(settings, interval, typ, node, ns1, ns2, key) {
    const pairs = [
      ['colorList', colorList(typ, key)], ['height', '20'], ['width', '120'],
      ['hideGrid', 'true'], ['hideLegend', 'true'], ['hideAxes', 'true'],
      ['bgcolor', 'ff000000'], ['fgcolor', 'black'], ['margin', '0'], ['yMin', '0'],
      ['lineMode', 'connected'], ['drawNullAsZero', 'false'],
      ['from', `-${interval}`], ['until', '-1min'],
    ];
    for (const target of targets(settings, typ, node, ns1, ns2, key)) pairs.push(['target', summarize(settings, target)]);
    return renderUrl(settings, pairs);
  }

  // An 800×450 graph; counters are scaled to per-second rates.
  function largeGraphUrl(settings, interval, typ, node, ns1, ns2, key) {
    const pairs = [
      ['colorList', colorList(typ, key)], ['height', '450'], ['width', '800'],
      ['bgcolor', 'ff000000'], ['fgcolor', '999999'], ['yMin', '0'],
      ['lineMode', 'connected'], ['drawNullAsZero', 'false'],
      ['from', `-${interval}`], ['until', '-1min'],
    ];
    const perSecond = 1 / (Number(settings.statsd_interval) || 60);
    for (let target of targets(settings, typ, node, ns1, ns2, key)) {
      if (metricType(key) === 'counter') target = `scale(${target},${perSecond})`;
      pairs.push(['target', summarize(settings, target)]);
    }
    return renderUrl(settings, pairs);
  }

  // The target whose rate `/api/graphite?metric=rate&target=…` computes (messages per second).
  const rateTarget = (settings, typ, node, ns1, ns2) => targets(settings, typ, node, ns1, ns2, 'message_count')[0];

  root.NsqGraphite = {
    INTERVALS, metricType, formatKey, prefix, quantileSuffix, targets, sparklineUrl, largeGraphUrl, rateTarget,
  };
}(typeof globalThis !== 'undefined' ? globalThis : this));
