import { useContext, useEffect, useState } from 'preact/hooks';
import { api, ApiError, type Collection, type Stack, toApiError } from '../api.js';
import { ApiLink, ErrorText, Live, Paged, State, useLoad } from '../components.js';

/** Which input an import error belongs to: a catalog answer, the compose file it names, else the API field. */
export function errorInput(err: ApiError | undefined): string | undefined {
  if (!err) return undefined;
  if (err.fieldName?.startsWith('answers.')) return err.fieldName;
  if (err.file === 'docker-compose.yml') return 'dockerCompose';
  if (err.file === 'rancher-compose.yml') return 'rancherCompose';
  if (err.fieldName === 'name' || err.fieldName === 'dockerCompose' || err.fieldName === 'rancherCompose') return err.fieldName;
  return 'form';
}

function FileText({ id, label, value, onChange, error }: { id: string; label: string; value: string; onChange: (v: string) => void; error: ApiError | undefined }) {
  return (
    <div class="field">
      <label for={id}>{label}</label>
      <textarea id={id} name={id} rows={10} spellcheck={false} value={value} onInput={(e) => onChange(e.currentTarget.value)} aria-invalid={error ? 'true' : 'false'} aria-describedby={error ? `${id}-error` : undefined} />
      <label class="file">
        or load a file{' '}
        <input
          type="file"
          accept=".yml,.yaml,text/yaml"
          aria-label={`${label} file`}
          onChange={(e) => {
            const f = e.currentTarget.files?.[0];
            if (f) void f.text().then(onChange);
          }}
        />
      </label>
      <ErrorText error={error} id={`${id}-error`} />
    </div>
  );
}

interface Question {
  variable: string;
  label?: string;
  description?: string;
  type: string;
  required: boolean;
  default?: string;
  options?: string[];
}

/** The catalog questions of the rancher-compose text (asked of the API as the text changes). */
function useQuestions(rancherCompose: string): { questions: Question[]; error: ApiError | undefined } {
  const [state, setState] = useState<{ questions: Question[]; error: ApiError | undefined }>({ questions: [], error: undefined });
  useEffect(() => {
    if (!rancherCompose.includes('catalog')) {
      setState({ questions: [], error: undefined });
      return;
    }
    const ac = new AbortController();
    const t = setTimeout(() => {
      api<{ questions: Question[] }>('POST', '/v1/stacks?action=questions', { rancherCompose }, ac.signal).then(
        (r) => setState({ questions: r.questions, error: undefined }),
        (err: unknown) => {
          if (!ac.signal.aborted) setState((s) => ({ questions: s.questions, error: toApiError(err) }));
        },
      );
    }, 300);
    return () => {
      clearTimeout(t);
      ac.abort();
    };
  }, [rancherCompose]);
  return state;
}

