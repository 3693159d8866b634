import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parse as parseYaml } from 'yaml';
import type { JsonMap, JsonValue } from '../../src/metadata/answers.js';
import {
  CONTENT_TYPES,
  formatNumber,
  negotiate,
  queryEscape,
  render,
  renderError,
  renderJson,
  renderText,
  renderYaml,
} from '../../src/metadata/render.js';

// The `types` map of rancher-metadata's example/answers.json.
const TYPES: JsonMap = {
  num: 42,
  string: 'asdf',
  bool: false,
  bool2: true,
  float: 42.5,
  bignum: 1073741824,
  bigfloat: 1073741824.7,
  null: null,
  map: { key1: 'value1', key2: 'value2', key3: { key4: 'value4', key5: 'value5' } },
  array: [1, 2.5, '3a', false, null, 'things', { k1: 'v1', k2: 'v2' }, [1, 2, 3]],
  '123': '234',
};

describe('metadata text rendering: scalars', () => {
  it('prints strings raw, without a trailing newline', () => {
    assert.equal(renderText('asdf'), 'asdf');
    assert.equal(renderText(''), '');
    assert.equal(renderText('two\nlines'), 'two\nlines');
  });

  it('prints integers as integers and floats without trailing zeros', () => {
    assert.equal(renderText(42), '42');
    assert.equal(renderText(42.0), '42');
    assert.equal(renderText(JSON.parse('42.0') as number), '42');
    assert.equal(renderText(JSON.parse('1.50') as number), '1.5');
    assert.equal(renderText(42.5), '42.5');
    assert.equal(renderText(1073741824), '1073741824');
    assert.equal(renderText(1073741824.7), '1073741824.7');
    assert.equal(renderText(-3), '-3');
    assert.equal(renderText(0), '0');
    assert.equal(renderText(0.1 + 0.2), '0.3');
  });

  it('formats like Go %f with zeros trimmed (six decimals, no exponent)', () => {
    assert.equal(formatNumber(1e21), '1000000000000000000000');
    assert.equal(formatNumber(1.25e-7), '0');
    assert.equal(formatNumber(3.1415926535), '3.141593');
    assert.equal(formatNumber(100), '100');
    assert.equal(formatNumber(-2.5), '-2.5');
  });

  it('prints booleans and null', () => {
    assert.equal(renderText(true), 'true');
    assert.equal(renderText(false), 'false');
    assert.equal(renderText(null), '');
  });
});

describe('metadata text rendering: maps and arrays', () => {
  it('lists map keys sorted, one per line, with / after maps and arrays', () => {
    assert.equal(
      renderText(TYPES),
      '123\narray/\nbigfloat\nbignum\nbool\nbool2\nfloat\nmap/\nnull\nnum\nstring\n',
    );
    assert.equal(renderText(TYPES.map as JsonMap), 'key1\nkey2\nkey3/\n');
  });

  it('renders the spec example of a container key listing', () => {
    const container: JsonMap = {
      uuid: 'u',
      name: 'n',
      primary_ip: '10.42.0.2',
      ips: ['10.42.0.2'],
      ports: [],
      labels: {},
      stack_name: 's',
      service_name: 'w',
      hostname: 'h',
      host_uuid: 'hu',
      health_state: null,
      start_count: 1,
      create_index: 1,
    };
    assert.equal(
      renderText(container),
      'create_index\nhealth_state\nhost_uuid\nhostname\nips/\nlabels/\nname\nports/\nprimary_ip\nservice_name\nstack_name\nstart_count\nuuid\n',
    );
  });

  it('sorts whole lines as the original did (the / suffix takes part in the order)', () => {
    // '-' (0x2d) sorts before '/' (0x2f): "a-b\n" < "a/\n" although key "a" < "a-b".
    assert.equal(renderText({ a: { x: 1 }, 'a-b': 1 }), 'a-b\na/\n');
  });

  it('query-escapes keys', () => {
    assert.equal(renderText({ 'stack/service': 'alias', 'a b': 1, 'io.rancher.x': 2 }), 'a+b\nio.rancher.x\nstack%2Fservice\n');
  });

  it('lists arrays as i=<name>, i=<uuid>, i/ or i', () => {
    assert.equal(renderText(TYPES.array as JsonValue[]), '0\n1\n2\n3\n4\n5\n6/\n7/\n');
    assert.equal(renderText([{ name: 'web' }, { name: 'db' }]), '0=web\n1=db\n');
    assert.equal(renderText([{ uuid: 'u-1', x: 1 }, { name: 'a b/c', uuid: 'u-2' }, { other: 1 }, [1]]), '0=u-1\n1=a+b%2Fc\n2/\n3/\n');
    assert.equal(renderText([{ name: 7, uuid: 'u' }]), '0=u\n');
    assert.equal(renderText([]), '');
    assert.equal(renderText({}), '');
  });
});

describe('queryEscape', () => {
  it('escapes like Go url.QueryEscape', () => {
    assert.equal(queryEscape('AZaz09-_.~'), 'AZaz09-_.~');
    assert.equal(queryEscape("a b/c!*'()"), 'a+b%2Fc%21%2A%27%28%29');
    assert.equal(queryEscape('ä=&?#%'), '%C3%A4%3D%26%3F%23%25');
  });
});

describe('JSON and YAML rendering', () => {
  it('renders JSON compactly', () => {
    assert.equal(renderJson(TYPES.map as JsonMap), '{"key1":"value1","key2":"value2","key3":{"key4":"value4","key5":"value5"}}');
    assert.equal(renderJson('1-abc'), '"1-abc"');
    assert.equal(renderJson(null), 'null');
  });

  it('writes shared sub-trees out in full in YAML (no anchors or aliases)', () => {
    const shared: JsonMap = { a: 1 };
    const text = renderYaml({ x: shared, y: [shared] });
    assert.doesNotMatch(text, /[&*]/);
    assert.deepEqual(parseYaml(text), { x: { a: 1 }, y: [{ a: 1 }] });
    assert.equal(renderYaml('1.0'), '"1.0"\n');
    assert.deepEqual(parseYaml(render(TYPES, 'yaml')), TYPES);
  });
});

describe('content negotiation', () => {
  it('picks JSON for anything with json, YAML for anything with yaml, else text', () => {
    assert.equal(negotiate('application/json'), 'json');
    assert.equal(negotiate('application/json, text/plain'), 'json');
    assert.equal(negotiate('application/x-yaml'), 'yaml');
    assert.equal(negotiate('text/yaml'), 'yaml');
    assert.equal(negotiate('*/*'), 'text');
    assert.equal(negotiate('text/html,application/xhtml+xml'), 'text');
    assert.equal(negotiate(undefined), 'text');
    assert.equal(negotiate(''), 'text');
    assert.equal(CONTENT_TYPES.json, 'application/json');
  });
});

describe('error bodies', () => {
  it('renders the original error bodies', () => {
    assert.equal(renderError('text', 404, 'Not found'), 'Not found\n');
    assert.equal(renderError('json', 404, 'Not found'), '{"code":404,"message":"Not found","type":"error"}\n');
    assert.equal(renderError('yaml', 404, 'Not found'), 'code: 404\nmessage: Not found\ntype: error\n\n');
    assert.deepEqual(JSON.parse(renderError('json', 400, 'invalid URL escape "%zz"')), {
      code: 400,
      message: 'invalid URL escape "%zz"',
      type: 'error',
    });
  });
});
