import { t } from '../i18n';
import { can } from '../lib/me';
import { SubNav } from './common';

/** AlertsNav links the pages of the alert module. */
export function AlertsNav({ current }: { current: string }) {
  const items: [string, string][] = [
    ['/alerts', t('alerts.nav.problems')],
    ['/alerts/history', t('alerts.nav.history')],
    ['/alerts/silences', t('alerts.nav.silences')],
    ['/alerts/rules', t('alerts.nav.rules')],
  ];
  if (can('alert:write')) items.push(['/alerts/channels', t('alerts.nav.channels')]);
  return <SubNav label={t('alerts.nav.label')} items={items} current={current} />;
}
