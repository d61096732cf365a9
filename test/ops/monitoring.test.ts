import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { parse as parseYaml, stringify } from 'yaml';
import {
  RULES_FILE,
  RULE_TESTS_FILE,
  dashboardQueries,
  metricNames,
  readDashboard,
  readRules,
  renderMonitoring,
  ruleQueries,
  selectors,
  withVariables,
  type Query,
} from '../../scripts/monitoring.ts';
import { freePort } from '../support/service-process.ts';
import { commandRequest, eventually, request, sharedSystem, type TestSystem } from '../support/system.ts';

// Debian's prometheus package (never a downloaded binary): promtool and the server.
const PROMTOOL = '/usr/bin/promtool';
const PROMETHEUS = '/usr/bin/prometheus';

function needs(binary: string): void {
  if (!existsSync(binary)) {
    throw new Error(`The monitoring tests need ${binary} from Debian's prometheus package: run \`apt-get install -y --no-install-recommends prometheus\`.`);
  }
}

/** Labels Prometheus (or the Operator's PodMonitor) adds to every series it scrapes: not the service's. */
const TARGET_LABELS = new Set(['job', 'instance', 'pod', 'namespace', 'container', 'endpoint']);

/** What a /metrics text declares (`# TYPE name type`) and the label names each sample name carries. */
function exposition(text: string): { types: Map<string, string>; labels: Map<string, Set<string>> } {
  const types = new Map<string, string>();
  const labels = new Map<string, Set<string>>();
  for (const line of text.split('\n')) {
    const declared = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (declared) types.set(declared[1]!, declared[2]!);
    const sample = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? \S+$/.exec(line);
    if (!sample) continue;
    const names = labels.get(sample[1]!) ?? new Set<string>();
    for (const m of (sample[2] ?? '').matchAll(/([a-zA-Z_]\w*)="(?:[^"\\]|\\.)*"/g)) names.add(m[1]!);
    labels.set(sample[1]!, names);
  }
  return { types, labels };
}

/** Whether a metric name used in a query is exported: as declared, or as a histogram's (or summary's) series. */
function isExported(types: Map<string, string>, name: string): boolean {
  if (types.has(name)) return true;
  const series = /^(.+)_(bucket|sum|count)$/.exec(name);
  if (!series) return false;
  const type = types.get(series[1]!);
  return type === 'histogram' || (type === 'summary' && series[2] !== 'bucket');
}

interface PromResult {
  metric: Record<string, string>;
  value: [number, string];
}

/** An instant query through Prometheus's HTTP API. */
async function promQuery(base: string, query: string): Promise<{ status: string; error?: string; data?: { result: PromResult[] } }> {
  const res = await fetch(`${base}/api/v1/query?${new URLSearchParams({ query })}`);
  return (await res.json()) as { status: string; error?: string; data?: { result: PromResult[] } };
}

