/**
 * What a wrapper knows about its run, live: its status (runStatusChanges: the status now,
 * then each change, so no admission or termination is missed across reconnects) and its
 * decisions (dequeueDecisions, resumed with `after` from the last position seen, so no
 * reason or slot grant is missed either).
 */
import type { Refused, SluiceApi } from './wrap-api.js';

export interface StatusChange {
  status: string;
  reason: string | null;
  position: string;
}

export interface RunDecision {
  position: string;
  kind: 'ADMITTED' | 'BLOCKED' | 'SLOT_GRANTED' | 'SLOT_PENDING';
  stepKey: string | null;
  pool: string | null;
  reasons: Array<{ message: string }>;
}

const STATUS = `subscription($runId: ID!) { runStatusChanges(runId: $runId) { status reason position } }`;
const DECISIONS = `subscription($runId: ID!, $after: String) {
  dequeueDecisions(runId: $runId, after: $after) { position kind stepKey pool reasons { message } }
}`;

export interface RunWatchHandlers {
  status: (change: StatusChange) => void;
  decision: (decision: RunDecision) => void;
  /** The server refused a subscription (unknown run, bad token): watching stops. */
  refused: (error: Refused) => void;
  /** The connection dropped; the watch reconnects on its own. */
  dropped: () => void;
}

export class RunWatch {
  private statusFollow: { close: () => void } | null = null;
  private decisionFollow: { close: () => void } | null = null;
  /** Decisions are followed from the log position the first status answer gave. */
  private lastPosition: string | null = null;
  private lastStatus: string | null = null;

  constructor(
    private readonly api: SluiceApi,
    readonly runId: string,
    private readonly handlers: RunWatchHandlers,
  ) {}

  start(): void {
    this.statusFollow = this.api.follow<{ runStatusChanges: StatusChange }>(STATUS, () => ({ runId: this.runId }), {
      next: ({ runStatusChanges: change }) => {
        if (this.lastPosition === null) {
          this.lastPosition = change.position;
          this.followDecisions();
        }
        // A reconnect answers the status it already had first: report changes only.
        if (change.status === this.lastStatus) return;
        this.lastStatus = change.status;
        this.handlers.status(change);
      },
      error: (error) => this.handlers.refused(error),
      dropped: () => this.handlers.dropped(),
    });
  }

  private followDecisions(): void {
    this.decisionFollow = this.api.follow<{ dequeueDecisions: RunDecision }>(
      DECISIONS,
      () => ({ runId: this.runId, after: this.lastPosition }),
      {
        next: ({ dequeueDecisions: decision }) => {
          this.lastPosition = decision.position;
          this.handlers.decision(decision);
        },
        error: (error) => this.handlers.refused(error),
      },
    );
  }

  close(): void {
    this.statusFollow?.close();
    this.decisionFollow?.close();
  }
}
