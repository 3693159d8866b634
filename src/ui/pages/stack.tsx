import { useContext, useState } from 'preact/hooks';
import { api, ApiError, type Collection, type Container, type Host, type Service, type Stack, toApiError } from '../api.js';
import { ApiLink, ErrorText, Live, Paged, State, useLoad } from '../components.js';


function Scale({ svc }: { svc: Service }) {
  const [value, setValue] = useState<string | null>(null);
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const set = async (n: number) => {
    try {
      await api('PUT', `/v1/services/${svc.id}`, { scale: n });
      setValue(null);
      setError(undefined);
    } catch (err) {
      setError(toApiError(err));
    }
  };
  if (svc.global || svc.kind === 'externalService' || svc.kind === 'dnsService') return <span>{svc.global ? 'global' : '—'}</span>;
  const id = `scale-${svc.id}`;
  return (
    <form
      class="inline"
      onSubmit={(e) => {
        e.preventDefault();
        void set(Number(value ?? svc.scale));
      }}
    >
      <button type="button" aria-label={`scale ${svc.name} down`} disabled={svc.scale === 0} onClick={() => void set(svc.scale - 1)}>
        −
      </button>
      <label class="sr-only" for={id}>
        Scale of {svc.name}
      </label>
      <input id={id} name="scale" class="num" type="number" min={0} value={value ?? String(svc.scale)} onInput={(e) => setValue(e.currentTarget.value)} />
      <button type="button" aria-label={`scale ${svc.name} up`} onClick={() => void set(svc.scale + 1)}>
        +
      </button>
      {value !== null ? <button type="submit">Set</button> : null}
      <ErrorText error={error} />
    </form>
  );
}

function Upgrade({ svc }: { svc: Service }) {
  const [image, setImage] = useState('');
  const [batchSize, setBatchSize] = useState('');
  const [config, setConfig] = useState('');
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const act = async (action: string, body: unknown) => {
    try {
      await api('POST', `/v1/services/${svc.id}?action=${action}`, body);
      setError(undefined);
      setImage('');
      setConfig('');
    } catch (err) {
      setError(toApiError(err));
    }
  };
  if (svc.kind === 'externalService' || svc.kind === 'dnsService') return null;
  const up = svc.upgrade;
  if (up) {
    const total = svc.global ? undefined : svc.scale;
    const left = up.remaining?.length ?? 0;
    const inBatch = up.batch?.length ?? 0;
    return (
      <div class="upgrade" aria-live="polite">
        <p class="progress" data-state={svc.state}>
          {svc.state === 'upgrading'
            ? `Upgrading: ${inBatch} replacing now, ${left} to go${total !== undefined ? ` of ${total}` : ''}`
            : 'Upgraded: the new containers run; the old ones are kept for a rollback'}
        </p>
        <button type="button" onClick={() => void act('finishupgrade', {})}>
          Finish upgrade
        </button>
        <button type="button" onClick={() => void act('rollback', {})}>
          Roll back
        </button>
        <ErrorText error={error} />
      </div>
    );
  }
  const id = `upgrade-${svc.id}`;
  return (
    <form
      class="inline upgrade"
      onSubmit={(e) => {
        e.preventDefault();
        // Config changes: a partial launch config (JSON) the control plane merges over the current one.
        let changes: Record<string, unknown> = {};
        if (config.trim()) {
          try {
            const v = JSON.parse(config) as unknown;
            if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
            changes = v as Record<string, unknown>;
          } catch (err) {
            setError(new ApiError(400, 'InvalidJson', `the config changes must be a JSON object, e.g. {"environment": {"MODE": "x"}} (${err instanceof Error ? err.message : String(err)})`, 'launchConfig'));
            return;
          }
        }
        const strategy: Record<string, unknown> = { launchConfig: { ...changes, ...(image.trim() ? { image: image.trim() } : {}) } };
        if (batchSize.trim()) strategy.batchSize = Number(batchSize);
        void act('upgrade', { inServiceStrategy: strategy });
      }}
    >
      <label class="sr-only" for={id}>
        New image of {svc.name}
      </label>
      <input id={id} name="image" placeholder={svc.launchConfig?.image ?? 'image'} value={image} onInput={(e) => setImage(e.currentTarget.value)} />
      <label class="sr-only" for={`${id}-batch`}>
        Batch size
      </label>
      <input id={`${id}-batch`} name="batchSize" class="num" type="number" min={1} placeholder="batch" value={batchSize} onInput={(e) => setBatchSize(e.currentTarget.value)} />
      <button type="submit">Upgrade</button>
      <details class="config-changes">
        <summary>Config changes</summary>
        <label for={`${id}-config`}>Launch config changes (JSON, merged over the current one: labels and environment key by key)</label>
        <textarea id={`${id}-config`} name="launchConfig" rows={4} spellcheck={false} placeholder={'{"environment": {"MODE": "x"}}'} value={config} onInput={(e) => setConfig(e.currentTarget.value)} />
      </details>
      <ErrorText error={error} />
    </form>
  );
}

