// Compose import/export: docker-compose.yml + rancher-compose.yml ⇄ StackSpec.
export { parseCompose, parseCatalog, DEFAULT_DOCKER_COMPOSE_FILE, DEFAULT_RANCHER_COMPOSE_FILE } from './parse.js';
export { exportCompose } from './export.js';
export { readCatalog, resolveAnswers, QUESTION_TYPES } from './catalog.js';
export { interpolateString, interpolateValue, escapeString, escapeValue, InterpolationError } from './interpolate.js';
export type { Variables, ValuePath } from './interpolate.js';
export type * from './spec.js';
