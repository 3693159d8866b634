// A minimal ustar writer (directories, regular files, symlinks) - enough for a busybox rootfs that
// `docker import` takes from a stream. Paths must be shorter than 100 bytes.

export type TarEntry =
  | { type: 'dir'; path: string; mode: number }
  | { type: 'file'; path: string; mode: number; data: Buffer }
  | { type: 'symlink'; path: string; target: string };

const BLOCK = 512;

function octal(n: number, width: number): string {
  // width-1 octal digits, NUL-terminated
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

function header(e: TarEntry, mtime: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  const name = e.type === 'dir' ? `${e.path.replace(/\/$/, '')}/` : e.path;
  if (Buffer.byteLength(name) >= 100) throw new Error(`tar: path too long: ${name}`);
  const size = e.type === 'file' ? e.data.length : 0;
  const mode = e.type === 'symlink' ? 0o777 : e.mode;
  h.write(name, 0, 100, 'utf8');
  h.write(octal(mode, 8), 100, 8, 'ascii');
  h.write(octal(0, 8), 108, 8, 'ascii'); // uid
  h.write(octal(0, 8), 116, 8, 'ascii'); // gid
  h.write(octal(size, 12), 124, 12, 'ascii');
  h.write(octal(mtime, 12), 136, 12, 'ascii');
  h.write('        ', 148, 8, 'ascii'); // checksum placeholder: 8 spaces
  h.write(e.type === 'dir' ? '5' : e.type === 'symlink' ? '2' : '0', 156, 1, 'ascii');
  if (e.type === 'symlink') h.write(e.target, 157, 100, 'utf8');
  h.write('ustar\0', 257, 6, 'ascii');
  h.write('00', 263, 2, 'ascii');
  h.write('root', 265, 32, 'ascii');
  h.write('root', 297, 32, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return h;
}

export function tarBuffer(entries: TarEntry[], mtime = Math.floor(Date.now() / 1000)): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    parts.push(header(e, mtime));
    if (e.type === 'file' && e.data.length > 0) {
      parts.push(e.data);
      const pad = (BLOCK - (e.data.length % BLOCK)) % BLOCK;
      if (pad) parts.push(Buffer.alloc(pad));
    }
  }
  parts.push(Buffer.alloc(BLOCK * 2));
  return Buffer.concat(parts);
}
