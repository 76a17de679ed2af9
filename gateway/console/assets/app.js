// The operator console: reads the gateway's JSON API with the key the operator types in and shows it as
// panels. The key lives only in this tab's sessionStorage and goes out only as `Authorization: Bearer` to
// this origin (the Content-Security-Policy's connect-src). Every panel loads on its own, so one route that
// fails or that the key may not read shows its problem in its panel and leaves the others working.
'use strict';

(() => {
  const KEY_STORAGE = 'tayori.console.key';
  const REFRESH_MS = 30_000;
  const FLOW_COUNTERS = ['accepted', 'delivered', 'failed', 'deferred', 'suppressed'];
  const COLOURS = {
    accepted: '#5b6b7b', delivered: '#1e7b46', failed: '#b42318', deferred: '#c27c0e', suppressed: '#6941c6',
  };
  const RECENT_ROWS = 20;
  // Suppressions are paged by contact point, not by time: the newest are found among at most this many pages.
  const SUPPRESSION_PAGES = 10;
  // The feed bounds what one filtered read scans (GET /v1/events): this many reads look further back.
  const CONSENT_READS = 5;

  const number = new Intl.NumberFormat('en-US');
  const percent = new Intl.NumberFormat('en-US', { style: 'percent', maximumFractionDigits: 1 });
  const timeOfDay = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const dateTime = new Intl.DateTimeFormat(undefined, {
    month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });

  const $ = (selector, root = document) => root.querySelector(selector);

  // An element with attributes (`dataset` and `class` handled) and children (strings become text: never HTML).
  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === undefined || value === null) continue;
      if (name === 'dataset') Object.assign(node.dataset, value);
      else if (name === 'class') node.className = value;
      else node.setAttribute(name, value);
    }
    node.append(...children.filter((c) => c !== undefined && c !== null));
    return node;
  }

  const num = (value, counter) => el('td', { class: 'num', dataset: counter ? { counter } : undefined },
    number.format(value));
  const when = (iso) => el('time', { datetime: iso, title: iso }, dateTime.format(new Date(iso)));
  const sum = (values) => values.reduce((a, b) => a + b, 0);
  const count = (n, noun) => `${number.format(n)} ${noun}${n === 1 ? '' : 's'}`;
  // A panel's own table body: the charts' legends are tables too (uPlot), so never the first tbody found.
  const rowsOf = (section) => $(':scope > table > tbody, :scope > .result > table > tbody', section);
  const emptyRow = (columns, text) => el('tr', {}, el('td', { class: 'empty', colspan: columns }, text));

  // ---- The API -------------------------------------------------------------------------------------------

  // A failed call, with the API's problem+json (RFC 9457) when it sent one.
  class ApiError extends Error {
    constructor(status, problem, path) {
      super(problem?.detail || `HTTP ${status} from ${path}`);
      this.status = status;
      this.problem = problem;
    }
  }

  const key = () => sessionStorage.getItem(KEY_STORAGE);

  async function api(path, { method = 'GET', accept = [] } = {}) {
    let response;
    try {
      response = await fetch(path, { method, headers: { Authorization: `Bearer ${key()}` }, cache: 'no-store' });
    } catch (e) {
      throw new ApiError(0, { title: 'Network error', detail: `the gateway did not answer (${e.message})` }, path);
    }
    const json = (response.headers.get('content-type') || '').includes('json');
    const body = json ? await response.json().catch(() => null) : null;
    if (!response.ok && !accept.includes(response.status)) throw new ApiError(response.status, body, path);
    return body;
  }

  // ---- Panels --------------------------------------------------------------------------------------------

  // Runs a panel's loader and shows what went wrong in the panel instead of leaving it stale or empty. A 403 on
  // a panel that needs read_all says so plainly: it is the key, not the gateway.
  async function load(panel, loader) {
    const section = $(`#${panel}`);
    const problem = $('.problem:not(.limited)', section);
    section.dataset.state = 'loading';
    try {
      await loader(section);
      problem.hidden = true;
      section.dataset.state = 'ok';
    } catch (e) {
      showProblem(section, e);
    }
  }

  function showProblem(section, error) {
    const problem = $('.problem:not(.limited)', section);
    const p = error.problem || {};
    const heading = `${error.status || ''} ${p.title || ''}`.trim();
    const lacksScope = error.status === 403 && section.dataset.needs === 'read_all';
    problem.classList.toggle('scope', lacksScope);
    problem.replaceChildren(...[
      lacksScope ? el('strong', {}, 'This key lacks read_all, which this panel needs. ') : null,
      heading ? `${heading}: ` : null,
      p.detail || error.message].filter((part) => part !== null));
    problem.hidden = false;
    section.dataset.state = lacksScope ? 'forbidden' : 'error';
    section.dataset.status = String(error.status || '');
  }

  // uPlot charts, kept per panel so a refresh replaces them instead of stacking new ones.
  const charts = new Map();

  function chart(panel, holder, options, data) {
    const width = Math.max(holder.clientWidth, 300);
    const plot = new uPlot({ width, height: 180, ...options }, data, holder);
    const observer = new ResizeObserver(() => plot.setSize({ width: Math.max(holder.clientWidth, 300), height: 180 }));
    observer.observe(holder);
    charts.get(panel).push({ plot, observer });
  }

  function clearCharts(panel) {
    for (const { plot, observer } of charts.get(panel) || []) {
      observer.disconnect();
      plot.destroy();
    }
    charts.set(panel, []);
  }

  // Flow: GET /v1/stats/flow?minutes=60, one chart per channel and the hour's totals.
  async function loadFlow(section) {
    const flow = await api('/v1/stats/flow?minutes=60');
    const holder = $('.charts', section);
    clearCharts('flow');
    holder.replaceChildren();
    section.dataset.from = flow.from;
    section.dataset.to = flow.to;
    const minutes = flow.minutes.map((t) => Date.parse(t) / 1000);
    const names = Object.keys(flow.channels).sort();
    const rows = [];
    for (const name of names) {
      const counters = flow.channels[name];
      const box = el('div', { class: 'chart', dataset: { channel: name } }, el('h3', {}, name));
      holder.append(box);
      chart('flow', box, {
        scales: { x: { time: true } },
        axes: [{}, { size: 48 }],
        series: [{}, ...FLOW_COUNTERS.map((c) => ({
          label: c, stroke: COLOURS[c], width: 1.5, paths: uPlot.paths.stepped({ align: 1 }),
        }))],
      }, [minutes, ...FLOW_COUNTERS.map((c) => counters[c])]);
      rows.push(el('tr', { dataset: { channel: name } }, el('th', { scope: 'row' }, name),
        ...FLOW_COUNTERS.map((c) => num(sum(counters[c]), c))));
    }
    rowsOf(section).replaceChildren(...(rows.length ? rows : [emptyRow(6, 'No channel has had traffic.')]));
  }

  // Deferred messages and other scheduled work by the hour it reopens: GET /v1/stats/queue.
  async function loadQueue(section) {
    const queue = await api('/v1/stats/queue');
    $('[data-counter="total"]', section).textContent = number.format(queue.total);
    $('.noun', section).textContent = queue.total === 1 ? 'message' : 'messages';
    clearCharts('queue');
    const holder = $('.charts', section);
    holder.replaceChildren();
    if (queue.hours.length) {
      const box = el('div', { class: 'chart' });
      holder.append(box);
      const hours = queue.hours.map((h) => Date.parse(h.at) / 1000);
      chart('queue', box, {
        // Half an hour either side of the first and last bar: uPlot would stretch a single bar over years.
        scales: { x: { time: true, auto: false, range: [hours[0] - 1800, hours[hours.length - 1] + 1800] } },
        axes: [{}, { size: 48 }],
        legend: { show: false },
        series: [{}, { label: 'messages', stroke: COLOURS.deferred, fill: `${COLOURS.deferred}55`,
          paths: uPlot.paths.bars({ size: [0.6, 48] }) }],
      }, [hours, queue.hours.map((h) => h.messages)]);
    }
    rowsOf(section).replaceChildren(...(queue.hours.length
      ? queue.hours.map((h) => el('tr', { dataset: { at: h.at } },
        el('td', {}, when(h.at)), num(h.messages, 'messages')))
      : [emptyRow(2, 'Nothing is waiting.')]));
  }

  // Channels and their circuit breakers: GET /readyz, which answers 503 with the same body when not ready.
  async function loadCircuits(section) {
    const ready = await api('/readyz', { accept: [503] });
    const { checks } = ready;
    $('.headline', section).replaceChildren(
      el('span', { class: `badge ${ready.status === 'ready' ? 'good' : 'bad'}` }, ready.status.replace('_', ' ')),
      ` store ${checks.store}`, checks.draining ? ', draining' : '');
    const circuitClass = { closed: 'good', half_open: 'warn', open: 'bad' };
    const rows = Object.entries(checks.channels).sort(([a], [b]) => a.localeCompare(b)).map(([name, c]) =>
      el('tr', { dataset: { channel: name } }, el('th', { scope: 'row' }, name),
        el('td', {}, el('span', { class: `badge ${c.status === 'ok' ? 'good' : 'bad'}` }, c.status)),
        el('td', { dataset: { circuit: c.circuit } },
          el('span', { class: `badge ${circuitClass[c.circuit] || ''}` }, c.circuit.replace('_', ' ')))));
    rowsOf(section).replaceChildren(...(rows.length ? rows : [emptyRow(3, 'No channel is configured.')]));
  }

  // Dead letters with a Replay button each (POST /v1/messages/{id}:retry: admin, or send for the key's own).
  async function loadDead(section) {
    const page = await api('/v1/messages?state=dead&limit=100');
    $('.headline', section).textContent = page.next
      ? 'The first 100 dead letters, in id order.' : `${count(page.messages.length, 'dead letter')}.`;
    rowsOf(section).replaceChildren(...(page.messages.length
      ? page.messages.map(deadRow) : [emptyRow(6, 'No dead letters.')]));
  }

  function deadRow(m) {
    const outcome = el('span', { class: 'outcome' });
    const replay = el('button', { type: 'button' }, 'Replay');
    replay.addEventListener('click', async () => {
      replay.disabled = true;
      try {
        const answer = await api(`/v1/messages/${encodeURIComponent(m.id)}:retry`, { method: 'POST' });
        outcome.replaceChildren(el('span', { class: 'badge good' }, `replayed: ${answer.state}`));
      } catch (e) {
        const p = e.problem || {};
        outcome.replaceChildren(el('span', { class: 'badge bad' }, `${e.status} ${p.title || ''}`.trim()),
          ` ${p.detail || e.message}`);
        replay.disabled = false;
      }
    });
    const link = el('a', { href: `#${encodeURIComponent(m.id)}` }, el('code', {}, m.id));
    link.addEventListener('click', (event) => {
      event.preventDefault();
      lookUp(m.id);
    });
    return el('tr', { dataset: { id: m.id } }, el('td', {}, link), el('td', {}, m.channel || '–'),
      num(m.attempts, 'attempts'), el('td', { class: 'reason' }, m.last_reason || ''),
      el('td', {}, when(m.updated_at)), el('td', {}, replay, ' ', outcome));
  }

  // The funnel per category over the default window (the last 24 hours): GET /v1/stats?by=category.
  async function loadFunnel(section) {
    const stats = await api('/v1/stats?by=category');
    const rate = (part, whole, counter) => {
      const value = whole ? part / whole : 0;
      return el('td', { class: 'num', dataset: { counter } }, whole ? percent.format(value) : '–',
        el('meter', { min: '0', max: '1', value: String(Math.min(value, 1)) }));
    };
    const rows = stats.groups.map((g) => el('tr', { dataset: { key: g.key } },
      el('th', { scope: 'row' }, g.key || el('span', { class: 'muted' }, '(none)')),
      num(g.delivered, 'delivered'), num(g.clicked, 'clicked'), num(g.responded.total, 'responded'),
      num(g.converted, 'converted'),
      rate(g.clicked, g.delivered, 'click_rate'), rate(g.responded.total, g.delivered, 'response_rate'),
      rate(g.converted, g.delivered, 'conversion_rate')));
    rowsOf(section).replaceChildren(...(rows.length ? rows : [emptyRow(8, 'Nothing delivered in this window.')]));
  }

  // The newest suppressions: GET /v1/suppressions pages by contact point, so the pages are read (up to a bound)
  // and sorted by time here.
  async function loadSuppressions(section) {
    const all = [];
    let after = '';
    let pages = 0;
    do {
      const page = await api(`/v1/suppressions?limit=1000${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      all.push(...page.suppressions);
      after = page.next_after;
      pages += 1;
    } while (after && pages < SUPPRESSION_PAGES);
    all.sort((a, b) => b.at.localeCompare(a.at) || a.contact.localeCompare(b.contact));
    $('.headline', section).textContent = after
      ? `The newest of the first ${count(all.length, 'suppressed contact point')}.`
      : `${count(all.length, 'suppressed contact point')}.`;
    rowsOf(section).replaceChildren(...(all.length
      ? all.slice(0, RECENT_ROWS).map((s) => el('tr', { dataset: { contact: s.contact } },
        el('td', {}, el('code', {}, s.contact)), el('td', {}, s.reason), el('td', {}, s.source), el('td', {}, when(s.at))))
      : [emptyRow(4, 'No contact point is suppressed.')]));
  }

  // Whether the key has read_all, asked once per key of the only route that needs exactly that to read.
  let readAll = null;
  function keyReadsAll() {
    readAll ??= api('/v1/suppressions?limit=1').then(() => true, (e) => (e.status === 403 ? false : null));
    return readAll;
  }

  // The newest opt-ins and opt-outs from the event feed, newest first (GET /v1/events?types=...&order=desc). A key
  // without read_all reads the feed too, but only its own messages' events: the panel says so.
  async function loadConsent(section) {
    $('.limited', section).hidden = (await keyReadsAll()) !== false;
    const changes = [];
    let before = '';
    for (let reads = 0; reads < CONSENT_READS && changes.length < RECENT_ROWS; reads += 1) {
      const page = await api(`/v1/events?types=opted_in,opted_out&order=desc&limit=${RECENT_ROWS}`
        + (before ? `&before=${before}` : ''));
      changes.push(...page.events);
      if (page.next === null) break;
      before = page.next;
    }
    $('.headline', section).textContent = changes.length ? '' : 'No consent change among the newest events.';
    rowsOf(section).replaceChildren(...changes.slice(0, RECENT_ROWS).map((e) => {
      const d = e.detail || {};
      const of = d.scope === 'category' ? `category ${d.category}` : [d.channel, d.purpose].filter(Boolean).join(' ');
      return el('tr', { dataset: { seq: String(e.seq) } }, el('td', {}, when(e.at)),
        el('td', {}, el('span', { class: `badge ${e.type === 'opted_in' ? 'good' : 'warn'}` }, e.type.replace('_', ' '))),
        el('td', {}, el('code', {}, e.recipient_id || '')), el('td', {}, of), el('td', {}, d.source || ''));
    }));
  }

  // ---- Message lookup ------------------------------------------------------------------------------------

  // A decision's details as "name: value" lines; channels skipped get one line each with their reason.
  function details(detail) {
    const list = el('ul', { class: 'details' });
    for (const [name, value] of Object.entries(detail || {})) {
      if (name === 'skipped' && Array.isArray(value)) {
        for (const s of value) list.append(el('li', {}, el('span', { class: 'key' }, 'skipped '), `${s.channel}: ${s.reason}`));
      } else {
        list.append(el('li', {}, el('span', { class: 'key' }, `${name}: `),
          typeof value === 'object' ? JSON.stringify(value) : String(value)));
      }
    }
    return list;
  }

  async function lookUp(id) {
    const section = $('#lookup');
    $('#lookup-id').value = id;
    const result = $('.result', section);
    result.hidden = true;
    await load('lookup', async () => {
      const m = await api(`/v1/messages/${encodeURIComponent(id)}`);
      const fields = [['state', m.state], ['channel', m.channel], ['attempts', m.attempts],
        ['last reason', m.last_reason], ['created', m.created_at], ['due', m.due_at], ['key', m.api_key],
        ['category', m.message?.category]];
      $('.summary', section).replaceChildren(...fields.flatMap(([name, value]) =>
        [el('dt', {}, name), el('dd', { dataset: { field: name } }, value === null || value === undefined ? '–' : String(value))]));
      rowsOf(section).replaceChildren(...m.events.map((e) => el('tr', { dataset: { seq: String(e.seq), type: e.type } },
        el('td', { class: 'num' }, String(e.seq)), el('td', {}, when(e.at)), el('td', {}, e.type), el('td', {}, details(e.detail)))));
      result.hidden = false;
      section.scrollIntoView({ behavior: 'smooth', block: 'start' });
    });
  }

  // ---- Key, refresh ----------------------------------------------------------------------------------------

  const loaders = {
    flow: loadFlow, queue: loadQueue, circuits: loadCircuits, dead: loadDead,
    funnel: loadFunnel, suppressions: loadSuppressions, consent: loadConsent,
  };

  // Loads every panel at once; body[data-state] is "ready" when all have answered (tests wait for it).
  async function refresh() {
    if (!key()) return;
    document.body.dataset.state = 'loading';
    await Promise.all(Object.entries(loaders).map(([panel, loader]) => load(panel, loader)));
    $('#loaded-at').textContent = `updated ${timeOfDay.format(new Date())}`;
    document.body.dataset.state = 'ready';
  }

  // A key is checked once with a cheap read, so a mistyped key is one clear message rather than seven.
  async function useKey(typed) {
    const status = $('#key-status');
    sessionStorage.setItem(KEY_STORAGE, typed);
    readAll = null;
    try {
      await api('/v1/messages?limit=1');
      status.hidden = true;
    } catch (e) {
      status.textContent = e.status === 401 ? 'The gateway does not know this key.'
        : `${e.status} ${e.problem?.title || ''}: ${e.problem?.detail || e.message}`;
      status.className = 'banner bad';
      status.hidden = false;
      if (e.status === 401) {
        sessionStorage.removeItem(KEY_STORAGE);
        return;
      }
    }
    $('#panels').hidden = false;
    await refresh();
  }

  function forgetKey() {
    sessionStorage.removeItem(KEY_STORAGE);
    $('#panels').hidden = true;
    document.body.dataset.state = 'idle';
    const status = $('#key-status');
    status.textContent = 'Type an API key with scope read to see the gateway.';
    status.className = 'banner';
    status.hidden = false;
  }

  let timer = null;
  function schedule() {
    clearInterval(timer);
    if ($('#auto-refresh').checked) timer = setInterval(refresh, REFRESH_MS);
  }

  $('#key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const typed = $('#key').value.trim();
    $('#key').value = '';
    if (typed) useKey(typed);
  });
  $('#forget').addEventListener('click', forgetKey);
  $('#refresh').addEventListener('click', refresh);
  $('#auto-refresh').addEventListener('change', schedule);
  $('#lookup-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const id = $('#lookup-id').value.trim();
    if (id) lookUp(id);
  });

  schedule();
  if (key()) useKey(key());
  else forgetKey();
})();
