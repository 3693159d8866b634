import { useContext, useState } from 'preact/hooks';
import { api, ApiError, type Collection, type Host, type RegistrationToken, toApiError } from '../api.js';
import { ApiLink, ErrorText, Live, State, useLazy, useLoad } from '../components.js';

/** `k=v, k2=v2` → labels; an entry without `=` is an error naming it. */
export function parseLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const i = part.indexOf('=');
    if (i <= 0) throw new ApiError(400, 'InvalidLabel', `"${part}" is not key=value`, 'labels');
    out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

const labelsText = (l: Record<string, string>) =>
  Object.entries(l)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');

function Labels({ host, onSaved }: { host: Host; onSaved: () => void }) {
  const [text, setText] = useState<string | null>(null);
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const value = text ?? labelsText(host.labels);
  const save = async (e: Event) => {
    e.preventDefault();
    try {
      await api('PUT', `/v1/hosts/${host.id}`, { labels: parseLabels(value) });
      setText(null);
      setError(undefined);
      onSaved();
    } catch (err) {
      setError(toApiError(err));
    }
  };
  const id = `labels-${host.id}`;
  return (
    <form class="inline" onSubmit={(e) => void save(e)}>
      <label class="sr-only" for={id}>
        Labels of {host.name}
      </label>
      <input id={id} name="labels" value={value} placeholder="key=value, …" onInput={(e) => setText(e.currentTarget.value)} aria-invalid={error ? 'true' : 'false'} />
      <button type="submit" disabled={text === null}>
        Save
      </button>
      <ErrorText error={error} />
    </form>
  );
}

function Capabilities({ host }: { host: Host }) {
  const caps = Object.entries(host.applied ?? {});
  if (caps.length === 0) return <span class="muted">no report yet</span>;
  return (
    <ul class="caps">
      {caps.map(([name, s]) => (
        <li key={name} class={s.ok === false ? 'bad' : 'good'} title={s.message ?? s.error ?? ''}>
          {name}: {s.state ?? (s.ok === false ? 'failing' : 'ok')}
        </li>
      ))}
    </ul>
  );
}

function Peers({ host, names }: { host: Host; names: Map<string, string> }) {
  const peers = host.network?.peers ?? [];
  if (peers.length === 0) return null;
  return (
    <ul class="peers" aria-label={`network peers of ${host.name}`}>
      {peers.map((p) => (
        <li key={p.hostId} class={p.reachable ? 'good' : 'bad'} title={p.lastError ?? ''}>
          {names.get(p.hostId) ?? p.hostId}: {p.reachable ? `reachable${p.rttMs !== undefined ? ` (${p.rttMs.toFixed(1)} ms)` : ''}` : 'unreachable'}
        </li>
      ))}
    </ul>
  );
}

function AddHost({ envId }: { envId: string }) {
  const [token, setToken] = useState<RegistrationToken | undefined>(undefined);
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const [copied, setCopied] = useState(false);
  const create = async () => {
    try {
      setToken(await api<RegistrationToken>('POST', '/v1/registrationtokens', { environmentId: envId }));
      setError(undefined);
    } catch (err) {
      setError(toApiError(err));
    }
  };
  const copy = async () => {
    if (!token) return;
    try {
      await navigator.clipboard.writeText(token.command);
      setCopied(true);
    } catch {
      // No clipboard permission: select the text so that Ctrl+C copies it.
      const pre = document.getElementById('register-command');
      if (pre) getSelection()?.selectAllChildren(pre);
    }
  };
  return (
    <section class="add-host" aria-label="Add host">
      <button type="button" onClick={() => void create()}>
        Add host
      </button>
      <ErrorText error={error} />
      {token ? (
        <div>
          <p>Run this on the new host (Docker must run there); the agent registers and the host appears below:</p>
          <pre id="register-command" tabIndex={0}>
            {token.command}
          </pre>
          <button type="button" onClick={() => void copy()}>
            {copied ? 'Copied' : 'Copy'}
          </button>
          <p class="muted">
            Without Docker: <code>drover agent {token.registrationUrl}</code>
          </p>
        </div>
      ) : null}
    </section>
  );
}

/** A host's CPU, memory and network samples, charted (the chart's code loads when first asked for). */
function HostStats({ host }: { host: Host }) {
  const [open, setOpen] = useState(false);
  const Chart = useLazy(() => import('./stats-chart.js').then((m) => m.StatsChart), open);
  return (
    <div>
      <button type="button" aria-expanded={open ? 'true' : 'false'} onClick={() => setOpen(!open)}>
        {open ? 'Hide stats' : 'Stats'}
      </button>
      {open && Chart ? <Chart action={`/v1/hosts/${encodeURIComponent(host.id)}?action=stats`} label={`Stats of ${host.name}`} /> : null}
    </div>
  );
}

export function HostsPage() {
  const { envId } = useContext(Live);
  const { data, error, reload } = useLoad((signal) => api<Collection<Host>>('GET', `/v1/hosts?environmentId=${encodeURIComponent(envId)}`, undefined, signal), []);
  const hosts = data?.data ?? [];
  const names = new Map(hosts.map((h) => [h.id, h.name]));
  return (
    <section>
      <h2>Hosts</h2>
      <AddHost envId={envId} />
      <ErrorText error={error} />
      <table aria-label="hosts">
        <thead>
          <tr>
            <th>Host</th>
            <th>State</th>
            <th>Agent IP</th>
            <th>Labels</th>
            <th>Capabilities</th>
            <th>Network</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {hosts.map((h) => (
            <tr key={h.id} data-host={h.name}>
              <td>{h.name}</td>
              <td>
                <State value={h.state} /> <span class="muted">agent {h.agentState}</span>
              </td>
              <td>{h.agentIpAddress}</td>
              <td>
                <Labels host={h} onSaved={reload} />
              </td>
              <td>
                <Capabilities host={h} />
              </td>
              <td>
                <Peers host={h} names={names} />
              </td>
              <td>
                <ApiLink self={h.links?.self} />
                <HostStats host={h} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {data && hosts.length === 0 ? <p class="muted">No hosts yet: "Add host" shows the command that registers one.</p> : null}
    </section>
  );
}
