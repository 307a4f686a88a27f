/**
 * The documentation's GraphQL examples as data: every request of every ```graphql block, with the
 * answer the page shows after it (`# → {json}`, continued on `#   ` lines), grouped by the
 * section (## heading) it belongs to. Subscriptions are listed but have no answer.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse } from 'graphql';

/** The pages whose GraphQL examples form the walk-through, in the order a reader follows them. */
export const WALKTHROUGH_PAGES = ['docs/api.md', 'docs/dashboard.md'] as const;

export interface WalkthroughPage {
  path: string;
  text: string;
}

/** The walk-through pages as they are in this checkout. */
export function walkthroughPages(): WalkthroughPage[] {
  const root = resolve(import.meta.dirname, '../..');
  return WALKTHROUGH_PAGES.map((path) => ({ path, text: readFileSync(resolve(root, path), 'utf8') }));
}

export interface ReadmeRequest {
  section: string;
  /** 1-based line of the page where the request starts. */
  line: number;
  query: string;
  /** The `data` the page shows; null for a subscription. */
  answer: unknown;
  /** The answer's text as written, for placeholders and messages. */
  answerText: string | null;
  /** Where the answer's text starts and ends in the page (character offsets). */
  answerRange: [number, number] | null;
}

export function readmeRequests(text: string): ReadmeRequest[] {
  const lines = text.split('\n');
  const offsets: number[] = [];
  let offset = 0;
  for (const line of lines) {
    offsets.push(offset);
    offset += line.length + 1;
  }
  const requests: ReadmeRequest[] = [];
  let section = '';
  let inBlock = false;
  let pending: string[] = [];
  let pendingLine = 0;

  const flush = (answer: { text: string; range: [number, number] } | null, where: number) => {
    const query = pending.join('\n').trim();
    pending = [];
    if (query === '') {
      if (answer) throw new Error(`line ${where}: an answer with no request before it`);
      return;
    }
    const document = parse(query);
    if (document.definitions.length !== 1) {
      throw new Error(`line ${pendingLine}: one request per answer, found ${document.definitions.length}`);
    }
    const definition = document.definitions[0];
    const isSubscription = definition?.kind === 'OperationDefinition' && definition.operation === 'subscription';
    if (!answer && !isSubscription) throw new Error(`line ${pendingLine}: a request without its answer (# →)`);
    let parsed: unknown = null;
    if (answer && answer.text !== 'ANSWER') {
      try {
        parsed = JSON.parse(answer.text);
      } catch (error) {
        throw new Error(`line ${where}: the answer is not JSON: ${(error as Error).message}`);
      }
    }
    requests.push({
      section,
      line: pendingLine,
      query,
      answer: parsed,
      answerText: answer?.text ?? null,
      answerRange: answer?.range ?? null,
    });
  };

  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    if (!inBlock) {
      if (line.startsWith('## ')) section = line.slice(3).trim();
      if (line.trim() === '```graphql') inBlock = true;
      continue;
    }
    if (line.trim() === '```') {
      flush(null, i + 1);
      inBlock = false;
      continue;
    }
    if (line.startsWith('# →')) {
      const parts = [line.slice('# →'.length).trim()];
      const start = (offsets[i] as number) + line.indexOf('→') + 2;
      let j = i;
      while (lines[j + 1]?.startsWith('#   ')) {
        j++;
        parts.push((lines[j] as string).slice(1));
      }
      const end = (offsets[j] as number) + (lines[j] as string).length;
      flush({ text: parts.join('\n').trim(), range: [start, end] }, i + 1);
      i = j;
      continue;
    }
    if (line.startsWith('#')) continue;
    if (pending.length === 0 && line.trim() === '') continue;
    if (pending.length === 0) pendingLine = i + 1;
    pending.push(line);
  }
  return requests;
}

const oneLine = (value: unknown): string =>
  Array.isArray(value)
    ? `[${value.map(oneLine).join(', ')}]`
    : typeof value === 'object' && value !== null
      ? `{${Object.entries(value)
          .map(([k, v]) => `${JSON.stringify(k)}: ${oneLine(v)}`)
          .join(', ')}}`
      : JSON.stringify(value);

/** A value on one line when it fits the width, else one entry a line, nested the same way. */
function compact(value: unknown, indent: string, width: number): string {
  const flat = oneLine(value);
  if (indent.length + flat.length <= width || typeof value !== 'object' || value === null) return flat;
  const inner = `${indent}  `;
  const entries = Array.isArray(value)
    ? value.map((v) => `${inner}${compact(v, inner, width)}`)
    : Object.entries(value).map(([k, v]) => `${inner}${JSON.stringify(k)}: ${compact(v, inner, width)}`);
  const [open, close] = Array.isArray(value) ? ['[', ']'] : ['{', '}'];
  return `${open}\n${entries.join(',\n')}\n${indent}${close}`;
}

/** An answer as the README writes it: JSON on one line if it fits, else continued on `#   ` lines. */
export function formatAnswer(data: unknown): string {
  return compact(data, '', 100)
    .split('\n')
    .map((l, i) => (i === 0 ? l : `#   ${l}`))
    .join('\n');
}
