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
