import type { LoadSummary } from './runner.ts';
import type { LatencySummary } from './stats.ts';

const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : '-').padStart(8);
const row = (name: string, l: LatencySummary) => `  ${name.padEnd(17)} ${String(l.count).padStart(8)} ${ms(l.p50)} ${ms(l.p95)} ${ms(l.p99)} ${ms(l.max)}`;

/** The human-readable report of one run. */
export function formatReport(s: LoadSummary): string {
  const lines: string[] = [];
  lines.push(
    `${s.target} at ${s.urls.join(', ')}${s.urls.length > 1 ? ` (${s.route === 'order' ? 'by order id' : 'round-robin'})` : ''}: ${s.concurrency} virtual users${s.rate ? ` paced to ${s.rate} commands/s` : ''}, ${s.stores} stores, measured ${s.measuredS.toFixed(1)} s after ${s.warmupS} s of warm-up`,
  );
  lines.push(`  ${s.commandsPerS.toFixed(1)} commands/s (${s.commands} commands), ${s.lifecycles.perS.toFixed(1)} lifecycles/s (${s.lifecycles.completed}: ${s.lifecycles.byKind.full} full, ${s.lifecycles.byKind.cancel} cancelled after pay, ${s.lifecycles.byKind.reject} rejected)`);
  lines.push('latency (ms)             count      p50      p95      p99      max');
  for (const [name, l] of Object.entries(s.latencyMs.byCommand)) lines.push(row(name, l));
  lines.push(row('all commands', s.latencyMs.overall));
  if (s.errors.total === 0) lines.push('errors: none');
  else {
    lines.push(`errors: ${s.errors.total} (whole run, warm-up included; ${s.lifecycles.abandoned} lifecycles given up)`);
    for (const [kind, n] of Object.entries(s.errors.byKind)) lines.push(`  ${kind.padEnd(34)} ${String(n).padStart(7)}`);
    for (const [command, kinds] of Object.entries(s.errors.byCommand)) {
      lines.push(`  on ${command}: ${Object.entries(kinds).map(([k, n]) => `${k} × ${n}`).join(', ')}`);
    }
  }
  if (!s.verify) lines.push('final check: not made (this target cannot tell an order status)');
  else if (s.verify.mismatches === 0) lines.push(`final check: all ${s.verify.checked} finished lifecycles ended in the expected state`);
  else {
    lines.push(`final check: ${s.verify.mismatches} of ${s.verify.checked} finished lifecycles are NOT in the expected state, e.g.:`);
    for (const m of s.verify.examples) lines.push(`  order ${m.orderId} (${m.kind}): expected ${m.expected}, found ${m.actual}`);
  }
  const c = s.client;
  lines.push(
    `load generator: ${c.cpuSeconds.toFixed(2)} CPU s in the window = ${(c.cpuShareOfOneCore * 100).toFixed(0)} % of one core, ${c.cpuMsPerCommand.toFixed(3)} ms per command; event-loop delay p99 ${c.eventLoopDelayP99Ms.toFixed(1)} ms`,
  );
  return lines.join('\n');
}
