import type { ConnectionOptions, JobsOptions } from 'bullmq';

/** BullMQ connection options from a redis:// URL; BullMQ creates (and closes) its own clients. */
export function bullConnection(redisUrl: string, producer: boolean): ConnectionOptions {
  // Producers fail fast while Redis is down (the sweeper re-sends what was not enqueued); workers wait.
  return producer ? ({ url: redisUrl, enableOfflineQueue: false, maxRetriesPerRequest: 1 } as ConnectionOptions) : ({ url: redisUrl } as ConnectionOptions);
}

export const JOB_OPTIONS: JobsOptions = {
  attempts: 8,
  backoff: { type: 'exponential', delay: 500 },
  removeOnComplete: { age: 600, count: 5_000 },
  removeOnFail: { age: 24 * 3600 },
};

/** Settles after `ms` with 'timeout' unless `promise` settles first. */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
