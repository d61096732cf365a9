/**
 * The flags node runs the service with: the image's command (Dockerfile, checked against this by
 * test/ops/build.test.ts), `npm start`, `npm run up`, the benchmark and the scaling demo.
 *
 * A young generation of 32 MB per semi-space instead of V8's 16 MB. Each command allocates its
 * statement's JSON, its answer and the rows it reads back, nearly all dead before the next
 * scavenge; with 16 MB the garbage collector took 14 % of the service's busy CPU at its top rate.
 * With 32 MB, in alternating runs: 4–9 % more commands/s on one replica limited to 0.25 core, and
 * 3–8 % less service CPU per command on an unlimited one, for 30–40 MB more resident memory
 * (docs/benchmarks.md, 2026-12-05).
 */
export const SERVICE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=32'];
