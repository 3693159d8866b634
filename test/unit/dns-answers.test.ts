import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAnswers, prepareAnswers } from '../../src/dns/answers.js';
import { parseListenAddress } from '../../src/dns/standalone.js';
import { parseResolvConf } from '../../src/dns/resolvconf.js';
import { ValidationError } from '../../src/common/errors.js';

const YAML_TEXT = `
10.42.1.5:
  search: [app.rancher.internal, rancher.internal]
  recurse: ["192.0.2.53", "192.0.2.54:5353"]
  a:
    DB.rancher.internal.: { answer: [10.42.7.7], ttl: 42 }
  cname:
    ext.app.rancher.internal.: { answer: www.example.com. }
  ptr:
    10.42.1.2: { answer: web-1.rancher.internal. }
  txt:
    x.rancher.internal.: { answer: "v=1" }
default:
  authoritative: [rancher.internal]
`;

test('YAML answers parse and normalise (lower case, no trailing dots, PTR keys reversed)', () => {
  const p = prepareAnswers(parseAnswers(YAML_TEXT));
  const c = p.clients.get('10.42.1.5');
  assert.ok(c);
  assert.deepEqual(c.search, ['app.rancher.internal', 'rancher.internal']);
  assert.deepEqual(c.recurse.map((u) => u.key), ['192.0.2.53:53', '192.0.2.54:5353']);
  assert.deepEqual(c.records.get('db.rancher.internal'), { a: { ips: ['10.42.7.7'], ttl: 42 } });
  assert.deepEqual(c.records.get('ext.app.rancher.internal'), { cname: { target: 'www.example.com', ttl: undefined } });
  assert.deepEqual(c.records.get('2.1.42.10.in-addr.arpa'), { ptr: { target: 'web-1.rancher.internal', ttl: undefined } });
  assert.deepEqual(c.records.get('x.rancher.internal'), { txt: { texts: ['v=1'], ttl: undefined } });
  assert.deepEqual(p.default.authoritative, ['rancher.internal']);
});

test('JSON answers parse; an empty file is no answers', () => {
  const p = prepareAnswers(parseAnswers('{"default": {"a": {"x.": {"answer": ["10.0.0.1"]}}}}'));
  assert.deepEqual(p.default.records.get('x'), { a: { ips: ['10.0.0.1'], ttl: undefined } });
  assert.equal(prepareAnswers(parseAnswers('')).clients.size, 0);
});

test('bad answers are rejected with the place of the problem', () => {
  const bad = (text: string, re: RegExp): void => {
    assert.throws(
      () => parseAnswers(text, 'answers.json'),
      (e: unknown) => e instanceof ValidationError && re.test(e.message),
    );
  };
  bad('{"default": {"a": {"x.": {"answer": ["10.0.0.300"]}}}}', /IPv4/);
  bad('{"nothost": {}}', /client IPs or "default"/);
  bad('{"default": {"a": {"bad name!.": {"answer": []}}}}', /domain/);
  bad('{"default": {"recurse": ["dns.example.com"]}}', /IP/);
  bad('{"default": {"a": {"x.": {"answer": ["10.0.0.1"]}}, "cname": {"X": {"answer": "y."}}}}', /both A and CNAME/);
  bad('{ not json', /answers.json: not valid JSON or YAML/);
  bad('- a\n- b', /expected record/i);
});

test('listen addresses', () => {
  assert.deepEqual(parseListenAddress('127.0.0.1:5353', 53), { address: '127.0.0.1', port: 5353 });
  assert.deepEqual(parseListenAddress(':53', 53), { address: '0.0.0.0', port: 53 });
  assert.deepEqual(parseListenAddress('169.254.169.250', 53), { address: '169.254.169.250', port: 53 });
  assert.deepEqual(parseListenAddress('[::1]:8113', 53), { address: '::1', port: 8113 });
  assert.throws(() => parseListenAddress('example.com:53', 53), ValidationError);
  assert.throws(() => parseListenAddress('1.2.3.4:99999', 53), ValidationError);
});

test('resolv.conf nameservers', () => {
  assert.deepEqual(
    parseResolvConf('# comment\nsearch x\nnameserver 10.0.0.2\nnameserver  ::1 # local\nnameserver bogus\nnameserver 10.0.0.2\noptions ndots:5\n'),
    ['10.0.0.2', '::1'],
  );
});
