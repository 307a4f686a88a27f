/**
 * Acting on a run from its page, by role: terminate (safe; forced only after a confirmation) and
 * free its slots or one step's. Each button sends the same mutation the CLI sends, with this
 * tab's token, so the log records the token's name. A viewer sees no buttons; an action the
 * server refuses shows the server's reason.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { gql } from '../api';
import { Note } from '../components';

const RESULT = '__typename ... on Error { message }';
const TERMINATE = `mutation($id: ID!, $force: Boolean) { terminateRun(runId: $id, force: $force) { ${RESULT} } }`;
const FREE = `mutation($id: ID!, $step: String) { freeStepSlots(runId: $id, stepKey: $step) { ${RESULT} } }`;

const FINISHED = new Set(['SUCCESS', 'FAILURE', 'CANCELED']);

export function RunActions(props: {
  run: { id: string; status: string; stepClaims: { stepKey: string; granted: boolean; released: boolean }[] };
  role: string | null;
  onDone: () => void;
}) {
  const [confirmForce, setConfirmForce] = useState(false);
  const [message, setMessage] = useState<{ kind: 'error' | 'info'; text: string } | null>(null);
  const [busy, setBusy] = useState(false);
  if (props.role !== 'WORKER' && props.role !== 'ADMIN') return null;
  const { run } = props;
  const held = run.stepClaims.filter((c) => c.granted && !c.released);
  const act = async (label: string, query: string, variables: Record<string, unknown>) => {
    setBusy(true);
    setMessage(null);
    try {
      const data = await gql<Record<string, { __typename: string; message?: string }>>(query, variables);
      const result = Object.values(data)[0];
      if (result?.__typename.endsWith('Error'))
        setMessage({ kind: 'error', text: result.message ?? result.__typename });
      else setMessage({ kind: 'info', text: `${label}: done` });
      props.onDone();
    } catch (error) {
      setMessage({ kind: 'error', text: (error as Error).message });
    } finally {
      setBusy(false);
      setConfirmForce(false);
    }
  };
  // The button asking for confirmation is gone once clicked: the focus moves to the safe answer,
  // so that a keyboard user is not sent back to the top of the page.
  const safeChoice = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (confirmForce) safeChoice.current?.focus();
  }, [confirmForce]);
  return (
    <div class="run-actions" data-testid="run-actions">
      {FINISHED.has(run.status) ? null : (
        <>
          <button
            type="button"
            disabled={busy}
            onClick={() => act('terminate', TERMINATE, { id: run.id, force: false })}
          >
            Terminate
          </button>
          {confirmForce ? (
            <fieldset class="confirm">
              <legend class="sr-only">confirm forced termination</legend>
              Cancel at once, freeing its capacity without waiting for the worker?{' '}
              <button
                type="button"
                disabled={busy}
                onClick={() => act('force terminate', TERMINATE, { id: run.id, force: true })}
              >
                Yes, force it
              </button>{' '}
              <button type="button" class="secondary" ref={safeChoice} onClick={() => setConfirmForce(false)}>
                No
              </button>
            </fieldset>
          ) : (
            <button type="button" class="secondary" disabled={busy} onClick={() => setConfirmForce(true)}>
              Force terminate…
            </button>
          )}
        </>
      )}
      {held.length > 0 ? (
        <>
          <button
            type="button"
            class="secondary"
            disabled={busy}
            onClick={() => act('free slots', FREE, { id: run.id, step: null })}
          >
            Free the run's slots
          </button>
          {held.map((c) => (
            <button
              key={c.stepKey}
              type="button"
              class="secondary"
              disabled={busy}
              onClick={() => act(`free ${c.stepKey}`, FREE, { id: run.id, step: c.stepKey })}
            >
              Free step {c.stepKey}'s slot
            </button>
          ))}
        </>
      ) : null}
      {message ? (
        <Note kind={message.kind}>
          <span role={message.kind === 'error' ? 'alert' : 'status'}>{message.text}</span>
        </Note>
      ) : null}
    </div>
  );
}
