/** Input types, as the contract names them. Their values are validated by the domain. */
import { builder } from './builder.js';

export const TagInput = builder.inputType('TagInput', {
  fields: (t) => ({ key: t.string({ required: true }), value: t.string({ required: true }) }),
});

export const StepInput = builder.inputType('StepInput', {
  fields: (t) => ({
    key: t.string({ required: true }),
    pool: t.string(),
    priority: t.int({ description: "Added to the run's priority when steps wait for the same pool." }),
    dependsOn: t.stringList({
      description: "Keys of the steps this step waits for; steps with none are the run's root steps.",
    }),
  }),
});

export const EnqueueRunInput = builder.inputType('EnqueueRunInput', {
  fields: (t) => ({
    runId: t.id({ description: 'Client-chosen id; enqueueing the same id twice appends nothing the second time.' }),
    jobName: t.string({ required: true }),
    tags: t.field({ type: [TagInput] }),
    steps: t.field({ type: [StepInput] }),
    priority: t.int({
      description: 'Higher first; ties in enqueue order. Default: the dagster/priority tag as an integer, else 0.',
    }),
    maxConcurrentSteps: t.int({
      description: "Most steps of this run that may hold slots at once (the executor's max_concurrent).",
    }),
    leaseSeconds: t.int({
      description:
        'The run fails and frees all it holds when no heartbeat comes for this many seconds; null: no lease.',
    }),
  }),
});

export const TagConcurrencyLimitInput = builder.inputType('TagConcurrencyLimitInput', {
  fields: (t) => ({
    key: t.string({ required: true }),
    value: t.string(),
    applyLimitPerUniqueValue: t.boolean(),
    limit: t.int({ required: true }),
  }),
});
