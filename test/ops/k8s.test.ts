import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { K8S, ROOT, find, readYaml, renderKustomization, validateObject, type K8sObject } from '../support/manifests.ts';
import { request, sharedSystem, type TestSystem } from '../support/system.ts';

const DEMO_DEPS = join(K8S, 'demo-deps');
const KEDA = join(K8S, 'keda');
const MONITORING = join(K8S, 'monitoring');
/** Files of k8s/monitoring/ that are not manifests: the sources `npm run monitoring` reads, and promtool's tests. */
const MONITORING_SOURCES = ['alerts.rules.yaml', 'alerts.test.yaml'];
/** What `kubectl autoscale deployment baedal --cpu-percent=50 --min=1 --max=3` creates (its spec). */
const KUBECTL_AUTOSCALE_SPEC = {
  scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'baedal' },
  minReplicas: 1,
  maxReplicas: 3,
  metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 50 } } }],
};
const SECRET_PLACEHOLDER = 'REPLACE-ME-with-output-of-openssl-rand-base64-48';

const renders = {
  default: () => renderKustomization(K8S),
  keda: () => renderKustomization(K8S, { extraComponents: ['keda'] }),
  demoDeps: () => renderKustomization(DEMO_DEPS),
  monitoring: () => renderKustomization(MONITORING),
};

function containers(o: K8sObject): any[] {
  const spec = o.spec?.template?.spec;
  return spec ? [...(spec.initContainers ?? []), ...spec.containers] : [];
}

function appContainer(objects: K8sObject[]): any {
  const c = find(objects, 'Deployment', 'baedal').spec.template.spec.containers.find((x: any) => x.name === 'baedal');
  if (!c) throw new Error('the baedal Deployment has no container named baedal');
  return c;
}

/** Kubernetes' Ingress path matching: Exact is equality, Prefix matches whole path elements. */
function ingressMatches(rule: { path: string; pathType: string }, path: string): boolean {
  if (rule.pathType === 'Exact') return path === rule.path;
  if (rule.pathType === 'Prefix') {
    const prefix = rule.path.replace(/\/+$/, '');
    return prefix === '' || path === prefix || path.startsWith(`${prefix}/`);
  }
  throw new Error(`pathType ${rule.pathType}: its matching is up to the controller; use Exact or Prefix`);
}

/** `--flag value` pairs of a command line. */
function flags(args: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < args.length; i += 1) if (args[i]!.startsWith('--')) out.set(args[i]!, args[i + 1] ?? '');
  return out;
}

function kubectlAvailable(): boolean {
  return spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore' }).status === 0;
}

/** Objects keyed by kind/namespace/name, for comparisons that ignore order. */
function byIdentity(objects: K8sObject[]): Record<string, K8sObject> {
  return Object.fromEntries(objects.map((o) => [`${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`, o]));
}

