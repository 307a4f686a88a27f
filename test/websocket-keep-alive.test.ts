/**
 * The WebSocket keep-alive against real sockets: a client that reads a long backlog slowly, its
 * pongs held up behind it, stays connected; one that stops reading, with or without a backlog,
 * is closed; an idle one that answers pings stays. The interval is shorter than a server's, and
 * the slow reader's pace set so that its first pong comes more than an interval after the ping
 * (graphql-ws's own keep-alive would drop it) while the data it takes off the socket shows it
 * reading well within the intervals allowed.
 */
import type { AddressInfo } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { keepAlive, SILENT_INTERVALS_MOST } from '../src/websocket-keep-alive.js';

const INTERVAL_MS = 500;
const closers: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/**
 * A server with the keep-alive at INTERVAL_MS that sends each new client `messages` of 64 KiB,
 * each once the one before has been written (as graphql-ws sends a subscription's results).
 * `closed` resolves with each socket the server sees closed.
 */
async function serverSending(messages: number): Promise<{ url: string; closed: Promise<void> }> {
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise<void>((listening) => server.once('listening', () => listening()));
  const stop = keepAlive(server, INTERVAL_MS);
  let closedOnServer!: () => void;
  const closed = new Promise<void>((resolve) => (closedOnServer = resolve));
  server.on('connection', async (socket) => {
    socket.once('close', () => closedOnServer());
    for (let i = 0; i < messages; i++) {
      const written = await new Promise<boolean>((done) =>
        socket.send(Buffer.alloc(64 * 1024, i), (error) => done(!error)),
      );
      if (!written) return;
    }
  });
  closers.push(
    () => new Promise<void>((closed) => server.close(() => closed())),
    () => {
      for (const client of server.clients) client.terminate();
    },
    stop,
  );
  return { url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`, closed };
}

function connect(url: string): Promise<WebSocket> {
  const client = new WebSocket(url);
  closers.push(() => client.terminate());
  return new Promise((open, fail) => {
    client.once('open', () => open(client));
    client.once('error', fail);
  });
}

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
/** True when `closed` resolves within `ms`. */
const closedWithin = (closed: Promise<void>, ms: number) =>
  Promise.race([closed.then(() => true), sleep(ms).then(() => false)]);

it('given a client reading a long backlog slowly, its pong stuck behind it for many intervals, then it stays connected and gets all of it', async () => {
  const messages = 120;
  const server = await serverSending(messages);
  const client = await connect(server.url);
  let closedOnServer = false;
  void server.closed.then(() => (closedOnServer = true));
  let received = 0;
  let pingHeldUp = false;
  const started = Date.now();
  await new Promise<void>((done) => {
    client.on('message', () => {
      received++;
      if (received === messages) return done();
      // A slow reader: a pause after each message.
      client.pause();
      setTimeout(() => client.resume(), 25);
    });
    client.once('ping', () => {
      // Sent one interval after connecting; read more than an interval after that.
      pingHeldUp = Date.now() - started > 2 * INTERVAL_MS;
    });
    client.once('close', () => done());
  });
  expect(closedOnServer).toBe(false);
  expect(received).toBe(messages);
  expect(pingHeldUp).toBe(true);
});

it('given a client that stops reading with a backlog waiting, then it is closed within a few intervals', async () => {
  const server = await serverSending(200);
  const client = await connect(server.url);
  client.pause();
  expect(await closedWithin(server.closed, (SILENT_INTERVALS_MOST + 3) * INTERVAL_MS)).toBe(true);
});

it('given a client that stops reading with nothing to read, then it is closed within a few intervals', async () => {
  const server = await serverSending(0);
  const client = await connect(server.url);
  client.pause();
  expect(await closedWithin(server.closed, (SILENT_INTERVALS_MOST + 3) * INTERVAL_MS)).toBe(true);
});

it('given an idle client that answers pings, then it stays connected', async () => {
  const server = await serverSending(0);
  const client = await connect(server.url);
  let pings = 0;
  client.on('ping', () => pings++);
  expect(await closedWithin(server.closed, (SILENT_INTERVALS_MOST + 3) * INTERVAL_MS)).toBe(false);
  expect(pings).toBeGreaterThanOrEqual(SILENT_INTERVALS_MOST + 1);
});
