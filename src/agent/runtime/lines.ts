// Docker's streaming endpoints (events, image pulls) send one JSON document per line, in chunks that
// split lines — and UTF-8 characters — anywhere.
import { StringDecoder } from 'node:string_decoder';

/** A `data` listener that calls onLine with every complete, non-empty line (trimmed). */
export function lineSplitter(onLine: (line: string) => void): (chunk: Buffer | string) => void {
  const decoder = new StringDecoder('utf8');
  let buf = '';
  return (chunk) => {
    buf += typeof chunk === 'string' ? chunk : decoder.write(chunk);
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (line) onLine(line);
    }
  };
}
