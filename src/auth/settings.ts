/**
 * Security settings, read from the environment once, at the edge. Each limit has its
 * own variable; docs/security.md lists them with these defaults.
 */

export interface RequestLimits {
  /** Largest request body, and largest WebSocket message, in bytes (REQUEST_MAX_BYTES). */
  maxBodyBytes: number;
  /** Lexical tokens in one GraphQL document (GRAPHQL_MAX_TOKENS). */
  maxTokens: number;
  /** Nesting depth of a selection, fragments included (GRAPHQL_MAX_DEPTH). */
  maxDepth: number;
  /** Aliases in one operation (GRAPHQL_MAX_ALIASES). */
  maxAliases: number;
  /** Directives in one operation (GRAPHQL_MAX_DIRECTIVES). */
  maxDirectives: number;
  /** graphql-armor's structural cost: every object and scalar field, by depth and page size (GRAPHQL_MAX_COST). */
  maxCost: number;
  /** Budget of the expensive fields (snapshot, simulate, queue, pages of runs and decisions) (GRAPHQL_MAX_FIELD_COST). */
  maxFieldCost: number;
  /** Items in one list of a request's variables (GRAPHQL_MAX_LIST_LENGTH); the domain's own caps are 1,000. */
  maxListLength: number;
  /** Source bytes of all documents the parse cache keeps (PARSE_CACHE_BYTES). */
  parseCacheBytes: number;
  /** A document longer than this is parsed every time, never cached (PARSE_CACHE_MAX_DOCUMENT_BYTES). */
  parseCacheMaxDocumentBytes: number;
}

export interface ConnectionLimits {
  /** Time to receive a request's headers (HEADERS_TIMEOUT_MS). */
  headersTimeoutMs: number;
  /** Time to receive a whole request, body included (REQUEST_TIMEOUT_MS). */
  requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this (KEEP_ALIVE_TIMEOUT_MS). */
  keepAliveTimeoutMs: number;
  /** Open connections, WebSockets included; more are refused (MAX_CONNECTIONS). */
  maxConnections: number;
  /** Live subscriptions of one token (or of anonymous, in open mode), SSE and WebSocket together (MAX_SUBSCRIPTIONS_PER_TOKEN). */
  maxSubscriptionsPerToken: number;
  /** A WebSocket or HTTP response (SSE) whose unsent data grows past this, because its client does not read, is closed (WS_MAX_BUFFERED_BYTES). */
  maxWebSocketBufferedBytes: number;
}

export interface SecuritySettings {
  /** SLUICE_TOKENS_FILE; null: open mode, only allowed on loopback. */
  tokensFile: string | null;
  /** SLUICE_ALLOW_ANONYMOUS=1: serve without tokens on a non-loopback address anyway. */
  allowAnonymous: boolean;
  /** CORS_ORIGINS: origins (scheme://host[:port]) allowed to call from a browser besides the server's own. */
  corsOrigins: string[];
  /** ALLOWED_HOSTS: Host names accepted besides loopback names (checked while bound to loopback, or whenever set). */
  allowedHosts: string[];
  /** GRAPHIQL=false turns GraphiQL off. */
  graphiql: boolean;
  limits: RequestLimits;
  connections: ConnectionLimits;
}

export const DEFAULT_REQUEST_LIMITS: RequestLimits = {
  // A run with 1,000 steps and 1,000 tags of 255-character names fits in about 1.5 MB.
  maxBodyBytes: 4 * 1024 * 1024,
  maxTokens: 10_000,
  maxDepth: 12,
  maxAliases: 30,
  maxDirectives: 50,
  // A page of 1,000 runs with every field, waits and decisions included, costs about 300,000.
  maxCost: 1_000_000,
  maxFieldCost: 500,
  maxListLength: 5_000,
  parseCacheBytes: 1024 * 1024,
  parseCacheMaxDocumentBytes: 64 * 1024,
};

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 1_000,
  maxSubscriptionsPerToken: 100,
  maxWebSocketBufferedBytes: 16 * 1024 * 1024,
};

export const DEFAULT_SECURITY: SecuritySettings = {
  tokensFile: null,
  allowAnonymous: false,
  corsOrigins: [],
  allowedHosts: [],
  graphiql: true,
  limits: DEFAULT_REQUEST_LIMITS,
  connections: DEFAULT_CONNECTION_LIMITS,
};

