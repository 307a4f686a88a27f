/**
 * Ids in priority order: priority descending, then insertion order. Used for QUEUED runs
 * (admission order) and for claims waiting in a pool. Ids of one priority sit in an
 * insertion-ordered set, so adding and removing cost O(1) and a walk in order never sorts.
 */
export class PriorityQueue {
  private readonly buckets = new Map<number, Set<string>>();
  /** Priorities that have runs, highest first. */
  private priorities: number[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  has(id: string, priority: number): boolean {
    return this.buckets.get(priority)?.has(id) ?? false;
  }

  add(id: string, priority: number): void {
    let bucket = this.buckets.get(priority);
    if (!bucket) {
      bucket = new Set();
      this.buckets.set(priority, bucket);
      this.priorities = [...this.priorities, priority].sort((a, b) => b - a);
    }
    if (!bucket.has(id)) {
      bucket.add(id);
      this.count++;
    }
  }

  remove(id: string, priority: number): void {
    const bucket = this.buckets.get(priority);
    if (!bucket?.delete(id)) return;
    this.count--;
    if (bucket.size === 0) {
      this.buckets.delete(priority);
      this.priorities = this.priorities.filter((p) => p !== priority);
    }
  }

  [Symbol.iterator](): IterableIterator<string> {
    return this.inOrder();
  }

  *inOrder(): IterableIterator<string> {
    for (const priority of this.priorities) {
      const bucket = this.buckets.get(priority);
      if (bucket) yield* bucket;
    }
  }
}
