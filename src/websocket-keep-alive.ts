/**
 * Finding WebSocket clients that are gone: every interval each socket is pinged, and a socket
 * that has shown no sign of life for SILENT_INTERVALS_MOST intervals in a row is closed. A sign
 * of life is a pong, or data the socket was sent being taken off it.
 *
 * graphql-ws's own keep-alive (a pong within one interval of each ping) is not used: it drops a
 * client that is reading a long replay. The ping is queued behind what the socket's buffers
 * already hold, megabytes once a replay runs, and the client answers it only after reading all
 * of that. The kernel frees send buffer only as the peer acknowledges data, so data leaving
 * the socket means the client is reading; it does so in bursts (a writer is woken only once a
 * good part of the buffer is free), hence several intervals before a silent client is closed.
 */
import type { Socket } from 'node:net';
import type { WebSocket, WebSocketServer } from 'ws';

/** How often clients are pinged. */
export const KEEP_ALIVE_INTERVAL_MS = 12_000;
/** Intervals in a row without a pong or data taken off the socket before it is closed. */
export const SILENT_INTERVALS_MOST = 3;

interface Watched {
  /** The connection under the WebSocket. */
  connection: Socket;
  ponged: boolean;
  /** Bytes the kernel had taken off the socket at the last ping. */
  taken: number;
  silentIntervals: number;
}

/**
 * Bytes the kernel has taken from the socket so far: those handed to the socket less those
 * still waiting in Node. Exact whenever one write is under way at a time, as graphql-ws writes
 * a subscription's results (the next once the one before is written).
 */
function bytesTaken(connection: Socket): number {
  return connection.bytesWritten - connection.writableLength;
}

/** Starts watching the server's sockets; returns what stops it. */
export function keepAlive(ws: WebSocketServer, intervalMs = KEEP_ALIVE_INTERVAL_MS): () => void {
  const watched = new WeakMap<WebSocket, Watched>();
  ws.on('connection', (socket, request) => {
    const entry: Watched = { connection: request.socket, ponged: true, taken: 0, silentIntervals: 0 };
    watched.set(socket, entry);
    socket.on('pong', () => {
      entry.ponged = true;
    });
  });
  const timer = setInterval(() => {
    for (const socket of ws.clients) {
      const entry = watched.get(socket);
      if (entry === undefined || socket.readyState !== socket.OPEN) continue;
      const alive = entry.ponged || bytesTaken(entry.connection) !== entry.taken;
      entry.silentIntervals = alive ? 0 : entry.silentIntervals + 1;
      if (entry.silentIntervals >= SILENT_INTERVALS_MOST) {
        socket.terminate();
        continue;
      }
      entry.ponged = false;
      socket.ping();
      // Measured after the ping: a ping the kernel takes at once is no sign of the client.
      entry.taken = bytesTaken(entry.connection);
    }
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
