// The VM groups page's form: a group's name, description and rule, read
// into the body of POST /vm-groups and PUT /vm-groups/{id}.
import type { BatchAction, GroupRule, VMBatchBody, VMGroupInput } from '../api/types';
export type { BatchAction, VMBatchBody };
import { LABEL_KEY, MAX_LABELS, MAX_LABEL_VALUE, type FieldProblem } from './vmfields';

/** The most VMs one batch may name (httpapi maxBatch). */
export const MAX_BATCH = 500;

/** The form's state: the rule's lists as text (tags one a line, labels key=value a line). */
export interface GroupDraft {
  name: string;
  description: string;
  site: string;
  name_glob: string;
  folder: string;
  cluster: string;
  host: string;
  tags: string;
  labels: string;
}

export const emptyGroupDraft = (): GroupDraft => ({
  name: '',
  description: '',
  site: '',
  name_glob: '',
  folder: '',
  cluster: '',
  host: '',
  tags: '',
  labels: '',
});

/** groupDraftOf is the form of a stored group. */
export function groupDraftOf(g: { name: string; description?: string; rule?: GroupRule | null }): GroupDraft {
  const r = g.rule ?? {};
  return {
    name: g.name,
    description: g.description ?? '',
    site: r.site ?? '',
    name_glob: r.name_glob ?? '',
    folder: r.folder ?? '',
    cluster: r.cluster ?? '',
    host: r.host ?? '',
    tags: (r.tags ?? []).join('\n'),
    labels: Object.entries(r.labels ?? {})
      .map(([k, v]) => k + '=' + v)
      .join('\n'),
  };
}

const lines = (s: string): string[] =>
  s
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');

/** labelLines reads labels written key=value one a line; ok is false when a line is not that. */
export function labelLines(text: string): { labels: Record<string, string>; ok: boolean } {
  const labels: Record<string, string> = {};
  let ok = true;
  for (const l of lines(text)) {
    const eq = l.indexOf('=');
    const key = (eq < 0 ? l : l.slice(0, eq)).trim();
    if (eq < 0 || !LABEL_KEY.test(key) || [...l.slice(eq + 1).trim()].length > MAX_LABEL_VALUE) ok = false;
    else labels[key] = l.slice(eq + 1).trim();
  }
  if (Object.keys(labels).length > MAX_LABELS) ok = false;
  return { labels, ok };
}

/** The actions of POST /vms/batch this console offers (all of them). */
export const BATCH_ACTIONS: readonly BatchAction[] = ['add_to_group', 'remove_from_group', 'set_labels', 'forget'];

/**
 * batchBodyOf is the batch request for the selected VMs, or the problems
 * (API field names; "confirm" is the form's own) that keep it from being
 * sent. Forgetting drops the VMs' user fields and group memberships, so it
 * is sent only once confirmed.
 */
export function batchBodyOf(
  vms: string[],
  action: BatchAction,
  group: string,
  labelsText: string,
  confirmed = false,
): { body: VMBatchBody; problems: FieldProblem[] } {
  const problems: FieldProblem[] = [];
  const body: VMBatchBody = { vms, action };
  if (vms.length === 0) problems.push({ field: 'vms', key: 'batch.noneSelected' });
  else if (vms.length > MAX_BATCH) problems.push({ field: 'vms', key: 'batch.tooMany' });
  if (action === 'forget') {
    if (!confirmed) problems.push({ field: 'confirm', key: 'batch.forgetConfirmRequired' });
  } else if (action === 'set_labels') {
    const { labels, ok } = labelLines(labelsText);
    if (!ok) problems.push({ field: 'labels', key: 'groups.labelsBad' });
    body.labels = labels;
  } else if (group === '') problems.push({ field: 'group', key: 'batch.groupRequired' });
  else body.group = group;
  return { body, problems };
}

/** groupInputOf is the API body of the form, or the problems (API field names) that keep it from being sent. */
export function groupInputOf(d: GroupDraft): { body: VMGroupInput; problems: FieldProblem[] } {
  const problems: FieldProblem[] = [];
  const name = d.name.trim();
  if (name === '') problems.push({ field: 'name', key: 'groups.nameRequired' });
  const rule: GroupRule = {};
  for (const k of ['site', 'name_glob', 'folder', 'cluster', 'host'] as const) {
    const v = d[k].trim();
    if (v !== '') rule[k] = v;
  }
  const tags = lines(d.tags);
  if (tags.length > 0) rule.tags = tags;
  const { labels, ok } = labelLines(d.labels);
  if (!ok) problems.push({ field: 'rule.labels', key: 'groups.labelsBad' });
  if (Object.keys(labels).length > 0) rule.labels = labels;
  return { body: { name, description: d.description.trim(), rule }, problems: problems.filter((p, i) => problems.findIndex((q) => q.field === p.field) === i) };
}

/** ruleText is a short, language-neutral account of a rule for the list ("" when none). */
export function ruleText(r: GroupRule | null | undefined): string {
  if (!r) return '';
  const parts: string[] = [];
  if (r.site) parts.push('site=' + r.site);
  if (r.name_glob) parts.push('name~' + r.name_glob);
  if (r.folder) parts.push('folder^' + r.folder);
  if (r.cluster) parts.push('cluster=' + r.cluster);
  if (r.host) parts.push('host=' + r.host);
  if (r.tags?.length) parts.push('tags∋' + r.tags.join('|'));
  for (const [k, v] of Object.entries(r.labels ?? {})) parts.push(k + '=' + v);
  return parts.join(' ');
}

/** How a VM belongs to a group, from GET /vms/{id}'s static and by_rule. */
export type Membership = 'static' | 'rule' | 'both';

/**
 * membershipOf says whether a VM is a group's member by hand, by the
 * group's rule, or both. A group listed with neither flag (an older
 * aggregator) is taken as a membership by hand, which is what the list
 * meant before the flags.
 */
export function membershipOf(g: { static?: boolean; by_rule?: boolean }): Membership {
  if (g.by_rule && g.static) return 'both';
  if (g.by_rule) return 'rule';
  return 'static';
}
