import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

import { SIGNATURE_HEADER, verify, type Secrets, type VerifyResult } from '../../src/notifications/signature.ts';
import type { NotificationMessage } from '../../src/notifications/transports.ts';
import { WEBHOOK_SECRET } from './system.ts';

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
  /** The bytes of the body as they arrived, and when. */
  raw: Buffer;
  at: Date;
  /** Its `Baedal-Signature` header. */
  signature: string | undefined;
  /** The receiver's check of that signature (undefined when it checks none). */
  verification: VerifyResult | undefined;
  /** Its W3C `traceparent` header, sent when the service traces. */
  traceparent: string | undefined;
}

/**
 * A real HTTP webhook receiver that can be "down" (answers 503 without taking the message) and
 * can hold each answer for a while (to see how many requests the service has in flight at once).
 * It takes one message per POST or, as a batch receiver does, a JSON array of them.
 *
 * It verifies the `Baedal-Signature` of every request, as a production receiver does, with the
 * secret the tests' systems sign with (`secrets`: others; null: it checks nothing), and answers
 * 401 without taking the message when the signature does not verify.
 */
export async function startWebhookReceiver(opts: { holdMs?: number; secrets?: Secrets | null } = {}) {
  let down = false;
  let secrets = opts.secrets === undefined ? WEBHOOK_SECRET : opts.secrets;
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
      const raw = Buffer.concat(chunks);
      const at = new Date();
      const signature = req.headers[SIGNATURE_HEADER.toLowerCase()] as string | undefined;
      // Checked on arrival, against the bytes as they came: the answer may be held a while.
      const verification = secrets === null ? undefined : verify(signature, raw, secrets, { now: at });
      const answer = () => {
        inFlight -= 1;
        const body = JSON.parse(raw.toString('utf8')) as ReceivedNotification | ReceivedNotification[];
        const status = verification?.ok === false ? 401 : down ? 503 : 204;
        requests.push({
          idempotencyKey: req.headers['idempotency-key'] as string | undefined,
          contentType: req.headers['content-type'],
          body,
          socket: socketIds.get(req.socket)!,
          answered: status,
          raw,
          at,
          signature,
          verification,
          traceparent: req.headers.traceparent as string | undefined,
        });
        if (status === 204) accepted.push(...(Array.isArray(body) ? body : [body]));
        else refused += 1;
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
    /** The secrets it verifies with from now on (null: it checks nothing). */
    setSecrets(value: Secrets | null) {
      secrets = value;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