function QuestionInput({ q, value, onChange, error }: { q: Question; value: string; onChange: (v: string) => void; error: ApiError | undefined }) {
  const id = `answer-${q.variable}`;
  const common = { id, name: q.variable, 'aria-invalid': error ? ('true' as const) : ('false' as const), 'aria-describedby': `${id}-help` };
  let input;
  if (q.type === 'enum') {
    input = (
      <select {...common} value={value} onChange={(e) => onChange(e.currentTarget.value)}>
        {q.required ? null : <option value="">—</option>}
        {(q.options ?? []).map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
    );
  } else if (q.type === 'boolean') {
    input = <input {...common} type="checkbox" checked={value === 'true'} onChange={(e) => onChange(e.currentTarget.checked ? 'true' : 'false')} />;
  } else if (q.type === 'multiline' || q.type === 'certificate') {
    input = <textarea {...common} rows={4} value={value} onInput={(e) => onChange(e.currentTarget.value)} />;
  } else {
    input = <input {...common} type={q.type === 'password' ? 'password' : q.type === 'int' ? 'number' : 'text'} value={value} onInput={(e) => onChange(e.currentTarget.value)} />;
  }
  return (
    <div class="field">
      <label for={id}>
        {q.label ?? q.variable}
        {q.required ? ' *' : ''}
      </label>
      {input}
      <span class="muted" id={`${id}-help`}>
        {q.description ?? ''} <code>{q.variable}</code>
      </span>
      <ErrorText error={error} id={`${id}-error`} />
    </div>
  );
}

function ImportStack({ envId, onDone }: { envId: string; onDone: (id: string) => void }) {
  const [name, setName] = useState('');
  const [dockerCompose, setDockerCompose] = useState('');
  const [rancherCompose, setRancherCompose] = useState('');
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const [answers, setAnswers] = useState<Record<string, string>>({});
  const { questions, error: questionsError } = useQuestions(rancherCompose);
  const where = errorInput(error);
  const answerOf = (q: Question) => answers[q.variable] ?? q.default ?? (q.type === 'boolean' ? 'false' : q.type === 'enum' && q.required ? (q.options?.[0] ?? '') : '');
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      const st = await api<Stack>('POST', '/v1/stacks', {
        environmentId: envId,
        name: name.trim(),
        dockerCompose,
        ...(rancherCompose.trim() ? { rancherCompose } : {}),
        ...(questions.length ? { answers: Object.fromEntries(questions.map((q) => [q.variable, answerOf(q)]).filter(([, v]) => v !== '')) } : {}),
      });
      setError(undefined);
      setName('');
      setDockerCompose('');
      setRancherCompose('');
      setAnswers({});
      onDone(st.id);
    } catch (err) {
      setError(toApiError(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="import" onSubmit={(e) => void submit(e)} aria-label="Import a stack">
      <h3>Import from compose files</h3>
      <div class="field">
        <label for="stack-name">Stack name</label>
        <input id="stack-name" name="name" required value={name} onInput={(e) => setName(e.currentTarget.value)} aria-invalid={where === 'name' ? 'true' : 'false'} />
        <ErrorText error={where === 'name' ? error : undefined} id="name-error" />
      </div>
      <FileText id="dockerCompose" label="docker-compose.yml" value={dockerCompose} onChange={setDockerCompose} error={where === 'dockerCompose' ? error : undefined} />
      <FileText id="rancherCompose" label="rancher-compose.yml (optional)" value={rancherCompose} onChange={setRancherCompose} error={where === 'rancherCompose' ? error : questionsError} />
      {questions.length ? (
        <fieldset class="questions">
          <legend>Catalog questions</legend>
          {questions.map((q) => (
            <QuestionInput key={q.variable} q={q} value={answerOf(q)} onChange={(v) => setAnswers((a) => ({ ...a, [q.variable]: v }))} error={where === `answers.${q.variable}` ? error : undefined} />
          ))}
        </fieldset>
      ) : null}
      <button type="submit" disabled={busy}>
        {busy ? 'Importing…' : 'Import'}
      </button>
      <ErrorText error={where === 'form' ? error : undefined} id="import-error" />
    </form>
  );
}

function Export({ stack }: { stack: Stack }) {
  const [files, setFiles] = useState<{ dockerComposeConfig: string; rancherComposeConfig: string } | undefined>(undefined);
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const run = async () => {
    try {
      setFiles(await api('POST', `/v1/stacks/${stack.id}?action=exportconfig`, {}));
    } catch (err) {
      setError(toApiError(err));
    }
  };
  return (
    <span>
      <button type="button" onClick={() => void run()}>
        Export
      </button>
      <ErrorText error={error} />
      {files ? (
        <dialog open aria-label={`export of ${stack.name}`}>
          <h4>docker-compose.yml</h4>
          <pre>{files.dockerComposeConfig}</pre>
          <h4>rancher-compose.yml</h4>
          <pre>{files.rancherComposeConfig}</pre>
          <button type="button" onClick={() => setFiles(undefined)}>
            Close
          </button>
        </dialog>
      ) : null}
    </span>
  );
}

export function StacksPage() {
  const { envId } = useContext(Live);
  const { data, error, reload } = useLoad((signal) => api<Collection<Stack>>('GET', `/v1/stacks?environmentId=${encodeURIComponent(envId)}`, undefined, signal), []);
  const [removeError, setRemoveError] = useState<ApiError | undefined>(undefined);
  const remove = async (st: Stack) => {
    if (!confirm(`Remove stack ${st.name} and all its services and containers?`)) return;
    try {
      await api('DELETE', `/v1/stacks/${st.id}`);
      setRemoveError(undefined);
      reload();
    } catch (err) {
      setRemoveError(toApiError(err));
    }
  };
  const stacks = data?.data ?? [];
  return (
    <section>
      <h2>Stacks</h2>
      <ErrorText error={error ?? removeError} />
      <Paged
        label="stacks"
        items={stacks}
        head={
          <tr>
            <th>Stack</th>
            <th>State</th>
            <th>Description</th>
            <th />
          </tr>
        }
        row={(st) => (
          <tr key={st.id} data-stack={st.name}>
            <td>
              <a href={`#/stacks/${st.id}`}>{st.name}</a>
            </td>
            <td>
              <State value={st.state} />
            </td>
            <td>{st.description}</td>
            <td class="actions">
              <Export stack={st} />
              <button type="button" class="danger" onClick={() => void remove(st)}>
                Remove
              </button>
              <ApiLink self={st.links?.self} />
            </td>
          </tr>
        )}
      />
      {data && stacks.length === 0 ? <p class="muted">No stacks yet.</p> : null}
      <ImportStack envId={envId} onDone={(id) => (location.hash = `#/stacks/${id}`)} />
    </section>
  );
}
