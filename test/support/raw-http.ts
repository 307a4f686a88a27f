/**
 * HTTP as an attacker sends it: any method, any headers (Host included), any body, chunked or
 * not, through node:http with no connection reuse; and raw TCP sockets for slow clients.
 */
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Json } from './e2e-http.js';

export interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: Json;
}

export interface RawRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Send the body in chunks without a content-length. */
  chunked?: boolean;
}

export function rawHttp(port: number, options: RawRequest = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const body = options.body === undefined ? undefined : Buffer.from(options.body);
    const headers: Record<string, string> = { ...options.headers };
    if (body && !options.chunked && headers['content-length'] === undefined) {
      headers['content-length'] = String(body.length);
    }
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: options.method ?? 'POST',
        path: options.path ?? '/graphql',
        headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: Json = null;
          try {
            json = JSON.parse(text);
          } catch {
            // not JSON: the test looks at the status
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    // The server may refuse and close before the whole body is sent: the answer still counts.
    req.on('error', reject);
    if (body && options.chunked) {
      for (let at = 0; at < body.length; at += 64 * 1024) req.write(body.subarray(at, at + 64 * 1024));
      req.end();
    } else {
      req.end(body);
    }
  });
}

/** A TCP connection to the server that the test writes to by hand. */
export function rawSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Resolves with what the server wrote once it closes the socket, or null after `timeoutMs`. */
export function closedWithin(socket: Socket, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    let text = '';
    socket.on('data', (chunk) => (text += String(chunk)));
    socket.on('error', () => undefined);
    const timer = setTimeout(() => resolve(null), timeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}
