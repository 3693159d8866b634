// drover's web UI: the Rancher 1.x daily path (hosts, stacks, services, containers) over the public API.
// Served by the control plane at `/` (src/server/ui.ts), built by scripts/build-ui.mjs (esbuild).
import '@xterm/xterm/css/xterm.css';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, loadCreds, setCreds, whenUnauthorized, type Collection, type Environment } from './api.js';
import { Live, useLazy } from './components.js';
import { ApiView } from './pages/api-view.js';
import { BalancersPage } from './pages/balancers.js';
import { HostsPage } from './pages/hosts.js';
import { Login } from './pages/login.js';
import { StackPage } from './pages/stack.js';
import { StacksPage } from './pages/stacks.js';

/** The container page (logs, the xterm.js shell, uPlot stats) loads its code when first opened. */
function LazyContainerPage({ id }: { id: string }) {
  const Page = useLazy(() => import('./pages/container.js').then((m) => m.ContainerPage));
  return Page ? <Page id={id} /> : <p aria-busy="true">Loading…</p>;
}

function useHash(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = () => setHash(location.hash);
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return hash;
}

/**
 * Follows the environment's revision with the API's long-poll watch: each answer moves `revision`, and
 * the pages reload what they show. Errors back off (1 s, up to 15 s) and the page says so.
 */
function useRevision(envId: string): { revision: number; connected: boolean } {
  const [revision, setRevision] = useState(0);
  const [connected, setConnected] = useState(true);
  useEffect(() => {
    if (!envId) return;
    const ac = new AbortController();
    let delay = 1000;
    void (async () => {
      let rev = -1;
      while (!ac.signal.aborted) {
        try {
          if (rev < 0) rev = (await api<Environment>('GET', `/v1/environments/${envId}`, undefined, ac.signal)).revision;
          else rev = (await api<{ revision: number }>('GET', `/v1/environments/${envId}/watch?after=${rev}&timeout=25`, undefined, ac.signal)).revision;
          setRevision(rev);
          setConnected(true);
          delay = 1000;
        } catch {
          if (ac.signal.aborted) return;
          setConnected(false);
          await new Promise((r) => setTimeout(r, delay));
          delay = Math.min(15_000, delay * 2);
        }
      }
    })();
    return () => ac.abort();
  }, [envId]);
  return { revision, connected };
}

function Shell({ onLogout }: { onLogout: () => void }) {
  const hash = useHash();
  const [envs, setEnvs] = useState<Environment[]>([]);
  const [envId, setEnvId] = useState(sessionStorage.getItem('drover.env') ?? '');
  useEffect(() => {
    void api<Collection<Environment>>('GET', '/v1/environments').then((r) => {
      setEnvs(r.data);
      if (!r.data.some((e) => e.id === envId) && r.data[0]) setEnvId(r.data[0].id);
    });
  }, []);
  const live = useRevision(envId);
  const route = hash.replace(/^#/, '') || '/stacks';
  let page;
  if (!envId) page = <p aria-busy="true">Loading…</p>;
  else if (route.startsWith('/api/')) page = <ApiView path={route.slice(4)} />;
  else if (route === '/hosts') page = <HostsPage />;
  else if (route === '/balancers') page = <BalancersPage />;
  else if (route.startsWith('/stacks/')) page = <StackPage id={decodeURIComponent(route.slice(8))} />;
  else if (route.startsWith('/containers/')) page = <LazyContainerPage id={decodeURIComponent(route.slice(12))} />;
  else page = <StacksPage />;
  const nav = (href: string, label: string) => (
    <a href={href} aria-current={route === href.slice(1) || (href === '#/stacks' && route.startsWith('/stacks')) ? 'page' : undefined}>
      {label}
    </a>
  );
  return (
    <Live.Provider value={{ envId, revision: live.revision }}>
      <header>
        <span class="brand">drover</span>
        <nav aria-label="main">
          {nav('#/stacks', 'Stacks')}
          {nav('#/hosts', 'Hosts')}
          {nav('#/balancers', 'Balancers')}
        </nav>
        <label class="env">
          Environment{' '}
          <select
            value={envId}
            onChange={(e) => {
              setEnvId(e.currentTarget.value);
              sessionStorage.setItem('drover.env', e.currentTarget.value);
            }}
          >
            {envs.map((e) => (
              <option key={e.id} value={e.id}>
                {e.name}
              </option>
            ))}
          </select>
        </label>
        <span class={live.connected ? 'live' : 'live off'} role="status">
          {live.connected ? `live · revision ${live.revision}` : 'reconnecting…'}
        </span>
        <button type="button" onClick={onLogout}>
          Log out
        </button>
      </header>
      <main>{page}</main>
    </Live.Provider>
  );
}

function App() {
  const [loggedIn, setLoggedIn] = useState(loadCreds() !== null);
  useEffect(() => whenUnauthorized(() => setLoggedIn(false)), []);
  if (!loggedIn) return <Login onLogin={() => setLoggedIn(true)} />;
  return (
    <Shell
      onLogout={() => {
        setCreds(null);
        setLoggedIn(false);
      }}
    />
  );
}

render(<App />, document.getElementById('app') as HTMLElement);
