/** Roles, and which role each root field of the API needs. */

export const ROLES = ['viewer', 'worker', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** Who is asking: a token's name and role, or the anonymous user of open mode. */
export interface Principal {
  name: string;
  role: Role;
}

export function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value);
}

/** True when `role` may do what `needed` may: viewer < worker < admin. */
export function roleAllows(role: Role, needed: Role): boolean {
  return ROLES.indexOf(role) >= ROLES.indexOf(needed);
}

/** What a worker runs: its runs' life cycle and its steps' slots. Every other edit is an admin's. */
const WORKER_MUTATIONS: ReadonlySet<string> = new Set([
  'enqueueRun',
  'markRunStarted',
  'markRunFinished',
  'heartbeat',
  'claimStepSlot',
  'releaseStepSlot',
  'terminateRun',
]);

/**
 * The role a root field needs. Reads (queries, subscriptions, introspection) are a viewer's;
 * a mutation not named as a worker's needs admin, so a mutation added later is safe by default.
 */
export function roleNeeded(operation: 'query' | 'mutation' | 'subscription', field: string): Role {
  if (operation !== 'mutation') return 'viewer';
  return WORKER_MUTATIONS.has(field) ? 'worker' : 'admin';
}
