import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative, sep } from 'node:path';

/**
 * The layers of src/, lowest first. A module may import its own unit (top-level folder or file)
 * and any unit of a lower layer, never one of a higher layer. The kernel's units (layer 0) may use
 * each other; the features (payment, notifications, views) are side by side and do not.
 * docs/architecture.md states the same table.
 */
export const LAYERS: readonly (readonly string[])[] = [
  ['auth-secret', 'cli', 'config', 'db', 'errors', 'log', 'measured', 'node-flags', 'objects', 'tracing', 'tracing-sdk'],
  ['machines'],
  ['catalog'],
  ['actors'],
  ['notifications', 'payment', 'views'],
  ['http'],
  ['metrics'],
  ['app'],
  ['machines-migrate', 'migrate', 'service'],
  ['main'],
];

/** The layer whose units are features side by side: none imports another. */
export const FEATURE_LAYER = 4;

/** A module's unit: its top-level folder under src/, or its file name without `.ts`. */
export function unitOf(path: string): string {
  const [first, ...rest] = path.split(/[\\/]/);
  return rest.length > 0 ? first! : first!.replace(/\.ts$/, '');
}

const layerOf = new Map(LAYERS.flatMap((units, layer) => units.map((u) => [u, layer] as const)));

/** Relative module specifiers of a source text: static imports and exports, and `import()`. */
export function specifiersOf(source: string): string[] {
  const found: string[] = [];
  for (const m of source.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)(['"])(\.{1,2}\/[^'"]+)\1/gm)) found.push(m[2]!);
  return found;
}

export interface Import {
  /** Importing module, relative to src/. */
  from: string;
  /** The imported path, relative to src/ (may start with `..` when it leaves src/). */
  to: string;
}

/** What is wrong with each import: empty when every arrow points down. */
export function violations(imports: readonly Import[]): string[] {
  const found: string[] = [];
  for (const { from, to } of imports) {
    if (to.startsWith('..')) {
      found.push(`${from} imports ${to}, outside src/ (tests, scripts and dev tools are not part of the service)`);
      continue;
    }
    const [a, b] = [unitOf(from), unitOf(to)];
    if (a === b) continue;
    const [la, lb] = [layerOf.get(a), layerOf.get(b)];
    if (la === undefined || lb === undefined) {
      found.push(`${from} → ${to}: ${la === undefined ? a : b} has no layer (add it to LAYERS and docs/architecture.md)`);
    } else if (lb > la) {
      found.push(`${from} imports ${to}: ${a} (layer ${la}) may not import ${b} (layer ${lb}, above it)`);
    } else if (lb === la && la === FEATURE_LAYER) {
      found.push(`${from} imports ${to}: ${a} and ${b} are side by side (layer ${la}) and do not import each other`);
    }
  }
  return found;
}

/** Every relative import of every module under `srcDir`, resolved relative to it. */
export function importsOf(srcDir: string): Import[] {
  const files = (readdirSync(srcDir, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));
  return files.flatMap((file) =>
    specifiersOf(readFileSync(join(srcDir, file), 'utf8')).map((spec) => ({
      from: file.split(sep).join('/'),
      to: relative(srcDir, normalize(join(srcDir, dirname(file), spec))).split(sep).join('/'),
    })),
  );
}
