import { FitAddon } from '@xterm/addon-fit';
import { Terminal } from '@xterm/xterm';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, openAccess, streamText, type Container, type Host, type HostAccess, toApiError } from '../api.js';
import { ApiLink, ErrorText, State, useLoad } from '../components.js';
import { StatsChart } from './stats-chart.js';

/** Characters of log kept in the page (the oldest go first). */
const MAX_LOG_CHARS = 256 * 1024;

/** `GET /v1/containers/<id>/logs?follow=1`: the last 200 lines, then new ones as they come. */
function Logs({ id }: { id: string }) {
  const [text, setText] = useState('');
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const [following, setFollowing] = useState(true);
  const pre = useRef<HTMLPreElement>(null);
  useEffect(() => {
    if (!following) return;
    const ac = new AbortController();
    setText('');
    streamText(
      `/v1/containers/${encodeURIComponent(id)}/logs?follow=1&tail=200`,
      (chunk) => setText((t) => (t.length + chunk.length > MAX_LOG_CHARS ? (t + chunk).slice(-MAX_LOG_CHARS) : t + chunk)),
      ac.signal,
    ).then(
      () => setFollowing(false),
      (err: unknown) => {
        if (!ac.signal.aborted) {
          setError(toApiError(err));
          setFollowing(false);
        }
      },
    );
    return () => ac.abort();
  }, [id, following]);
  useEffect(() => {
    const el = pre.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [text]);
  return (
    <section aria-label="logs">
      <h3>
        Logs{' '}
        <button type="button" onClick={() => setFollowing(!following)}>
          {following ? 'Stop following' : 'Follow'}
        </button>
      </h3>
      <ErrorText error={error} />
      <pre class="logs" ref={pre} tabIndex={0} aria-live="off">
        {text}
      </pre>
    </section>
  );
}

/** "Execute Shell": `sh` on a terminal in the container (xterm.js over the exec websocket). */
function Shell({ id }: { id: string }) {
  const [open, setOpen] = useState(false);
  const [status, setStatus] = useState('');
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!open || !box.current) return;
    const term = new Terminal({ convertEol: false, cursorBlink: true, fontSize: 13, scrollback: 2000 });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(box.current);
    fit.fit();
    let ws: WebSocket | undefined;
    let closed = false;
    const enc = new TextEncoder();
    api<HostAccess>('POST', `/v1/containers/${encodeURIComponent(id)}?action=execute`, { command: ['sh'], tty: true }).then(
      (a) => {
        if (closed) return;
        ws = openAccess(a);
        ws.onopen = () => {
          setStatus('connected');
          ws?.send(JSON.stringify({ resize: [term.cols, term.rows] }));
          term.focus();
        };
        ws.onmessage = (e: MessageEvent<ArrayBuffer | string>) => {
          if (typeof e.data === 'string') {
            try {
              const m = JSON.parse(e.data) as { exit?: number };
              if (m.exit !== undefined) setStatus(`exited with code ${m.exit}`);
            } catch {
              // not a control message
            }
          } else term.write(new Uint8Array(e.data));
        };
        ws.onclose = (e) => setStatus((s) => (s.startsWith('exited') ? s : `closed${e.reason ? `: ${e.reason}` : ''}`));
        term.onData((d) => {
          if (ws?.readyState === WebSocket.OPEN) ws.send(enc.encode(d));
        });
        term.onResize(({ cols, rows }) => {
          if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ resize: [cols, rows] }));
        });
      },
      (err: unknown) => setError(toApiError(err)),
    );
    const onWindow = () => fit.fit();
    addEventListener('resize', onWindow);
    return () => {
      closed = true;
      removeEventListener('resize', onWindow);
      ws?.close();
      term.dispose();
    };
  }, [open, id]);
  return (
    <section aria-label="shell">
      <h3>
        Shell{' '}
        {open ? (
          <button type="button" onClick={() => setOpen(false)}>
            Close shell
          </button>
        ) : (
          <button type="button" onClick={() => setOpen(true)}>
            Execute Shell
          </button>
        )}{' '}
        <span class="muted" role="status">
          {open ? status : ''}
        </span>
      </h3>
      <ErrorText error={error} />
      {open ? <div class="terminal" ref={box} /> : null}
    </section>
  );
}

export function ContainerPage({ id }: { id: string }) {
  const { data, error } = useLoad(
    async (signal) => {
      const c = await api<Container>('GET', `/v1/containers/${encodeURIComponent(id)}`, undefined, signal);
      const host = c.hostId ? await api<Host>('GET', `/v1/hosts/${encodeURIComponent(c.hostId)}`, undefined, signal) : undefined;
      return { c, host };
    },
    [id],
  );
  if (error) return <ErrorText error={error} />;
  if (!data) return <p aria-busy="true">Loading…</p>;
  const { c, host } = data;
  const runs = c.state === 'running';
  return (
    <section>
      <p>
        {c.stackId ? <a href={`#/stacks/${c.stackId}`}>Stack</a> : 'Standalone'} / {c.name}
      </p>
      <h2>
        {c.name} <State value={c.state} /> {c.healthState ? <State value={c.healthState} /> : null} <ApiLink self={c.links?.self} />
      </h2>
      <p>
        on {host?.name ?? 'no host yet'} · <code>{c.primaryIpAddress ?? 'no address'}</code>
      </p>
      <Logs id={c.id} />
      {runs ? (
        <>
          <Shell id={c.id} />
          <StatsChart action={`/v1/containers/${encodeURIComponent(c.id)}?action=stats`} label="Stats" />
        </>
      ) : (
        <p class="muted">Shell and stats are there while the container runs (now: {c.state}).</p>
      )}
    </section>
  );
}
