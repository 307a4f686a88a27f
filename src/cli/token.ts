/** `sluice token create NAME --role ROLE [--file PATH]`: a new random token, its hash appended to the tokens file. */
import { appendFile, readFile } from 'node:fs/promises';
import { isRole } from '../auth/roles.js';
import { hashToken, newToken, parseTokensFile, TOKEN_NAME, TokensFileError, tokenLine } from '../auth/tokens.js';
import { CliError } from './client.js';

export interface TokenCreated {
  token: string;
  file: string;
  line: string;
}

async function existingText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw new CliError(`cannot read ${file}: ${(error as Error).message}`);
  }
}

/** Appends the new token's line; the token itself is only in the answer, never on disk. */
export async function tokenCreate(
  name: string,
  role: string | undefined,
  file: string | undefined,
): Promise<TokenCreated> {
  if (!TOKEN_NAME.test(name))
    throw new CliError(`token name ${JSON.stringify(name)} must be 1-64 letters, digits or ._@-`, 2);
  if (role === undefined) throw new CliError('give the token a role: --role viewer, worker or admin', 2);
  if (!isRole(role)) throw new CliError(`--role must be viewer, worker or admin, got ${JSON.stringify(role)}`, 2);
  if (!file) throw new CliError('give --file PATH or set SLUICE_TOKENS_FILE: the tokens file to add the token to', 2);
  const text = await existingText(file);
  let lines: ReturnType<typeof parseTokensFile>;
  try {
    lines = parseTokensFile(text, file);
  } catch (error) {
    if (error instanceof TokensFileError) throw new CliError(`${error.message}; fix the file first`);
    throw error;
  }
  if (lines.some((line) => line.name === name)) {
    throw new CliError(`${file} already has a token named ${name}; remove its line to replace it`);
  }
  const token = newToken();
  const line = tokenLine({ name, role, hash: hashToken(token) });
  const separator = text === '' || text.endsWith('\n') ? '' : '\n';
  // Created readable by its owner only: names and roles are not secret, but nobody else needs them.
  await appendFile(file, `${separator}${line}\n`, { mode: 0o600 });
  return { token, file, line };
}
