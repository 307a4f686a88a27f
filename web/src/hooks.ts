/** Preact hooks over the API and the live log. */
import { useEffect, useRef, useState } from 'preact/hooks';
import { GraphQLFailure, gql, NeedsToken, onSessionChange, session } from './api';
import { live, onLive } from './live';

/** Re-renders on every change of the live log; answers its version. */
export function useLiveVersion(): number {
  const [version, setVersion] = useState(live.version);
  useEffect(() => onLive(() => setVersion(live.version)), []);
  return version;
}

export function useSession(): typeof session {
  const [, setTick] = useState(0);
  useEffect(() => onSessionChange(() => setTick((t) => t + 1)), []);
  return session;
}

export interface QueryState<T> {
  data: T | null;
  error: string | null;
  loading: boolean;
}

/**
 * A query that follows the log: fetched at mount, when its variables change, and again when
 * the log moves (a burst of events fetches once; the newest answer wins).
 */
// biome-ignore lint/suspicious/noExplicitAny: each page types the data it selects
export function useLiveQuery<T = any>(
  query: string,
  variables: Record<string, unknown> = {},
  options: { live?: boolean; skip?: boolean } = {},
): QueryState<T> & { refetch: () => void } {
  const version = useLiveVersion();
  const [state, setState] = useState<QueryState<T>>({ data: null, error: null, loading: true });
  const [manual, setManual] = useState(0);
  const key = JSON.stringify(variables);
  const current = useRef({ key, asked: 0, applied: 0, mounted: true });
  const follows = options.live !== false;

  useEffect(
    () => () => {
      current.current.mounted = false;
    },
    [],
  );

  useEffect(() => {
    if (options.skip) return;
    const c = current.current;
    if (c.key !== key) {
      c.key = key;
      setState({ data: null, error: null, loading: true });
    }
    const seq = ++c.asked;
    // Answers may come back out of order under load: only a newer one for the same variables counts.
    const settle = (next: (s: QueryState<T>) => QueryState<T>) => {
      if (!c.mounted || c.key !== key || seq < c.applied) return;
      c.applied = seq;
      setState(next);
    };
    gql<T>(query, JSON.parse(key)).then(
      (data) => settle(() => ({ data, error: null, loading: false })),
      (error) => {
        const message =
          error instanceof NeedsToken || error instanceof GraphQLFailure
            ? error.message
            : 'The server cannot be reached; retrying.';
        settle((s) => ({ ...s, error: message, loading: false }));
      },
    );
  }, [query, key, follows ? version : 0, manual, options.skip]);

  return { ...state, refetch: () => setManual((m) => m + 1) };
}