describe('Kubernetes manifests (k8s/)', () => {
  it('every folder lists each of its manifests in its kustomization, and nothing that is missing', () => {
    for (const dir of [K8S, KEDA, DEMO_DEPS, MONITORING]) {
      const [k] = readYaml(join(dir, 'kustomization.yaml'));
      const listed = (k.resources as string[]).filter((r) => r.endsWith('.yaml')).sort();
      const present = readdirSync(dir)
        .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml' && !(dir === MONITORING && MONITORING_SOURCES.includes(f)))
        .sort();
      expect(listed, dir).to.deep.equal(present);
    }
  });

  it('every object of every variant passes the Kubernetes (KEDA, Prometheus Operator) JSON schemas', async () => {
    const failures: string[] = [];
    for (const [variant, render] of Object.entries(renders)) {
      const objects = render();
      expect(objects.length, variant).to.be.greaterThan(1);
      for (const o of objects) {
        await validateObject(o).catch((err: Error) => failures.push(`${variant}: ${o.kind} ${o.metadata.name}: ${err.message}`));
      }
    }
    expect(failures).to.deep.equal([]);
  });

  it('is rendered the same by `kubectl kustomize` (when kubectl is installed)', function () {
    if (!kubectlAvailable()) this.skip();
    // A copy of k8s/ with the component's two lines uncommented, as README.md tells users to do.
    const overlay = join(ROOT, 'test-artifacts', 'k8s-with-keda');
    rmSync(overlay, { recursive: true, force: true });
    cpSync(K8S, overlay, { recursive: true });
    const kustomization = readFileSync(join(overlay, 'kustomization.yaml'), 'utf8');
    const enabled = kustomization.replace('# components:\n#   - keda\n', 'components:\n  - keda\n');
    expect(enabled, 'k8s/kustomization.yaml has the commented-out component').not.to.equal(kustomization);
    writeFileSync(join(overlay, 'kustomization.yaml'), enabled);
    for (const [dir, ours] of [[K8S, renders.default()], [DEMO_DEPS, renders.demoDeps()], [MONITORING, renders.monitoring()], [overlay, renders.keda()]] as const) {
      const run = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
      expect(run.status, run.stderr).to.equal(0);
      const theirs = parseAllDocuments(run.stdout).map((d) => d.toJS() as K8sObject);
      expect(byIdentity(ours), dir).to.deep.equal(byIdentity(theirs));
    }
  });

  describe('autoscaling', () => {
    it("the default HPA is the exercise's: autoscaling/v2, CPU 50 %, 1 to 3 replicas of the Deployment", () => {
      const objects = renders.default();
      const hpas = objects.filter((o) => o.kind === 'HorizontalPodAutoscaler');
      expect(hpas).to.have.length(1);
      const hpa = hpas[0]!;
      expect(hpa.apiVersion).to.equal('autoscaling/v2');
      const { behavior, ...spec } = hpa.spec;
      expect(spec, 'the spec of kubectl autoscale … --cpu-percent=50 --min=1 --max=3').to.deep.equal(KUBECTL_AUTOSCALE_SPEC);
      expect(Object.keys(behavior ?? {}), 'behavior tunes scale-down only').to.deep.equal(['scaleDown']);
      const target = find(objects, hpa.spec.scaleTargetRef.kind, hpa.spec.scaleTargetRef.name);
      expect(target.apiVersion).to.equal(hpa.spec.scaleTargetRef.apiVersion);
      expect(target.spec.replicas, 'the HPA owns the replica count').to.equal(undefined);
      expect(appContainer(objects).resources.requests.cpu, 'CPU utilization needs a CPU request').to.be.a('string');
    });

    it('the KEDA component swaps the HPA for a ScaledObject that scales the Deployment on CPU and on the queue backlog', () => {
      const base = renders.default();
      const keda = renders.keda();
      expect(keda.filter((o) => o.kind === 'HorizontalPodAutoscaler'), 'two HPAs on one Deployment would fight').to.deep.equal([]);
      expect(byIdentity(keda.filter((o) => o.kind !== 'ScaledObject'))).to.deep.equal(
        byIdentity(base.filter((o) => o.kind !== 'HorizontalPodAutoscaler')),
      );
      const so = find(keda, 'ScaledObject', 'baedal');
      expect(so.apiVersion).to.equal('keda.sh/v1alpha1');
      expect(so.metadata.namespace).to.equal(find(keda, 'Deployment', 'baedal').metadata.namespace);
      const ref = so.spec.scaleTargetRef;
      expect(find(keda, ref.kind ?? 'Deployment', ref.name).apiVersion).to.equal(ref.apiVersion ?? 'apps/v1');
      expect(ref.name).to.equal('baedal');
      expect([so.spec.minReplicaCount, so.spec.maxReplicaCount]).to.deep.equal([1, 3]);

      const cpu = so.spec.triggers.filter((t: any) => t.type === 'cpu');
      expect(cpu).to.have.length(1);
      expect(cpu[0].metricType).to.equal('Utilization');
      expect(cpu[0].metadata.value).to.equal('50');
      expect(cpu[0].metadata.containerName).to.equal(appContainer(keda).name);

      const prom = so.spec.triggers.filter((t: any) => t.type === 'prometheus');
      expect(prom).to.have.length(1);
      const { query, threshold, serverAddress } = prom[0].metadata;
      expect(query).to.include('baedal_queue_backlog');
      // Every replica reports the queue-wide backlog: one value per queue, then the sum.
      expect(query.replace(/\s+/g, ' ')).to.equal('sum(max by (queue) (baedal_queue_backlog))');
      expect(threshold).to.match(/^[1-9]\d*$/);
      expect(() => new URL(serverAddress)).not.to.throw();
      expect(prom[0].metricType ?? 'AverageValue').to.equal('AverageValue');
    });

    it('the KEDA component is off by default, so `kubectl apply -k k8s` needs no KEDA', () => {
      const [k] = readYaml(join(K8S, 'kustomization.yaml'));
      expect(k.components).to.equal(undefined);
      expect(renders.default().some((o) => o.apiVersion.startsWith('keda.sh/'))).to.equal(false);
    });
  });

  describe('the service pods', () => {
    let system: TestSystem;
    before(async () => {
      system = await sharedSystem();
    });

    it('probe routes that exist in the app (readiness /readyz, liveness /healthz) on the port it listens on', async () => {
      const objects = renders.default();
      const app = appContainer(objects);
      const config = find(objects, 'ConfigMap', 'baedal-config').data;
      const httpPort = app.ports.find((p: any) => p.name === 'http');
      expect(httpPort.containerPort).to.equal(Number(config.PORT));
      expect(config.HOST, 'reachable from the kubelet and the Service').to.equal('0.0.0.0');
      expect(app.readinessProbe.httpGet).to.deep.equal({ path: '/readyz', port: 'http' });
      expect(app.livenessProbe.httpGet).to.deep.equal({ path: '/healthz', port: 'http' });
      expect(app.startupProbe.httpGet).to.deep.equal({ path: '/healthz', port: 'http' });

      const openapi = await request(system.baseUrl, 'GET', '/openapi.json');
      for (const path of ['/readyz', '/healthz']) {
        expect(openapi.body.paths, `the route table has ${path}`).to.have.property(path);
        expect((await request(system.baseUrl, 'GET', path)).status, path).to.equal(200);
      }
    });

    it('the app exports the gauge the KEDA query reads: baedal_queue_backlog, one series per queue', async () => {
      const metrics = await request<string>(system.baseUrl, 'GET', '/metrics');
      expect(metrics.status).to.equal(200);
      expect(metrics.body).to.match(/^# TYPE baedal_queue_backlog gauge$/m);
      expect(metrics.body).to.match(/^baedal_queue_backlog\{[^}]*\bqueue="[^"]+"[^}]*\} \d+(\.\d+)?$/m);
    });

    it('the Ingress routes every API path but /metrics, which Prometheus scrapes in the cluster', async () => {
      const objects = renders.default();
      const ingress = find(objects, 'Ingress', 'baedal');
      const rules = ingress.spec.rules.flatMap((r: any) => r.http.paths);
      const service = find(objects, 'Service', 'baedal');
      for (const rule of rules) {
        expect(rule.backend.service.name).to.equal(service.metadata.name);
        expect(service.spec.ports.map((p: any) => p.name)).to.include(rule.backend.service.port.name);
      }
      const routed = (path: string) => rules.some((rule: any) => ingressMatches(rule, path));

      const openapi = await request(system.baseUrl, 'GET', '/openapi.json');
      const apiPaths = Object.keys(openapi.body.paths).map((p) => p.replace(/\{[^}]+\}/g, 'x'));
      expect(apiPaths).to.include('/metrics');
      for (const path of apiPaths.filter((p) => p !== '/metrics')) expect(routed(path), `${path} is routed`).to.equal(true);
      expect(routed('/statechart/assets/page.js'), 'the state chart page needs its assets').to.equal(true);
      for (const path of ['/metrics', '/metrics/', '/metrics/x']) expect(routed(path), `${path} is not routed`).to.equal(false);
      expect(routed('/anything-else')).to.equal(false);

      const pod = find(objects, 'Deployment', 'baedal').spec.template.metadata.annotations;
      expect(pod).to.include({ 'prometheus.io/scrape': 'true', 'prometheus.io/path': '/metrics', 'prometheus.io/port': String(appContainer(objects).ports[0].containerPort) });
    });
  });

  describe('monitoring (k8s/monitoring, for the Prometheus Operator)', () => {
    it('is a kustomization of its own, which `kubectl apply -k k8s` leaves out (its kinds need the Operator)', () => {
      const [k] = readYaml(join(K8S, 'kustomization.yaml'));
      expect(k.resources).not.to.include('monitoring');
      expect(renders.default().some((o) => o.apiVersion.startsWith('monitoring.coreos.com/'))).to.equal(false);
      const kinds = renders.monitoring().map((o) => `${o.apiVersion} ${o.kind}`).sort();
      expect(kinds).to.deep.equal(['monitoring.coreos.com/v1 PodMonitor', 'monitoring.coreos.com/v1 PrometheusRule', 'v1 ConfigMap']);
    });

    it("the PodMonitor scrapes the service's pods, and no other, at the port and path of their metrics, in their namespace", () => {
      const objects = [...renders.default(), ...renders.demoDeps()];
      const monitor = find(renders.monitoring(), 'PodMonitor', 'baedal');
      const app = find(objects, 'Deployment', 'baedal');
      expect(monitor.metadata.namespace).to.equal(app.metadata.namespace);
      const selects = (labels: Record<string, string>) => Object.entries<string>(monitor.spec.selector.matchLabels).every(([k, v]) => labels[k] === v);
      const selected = objects.filter((o) => o.spec?.template?.metadata?.labels && selects(o.spec.template.metadata.labels));
      expect(selected.map((o) => `${o.kind}/${o.metadata.name}`)).to.deep.equal(['Deployment/baedal']);
      const [endpoint, ...others] = monitor.spec.podMetricsEndpoints;
      expect(others).to.deep.equal([]);
      const port = appContainer(objects).ports.find((p: any) => p.name === endpoint.port);
      const annotations = app.spec.template.metadata.annotations;
      expect(String(port.containerPort), 'the port the annotations name').to.equal(annotations['prometheus.io/port']);
      expect(endpoint.path).to.equal(annotations['prometheus.io/path']);
    });

    it('the commented-out scrape token, uncommented as the file says, is the Secret key the Deployment gives the app as METRICS_TOKEN', async () => {
      const text = readFileSync(join(MONITORING, 'podmonitor.yaml'), 'utf8');
      const block = /^( *)# authorization:\n(?:\1#  .*\n)+/m.exec(text);
      expect(block, 'podmonitor.yaml has the commented authorization block').to.not.equal(null);
      const uncommented = text.replace(block![0], block![0].replace(/^( *)# /gm, '$1'));
      const [monitor] = parseAllDocuments(uncommented).map((d) => d.toJS() as K8sObject);
      await validateObject(monitor!);
      const { authorization } = monitor!.spec.podMetricsEndpoints[0];
      expect(authorization.type).to.equal('Bearer');
      const fromSecret = appContainer(renders.default()).env.find((e: any) => e.name === 'METRICS_TOKEN').valueFrom.secretKeyRef;
      expect({ name: authorization.credentials.name, key: authorization.credentials.key }).to.deep.equal({ name: fromSecret.name, key: fromSecret.key });
    });

    it('the dashboard ConfigMap carries the label the Grafana sidecar looks for, and one dashboard that parses', () => {
      const configMap = find(renders.monitoring(), 'ConfigMap', 'baedal-dashboard');
      expect(configMap.metadata.labels).to.include({ grafana_dashboard: '1' });
      const files = Object.keys(configMap.data);
      expect(files).to.deep.equal(['baedal.json']);
      const dashboard = JSON.parse(configMap.data['baedal.json']);
      expect(dashboard.uid).to.equal('baedal');
      const datasource = dashboard.templating.list.find((v: any) => v.type === 'datasource');
      expect(datasource.query, 'a Prometheus data source variable').to.equal('prometheus');
      for (const panel of dashboard.panels.filter((p: any) => p.type !== 'row')) {
        expect(panel.datasource, panel.title).to.deep.equal({ type: 'prometheus', uid: `\${${datasource.name}}` });
      }
    });
  });

  it('the shutdown budget: preStop + SHUTDOWN_TIMEOUT_MS + at least 5 s of margin fit in the grace period', () => {
    const objects = renders.default();
    const pod = find(objects, 'Deployment', 'baedal').spec.template.spec;
    const app = appContainer(objects);
    const [sleep, seconds, ...rest] = app.lifecycle.preStop.exec.command as string[];
    expect([sleep, rest]).to.deep.equal(['sleep', []]);
    const preStop = Number(seconds);
    expect(preStop).to.be.at.least(1);
    const timeoutMs = Number(find(objects, 'ConfigMap', 'baedal-config').data.SHUTDOWN_TIMEOUT_MS);
    expect(timeoutMs, 'SHUTDOWN_TIMEOUT_MS is set').to.be.greaterThan(0);
    const margin = pod.terminationGracePeriodSeconds - preStop - timeoutMs / 1000;
    expect(margin, `grace ${pod.terminationGracePeriodSeconds} s - preStop ${preStop} s - shutdown ${timeoutMs / 1000} s`).to.be.at.least(5);
  });

  it('migrations run once per pod start, in an init container of the same image, before the service', () => {
    const objects = renders.default();
    const pod = find(objects, 'Deployment', 'baedal').spec.template.spec;
    const app = appContainer(objects);
    expect(pod.initContainers).to.have.length(1);
    const migrate = pod.initContainers[0];
    expect(migrate.image).to.equal(app.image);
    expect([...(migrate.command ?? []), ...(migrate.args ?? [])]).to.deep.equal(['node', 'dist/migrate.js']);
    expect(migrate.envFrom, 'the same DATABASE_URL and settings as the service').to.deep.equal(app.envFrom);
    expect(existsSync(join(ROOT, 'src/migrate.ts')), 'src/migrate.ts compiles to dist/migrate.js').to.equal(true);
  });

  it('configuration: the Secret keeps its placeholder, METRICS_TOKEN and NOTIFY_WEBHOOK_SECRET come from it when present', () => {
    const objects = renders.default();
    const secret = find(objects, 'Secret', 'baedal-secrets');
    expect(secret.stringData.AUTH_SECRET, 'the app refuses this value in production').to.equal(SECRET_PLACEHOLDER);
    for (const name of ['METRICS_TOKEN', 'NOTIFY_WEBHOOK_SECRET']) {
      const variable = appContainer(objects).env.find((e: any) => e.name === name);
      expect(variable.valueFrom.secretKeyRef, name).to.deep.equal({ name: secret.metadata.name, key: name, optional: true });
    }
  });

  it('every workload runs compiled JavaScript as a numeric non-root user, never TypeScript through tsx', () => {
    const dockerUser = /^USER\s+(\d+)/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))?.[1];
    for (const objects of [renders.default(), renders.keda()]) {
      for (const o of objects.filter((x) => x.spec?.template?.spec)) {
        const pod = o.spec.template.spec;
        for (const c of containers(o)) {
          const line = [...(c.command ?? []), ...(c.args ?? [])].join(' ');
          expect(line, `${o.metadata.name}/${c.name}`).not.to.match(/tsx|\.ts\b/);
          if (c.image.startsWith('baedal:')) expect(c.securityContext.readOnlyRootFilesystem).to.equal(true);
        }
        expect(pod.securityContext.runAsNonRoot, o.metadata.name).to.equal(true);
        expect(pod.securityContext.runAsUser, o.metadata.name).to.be.greaterThan(0);
        expect(String(pod.securityContext.runAsUser), 'the Dockerfile USER').to.equal(dockerUser);
      }
    }
    const compose = parseYaml(readFileSync(join(ROOT, 'compose.yaml'), 'utf8'));
    for (const [name, service] of Object.entries<any>(compose.services)) {
      expect((service.command ?? []).join(' '), `compose ${name}`).not.to.match(/tsx|\.ts\b/);
    }
  });

  it('Services and the PDB select the pods they are meant for, on ports the pods name', () => {
    const objects = [...renders.default(), ...renders.demoDeps()];
    const templates = objects.filter((o) => o.spec?.template?.metadata?.labels);
    const selects = (selector: Record<string, string>, labels: Record<string, string>) =>
      Object.entries(selector).every(([k, v]) => labels[k] === v);
    for (const o of objects.filter((x) => x.kind === 'Service' || x.kind === 'PodDisruptionBudget')) {
      const selector = o.kind === 'Service' ? o.spec.selector : o.spec.selector.matchLabels;
      const pods = templates.filter((t) => selects(selector, t.spec.template.metadata.labels));
      expect(pods.map((p) => p.metadata.name), `${o.kind} ${o.metadata.name}`).to.deep.equal([o.metadata.name]);
      if (o.kind === 'Service') {
        const ports = pods[0]!.spec.template.spec.containers.flatMap((c: any) => c.ports ?? []);
        for (const p of o.spec.ports) expect(ports.map((x: any) => x.name), `${o.metadata.name} targetPort`).to.include(p.targetPort);
      }
    }
    for (const w of templates) expect(selects(w.spec.selector.matchLabels, w.spec.template.metadata.labels), w.metadata.name).to.equal(true);
  });

  it('demo Redis keeps an append-only file, fsynced every second, on a volume, and never evicts', () => {
    const objects = renders.demoDeps();
    const redis = find(objects, 'StatefulSet', 'redis');
    const container = redis.spec.template.spec.containers[0];
    const args = flags(container.args);
    expect(args.get('--appendonly')).to.equal('yes');
    expect(args.get('--appendfsync')).to.equal('everysec');
    expect(args.get('--maxmemory-policy'), 'BullMQ needs noeviction').to.equal('noeviction');
    const dir = args.get('--dir');
    const mount = container.volumeMounts.find((m: any) => m.mountPath === dir);
    expect(mount, `a volume at ${dir}`).to.not.equal(undefined);
    expect(redis.spec.volumeClaimTemplates.map((v: any) => v.metadata.name)).to.include(mount.name);
  });
});
