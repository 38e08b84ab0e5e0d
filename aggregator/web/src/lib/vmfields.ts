// The operator's fields of a VM (PATCH /vms/{id}) and the answers of the
// member and batch routes, as pure functions the VM page uses.

import type { VMPatch } from '../api/types';
export type { VMPatch };

/** One label row of the editor; blank rows are ignored. */
export interface LabelRow {
  key: string;
  value: string;
}

/** A problem the editor finds before asking: the API's field name and a catalog key. */
export interface FieldProblem {
  field: string;
  key: string;
}

/** The API's label key rule (httpapi/vmgroups.go labelKeyRE). */
export const LABEL_KEY = /^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$/;
export const MAX_LABELS = 50;
export const MAX_LABEL_VALUE = 255;
export const MAX_DESCRIPTION = 2000;
export const MAX_OWNER = 255;

/** labelRows lists a label set as editor rows, sorted by key. */
export function labelRows(labels: Record<string, string>): LabelRow[] {
  return Object.keys(labels)
    .sort()
    .map((key) => ({ key, value: labels[key] ?? '' }));
}

/** labelsOf reads the rows back into a label set and the problems of the rows (field labels[i]). */
export function labelsOf(rows: LabelRow[]): { labels: Record<string, string>; problems: FieldProblem[] } {
  const labels: Record<string, string> = {};
  const problems: FieldProblem[] = [];
  rows.forEach((r, i) => {
    const key = r.key.trim();
    if (key === '' && r.value === '') return;
    const field = 'labels[' + i + ']';
    if (!LABEL_KEY.test(key)) problems.push({ field, key: 'vmEdit.labelKeyBad' });
    else if (key in labels) problems.push({ field, key: 'vmEdit.labelKeyTwice' });
    else if ([...r.value].length > MAX_LABEL_VALUE) problems.push({ field, key: 'vmEdit.labelValueLong' });
    else labels[key] = r.value;
  });
  if (Object.keys(labels).length > MAX_LABELS) problems.push({ field: 'labels', key: 'vmEdit.labelsTooMany' });
  return { labels, problems };
}

/** The editor's state of a VM's fields. */
export interface VMFieldsDraft {
  description: string;
  owner: string;
  labels: LabelRow[];
}


const sameLabels = (a: Record<string, string>, b: Record<string, string>): boolean => {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => k in b && a[k] === b[k]);
};

/**
 * vmPatchOf is the PATCH body that turns the stored fields into the draft,
 * or the problems that keep it from being sent. An empty patch means
 * nothing changed.
 */
export function vmPatchOf(
  stored: { description: string; owner: string; labels: Record<string, string> },
  d: VMFieldsDraft,
): { patch: VMPatch; problems: FieldProblem[] } {
  const { labels, problems } = labelsOf(d.labels);
  if ([...d.description].length > MAX_DESCRIPTION) problems.push({ field: 'description', key: 'vmEdit.tooLong' });
  if ([...d.owner].length > MAX_OWNER) problems.push({ field: 'owner', key: 'vmEdit.tooLong' });
  const patch: VMPatch = {};
  if (d.description !== stored.description) patch.description = d.description;
  if (d.owner.trim() !== stored.owner) patch.owner = d.owner.trim();
  if (!sameLabels(labels, stored.labels)) patch.labels = labels;
  return { patch, problems };
}

/** An API field error: the field it names and its localized message. */
export interface APIFieldError {
  field: string;
  code: string;
  message: string;
}

/**
 * fieldOfRow maps the API's label field (labels.<key>) to the editor's
 * row field (labels[i]) so the message shows beside its row; other fields
 * are kept.
 */
export function fieldOfRow(field: string, rows: LabelRow[]): string {
  if (!field.startsWith('labels.')) return field;
  const key = field.slice('labels.'.length);
  const i = rows.findIndex((r) => r.key.trim() === key);
  return i < 0 ? 'labels' : 'labels[' + i + ']';
}

/** One VM of a batch or member answer. */
export interface BatchItem {
  id: string;
  ok: boolean;
  code?: string;
}

/** batchFailures lists the items that were not done, with their code. */
export function batchFailures(items: BatchItem[]): { id: string; code: string }[] {
  return items.filter((i) => !i.ok).map((i) => ({ id: i.id, code: i.code || 'UNKNOWN' }));
}
