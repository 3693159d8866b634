// Small shared pieces of the UI: data loading that follows the live revision, API errors shown where
// they belong, pagination of long lists, and the "View in API" link every resource has.
import type { ComponentChildren } from 'preact';
import { createContext } from 'preact';
import { useContext, useEffect, useState } from 'preact/hooks';
import { ApiError, toApiError } from './api.js';

/** The environment's revision as the page last saw it: pages reload their data when it moves. */
export const Live = createContext<{ envId: string; revision: number }>({ envId: '', revision: 0 });

/**
 * Loads `fn` now and again whenever the live revision (or `deps`) changes. Keeps the previous data while
 * a reload runs, so lists do not flicker.
 */
export function useLoad<T>(fn: (signal: AbortSignal) => Promise<T>, deps: unknown[]): { data: T | undefined; error: ApiError | undefined; reload: () => void } {
  const live = useContext(Live);
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const [nonce, setNonce] = useState(0);
  useEffect(() => {
    const ac = new AbortController();
    fn(ac.signal).then(
      (d) => {
        if (ac.signal.aborted) return;
        setData(d);
        setError(undefined);
      },
      (err: unknown) => {
        if (ac.signal.aborted) return;
        setError(toApiError(err));
      },
    );
    return () => ac.abort();
  }, [live.revision, live.envId, nonce, ...deps]);
  return { data, error, reload: () => setNonce((n) => n + 1) };
}

/** An API error as the user can act on it: message, code and the field it concerns. */
export function ErrorText({ error, id }: { error: ApiError | undefined; id?: string }) {
  if (!error) return null;
  return (
    <p class="error" role="alert" id={id} data-code={error.code} data-field={error.fieldName ?? ''}>
      {error.message}
      {error.fieldName ? <span class="field"> (field {error.fieldName})</span> : null}
    </p>
  );
}

/** "View in API": the resource's own JSON, with its links and actions, like the original's. */
export function ApiLink({ self }: { self: string | undefined }) {
  if (!self) return null;
  const path = new URL(self, location.href).pathname;
  return (
    <a class="api-link" href={`#/api${path}`} title={`View ${path} in the API`}>
      View in API
    </a>
  );
}

const PAGE = 50;

/** A long list, PAGE rows at a time (a control plane can hold thousands of services). */
export function Paged<T>({ items, row, head, label }: { items: T[]; row: (t: T) => ComponentChildren; head: ComponentChildren; label: string }) {
  const [page, setPage] = useState(0);
  const pages = Math.max(1, Math.ceil(items.length / PAGE));
  const p = Math.min(page, pages - 1);
  return (
    <div>
      <table aria-label={label}>
        <thead>{head}</thead>
        <tbody>{items.slice(p * PAGE, (p + 1) * PAGE).map(row)}</tbody>
      </table>
      {pages > 1 ? (
        <nav class="pager" aria-label={`${label} pages`}>
          <button type="button" disabled={p === 0} onClick={() => setPage(p - 1)}>
            Previous
          </button>
          <span>
            {p * PAGE + 1}–{Math.min(items.length, (p + 1) * PAGE)} of {items.length}
          </span>
          <button type="button" disabled={p >= pages - 1} onClick={() => setPage(p + 1)}>
            Next
          </button>
        </nav>
      ) : null}
    </div>
  );
}

/**
 * A value loaded on demand (a page's code split off by the build), once `when` holds; undefined until it
 * has arrived.
 */
export function useLazy<T>(load: () => Promise<T>, when = true): T | undefined {
  const [value, setValue] = useState<{ v: T } | undefined>(undefined);
  useEffect(() => {
    if (when && !value) void load().then((v) => setValue({ v }));
  }, [when]);
  return value?.v;
}

export function State({ value }: { value: string | null | undefined }) {
  if (!value) return <span class="state">—</span>;
  return <span class={`state state-${value}`}>{value}</span>;
}
