/** The actor recorded on events: always the token's name; a client may only add whom it acts for. */
import type { Principal } from './roles.js';

export const ON_BEHALF_OF_HEADER = 'x-sluice-actor';

/** `NAME` or `NAME (on behalf of NOTE)`; a note too long, empty or with control characters is left out. */
export function actorOf(principal: Principal, onBehalfOf: string | null | undefined): string {
  const note = onBehalfOf?.trim();
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (!note || note.length > 255 || /[\u0000-\u001f\u007f]/.test(note)) return principal.name;
  return `${principal.name} (on behalf of ${note})`;
}
