// The lab's test image: a busybox rootfs (static busybox from Debian's busybox-static, every applet a
// symlink in /bin) imported into each lab dockerd as drover-test/busybox:1. Built in memory once per
// process (~2 MB), imported from a stream: no registry, no files.
import { openSync, readSync, closeSync, readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import Docker from 'dockerode';
import { mustRun } from './proc.js';
import { tarBuffer, type TarEntry } from './tar.js';

export const TEST_IMAGE = 'drover-test/busybox:1';
export const BUSYBOX = '/bin/busybox';
const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** True when the ELF file has no PT_INTERP program header (statically linked). */
export function isStaticElf(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const eh = Buffer.alloc(64);
    readSync(fd, eh, 0, 64, 0);
    if (eh.readUInt32BE(0) !== 0x7f454c46 || eh[4] !== 2) throw new Error(`${file} is not a 64-bit ELF file`);
    const phoff = Number(eh.readBigUInt64LE(0x20));
    const phentsize = eh.readUInt16LE(0x36);
    const phnum = eh.readUInt16LE(0x38);
    const ph = Buffer.alloc(phentsize * phnum);
    readSync(fd, ph, 0, ph.length, phoff);
    for (let i = 0; i < phnum; i++) if (ph.readUInt32LE(i * phentsize) === 3 /* PT_INTERP */) return false;
    return true;
  } finally {
    closeSync(fd);
  }
}

let cached: Promise<Buffer> | undefined;

/** The rootfs as a tar (built once per process). */
export function busyboxRootfsTar(): Promise<Buffer> {
  cached ??= buildRootfsTar();
  return cached;
}

async function buildRootfsTar(): Promise<Buffer> {
  let bin: Buffer;
  try {
    bin = readFileSync(BUSYBOX);
  } catch {
    throw new Error(`${BUSYBOX} not found: apt-get install busybox-static`);
  }
  if (!isStaticElf(BUSYBOX)) throw new Error(`${BUSYBOX} is dynamically linked: apt-get install busybox-static`);
  const applets = (await mustRun([BUSYBOX, '--list'])).split('\n').filter((a) => /^[\w.[\]-]+$/.test(a) && a !== 'busybox');
  const dir = (path: string, mode = 0o755): TarEntry => ({ type: 'dir', path, mode });
  const file = (path: string, text: string, mode = 0o644): TarEntry => ({ type: 'file', path, mode, data: Buffer.from(text) });
  const entries: TarEntry[] = [
    dir('bin'),
    { type: 'file', path: 'bin/busybox', mode: 0o755, data: bin },
    ...applets.map((a): TarEntry => ({ type: 'symlink', path: `bin/${a}`, target: 'busybox' })),
    dir('etc'),
    file('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n'),
    file('etc/group', 'root:x:0:\nnogroup:x:65534:\n'),
    file('etc/nsswitch.conf', 'hosts: files dns\n'),
    dir('root', 0o700),
    dir('tmp', 0o1777),
    dir('proc'),
    dir('sys'),
    dir('dev'),
    dir('var'),
    dir('var/www'),
    file('var/www/index.html', 'drover-test\n'),
  ];
  return tarBuffer(entries);
}

/** Imports the test image into a daemon unless it already has it (restarted data-root). */
export async function importTestImage(docker: Docker): Promise<void> {
  try {
    await docker.getImage(TEST_IMAGE).inspect();
    return;
  } catch {
    // not there yet
  }
  const tar = await busyboxRootfsTar();
  const [repo, tag] = TEST_IMAGE.split(':') as [string, string];
  const progress = await docker.importImage(Readable.from([tar]), { repo, tag, changes: ['CMD ["sh"]', `ENV ${PATH_ENV}`] });
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(
      progress,
      (err: Error | null) => (err ? reject(err) : resolve()),
      (ev: { error?: string }) => {
        if (ev.error) reject(new Error(`docker import: ${ev.error}`));
      },
    );
  });
  await docker.getImage(TEST_IMAGE).inspect(); // throws if the import did not produce it
}
