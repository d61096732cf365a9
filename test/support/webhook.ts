import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

import type { NotificationMessage } from '../../src/notifications/transports.ts';

export type ReceivedNotification = NotificationMessage;

/** One POST as the receiver saw it. */
export interface ReceivedRequest {
  idempotencyKey: string | undefined;
  contentType: string | undefined;
  /** The parsed body: one message, or an array of them (NOTIFY_BATCH=1). */
  body: ReceivedNotification | ReceivedNotification[];
  /** Which connection it came on (1, 2, … in the order they were opened). */
  socket: number;
  answered: number;
}

/**
 * A real HTTP webhook receiver that can be "down" (answers 503 without taking the message) and
 * can hold each answer for a while (to see how many requests the service has in flight at once).
 * It takes one message per POST or, as a batch receiver does, a JSON array of them.
 */
export async function startWebhookReceiver(opts: { holdMs?: number } = {}) {
  let down = false;
  /** Messages answered 2xx, in arrival order (a repeat would appear twice). */
  const accepted: ReceivedNotification[] = [];
  /** Every POST, answered 2xx or not. */
  const requests: ReceivedRequest[] = [];
  let refused = 0;
  let sockets = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const socketIds = new WeakMap<object, number>();
  const server = createServer((req, res) => {
    inFlight += 1;
    maxInFlight = Math.max(maxInFlight, inFlight);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const answer = () => {
        inFlight -= 1;
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ReceivedNotification | ReceivedNotification[];
        const status = down ? 503 : 204;
        requests.push({
          idempotencyKey: req.headers['idempotency-key'] as string | undefined,
          contentType: req.headers['content-type'],
          body,
          socket: socketIds.get(req.socket)!,
          answered: status,
        });
        if (down) refused += 1;
        else accepted.push(...(Array.isArray(body) ? body : [body]));
        res.writeHead(status).end();
      };
      if (opts.holdMs) setTimeout(answer, opts.holdMs);
      else answer();
    });
  });
  server.on('connection', (socket) => socketIds.set(socket, ++sockets));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    accepted,
    requests,
    refused: () => refused,
    /** Connections the service opened so far. */
    sockets: () => sockets,
    /** The most requests that were waiting for their answer at once. */
    maxInFlight: () => maxInFlight,
    setDown(value: boolean) {
      down = value;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
