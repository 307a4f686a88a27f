/** A small GraphQL-over-HTTP client for the CLI: one POST, errors turned into messages. */

export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

let bearer: string | null = null;

/** The token every request of this CLI process sends as `Authorization: Bearer` (--token or SLUICE_TOKEN). */
export function useToken(token: string | null | undefined): void {
  bearer = token ? token : null;
}

export async function graphql<T>(url: string, query: string, variables: Record<string, unknown> = {}): Promise<T> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json',
        ...(bearer === null ? {} : { authorization: `Bearer ${bearer}` }),
      },
      body: JSON.stringify({ query, variables }),
    });
  } catch (error) {
    throw new CliError(`cannot reach Sluice at ${url}: ${(error as Error).cause ?? (error as Error).message}`);
  }
  const text = await response.text();
  if (response.status === 401) {
    throw new CliError(
      `Sluice at ${url} ${bearer === null ? 'needs a token' : 'does not know this token'} (HTTP 401): give --token TOKEN or set SLUICE_TOKEN`,
    );
  }
  let body: { data?: T; errors?: Array<{ message: string }> };
  try {
    body = JSON.parse(text);
  } catch {
    throw new CliError(`Sluice at ${url} answered HTTP ${response.status} with a body that is not JSON`);
  }
  if (body.errors?.length) throw new CliError(body.errors.map((e) => e.message).join('\n'));
  if (!body.data) throw new CliError(`Sluice at ${url} answered HTTP ${response.status} without data`);
  return body.data;
}

/** Result unions: a payload, or a typed error with a message. */
export function unwrap<T>(result: { __typename: string; message?: string } & Partial<T>, payload: keyof T): T {
  if (result.__typename.endsWith('Error')) {
    throw new CliError(`${result.__typename}: ${result.message ?? 'failed'}`);
  }
  if (!(payload in result)) throw new CliError(`unexpected answer ${result.__typename}`);
  return result as T;
}