/** Each limit's variable, for messages and docs/security.md. */
export const LIMIT_VARIABLES: Record<keyof RequestLimits | keyof ConnectionLimits, string> = {
  maxBodyBytes: 'REQUEST_MAX_BYTES',
  maxTokens: 'GRAPHQL_MAX_TOKENS',
  maxDepth: 'GRAPHQL_MAX_DEPTH',
  maxAliases: 'GRAPHQL_MAX_ALIASES',
  maxDirectives: 'GRAPHQL_MAX_DIRECTIVES',
  maxCost: 'GRAPHQL_MAX_COST',
  maxFieldCost: 'GRAPHQL_MAX_FIELD_COST',
  maxListLength: 'GRAPHQL_MAX_LIST_LENGTH',
  parseCacheBytes: 'PARSE_CACHE_BYTES',
  parseCacheMaxDocumentBytes: 'PARSE_CACHE_MAX_DOCUMENT_BYTES',
  headersTimeoutMs: 'HEADERS_TIMEOUT_MS',
  requestTimeoutMs: 'REQUEST_TIMEOUT_MS',
  keepAliveTimeoutMs: 'KEEP_ALIVE_TIMEOUT_MS',
  maxConnections: 'MAX_CONNECTIONS',
  maxSubscriptionsPerToken: 'MAX_SUBSCRIPTIONS_PER_TOKEN',
  maxWebSocketBufferedBytes: 'WS_MAX_BUFFERED_BYTES',
};

export class SecuritySettingsError extends Error {
  override readonly name = 'SecuritySettingsError';
}

function list(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

/** `scheme://host[:port]` exactly as a browser sends it in Origin; never `*` nor `null`. */
export function parseOrigin(value: string): string {
  if (value === '*' || value === 'null') {
    throw new SecuritySettingsError(
      `CORS_ORIGINS must list origins, not ${value}: a wildcard or null would let any page (or a sandboxed one) call Sluice`,
    );
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new SecuritySettingsError(
      `CORS_ORIGINS: ${JSON.stringify(value)} is not an origin like https://ui.example.com`,
    );
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== value.replace(/\/$/, '')) {
    throw new SecuritySettingsError(
      `CORS_ORIGINS: ${JSON.stringify(value)} is not an origin like https://ui.example.com (scheme, host and port only)`,
    );
  }
  return url.origin;
}

function positiveInteger(env: Record<string, string | undefined>, name: string, fallback: number): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new SecuritySettingsError(`${name} must be a positive integer, got ${JSON.stringify(text)}`);
  }
  return value;
}

function limitsFrom<T extends object>(env: Record<string, string | undefined>, defaults: T): T {
  const limits = { ...defaults };
  for (const key of Object.keys(defaults) as Array<keyof T & keyof typeof LIMIT_VARIABLES>) {
    (limits as Record<string, number>)[key] = positiveInteger(env, LIMIT_VARIABLES[key], defaults[key] as number);
  }
  return limits;
}

export function readSecuritySettings(env: Record<string, string | undefined> = process.env): SecuritySettings {
  const graphiql = env.GRAPHIQL?.trim().toLowerCase();
  if (graphiql !== undefined && graphiql !== '' && graphiql !== 'true' && graphiql !== 'false') {
    throw new SecuritySettingsError(`GRAPHIQL must be true or false, got ${JSON.stringify(env.GRAPHIQL)}`);
  }
  const anonymous = env.SLUICE_ALLOW_ANONYMOUS?.trim();
  if (anonymous !== undefined && anonymous !== '' && anonymous !== '0' && anonymous !== '1') {
    throw new SecuritySettingsError(`SLUICE_ALLOW_ANONYMOUS must be 1 or 0, got ${JSON.stringify(anonymous)}`);
  }
  return {
    tokensFile: env.SLUICE_TOKENS_FILE?.trim() || null,
    allowAnonymous: anonymous === '1',
    corsOrigins: list(env.CORS_ORIGINS).map(parseOrigin),
    allowedHosts: list(env.ALLOWED_HOSTS).map((host) => host.toLowerCase()),
    graphiql: graphiql !== 'false',
    limits: limitsFrom(env, DEFAULT_REQUEST_LIMITS),
    connections: limitsFrom(env, DEFAULT_CONNECTION_LIMITS),
  };
}
