import type { ComponentChildren } from 'preact';
import { logout } from '../api';
import { t } from '../i18n';
import { can, me } from '../lib/me';
import { path } from '../lib/router';
import { applyTheme, nextTheme, theme } from '../lib/theme';
import { LanguagePicker } from './LanguagePicker';

interface NavItem {
  href: string;
  key: string;
  permission?: string;
}

const NAV: NavItem[] = [
  { href: '/', key: 'nav.overview', permission: 'vm:read' },
  { href: '/vms', key: 'nav.vms', permission: 'vm:read' },
  { href: '/vm-groups', key: 'nav.vmGroups', permission: 'vm:read' },
  { href: '/hosts', key: 'nav.hosts', permission: 'vm:read' },
  { href: '/datastores', key: 'nav.datastores', permission: 'vm:read' },
  { href: '/hygiene', key: 'nav.hygiene', permission: 'vm:read' },
  { href: '/alerts', key: 'nav.alerts', permission: 'alert:read' },
  { href: '/history', key: 'nav.history', permission: 'metric:read' },
  { href: '/realtime', key: 'nav.realtime', permission: 'metric:read' },
  { href: '/users', key: 'nav.users', permission: 'user:read' },
  { href: '/audit', key: 'nav.audit', permission: 'audit:read' },
  { href: '/login-log', key: 'nav.loginLog', permission: 'audit:read' },
  { href: '/sessions', key: 'nav.sessions', permission: 'session:admin' },
  { href: '/backups', key: 'nav.backups', permission: 'backup:admin' },
  { href: '/system', key: 'nav.system', permission: 'system:read' },
  { href: '/tokens', key: 'nav.tokens' },
];

function active(href: string, p: string): boolean {
  return href === '/' ? p === '/' : p === href || p.startsWith(href + '/');
}

export function Layout({ children }: { children: ComponentChildren }) {
  const p = path.value;
  const user = me.value;
  return (
    <div class="shell">
      <a class="skip-link" href="#main">
        {t('nav.skip')}
      </a>
      <header class="topbar">
        <a class="brand" href="/" aria-label={t('app.home')}>
          <svg viewBox="0 0 32 32" width="22" height="22" aria-hidden="true">
            <rect width="32" height="32" rx="6" fill="var(--accent)" />
            <path d="M4 17h6l3-8 5 15 3-7h7" fill="none" stroke="#fff" stroke-width="2.5" stroke-linejoin="round" stroke-linecap="round" />
          </svg>
          <span>{t('app.name')}</span>
        </a>
        <nav aria-label={t('nav.label')}>
          <ul class="nav">
            {NAV.filter((n) => !n.permission || can(n.permission)).map((n) => (
              <li key={n.href}>
                <a href={n.href} aria-current={active(n.href, p) ? 'page' : undefined}>
                  {t(n.key)}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div class="topbar-tools">
          <LanguagePicker id="lang-top" />
          <button
            type="button"
            class="btn btn-ghost"
            onClick={() => applyTheme(nextTheme(theme.value))}
            title={t('theme.toggle')}
          >
            {t('theme.' + theme.value)}
          </button>
          {user && (
            <span class="user" title={user.email}>
              {user.display_name || user.username}
            </span>
          )}
          <button type="button" class="btn btn-ghost" onClick={() => void logout()}>
            {t('action.logout')}
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {children}
      </main>
    </div>
  );
}
