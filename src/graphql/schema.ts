/** The whole schema, printed to schema/schema.graphql and served by Yoga. */
import { lexicographicSortSchema } from 'graphql';
import { builder } from './builder.js';
import './errors.js';
import './types.js';
import './inputs.js';
import './query.js';
import './mutation.js';
import './subscription.js';
import './run-status.js';
import './slots.js';
import './pool-claims.js';
import './audit.js';
import './limit-changes.js';
import './log-events.js';
import './viewer.js';
import './insight.js';
import './waiting-runs.js';

export const schema = lexicographicSortSchema(builder.toSchema());
