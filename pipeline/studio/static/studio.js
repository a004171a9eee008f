// The studio in the browser: follow /events and swap the parts of the page marked
// data-live (no reload: scroll position, controls and typed text stay), load the email
// into a second, hidden frame and swap it in when ready, apply the controls, and
// simulate the forced dark-mode inversion of Gmail's apps.
(() => {
  'use strict';
  document.documentElement.classList.add('js');
  const body = document.body;
  const page = body.dataset.page;
  let version = Number(body.dataset.version) || 0;
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];
  const SANDBOX = 'allow-same-origin allow-popups allow-popups-to-escape-sandbox';

  // ---- live updates -----------------------------------------------------------------

  const live = $('#live');
  function setLive(state, text) {
    if (!live) return;
    live.dataset.state = state;
    live.textContent = text;
    body.dataset.live = state === 'live' ? 'connected' : state;
  }

  let busy = false;
  let again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      do { again = false; await swapPage(); } while (again);
    } catch (error) {
      setLive('reconnecting', `update failed: ${error.message}`);
    } finally {
      busy = false;
    }
  }

  async function swapPage() {
    const response = await fetch(location.href, { cache: 'no-store', headers: { Accept: 'text/html' } });
    const doc = new DOMParser().parseFromString(await response.text(), 'text/html');
    if (doc.body.dataset.page !== page) {  // the module was renamed, deleted or is back
      location.reload();
      return;
    }
    for (const fresh of $$('[data-live]', doc)) {
      const here = document.getElementById(fresh.id);
      if (here) here.replaceWith(document.importNode(fresh, true));
    }
    version = Number(doc.body.dataset.version) || version;
    body.dataset.version = String(version);
    if (frames) await frames.follow(doc.getElementById('frame-box'));
    body.dataset.updated = String(version);
  }

  function connect() {
    if (!window.EventSource) return;
    const events = new EventSource('/events');
    events.addEventListener('hello', (event) => {
      setLive('live', 'live');
      if (JSON.parse(event.data).version !== version) refresh();  // missed while away
    });
    events.addEventListener('change', (event) => {
      const change = JSON.parse(event.data);
      const when = new Date().toLocaleTimeString();
      setLive('live', `updated ${when}${change.paths.length ? ' · ' + change.paths[0] : ''}`);
      refresh();
    });
    events.onerror = () => setLive('reconnecting', 'reconnecting…');
  }

  // ---- the email frame ------------------------------------------------------------

  class Frames {
    constructor(box) {
      this.box = box;
      this.observer = new ResizeObserver(() => this.fit(this.current()));
      const first = this.current();
      if (first) this.adopt(first);
    }

    current() { return $('iframe.email:not(.loading)', this.box); }

    // The frame the server rendered: it may have loaded before this script ran.
    adopt(frame) {
      frame.addEventListener('load', () => this.prepare(frame));
      const doc = frame.contentDocument;
      if (doc && doc.readyState === 'complete' && doc.URL !== 'about:blank') this.prepare(frame);
    }

    prepare(frame) {
      const doc = frame.contentDocument;
      if (!doc || !doc.body) return;
      if (this.box.dataset.theme === 'inverted') invert(doc);
      this.fit(frame);
      this.observer.disconnect();
      this.observer.observe(doc.body);
    }

    fit(frame) {
      const doc = frame && frame.contentDocument;
      if (!doc || !doc.body) return;
      const style = doc.defaultView.getComputedStyle(doc.body);
      const height = doc.body.getBoundingClientRect().bottom + parseFloat(style.marginBottom || 0);
      frame.style.height = `${Math.ceil(Math.max(height, 100))}px`;
    }

    // Load src into a hidden frame; show it in place of the old one once laid out.
    load(src) {
      return new Promise((resolve) => {
        const frame = document.createElement('iframe');
        frame.className = 'email loading';
        frame.title = 'The email';
        frame.setAttribute('sandbox', SANDBOX);
        frame.addEventListener('load', () => {
          this.prepare(frame);
          for (const old of $$('iframe.email', this.box)) if (old !== frame) old.remove();
          frame.classList.remove('loading');
          this.fit(frame);
          resolve();
        }, { once: true });
        frame.src = src;
        this.box.append(frame);
      });
    }

    // Follow the server's view of the frame: its state (ok or failure) and source.
    async follow(fresh) {
      if (!fresh) return;
      this.box.dataset.state = fresh.dataset.state;
      if (fresh.dataset.state !== 'ok') return;
      const src = this.withScheme(fresh.dataset.src);
      if (src !== this.box.dataset.src || !this.current()) {
        this.box.dataset.src = src;
        await this.load(src);
      }
    }

    withScheme(src) {
      const url = new URL(src, location.href);
      url.searchParams.set('scheme', this.box.dataset.theme === 'dark' ? 'dark' : 'light');
      return url.pathname + url.search;
    }

    setTheme(theme) {
      this.box.dataset.theme = theme;
      const src = this.withScheme(this.box.dataset.src);
      this.box.dataset.src = src;
      if (this.box.dataset.state === 'ok') return this.load(src);
      return Promise.resolve();
    }

    setWidth(width) {
      this.box.dataset.w = width;
      requestAnimationFrame(() => this.fit(this.current()));
    }
  }

  // ---- Gmail-app style forced inversion ---------------------------------------------
  // Light backgrounds become dark and dark text light (in OKLab lightness, hue kept,
  // chroma softened); images are left alone. Colours are read for every element
  // first, then written, so inherited colours are not inverted twice.

  const linear = (c) => { c /= 255; return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  const gamma = (c) => {
    const v = c <= 0.0031308 ? 12.92 * c : 1.055 * c ** (1 / 2.4) - 0.055;
    return Math.round(Math.min(1, Math.max(0, v)) * 255);
  };
  function toOklab([r, g, b]) {
    [r, g, b] = [linear(r), linear(g), linear(b)];
    const l = Math.cbrt(0.4122214708 * r + 0.5363325363 * g + 0.0514459929 * b);
    const m = Math.cbrt(0.2119034982 * r + 0.6806995451 * g + 0.1073969566 * b);
    const s = Math.cbrt(0.0883024619 * r + 0.2817188376 * g + 0.6299787005 * b);
    return [0.2104542553 * l + 0.7936177850 * m - 0.0040720468 * s,
      1.9779984951 * l - 2.4285922050 * m + 0.4505937099 * s,
      0.0259040371 * l + 0.7827717662 * m - 0.8086757660 * s];
  }
  function fromOklab([L, a, b]) {
    const l = (L + 0.3963377774 * a + 0.2158037573 * b) ** 3;
    const m = (L - 0.1055613458 * a - 0.0638541728 * b) ** 3;
    const s = (L - 0.0894841775 * a - 1.2914855480 * b) ** 3;
    return [gamma(4.0767416621 * l - 3.3077115913 * m + 0.2309699292 * s),
      gamma(-1.2684380046 * l + 2.6097574011 * m - 0.3413193965 * s),
      gamma(-0.0041960863 * l - 0.7034186147 * m + 1.7076147010 * s)];
  }
  function parse(color) {
    const m = /^rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)(?:,\s*([\d.]+))?\)$/.exec(color);
    return m ? { rgb: [+m[1], +m[2], +m[3]], alpha: m[4] === undefined ? 1 : +m[4] } : null;
  }
  function adjust(color, background) {
    const parsed = parse(color);
    if (!parsed || parsed.alpha === 0) return null;
    let [L, a, b] = toOklab(parsed.rgb);
    if (background ? L <= 0.5 : L >= 0.5) return null;  // already dark / already light
    L = 1 - L * 0.82;
    const [r, g, bl] = fromOklab([L, a * 0.8, b * 0.8]);
    return parsed.alpha < 1 ? `rgba(${r}, ${g}, ${bl}, ${parsed.alpha})` : `rgb(${r}, ${g}, ${bl})`;
  }
  function invert(doc) {
    const view = doc.defaultView;
    const plan = [doc.documentElement, ...doc.querySelectorAll('*')].map((el) => {
      const cs = view.getComputedStyle(el);
      return [el, cs.color, cs.backgroundColor,
        ['top', 'right', 'bottom', 'left'].map((side) => cs.getPropertyValue(`border-${side}-color`))];
    });
    for (const [el, color, background, borders] of plan) {
      const fg = adjust(color, false);
      if (fg) el.style.setProperty('color', fg, 'important');
      const bg = adjust(background, true);
      if (bg) el.style.setProperty('background-color', bg, 'important');
      ['top', 'right', 'bottom', 'left'].forEach((side, i) => {
        const border = adjust(borders[i], true);
        if (border) el.style.setProperty(`border-${side}-color`, border, 'important');
      });
    }
    const canvas = view.getComputedStyle(doc.body).backgroundColor;
    if (!parse(canvas) || parse(canvas).alpha === 0) {
      doc.documentElement.style.setProperty('background-color', '#121212', 'important');
    }
    doc.documentElement.dataset.studioInverted = 'true';
  }

  // ---- controls: width, theme, tab, reader ------------------------------------------

  let frames = null;

  function remember(name, value) {
    const url = new URL(location.href);
    url.searchParams.set(name, value);
    history.replaceState(history.state, '', url);
    const hidden = $(`#reader-form input[type=hidden][name="${name}"]`);
    if (hidden) hidden.value = value;
  }

  function press(name, value) {
    for (const button of $$(`[data-control="${name}"] button`)) {
      button.setAttribute('aria-pressed', String(button.dataset.value === value));
    }
  }

  const apply = {
    w(value) { if (frames) frames.setWidth(value); },
    theme(value) { body.dataset.theme = value; if (frames) frames.setTheme(value); },
    tab(value) {
      for (const panel of $$('.panel')) panel.hidden = panel.dataset.tab !== value;
      if (value === 'html' && frames) requestAnimationFrame(() => frames.fit(frames.current()));
    },
  };

  function controls() {
    for (const group of $$('[data-control]')) {
      const name = group.dataset.control;
      group.addEventListener('click', (event) => {
        const button = event.target.closest('button[data-value]');
        if (!button) return;
        press(name, button.dataset.value);
        remember(name, button.dataset.value);
        apply[name](button.dataset.value);
      });
    }
    const params = new URLSearchParams(location.search);
    body.dataset.theme = params.get('theme') || 'light';
  }

  function readerForm() {
    const form = $('#reader-form');
    if (!form) return;
    const select = $('#reader', form);
    const choose = () => {
      const url = new URL(location.href);
      url.searchParams.set('reader', select.value);
      const email = $('#reader-email', form).value.trim();
      if (select.value === 'subscriber') url.searchParams.set('email', email);
      else url.searchParams.delete('email');
      history.replaceState(history.state, '', url);
      refresh();
    };
    select.addEventListener('change', () => {
      form.toggleAttribute('data-subscriber', select.value === 'subscriber');
      if (select.value === 'subscriber') $('#reader-email', form).focus();
      else choose();
    });
    form.addEventListener('submit', (event) => { event.preventDefault(); choose(); });
  }

  function sendForm() {
    const form = $('#send-form');
    if (!form) return;
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const out = $('#send-result', form);
      const button = $('button[type=submit]', form);
      const params = new URLSearchParams(location.search);
      const query = new URLSearchParams({ reader: params.get('reader') || 'sample' });
      if (params.get('email')) query.set('email', params.get('email'));
      out.dataset.ok = '';
      out.textContent = 'Sending…';
      button.disabled = true;
      try {
        const response = await fetch(`/send-test/${form.dataset.key}?${query}`, {
          method: 'POST', body: new FormData(form), headers: { Accept: 'application/json' },
        });
        const answer = await response.json();
        out.dataset.ok = String(answer.ok);
        out.textContent = answer.message;
      } catch (error) {
        out.dataset.ok = 'false';
        out.textContent = `The studio did not answer: ${error.message}`;
      } finally {
        button.disabled = false;
      }
    });
  }

  if (page === 'module') {
    const box = $('#frame-box');
    if (box) frames = new Frames(box);
    controls();
    readerForm();
    sendForm();
  }
  connect();
})();
