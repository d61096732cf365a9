import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import { runClaimed, type WorkKind, type WorkPrompt } from '../actors/work.ts';
import type { NotificationRow } from './delivery.work.ts';
import { logTransport, webhookTransport, type NotificationTransport, type WebhookOptions } from './transports.ts';

export type NotificationTransportConfig = Pick<
  Config,
  'NOTIFY_WEBHOOK_URL' | 'NOTIFY_WEBHOOK_SECRET' | 'NOTIFY_TIMEOUT_MS' | 'NOTIFY_CONCURRENCY' | 'NOTIFY_BATCH' | 'NOTIFY_BATCH_MAX'
>;

/**
 * The transport notifications go out by: `transport` when given, else webhooks when
 * NOTIFY_WEBHOOK_URL is set, else the log. `own` is the webhook transport made here (the runtime
 * closes it).
 */
export function notificationTransport(
  config: NotificationTransportConfig,
  log: Logger,
  { transport, onRequest }: { transport?: NotificationTransport; onRequest: WebhookOptions['onRequest'] },
): { notify: NotificationTransport; own: NotificationTransport | undefined } {
  if (transport === undefined && config.NOTIFY_WEBHOOK_URL && !config.NOTIFY_WEBHOOK_SECRET) {
    log.warn('NOTIFY_WEBHOOK_URL is set without NOTIFY_WEBHOOK_SECRET: webhook requests go unsigned, and a receiver cannot tell them from forged ones. Set NOTIFY_WEBHOOK_SECRET in production');
  }
  const ownTransport =
    transport === undefined && config.NOTIFY_WEBHOOK_URL
      ? webhookTransport(config.NOTIFY_WEBHOOK_URL, {
          timeoutMs: config.NOTIFY_TIMEOUT_MS,
          concurrency: config.NOTIFY_CONCURRENCY,
          batchMax: config.NOTIFY_BATCH ? config.NOTIFY_BATCH_MAX : undefined,
          secrets: config.NOTIFY_WEBHOOK_SECRET,
          onRequest,
        })
      : undefined;
  const notify = transport ?? ownTransport ?? logTransport(log.child({ part: 'notify' }));
  return { notify, own: ownTransport };
}

/** Sends new notification rows right after their commit (the notifier consumer's `deliver`). */
export function sendAfterCommit(
  notifications: WorkKind<NotificationRow>,
  { prompt, log, maxSending }: { prompt: WorkPrompt; log: Logger; maxSending: number },
): (rows: NotificationRow[]) => void {
  const workLog = log.child({ part: 'work' });
  let sending = 0;
  // Notifications are sent by the replica that created them, right after the commit; a lost
  // send (crash, too many waiting) is only delayed: the rows stay owed and the sweeper has them.
  // While the most sends run at once, new rows wait here (bounded) and go with the next free send,
  // many per run: at the top rate, leaving them to the sweeper's overdue pass let them fall behind.
  const unsent: NotificationRow[] = [];
  const WAITING_MAX = 20_000;
  const SEND_BATCH = 500;
  const send = (rows: NotificationRow[]) => {
    sending += 1;
    void runClaimed(notifications, rows, { prompt, log: workLog })
      .catch((err: Error) => workLog.warn({ err: err.message }, 'notifications not sent now; they stay owed'))
      .finally(() => {
        sending -= 1;
        if (unsent.length > 0) send(unsent.splice(0, SEND_BATCH));
      });
  };
  const sendNow = (rows: NotificationRow[]) => {
    if (sending < maxSending) return send(rows);
    // Past the bound, leave them to the sweeper once their lease runs out.
    if (unsent.length + rows.length <= WAITING_MAX) unsent.push(...rows);
  };
  return sendNow;
}
