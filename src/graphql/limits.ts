/**
 * A bounded cost per request (issue 13): graphql-armor's limits on tokens, depth, aliases,
 * directives and structural cost, our per-field cost, and a parse cache bounded in bytes.
 */
import { costLimitPlugin } from '@escape.tech/graphql-armor-cost-limit';
import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { maxDirectivesPlugin } from '@escape.tech/graphql-armor-max-directives';
import { maxTokensPlugin } from '@escape.tech/graphql-armor-max-tokens';
import type { DocumentNode } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { LRUCache } from 'lru-cache';
import type { RequestLimits } from '../auth/settings.js';
import { useFieldCost, useVariableChecks } from './guards.js';

/** The limits of one operation; each refuses with HTTP 400 and a message naming it. */
export function requestLimitPlugins(limits: RequestLimits): Plugin[] {
  return [
    // Parsing stops at the limit, so a 4 MB document costs no more than a small one.
    maxTokensPlugin({ n: limits.maxTokens }),
    maxDepthPlugin({ n: limits.maxDepth, flattenFragments: true }),
    // __typename too: graphql-armor's default allow-list lets 1,000 of them through.
    maxAliasesPlugin({ n: limits.maxAliases, allowList: [] }),
    maxDirectivesPlugin({ n: limits.maxDirectives }),
    costLimitPlugin({ maxCost: limits.maxCost }),
    useFieldCost(limits.maxFieldCost),
    useVariableChecks(limits.maxListLength),
  ] as Plugin[];
}

/**
 * Yoga's parser and validation cache, bounded by the bytes of the documents it keeps: a parsed
 * document costs tens of times its text, and Yoga's default keeps 1,024 of any size for an hour.
 * Larger documents are never kept; validation results are kept per kept document only.
 */
export function boundedParseCache(limits: RequestLimits) {
  const options = {
    maxSize: limits.parseCacheBytes,
    maxEntrySize: limits.parseCacheMaxDocumentBytes,
    sizeCalculation: (_value: unknown, key: string) => Math.max(1, key.length),
    ttl: 3_600_000,
  };
  return {
    documentCache: new LRUCache<string, DocumentNode>(options),
    errorCache: new LRUCache<string, object>(options),
  };
}