describe('monitoring: the dashboard and the alerts (k8s/monitoring)', function () {
  this.timeout(30_000);
  let sys: TestSystem;
  before(async () => {
    sys = await sharedSystem();
  });

  /** Commands of every kind of outcome, so the labelled series the dashboard reads exist. */
  async function traffic(): Promise<void> {
    const p = await sys.newParties();
    const order = await sys.placeOrder(p);
    expect((await sys.request('POST', `/orders/${order.id}/accept`, commandRequest(p, 'accept'))).status, 'accept before pay').to.equal(409);
    // A test before this one may have left the shared system's breaker open: it lets a probe through once its half-open time is over.
    await eventually(async () => (await sys.request('POST', `/orders/${order.id}/pay`, commandRequest(p, 'pay'))).status === 200, 'the pay to go through');
    expect((await sys.request('GET', `/orders/${order.id}`, { token: p.customer })).status).to.equal(200);
  }

  it('the PrometheusRule and the dashboard ConfigMap are what `npm run monitoring` makes of their sources', () => {
    for (const { path, text } of renderMonitoring()) {
      expect(readFileSync(path, 'utf8'), `${path} is stale: run npm run monitoring`).to.equal(text);
    }
  });

  it("reads metric names with PromQL's grammar: selectors only, Grafana's variables replaced, errors refused", () => {
    expect(metricNames('sum by (le, route) (rate(a_bucket{route="x"}[5m])) / on () group_left b offset 5m')).to.deep.equal(['a_bucket', 'b']);
    expect(metricNames('label_replace(max without (pod) (c), "to", "$1", "from", "(.*)") > bool 3')).to.deep.equal(['c']);
    expect(metricNames(withVariables('rate(d{job=~"$job"}[$__rate_interval]) + e{job="${job}"}'))).to.deep.equal(['d', 'e']);
    expect(selectors('f{state="open", job=~"x"} unless g')).to.deep.equal([
      { metric: 'f', labels: ['state', 'job'] },
      { metric: 'g', labels: [] },
    ]);
    expect(withVariables('rate(d{job=~"$job"}[$__rate_interval])', { job: 'baedal' }, '10s')).to.equal('rate(d{job=~"baedal"}[10s])');
    expect(() => metricNames('rate(d[5m')).to.throw(/syntax error/);
    expect(() => metricNames('{__name__="d"}')).to.throw(/without a metric name/);
    expect(() => metricNames('rate(d[$__rate_interval])'), 'a variable left in place').to.throw(/syntax error/);
  });

  it('every metric the dashboard and the rules read, and every label they match on, is one a running replica exports', async () => {
    await traffic();
    const { types, labels } = exposition((await request<string>(sys.baseUrl, 'GET', '/metrics')).body);
    const queries: Query[] = [...dashboardQueries(), ...ruleQueries()];
    const missing: string[] = [];
    for (const q of queries) {
      for (const { metric, labels: matched } of selectors(withVariables(q.expr))) {
        if (!isExported(types, metric)) missing.push(`${q.where}: ${metric}`);
        const carried = labels.get(metric) ?? new Set<string>();
        for (const label of matched.filter((l) => !TARGET_LABELS.has(l))) {
          if (!carried.has(label)) missing.push(`${q.where}: ${metric} has no label ${label}`);
        }
      }
    }
    expect(missing).to.deep.equal([]);
    // What the dashboard is for, each read from the service: commands and their latency, errors by
    // code, the breaker, the backlog, view lag, owed and failing work, replicas.
    const onDashboard = new Set(dashboardQueries().flatMap((q) => metricNames(withVariables(q.expr))));
    for (const name of [
      'baedal_commands_total',
      'baedal_http_request_duration_seconds_bucket',
      'baedal_payment_breaker_state',
      'baedal_queue_backlog',
      'baedal_view_lag_seconds',
      'baedal_work_owed',
      'baedal_work_failing',
      'baedal_ready',
    ]) {
      expect([...onDashboard], name).to.include(name);
    }
  });

  describe('promtool', () => {
    before(() => needs(PROMTOOL));

    it('checks the rule file', () => {
      const run = spawnSync(PROMTOOL, ['check', 'rules', RULES_FILE], { encoding: 'utf8' });
      expect(run.status, run.stdout + run.stderr).to.equal(0);
      const count = readRules().groups.flatMap((g) => g.rules).length;
      expect(run.stdout).to.include(`SUCCESS: ${count} rules found`);
    });

    it("passes the rules' unit tests, which fire every alert and hold each back where it must wait", () => {
      const run = spawnSync(PROMTOOL, ['test', 'rules', RULE_TESTS_FILE], { encoding: 'utf8' });
      expect(run.status, run.stdout + run.stderr).to.equal(0);
      expect(run.stdout).to.include('SUCCESS');

      const alerts = readRules().groups.flatMap((g) => g.rules.map((r) => r.alert)).filter((a): a is string => a !== undefined);
      const cases = (parseYaml(readFileSync(RULE_TESTS_FILE, 'utf8')).tests as any[]).flatMap((t) => t.alert_rule_test ?? []);
      const firing = new Set(cases.filter((c) => c.exp_alerts.length > 0).map((c) => c.alertname));
      const quiet = new Set(cases.filter((c) => c.exp_alerts.length === 0).map((c) => c.alertname));
      expect([...firing].sort(), 'alerts some test fires').to.deep.equal([...alerts].sort());
      expect([...quiet].sort(), 'alerts some test expects not to fire').to.deep.equal([...alerts].sort());
    });

    it('would fail the unit tests if an alert fired where a test says it must not', () => {
      const dir = mkdtempSync(join(tmpdir(), 'baedal-promtool-'));
      try {
        const tests = parseYaml(readFileSync(RULE_TESTS_FILE, 'utf8'));
        tests.rule_files = [RULES_FILE];
        // The breaker's alert at 3m15s: expected there, now said to be absent.
        const firingCase = tests.tests[0].alert_rule_test.find((c: any) => c.exp_alerts.length > 0);
        firingCase.exp_alerts = [];
        writeFileSync(join(dir, 'alerts.test.yaml'), stringify(tests));
        const run = spawnSync(PROMTOOL, ['test', 'rules', join(dir, 'alerts.test.yaml')], { encoding: 'utf8' });
        expect(run.status, run.stdout + run.stderr).to.equal(1);
        expect(run.stdout + run.stderr).to.include('BaedalPaymentBreakerOpen');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('a real Prometheus scraping a running replica', () => {
    const JOB = 'baedal';
    let dir: string;
    let prometheus: ChildProcess | undefined;
    let output = '';
    let base: string;

    before(async () => {
      needs(PROMETHEUS);
      dir = mkdtempSync(join(tmpdir(), 'baedal-prometheus-'));
      const config = {
        global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
        rule_files: [RULES_FILE],
        scrape_configs: [{ job_name: JOB, metrics_path: '/metrics', static_configs: [{ targets: [new URL(sys.baseUrl).host] }] }],
      };
      writeFileSync(join(dir, 'prometheus.yml'), stringify(config));
      const port = await freePort();
      base = `http://127.0.0.1:${port}`;
      prometheus = spawn(
        PROMETHEUS,
        [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      prometheus.stdout!.on('data', (d: Buffer) => (output += d.toString()));
      prometheus.stderr!.on('data', (d: Buffer) => (output += d.toString()));
      await eventually(
        async () => {
          if (prometheus!.exitCode !== null) throw new Error(`prometheus exited ${prometheus!.exitCode}:\n${output}`);
          return (await fetch(`${base}/-/ready`)).status === 200;
        },
        'Prometheus to be ready',
        15_000,
      );
    });

    after(async () => {
      if (prometheus && prometheus.exitCode === null) {
        const exited = new Promise((resolve) => prometheus!.once('exit', resolve));
        prometheus.kill('SIGTERM');
        const timer = setTimeout(() => prometheus!.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    const value = async (query: string) => {
      const answer = await promQuery(base, query);
      if (answer.status !== 'success') throw new Error(`${query}: ${answer.error}`);
      return answer.data!.result;
    };

    it("scrapes the replica's /metrics, loads the alert rules and evaluates them without error", async () => {
      await eventually(async () => (await value(`up{job="${JOB}"}`))[0]?.value[1] === '1', `the replica up in Prometheus (its log:\n${output})`, 15_000);
      await eventually(async () => (await value(`baedal_ready{job="${JOB}"}`))[0]?.value[1] === '1', 'baedal_ready queryable', 10_000);

      const alerts = readRules().groups.flatMap((g) => g.rules.map((r) => r.alert));
      const rules = await eventually(
        async () => {
          const body = (await (await fetch(`${base}/api/v1/rules`)).json()) as { data: { groups: { name: string; rules: { name: string; health: string; lastError?: string }[] }[] } };
          const loaded = body.data.groups.flatMap((g) => g.rules);
          // Health is "unknown" until the first evaluation.
          return loaded.length > 0 && loaded.every((r) => r.health !== 'unknown') && loaded;
        },
        'every rule evaluated once',
        10_000,
      );
      expect(rules.map((r) => r.name).sort()).to.deep.equal([...alerts].sort());
      expect(rules.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.lastError}`)).to.deep.equal([]);
    });

    it("answers every query of the dashboard, and its panels show the replica's data", async () => {
      await traffic();
      const dashboard = readDashboard();
      // Grafana's variables as Grafana would fill them in for this Prometheus.
      const fill = (expr: string) => withVariables(expr, { job: JOB }, '10s');
      const jobs = (await (await fetch(`${base}/api/v1/label/job/values?${new URLSearchParams({ 'match[]': 'baedal_ready' })}`)).json()) as { data: string[] };
      expect(jobs.data, 'the $job variable offers the replica').to.deep.equal([JOB]);

      const panel = (title: string) => {
        const found = dashboard.panels.find((p: any) => p.type !== 'row' && p.title === title);
        if (!found) throw new Error(`the dashboard has no panel "${title}"`);
        return fill(found.targets[0].expr);
      };
      // The commands just sent, by command, once two scrapes have seen them.
      const commands = await eventually(async () => {
        const result = await value(panel('Commands/s by command'));
        return result.some((r) => r.metric.command === 'pay') && result;
      }, 'commands/s by command from Prometheus');
      expect(commands.map((r) => r.metric.command)).to.include.members(['place', 'pay', 'accept']);
      expect((await value(panel('Replicas')))[0]?.value[1], 'one replica scraped').to.equal('1');
      const breaker = await value(panel('Payment breaker'));
      expect(breaker.map((r) => r.metric.state).sort()).to.deep.equal(['closed', 'half-open', 'open']);
      expect((await value(panel('Queue backlog'))).map((r) => r.metric.queue)).to.include('events');

      // Every other query is one Prometheus accepts.
      const refused: string[] = [];
      for (const q of dashboardQueries(dashboard)) {
        const answer = await promQuery(base, fill(q.expr));
        if (answer.status !== 'success') refused.push(`${q.where}: ${answer.error}`);
      }
      expect(refused).to.deep.equal([]);
    });
  });
});
