/**
 * The tokens file (`SLUICE_TOKENS_FILE`): one token a line, `NAME ROLE SHA256_HEX_OF_TOKEN`,
 * `#` starting a comment. Only hashes are stored, so the file holds no secret; a token is looked
 * up by its hash, which tells a guesser nothing about the tokens that exist.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isRole, type Principal, type Role } from './roles.js';

export class TokensFileError extends Error {
  override readonly name = 'TokensFileError';
}

export interface TokenLine {
  name: string;
  role: Role;
  /** SHA-256 of the token, lowercase hex. */
  hash: string;
}

/** Letters, digits and `._@-`, up to 64: a name fit for an audit log and a tokens-file field. */
export const TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Who is asking in open mode: there is no token, and the server only listens on loopback. */
export const ANONYMOUS: Principal = Object.freeze({ name: 'anonymous', role: 'admin' });

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** A new random token: 256 bits, URL-safe, with a prefix that secret scanners can recognise. */
export function newToken(): string {
  return `sluice_${randomBytes(32).toString('base64url')}`;
}

export function tokenLine(line: TokenLine): string {
  return `${line.name} ${line.role} ${line.hash}`;
}

/** Parses the file's text; every error names the file and the line. */
export function parseTokensFile(text: string, path: string): TokenLine[] {
  const lines: TokenLine[] = [];
  const names = new Set<string>();
  const hashes = new Set<string>();
  text.split(/\r?\n/).forEach((raw, index) => {
    const where = `${path}:${index + 1}`;
    const content = raw.replace(/#.*$/, '').trim();
    if (content === '') return;
    const fields = content.split(/\s+/);
    if (fields.length !== 3) {
      throw new TokensFileError(`${where}: expected NAME ROLE SHA256_HEX, got ${fields.length} field(s)`);
    }
    const [name, role, hash] = fields as [string, string, string];
    if (!TOKEN_NAME.test(name)) {
      throw new TokensFileError(`${where}: name ${JSON.stringify(name)} must be 1-64 letters, digits or ._@-`);
    }
    if (!isRole(role)) {
      throw new TokensFileError(`${where}: role must be viewer, worker or admin, got ${JSON.stringify(role)}`);
    }
    if (!SHA256_HEX.test(hash)) {
      throw new TokensFileError(
        `${where}: the third field must be the token's SHA-256 in 64 lowercase hex digits (never the token itself; \`sluice token create\` writes it)`,
      );
    }
    if (names.has(name)) throw new TokensFileError(`${where}: the name ${name} is already used on an earlier line`);
    if (hashes.has(hash)) throw new TokensFileError(`${where}: the same token is already listed on an earlier line`);
    names.add(name);
    hashes.add(hash);
    lines.push({ name, role, hash });
  });
  return lines;
}

export async function readTokensFile(path: string): Promise<TokenLine[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new TokensFileError(`cannot read SLUICE_TOKENS_FILE ${path}: ${(error as Error).message}`);
  }
  return parseTokensFile(text, path);
}

/** The bearer token of an `Authorization` value, or null when there is none. */
export function bearerToken(authorization: string | null | undefined): string | null {
  const match = /^Bearer[ \t]+([^\s]+)[ \t]*$/i.exec(authorization ?? '');
  return match ? (match[1] as string) : null;
}

/**
 * The tokens in force. Open mode (no file) lets anyone in as {@link ANONYMOUS}; otherwise a
 * token must be listed. `reload()` swaps the whole set at once, or keeps the old one on error.
 */
export class Tokens {
  private byHash: Map<string, Principal>;

  private constructor(
    /** The tokens file, or null in open mode. */
    readonly path: string | null,
    lines: readonly TokenLine[],
  ) {
    this.byHash = Tokens.index(lines);
  }

  static open(): Tokens {
    return new Tokens(null, []);
  }

  static fromLines(path: string, lines: readonly TokenLine[]): Tokens {
    return new Tokens(path, lines);
  }

  static async load(path: string | null): Promise<Tokens> {
    return path === null ? Tokens.open() : new Tokens(path, await readTokensFile(path));
  }

  private static index(lines: readonly TokenLine[]): Map<string, Principal> {
    return new Map(lines.map((line) => [line.hash, Object.freeze({ name: line.name, role: line.role })]));
  }

  get isOpen(): boolean {
    return this.path === null;
  }

  get size(): number {
    return this.byHash.size;
  }

  /** Reads the file again; answers how many tokens are now in force. */
  async reload(): Promise<number> {
    if (this.path === null) return 0;
    this.byHash = Tokens.index(await readTokensFile(this.path));
    return this.byHash.size;
  }

  /** The principal of a bare token (e.g. from a graphql-ws connection_init payload). */
  principalOf(token: string | null): Principal | null {
    if (this.isOpen) return ANONYMOUS;
    return token === null ? null : (this.byHash.get(hashToken(token)) ?? null);
  }

  /** The principal of an `Authorization: Bearer TOKEN` value. */
  principalOfAuthorization(authorization: string | null | undefined): Principal | null {
    return this.principalOf(bearerToken(authorization));
  }

  /** Who sent a Fetch request: its bearer token's name and role; null when unknown or missing. */
  authenticate(request: Request): Principal | null {
    return this.principalOfAuthorization(request.headers.get('authorization'));
  }
}
