/**
 * A map read through a few edits laid over another map, without copying it. The decider uses it
 * for the pool limits a limit edit would leave: a deployment can have many thousands of pools,
 * and a command that edits one limit should cost one entry, not a copy of every pool's limit.
 *
 * The base is read, never written, and must not change while the overlay is in use (the decider
 * reads it within one command, before any of the command's events is folded in). Iteration
 * follows a Map's order: the base's keys where they stand, then keys the edits added.
 */
const DELETED: unique symbol = Symbol('deleted');

export class MapOverlay<K, V> implements ReadonlyMap<K, V> {
  private readonly edits = new Map<K, V | typeof DELETED>();
  private count: number;

  constructor(private readonly base: ReadonlyMap<K, V>) {
    this.count = base.size;
  }

  get size(): number {
    return this.count;
  }

  get(key: K): V | undefined {
    if (!this.edits.has(key)) return this.base.get(key);
    const value = this.edits.get(key);
    return value === DELETED ? undefined : value;
  }

  has(key: K): boolean {
    if (!this.edits.has(key)) return this.base.has(key);
    return this.edits.get(key) !== DELETED;
  }

  set(key: K, value: V): this {
    if (!this.has(key)) this.count++;
    this.edits.set(key, value);
    return this;
  }

  delete(key: K): boolean {
    if (!this.has(key)) return false;
    this.count--;
    // A key only the edits added needs no mark: the base does not have it.
    if (this.base.has(key)) this.edits.set(key, DELETED);
    else this.edits.delete(key);
    return true;
  }

  *entries(): MapIterator<[K, V]> {
    for (const [key, value] of this.base) {
      if (!this.edits.has(key)) yield [key, value];
      else {
        const edited = this.edits.get(key) as V | typeof DELETED;
        if (edited !== DELETED) yield [key, edited];
      }
    }
    for (const [key, value] of this.edits) {
      if (value !== DELETED && !this.base.has(key)) yield [key, value];
    }
  }

  *keys(): MapIterator<K> {
    for (const [key] of this.entries()) yield key;
  }

  *values(): MapIterator<V> {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries();
  }

  forEach(callback: (value: V, key: K, map: ReadonlyMap<K, V>) => void, thisArg?: unknown): void {
    for (const [key, value] of this.entries()) callback.call(thisArg, value, key, this);
  }
}
