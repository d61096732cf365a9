/**
 * A statement built from another by exact replacements, each of which must match once: a variant
 * (e.g. one that also writes the trace context) that cannot drift silently from its original,
 * since a replacement that no longer matches fails when the module loads.
 */
export function variant(text: string, replacements: readonly (readonly [from: string, to: string])[]): string {
  let out = text;
  for (const [from, to] of replacements) {
    const at = out.indexOf(from);
    if (at < 0 || out.indexOf(from, at + 1) >= 0) throw new Error(`statement variant: ${at < 0 ? 'no' : 'more than one'} match for ${JSON.stringify(from.slice(0, 80))}`);
    out = out.slice(0, at) + to + out.slice(at + from.length);
  }
  return out;
}
