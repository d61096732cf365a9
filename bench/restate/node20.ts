// Restate's TypeScript SDK (1.17) calls Promise.withResolvers, which Node 22 has and Node 20's V8
// lacks. The benchmark runs on Node 20, so this module, imported before the SDK, supplies it as the
// standard defines it (a new promise of the receiver's constructor with its resolve and reject).
const promise = Promise as unknown as { withResolvers?: unknown };
if (typeof promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    enumerable: false,
    value: function withResolvers<T>(this: PromiseConstructor) {
      let resolve!: (value: T | PromiseLike<T>) => void;
      let reject!: (reason?: unknown) => void;
      const created = new this<T>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise: created, resolve, reject };
    },
  });
}
