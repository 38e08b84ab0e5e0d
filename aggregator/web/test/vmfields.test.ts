import { describe, expect, it } from 'vitest';
import { batchFailures, fieldOfRow, labelRows, labelsOf, vmPatchOf } from '../src/lib/vmfields';

const stored = { description: 'db', owner: 'ops', labels: { env: 'prod', tier: 'db' } };

describe('label rows', () => {
  it('lists labels sorted and reads them back', () => {
    const rows = labelRows({ tier: 'db', env: 'prod' });
    expect(rows).toEqual([
      { key: 'env', value: 'prod' },
      { key: 'tier', value: 'db' },
    ]);
    expect(labelsOf(rows)).toEqual({ labels: { env: 'prod', tier: 'db' }, problems: [] });
  });
  it('ignores blank rows and trims keys', () => {
    expect(labelsOf([{ key: '', value: '' }, { key: ' team ', value: 'a' }])).toEqual({ labels: { team: 'a' }, problems: [] });
  });
  it('names the row of a bad key, a repeated key, a long value', () => {
    const r = labelsOf([
      { key: '-x', value: '1' },
      { key: 'a', value: '1' },
      { key: 'a', value: '2' },
      { key: 'b', value: 'v'.repeat(256) },
      { key: '', value: 'orphan' },
    ]);
    expect(r.labels).toEqual({ a: '1' });
    expect(r.problems).toEqual([
      { field: 'labels[0]', key: 'vmEdit.labelKeyBad' },
      { field: 'labels[2]', key: 'vmEdit.labelKeyTwice' },
      { field: 'labels[3]', key: 'vmEdit.labelValueLong' },
      { field: 'labels[4]', key: 'vmEdit.labelKeyBad' },
    ]);
  });
  it('accepts what the API accepts', () => {
    for (const k of ['a', 'A1', 'k8s.io/app', 'x_y-z', 'a'.repeat(63)]) expect(labelsOf([{ key: k, value: '' }]).problems).toEqual([]);
    for (const k of ['a'.repeat(64), '_a', 'a b', 'é']) expect(labelsOf([{ key: k, value: '' }]).problems).toHaveLength(1);
  });
  it('refuses more than 50 labels', () => {
    const rows = Array.from({ length: 51 }, (_, i) => ({ key: 'k' + i, value: '' }));
    expect(labelsOf(rows).problems).toEqual([{ field: 'labels', key: 'vmEdit.labelsTooMany' }]);
  });
});

describe('VM patch', () => {
  it('is empty when nothing changed', () => {
    expect(vmPatchOf(stored, { description: 'db', owner: 'ops', labels: labelRows(stored.labels) })).toEqual({ patch: {}, problems: [] });
  });
  it('sends only what changed; labels as a whole set', () => {
    const r = vmPatchOf(stored, { description: 'db', owner: ' alice ', labels: [{ key: 'env', value: 'prod' }] });
    expect(r).toEqual({ patch: { owner: 'alice', labels: { env: 'prod' } }, problems: [] });
    expect(vmPatchOf(stored, { description: '', owner: 'ops', labels: [] }).patch).toEqual({ description: '', labels: {} });
  });
  it('names a field that is too long', () => {
    const r = vmPatchOf(stored, { description: 'x'.repeat(2001), owner: 'o'.repeat(256), labels: labelRows(stored.labels) });
    expect(r.problems.map((p) => p.field)).toEqual(['description', 'owner']);
  });
});

describe('API answers', () => {
  it('shows a label field error beside its row', () => {
    const rows = [{ key: 'a', value: '' }, { key: 'b!', value: '' }];
    expect(fieldOfRow('labels.b!', rows)).toBe('labels[1]');
    expect(fieldOfRow('labels.zz', rows)).toBe('labels');
    expect(fieldOfRow('owner', rows)).toBe('owner');
  });
  it('lists the VMs a batch did not change', () => {
    expect(
      batchFailures([
        { id: 'vc:vm-1', ok: true },
        { id: 'vc:vm-2', ok: false, code: 'VM_NOT_FOUND' },
        { id: 'vc:vm-3', ok: false },
      ]),
    ).toEqual([
      { id: 'vc:vm-2', code: 'VM_NOT_FOUND' },
      { id: 'vc:vm-3', code: 'UNKNOWN' },
    ]);
  });
});
