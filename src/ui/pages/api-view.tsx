import { api } from '../api.js';
import { ErrorText, useLoad } from '../components.js';

/** Renders JSON with every API URL in it (links, actions' targets) as a link to its own view. */
function JsonView({ value }: { value: unknown }) {
  const text = JSON.stringify(value, null, 2);
  const parts: (string | preact.JSX.Element)[] = [];
  const re = /"(https?:\/\/[^"\s]+\/v1\/[^"\s]*)"/g;
  let last = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    parts.push(text.slice(last, m.index));
    const url = new URL(m[1] as string);
    // Actions are POSTs: shown, not followed.
    const isAction = url.searchParams.has('action');
    parts.push(isAction ? `"${m[1]}"` : <a href={`#/api${url.pathname}${url.search}`}>"{m[1]}"</a>);
    last = m.index + m[0].length;
  }
  parts.push(text.slice(last));
  return <pre class="json">{parts}</pre>;
}

/** "View in API": GET of an API path with the user's key, shown as the API answers it. */
export function ApiView({ path }: { path: string }) {
  const { data, error } = useLoad((signal) => api<unknown>('GET', path, undefined, signal), [path]);
  return (
    <section>
      <h2>
        API: <code>{path}</code>
      </h2>
      <p>
        <a href={path} target="_blank" rel="noopener">
          Open raw
        </a>{' '}
        <span class="muted">(the browser asks for the key itself there)</span>
      </p>
      <ErrorText error={error} />
      {data !== undefined ? <JsonView value={data} /> : null}
    </section>
  );
}
