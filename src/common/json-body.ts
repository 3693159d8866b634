// A response body as JSON when it is JSON: an empty or unparsable body is undefined (the caller goes by
// the HTTP status then). Shared by the agent's client and the web UI's (no Node APIs here).

export function jsonOrUndefined(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
