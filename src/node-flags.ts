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
 *
 * An old generation that may grow to four times what a full collection left live before the next
 * one (`--heap-growing-percent=300`; V8 otherwise picks the margin itself, and picked one that
 * brought the next collection 4–45 s later on replicas limited to 0.25 core). A full collection
 * marks the whole live heap (about 50 MB: the modules' code and source text, the caches) and took
 * 65–85 ms of CPU there, 300 ms or more of a quarter core's quota, while the replica's events and
 * commands wait. With it, 61–108 s apart; in alternating runs of 3 replicas at their top rate, 6–13 %
 * more commands/s at 4–12 % less service CPU per command, at about the same resident memory
 * (docs/benchmarks.md, 2026-12-07 23:09).
 */
export const SERVICE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=32', '--heap-growing-percent=300'];
