import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, name = 'baedal'): Logger {
  return pino({ name, level });
}
