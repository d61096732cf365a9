// Tracing in the benchmark: the OTLP sink (bench/otlp-sink.ts) in a process of its own, and what
// a service process needs to export its traces there.
import { freePort, httpStatus, waitUntil, type Managed, type ProcessGroup } from './processes.ts';

/** What the sink received since its last reset. */
export interface SinkStats {
  /** Export requests (each a batch of spans). */
  exports: number;
  bytes: number;
}

export class OtlpSink {
  private constructor(
    private readonly base: string,
    readonly process: Managed,
  ) {}

  static async start(group: ProcessGroup): Promise<OtlpSink> {
    const port = await freePort();
    const child = group.start('otlp-sink', globalThis.process.execPath, ['--import', 'tsx', 'bench/otlp-sink.ts'], {
      env: { ...globalThis.process.env, PORT: String(port) },
    });
    const sink = new OtlpSink(`http://127.0.0.1:${port}`, child);
    await waitUntil(async () => (await httpStatus(`${sink.base}/_bench/stats`)) === 200, 'the OTLP sink', 30_000, child);
    return sink;
  }

  /**
   * The environment of a traced service process: the standard variables, at their defaults but
   * the endpoint (OTLP over HTTP with protobuf, batches every 5 s, every trace sampled).
   */
  serviceEnv(): Record<string, string> {
    return { OTEL_EXPORTER_OTLP_ENDPOINT: this.base, OTEL_SERVICE_NAME: 'baedal-bench' };
  }

  async reset(): Promise<void> {
    await this.call('POST', '/_bench/reset');
  }

  async stats(): Promise<SinkStats> {
    return (await this.call('GET', '/_bench/stats')) as SinkStats;
  }

  private async call(method: 'GET' | 'POST', path: string): Promise<unknown> {
    const res = await fetch(`${this.base}${path}`, { method, signal: AbortSignal.timeout(10_000) });
    if (!res.ok) throw new Error(`the OTLP sink answered ${res.status} to ${method} ${path}`);
    return res.status === 204 ? undefined : res.json();
  }
}

/** The service environment with tracing off: no OTEL_* variable of the benchmark's own environment gets through. */
export function withoutOtel(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([key]) => !key.startsWith('OTEL_')));
}
