// Names, addresses and paths of a lab, all derived from its run id, directory and slot - so a lab whose
// state file is missing can still be found and torn down by name.
import { join } from 'node:path';
import type { HostState, LabState } from './state.js';

export const names = {
  switchNetns: (id: string) => `dl${id}-sw`,
  hostNetns: (id: string, i: number) => `dl${id}-h${i}`,
  /** ≤ 15 chars (IFNAMSIZ): dl + 6 hex + -r */
  rootVeth: (id: string) => `dl${id}-r`,
};

/** Lab ids appear in netns and link names as dl<6 hex>-... */
export const LAB_NAME_RE = /^dl([0-9a-f]{6})-/;

/** 198.18.<slot>.0/24: slot 0 is 198.18.0.0/24 (root 198.18.0.1, host i 198.18.0.(10+i)). */
export function subnetFor(slot: number): { prefix: string; rootIp: string; hostIp: (i: number) => string } {
  const prefix = `198.18.${slot}`;
  return { prefix, rootIp: `${prefix}.1`, hostIp: (i) => `${prefix}.${10 + i}` };
}

export function hostLayout(id: string, dir: string, index: number, ip: string): HostState {
  const name = `h${index}`;
  const hdir = join(dir, name);
  return {
    index,
    name,
    netns: names.hostNetns(id, index),
    ip,
    dir: hdir,
    dataDir: join(hdir, 'data'),
    dockerSocket: join(hdir, 'docker.sock'),
    dataRoot: join(hdir, 'docker'),
    execRoot: join(hdir, 'exec'),
    dockerdLog: join(hdir, 'dockerd.log'),
  };
}

/** A fresh state for a lab with `hosts` hosts; the slot (and so the addresses) is filled in later. */
export function newLabState(id: string, dir: string, hosts: number, owner: LabState['owner']): LabState {
  const st: LabState = {
    version: 1,
    id,
    dir,
    created: new Date().toISOString(),
    owner,
    slot: null,
    subnetPrefix: '',
    rootIp: '',
    rootVeth: names.rootVeth(id),
    switchNetns: names.switchNetns(id),
    hosts: [],
    procs: [],
  };
  for (let i = 1; i <= hosts; i++) st.hosts.push(hostLayout(id, dir, i, ''));
  return st;
}

/** Fills in the addresses of a slot. */
export function assignSlot(st: LabState, slot: number): void {
  const sn = subnetFor(slot);
  st.slot = slot;
  st.subnetPrefix = sn.prefix;
  st.rootIp = sn.rootIp;
  for (const h of st.hosts) h.ip = sn.hostIp(h.index);
}