function health(cs: Container[]): string {
  const running = cs.filter((c) => c.state === 'running').length;
  const checked = cs.filter((c) => c.healthState !== null);
  if (checked.length === 0) return `${running}/${cs.length} running`;
  return `${checked.filter((c) => c.healthState === 'healthy').length}/${cs.length} healthy`;
}

export function StackPage({ id }: { id: string }) {
  const { envId } = useContext(Live);
  const { data, error } = useLoad(
    async (signal) => {
      const [stack, services, containers, hosts] = await Promise.all([
        api<Stack>('GET', `/v1/stacks/${encodeURIComponent(id)}`, undefined, signal),
        api<Collection<Service>>('GET', `/v1/services?stackId=${encodeURIComponent(id)}`, undefined, signal),
        api<Collection<Container>>('GET', `/v1/containers?stackId=${encodeURIComponent(id)}`, undefined, signal),
        api<Collection<Host>>('GET', `/v1/hosts?environmentId=${encodeURIComponent(envId)}`, undefined, signal),
      ]);
      return { stack, services: services.data, containers: containers.data, hosts: new Map(hosts.data.map((h) => [h.id, h.name])) };
    },
    [id],
  );
  if (error) return <ErrorText error={error} />;
  if (!data) return <p aria-busy="true">Loading…</p>;
  const byService = new Map<string, Container[]>();
  for (const c of data.containers) {
    if (!c.serviceId) continue;
    const list = byService.get(c.serviceId);
    if (list) list.push(c);
    else byService.set(c.serviceId, [c]);
  }
  return (
    <section>
      <p>
        <a href="#/stacks">Stacks</a> / {data.stack.name}
      </p>
      <h2>
        {data.stack.name} <State value={data.stack.state} /> <ApiLink self={data.stack.links?.self} />
      </h2>
      <Paged
        label="services"
        items={data.services}
        head={
          <tr>
            <th>Service</th>
            <th>Image</th>
            <th>State</th>
            <th>Scale</th>
            <th>Health</th>
            <th>Upgrade</th>
            <th />
          </tr>
        }
        row={(s) => {
          const cs = byService.get(s.id) ?? [];
          return [
            <tr key={s.id} data-service={s.name} class="service">
              <td>
                {s.name} <span class="muted">{s.kind === 'service' ? '' : s.kind}</span>
              </td>
              <td>{s.launchConfig?.image ?? ''}</td>
              <td>
                <State value={s.state} />
              </td>
              <td>
                <Scale svc={s} />
              </td>
              <td class="health">{health(cs)}</td>
              <td>
                <Upgrade svc={s} />
              </td>
              <td>
                <ApiLink self={s.links?.self} />
              </td>
            </tr>,
            <tr key={`${s.id}-containers`} class="containers">
              <td colSpan={7}>
                <ul aria-label={`containers of ${s.name}`}>
                  {cs.map((c) => (
                    <li key={c.id} data-container={c.name}>
                      <a class="name" href={`#/containers/${c.id}`}>
                        {c.name}
                      </a> <State value={c.state} />
                      {c.healthState ? <State value={c.healthState} /> : null} <span class="muted">on</span> {c.hostId ? (data.hosts.get(c.hostId) ?? c.hostId) : 'unscheduled'}{' '}
                      <code>{c.primaryIpAddress ?? ''}</code> {c.generation === 'previous' ? <span class="muted">(previous)</span> : null} <ApiLink self={c.links?.self} />
                    </li>
                  ))}
                </ul>
              </td>
            </tr>,
          ];
        }}
      />
    </section>
  );
}
