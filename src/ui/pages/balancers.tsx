import { useContext, useState } from 'preact/hooks';
import { api, ApiError, type Certificate, type Collection, type Service, type Stack, toApiError } from '../api.js';
import { ApiLink, ErrorText, Live, State, useLoad } from '../components.js';


function AddCertificate({ envId, onAdded }: { envId: string; onAdded: () => void }) {
  const [name, setName] = useState('');
  const [cert, setCert] = useState('');
  const [key, setKey] = useState('');
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      await api('POST', '/v1/certificates', { environmentId: envId, name: name.trim(), cert, key });
      setName('');
      setCert('');
      setKey('');
      setError(undefined);
      onAdded();
    } catch (err) {
      setError(toApiError(err));
    }
  };
  const at = (f: string) => (error?.fieldName === f ? error : undefined);
  return (
    <form class="import" onSubmit={(e) => void submit(e)} aria-label="Add a certificate">
      <h3>Add a certificate</h3>
      <div class="field">
        <label for="cert-name">Name</label>
        <input id="cert-name" required value={name} onInput={(e) => setName(e.currentTarget.value)} />
        <ErrorText error={at('name')} />
      </div>
      <div class="field">
        <label for="cert-pem">Certificate (PEM)</label>
        <textarea id="cert-pem" rows={5} required value={cert} onInput={(e) => setCert(e.currentTarget.value)} />
        <ErrorText error={at('cert')} />
      </div>
      <div class="field">
        <label for="cert-key">Private key (PEM; the API never shows it again)</label>
        <textarea id="cert-key" rows={5} required value={key} onInput={(e) => setKey(e.currentTarget.value)} />
        <ErrorText error={at('key')} />
      </div>
      <button type="submit">Add certificate</button>
      <ErrorText error={error && !['name', 'cert', 'key'].includes(error.fieldName ?? '') ? error : undefined} />
    </form>
  );
}

/** Balancers (loadBalancerService) with their rules and certificates, and the environment's certificates. */
export function BalancersPage() {
  const { envId } = useContext(Live);
  const q = `environmentId=${encodeURIComponent(envId)}`;
  const { data, error, reload } = useLoad(async (signal) => {
    const [services, stacks, certs] = await Promise.all([
      api<Collection<Service>>('GET', `/v1/services?${q}`, undefined, signal),
      api<Collection<Stack>>('GET', `/v1/stacks?${q}`, undefined, signal),
      api<Collection<Certificate>>('GET', `/v1/certificates?${q}`, undefined, signal),
    ]);
    return { services: services.data, stacks: new Map(stacks.data.map((s) => [s.id, s.name])), certs: certs.data };
  }, []);
  if (error) return <ErrorText error={error} />;
  if (!data) return <p aria-busy="true">Loading…</p>;
  const byId = new Map(data.services.map((s) => [s.id, s]));
  const certName = new Map(data.certs.map((c) => [c.id, c.name]));
  const balancers = data.services.filter((s) => s.kind === 'loadBalancerService');
  const target = (r: { serviceId?: string; service?: string }) => {
    const t = r.serviceId ? byId.get(r.serviceId) : undefined;
    return t ? `${data.stacks.get(t.stackId) ?? '?'}/${t.name}` : (r.service ?? '—');
  };
  return (
    <section>
      <h2>Balancers</h2>
      {balancers.length === 0 ? <p class="muted">No balancers: a service with image rancher/lb-service-haproxy and lb_config in rancher-compose.yml is one.</p> : null}
      {balancers.map((b) => (
        <article key={b.id} class="balancer" data-balancer={b.name}>
          <h3>
            <a href={`#/stacks/${b.stackId}`}>{data.stacks.get(b.stackId) ?? '?'}</a>/{b.name} <State value={b.state} /> <span class="muted">scale {b.global ? 'global' : b.scale}</span> <ApiLink self={b.links?.self} />
          </h3>
          <table aria-label={`rules of ${b.name}`}>
            <thead>
              <tr>
                <th>Port</th>
                <th>Protocol</th>
                <th>Host</th>
                <th>Path</th>
                <th>Target</th>
                <th>Target port</th>
                <th>Priority</th>
              </tr>
            </thead>
            <tbody>
              {(b.lbConfig?.portRules ?? []).map((r, i) => (
                <tr key={i}>
                  <td>{r.sourcePort}</td>
                  <td>{r.protocol}</td>
                  <td>{r.hostname ?? ''}</td>
                  <td>{r.path ?? ''}</td>
                  <td>{target(r)}</td>
                  <td>{r.targetPort ?? ''}</td>
                  <td>{r.priority ?? ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <p>
            Certificates: {(b.lbConfig?.certificateIds ?? []).map((id) => certName.get(id) ?? id).join(', ') || 'none'}
            {b.lbConfig?.defaultCertificateId ? ` · default ${certName.get(b.lbConfig.defaultCertificateId) ?? b.lbConfig.defaultCertificateId}` : ''}
            {b.lbConfig?.config ? ' · custom HAProxy config' : ''}
          </p>
        </article>
      ))}
      <h2>Certificates</h2>
      <table aria-label="certificates">
        <thead>
          <tr>
            <th>Name</th>
            <th>Common name</th>
            <th>Alternative names</th>
            <th>Expires</th>
            <th>Used by</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {data.certs.map((c) => (
            <tr key={c.id} data-certificate={c.name}>
              <td>{c.name}</td>
              <td>{c.commonName ?? ''}</td>
              <td>{c.subjectAlternativeNames.join(', ')}</td>
              <td>{c.expiresAt ? new Date(c.expiresAt).toISOString().slice(0, 10) : ''}</td>
              <td>
                {balancers
                  .filter((b) => b.lbConfig?.certificateIds.includes(c.id) || b.lbConfig?.defaultCertificateId === c.id)
                  .map((b) => b.name)
                  .join(', ')}
              </td>
              <td>
                <ApiLink self={c.links?.self} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <AddCertificate envId={envId} onAdded={reload} />
    </section>
  );
}
