/**
 * Credentials a client puts into a URL's query string (`?api_key=…`, `?access_token=…`, a
 * presigned URL's signature) must not reach a log line or an exported span, even though the API
 * itself only reads keys from headers. Kept free of Nest and SDK imports: `startTelemetry()` uses
 * it before the app loads.
 */

export const REDACTED = '[redacted]';

/**
 * Parameter names, compared in lower case with `-`, `_` and `.` removed (`API_KEY`, `api-key` and
 * `apiKey` are all `apikey`), that carry a credential or a signature.
 */
const CREDENTIAL_NAME =
  /^(?:key|apikey|xapikey|token|accesstoken|idtoken|refreshtoken|sessiontoken|securitytoken|auth|authorization|bearer|jwt|code|password|passwd|pwd|secret|clientsecret|sig|signature|credential|awsaccesskeyid|xamzsignature|xamzcredential|xamzsecuritytoken|xgoogsignature|xgoogcredential)$|token$|secret$|password$|apikey$/;

/** True when a query parameter of this (decoded) name carries a credential. */
export function isCredentialParam(name: string): boolean {
  return CREDENTIAL_NAME.test(name.toLowerCase().replace(/[-_.\s]/g, ''));
}

function decodeName(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return raw;
  }
}

/**
 * The query string (without `?`) with every credential parameter's value replaced by
 * `[redacted]`; everything else is left byte for byte as it came.
 */
export function redactQuery(query: string): string {
  return query
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const name = eq < 0 ? pair : pair.slice(0, eq);
      return isCredentialParam(decodeName(name)) ? `${name}=${REDACTED}` : pair;
    })
    .join('&');
}

/** A request target (`/path?query`) with its credential query parameters redacted. */
export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : `${url.slice(0, q + 1)}${redactQuery(url.slice(q + 1))}`;
}

/** Express's parsed `req.query` with the values of credential parameters redacted (a copy). */
export function redactQueryObject(query: unknown): unknown {
  if (query === null || typeof query !== 'object') return query;
  return Object.fromEntries(Object.entries(query).map(([name, value]) => [name, isCredentialParam(name) ? REDACTED : value]));
}
