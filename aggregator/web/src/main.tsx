import { render, type ComponentType } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, restore, session } from './api';
import { ErrorBox, Loading } from './components/common';
import { Layout } from './components/Layout';
import { initLocale, t } from './i18n';
import { useAsync } from './lib/hooks';
import { me } from './lib/me';
import { match, path, startRouter } from './lib/router';
import { applyTheme } from './lib/theme';
import { Login } from './pages/Login';
import { Overview, prefetchFleet } from './pages/Overview';
import './styles.css';

type Page = ComponentType<{ params: Record<string, string> }>;
type Loader = () => Promise<{ default: Page }>;

/** lazy loads a page's chunk the first time its route is visited. */
function lazy(load: Loader): Page {
  let loaded: Page | null = null;
  return function Lazy(props) {
    const [C, setC] = useState<Page | null>(loaded);
    const [err, setErr] = useState<unknown>(null);
    useEffect(() => {
      if (C) return;
      load().then(
        (m) => setC(() => (loaded = m.default)),
        (e: unknown) => setErr(e),
      );
    }, []);
    if (err) return <ErrorBox error={err} />;
    return C ? <C {...props} /> : <Loading />;
  };
}

const routes: [string, Page][] = [
  ['/', Overview],
  ['/vms', lazy(() => import('./pages/VMList'))],
  ['/vms/:id', lazy(() => import('./pages/VMDetail'))],
  ['/vm-groups', lazy(() => import('./pages/VMGroups'))],
  ['/users', lazy(() => import('./pages/Users'))],
  ['/audit', lazy(() => import('./pages/AuditLog'))],
  ['/alerts', lazy(() => import('./pages/Alerts'))],
  ['/alerts/history', lazy(() => import('./pages/Alerts'))],
  ['/alerts/silences', lazy(() => import('./pages/Silences'))],
  ['/alerts/rules', lazy(() => import('./pages/Rules'))],
  ['/alerts/rules/:id', lazy(() => import('./pages/RuleEditor'))],
  ['/alerts/channels', lazy(() => import('./pages/Channels'))],
  ['/alerts/:id', lazy(() => import('./pages/AlertDetail'))],
  ['/sites/:id', lazy(() => import('./pages/SiteDetail'))],
  ['/hosts', lazy(() => import('./pages/Hosts'))],
  ['/clusters', lazy(() => import('./pages/Hosts'))],
  ['/datastores', lazy(() => import('./pages/Datastores'))],
  ['/hygiene', lazy(() => import('./pages/Hygiene'))],
  ['/history', lazy(() => import('./pages/History'))],
  ['/realtime', lazy(() => import('./pages/Realtime'))],
  ['/login-log', lazy(() => import('./pages/LoginLog'))],
  ['/sessions', lazy(() => import('./pages/Sessions'))],
  ['/tokens', lazy(() => import('./pages/Tokens'))],
  ['/backups', lazy(() => import('./pages/Backups'))],
  ['/system', lazy(() => import('./pages/System'))],
];

function NotFound() {
  return (
    <div class="page">
      <h1>{t('notFound.title')}</h1>
      <p>
        <a href="/">{t('notFound.home')}</a>
      </p>
    </div>
  );
}

function Signed() {
  const who = useAsync((s) => api.me(s), []);
  useEffect(() => {
    if (path.value === '/') prefetchFleet();
  }, []);
  useEffect(() => {
    if (who.data) me.value = who.data;
  }, [who.data]);
  if (!me.value) return who.error ? <ErrorBox error={who.error} onRetry={who.reload} /> : <Loading />;
  const p = path.value;
  for (const [pattern, Page] of routes) {
    const params = match(pattern, p);
    if (params) {
      return (
        <Layout>
          <Page key={pattern} params={params} />
        </Layout>
      );
    }
  }
  return (
    <Layout>
      <NotFound />
    </Layout>
  );
}

function App() {
  switch (session.value) {
    case 'unknown':
      return <Loading />;
    case 'out':
      me.value = null;
      return <Login />;
    default:
      return <Signed />;
  }
}

async function main() {
  applyTheme();
  startRouter();
  await Promise.all([initLocale(), restore()]);
  const root = document.getElementById('app');
  if (root) render(<App />, root);
}

void main();
