/**
 * The live state keeps the last RECENTLY_FINISHED runs to finish, oldest first, however many
 * finish: eviction reads on through the map's keys rather than asking for the first key anew.
 */
import { describe, expect, it } from 'vitest';
import { RECENTLY_FINISHED } from '../../projections/state.js';
import { cmd, replay, Scenario } from '../support/scenario.js';

describe('recently finished runs', () => {
  it('are the last ones to finish, oldest first, in the live state and in a replay of its log', () => {
    const s = new Scenario({ check: 'off' }).given(cmd.maxRuns(5));
    const finished: string[] = [];
    // Runs finish out of their enqueue order: five in progress, the second oldest finishes first.
    const total = 2 * RECENTLY_FINISHED + 37;
    const inProgress: string[] = [];
    for (let i = 0; i < total; i++) {
      const id = `r${i}`;
      s.given(cmd.enqueue(id));
      inProgress.push(id);
      if (inProgress.length === 5) {
        const [done] = inProgress.splice(1, 1) as [string];
        s.given(cmd.finish(done));
        finished.push(done);
      }
      if (i % 97 === 0) s.advance(1);
    }
    const expected = finished.slice(-RECENTLY_FINISHED);
    expect([...s.state.recentlyFinished.keys()]).toEqual(expected);
    expect([...replay(s.log).recentlyFinished.keys()]).toEqual(expected);
  });
});
