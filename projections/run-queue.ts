/**
 * QUEUED runs in admission order: priority descending, then enqueue order. Runs of one
 * priority sit in an insertion-ordered set, so enqueue and removal cost O(1) and a walk in
 * order never sorts.
 */
export class RunQueue {
  private readonly buckets = new Map<number, Set<string>>();
  /** Priorities that have runs, highest first. */
  private priorities: number[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  add(runId: string, priority: number): void {
    let bucket = this.buckets.get(priority);
    if (!bucket) {
      bucket = new Set();
      this.buckets.set(priority, bucket);
      this.priorities = [...this.priorities, priority].sort((a, b) => b - a);
    }
    if (!bucket.has(runId)) {
      bucket.add(runId);
      this.count++;
    }
  }

  remove(runId: string, priority: number): void {
    const bucket = this.buckets.get(priority);
    if (!bucket?.delete(runId)) return;
    this.count--;
    if (bucket.size === 0) {
      this.buckets.delete(priority);
      this.priorities = this.priorities.filter((p) => p !== priority);
    }
  }

  *inOrder(): IterableIterator<string> {
    for (const priority of this.priorities) {
      const bucket = this.buckets.get(priority);
      if (bucket) yield* bucket;
    }
  }
}
