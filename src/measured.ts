/**
 * A measure taken at most once per `maxAgeMs`: callers within that time get the last result, and
 * callers while it is being taken wait for that one measure instead of starting their own. A
 * failed measure is not kept (the next caller tries again). For what public or frequent requests
 * read from PostgreSQL or Redis (readiness, scrape-time gauges): however many ask, the
 * dependencies see at most one measure a second per replica.
 */
export function measuredAtMostEvery<T>(maxAgeMs: number, measure: () => Promise<T>, now: () => number = Date.now): () => Promise<T> {
  let last: { at: number; value: T } | undefined;
  let taking: Promise<T> | undefined;
  return () => {
    if (last && now() - last.at < maxAgeMs) return Promise.resolve(last.value);
    taking ??= measure()
      .then((value) => {
        last = { at: now(), value };
        return value;
      })
      .finally(() => {
        taking = undefined;
      });
    return taking;
  };
}
