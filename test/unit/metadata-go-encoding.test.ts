// JSON and YAML byte for byte as the original wrote them (Go's encoding/json Marshal, gopkg.in/yaml.v2
// Marshal). Expected bytes are spelled out from those encoders' rules (spec/metadata.md: sorted keys, `|-`
// block scalars with their content indented two spaces), never produced by the code under test.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { JsonMap } from '../../src/metadata/answers.js';
import { renderError, renderJson, renderYaml } from '../../src/metadata/render.js';
import { goFormatG, plainIsString } from '../../src/metadata/go-yaml.js';

const CONTAINER: JsonMap = {
  uuid: 'c-1',
  name: 'web-1',
  primary_ip: '10.42.0.5',
  ips: ['10.42.0.5'],
  ports: ['0.0.0.0:80:8080/tcp'],
  labels: { 'io.rancher.stack.name': 'shop', 'io.rancher.container.ip': '10.42.0.5/16', a10: 'x', a9: 'y' },
  links: {},
  dns: [],
  health_state: null,
  start_count: 2,
  create_index: 1,
  system: false,
  service_index: '1',
};

describe('JSON as Go json.Marshal', () => {
  it('sorts keys, keeps arrays in order, writes no whitespace and no newline', () => {
    assert.equal(
      renderJson(CONTAINER),
      '{"create_index":1,"dns":[],"health_state":null,"ips":["10.42.0.5"],' +
        '"labels":{"a10":"x","a9":"y","io.rancher.container.ip":"10.42.0.5/16","io.rancher.stack.name":"shop"},' +
        '"links":{},"name":"web-1","ports":["0.0.0.0:80:8080/tcp"],"primary_ip":"10.42.0.5","service_index":"1",' +
        '"start_count":2,"system":false,"uuid":"c-1"}',
    );
    assert.equal(renderJson({ b: [{ z: 1, a: 2 }], a: { y: null, x: true } }), '{"a":{"x":true,"y":null},"b":[{"a":2,"z":1}]}');
  });

  it('orders keys by UTF-8 bytes (upper case before lower, U+FFFD before an emoji)', () => {
    assert.equal(renderJson({ b: 1, B: 2, _: 3, '1': 4, '\ufffd': 5, '😀': 6 }), '{"1":4,"B":2,"_":3,"b":1,"\ufffd":5,"😀":6}');
  });

  it('escapes HTML characters, control characters and line separators as Go does', () => {
    assert.equal(renderJson('<a href="x">&</a>'), '"\\u003ca href=\\"x\\"\\u003e\\u0026\\u003c/a\\u003e"');
    assert.equal(renderJson('tab\there\nnl\rcr\bbs\ffeed\u0001\u001f\\'), '"tab\\there\\nnl\\rcr\\u0008bs\\u000cfeed\\u0001\\u001f\\\\"');
    assert.equal(renderJson('a\u2028b\u2029c\u007f'), '"a\\u2028b\\u2029c\u007f"');
    assert.equal(renderJson('lone \ud800 surrogate'), '"lone \\ufffd surrogate"');
    assert.equal(renderJson('ünïcødé 😀'), '"ünïcødé 😀"');
    assert.equal(renderJson({ '<k>': '&' }), '{"\\u003ck\\u003e":"\\u0026"}');
  });

  it('prints numbers as Go prints float64 and integers', () => {
    assert.equal(renderJson([42, 42.5, 1073741824.7, 1e21, 1e-7, 0.000001, -3, 0]), '[42,42.5,1073741824.7,1e+21,1e-7,0.000001,-3,0]');
  });

  it('error bodies: sorted keys, HTML-escaped message, http.Error newline', () => {
    assert.equal(renderError('json', 404, 'Not found'), '{"code":404,"message":"Not found","type":"error"}\n');
    assert.equal(renderError('json', 400, 'invalid URL escape "%<"'), '{"code":400,"message":"invalid URL escape \\"%\\u003c\\"","type":"error"}\n');
  });
});

