// `npm run statechart`: draws the order machine into docs/ with the same code as GET /statechart.
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ELK as ElkInstance } from 'elkjs/lib/elk-api.js';
import { toMermaid, type MachineGraph } from '../src/machines/graph.ts';
import { orderMachines } from '../src/machines/order/registry.ts';
import { layoutChart, renderSvg } from '../src/http/statechart/chart.js';
import { commandLine } from '../src/cli.ts';

export const SVG_PATH = fileURLToPath(new URL('../docs/order-lifecycle.svg', import.meta.url));
export const MERMAID_PATH = fileURLToPath(new URL('../docs/order-lifecycle.mmd', import.meta.url));
const CHART_CSS = new URL('../src/http/statechart/chart.css', import.meta.url);

type ElkConstructor = new () => ElkInstance;

/** The docs files' contents for a graph (the current order machine's by default). */
export async function renderStatechartDocs(
  graph: MachineGraph = orderMachines().current.graph,
): Promise<{ svg: string; mermaid: string }> {
  const ELK = createRequire(import.meta.url)('elkjs/lib/elk.bundled.js') as ElkConstructor;
  const css = await readFile(CHART_CSS, 'utf8');
  const layout = await layoutChart(new ELK(), graph);
  const svg = `<?xml version="1.0" encoding="UTF-8"?>\n${renderSvg(graph, layout, { css })}`;
  return { svg, mermaid: toMermaid(graph) };
}

const USAGE = `usage: npm run statechart

Draws the current order machine (src/machines/order/v<N>.ts) with the same code as GET /statechart and
writes docs/order-lifecycle.svg and docs/order-lifecycle.mmd (Mermaid). Run it after changing the
machine: a test fails while the committed files differ from what the code draws.`;

async function main(): Promise<void> {
  commandLine('statechart', USAGE, {});
  const { svg, mermaid } = await renderStatechartDocs();
  await mkdir(fileURLToPath(new URL('../docs/', import.meta.url)), { recursive: true });
  await writeFile(SVG_PATH, svg);
  await writeFile(MERMAID_PATH, mermaid);
  console.log(`wrote ${SVG_PATH}\nwrote ${MERMAID_PATH}`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
