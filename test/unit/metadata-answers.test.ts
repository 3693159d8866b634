import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  AnswersError,
  highestVersion,
  jsonProblem,
  listedVersions,
  mergeDefaults,
  normalizeAnswers,
  parseAnswersText,
  validateAnswers,
  type Answers,
} from '../../src/metadata/answers.js';

const JSON_FILE = JSON.stringify({
  '2015-07-25': { default: { version: '1', who: 'default-old' } },
  '2015-12-19': {
    default: { version: '2', who: 'default', list: [1, 2] },
    '10.42.0.5': { who: 'client', self: { x: 1 } },
  },
});

describe('answers files', () => {
  it('loads JSON, merges default keys into clients (shallow) and fills in latest', () => {
    const a = parseAnswersText(JSON_FILE, 'answers.json');
    assert.deepEqual(Object.keys(a).sort(), ['2015-07-25', '2015-12-19', 'latest']);
    assert.equal(a.latest, a['2015-12-19']);
    assert.deepEqual(a['2015-12-19']?.['10.42.0.5'], { who: 'client', self: { x: 1 }, version: '2', list: [1, 2] });
    // Shallow: the merged value is the default's own object.
    assert.equal(a['2015-12-19']?.['10.42.0.5']?.list, a['2015-12-19']?.default?.list);
  });

  it('loads YAML with anchors and aliases', () => {
    const yaml = [
      "'2016-07-29': &v",
      '  default:',
      '    version: "7"',
      '    containers: &cs',
      '      - {name: a, create_index: 1}',
      '  10.42.0.9:',
      '    self: {container: {name: a}}',
      '    containers: *cs',
      "'2015-12-19': *v",
      '',
    ].join('\n');
    for (const name of ['answers.yml', 'answers.yaml', 'answers']) {
      const a = parseAnswersText(yaml, name);
      assert.deepEqual(Object.keys(a).sort(), ['2015-12-19', '2016-07-29', 'latest']);
      assert.equal(a.latest, a['2016-07-29']);
      assert.equal(a['2016-07-29']?.['10.42.0.9']?.version, '7');
      assert.deepEqual(a['2016-07-29']?.['10.42.0.9']?.containers, [{ name: 'a', create_index: 1 }]);
    }
  });

  it('keeps an explicit latest', () => {
    const a = validateAnswers({ '2015-07-25': { default: { v: 1 } }, latest: { default: { v: 2 } } });
    assert.deepEqual(a.latest?.default, { v: 2 });
  });

  it('reports bad files with the place of the problem', () => {
    const bad: [string, string, RegExp][] = [
      ['{"2016-07-29": {"default": "x"}}', 'a.json', /"2016-07-29" → "default": must be a map/],
      ['{"2016-07-29": []}', 'a.json', /"2016-07-29": must be a map of/],
      ['{"default": {"who": "default"}}', 'a.json', /"default" → "who": must be a map/],
      ['{"2016-07-29": ', 'a.json', /a\.json: not valid JSON/],
      ['a: [', 'a.yml', /a\.yml: not valid YAML/],
      ['"2016-07-29": {default: {n: .inf}}', 'a.yml', /numbers must be finite/],
      ['a: 1\na: 2\n', 'a.yml', /not valid YAML/],
      ['', 'a.yml', /the file is empty/],
      ['[1, 2]', 'a.json', /must be a map of "<version>"/],
    ];
    for (const [text, name, re] of bad) {
      assert.throws(() => parseAnswersText(text, name), (e: unknown) => e instanceof AnswersError && re.test(e.message), text);
    }
  });
});

describe('answers helpers', () => {
  it('finds problems in non-JSON values', () => {
    assert.equal(jsonProblem({ a: [1, 'x', null, true, { b: 2 }] }), undefined);
    assert.match(jsonProblem({ a: NaN }) ?? '', /\$\."a": numbers must be finite/);
    assert.match(jsonProblem({ d: new Date(0) }) ?? '', /unsupported value of type Date/);
    assert.match(jsonProblem({ f: () => 1 }) ?? '', /unsupported value of type function/);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.match(jsonProblem(cyclic) ?? '', /refers to itself/);
    const shared = { x: 1 };
    assert.equal(jsonProblem({ a: shared, b: [shared] }), undefined);
  });

  it('merges only missing top-level keys and returns the client itself when nothing is missing', () => {
    const client = { a: 1, self: { c: 1 } };
    assert.deepEqual(mergeDefaults(client, { a: 2, b: 3, self: { h: 1 } }), { a: 1, self: { c: 1 }, b: 3 });
    assert.equal(mergeDefaults(client, { a: 2 }), client);
  });

  it('is idempotent and keeps versions that share answers sharing them', () => {
    const a: Answers = normalizeAnswers(validateAnswers(JSON.parse(JSON_FILE)));
    const again = normalizeAnswers(a);
    assert.deepEqual(again, a);
    assert.equal(again['2015-12-19'], a['2015-12-19']);
    assert.equal(again.latest, again['2015-12-19']);
  });

  it('picks the ASCII-betically highest version and lists latest always', () => {
    assert.equal(highestVersion(['2015-07-25', '2016-07-29', '2015-12-19']), '2016-07-29');
    assert.equal(highestVersion([]), undefined);
    assert.deepEqual(listedVersions({}), ['latest']);
    assert.deepEqual(listedVersions({ b: {}, a: {} }), ['a', 'b', 'latest']);
  });
});
