// Types of chart.js, the plain ES module the page and `npm run statechart` share (it re-exports
// chart-layout.js, chart-svg.js and chart-graph.js, which TypeScript does not read).
import type { ELK, ElkNode } from 'elkjs/lib/elk-api.js';
import type { MachineGraph } from '../../machines/graph.ts';

export interface Point {
  x: number;
  y: number;
}

export interface Box extends Point {
  width: number;
  height: number;
}

export interface ChartLayout {
  width: number;
  height: number;
  start: { cx: number; cy: number; r: number };
  startEdge: Point[];
  states: Array<Box & { id: string }>;
  transitions: Array<{ id: string; points: Point[]; label: Box }>;
}

export interface PathStep {
  /** Journal event type. */
  type: string;
  /** The transition it took, or null for the creating event and for events that match none. */
  transition: string | null;
  /** The state after the event. */
  state: string;
  unmatched?: true;
}

export interface TracedPath {
  state: string;
  states: string[];
  transitions: string[];
  steps: PathStep[];
}

export interface LiveState {
  current?: string;
  visited?: string[];
  allowed?: string[];
}

export const LAYOUT_OPTIONS: Readonly<Record<string, string>>;
export function stateTextWidth(text: string): number;
export function labelTextWidth(text: string): number;
export function mainPath(graph: MachineGraph): string[];
export function toElkGraph(graph: MachineGraph): ElkNode;
export function layoutChart(elk: ELK, graph: MachineGraph): Promise<ChartLayout>;
export function tracePath(graph: MachineGraph, eventTypes: readonly string[]): TracedPath;
export function sourcesOf(graph: MachineGraph, command: string): string[];
export function describeState(graph: MachineGraph, stateId: string, live?: LiveState): string;
export function renderSvg(
  graph: MachineGraph,
  layout: ChartLayout,
  options?: { css?: string; interactive?: boolean },
): string;
