/** The tokens file, roles, Host/Origin rules and the actor: plain functions, no server. */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { actorOf } from '../../src/auth/actor.js';
import { roleAllows } from '../../src/auth/roles.js';
import { readSecuritySettings } from '../../src/auth/settings.js';
import { hostAllowed, isLoopback, originAllowed, sitePolicyFor, siteRefusal } from '../../src/auth/site.js';
import { bearerToken, hashToken, newToken, parseTokensFile, Tokens, TokensFileError } from '../../src/auth/tokens.js';
import { CliError } from '../../src/cli/client.js';
import { runCli } from '../../src/cli/run.js';
import { tempDir } from '../support/e2e-http.js';

const HASH = 'a'.repeat(64);

describe('the tokens file', () => {
  it('given names, roles and hashes with comments, blank lines and CRLF, when parsed, then every token is read', () => {
    const text = `# ops team\r\nops admin ${HASH}  # on call\r\n\r\n  daemon worker ${'b'.repeat(64)}\nui viewer ${'c'.repeat(64)}`;
    expect(parseTokensFile(text, 'tokens')).toEqual([
      { name: 'ops', role: 'admin', hash: HASH },
      { name: 'daemon', role: 'worker', hash: 'b'.repeat(64) },
      { name: 'ui', role: 'viewer', hash: 'c'.repeat(64) },
    ]);
  });

  const broken: Array<[string, string, RegExp]> = [
    ['two fields', `ok admin ${HASH}\nops admin`, /^f:2: expected NAME ROLE SHA256_HEX, got 2 field\(s\)$/],
    ['four fields', `ops admin ${HASH} extra`, /^f:1: expected NAME ROLE SHA256_HEX, got 4/],
    ['an unknown role', `ops root ${HASH}`, /^f:1: role must be viewer, worker or admin, got "root"$/],
    ['a token in clear', 'ops admin sluice_abc', /^f:1: the third field must be the token's SHA-256/],
    ['an uppercase hash', `ops admin ${'A'.repeat(64)}`, /^f:1: the third field must be the token's SHA-256/],
    ['a name with a slash', `a/b admin ${HASH}`, /^f:1: name "a\/b" must be 1-64 letters/],
    ['a name used twice', `ops admin ${HASH}\nops viewer ${'b'.repeat(64)}`, /^f:2: the name ops is already used/],
    ['a hash used twice', `ops admin ${HASH}\nui viewer ${HASH}`, /^f:2: the same token is already listed/],
  ];
  for (const [what, text, message] of broken) {
    it(`given ${what}, when parsed, then the error names the file and line`, () => {
      expect(() => parseTokensFile(text, 'f')).toThrow(TokensFileError);
      expect(() => parseTokensFile(text, 'f')).toThrow(message);
    });
  }

  it('hashes tokens with SHA-256 and makes tokens of 256 random bits', () => {
    expect(hashToken('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    const tokens = new Set(Array.from({ length: 100 }, () => newToken()));
    expect(tokens.size).toBe(100);
    for (const token of tokens) expect(token).toMatch(/^sluice_[A-Za-z0-9_-]{43}$/);
  });

  it('reads a bearer token only from a well-formed Authorization value', () => {
    expect(bearerToken('Bearer abc')).toBe('abc');
    expect(bearerToken('bearer   abc ')).toBe('abc');
    expect(bearerToken('Basic abc')).toBeNull();
    expect(bearerToken('Bearer a b')).toBeNull();
    expect(bearerToken('Bearer')).toBeNull();
    expect(bearerToken(null)).toBeNull();
  });
});

describe('Tokens', () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => {
    dir = tempDir('sluice-tokens-');
  });
  afterEach(() => dir.remove());

  it('given a tokens file, when requests come, then a listed token is its name and role and anything else is null', async () => {
    const file = join(dir.path, 'tokens');
    writeFileSync(file, `ops admin ${hashToken('secret')}\n`);
    const tokens = await Tokens.load(file);
    const request = (authorization?: string) =>
      new Request('http://x/graphql', { headers: authorization ? { authorization } : {} });
    expect(tokens.authenticate(request('Bearer secret'))).toEqual({ name: 'ops', role: 'admin' });
    expect(tokens.authenticate(request('Bearer other'))).toBeNull();
    expect(tokens.authenticate(request())).toBeNull();
    expect(tokens.isOpen).toBe(false);
  });

  it('given open mode, then everyone is anonymous with the admin role', () => {
    const tokens = Tokens.open();
    expect(tokens.authenticate(new Request('http://x/'))).toEqual({ name: 'anonymous', role: 'admin' });
  });

  it('given a reload of a broken file, then it throws naming the line and the tokens in force stay', async () => {
    const file = join(dir.path, 'tokens');
    writeFileSync(file, `ops admin ${hashToken('one')}\n`);
    const tokens = await Tokens.load(file);
    writeFileSync(file, `ops admin ${hashToken('one')}\nbad line\n`);
    await expect(tokens.reload()).rejects.toThrow(/tokens:2: expected NAME ROLE/);
    expect(tokens.principalOf('one')).toEqual({ name: 'ops', role: 'admin' });
    writeFileSync(file, `ui viewer ${hashToken('two')}\n`);
    expect(await tokens.reload()).toBe(1);
    expect(tokens.principalOf('one')).toBeNull();
    expect(tokens.principalOf('two')).toEqual({ name: 'ui', role: 'viewer' });
  });

  it('given a missing file, when loaded, then the error names SLUICE_TOKENS_FILE and the path', async () => {
    await expect(Tokens.load(join(dir.path, 'nope'))).rejects.toThrow(/cannot read SLUICE_TOKENS_FILE .*nope/);
  });
});

describe('roles and actors', () => {
  it('orders viewer < worker < admin', () => {
    expect(roleAllows('admin', 'worker')).toBe(true);
    expect(roleAllows('worker', 'worker')).toBe(true);
    expect(roleAllows('worker', 'admin')).toBe(false);
    expect(roleAllows('viewer', 'worker')).toBe(false);
  });

  it("records the token's name, with x-sluice-actor only as a note beside it", () => {
    const ci = { name: 'ci', role: 'worker' } as const;
    expect(actorOf(ci, null)).toBe('ci');
    expect(actorOf(ci, ' alice ')).toBe('ci (on behalf of alice)');
    expect(actorOf(ci, 'a'.repeat(256))).toBe('ci');
    expect(actorOf(ci, 'evil\nline')).toBe('ci');
  });
});

describe('Host and Origin', () => {
  it('knows loopback names and addresses', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', 'app.localhost', '::1', '[::1]']) {
      expect(isLoopback(host), host).toBe(true);
    }
    for (const host of ['0.0.0.0', '10.0.0.1', 'example.com', '::', 'localhost.example.com']) {
      expect(isLoopback(host), host).toBe(false);
    }
  });

  it('on loopback, accepts loopback Host names and ALLOWED_HOSTS only', () => {
    const policy = sitePolicyFor('127.0.0.1', ['sluice.internal'], []);
    for (const host of ['127.0.0.1:4000', 'localhost:4000', '[::1]:4000', 'sluice.internal', 'SLUICE.internal:80']) {
      expect(hostAllowed(policy, host), host).toBe(true);
    }
    for (const host of ['attacker.example', 'attacker.example:4000', '', 'a b', '127.0.0.1.attacker.example']) {
      expect(hostAllowed(policy, host), host).toBe(false);
    }
  });

  it('on a public address without ALLOWED_HOSTS, accepts any Host', () => {
    expect(hostAllowed(sitePolicyFor('0.0.0.0', [], []), 'sluice.example.com')).toBe(true);
    expect(hostAllowed(sitePolicyFor('0.0.0.0', ['a.example'], []), 'b.example')).toBe(false);
  });

  it('accepts the same origin and listed ones, never null', () => {
    const policy = sitePolicyFor('127.0.0.1', [], ['https://ui.example.com']);
    expect(originAllowed(policy, 'http://127.0.0.1:4000', '127.0.0.1:4000')).toBe(true);
    expect(originAllowed(policy, 'https://ui.example.com', '127.0.0.1:4000')).toBe(true);
    expect(originAllowed(policy, 'http://127.0.0.1:4001', '127.0.0.1:4000')).toBe(false);
    expect(originAllowed(policy, 'null', '127.0.0.1:4000')).toBe(false);
    expect(originAllowed(policy, 'https://evil.example', '127.0.0.1:4000')).toBe(false);
    expect(siteRefusal(policy, '127.0.0.1:4000', undefined)).toBeNull();
    expect(siteRefusal(policy, 'evil.example', undefined)).toMatch(/ALLOWED_HOSTS/);
    expect(siteRefusal(policy, '127.0.0.1:4000', 'https://evil.example')).toMatch(/CORS_ORIGINS/);
  });
});

