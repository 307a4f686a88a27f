/**
 * Who holds and who waits for a pool's slots, step by step: what Dagster's pool pages and
 * `dagster instance concurrency get` show (slots claimed by run and step, pending steps with
 * the time they claimed and their priority). Only live runs' claims appear: a finished run's
 * claims were all released when it ended.
 */
import { type PoolView, poolClaims } from '../../projections/pools.js';
import type { State } from '../../projections/state.js';
import { builder } from './builder.js';
import { StepSlotClaimType } from './slots.js';
import { PoolType } from './types.js';

/** Pool views made from a past state (a snapshot), so their claims are that state's, not today's. */
const pastStates = new WeakMap<PoolView, State>();

/** Marks views as made from `state` (a snapshot's): their claims are read from it. */
export function viewsOfState(views: PoolView[], state: State): PoolView[] {
  for (const view of views) pastStates.set(view, state);
  return views;
}

builder.objectFields(StepSlotClaimType, (t) => ({
  priority: t.exposeInt('priority', {
    description: "The run's priority plus the step's: waiting claims are served highest first, then first come.",
  }),
  claimedAt: t.field({
    type: 'DateTime',
    nullable: true,
    description: 'When the step claimed; null only for a claim the live state no longer holds.',
    resolve: (claim) => claim.claimedAt ?? null,
  }),
  grantedAt: t.field({
    type: 'DateTime',
    nullable: true,
    description: 'When the step was granted its slot; null while it waits, and once released.',
    resolve: (claim) => (claim.status === 'GRANTED' ? (claim.grantedAt ?? null) : null),
  }),
}));

builder.objectField(PoolType, 'claims', (t) =>
  t.field({
    type: [StepSlotClaimType],
    description:
      'OP granularity: the steps holding a slot of this pool (in the order they were granted), then the steps waiting for one (in the order they will be served). Empty at RUN granularity, where runs, not steps, hold a pool.',
    resolve: (pool, _args, ctx) => poolClaims(pastStates.get(pool) ?? ctx.sluice.state, pool.name),
  }),
);
