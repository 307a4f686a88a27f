/**
 * A push-to-pull bridge: producers push values synchronously, one consumer pulls them with
 * `for await`. Bounded, so a client that stops reading cannot make the server hold an
 * unbounded backlog: past the bound the stream ends with an error the client sees.
 */
export class AsyncQueue<T> implements AsyncIterableIterator<T> {
  private readonly buffer: T[] = [];
  private waiting: ((result: IteratorResult<T>) => void) | null = null;
  private failWaiting: ((error: Error) => void) | null = null;
  private done = false;
  private error: Error | null = null;

  constructor(
    private readonly capacity: number,
    private readonly onClose: () => void,
  ) {}

  push(value: T): void {
    if (this.done) return;
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = this.failWaiting = null;
      resolve({ value, done: false });
      return;
    }
    if (this.buffer.length >= this.capacity) {
      this.fail(new Error(`subscriber fell more than ${this.capacity} items behind; resubscribe with after`));
      return;
    }
    this.buffer.push(value);
  }

  fail(error: Error): void {
    if (this.done) return;
    this.error = error;
    this.finish();
    if (this.failWaiting) {
      const reject = this.failWaiting;
      this.waiting = this.failWaiting = null;
      reject(error);
    }
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.onClose();
  }

  next(): Promise<IteratorResult<T>> {
    const value = this.buffer.shift();
    if (value !== undefined) return Promise.resolve({ value, done: false });
    if (this.error) {
      const error = this.error;
      this.error = null;
      return Promise.reject(error);
    }
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.waiting = resolve;
      this.failWaiting = reject;
    });
  }

  return(): Promise<IteratorResult<T>> {
    this.buffer.length = 0;
    this.finish();
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = this.failWaiting = null;
      resolve({ value: undefined, done: true });
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}
