import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { JsonMap } from '../../src/metadata/answers.js';
import { lookup, PathError, splitPath, unescapeSegment, walkExact } from '../../src/metadata/walk.js';

const TREE: JsonMap = {
  services: [
    { name: 'web', uuid: 'uuid-web', links: { 'stack/db': 'database' } },
    { name: 'db', uuid: 'uuid-db' },
    { name: 'uuid-web', uuid: 'uuid-other' },
  ],
  hosts: [{ uuid: 'h-1', agent_ip: '10.0.0.1' }, 'scalar'],
  self: { container: { name: 'Web-1', labels: { 'io.rancher.stack.name': 'S' } } },
  'a b': 'space',
  Mixed: 'exact',
  mixed: 'lower',
  n: 0,
  f: false,
  z: null,
};

describe('splitPath', () => {
  it('strips the leading / and every trailing /, and splits', () => {
    assert.deepEqual(splitPath('/'), []);
    assert.deepEqual(splitPath(''), []);
    assert.deepEqual(splitPath('/latest'), ['latest']);
    assert.deepEqual(splitPath('/latest/'), ['latest']);
    assert.deepEqual(splitPath('/latest/self/container//'), ['latest', 'self', 'container']);
    assert.deepEqual(splitPath('/latest/a%2Fb/c'), ['latest', 'a%2Fb', 'c']);
    assert.deepEqual(splitPath('/latest//x'), ['latest', '', 'x']);
  });
});

describe('unescapeSegment', () => {
  it('decodes %XX and + like Go url.QueryUnescape', () => {
    assert.equal(unescapeSegment('stack%2Fservice'), 'stack/service');
    assert.equal(unescapeSegment('a+b'), 'a b');
    assert.equal(unescapeSegment('a%20b%2b'), 'a b+');
    assert.equal(unescapeSegment('%C3%A4'), 'ä');
    assert.equal(unescapeSegment('plain'), 'plain');
  });

  it('throws PathError on a bad escape', () => {
    assert.throws(() => unescapeSegment('%zz'), (e: unknown) => e instanceof PathError && e.message === 'invalid URL escape "%zz"');
    assert.throws(() => unescapeSegment('abc%4'), PathError);
    assert.throws(() => unescapeSegment('%'), PathError);
  });
});

describe('lookup', () => {
  it('walks maps by key and returns the whole tree for no segments', () => {
    assert.equal(lookup(TREE, []), TREE);
    assert.equal(lookup(TREE, ['self', 'container', 'name']), 'Web-1');
    assert.equal(lookup(TREE, ['self', 'container', 'labels', 'io.rancher.stack.name']), 'S');
    assert.equal(lookup(TREE, ['a b']), 'space');
    assert.equal(lookup(TREE, ['services', 'web', 'links', 'stack/db']), 'database');
  });

  it('finds falsy values (0, false, null)', () => {
    assert.equal(lookup(TREE, ['n']), 0);
    assert.equal(lookup(TREE, ['f']), false);
    assert.equal(lookup(TREE, ['z']), null);
  });

  it('indexes arrays by number', () => {
    assert.deepEqual(lookup(TREE, ['services', '1']), { name: 'db', uuid: 'uuid-db' });
    assert.equal(lookup(TREE, ['hosts', '1']), 'scalar');
    assert.equal(lookup(TREE, ['services', '3']), undefined);
    assert.equal(lookup(TREE, ['services', '-1']), undefined);
    assert.equal(lookup(TREE, ['services', '+1', 'name']), 'db');
  });

  it('finds array elements by name, then by uuid (magic keys)', () => {
    assert.equal(lookup(TREE, ['services', 'db', 'uuid']), 'uuid-db');
    assert.equal(lookup(TREE, ['hosts', 'h-1', 'agent_ip']), '10.0.0.1');
    // `name` is tried across all elements before `uuid`.
    assert.equal(lookup(TREE, ['services', 'uuid-web', 'uuid']), 'uuid-other');
    assert.equal(lookup(TREE, ['services', 'uuid-db', 'name']), 'db');
    assert.equal(lookup(TREE, ['services', 'nope']), undefined);
  });

  it('retries with every segment lower-cased, but prefers an exact match', () => {
    assert.equal(lookup(TREE, ['SELF', 'Container', 'NAME']), 'Web-1');
    assert.equal(lookup(TREE, ['services', 'WEB', 'uuid']), 'uuid-web');
    assert.equal(lookup(TREE, ['Mixed']), 'exact');
    assert.equal(lookup(TREE, ['MIXED']), 'lower');
    assert.equal(walkExact(TREE, ['SELF']), undefined);
  });

  it('never finds inherited properties', () => {
    assert.equal(lookup(TREE, ['__proto__']), undefined);
    assert.equal(lookup(TREE, ['constructor']), undefined);
    assert.equal(lookup(TREE, ['self', 'toString']), undefined);
    assert.equal(lookup(TREE, ['services', 'length']), undefined);
  });

  it('fails when walking into a scalar', () => {
    assert.equal(lookup(TREE, ['a b', 'x']), undefined);
    assert.equal(lookup(TREE, ['z', 'x']), undefined);
    assert.equal(lookup(TREE, ['', 'x']), undefined);
  });
});