describe('security settings', () => {
  const refused: Array<[Record<string, string>, RegExp]> = [
    [{ CORS_ORIGINS: '*' }, /CORS_ORIGINS must list origins, not \*/],
    [{ CORS_ORIGINS: 'https://a.example,null' }, /not null/],
    [{ CORS_ORIGINS: 'https://a.example/path' }, /is not an origin/],
    [{ CORS_ORIGINS: 'ftp://a.example' }, /is not an origin/],
    [{ GRAPHIQL: 'maybe' }, /GRAPHIQL must be true or false/],
    [{ SLUICE_ALLOW_ANONYMOUS: 'yes' }, /SLUICE_ALLOW_ANONYMOUS must be 1 or 0/],
    [{ GRAPHQL_MAX_DEPTH: '0' }, /GRAPHQL_MAX_DEPTH must be a positive integer/],
    [{ MAX_CONNECTIONS: 'lots' }, /MAX_CONNECTIONS must be a positive integer/],
  ];
  for (const [env, message] of refused) {
    it(`refuses ${JSON.stringify(env)}`, () => {
      expect(() => readSecuritySettings(env)).toThrow(message);
    });
  }

  it('reads every limit from its variable', () => {
    const settings = readSecuritySettings({
      SLUICE_TOKENS_FILE: '/etc/sluice/tokens',
      CORS_ORIGINS: 'https://ui.example.com, http://localhost:5173',
      ALLOWED_HOSTS: 'Sluice.Internal',
      GRAPHIQL: 'false',
      GRAPHQL_MAX_ALIASES: '7',
      MAX_SUBSCRIPTIONS_PER_TOKEN: '3',
    });
    expect(settings).toMatchObject({
      tokensFile: '/etc/sluice/tokens',
      corsOrigins: ['https://ui.example.com', 'http://localhost:5173'],
      allowedHosts: ['sluice.internal'],
      graphiql: false,
      limits: { maxAliases: 7 },
      connections: { maxSubscriptionsPerToken: 3 },
    });
  });
});

