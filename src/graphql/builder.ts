/** The Pothos builder every GraphQL module adds its types to. */
import SchemaBuilder from '@pothos/core';
import ErrorsPlugin from '@pothos/plugin-errors';
import ValidationPlugin from '@pothos/plugin-validation';
import { GraphQLError } from 'graphql';
import type { Sluice } from '../app/sluice.js';
import type { Principal } from '../auth/roles.js';

export interface GraphQLContext {
  sluice: Sluice;
  /** Who is asking, recorded on every event a mutation appends: the token's name, maybe with whom it acts for. */
  actor: string;
  /** The token (or open mode's anonymous user) the request came with; its role decides what it may do. */
  principal: Principal;
}

export const builder = new SchemaBuilder<{
  Context: GraphQLContext;
  Scalars: { DateTime: { Input: string; Output: string }; JSON: { Input: unknown; Output: unknown } };
  DefaultFieldNullability: false;
}>({
  plugins: [ErrorsPlugin, ValidationPlugin],
  defaultFieldNullability: false,
  errors: { defaultTypes: [] },
  validation: {
    validationError: (result) => {
      const issue = result.issues[0];
      const path = issue?.path?.map((p) => (typeof p === 'object' ? String(p.key) : String(p))).join('.');
      return new GraphQLError(`${path ? `${path}: ` : ''}${issue?.message ?? 'invalid argument'}`, {
        extensions: { code: 'BAD_USER_INPUT' },
      });
    },
  },
});

builder.scalarType('DateTime', {
  description: 'ISO-8601 timestamp, UTC',
  serialize: (value) => value,
  parseValue: (value) => {
    if (typeof value !== 'string' || Number.isNaN(Date.parse(value))) {
      throw new GraphQLError('DateTime must be an ISO-8601 string', { extensions: { code: 'BAD_USER_INPUT' } });
    }
    return new Date(value).toISOString();
  },
});

export type BuilderTypes = typeof builder extends PothosSchemaTypes.SchemaBuilder<infer T> ? T : never;
