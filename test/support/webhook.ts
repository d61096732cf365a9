import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

import type { NotificationMessage } from '../../src/notifications/transports.ts';

export type ReceivedNotification = NotificationMessage;

/** A real HTTP webhook receiver that can be "down" (answers 503 without taking the message). */
export async function startWebhookReceiver() {
  let down = false;
  /** Messages answered 2xx, in arrival order (a repeat would appear twice). */
  const accepted: ReceivedNotification[] = [];
  let refused = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (down) {
        refused += 1;
        res.writeHead(503).end();
        return;
      }
      accepted.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as ReceivedNotification);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    accepted,
    refused: () => refused,
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
