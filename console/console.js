// The stockhold admin console: one page, four views (overview, SKU list,
// SKU page, reconcile), every action a call of the public API with the
// admin key the user signed in with. The key lives in sessionStorage: this
// tab only, gone when it closes. Events come from GET /v1/events, read
// with fetch (EventSource cannot send the Authorization header).
// The page's Content-Security-Policy allows no inline script or style:
// everything here builds DOM nodes; nothing is parsed as HTML.
'use strict';

(() => {
  const KEY = 'stockhold.admin_key';
  const MINUTE = 60000;
  const CHART_MINUTES = 30;

  // ---- DOM -------------------------------------------------------------

  /** An element with attributes (`on…` are listeners) and children. */
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : String(kid));
    }
    return el;
  }

  const view = () => document.getElementById('view');

  /** A table head; a label starting with '#' is a number column. */
  const head = (...labels) => h('thead', {}, h('tr', {}, labels.map((l) => (l.startsWith('#') && l.length > 1
    ? h('th', { class: 'num' }, l.slice(1)) : h('th', {}, l)))));
  const fmt = (n) => (n === null || n === undefined ? '—' : Number(n).toLocaleString('en'));
  const clock = (t) => new Date(t).toLocaleTimeString('en-GB', { hour12: false });
  const stamp = (t) => new Date(t).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');

  // ---- The API ---------------------------------------------------------

  /** An API error: the problem+json body as the service sent it. */
  class Problem extends Error {
    constructor(body, status) {
      super((body && body.title) || 'Error');
      this.body = body || {};
      this.status = status;
    }
  }

  const key = () => sessionStorage.getItem(KEY);

  /**
   * Calls the API; resolves to the JSON body, rejects with a Problem. With
   * `trying`, as that key (at sign-in) rather than the one kept.
   */
  async function api(method, path, body, idempotencyKey, trying) {
    const headers = { Authorization: `Bearer ${trying || key()}`, Accept: 'application/json' };
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new Problem({ title: 'The service did not answer', detail: String(e.message || e) }, 0);
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = { title: res.statusText || 'Error', detail: text.slice(0, 500) };
      }
    }
    if (!res.ok) {
      if (res.status === 401 && !trying && key()) signOut('The service no longer accepts this key (401 unauthorized). Sign in again.');
      throw new Problem(data || { title: res.statusText || 'Error', status: res.status }, res.status);
    }
    return data;
  }

  /** A problem, readably: title, status and code, detail, each listed item. */
  function problemBox(p) {
    const b = (p && p.body) || { title: String(p) };
    const box = h('div', { class: 'problem', role: 'alert' },
      h('strong', {}, b.title || 'Error'), ' ',
      h('span', { class: 'code' }, [b.status || p.status, b.code].filter(Boolean).join(' · ')),
      b.detail ? h('p', {}, b.detail) : null);
    const say = {
      errors: (e) => `${e.field || '(body)'}: ${e.message}`,
      shortages: (s) => `${s.sku}: ${s.requested} requested, ${s.available} available`,
      pools: (s) => `${s.pool}: ${s.on_hand} on hand, ${s.held} held`,
      lines: (l) => `${l.sku}: ${l.returnable} returnable, ${l.requested} requested`,
    };
    for (const [name, value] of Object.entries(b)) {
      if (!Array.isArray(value) || value.length === 0) continue;
      const line = say[name] || ((x) => (typeof x === 'string' ? x : JSON.stringify(x)));
      box.append(h('ul', {}, value.map((x) => h('li', {}, line(x)))));
    }
    return box;
  }

  /**
   * Runs `work`, showing its problem (if any) in `slot` and passing it to
   * `onProblem`.
   */
  async function attempt(slot, work, onProblem) {
    slot.replaceChildren();
    try {
      return await work();
    } catch (p) {
      slot.replaceChildren(problemBox(p));
      if (onProblem) onProblem(p);
      return undefined;
    }
  }

  /**
   * Whether a change that failed with problem `p` is sent again under the
   * same id: its answer never came (0), the service failed (5xx: nothing
   * kept for the key), or the first is still in flight (409
   * idempotency_conflict). Any other answer is kept for its key for 24 h
   * and would only be replayed.
   */
  const retryable = (p) => p.status === 0 || p.status >= 500
    || (p.status === 409 && p.body.code === 'idempotency_conflict');

  const newId = (what) => `console-${what}-${crypto.randomUUID()}`;

  // ---- Events ----------------------------------------------------------

  /**
   * GET /v1/events?query, as long as the view lives: each event to
   * `onEvent(type, event)`; resumes after its last id when the stream
   * breaks, and from now on when that id is too old (410) or no longer
   * valid (422), calling `onGap()` then: events were missed, so what was
   * built from them must be read again.
   */
  class Feed {
    constructor(query, onEvent, onGap) {
      this.query = query;
      this.onEvent = onEvent;
      this.onGap = onGap || (() => {});
      this.last = null;
      this.stopped = false;
      this.abort = new AbortController();
      this.run();
    }

    stop() {
      this.stopped = true;
      this.abort.abort();
      live('idle');
    }

    async run() {
      let wait = 1000;
      while (!this.stopped) {
        try {
          const headers = { Authorization: `Bearer ${key()}`, Accept: 'text/event-stream' };
          if (this.last) headers['Last-Event-ID'] = this.last;
          const res = await fetch(`/v1/events?${this.query}`, { headers, signal: this.abort.signal, cache: 'no-store' });
          if ((res.status === 410 || res.status === 422) && this.last) {
            const body = await res.json().catch(() => ({}));
            this.last = null;
            live('resuming', `events were missed (${res.status} ${body.code || ''}): following from now`);
            this.onGap();
            continue;
          }
          if (!res.ok) {
            const body = await res.json().catch(() => ({ title: res.statusText }));
            live('error', `${res.status} ${body.title || ''}`);
            if (res.status === 401 && key()) signOut('The service no longer accepts this key (401 unauthorized).');
            if (res.status < 500) return;
          } else {
            live('live');
            wait = 1000;
            await this.read(res.body);
          }
        } catch (e) {
          if (this.stopped) return;
        }
        if (this.stopped) return;
        live('reconnecting');
        await new Promise((r) => setTimeout(r, wait));
        wait = Math.min(wait * 2, 15000);
      }
    }

    async read(body) {
      const reader = body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value.replace(/\r\n?/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const message = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          this.dispatch(message);
        }
      }
    }

    dispatch(message) {
      let type = 'message';
      const data = [];
      for (const line of message.split('\n')) {
        if (line === '' || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'id') this.last = value;
        else if (field === 'event') type = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length === 0) return;
      try {
        this.onEvent(type, JSON.parse(data.join('\n')));
      } catch (e) {
        console.error('event not handled', e);
      }
    }
  }

  /** The header's indicator of the event stream. */
  function live(state, detail) {
    const el = document.getElementById('live');
    const label = { idle: '', live: '● live', offline: '○ offline', reconnecting: '◌ reconnecting', resuming: '◌ resuming', error: '× stream refused' }[state];
    el.textContent = label === undefined ? state : label;
    el.className = `live ${state}`;
    el.title = detail || 'The event stream';
  }

  /** One line about an event, for the lists of events. */
  function describe(e) {
    const lines = (e.lines || []).map((l) => `${l.sku} ×${l.qty}${l.available === undefined ? '' : ` (available ${l.available})`}`).join(', ');
    switch (e.type) {
      case 'hold.created': case 'hold.changed': case 'hold.committed': case 'hold.released': case 'hold.expired':
        return `${e.reservation_id}${e.part ? ' (part)' : ''}${e.order_id ? ` → ${e.order_id}` : ''}: ${lines}`;
      case 'sku.adjusted':
        return `${e.sku} ${e.delta >= 0 ? '+' : ''}${e.delta} (${e.reason || 'adjustment'}${e.reference ? ` ${e.reference}` : ''}${e.note ? `: ${e.note}` : ''}): on hand ${fmt(e.on_hand)}, available ${fmt(e.available)}`;
      case 'sku.out_of_stock': case 'sku.back_in_stock': case 'sku.low_stock':
        return `${e.sku}: available ${fmt(e.available)}, on hand ${fmt(e.on_hand)}${e.low_stock ? `, threshold ${e.low_stock}` : ''}`;
      case 'drift.found': case 'drift.repaired':
        return `${e.sku}${e.pool ? `@${e.pool}` : ''}: on hand ${fmt(e.on_hand)} (expected ${fmt(e.expected_on_hand)}), held ${fmt(e.held)} (expected ${fmt(e.expected_held)})`;
      default:
        return e.skus ? e.skus.join(', ') : '';
    }
  }

  /** A list of the latest events, newest first, redrawn at most 4 times a second. */
  function eventList(most) {
    const list = h('ol', { class: 'events', 'aria-live': 'polite' });
    let pending = [];
    let timer = null;
    const flush = () => {
      timer = null;
      const rows = pending.slice(-most).reverse().map((e) => h('li', { class: `ev ${e.type.replace('.', '-')}`, 'data-type': e.type },
        h('time', { datetime: e.time }, clock(e.time)), ' ',
        h('span', { class: 'type' }, e.type), ' ',
        h('span', {}, describe(e))));
      pending = [];
      list.prepend(...rows);
      while (list.children.length > most) list.lastChild.remove();
    };
    return {
      el: list,
      add(e) {
        pending.push(e);
        if (pending.length > most) pending.splice(0, pending.length - most);
        if (!timer) timer = setTimeout(flush, 250);
      },
      stop() { clearTimeout(timer); },
    };
  }

  /**
   * Calls `fn` at once, then at most once every `ms` while calls keep
   * coming (the last call of a burst is never lost).
   */
  function throttle(fn, ms) {
    let timer = null;
    let again = false;
    const call = () => {
      if (timer) {
        again = true;
        return;
      }
      fn();
      timer = setTimeout(() => {
        timer = null;
        if (again) {
          again = false;
          call();
        }
      }, ms);
    };
    call.cancel = () => {
      clearTimeout(timer);
      timer = null;
      again = false;
    };
    return call;
  }

  /**
   * `fn` (async) one run at a time: calls while it runs make one more run
   * after it, so answers are shown in the order they were asked for.
   */
  function oneAtATime(fn) {
    let running = null;
    let again = false;
    return () => {
      if (running) {
        again = true;
        return running;
      }
      running = (async () => {
        try {
          do {
            again = false;
            await fn();
          } while (again);
        } finally {
          running = null;
        }
      })();
      return running;
    };
  }

  /**
   * A list paged by cursor: `fetchPage(cursor)` resolves to a page
   * ({ items, next }) or to undefined (its problem shown), `show(page)`
   * draws it; the buttons in `pager` are off while a page loads.
   */
  function paging(pager, fetchPage, show, labels) {
    let history = []; // the cursors of the pages before this one
    let at = null;
    let next = null;
    let loading = false;
    let going = null; // the cursors before the page on its way
    let queued = null;
    const buttons = () => pager.replaceChildren(
      h('button', { type: 'button', class: 'quiet', id: labels.prevId, disabled: loading || history.length === 0, onclick() { go(history[history.length - 1], history.slice(0, -1)); } }, labels.prev),
      h('button', { type: 'button', class: 'quiet', id: labels.nextId, disabled: loading || !next, onclick() { go(next, [...history, at]); } }, labels.next));
    async function go(cursor, before) {
      if (loading) {
        queued = [cursor, before];
        return;
      }
      loading = true;
      going = before;
      buttons();
      const page = await fetchPage(cursor);
      loading = false;
      if (page) {
        history = before;
        at = cursor;
        next = page.next || null;
        show(page);
      }
      buttons();
      if (queued) {
        const [c, b] = queued;
        queued = null;
        go(c, b);
      }
    }
    return {
      first() { go(null, []); },
      /** The first page again, unless another page is shown or asked for. */
      reloadFirst() {
        const target = queued ? queued[1] : loading ? going : history;
        if (target.length === 0) go(null, []);
      },
    };
  }

  // ---- Charts ----------------------------------------------------------

  /** A uPlot chart of per-minute counts, the last CHART_MINUTES minutes. */
  function minuteChart(el, title, series) {
    const width = () => Math.max(280, el.clientWidth - 8);
    const plot = new uPlot({
      title,
      width: width(),
      height: 200,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(4, max)] } },
      axes: [{}, { size: 50 }],
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, points: { show: false } }))],
    }, [[]].concat(series.map(() => [])), el);
    const onResize = () => plot.setSize({ width: width(), height: 200 });
    window.addEventListener('resize', onResize);
    return {
      /** `counts(minute)` is each series' count in that minute. */
      draw(counts) {
        const now = Math.floor(Date.now() / MINUTE);
        const xs = [];
        const ys = series.map(() => []);
        for (let m = now - CHART_MINUTES + 1; m <= now; m++) {
          xs.push(m * 60);
          const c = counts(m);
          series.forEach((_, i) => ys[i].push(c[i] || 0));
        }
        plot.setData([xs, ...ys]);
      },
      stop() { window.removeEventListener('resize', onResize); plot.destroy(); },
    };
  }

  // ---- Views -----------------------------------------------------------

  let current = null;

  function route() {
    if (current) current.stop();
    current = null;
    live('idle');
    const signedIn = Boolean(key());
    document.getElementById('bar').hidden = !signedIn;
    if (!signedIn) {
      signIn();
      return;
    }
    const [name, ...rest] = (location.hash || '#/overview').slice(2).split('/');
    let arg;
    try {
      arg = decodeURIComponent(rest.join('/'));
    } catch {
      location.hash = '#/overview';
      return;
    }
    for (const a of document.querySelectorAll('[data-nav]')) {
      a.classList.toggle('active', a.dataset.nav === name || (name === 'sku' && a.dataset.nav === 'skus'));
    }
    const views = { overview, skus: skuList, sku: skuPage, reconcile };
    if (!views[name] || (name === 'sku' && !arg)) {
      location.hash = '#/overview';
      return;
    }
    current = views[name](arg) || { stop() {} };
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    if (current) current.stop();
    current = null;
    document.getElementById('bar').hidden = true;
    signIn(message);
  }

  function signIn(message) {
    document.title = 'Sign in · stockhold';
    const input = h('input', { type: 'password', id: 'key', name: 'key', autocomplete: 'off', required: true, spellcheck: 'false' });
    const slot = h('div', { class: 'slot' }, message ? h('div', { class: 'problem', role: 'alert' }, message) : null);
    const button = h('button', { type: 'submit', id: 'sign-in' }, 'Sign in');
    const form = h('form', {
      class: 'card signin',
      async onsubmit(e) {
        e.preventDefault();
        button.disabled = true;
        const trying = input.value.trim();
        // Any admin-only call tells a wrong key (401) from a key of another
        // role (403); the key is kept only once it is accepted.
        const ok = await attempt(slot, () => api('GET', '/v1/admin/overview', undefined, undefined, trying));
        button.disabled = false;
        if (ok === undefined) return;
        sessionStorage.setItem(KEY, trying);
        if (location.hash === '#/overview' || !location.hash) route();
        else location.hash = '#/overview';
      },
    },
    h('h1', {}, 'stockhold admin'),
    h('p', { class: 'muted' }, 'Sign in with an admin API key. It is kept for this browser tab only and forgotten when the tab closes.'),
    h('label', { for: 'key' }, 'Admin key'), input, button, slot);
    view().replaceChildren(form);
    input.focus();
  }

  function overview() {
    document.title = 'Overview · stockhold';
    const tile = (id, label) => h('div', { class: 'tile', id }, h('span', { class: 'label' }, label), h('span', { class: 'value' }, '—'), h('span', { class: 'note' }, ''));
    const tiles = h('section', { class: 'tiles' },
      tile('t-skus', 'SKUs'), tile('t-holds', 'Live holds'), tile('t-lag', 'Outbox lag'),
      tile('t-202', 'Commits answered 202, last hour'), tile('t-drift', 'Drift'), tile('t-rate', 'Events, last minute'));
    const set = (id, value, note) => {
      const t = tiles.querySelector(`#${id}`);
      t.querySelector('.value').textContent = value;
      if (note !== undefined) t.querySelector('.note').textContent = note;
    };
    const slot = h('div', { class: 'slot' });
    const holdsChart = h('div', { class: 'chart', id: 'chart-holds' });
    const lateChart = h('div', { class: 'chart', id: 'chart-202' });
    const events = eventList(20);
    view().replaceChildren(
      h('h1', {}, 'Overview'), slot, tiles,
      h('section', { class: 'charts' }, holdsChart, lateChart),
      h('section', { class: 'card' }, h('h2', {}, 'Latest events'), events.el));

    const perMinute = new Map(); // minute -> [created, committed, expired]
    const perSecond = new Map(); // second -> the same, summed
    const late = new Map(); // minute -> 202s
    const drift = { found: 0, repaired: 0, last: null };
    const holds = minuteChart(holdsChart, 'Holds per minute (since this page opened)', [
      { label: 'created', color: '#2563eb' }, { label: 'committed', color: '#16a34a' }, { label: 'expired', color: '#ea580c' }]);
    const lateC = minuteChart(lateChart, 'Commits answered 202 per minute', [{ label: '202', color: '#dc2626' }]);
    const redraw = () => {
      holds.draw((m) => perMinute.get(m) || []);
      lateC.draw((m) => [late.get(m) || 0]);
      // The last 60 seconds, whole seconds.
      const from = Math.floor(Date.now() / 1000) - 59;
      let lastMinute = 0;
      for (const [second, n] of perSecond) {
        if (second < from) perSecond.delete(second);
        else lastMinute += n;
      }
      set('t-rate', fmt(lastMinute), 'holds created, committed, expired');
      set('t-drift', drift.found === 0 ? 'none seen' : `${fmt(drift.found)} found`,
        drift.found === 0 ? 'drift.found events since this page opened' : `${fmt(drift.repaired)} repaired; last ${drift.last}`);
    };
    const redrawSoon = throttle(redraw, 250);
    const index = { 'hold.created': 0, 'hold.committed': 1, 'hold.expired': 2 };
    const feed = new Feed('', (type, e) => {
      if (type in index && !e.part) {
        const t = Date.parse(e.time);
        const m = Math.floor(t / MINUTE);
        const c = perMinute.get(m) || [0, 0, 0];
        c[index[type]] += 1;
        perMinute.set(m, c);
        // By arrival, on this browser's clock, as the tile is counted.
        const second = Math.floor(Date.now() / 1000);
        perSecond.set(second, (perSecond.get(second) || 0) + 1);
      }
      if (type === 'drift.found') {
        drift.found += 1;
        drift.last = `${e.sku} at ${clock(e.time)}`;
      }
      if (type === 'drift.repaired') drift.repaired += 1;
      if (type !== 'hold.changed') events.add(e);
      redrawSoon();
    });
    const poll = oneAtATime(async () => {
      const o = await attempt(slot, () => api('GET', '/v1/admin/overview'));
      if (!o) return;
      set('t-skus', fmt(o.skus), o.skus === null ? 'Postgres cannot be reached' : `${o.partitions} partition${o.partitions === 1 ? '' : 's'}`);
      set('t-holds', fmt(o.live_holds), 'holds and commits under way');
      set('t-lag', o.outbox_lag_ms === null ? 'unknown' : o.outbox_lag_ms < 1000 ? `${fmt(o.outbox_lag_ms)} ms` : `${(o.outbox_lag_ms / 1000).toFixed(1)} s`,
        o.outbox_lag_ms === null ? 'Postgres cannot be reached' : 'oldest change not yet in Postgres');
      late.clear();
      let hour = 0;
      for (const { minute, count } of o.not_persisted_per_minute) {
        const m = Math.floor(Date.parse(minute) / MINUTE);
        late.set(m, count);
        if (m > Math.floor(Date.now() / MINUTE) - 60) hour += count;
      }
      set('t-202', fmt(hour), 'sold while Postgres was away');
      redraw();
    });
    poll();
    const timers = [setInterval(poll, 5000), setInterval(redraw, 1000)];
    return {
      stop() {
        feed.stop();
        events.stop();
        redrawSoon.cancel();
        timers.forEach(clearInterval);
        holds.stop();
        lateC.stop();
      },
    };
  }

  function skuList(prefix) {
    document.title = 'SKUs · stockhold';
    const input = h('input', { type: 'search', id: 'prefix', name: 'prefix', value: prefix || '', placeholder: 'SKU prefix, e.g. SNEAKER', autocomplete: 'off', spellcheck: 'false' });
    const slot = h('div', { class: 'slot' });
    const body = h('tbody', {});
    const pager = h('div', { class: 'pager' });
    const form = h('form', {
      class: 'search',
      onsubmit(e) {
        e.preventDefault();
        const target = `#/skus/${encodeURIComponent(input.value.trim())}`;
        if (location.hash === target) list.first();
        else location.hash = target;
      },
    }, h('label', { for: 'prefix' }, h('span', {}, 'Find SKUs by prefix'), input), h('button', { type: 'submit', id: 'search' }, 'Search'));
    view().replaceChildren(h('h1', {}, 'SKUs'), form, slot,
      h('table', { class: 'grid', id: 'sku-table' },
        head('SKU', '#On hand', '#Held', '#Available', '#Low stock at', ''),
        body), pager);
    const list = paging(pager, (at) => {
      const q = new URLSearchParams({ limit: '25' });
      if (prefix) q.set('prefix', prefix);
      if (at) q.set('cursor', at);
      return attempt(slot, () => api('GET', `/v1/skus?${q}`));
    }, (page) => {
      body.replaceChildren(...page.items.map((s) => h('tr', {},
        h('td', {}, h('a', { href: `#/sku/${encodeURIComponent(s.sku)}` }, s.sku)),
        h('td', { class: 'num' }, fmt(s.on_hand)), h('td', { class: 'num' }, fmt(s.held)),
        h('td', { class: 'num' }, fmt(s.available)), h('td', { class: 'num' }, fmt(s.low_stock)),
        h('td', {}, badge(s)))));
      if (page.items.length === 0) body.replaceChildren(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, prefix ? `No SKU starts with “${prefix}”.` : 'No SKUs yet.')));
    }, { prev: '← Previous', prevId: 'previous-page', next: 'Next →', nextId: 'next-page' });
    list.first();
    input.focus();
    return null;
  }

  function badge(s) {
    if (s.available <= 0) return h('span', { class: 'badge out' }, 'out of stock');
    if (s.low_stock && s.available <= s.low_stock) return h('span', { class: 'badge low' }, 'low stock');
    return null;
  }

  function skuPage(name) {
    document.title = `${name} · stockhold`;
    const path = `/v1/skus/${encodeURIComponent(name)}`;
    const slot = h('div', { class: 'slot' });
    const counts = h('section', { class: 'tiles', id: 'counts' });
    const settings = h('section', { class: 'card' });
    const adjust = h('section', { class: 'card' });
    const holdsBox = h('section', { class: 'card' });
    const ledgerBox = h('section', { class: 'card' });
    const events = eventList(30);
    const skuBadge = h('span', { id: 'sku-badge' });
    view().replaceChildren(
      h('p', {}, h('a', { href: '#/skus' }, '← SKUs')),
      h('h1', {}, name, ' ', skuBadge), slot, counts,
      h('div', { class: 'columns' }, settings, adjust),
      holdsBox, ledgerBox,
      h('section', { class: 'card' }, h('h2', {}, 'Events of this SKU, as they happen'), events.el));

    let sku = null;
    function showCounts(s) {
      const old = sku;
      sku = s;
      const tile = (id, label, value) => {
        const changed = old && old[id] !== value;
        return h('div', { class: `tile${changed ? ' changed' : ''}`, id: `c-${id}` }, h('span', { class: 'label' }, label), h('span', { class: 'value' }, fmt(value)));
      };
      counts.replaceChildren(tile('on_hand', 'On hand', s.on_hand), tile('held', 'Held', s.held), tile('available', 'Available', s.available),
        ...(s.pools || []).map((p) => h('div', { class: 'tile small' }, h('span', { class: 'label' }, `pool ${p.pool}`), h('span', { class: 'value' }, `${fmt(p.on_hand)} / ${fmt(p.held)} held`))));
      skuBadge.replaceChildren(badge(s) || '');
    }

    async function refresh() {
      const s = await attempt(slot, () => api('GET', path));
      if (s) showCounts(s);
      return s;
    }

    // Settings: only the fields changed are sent (PUT leaves the others).
    function settingsForm(s) {
      const allocations = Object.entries(s.allocations || {}).map(([c, n]) => `${c}=${n}`).join(', ');
      const fields = [
        ['on_hand', 'On hand', s.on_hand, 'number', 'sets on hand; the ledger records the difference'],
        ['backorder_limit', 'Backorder limit', s.backorder_limit, 'number'],
        ['per_customer_limit', 'Per-customer limit', s.per_customer_limit, 'number', 'empty: none'],
        ['sale_starts_at', 'Sale starts at', s.sale_starts_at, 'text', 'RFC 3339, e.g. 2026-12-12T00:00:00Z; empty: none'],
        ['safety_stock', 'Safety stock', s.safety_stock, 'number'],
        ['low_stock', 'Low stock at', s.low_stock, 'number', 'a sku.low_stock event when available drops to it; empty: none'],
        ['allocations', 'Channel allocations', allocations, 'text', 'channel=units, …; empty: none'],
      ];
      const inputs = {};
      const out = h('div', { class: 'slot' });
      const save = h('button', { type: 'submit', id: 'save-settings' }, 'Save settings');
      const form = h('form', {
        id: 'settings',
        async onsubmit(e) {
          e.preventDefault();
          const body = {};
          for (const [name, , was, type] of fields) {
            const raw = inputs[name].value.trim();
            const before = was === null || was === undefined ? '' : String(was);
            if (raw === before) continue;
            if (name === 'allocations') {
              const pairs = raw.split(/[,\s]+/).filter(Boolean);
              const malformed = pairs.filter((pair) => !/^[^=]+=-?\d+$/.test(pair));
              if (malformed.length > 0) {
                out.replaceChildren(problemBox({ body: { title: 'Channel allocations not understood', detail: 'Write each as channel=units, separated by commas, e.g. web=40, store=10.', errors: malformed.map((pair) => ({ field: 'allocations', message: `“${pair}” is not channel=units` })) } }));
                return;
              }
              body.allocations = raw === '' ? null : Object.fromEntries(pairs.map((pair) => {
                const at = pair.indexOf('=');
                return [pair.slice(0, at), Number(pair.slice(at + 1))];
              }));
            } else if (raw === '') body[name] = null;
            else body[name] = type === 'number' && !Number.isNaN(Number(raw)) ? Number(raw) : raw;
          }
          if (Object.keys(body).length === 0) {
            out.replaceChildren(h('p', { class: 'muted' }, 'Nothing changed.'));
            return;
          }
          save.disabled = true;
          const saved = await attempt(out, () => api('PUT', path, body));
          save.disabled = false;
          if (saved) {
            showCounts(saved);
            settings.replaceChildren(...settingsForm(saved));
            settings.querySelector('.slot').replaceChildren(h('p', { class: 'ok' }, `Saved: ${Object.keys(body).join(', ')}.`));
          }
        },
      },
      h('div', { class: 'fields' }, fields.map(([name, label, value, type, hint]) => {
        inputs[name] = h('input', { id: `f-${name}`, name, type, value: value === null || value === undefined ? '' : value, step: type === 'number' ? 1 : null, autocomplete: 'off' });
        return h('label', { for: `f-${name}` }, h('span', {}, label), inputs[name], hint ? h('small', {}, hint) : null);
      })),
      save, out);
      return [h('h2', {}, 'Settings'), form];
    }

    function adjustForm() {
      const delta = h('input', { id: 'a-delta', name: 'delta', type: 'number', step: 1, required: true, placeholder: 'e.g. 50 or -3' });
      const reason = h('input', { id: 'a-reason', name: 'reason', type: 'text', placeholder: 'receipt, damage, count…', autocomplete: 'off' });
      const out = h('div', { class: 'slot' });
      const apply = h('button', { type: 'submit', id: 'apply-adjustment' }, 'Apply adjustment');
      // One adjustment id per filling of the form, sent again on a retry
      // after an answer that never came or a failure of the service, so it
      // applies once; a fresh one after any other refusal.
      let adjustmentId = null;
      const form = h('form', {
        id: 'adjust',
        oninput() { adjustmentId = null; },
        async onsubmit(e) {
          e.preventDefault();
          if (apply.disabled) return; // one in flight already
          adjustmentId = adjustmentId || newId('adj');
          const body = { adjustment_id: adjustmentId, delta: Number(delta.value) };
          if (delta.value.trim() === '' || Number.isNaN(body.delta)) body.delta = delta.value;
          if (reason.value.trim()) body.reason = reason.value.trim();
          apply.disabled = true;
          const s = await attempt(out, () => api('POST', `${path}/adjustments`, body, body.adjustment_id), (p) => {
            if (!retryable(p)) adjustmentId = null;
          });
          apply.disabled = false;
          if (s) {
            showCounts(s);
            out.replaceChildren(h('p', { class: 'ok' }, `Adjusted by ${body.delta > 0 ? '+' : ''}${body.delta} (${body.adjustment_id}).`));
            form.reset();
            adjustmentId = null;
            ledger.first();
          }
        },
      },
      h('div', { class: 'fields' },
        h('label', { for: 'a-delta' }, h('span', {}, 'Change of on hand'), delta),
        h('label', { for: 'a-reason' }, h('span', {}, 'Reason'), reason)),
      apply, out);
      adjust.replaceChildren(h('h2', {}, 'Adjust'), h('p', { class: 'muted' }, 'A relative change, safe under concurrent sales; recorded in the ledger.'), form);
    }

    const holdsBody = h('tbody', {});
    const holdsNote = h('p', { class: 'muted' });
    const holdsSlot = h('div', { class: 'slot' });
    holdsBox.replaceChildren(h('h2', {}, 'Live holds'), holdsSlot, h('table', { class: 'grid', id: 'holds' },
      head('Reservation', '#Units', 'Status', 'Customer', 'Channel', 'Expires'), holdsBody), holdsNote);
    async function loadHolds() {
      const page = await attempt(holdsSlot, () => api('GET', `${path}/holds?limit=50`));
      if (!page) return;
      holdsBody.replaceChildren(...page.items.map((x) => h('tr', {},
        h('td', { class: 'mono' }, x.id), h('td', { class: 'num' }, fmt(x.qty)), h('td', {}, x.status),
        h('td', {}, x.customer_id || '—'), h('td', {}, x.channel || '—'), h('td', {}, clock(x.expires_at)))));
      if (page.items.length === 0) holdsBody.replaceChildren(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No live holds.')));
      const shown = page.items.length;
      holdsNote.textContent = [
        shown < page.total ? `The ${fmt(shown)} soonest to expire of ${fmt(page.total)} live holds.` : '',
        page.complete ? '' : `Only the ${fmt(page.scanned)} hold records soonest to expire were read: there are more.`,
      ].filter(Boolean).join(' ');
    }

    const ledgerBody = h('tbody', {});
    const ledgerPager = h('div', { class: 'pager' });
    const ledgerSlot = h('div', { class: 'slot' });
    ledgerBox.replaceChildren(h('h2', {}, 'Ledger'), ledgerSlot, h('table', { class: 'grid', id: 'ledger' },
      head('##', 'At', 'Kind', '#Change', '#On hand after', 'Reference'), ledgerBody), ledgerPager);
    const ledger = paging(ledgerPager, (before) => {
      const q = new URLSearchParams({ limit: '20' });
      if (before) q.set('before', before);
      return attempt(ledgerSlot, () => api('GET', `${path}/ledger?${q}`));
    }, (page) => {
      ledgerBody.replaceChildren(...page.items.map((r) => h('tr', {},
        h('td', { class: 'num' }, r.id), h('td', {}, stamp(r.at)), h('td', {}, r.kind),
        h('td', { class: 'num' }, `${r.delta > 0 ? '+' : ''}${fmt(r.delta)}`), h('td', { class: 'num' }, fmt(r.on_hand_after)), h('td', { class: 'mono' }, r.ref))));
      if (page.items.length === 0) ledgerBody.replaceChildren(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'Nothing recorded yet (the ledger may be a moment behind).')));
    }, { prev: '← Newer', prevId: 'ledger-newer', next: 'Older →', nextId: 'ledger-older' });

    // Read again as its events come, one read at a time: the counts a few
    // times a second, the holds (a heavier read) and the ledger's first
    // page (only while it is shown) every few seconds.
    const refreshSoon = throttle(oneAtATime(refresh), 250);
    const holdsSoon = throttle(oneAtATime(loadHolds), 2000);
    const ledgerSoon = throttle(() => ledger.reloadFirst(), 2000);
    const feed = new Feed(`sku=${encodeURIComponent(name)}`, (type, e) => {
      events.add(e);
      refreshSoon();
      if (type.startsWith('hold.')) holdsSoon();
      if (type === 'sku.adjusted' || type === 'hold.committed' || type === 'drift.repaired') ledgerSoon();
    }, () => {
      // Events were missed: read everything they would have changed.
      refreshSoon();
      holdsSoon();
      ledgerSoon();
    });
    refresh().then((s) => {
      if (!s) return;
      settings.replaceChildren(...settingsForm(s));
      adjustForm();
    });
    loadHolds();
    ledger.first();
    return {
      stop() {
        feed.stop();
        events.stop();
        [refreshSoon, holdsSoon, ledgerSoon].forEach((d) => d.cancel());
      },
    };
  }

  function reconcile() {
    document.title = 'Reconcile · stockhold';
    const skus = h('input', { id: 'r-skus', name: 'skus', type: 'text', placeholder: 'every SKU', autocomplete: 'off', spellcheck: 'false' });
    const slot = h('div', { class: 'slot' });
    const result = h('section', { id: 'result' });
    const dry = h('button', { type: 'submit', id: 'dry-run' }, 'Dry run');
    const repair = h('button', { type: 'button', id: 'repair', class: 'danger', disabled: true }, 'Repair…');
    const confirmText = h('p', {});
    const confirmSlot = h('div', { class: 'slot' });
    const confirm = h('button', { type: 'button', id: 'confirm', class: 'danger', onclick: () => doRepair() }, 'Repair');
    const dialog = h('dialog', { id: 'confirm-repair' },
      h('h2', {}, 'Repair drifted counts?'), confirmText,
      h('p', { class: 'muted' }, 'Each drifted count in Redis is set to what the ledger and the live holds say it must be, and each repair is written to the ledger. Live holds are kept.'),
      confirmSlot,
      h('div', { class: 'actions' },
        h('button', { type: 'button', id: 'cancel-repair', class: 'quiet', onclick() { if (!confirm.disabled) dialog.close(); } }, 'Cancel'),
        confirm));
    // Not closed (Esc) while a repair is on its way: its answer is shown here.
    dialog.addEventListener('cancel', (e) => { if (confirm.disabled) e.preventDefault(); });
    let drifted = [];
    let repairKey = null;
    const scope = () => {
      const list = skus.value.split(/[,\s]+/).filter(Boolean);
      return list.length ? { skus: list } : {};
    };
    const form = h('form', {
      class: 'card',
      async onsubmit(e) {
        e.preventDefault();
        dry.disabled = true;
        repair.disabled = true;
        const report = await attempt(slot, () => api('POST', '/v1/admin/reconcile', { repair: false, ...scope() }));
        dry.disabled = false;
        if (!report) return;
        drifted = report.drifted;
        show(report, 'Dry run');
        repair.disabled = drifted.length === 0;
      },
    },
    h('label', { for: 'r-skus' }, h('span', {}, 'SKUs to check (comma-separated; empty: every SKU)'), skus),
    h('div', { class: 'actions' }, dry, repair));
    repair.addEventListener('click', () => {
      const names = [...new Set(drifted.map((d) => d.sku))];
      confirmText.textContent = `${names.length} SKU${names.length === 1 ? '' : 's'} drifted: ${names.join(', ')}.`;
      confirmSlot.replaceChildren();
      // One Idempotency-Key per confirmation: a retry after a lost answer
      // or a failure of the service is the same repair.
      repairKey = newId('repair');
      confirm.disabled = false;
      dialog.showModal();
    });
    async function doRepair() {
      if (confirm.disabled) return;
      const names = [...new Set(drifted.map((d) => d.sku))];
      confirm.disabled = true;
      const report = await attempt(confirmSlot, () => api('POST', '/v1/admin/reconcile', { repair: true, skus: names }, repairKey), (p) => {
        if (!retryable(p)) repairKey = newId('repair');
      });
      confirm.disabled = false;
      if (!report) return;
      dialog.close();
      drifted = [];
      repair.disabled = true;
      show(report, 'Repair');
    }
    function show(r, what) {
      const rows = r.drifted.map((d) => h('tr', {},
        h('td', {}, h('a', { href: `#/sku/${encodeURIComponent(d.sku)}` }, d.sku)), h('td', {}, d.pool || '—'),
        h('td', { class: 'num' }, fmt(d.expected.on_hand)), h('td', { class: 'num' }, fmt(d.actual.on_hand)),
        h('td', { class: 'num' }, fmt(d.expected.held)), h('td', { class: 'num' }, fmt(d.actual.held))));
      result.replaceChildren(h('div', { class: 'card' },
        h('h2', {}, `${what}: ${fmt(r.checked)} checked, ${r.drifted.length} drifted${r.repaired ? ', repaired' : ''}`, h('span', { class: 'muted' }, ` · ${r.duration_ms} ms`)),
        r.drifted.length === 0 ? h('p', { class: 'ok', id: 'no-drift' }, 'No drift: Redis agrees with the ledger and the live holds.')
          : h('table', { class: 'grid', id: 'drift' },
            head('SKU', 'Pool', '#Expected on hand', '#Actual on hand', '#Expected held', '#Actual held'),
            h('tbody', {}, rows))));
    }
    view().replaceChildren(h('h1', {}, 'Reconcile'),
      h('p', { class: 'muted' }, 'Compare the live counts in Redis with what the ledger in Postgres and the live holds say they must be. A dry run changes nothing.'),
      form, slot, result, dialog);
    return null;
  }

  // ---- Start -----------------------------------------------------------

  document.getElementById('sign-out').addEventListener('click', () => signOut('Signed out.'));
  window.addEventListener('hashchange', route);
  route();
})();
