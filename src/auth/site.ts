/**
 * Which sites may talk to Sluice: the Host a request names (against DNS rebinding) and the
 * Origin a browser sends (against cross-site requests). Used for every HTTP route and for
 * WebSocket upgrades.
 */

export interface SitePolicy {
  /** Host names accepted besides loopback names; null: any Host (bound to a public address, no ALLOWED_HOSTS). */
  allowedHosts: readonly string[] | null;
  /** Origins allowed besides the server's own (CORS_ORIGINS). */
  corsOrigins: readonly string[];
}

/** No Host check, no foreign origins: what an in-process server (yoga.fetch) needs. */
export const ANY_HOST: SitePolicy = { allowedHosts: null, corsOrigins: [] };

/** True for an address or name that only this machine can reach. */
export function isLoopback(host: string): boolean {
  const name = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  return (
    name === 'localhost' ||
    name.endsWith('.localhost') ||
    name === '::1' ||
    /^127(\.\d{1,3}){3}$/.test(name) ||
    /^::ffff:127(\.\d{1,3}){3}$/.test(name)
  );
}

/** While bound to loopback, only loopback names and ALLOWED_HOSTS; elsewhere ALLOWED_HOSTS if set. */
export function sitePolicyFor(
  bindHost: string,
  allowedHosts: readonly string[],
  corsOrigins: readonly string[],
): SitePolicy {
  const checkHost = isLoopback(bindHost) || allowedHosts.length > 0;
  return { allowedHosts: checkHost ? allowedHosts : null, corsOrigins };
}

/** The name in a Host header, without port or brackets, lowercase; null when it is not one. */
export function hostName(host: string): string | null {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:[\]\s/@]+)(:\d{1,5})?$/.exec(host.trim());
  if (!match) return null;
  return (match[1] as string).toLowerCase().replace(/\.$/, '');
}

export function hostAllowed(policy: SitePolicy, host: string | null | undefined): boolean {
  if (policy.allowedHosts === null) return true;
  const name = host ? hostName(host) : null;
  if (name === null) return false;
  return isLoopback(name) || policy.allowedHosts.includes(name);
}

/** A listed origin, or the server's own (same host and port); never `null`, which sandboxed pages send. */
export function originAllowed(policy: SitePolicy, origin: string, host: string | null | undefined): boolean {
  if (policy.corsOrigins.includes(origin)) return true;
  if (origin === 'null' || !host) return false;
  try {
    return new URL(origin).host === new URL(`http://${host}`).host;
  } catch {
    return false;
  }
}

/** Why a request must be refused (HTTP 403), or null. Requests without an Origin are not from another site's page. */
export function siteRefusal(
  policy: SitePolicy,
  host: string | null | undefined,
  origin: string | null | undefined,
): string | null {
  if (!hostAllowed(policy, host)) {
    return `Host ${JSON.stringify(host ?? '')} is not a name of this server; add it to ALLOWED_HOSTS`;
  }
  if (origin != null && !originAllowed(policy, origin, host)) {
    return `requests from origin ${JSON.stringify(origin)} are not allowed; add it to CORS_ORIGINS`;
  }
  return null;
}

/** Whether the browser may read answers sent to this origin (CORS): only for listed origins. */
export function corsAllowed(policy: SitePolicy, origin: string | null): origin is string {
  return origin !== null && policy.corsOrigins.includes(origin);
}
