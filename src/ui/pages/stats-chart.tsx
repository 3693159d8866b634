import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { api, ApiError, openAccess, type HostAccess, toApiError } from '../api.js';
import { ErrorText } from '../components.js';

interface Sample {
  at: string;
  cpuPercent: number;
  memory: { usage: number; limit: number };
}

/**
 * CPU and memory of a container or a host, one sample a second from the stats websocket that `action`
 * (`POST …?action=stats`) opens, the last 60 charted.
 */
export function StatsChart({ action, label }: { action: string; label: string }) {
  const [last, setLast] = useState<Sample | undefined>(undefined);
  const [count, setCount] = useState(0);
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!box.current) return;
    const data: [number[], number[], number[]] = [[], [], []];
    const plot = new uPlot(
      {
        width: Math.min(900, box.current.clientWidth || 600),
        height: 200,
        series: [{}, { label: 'CPU %', stroke: '#0b62c4', scale: '%' }, { label: 'memory MiB', stroke: '#1b7f3b', scale: 'MiB' }],
        axes: [{}, { scale: '%', label: 'CPU %' }, { scale: 'MiB', side: 1, label: 'MiB', grid: { show: false } }],
      },
      data,
      box.current,
    );
    let ws: WebSocket | undefined;
    let closed = false;
    api<HostAccess>('POST', action, {}).then(
      (a) => {
        if (closed) return;
        ws = openAccess(a);
        ws.onmessage = (e: MessageEvent<ArrayBuffer | string>) => {
          if (typeof e.data !== 'string') return;
          const s = JSON.parse(e.data) as Sample;
          data[0].push(Date.parse(s.at) / 1000);
          data[1].push(s.cpuPercent);
          data[2].push(s.memory.usage / 1048576);
          if (data[0].length > 60) for (const d of data) d.shift();
          plot.setData(data);
          setLast(s);
          setCount((n) => n + 1);
        };
        ws.onclose = (e) => {
          if (!closed && e.code !== 1000) setError(new ApiError(0, 'StatsClosed', `the stats stream closed${e.reason ? `: ${e.reason}` : ''}`));
        };
      },
      (err: unknown) => setError(toApiError(err)),
    );
    return () => {
      closed = true;
      ws?.close();
      plot.destroy();
    };
  }, [action]);
  return (
    <section aria-label={label}>
      <h3>{label}</h3>
      <ErrorText error={error} />
      <p class="stats-now" data-samples={count}>
        {last ? `CPU ${last.cpuPercent.toFixed(1)} % · memory ${(last.memory.usage / 1048576).toFixed(1)} MiB of ${(last.memory.limit / 1048576).toFixed(0)} MiB · ${count} samples` : 'waiting for the first sample…'}
      </p>
      <div class="chart" ref={box} />
    </section>
  );
}

