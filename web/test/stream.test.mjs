// The SSE client (src/stream.js) against a local server: parsing as the specification says,
// and reconnecting with Last-Event-ID. Runs in node (fetch and streams are built in):
//   node --test web/test/stream.test.mjs
import test from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { LiveStream } from '../src/stream.js';

function serve(handler) {
  return new Promise((resolve) => {
    const server = http.createServer(handler);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

function collect(stream, n) {
  return new Promise((resolve) => {
    const got = [];
    const off = stream.on((ev) => {
      got.push(ev);
      if (got.length === n) {
        off();
        resolve(got);
      }
    });
  });
}

test('parses fields, comments, multi-line data and every line ending, split anywhere', async () => {
  const body = ': keep-alive\r\n'
    + 'id: 1\nevent: price\ndata: {"symbol":"BTC",\ndata: "price_usd":1}\n\n'
    + 'id: 2\r\nevent: top\r\ndata:{"count":3}\r\n\r\n'
    + 'data: plain text\rid: 3\r\r'
    + 'event: ignored-without-data\n\n'
    + 'retry: 1500\nunknown: field\nid: 4\nevent: resync\ndata: {"reason":"lag"}\n\n';
  const server = await serve((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    // One byte at a time: every split point, CR LF across chunks included.
    let i = 0;
    const timer = setInterval(() => {
      if (i < body.length) res.write(body[i++]);
      else clearInterval(timer);
    }, 0);
    req.on('close', () => clearInterval(timer));
  });
  const stream = new LiveStream(`http://127.0.0.1:${server.address().port}/v1/stream`);
  const events = collect(stream, 4);
  stream.configure({ symbols: ['BTC', 'ETH'], metrics: [] });
  const got = await events;
  stream.close();
  server.close();
  assert.deepEqual(got.map((e) => [e.type, e.id]), [['price', '1'], ['top', '2'], ['message', '3'], ['resync', '4']]);
  assert.deepEqual(got[0].data, { symbol: 'BTC', price_usd: 1 });
  assert.deepEqual(got[1].data, { count: 3 });
  assert.equal(got[2].data, 'plain text');
  assert.equal(stream.retryMs, 1500);
});

test('reconnects with Last-Event-ID, the key and the filters', async () => {
  const seen = [];
  const server = await serve((req, res) => {
    seen.push({ url: req.url, last: req.headers['last-event-id'], auth: req.headers.authorization });
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    if (seen.length === 1) res.end('retry: 10\nid: 41\nevent: price\ndata: {}\n\n'); // then the server goes away
    else res.write('id: 42\nevent: top\ndata: {}\n\n');
  });
  const stream = new LiveStream(`http://127.0.0.1:${server.address().port}/v1/stream`);
  const events = collect(stream, 2);
  stream.configure({ symbols: ['BTC', 'A B'], metrics: ['kraken:btc-usd:price'], key: 'tck_x' });
  const got = await events;
  stream.close();
  server.closeAllConnections();
  server.close();
  assert.deepEqual(got.map((e) => e.id), ['41', '42']);
  assert.equal(seen[0].url, '/v1/stream?symbols=BTC,A%20B&metrics=kraken%3Abtc-usd%3Aprice');
  assert.equal(seen[0].last, undefined);
  assert.equal(seen[1].last, '41');
  assert.equal(seen[1].auth, 'Bearer tck_x');
});

test('a refused key: follows the public events without it', async () => {
  const seen = [];
  const server = await serve((req, res) => {
    seen.push(req.headers.authorization);
    if (req.headers.authorization) {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end('{"error":{"code":"invalid_key","message":"no"}}');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('event: top\ndata: {}\n\n');
  });
  const stream = new LiveStream(`http://127.0.0.1:${server.address().port}/v1/stream`);
  const events = collect(stream, 1);
  stream.configure({ symbols: null, metrics: [], key: 'tck_bad' });
  await events;
  stream.close();
  server.closeAllConnections();
  server.close();
  assert.deepEqual(seen, ['Bearer tck_bad', undefined]);
});
