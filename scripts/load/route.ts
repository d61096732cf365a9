import { createHash } from 'node:crypto';

/**
 * How a load balancer in front of several replicas picks one for a request:
 * - `round-robin`: each request goes to the next replica, as a Kubernetes Service does;
 * - `order`: a request about an existing order (`/orders/<id>…`) goes to the replica its order id
 *   hashes to, as an ingress that hashes on the order id in the path does (docs/scaling.md says
 *   how to configure one); requests without an order id (placing an order, views, menus) still go
 *   round-robin. Each order's commands then meet the replica that wrote its previous step, whose
 *   cache holds it.
 */
export const ROUTES = ['round-robin', 'order'] as const;
export type Route = (typeof ROUTES)[number];

const ORDER_PATH = /^\/orders\/([^/?#]+)/;

/** The order id a request path names, if any (`/orders/<id>`, `/orders/<id>/accept`, …). */
export function orderKey(path: string): string | undefined {
  return ORDER_PATH.exec(path)?.[1];
}

const weight = (name: string, key: string) => createHash('sha1').update(name).update('\0').update(key).digest().readUInt32BE(0);

/**
 * Rendezvous (highest random weight) hashing: the name among `names` that `key` goes to. The same
 * key always goes to the same name while it is there, and when a name is added or removed only
 * the keys that go to it move (about 1/n of them), as with an ingress's consistent hashing.
 */
export function rendezvous<T extends string>(key: string, names: readonly T[]): T | undefined {
  let best: T | undefined;
  let bestWeight = -1;
  for (const name of names) {
    const w = weight(name, key);
    if (w > bestWeight || (w === bestWeight && best !== undefined && name < best)) {
      best = name;
      bestWeight = w;
    }
  }
  return best;
}
