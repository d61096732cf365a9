// Tracing in the benchmark: the OTLP sink (bench/otlp-sink.ts) in a process of its own, and what
// a service process needs to export its traces there.
import { startStatsServer, type Managed, type ProcessGroup } from './processes.ts';

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
    const { base, child } = await startStatsServer(group, 'otlp-sink', 'bench/otlp-sink.ts');
    return new OtlpSink(base, child);
  }

  /**
   * The environment of a traced service process: the endpoint is the sink's; the other standard
   * variables are the benchmark's own `OTEL_*` when it has them (a sampler to measure, say
   * `OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1`), the SDK's
   * defaults otherwise (OTLP over HTTP with protobuf, batches every 5 s, every trace sampled).
   */
  serviceEnv(env: NodeJS.ProcessEnv = globalThis.process.env): Record<string, string> {
    const own = Object.entries(env).filter(([key, value]) => key.startsWith('OTEL_') && !/^OTEL_(EXPORTER_OTLP(_TRACES)?_ENDPOINT|SDK_DISABLED)$/.test(key) && value !== undefined);
    return { OTEL_SERVICE_NAME: 'baedal-bench', ...(Object.fromEntries(own) as Record<string, string>), OTEL_EXPORTER_OTLP_ENDPOINT: this.base };
  }

  /** The benchmark's own tracing settings that reach the traced services (for the report), or none. */
  static settings(env: NodeJS.ProcessEnv = globalThis.process.env): string {
    const own = Object.entries(env).filter(([key]) => /^OTEL_(TRACES_SAMPLER|TRACES_SAMPLER_ARG|BSP_\w+|EXPORTER_OTLP_PROTOCOL)$/.test(key));
    return own.length > 0 ? own.map(([k, v]) => `${k}=${v}`).join(' ') : 'the SDK defaults: every trace sampled, OTLP http/protobuf, batches every 5 s';
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
