/**
 * GraphiQL from the locally installed @graphql-yoga/graphiql bundle instead of Yoga's default
 * page, which loads it from a CDN and shows only "Loading..." on a machine without internet.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { GraphiQLOptions } from 'graphql-yoga';

/** Where the GraphiQL page loads its script, styles and editor workers from. */
export const GRAPHIQL_ASSETS_PREFIX = '/graphiql/';

/** The first query GraphiQL shows: the one docs/dashboard.md shows. */
export const GRAPHIQL_DEFAULT_QUERY = `# Sluice: the limits, the queue in admission order with what
# holds each run, and the pools. Ctrl-Enter runs it; Docs lists the rest.
{
  concurrencyConfig {
    maxConcurrentRuns
    tagConcurrencyLimits { key value applyLimitPerUniqueValue limit }
  }
  queue { id jobName priority blockedBy { message } }
  pools { name limit inUse pending }
}
`;

/** The folder of the installed bundle (graphiql.css, yoga-graphiql.umd.js, monacoeditorwork/). */
export function graphiqlAssetsDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('@graphql-yoga/graphiql/package.json')), 'dist');
}

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The page for Yoga's `renderGraphiQL` option; every URL in it is on this server. */
export function renderOfflineGraphiQL(options?: GraphiQLOptions): string {
  const title = options?.title ?? 'Sluice';
  const prefix = GRAPHIQL_ASSETS_PREFIX;
  const workers = {
    editorWorkerService: `${prefix}monacoeditorwork/editor.worker.bundle.js`,
    json: `${prefix}monacoeditorwork/json.worker.bundle.js`,
    graphql: `${prefix}monacoeditorwork/graphql.worker..bundle.js`,
  };
  // JSON inside a script: escape '<' so no string in it can close the element.
  const json = (value: unknown) => JSON.stringify(value).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(title)}</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="${prefix}graphiql.css">
</head>
<body id="body" class="no-focus-outline">
<div id="root">Loading ${escapeHtml(title)}...</div>
<script>
const workers = ${json(workers)};
self.MonacoEnvironment = { globalAPI: false, getWorkerUrl: (_moduleId, label) => workers[label] ?? workers.editorWorkerService };
</script>
<script src="${prefix}yoga-graphiql.umd.js"></script>
<script>YogaGraphiQL.renderYogaGraphiQL(document.getElementById('root'), ${json(options ?? {})});</script>
</body>
</html>
`;
}
