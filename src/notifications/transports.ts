import type { Logger } from '../log.ts';

/** The message a transport carries, as the webhook's JSON body. */
export interface NotificationMessage {
  notificationId: string;
  eventId: string;
  orderId: string;
  status: string;
  to: { role: string; id: string };
  text: string;
}

/** Delivers one message or throws; the caller retries with the same notificationId. */
export interface NotificationTransport {
  name: 'webhook' | 'log';
  send(message: NotificationMessage): Promise<void>;
}

/**
 * POSTs each message as JSON to a webhook (the exercise's KakaoTalk). Any 2xx is a delivery;
 * anything else, a timeout or a refused connection is a failure to retry. The notificationId
 * is also sent as `Idempotency-Key`, so a receiver can drop a repeat.
 */
export function webhookTransport(url: string, timeoutMs: number): NotificationTransport {
  return {
    name: 'webhook',
    async send(message) {
      let res: Response;
      try {
        res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': message.notificationId },
          body: JSON.stringify(message),
          signal: AbortSignal.timeout(timeoutMs),
        });
        await res.arrayBuffer();
      } catch (err) {
        const cause = (err as { cause?: { code?: unknown } }).cause?.code;
        throw new Error(`webhook unreachable${typeof cause === 'string' ? ` (${cause})` : `: ${(err as Error).message}`}`);
      }
      if (!res.ok) throw new Error(`webhook answered ${res.status}`);
    },
  };
}

/** Writes each message to the log: the transport when no webhook is configured. */
export function logTransport(log: Logger): NotificationTransport {
  return {
    name: 'log',
    async send(message) {
      log.info({ notification: message }, `notify ${message.to.role} ${message.to.id}: ${message.text}`);
    },
  };
}