describe('YAML as gopkg.in/yaml.v2 Marshal', () => {
  it('writes a block mapping with sorted keys, indentless lists, {} and [] for empty ones', () => {
    assert.equal(
      renderYaml(CONTAINER),
      [
        'create_index: 1',
        'dns: []',
        'health_state: null',
        'ips:',
        '- 10.42.0.5',
        'labels:',
        '  a9: "y"',
        '  a10: x',
        '  io.rancher.container.ip: 10.42.0.5/16',
        '  io.rancher.stack.name: shop',
        'links: {}',
        'name: web-1',
        'ports:',
        '- 0.0.0.0:80:8080/tcp',
        'primary_ip: 10.42.0.5',
        'service_index: "1"',
        'start_count: 2',
        'system: false',
        'uuid: c-1',
        '',
      ].join('\n'),
    );
  });

  it('nests maps in lists and lists in lists', () => {
    assert.equal(
      renderYaml({ services: [{ name: 'web', ports: ['80/tcp'], labels: {} }, { name: 'db', sidekicks: [] }], matrix: [[1, 2], []] }),
      'matrix:\n- - 1\n  - 2\n- []\nservices:\n- labels: {}\n  name: web\n  ports:\n  - 80/tcp\n- name: db\n  sidekicks: []\n',
    );
    assert.equal(renderYaml([]), '[]\n');
    assert.equal(renderYaml({}), '{}\n');
    assert.equal(renderYaml([{ a: { b: [] } }]), '- a:\n    b: []\n');
  });

  it('writes strings with newlines as literal block scalars indented two spaces', () => {
    assert.equal(renderYaml({ config: 'global\n  maxconn 4096\ndefaults' }), 'config: |-\n  global\n    maxconn 4096\n  defaults\n');
    assert.equal(renderYaml({ a: { script: 'line 1\nline 2\n' } }), 'a:\n  script: |\n    line 1\n    line 2\nb: 1\n'.replace('b: 1\n', ''));
    assert.equal(renderYaml({ keep: 'x\n\n' }), 'keep: |+\n  x\n\nz: 0\n'.replace('z: 0\n', ''));
    assert.equal(renderYaml({ lead: ' indented\nnext' }), 'lead: |2-\n   indented\n  next\n');
    assert.equal(renderYaml(['a\nb']), '- |-\n  a\n  b\n');
    assert.equal(renderYaml('top\nlevel'), '|-\n  top\n  level\n');
    // Trailing spaces before a newline, or a tab: no block scalar, double quotes.
    assert.equal(renderYaml({ s: 'a \nb' }), 's: "a \\nb"\n');
    assert.equal(renderYaml({ s: 'a\tb\nc' }), 's: "a\\tb\\nc"\n');
  });

  it('quotes strings that would read back as something else, and only those', () => {
    const y = (s: string): string => renderYaml({ k: s });
    assert.equal(y('true'), 'k: "true"\n');
    assert.equal(y('no'), 'k: "no"\n');
    assert.equal(y('Y'), 'k: "Y"\n');
    assert.equal(y('~'), 'k: "~"\n');
    assert.equal(y(''), 'k: ""\n');
    assert.equal(y('null'), 'k: "null"\n');
    assert.equal(y('42'), 'k: "42"\n');
    assert.equal(y('-1.5e3'), 'k: "-1.5e3"\n');
    assert.equal(y('0x1F'), 'k: "0x1F"\n');
    assert.equal(y('1_000'), 'k: "1_000"\n');
    assert.equal(y('.5'), 'k: ".5"\n');
    assert.equal(y('.inf'), 'k: ".inf"\n');
    assert.equal(y('1:20'), 'k: "1:20"\n');
    // Plain: they read back as strings.
    assert.equal(y('1.2.3'), 'k: 1.2.3\n');
    assert.equal(y('2016-07-29'), 'k: 2016-07-29\n');
    assert.equal(y('yesterday'), 'k: yesterday\n');
    assert.equal(y('10.42.0.5'), 'k: 10.42.0.5\n');
    assert.equal(y('80:80/tcp'), 'k: 80:80/tcp\n');
    assert.equal(y('/latest'), 'k: /latest\n');
    assert.equal(y('ünïcødé'), 'k: ünïcødé\n');
    assert.equal(y('<a&b>'), 'k: <a&b>\n');
    assert.ok(plainIsString('webstack-app-1'));
    assert.ok(!plainIsString('+12'));
  });

  it('single-quotes what only indicator characters keep from being plain, double-quotes the rest', () => {
    const y = (s: string): string => renderYaml({ k: s });
    assert.equal(y('- item'), "k: '- item'\n");
    assert.equal(y('a: b'), "k: 'a: b'\n");
    assert.equal(y('#comment'), "k: '#comment'\n");
    assert.equal(y('*star'), "k: '*star'\n");
    assert.equal(y("it's {x}"), "k: it's {x}\n");
    assert.equal(y("'quoted'"), "k: '''quoted'''\n");
    assert.equal(y(' lead'), "k: ' lead'\n");
    assert.equal(y('trail '), "k: 'trail '\n");
    assert.equal(y('a\tb'), 'k: "a\\tb"\n');
    assert.equal(y('bell\u0007'), 'k: "bell\\a"\n');
    assert.equal(y('\u0001'), 'k: "\\x01"\n');
    assert.equal(y('emoji 😀'), 'k: "emoji \\U0001F600"\n');
    assert.equal(y('bom\ufeff'), 'k: "bom\\uFEFF"\n');
  });

  it('folds long plain scalars at a space past column 80', () => {
    const words = Array.from({ length: 20 }, (_, i) => `word${i}`).join(' ');
    assert.equal(
      renderYaml({ description: words }),
      'description: word0 word1 word2 word3 word4 word5 word6 word7 word8 word9 word10 word11\n  word12 word13 word14 word15 word16 word17 word18 word19\n',
    );
  });

  it('sorts keys in yaml.v2 natural order: digit runs as numbers, non-letters first', () => {
    // A non-digit against a digit compares as 0 against the digit run ('_x' < '9', 'a_b' < 'a9'), two
    // non-digits by code point ('a.b' < 'a_b').
    assert.equal(renderYaml({ b: 1, a10: 2, a9: 3, A: 4, _x: 5, '10': 6, '9': 7, 'a.b': 8, a_b: 9, ab: 10 }), [
      '_x: 5',
      '"9": 7',
      '"10": 6',
      'A: 4',
      'a.b: 8',
      'a_b: 9',
      'a9: 3',
      'a10: 2',
      'ab: 10',
      'b: 1',
      '',
    ].join('\n'));
  });

  it('prints numbers as Go: integers as integers, others in %g shortest form', () => {
    assert.equal(renderYaml([42, 42.5, 1073741824.7, 0.5, 1e-7, 0.0001, -2.25, 0]), '- 42\n- 42.5\n- 1.0737418247e+09\n- 0.5\n- 1e-07\n- 0.0001\n- -2.25\n- 0\n');
    assert.equal(goFormatG(123456.5), '123456.5');
    assert.equal(goFormatG(1234567.5), '1.2345675e+06');
  });

  it('writes keys longer than 128 bytes as complex keys', () => {
    const k = 'k'.repeat(129);
    assert.equal(renderYaml({ [k]: 'v' }), `? ${k}\n: v\n`);
  });
});
