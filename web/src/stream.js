// A Server-Sent Events client over fetch(), for GET /v1/stream.
//
// EventSource cannot send an Authorization header, so this reads the response body itself
// and parses it as the SSE specification says (fields `id`, `event`, `data`, `retry`;
// lines starting with `:` are comments). When the connection ends it reconnects after the
// server's `retry` (default 1-2 s), sending `Last-Event-ID` with the id of the last event seen.
// One instance serves the whole app: pages say what they want with configure().

const DEFAULT_RETRY_MS = 1000;
const SILENCE_MS = 45_000; // the server comments every 15 s: three missed = dead connection

export class LiveStream {
  constructor(path = '/v1/stream') {
    this.path = path;
    this.symbols = null; // null: every coin
    this.metrics = [];
    this.key = '';
    this.url = null;
    this.lastEventId = '';
    this.retryMs = DEFAULT_RETRY_MS;
    this.state = 'idle';
    this.detail = '';
    this.generation = 0;
    this.controller = null;
    this.listeners = new Set();
    this.stateListeners = new Set();
    this.keyRefused = false;
  }

  /** Listens to every event: fn({type, data, id}), data parsed from JSON. Returns an unsubscribe. */
  on(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Listens to the connection state: fn(state, detail). Returns an unsubscribe. */
  onState(fn) {
    this.stateListeners.add(fn);
    fn(this.state, this.detail);
    return () => this.stateListeners.delete(fn);
  }

  /**
   * What to follow: `symbols` (an array, or null for every coin), `metrics` (ids) and `key`
   * (for the caller's alerts). Reconnects only when the request would differ.
   */
  configure({ symbols = this.symbols, metrics = this.metrics, key = this.key } = {}) {
    this.symbols = symbols;
    this.metrics = metrics;
    if (key !== this.key) this.keyRefused = false;
    this.key = key;
    const url = this.buildUrl();
    const auth = this.sendKey();
    if (url === this.url && auth === this.sentKey && this.state !== 'idle') return;
    this.url = url;
    this.sentKey = auth;
    this.restart();
  }

  buildUrl() {
    const parts = [];
    // Items are percent-encoded one by one; the commas between them stay literal.
    if (this.symbols) parts.push(`symbols=${this.symbols.map(encodeURIComponent).join(',')}`);
    if (this.metrics.length) parts.push(`metrics=${this.metrics.map(encodeURIComponent).join(',')}`);
    return parts.length ? `${this.path}?${parts.join('&')}` : this.path;
  }

  sendKey() {
    return this.keyRefused ? '' : this.key;
  }

  get connected() {
    return this.state === 'open';
  }

  close() {
    this.generation++;
    if (this.controller) this.controller.abort();
    this.controller = null;
    this.url = null;
    this.setState('idle');
  }

  restart() {
    this.generation++;
    if (this.controller) this.controller.abort();
    this.run(this.generation);
  }

  setState(state, detail = '') {
    if (state === this.state && detail === this.detail) return;
    this.state = state;
    this.detail = detail;
    for (const fn of this.stateListeners) fn(state, detail);
  }

  async run(generation) {
    let failures = 0;
    while (generation === this.generation) {
      const controller = new AbortController();
      this.controller = controller;
      let delay = this.retryMs + Math.random() * 1000;
      this.setState(this.state === 'open' || this.state === 'idle' ? 'connecting' : this.state, this.detail);
      try {
        const headers = { Accept: 'text/event-stream' };
        if (this.lastEventId) headers['Last-Event-ID'] = this.lastEventId;
        const key = this.sendKey();
        if (key) headers.Authorization = `Bearer ${key}`;
        const response = await fetch(this.url, { headers, signal: controller.signal, cache: 'no-store' });
        if (response.ok && response.body) {
          failures = 0;
          this.setState('open');
          await this.read(response.body, controller);
          if (generation === this.generation) this.setState('closed', 'the stream ended');
        } else {
          await response.text().catch(() => '');
          failures++;
          if ((response.status === 401 || response.status === 403) && key) {
            // The key is refused: follow the public events without it.
            this.keyRefused = true;
            this.sentKey = '';
            this.setState('closed', 'the key was refused; alerts are not followed');
            delay = 0;
          } else if (response.status === 404 || response.status === 405) {
            this.setState('unavailable', 'this server has no live stream');
            delay = 30_000;
          } else {
            this.setState('closed', `the stream answered ${response.status}`);
            delay = Math.min(30_000, delay * 2 ** Math.min(failures - 1, 4));
          }
        }
      } catch (e) {
        if (generation !== this.generation) return;
        failures++;
        this.setState('closed', e && e.name === 'AbortError' ? 'the stream went silent' : 'disconnected');
        delay = Math.min(30_000, delay * 2 ** Math.min(failures - 1, 4));
      }
      if (generation !== this.generation) return;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  /** Reads one response body to its end, dispatching its events. */
  async read(body, controller) {
    const reader = body.getReader();
    const decoder = new TextDecoder(); // strips a leading BOM, as the SSE spec wants
    let buffer = '';
    let watchdog = 0;
    const awake = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => controller.abort(), SILENCE_MS);
    };
    this.resetEvent();
    awake();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        awake();
        buffer += decoder.decode(value, { stream: true });
        buffer = this.lines(buffer);
      }
    } finally {
      clearTimeout(watchdog);
    }
  }

  /** Handles every complete line of `buffer` (CR, LF or CRLF ends a line); returns the rest. */
  lines(buffer) {
    let start = 0;
    for (;;) {
      let end = -1;
      for (let i = start; i < buffer.length; i++) {
        const c = buffer.charCodeAt(i);
        if (c === 10 || c === 13) {
          end = i;
          break;
        }
      }
      if (end < 0) break;
      // A CR at the very end may be the first half of a CRLF: wait for the next chunk.
      if (buffer.charCodeAt(end) === 13 && end === buffer.length - 1) break;
      this.line(buffer.slice(start, end));
      start = end + 1;
      if (buffer.charCodeAt(end) === 13 && buffer.charCodeAt(start) === 10) start++;
    }
    return buffer.slice(start);
  }

  line(line) {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ':' a comment (keep-alive)
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (field) {
      case 'event':
        this.eventType = value;
        break;
      case 'data':
        this.data += `${value}\n`;
        break;
      case 'id':
        if (!value.includes('\0')) this.idBuffer = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retryMs = Number(value);
        break;
      default:
        break; // unknown fields are ignored
    }
  }

  resetEvent() {
    this.eventType = '';
    this.data = '';
    this.idBuffer = this.lastEventId;
  }

  dispatch() {
    this.lastEventId = this.idBuffer;
    if (this.data === '') {
      this.eventType = '';
      return;
    }
    const raw = this.data.slice(0, -1);
    const type = this.eventType || 'message';
    this.eventType = '';
    this.data = '';
    let data;
    try {
      data = JSON.parse(raw);
    } catch {
      data = raw;
    }
    const event = { type, data, id: this.lastEventId };
    for (const fn of this.listeners) {
      try {
        fn(event);
      } catch (e) {
        // A page's bug must not end the stream; it still surfaces as an uncaught error.
        setTimeout(() => {
          throw e;
        });
      }
    }
  }
}
