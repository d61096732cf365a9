// Reads the Kubernetes manifests under k8s/ the way `kubectl apply -k` would, without a cluster or
// a kustomize binary: a renderer for exactly the kustomization features this repository uses,
// which refuses any other, and the Kubernetes JSON schemas (kubernetes-models) to validate objects.
// When kubectl is on PATH, test/ops/k8s.test.ts also compares this renderer with `kubectl kustomize`.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const K8S = join(ROOT, 'k8s');

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: any;
}

const KNOWN_FIELDS = new Set(['apiVersion', 'kind', 'namespace', 'labels', 'resources', 'components', 'patches', 'images']);
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'PersistentVolume', 'StorageClass', 'PriorityClass', 'IngressClass']);
const POD_TEMPLATE_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job']);

/** Parses every YAML document of a file; a syntax error fails with the file's name. */
export function readYaml(file: string): any[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  const out: any[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`${relative(ROOT, file)}: ${doc.errors[0]!.message}`);
    const value = doc.toJS();
    if (value !== null && value !== undefined) out.push(value);
  }
  return out;
}

function kustomizationOf(dir: string): any {
  const file = join(dir, 'kustomization.yaml');
  if (!existsSync(file)) throw new Error(`${relative(ROOT, dir)} has no kustomization.yaml`);
  const [k] = readYaml(file);
  for (const key of Object.keys(k)) {
    if (!KNOWN_FIELDS.has(key)) throw new Error(`${relative(ROOT, file)}: the test renderer does not know "${key}"; extend test/support/manifests.ts`);
  }
  return k;
}

const identity = (o: K8sObject) => `${o.apiVersion.split('/').length > 1 ? o.apiVersion.split('/')[0] : ''}/${o.kind}/${o.metadata.name}`;

/** Applies a patch entry; only whole-object deletion (`$patch: delete`) is supported. */
function applyPatch(objects: K8sObject[], entry: any, where: string): K8sObject[] {
  const keys = Object.keys(entry);
  if (keys.length !== 1 || typeof entry.patch !== 'string') throw new Error(`${where}: only inline "patch:" entries are supported`);
  const [patch] = parseAllDocuments(entry.patch).map((d) => d.toJS());
  if (patch?.$patch !== 'delete') throw new Error(`${where}: only "$patch: delete" patches are supported`);
  const target = identity(patch as K8sObject);
  const kept = objects.filter((o) => identity(o) !== target);
  if (kept.length !== objects.length - 1) throw new Error(`${where}: the delete patch matched ${objects.length - kept.length} objects (${target})`);
  return kept;
}

function podSpecs(o: K8sObject): any[] {
  if (POD_TEMPLATE_KINDS.has(o.kind)) return [o.spec?.template?.spec].filter(Boolean);
  if (o.kind === 'CronJob') return [o.spec?.jobTemplate?.spec?.template?.spec].filter(Boolean);
  if (o.kind === 'Pod') return [o.spec].filter(Boolean);
  return [];
}

/** Renders a kustomization folder (or a component, when `component` is true). */
export function renderKustomization(dir: string, opts: { component?: boolean; extraComponents?: string[] } = {}): K8sObject[] {
  const k = kustomizationOf(dir);
  const where = relative(ROOT, join(dir, 'kustomization.yaml'));
  const expectedKind = opts.component ? 'Component' : 'Kustomization';
  if (k.kind !== expectedKind) throw new Error(`${where}: kind ${k.kind}, expected ${expectedKind}`);
  let objects: K8sObject[] = [];
  for (const entry of k.resources ?? []) {
    const path = resolve(dir, entry);
    if (!existsSync(path)) throw new Error(`${where}: resource ${entry} does not exist`);
    objects.push(...(statSync(path).isDirectory() ? renderKustomization(path) : (readYaml(path) as K8sObject[])));
  }
  for (const entry of [...(k.components ?? []), ...(opts.extraComponents ?? [])]) {
    const path = resolve(dir, entry);
    const component = kustomizationOf(path);
    if (component.kind !== 'Component') throw new Error(`${where}: ${entry} is not a Component`);
    for (const key of ['namespace', 'labels', 'images', 'components']) {
      if (component[key] !== undefined) throw new Error(`${relative(ROOT, path)}: the test renderer does not support "${key}" in a component`);
    }
    for (const r of component.resources ?? []) objects.push(...(readYaml(resolve(path, r)) as K8sObject[]));
    for (const p of component.patches ?? []) objects = applyPatch(objects, p, relative(ROOT, path));
  }
  for (const p of k.patches ?? []) objects = applyPatch(objects, p, where);
  if (typeof k.namespace === 'string') {
    for (const o of objects) if (!CLUSTER_SCOPED.has(o.kind)) o.metadata.namespace = k.namespace;
  }
  for (const set of k.labels ?? []) {
    if (set.includeSelectors !== false) throw new Error(`${where}: the test renderer supports labels with includeSelectors: false only`);
    for (const o of objects) {
      o.metadata.labels = { ...o.metadata.labels, ...set.pairs };
      if (set.includeTemplates === true) {
        const template = o.kind === 'CronJob' ? o.spec?.jobTemplate?.spec?.template : POD_TEMPLATE_KINDS.has(o.kind) ? o.spec?.template : undefined;
        if (template) template.metadata = { ...template.metadata, labels: { ...template.metadata?.labels, ...set.pairs } };
        for (const claim of o.kind === 'StatefulSet' ? (o.spec?.volumeClaimTemplates ?? []) : []) {
          claim.metadata = { ...claim.metadata, labels: { ...claim.metadata?.labels, ...set.pairs } };
        }
      }
    }
  }
  for (const image of k.images ?? []) {
    for (const o of objects) {
      for (const spec of podSpecs(o)) {
        for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
          const [name, tag] = String(c.image).split(':');
          if (name !== image.name) continue;
          c.image = `${image.newName ?? name}${image.newTag ?? tag ? `:${image.newTag ?? tag}` : ''}`;
        }
      }
    }
  }
  return objects;
}

/** The schemas of the custom resources the manifests use, by apiVersion; the others are Kubernetes' own. */
const CUSTOM_SCHEMAS: Record<string, string> = {
  'keda.sh/v1alpha1': '@kubernetes-models/keda/keda.sh/v1alpha1',
  'monitoring.coreos.com/v1': '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1',
};

/** Validates an object against the Kubernetes (KEDA, Prometheus Operator) JSON schema for its apiVersion and kind. */
export async function validateObject(o: K8sObject): Promise<void> {
  const module = CUSTOM_SCHEMAS[o.apiVersion] ?? `kubernetes-models/${o.apiVersion}`;
  const models = (await import(module)) as Record<string, new (data: unknown) => { validate(): void }>;
  const Model = models[o.kind];
  if (!Model) throw new Error(`no schema for ${o.apiVersion} ${o.kind}`);
  new Model(o).validate();
}

export function find(objects: K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && o.metadata.name === name);
  if (found.length !== 1) throw new Error(`expected one ${kind} ${name}, found ${found.length}`);
  return found[0]!;
}
