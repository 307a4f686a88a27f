/** The frame: header with navigation, connection and role; the token prompt; the routes. */
import { useEffect, useState } from 'preact/hooks';
import { setToken } from './api';
import { Note } from './components';
import { useLiveQuery, useLiveVersion, useSession } from './hooks';
import { live, startLive } from './live';
import { Audit } from './pages/audit';
import { Insights } from './pages/insights';
import { Limits } from './pages/limits';
import { Overview } from './pages/overview';
import { Queue } from './pages/queue';
import { RunPage } from './pages/run';
import { TimeTravel } from './pages/time-travel';
import { Link, navigate, usePath } from './router';

const PAGES = [
  { href: '/', label: 'Overview' },
  { href: '/queue', label: 'Queue' },
  { href: '/limits', label: 'Limits' },
  { href: '/time-travel', label: 'Time travel' },
  { href: '/insights', label: 'Insights' },
  { href: '/audit', label: 'Audit' },
];

function TokenPrompt() {
  const [token, setDraft] = useState('');
  return (
    <div class="modal-back">
      <form
        class="modal"
        onSubmit={(e) => {
          e.preventDefault();
          if (token.trim()) setToken(token.trim());
        }}
      >
        <h2>This Sluice asks for a token</h2>
        <p class="muted">
          Paste the bearer token you were given. It is kept for this browser tab only (sessionStorage) and sent with
          every request and subscription.
        </p>
        <input
          type="password"
          autocomplete="off"
          placeholder="token"
          value={token}
          onInput={(e) => setDraft(e.currentTarget.value)}
          data-testid="token-input"
        />
        <button type="submit" disabled={!token.trim()}>
          Use this token
        </button>
      </form>
    </div>
  );
}

function RunSearch() {
  const [id, setId] = useState('');
  return (
    <form
      class="run-search"
      onSubmit={(e) => {
        e.preventDefault();
        if (id.trim()) navigate(`/runs/${encodeURIComponent(id.trim())}`);
      }}
    >
      <input placeholder="run id" value={id} onInput={(e) => setId(e.currentTarget.value)} aria-label="go to run" />
    </form>
  );
}

export function App() {
  const path = usePath();
  const session = useSession();
  const version = useLiveVersion();
  const viewer = useLiveQuery<{ viewer: { name: string; role: string } }>(
    '{ viewer { name role } }',
    {},
    { live: false },
  );
  // A new token may mean another role, and lets a page that was refused start following the log.
  useEffect(() => {
    viewer.refetch();
    void startLive();
  }, [session.token]);

  const role = viewer.data?.viewer.role ?? null;
  const canEdit = role === 'ADMIN';
  const runMatch = /^\/runs\/(.+)$/.exec(path);
  let page = <Note kind="error">No page at {path}.</Note>;
  if (path === '/') page = <Overview version={version} />;
  else if (path === '/queue') page = <Queue />;
  else if (path === '/limits') page = <Limits canEdit={canEdit} role={role} />;
  else if (path === '/time-travel') page = <TimeTravel />;
  else if (path === '/insights') page = <Insights />;
  else if (path === '/audit') page = <Audit />;
  else if (runMatch?.[1]) page = <RunPage id={decodeURIComponent(runMatch[1])} role={role} />;

  const state = session.connected ? 'live' : session.everConnected ? 'reconnecting…' : 'connecting…';
  return (
    <>
      <header class="top">
        <Link href="/" class="brand">
          <img src="/favicon.svg" alt="" width={22} height={22} /> Sluice
        </Link>
        <nav aria-label="pages">
          {PAGES.map((p) => (
            <Link key={p.href} href={p.href} class={path === p.href ? 'active' : ''} current={path === p.href}>
              {p.label}
            </Link>
          ))}
        </nav>
        <RunSearch />
        <span class="spacer" />
        <span class={`conn ${session.connected ? 'on' : 'off'}`} data-testid="connection" title={live.error ?? ''}>
          {state}
        </span>
        {viewer.data ? (
          <span class="who" data-testid="viewer">
            {viewer.data.viewer.name} · {viewer.data.viewer.role.toLowerCase()}
          </span>
        ) : null}
        {session.token ? (
          <button type="button" class="link" onClick={() => setToken(null)}>
            forget token
          </button>
        ) : null}
      </header>
      <main>{page}</main>
      {session.needsToken ? <TokenPrompt /> : null}
    </>
  );
}
