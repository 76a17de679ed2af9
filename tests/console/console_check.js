// Drives the operator console in Debian's chromium through puppeteer-core, against a gateway that
// console_test.cpp has filled with a scene (deliveries, clicks, a response, a conversion, an opt-out,
// suppressions, a deferral, a dead letter). It checks that what each panel shows is what the API answers for
// the same route, fetched here with the same key: numbers and rows (and the API's problem where a key may not).
// Then it looks a message up, checks what a key without read_all and a key without send see, saves a
// screenshot, and replays the dead letter from the page until the API says it is delivered.
//
//   node console_check.js OPTIONS.json
//
// OPTIONS: {url, key, reader_key, auditor_key, dead_id, modules, chromium, screenshot}. Exits 0 when every
// check passed, 1 with each failure on stderr.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { createRequire } = require('node:module');

const options = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const puppeteer = createRequire(path.join(options.modules, 'index.js'))('puppeteer-core');

const TIMEOUT_MS = 20_000;
const failures = [];
const fail = (message) => failures.push(message);
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
function expectEqual(shown, answered, what) {
  if (!same(shown, answered)) fail(`${what}: the page shows ${JSON.stringify(shown)}, the API answers ${JSON.stringify(answered)}`);
}

async function api(route, key = options.key, method = 'GET') {
  const response = await fetch(options.url + route, { method, headers: { Authorization: `Bearer ${key}` } });
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: body stays null
  }
  return { status: response.status, body };
}

// What the page shows, read from the DOM by the data-* attributes app.js writes (numbers without separators),
// in each panel's own table (a chart's legend is a table too).
function readPanels() {
  const number = (text) => Number(text.replace(/[^0-9.-]/g, ''));
  const all = (selector) => [...document.querySelectorAll(selector)];
  // A rate is compared as shown ("50%"): it is the page's own arithmetic on the API's counts.
  const counters = (row) => Object.fromEntries([...row.querySelectorAll('[data-counter]')].map((c) =>
    [c.dataset.counter, c.dataset.counter.endsWith('_rate') ? c.firstChild.textContent : number(c.textContent)]));
  const panel = (id, rows) => {
    const section = document.getElementById(id);
    const problem = section.querySelector('.problem');
    return { state: section.dataset.state, problem: problem.hidden ? null : problem.textContent, rows };
  };
  return {
    flow: {
      ...panel('flow', all('#flow > table > tbody tr[data-channel]').map((r) => ({ channel: r.dataset.channel, ...counters(r) }))),
      to: document.getElementById('flow').dataset.to,
      charts: all('#flow .chart[data-channel] canvas').length,
    },
    queue: {
      ...panel('queue', all('#queue > table > tbody tr[data-at]').map((r) => ({ at: r.dataset.at, messages: counters(r).messages }))),
      total: number(document.querySelector('#queue [data-counter="total"]').textContent),
    },
    funnel: panel('funnel', all('#funnel > table > tbody tr[data-key]').map((r) => ({ key: r.dataset.key, ...counters(r) }))),
    circuits: panel('circuits', Object.fromEntries(all('#circuits > table > tbody tr[data-channel]').map((r) =>
      [r.dataset.channel, r.querySelector('[data-circuit]').dataset.circuit]))),
    dead: panel('dead', all('#dead > table > tbody tr[data-id]').map((r) => r.dataset.id)),
    suppressions: panel('suppressions', all('#suppressions > table > tbody tr[data-contact]').map((r) => r.dataset.contact)),
    consent: {
      ...panel('consent', all('#consent > table > tbody tr[data-seq]').map((r) => Number(r.dataset.seq))),
      limited: !document.querySelector('#consent .limited').hidden,
    },
  };
}

