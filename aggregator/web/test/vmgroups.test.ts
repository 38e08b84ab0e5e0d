import { describe, expect, it } from 'vitest';
import { batchBodyOf, emptyGroupDraft, groupDraftOf, groupInputOf, labelLines, membershipOf, ruleText } from '../src/lib/vmgroups';

describe('VM group form', () => {
  it('requires a name', () => {
    expect(groupInputOf(emptyGroupDraft()).problems).toEqual([{ field: 'name', key: 'groups.nameRequired' }]);
  });
  it('sends only the rule fields filled in', () => {
    const r = groupInputOf({ ...emptyGroupDraft(), name: ' web ', site: 'dc-east', name_glob: 'web-*', tags: 'env/prod\n\n tier/web ', labels: 'team = shop\n' });
    expect(r).toEqual({
      body: { name: 'web', description: '', rule: { site: 'dc-east', name_glob: 'web-*', tags: ['env/prod', 'tier/web'], labels: { team: 'shop' } } },
      problems: [],
    });
    expect(groupInputOf({ ...emptyGroupDraft(), name: 'static' }).body.rule).toEqual({});
  });
  it('names the labels field once for bad lines', () => {
    expect(groupInputOf({ ...emptyGroupDraft(), name: 'x', labels: 'novalue\n-bad=1' }).problems).toEqual([{ field: 'rule.labels', key: 'groups.labelsBad' }]);
  });
  it('round-trips a stored group', () => {
    const g = { name: 'db', description: 'databases', rule: { cluster: 'c1', host: 'h1', folder: '/DC/vm/db', tags: ['a/b'], labels: { env: 'prod' } } };
    expect(groupInputOf(groupDraftOf(g)).body).toEqual(g);
  });
  it('summarizes a rule', () => {
    expect(ruleText({ site: 'dc-east', name_glob: 'web-*', labels: { env: 'prod' } })).toBe('site=dc-east name~web-* env=prod');
    expect(ruleText(null)).toBe('');
    expect(ruleText({})).toBe('');
  });
});

describe('VM batch', () => {
  it('reads label lines', () => {
    expect(labelLines('a=1\n b = two words \n\n')).toEqual({ labels: { a: '1', b: 'two words' }, ok: true });
    expect(labelLines('a')).toEqual({ labels: {}, ok: false });
    expect(labelLines('a=' + 'x'.repeat(256)).ok).toBe(false);
    expect(labelLines('').ok).toBe(true);
  });
  it('needs VMs, at most 500', () => {
    expect(batchBodyOf([], 'add_to_group', 'g', '').problems).toEqual([{ field: 'vms', key: 'batch.noneSelected' }]);
    const many = Array.from({ length: 501 }, (_, i) => 'vc:vm-' + i);
    expect(batchBodyOf(many, 'set_labels', '', 'a=1').problems).toEqual([{ field: 'vms', key: 'batch.tooMany' }]);
  });
  it('needs a group for the group actions', () => {
    expect(batchBodyOf(['vc:vm-1'], 'remove_from_group', '', '').problems).toEqual([{ field: 'group', key: 'batch.groupRequired' }]);
    expect(batchBodyOf(['vc:vm-1'], 'add_to_group', 'g1', 'ignored=1')).toEqual({ body: { vms: ['vc:vm-1'], action: 'add_to_group', group: 'g1' }, problems: [] });
  });
  it('sends labels for set_labels (an empty set clears them)', () => {
    expect(batchBodyOf(['vc:vm-1'], 'set_labels', 'g1', 'env=prod').body).toEqual({ vms: ['vc:vm-1'], action: 'set_labels', labels: { env: 'prod' } });
    expect(batchBodyOf(['vc:vm-1'], 'set_labels', '', '').body.labels).toEqual({});
    expect(batchBodyOf(['vc:vm-1'], 'set_labels', '', 'bad').problems).toEqual([{ field: 'labels', key: 'groups.labelsBad' }]);
  });
  it('forgets only once confirmed, with neither group nor labels', () => {
    expect(batchBodyOf(['vc:vm-1'], 'forget', '', '').problems).toEqual([{ field: 'confirm', key: 'batch.forgetConfirmRequired' }]);
    expect(batchBodyOf(['vc:vm-1'], 'forget', 'g1', 'a=1', true)).toEqual({ body: { vms: ['vc:vm-1'], action: 'forget' }, problems: [] });
    expect(batchBodyOf([], 'forget', '', '', true).problems).toEqual([{ field: 'vms', key: 'batch.noneSelected' }]);
  });
});

describe('VM group membership', () => {
  it('tells by hand, by rule and both apart', () => {
    expect(membershipOf({ static: true, by_rule: false })).toBe('static');
    expect(membershipOf({ static: false, by_rule: true })).toBe('rule');
    expect(membershipOf({ static: true, by_rule: true })).toBe('both');
  });
  it('takes a group without the flags as a membership by hand', () => {
    expect(membershipOf({})).toBe('static');
  });
});
