import { useState } from 'preact/hooks';
import { api, ApiError, setCreds, type Collection, type Environment, toApiError } from '../api.js';
import { ErrorText } from '../components.js';

/** Log in with an API key; checked by listing environments with it (the same call the CLI makes). */
export function Login({ onLogin }: { onLogin: () => void }) {
  const [accessKey, setAccessKey] = useState('');
  const [secretKey, setSecretKey] = useState('');
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setCreds({ accessKey: accessKey.trim(), secretKey: secretKey.trim() });
    try {
      await api<Collection<Environment>>('GET', '/v1/environments');
      setError(undefined);
      onLogin();
    } catch (err) {
      setCreds(null);
      setError(toApiError(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login">
      <h1>drover</h1>
      <form onSubmit={(e) => void submit(e)} aria-describedby="login-error">
        <label>
          Access key
          <input name="accessKey" autocomplete="username" required value={accessKey} onInput={(e) => setAccessKey(e.currentTarget.value)} />
        </label>
        <label>
          Secret key
          <input name="secretKey" type="password" autocomplete="current-password" required value={secretKey} onInput={(e) => setSecretKey(e.currentTarget.value)} />
        </label>
        <button type="submit" disabled={busy}>
          Log in
        </button>
        <ErrorText error={error} id="login-error" />
      </form>
      <p class="hint">An API key of this control plane (the first admin key is printed when the server starts for the first time).</p>
    </main>
  );
}
