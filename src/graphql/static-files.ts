/** A Yoga plugin that serves a folder of built files: the dashboard, GraphiQL's assets. */
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, sep } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Plugin } from 'graphql-yoga';

export interface StaticFilesOptions {
  /** URL path the folder is served under, ending in '/': '/' or '/graphiql/'. */
  prefix: string;
  /** The folder. */
  root: string;
  /**
   * A file (relative to root) answered for a path under the prefix that names no file, when the
   * browser asks for HTML: the client-side routes of a single-page app.
   */
  fallback?: string;
  /** Paths left to the rest of the server (the API, health checks, metrics). */
  exclude?: (pathname: string) => boolean;
  /** Files whose names carry a hash of their content, cached for a year; others are revalidated. */
  immutable?: (relativePath: string) => boolean;
  /** Answered with 404 for the fallback when the folder has not been built. */
  missingMessage?: string;
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};
const COMPRESSIBLE = new Set(['.html', '.js', '.mjs', '.css', '.json', '.map', '.svg', '.txt']);

interface LoadedFile {
  body: Buffer;
  gzipped: Buffer | null;
  etag: string;
  contentType: string;
}

/**
 * GET and HEAD only, never outside the folder (a path that climbs out is not served), with an
 * ETag, gzip when the client takes it, and each file read and compressed once per change.
 */
export function useStaticFiles(options: StaticFilesOptions): Plugin {
  const cache = new Map<string, { mtimeMs: number; file: LoadedFile }>();

  async function load(path: string): Promise<LoadedFile | null> {
    const info = await stat(path).catch(() => null);
    if (!info?.isFile()) return null;
    const cached = cache.get(path);
    if (cached && cached.mtimeMs === info.mtimeMs) return cached.file;
    const body = await readFile(path);
    const extension = extname(path).toLowerCase();
    const file: LoadedFile = {
      body,
      gzipped: COMPRESSIBLE.has(extension) && body.length > 1024 ? gzipSync(body) : null,
      etag: `"${createHash('sha1').update(body).digest('base64url')}"`,
      contentType: CONTENT_TYPES[extension] ?? 'application/octet-stream',
    };
    cache.set(path, { mtimeMs: info.mtimeMs, file });
    return file;
  }

  return {
    async onRequest({ request, url, fetchAPI, endResponse }) {
      if (request.method !== 'GET' && request.method !== 'HEAD') return;
      if (!url.pathname.startsWith(options.prefix) || options.exclude?.(url.pathname)) return;
      let relative: string;
      try {
        relative = normalize(decodeURIComponent(url.pathname.slice(options.prefix.length)));
      } catch {
        return;
      }
      if (relative.startsWith('..') || relative.includes(`${sep}..${sep}`) || relative.includes('\0')) return;
      const asked = relative === '.' || relative === '' ? (options.fallback ?? '') : relative;
      let file = asked ? await load(join(options.root, asked)) : null;
      let immutable = file !== null && (options.immutable?.(asked) ?? false);
      if (!file && options.fallback && (request.headers.get('accept') ?? '').includes('text/html')) {
        file = await load(join(options.root, options.fallback));
        immutable = false;
        if (!file) {
          endResponse(
            new fetchAPI.Response(options.missingMessage ?? 'not built', {
              status: 404,
              headers: { 'content-type': 'text/plain; charset=utf-8' },
            }),
          );
          return;
        }
      }
      if (!file) return;
      const headers: Record<string, string> = {
        'content-type': file.contentType,
        'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
        etag: file.etag,
        'x-content-type-options': 'nosniff',
        vary: 'accept-encoding',
      };
      if (request.headers.get('if-none-match') === file.etag) {
        endResponse(new fetchAPI.Response(null, { status: 304, headers }));
        return;
      }
      let body = file.body;
      if (file.gzipped && /\bgzip\b/.test(request.headers.get('accept-encoding') ?? '')) {
        body = file.gzipped;
        headers['content-encoding'] = 'gzip';
      }
      headers['content-length'] = String(body.length);
      endResponse(
        new fetchAPI.Response(request.method === 'HEAD' ? null : new Uint8Array(body), { status: 200, headers }),
      );
    },
  };
}
