// The UI imports the control plane's model types (type-only: erased from the bundle). Type-checking those
// files meets src/model/limits.ts reading process.env for its limits; the browser never runs that code.
declare const process: { env: Record<string, string | undefined> };
