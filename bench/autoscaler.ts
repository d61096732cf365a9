// What the Kubernetes autoscaler would decide from a run's figures, with its settings read from the
// manifests it runs with (k8s/hpa.yaml, k8s/deployment.yaml, k8s/keda/scaledobject.yaml).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

export interface Autoscaling {
  min: number;
  max: number;
  cpuTargetPercent: number;
  cpuRequestCores: number;
  backlogTarget: number;
  backlogQuery: string;
}

/** The autoscaler's settings from the manifests under `root`/k8s. */
export function readAutoscaling(root = '.'): Autoscaling {
  const docs = (file: string) => parseAllDocuments(readFileSync(join(root, file), 'utf8')).map((d) => d.toJS() as any);
  const hpa = docs('k8s/hpa.yaml').find((d) => d?.kind === 'HorizontalPodAutoscaler');
  const deployment = docs('k8s/deployment.yaml').find((d) => d?.kind === 'Deployment');
  const scaled = docs('k8s/keda/scaledobject.yaml').find((d) => d?.kind === 'ScaledObject');
  const container = deployment.spec.template.spec.containers.find((c: any) => c.name === 'baedal');
  const cpu = String(container.resources.requests.cpu);
  const prometheus = scaled.spec.triggers.find((t: any) => t.type === 'prometheus');
  return {
    min: hpa.spec.minReplicas,
    max: hpa.spec.maxReplicas,
    cpuTargetPercent: hpa.spec.metrics.find((m: any) => m.type === 'Resource').resource.target.averageUtilization,
    cpuRequestCores: cpu.endsWith('m') ? Number(cpu.slice(0, -1)) / 1000 : Number(cpu),
    backlogTarget: Number(prometheus.metadata.threshold),
    backlogQuery: prometheus.metadata.query,
  };
}

/** The HPA does nothing while the ratio of metric to target is within 10 % of 1. */
export const TOLERANCE = 0.1;

/** The HPA's rule for one metric: ceil(current × metric ÷ target), unless within the tolerance. */
export function proposal(current: number, metric: number, target: number): number {
  const ratio = metric / target;
  return Math.abs(ratio - 1) <= TOLERANCE ? current : Math.ceil(current * ratio);
}

export interface HpaDecision {
  /** Average CPU of the replicas, in % of the pod's request (what the HPA's Utilization target reads). */
  cpuPercentOfRequest: number;
  cpuProposal: number;
  /** Average event backlog over the window, when it was sampled. */
  backlogAvg?: number;
  backlogMax?: number;
  backlogProposal?: number;
  /** The larger proposal, within min..max. */
  desired: number;
}

/** The decision at `replicas` replicas using `cpuCores` each (on average over the window), and the backlog if sampled. */
export function hpaDecision(a: Autoscaling, replicas: number, cpuCores: readonly number[], backlog?: { avg: number; max: number }): HpaDecision {
  const cpuPercentOfRequest = (cpuCores.reduce((s, c) => s + c, 0) / Math.max(1, cpuCores.length) / a.cpuRequestCores) * 100;
  const cpuProposal = proposal(replicas, cpuPercentOfRequest, a.cpuTargetPercent);
  // KEDA's AverageValue: the target is per replica, so the proposal is ceil(total ÷ target).
  const backlogProposal = backlog ? Math.ceil(backlog.avg / a.backlogTarget) : undefined;
  const desired = Math.min(a.max, Math.max(a.min, cpuProposal, backlogProposal ?? 0));
  return { cpuPercentOfRequest, cpuProposal, ...(backlog && { backlogAvg: backlog.avg, backlogMax: backlog.max, backlogProposal }), desired };
}

/** One line: the CPU proposal, the backlog proposal when there is one, the decision. */
export function describeDecision(a: Autoscaling, replicas: number, d: HpaDecision): string {
  const cpu = `CPU ${d.cpuPercentOfRequest.toFixed(0)} % of the ${a.cpuRequestCores * 1000}m request (target ${a.cpuTargetPercent} %) → ceil(${replicas} × ${d.cpuPercentOfRequest.toFixed(0)} ÷ ${a.cpuTargetPercent}) = ${d.cpuProposal}`;
  const backlog =
    d.backlogProposal === undefined ? '' : `; backlog ${d.backlogAvg!.toFixed(1)} jobs (max ${d.backlogMax}; target ${a.backlogTarget} per replica) → ${d.backlogProposal}`;
  return `autoscaler: ${cpu}${backlog}; desired ${d.desired} (within ${a.min}..${a.max})`;
}
