// The `.catalog` block of rancher-compose.yml (catalog template metadata and questions) and the
// resolution of answers against its questions. The block is read before interpolation (its questions
// define the variables) and its own strings are never interpolated.
import type { CatalogInfo, CatalogQuestion } from './spec.js';
import {
  asBool,
  asMap,
  asNonEmptyString,
  asScalarString,
  describe,
  fail,
  sub,
  unknownKey,
  type Where,
} from './values.js';

export const QUESTION_TYPES = [
  'string',
  'int',
  'boolean',
  'enum',
  'password',
  'service',
  'multiline',
  'certificate',
] as const satisfies readonly CatalogQuestion['type'][];

const CATALOG_KEYS = [
  'name',
  'version',
  'description',
  'uuid',
  'minimum_rancher_version',
  'maximum_rancher_version',
  'questions',
];
const CATALOG_UNSUPPORTED = ['upgrade_from', 'projectURL', 'labels'];
const QUESTION_KEYS = ['variable', 'label', 'description', 'type', 'required', 'default', 'options'];
const QUESTION_UNSUPPORTED = ['group', 'min', 'max', 'min_length', 'max_length', 'valid_chars', 'invalid_chars'];
const VARIABLE = /^[A-Za-z_][A-Za-z0-9_]*$/;

function isQuestionType(s: string): s is CatalogQuestion['type'] {
  return (QUESTION_TYPES as readonly string[]).includes(s);
}

function checkKey(where: Where, field: string, key: string, known: string[], unsupported: string[]): void {
  if (known.includes(key)) return;
  if (unsupported.includes(key)) {
    fail(where, sub(field, key), `"${key}" is not supported by drover yet`, 'UnsupportedComposeKey');
  }
  unknownKey(where, sub(field, key), key, known);
}

/** Why `value` is not an acceptable answer to `q`, or undefined when it is. */
function answerProblem(q: CatalogQuestion, value: string): string | undefined {
  if (value === '') return undefined;
  if (q.type === 'int' && !/^[-+]?\d+$/.test(value)) return 'must be an integer';
  if (q.type === 'boolean' && value !== 'true' && value !== 'false') return 'must be true or false';
  if (q.type === 'enum' && !(q.options ?? []).includes(value)) {
    return `must be one of the options (${(q.options ?? []).join(', ')})`;
  }
  return undefined;
}

function readQuestion(where: Where, field: string, raw: unknown): CatalogQuestion {
  const map = asMap(where, field, raw);
  for (const key of Object.keys(map)) checkKey(where, field, key, QUESTION_KEYS, QUESTION_UNSUPPORTED);
  if (map.variable === undefined) fail(where, sub(field, 'variable'), 'is required');
  const variable = asNonEmptyString(where, sub(field, 'variable'), map.variable);
  if (!VARIABLE.test(variable)) {
    fail(where, sub(field, 'variable'), `${describe(variable)} is not a valid variable name (letters, digits and _, not starting with a digit)`);
  }
  const type = map.type === undefined ? 'string' : asNonEmptyString(where, sub(field, 'type'), map.type);
  if (!isQuestionType(type)) {
    fail(where, sub(field, 'type'), `${describe(type)} is not a question type (accepted: ${QUESTION_TYPES.join(', ')})`);
  }
  const q: CatalogQuestion = { variable, type, required: false };
  if (map.label !== undefined) q.label = asScalarString(where, sub(field, 'label'), map.label);
  if (map.description !== undefined) q.description = asScalarString(where, sub(field, 'description'), map.description);
  if (map.required !== undefined && map.required !== null) q.required = asBool(where, sub(field, 'required'), map.required);
  if (map.options !== undefined && map.options !== null) {
    if (!Array.isArray(map.options)) fail(where, sub(field, 'options'), `expected a list, got ${describe(map.options)}`);
    q.options = map.options.map((o: unknown, i) => asScalarString(where, sub(sub(field, 'options'), i), o));
  }
  if (type === 'enum' && (q.options ?? []).length === 0) {
    fail(where, sub(field, 'options'), 'an enum question needs a non-empty list of options');
  }
  if (map.default !== undefined && map.default !== null) {
    q.default = asScalarString(where, sub(field, 'default'), map.default);
    const problem = answerProblem(q, q.default);
    if (problem) fail(where, sub(field, 'default'), `default ${describe(q.default)} of question "${variable}" ${problem}`);
  }
  return q;
}

/** Validates a `.catalog` block (`field` is how the file names it: `.catalog` or `catalog`). */
export function readCatalog(file: string, field: string, raw: unknown): CatalogInfo {
  const where: Where = { file };
  const map = asMap(where, field, raw);
  for (const key of Object.keys(map)) checkKey(where, field, key, CATALOG_KEYS, CATALOG_UNSUPPORTED);
  const info: CatalogInfo = { questions: [] };
  for (const key of ['name', 'version', 'description', 'uuid'] as const) {
    if (map[key] !== undefined) info[key] = asScalarString(where, sub(field, key), map[key]);
  }
  // Accepted and checked, but not kept: drover has no Rancher version to compare them with.
  for (const key of ['minimum_rancher_version', 'maximum_rancher_version']) {
    if (map[key] !== undefined) asScalarString(where, sub(field, key), map[key]);
  }
  const questions = map.questions ?? [];
  if (!Array.isArray(questions)) fail(where, sub(field, 'questions'), `expected a list, got ${describe(questions)}`);
  const seen = new Set<string>();
  questions.forEach((raw: unknown, i) => {
    const q = readQuestion(where, sub(sub(field, 'questions'), i), raw);
    if (seen.has(q.variable)) {
      fail(where, sub(sub(sub(field, 'questions'), i), 'variable'), `question "${q.variable}" is defined twice`);
    }
    seen.add(q.variable);
    info.questions.push(q);
  });
  return info;
}

/**
 * The variables for substitution: every given answer (keys without a question are plain variables),
 * plus the defaults of unanswered questions. Answers are checked against their question's type.
 */
export function resolveAnswers(
  file: string,
  catalog: CatalogInfo | undefined,
  given: Readonly<Record<string, string>>,
): Record<string, string> {
  const answers: Record<string, string> = { ...given };
  for (const q of catalog?.questions ?? []) {
    const field = `answers.${q.variable}`;
    const value = Object.hasOwn(given, q.variable) ? given[q.variable] : q.default;
    if (value === undefined || value === '') {
      if (q.required) {
        fail({ file }, field, `catalog question "${q.variable}"${q.label ? ` (${q.label})` : ''} is required: give an answer (it has no default)`);
      }
      if (value === undefined) continue;
    }
    const problem = answerProblem(q, value);
    if (problem) fail({ file }, field, `answer ${describe(value)} to catalog question "${q.variable}" ${problem}`);
    answers[q.variable] = value;
  }
  return answers;
}
