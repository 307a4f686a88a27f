/**
 * A bounded cost per request (issue 13): graphql-armor's limits on tokens, depth, aliases,
 * directives and structural cost, our per-field cost, and a parse cache bounded in bytes.
 */
import { costLimitPlugin } from '@escape.tech/graphql-armor-cost-limit';
import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { maxDirectivesPlugin } from '@escape.tech/graphql-armor-max-directives';
import { maxTokensPlugin } from '@escape.tech/graphql-armor-max-tokens';
import { type DocumentNode, GraphQLError, type Source } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { LRUCache } from 'lru-cache';
import type { RequestLimits } from '../auth/settings.js';
import { useFieldCost, useVariableChecks } from './guards.js';

/** The deepest nesting of brackets in a GraphQL document, strings and comments skipped. */
export function bracketDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x23 /* # */) {
      while (i < text.length && text.charCodeAt(i) !== 0x0a && text.charCodeAt(i) !== 0x0d) i++;
    } else if (c === 0x22 /* " */) {
      if (text.startsWith('"""', i)) {
        // A block string ends at the first triple quote that is not escaped (\""").
        let end = text.indexOf('"""', i + 3);
        while (end !== -1 && text.charCodeAt(end - 1) === 0x5c) end = text.indexOf('"""', end + 3);
        i = end === -1 ? text.length : end + 2;
      } else {
        for (i++; i < text.length && text.charCodeAt(i) !== 0x22 && text.charCodeAt(i) !== 0x0a; i++) {
          if (text.charCodeAt(i) === 0x5c /* \ */) i++;
        }
      }
    } else if (c === 0x7b || c === 0x28 || c === 0x5b /* { ( [ */) {
      depth++;
      if (depth > deepest) deepest = depth;
    } else if (c === 0x7d || c === 0x29 || c === 0x5d /* } ) ] */) {
      depth--;
    }
  }
  return deepest;
}

/**
 * graphql-js parses recursively: a few thousand nested brackets overflow the stack before any
 * limit sees the document. Nesting beyond what any valid operation needs is refused first.
 */
export function useNestingLimit(maxNesting: number): Plugin {
  return {
    onParse({ parseFn, setParseFn }) {
      setParseFn((source: string | Source, options) => {
        const text = typeof source === 'string' ? source : source.body;
        const depth = bracketDepth(text);
        if (depth > maxNesting) {
          throw new GraphQLError(
            `Syntax Error: brackets nested ${depth} deep, over the limit of ${maxNesting} (4 x GRAPHQL_MAX_DEPTH)`,
            { extensions: { code: 'GRAPHQL_PARSE_FAILED' } },
          );
        }
        return parseFn(source, options);
      });
    },
  };
}

/** The limits of one operation; each refuses with HTTP 400 and a message naming it. */
export function requestLimitPlugins(limits: RequestLimits): Plugin[] {
  return [
    // Parsing stops at the limit, so a 4 MB document costs no more than a small one.
    maxTokensPlugin({ n: limits.maxTokens }),
    // After maxTokensPlugin, which replaces the parser: this one wraps whatever parser is set.
    useNestingLimit(Math.max(32, 4 * limits.maxDepth)),
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
