/**
 * Who a request acts for. Set by the API-key guard on every protected request; the pipeline and the
 * repositories scope everything by it. Plain types only.
 */
export interface Principal {
  /**
   * The owner of everything this request stores and the only owner whose data it sees: the API key's
   * name, or null when API keys are off (then records belong to no key).
   */
  readonly owner: string | null;
  /**
   * Who is asking, for rate limits and fair shares: `key:<name>` with API keys, else `ip:<address>`
   * (a client cannot mint new identities by sending random keys).
   */
  readonly client: string;
}