// A tab with the console open under `key`, loaded; its console errors are failures (a CSP violation, an
// exception), except the browser's own line for each API answer that is not 2xx, which panels show.
async function openConsole(browser, key, label) {
  const page = await browser.newPage();
  await page.setViewport({ width: 1440, height: 900 });
  page.on('pageerror', (e) => fail(`${label}: uncaught in the page: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/^Failed to load resource: the server responded with a status of [45]\d\d/.test(m.text()))
      fail(`${label}: console error: ${m.text()}`);
  });
  await page.goto(`${options.url}/console`, { waitUntil: 'load' });
  await page.type('#key', key);
  await page.click('#key-form button[type="submit"]');
  await page.waitForSelector('body[data-state="ready"]', { timeout: TIMEOUT_MS });
  // A refresh between reading the page and the API would compare different moments.
  await page.$eval('#auto-refresh', (box) => {
    box.checked = false;
    box.dispatchEvent(new Event('change'));
  });
  return page;
}

async function refresh(page) {
  await page.click('#refresh');
  await page.waitForSelector('body[data-state="ready"]', { timeout: TIMEOUT_MS });
}

// The stats routes must answer: a panel that only mirrors an error would compare nothing.
function expectAnswered(answer, route) {
  if (answer.status !== 200) fail(`${route} answered ${answer.status}: ${JSON.stringify(answer.body)}`);
  return answer.status === 200;
}

// A panel whose route failed must show the API's own problem, not a blank or a made-up message.
function expectProblem(shown, answer, what) {
  const detail = answer.body?.detail;
  if (shown.state !== 'error' && shown.state !== 'forbidden') fail(`${what}: the API answered ${answer.status} but the panel is "${shown.state}"`);
  else if (!detail || !shown.problem?.includes(detail)) fail(`${what}: the panel shows "${shown.problem}", not the API's detail "${detail}"`);
}

const sum = (values) => values.reduce((a, b) => a + b, 0);
const percent = new Intl.NumberFormat('en-US', { style: 'percent', maximumFractionDigits: 1 });
const rate = (part, whole) => (whole ? percent.format(part / whole) : '–');

// Each panel beside its route's answer. The flow's window moves each minute: when the page's and the test's
// reads fall in different minutes, the page is refreshed and both are read again.
async function comparePanels(page) {
  for (let attempt = 1; ; attempt += 1) {
    const shown = await page.evaluate(readPanels);
    const flow = await api('/v1/stats/flow?minutes=60');
    if (flow.status === 200 && shown.flow.to !== flow.body.to && attempt < 4) {
      await refresh(page);
      continue;
    }
    if (!expectAnswered(flow, '/v1/stats/flow')) {
      expectProblem(shown.flow, flow, 'flow');
    } else {
      const channels = Object.keys(flow.body.channels).sort();
      expectEqual(shown.flow.rows, channels.map((channel) => {
        const c = flow.body.channels[channel];
        return { channel, accepted: sum(c.accepted), delivered: sum(c.delivered), failed: sum(c.failed),
          deferred: sum(c.deferred), suppressed: sum(c.suppressed) };
      }), 'flow totals per channel');
      expectEqual(shown.flow.charts, channels.length, 'flow charts (one per channel)');
    }
    break;
  }
  const shown = await page.evaluate(readPanels);

  const queue = await api('/v1/stats/queue');
  if (!expectAnswered(queue, '/v1/stats/queue')) {
    expectProblem(shown.queue, queue, 'queue');
  } else {
    expectEqual(shown.queue.total, queue.body.total, 'queue total');
    expectEqual(shown.queue.rows, queue.body.hours.map((h) => ({ at: h.at, messages: h.messages })), 'queue by hour');
  }

  const funnel = await api('/v1/stats?by=category');
  if (!expectAnswered(funnel, '/v1/stats?by=category')) {
    expectProblem(shown.funnel, funnel, 'funnel');
  } else {
    expectEqual(shown.funnel.rows, funnel.body.groups.map((g) => ({
      key: g.key, delivered: g.delivered, clicked: g.clicked, responded: g.responded.total, converted: g.converted,
      click_rate: rate(g.clicked, g.delivered), response_rate: rate(g.responded.total, g.delivered),
      conversion_rate: rate(g.converted, g.delivered),
    })), 'funnel per category');
  }

  const ready = await api('/readyz');
  expectEqual(shown.circuits.rows, Object.fromEntries(Object.entries(ready.body.checks.channels).sort()
    .map(([name, c]) => [name, c.circuit])), 'circuits');

  const dead = await api('/v1/messages?state=dead&limit=100');
  expectEqual(shown.dead.rows, dead.body.messages.map((m) => m.id), 'dead letters');
  if (!shown.dead.rows.includes(options.dead_id)) fail(`dead letters: ${options.dead_id} is not listed`);

  const suppressions = [];
  for (let after = '', first = true; first || after; first = false) {
    const page = await api(`/v1/suppressions?limit=1000${after ? `&after=${encodeURIComponent(after)}` : ''}`);
    suppressions.push(...page.body.suppressions);
    after = page.body.next_after;
  }
  suppressions.sort((a, b) => b.at.localeCompare(a.at) || a.contact.localeCompare(b.contact));
  expectEqual(shown.suppressions.rows, suppressions.slice(0, 20).map((s) => s.contact), 'recent suppressions');
  if (!suppressions.length) fail('recent suppressions: the scene made some, the API lists none');

  const consent = await api('/v1/events?types=opted_in,opted_out&order=desc&limit=20');
  expectEqual(shown.consent.rows, consent.body.events.map((e) => e.seq), 'recent consent changes');
  if (shown.consent.limited) fail('recent consent changes: the panel says a key with read_all lacks it');
  if (!consent.body.events.length) fail('recent consent changes: the scene made one, the API lists none');
}

// The lookup: the message's timeline, event by event, and its state.
async function compareLookup(page, id) {
  await page.$eval('#lookup-id', (input) => { input.value = ''; });
  await page.type('#lookup-id', id);
  await page.click('#lookup-form button');
  await page.waitForSelector('#lookup[data-state="ok"] .result:not([hidden])', { timeout: TIMEOUT_MS });
  const shown = await page.evaluate(() => ({
    state: document.querySelector('#lookup [data-field="state"]').textContent,
    events: [...document.querySelectorAll('#lookup .timeline > tbody tr[data-seq]')].map((r) => [Number(r.dataset.seq), r.dataset.type]),
  }));
  const answer = await api(`/v1/messages/${encodeURIComponent(id)}`);
  expectEqual(shown, { state: answer.body.state, events: answer.body.events.map((e) => [e.seq, e.type]) }, `lookup of ${id}`);
}

// A key with read only: the suppressions panel says the key lacks read_all, with the API's 403; the consent
// panel shows the changes of the key's own messages (what the feed gives it) and says why there may be more.
async function checkReader(browser) {
  const page = await openConsole(browser, options.reader_key, 'reader');
  const shown = await page.evaluate(readPanels);
  const suppressions = await api('/v1/suppressions?limit=1000', options.reader_key);
  if (suppressions.status !== 403) fail(`reader: /v1/suppressions answered ${suppressions.status}, not 403`);
  if (shown.suppressions.state !== 'forbidden' || !shown.suppressions.problem?.includes('lacks read_all'))
    fail(`reader: the suppressions panel does not say the key lacks read_all: ${shown.suppressions.state} "${shown.suppressions.problem}"`);
  expectProblem(shown.suppressions, suppressions, 'reader suppressions');
  const consent = await api('/v1/events?types=opted_in,opted_out&order=desc&limit=20', options.reader_key);
  expectEqual(shown.consent.rows, consent.body.events.map((e) => e.seq), 'reader: consent changes');
  if (!shown.consent.limited) fail('reader: the consent panel does not say the key lacks read_all');
  await page.close();
}

// A key that may read everything but not send: its Replay shows the API's 403 detail, and nothing is replayed.
async function checkAuditorReplay(browser) {
  const page = await openConsole(browser, options.auditor_key, 'auditor');
  await page.click(`#dead tr[data-id="${options.dead_id}"] button`);
  await page.waitForFunction((id) => document.querySelector(`#dead tr[data-id="${id}"] .outcome`).textContent !== '',
    { timeout: TIMEOUT_MS }, options.dead_id);
  const outcome = await page.$eval(`#dead tr[data-id="${options.dead_id}"] .outcome`, (o) => o.textContent);
  const answer = await api(`/v1/messages/${encodeURIComponent(options.dead_id)}:retry`, options.auditor_key, 'POST');
  if (answer.status !== 403 || !outcome.includes(answer.body.detail))
    fail(`auditor: Replay shows "${outcome}", the API answers ${answer.status} "${answer.body?.detail}"`);
  await page.close();
}

// Replay from the page with a key that may, then poll the API until the message is delivered.
async function replay(page, id) {
  await page.click(`#dead tr[data-id="${id}"] button`);
  await page.waitForFunction((i) => /replayed/.test(document.querySelector(`#dead tr[data-id="${i}"] .outcome`).textContent),
    { timeout: TIMEOUT_MS }, id).catch(async () => {
    fail(`replay: the page shows "${await page.$eval(`#dead tr[data-id="${id}"] .outcome`, (o) => o.textContent)}"`);
  });
  const deadline = Date.now() + TIMEOUT_MS;
  let state = '';
  while (Date.now() < deadline) {
    state = (await api(`/v1/messages/${encodeURIComponent(id)}`)).body?.state;
    if (state === 'delivered') return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  fail(`replay: ${id} is ${state}, not delivered, ${TIMEOUT_MS} ms after the page replayed it`);
}

async function main() {
  const browser = await puppeteer.launch({
    executablePath: options.chromium,
    headless: 'new',
    // Root in a container has no user namespace for chromium's sandbox; the page is our own.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--lang=en-US'],
  });
  try {
    const page = await openConsole(browser, options.key, 'operator');
    await comparePanels(page);
    await compareLookup(page, options.dead_id);
    await page.screenshot({ path: options.screenshot, fullPage: true });
    await checkReader(browser);
    await checkAuditorReplay(browser);
    await replay(page, options.dead_id);
  } finally {
    await browser.close();
  }
}

const watchdog = setTimeout(() => {
  console.error('console_check: still running after 120 s');
  process.exit(1);
}, 120_000);
main().then(() => {
  clearTimeout(watchdog);
  for (const f of failures) console.error(`FAIL ${f}`);
  console.log(failures.length ? `console_check: ${failures.length} failures` : 'console_check: every check passed');
  process.exit(failures.length ? 1 : 0);
}, (e) => {
  for (const f of failures) console.error(`FAIL ${f}`);
  console.error(`console_check: ${e.stack || e}`);
  process.exit(1);
});
