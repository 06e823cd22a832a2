/**
 * Group commit: calls that arrive while a batch is being applied wait and go together in the next
 * one, so a burst of events costs one transaction instead of one each. A lone call goes at once.
 */

/** Applies items together; resolves to one result per item, in order. */
export type ApplyBatch<I, O> = (items: I[]) => Promise<O[]>;

/** Returns a function that applies one item as part of the next batch; one batch runs at a time. */
export function groupCommit<I, O>(apply: ApplyBatch<I, O>, maxBatch = 64): (item: I) => Promise<O> {
  const waiting: { item: I; resolve: (o: O) => void; reject: (err: unknown) => void }[] = [];
  let running = false;

  async function drain(): Promise<void> {
    running = true;
    while (waiting.length > 0) {
      const batch = waiting.splice(0, maxBatch);
      try {
        const results = await apply(batch.map((w) => w.item));
        if (results.length !== batch.length) {
          throw new Error(`a batch of ${batch.length} gave ${results.length} results`);
        }
        batch.forEach((w, i) => w.resolve(results[i]!));
      } catch (err) {
        for (const w of batch) w.reject(err);
      }
    }
    running = false;
  }

  return (item) =>
    new Promise<O>((resolve, reject) => {
      waiting.push({ item, resolve, reject });
      if (!running) void drain();
    });
}

/** One item's outcome in a batch whose items may fail alone. */
type Outcome<O> = { ok: true; value: O } | { ok: false; error: unknown };

/** Options of groupCommitIsolated. */
export interface IsolatedOptions {
  /** Most items in one batch. */
  maxBatch?: number;
  /**
   * Whether a batch that failed with `err` surely left nothing behind, so its items may be applied
   * again one by one; when false every item of the batch fails with `err`. Always, unless told.
   */
  retryable?: (err: unknown) => boolean;
}

/**
 * groupCommit for batches whose items may fail alone: when `apply` fails a batch of several with a
 * retryable error, each of its items is applied again in a batch of its own (concurrently), so the
 * item at fault fails with its error and the others succeed. `apply` must leave nothing behind when
 * it fails (one transaction), or an item could be applied twice: an error after which that is not
 * sure (a connection lost during COMMIT) must not be `retryable`.
 */
export function groupCommitIsolated<I, O>(
  apply: ApplyBatch<I, O>,
  options: IsolatedOptions = {},
): (item: I) => Promise<O> {
  const retryable = options.retryable ?? (() => true);
  const settle = async (items: I[]): Promise<Outcome<O>[]> =>
    (await apply(items)).map((value) => ({ ok: true, value }));
  const one = async (item: I): Promise<Outcome<O>> => {
    try {
      const [outcome] = await settle([item]);
      return outcome!;
    } catch (error) {
      return { ok: false, error };
    }
  };
  const run = groupCommit(async (items: I[]): Promise<Outcome<O>[]> => {
    if (items.length === 1) return [await one(items[0]!)];
    try {
      return await settle(items);
    } catch (error) {
      if (!retryable(error)) return items.map(() => ({ ok: false, error }));
      return await Promise.all(items.map(one));
    }
  }, options.maxBatch);
  return async (item) => {
    const outcome = await run(item);
    if (!outcome.ok) throw outcome.error;
    return outcome.value;
  };
}
