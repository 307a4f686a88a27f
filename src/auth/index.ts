/**
 * Authentication and authorization for every route of the server.
 *
 * - `Tokens.authenticate(request)`: a Fetch `Request`'s `Authorization: Bearer TOKEN` as
 *   `{ name, role }`, or null when missing or unknown (answer 401). In open mode (no
 *   SLUICE_TOKENS_FILE) everyone is `anonymous` with the admin role.
 * - `roleAllows(role, needed)`: viewer < worker < admin. `/metrics` and every read need viewer.
 * - `siteRefusal(policy, host, origin)`: the Host and Origin checks every route must apply.
 */
export { actorOf, ON_BEHALF_OF_HEADER } from './actor.js';
export { isRole, type Principal, ROLES, type Role, roleAllows, roleNeeded } from './roles.js';
export { corsAllowed, isLoopback, type SitePolicy, sitePolicyFor, siteRefusal } from './site.js';
export { ANONYMOUS, bearerToken, hashToken, newToken, Tokens, TokensFileError } from './tokens.js';
