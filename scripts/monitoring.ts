// `npm run monitoring`: the Kubernetes objects of k8s/monitoring/ made from their two sources, the
// rule file that promtool and Prometheus read (alerts.rules.yaml) and the Grafana dashboard
// (dashboard.json), so that the objects cannot drift from what the tests check.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parser } from '@prometheus-io/lezer-promql';
import { parse as parseYaml, stringify } from 'yaml';
import { commandLine } from '../src/cli.ts';

export const MONITORING_DIR = fileURLToPath(new URL('../k8s/monitoring/', import.meta.url));
export const RULES_FILE = join(MONITORING_DIR, 'alerts.rules.yaml');
export const RULE_TESTS_FILE = join(MONITORING_DIR, 'alerts.test.yaml');
export const DASHBOARD_FILE = join(MONITORING_DIR, 'dashboard.json');
/** The generated objects, beside their sources. */
export const PROMETHEUS_RULE_FILE = join(MONITORING_DIR, 'prometheusrule.yaml');
export const DASHBOARD_CONFIGMAP_FILE = join(MONITORING_DIR, 'dashboard-configmap.yaml');

/** A PromQL expression and where it sits, for messages. */
export interface Query {
  where: string;
  expr: string;
}

export interface RuleFile {
  groups: { name: string; rules: { alert?: string; record?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }[] }[];
}

export function readRules(): RuleFile {
  return parseYaml(readFileSync(RULES_FILE, 'utf8')) as RuleFile;
}

export function readDashboard(): any {
  return JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8'));
}

/** Every rule's expression. */
export function ruleQueries(rules: RuleFile = readRules()): Query[] {
  return rules.groups.flatMap((g) => g.rules.map((r) => ({ where: `rule ${r.alert ?? r.record}`, expr: r.expr })));
}

/** Panels, those inside collapsed rows too. */
function panelsOf(dashboard: any): any[] {
  return (dashboard.panels ?? []).flatMap((p: any) => [p, ...(p.panels ?? [])]);
}

/**
 * Every PromQL expression of a dashboard: its panels' queries and its query variables
 * (`label_values(<selector>, <label>)` and `query_result(<expr>)`, which Grafana evaluates itself).
 */
export function dashboardQueries(dashboard: any = readDashboard()): Query[] {
  const out: Query[] = [];
  for (const panel of panelsOf(dashboard)) {
    for (const target of panel.targets ?? []) out.push({ where: `panel "${panel.title}" ${target.refId}`, expr: target.expr });
  }
  for (const variable of dashboard.templating?.list ?? []) {
    if (variable.type !== 'query') continue;
    const text: string = typeof variable.query === 'string' ? variable.query : variable.query.query;
    const labelValues = /^label_values\((.+),\s*[a-zA-Z_]\w*\)$/.exec(text.trim());
    const queryResult = /^query_result\((.+)\)$/.exec(text.trim());
    const expr = labelValues?.[1] ?? queryResult?.[1];
    if (!expr) throw new Error(`variable $${variable.name}: a query this script cannot read: ${text}`);
    out.push({ where: `variable $${variable.name}`, expr });
  }
  return out;
}

/**
 * The expression with Grafana's variables replaced: the interval ones (`$__rate_interval`,
 * `$__interval`, `$__range`) by `interval`, the others (`$job`, `${job}`) by `values[name]`, or by
 * a word when not given (enough to parse).
 */
export function withVariables(expr: string, values: Record<string, string> = {}, interval = '5m'): string {
  return expr.replace(/\$(?:\{(\w+)\}|(\w+))/g, (_, braced: string | undefined, bare: string | undefined) => {
    const name = (braced ?? bare)!;
    return name.startsWith('__') ? interval : (values[name] ?? 'variable');
  });
}

/** A selector of an expression: the metric it names and the labels it matches on. */
export interface Selector {
  metric: string;
  labels: string[];
}

/**
 * The selectors of an expression, read with the grammar of Prometheus's own editor (a regex would
 * take label names, functions and words in strings for metrics). Throws on a syntax error, and on a
 * selector without a metric name: every series a query reads is named where it is read.
 */
export function selectors(expr: string): Selector[] {
  const found: Selector[] = [];
  const problems: string[] = [];
  const text = (node: { from: number; to: number }) => expr.slice(node.from, node.to);
  parser.parse(expr).iterate({
    enter(ref) {
      if (ref.type.isError) problems.push(`syntax error at ${ref.from}: ${JSON.stringify(expr.slice(Math.max(0, ref.from - 10), ref.to + 10))}`);
      if (ref.name !== 'VectorSelector') return;
      const first = ref.node.firstChild;
      if (first?.name !== 'Identifier') {
        problems.push(`a selector without a metric name: ${text(ref)}`);
        return;
      }
      const matchers = ref.node.getChild('LabelMatchers');
      const labels = (matchers?.getChildren('UnquotedLabelMatcher') ?? []).map((m) => text(m.getChild('LabelName')!));
      found.push({ metric: text(first), labels });
    },
  });
  if (problems.length > 0) throw new Error(`${problems.join('; ')} in ${expr}`);
  return found;
}

/** The metric names an expression reads, sorted, each once. */
export function metricNames(expr: string): string[] {
  return [...new Set(selectors(expr).map((s) => s.metric))].sort();
}

const HEADER = (source: string) =>
  `# Generated by \`npm run monitoring\` from ${source}: edit that file and run the script again\n` +
  '# (test/ops/monitoring.test.ts fails while this file differs from what the script writes).\n';

const LABELS = { 'app.kubernetes.io/name': 'baedal', 'app.kubernetes.io/component': 'monitoring' };

/** The generated files' contents, after checking that every query of the sources parses. */
export function renderMonitoring(): { path: string; text: string }[] {
  const rules = readRules();
  const dashboardText = readFileSync(DASHBOARD_FILE, 'utf8');
  const dashboard = JSON.parse(dashboardText);
  for (const q of [...ruleQueries(rules), ...dashboardQueries(dashboard)]) {
    try {
      metricNames(withVariables(q.expr));
    } catch (err) {
      throw new Error(`${q.where}: ${(err as Error).message}`);
    }
  }
  const yaml = (o: unknown) => stringify(o, { lineWidth: 0 });
  const prometheusRule = {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: { name: 'baedal', labels: LABELS },
    spec: { groups: rules.groups },
  };
  const configMap = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    // grafana_dashboard: "1" is what the Grafana sidecar of kube-prometheus-stack looks for.
    metadata: { name: 'baedal-dashboard', labels: { ...LABELS, grafana_dashboard: '1' } },
    data: { 'baedal.json': dashboardText },
  };
  return [
    { path: PROMETHEUS_RULE_FILE, text: HEADER('alerts.rules.yaml') + yaml(prometheusRule) },
    { path: DASHBOARD_CONFIGMAP_FILE, text: HEADER('dashboard.json') + yaml(configMap) },
  ];
}

const USAGE = `usage: npm run monitoring

Writes k8s/monitoring/prometheusrule.yaml (a PrometheusRule holding the groups of
k8s/monitoring/alerts.rules.yaml) and k8s/monitoring/dashboard-configmap.yaml (a ConfigMap labelled
grafana_dashboard: "1" holding k8s/monitoring/dashboard.json), after checking that every PromQL
expression of both parses. Run it after editing either source: a test fails while the generated
files differ from what the script writes.`;

function main(): void {
  commandLine('monitoring', USAGE, {});
  for (const { path, text } of renderMonitoring()) {
    writeFileSync(path, text);
    console.log(`wrote ${path}`);
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    main();
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  }
}