describe('sluice token create', () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => {
    dir = tempDir('sluice-token-cli-');
  });
  afterEach(() => dir.remove());

  it('given a name and role, then it prints a token once and appends only its hash, in a file only its owner reads', async () => {
    const file = join(dir.path, 'tokens');
    writeFileSync(file, `# tokens\nold viewer ${'d'.repeat(64)}`, { mode: 0o600 });
    const token = await runCli(['token', 'create', 'ci', '--role', 'worker', '--file', file], {});
    expect(token).toMatch(/^sluice_/);
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain(token as string);
    expect(text).toBe(`# tokens\nold viewer ${'d'.repeat(64)}\nci worker ${hashToken(token as string)}\n`);
    const fresh = join(dir.path, 'fresh');
    const other = await runCli(['token', 'create', 'ops', '--role', 'admin'], { SLUICE_TOKENS_FILE: fresh });
    expect(readFileSync(fresh, 'utf8')).toBe(`ops admin ${hashToken(other as string)}\n`);
    expect(statSync(fresh).mode & 0o777).toBe(0o600);
    expect((await Tokens.load(fresh)).principalOf(other as string)).toEqual({ name: 'ops', role: 'admin' });
  });

  const wrong: Array<[string[], Record<string, string>, RegExp]> = [
    [['token', 'create', 'ci', '--role', 'root', '--file', 'F'], {}, /--role must be viewer, worker or admin/],
    [['token', 'create', 'ci', '--file', 'F'], {}, /give the token a role/],
    [['token', 'create', 'c i', '--role', 'admin', '--file', 'F'], {}, /must be 1-64 letters/],
    [['token', 'create', 'ci', '--role', 'admin'], {}, /give --file PATH or set SLUICE_TOKENS_FILE/],
  ];
  for (const [args, env, message] of wrong) {
    it(`refuses ${args.join(' ')}`, async () => {
      const argv = args.map((a) => (a === 'F' ? join(dir.path, 'tokens') : a));
      await expect(runCli(argv, env)).rejects.toThrow(CliError);
      await expect(runCli(argv, env)).rejects.toThrow(message);
    });
  }

  it('given a name already in the file, or a broken file, then it appends nothing', async () => {
    const file = join(dir.path, 'tokens');
    writeFileSync(file, `ci worker ${HASH}\n`);
    await expect(runCli(['token', 'create', 'ci', '--role', 'admin', '--file', file], {})).rejects.toThrow(
      /already has a token named ci/,
    );
    writeFileSync(file, 'broken\n');
    await expect(runCli(['token', 'create', 'x', '--role', 'admin', '--file', file], {})).rejects.toThrow(
      /tokens:1: expected NAME ROLE SHA256_HEX.*fix the file first/,
    );
    expect(readFileSync(file, 'utf8')).toBe('broken\n');
  });
});
