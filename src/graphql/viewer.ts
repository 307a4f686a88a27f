/** Who is asking, so a page can disable what the caller's role may not do. */
import { builder } from './builder.js';

const RoleEnum = builder.enumType('Role', {
  description: 'What a caller may do: VIEWER reads, WORKER also runs the run lifecycle, ADMIN also edits limits.',
  values: ['VIEWER', 'WORKER', 'ADMIN'] as const,
});

interface Viewer {
  name: string;
  role: 'VIEWER' | 'WORKER' | 'ADMIN';
}

const ViewerType = builder.objectRef<Viewer>('Viewer').implement({
  fields: (t) => ({
    name: t.exposeString('name', {
      description: 'The token\u2019s name; "anonymous" when the server runs without tokens.',
    }),
    role: t.expose('role', { type: RoleEnum }),
  }),
});

builder.queryFields((t) => ({
  viewer: t.field({
    type: ViewerType,
    description:
      "The caller: its token's name and role. Without tokens (open mode, loopback only) everyone is an anonymous ADMIN.",
    resolve: (_root, _args, ctx): Viewer => ({
      name: ctx.principal.name,
      role: ctx.principal.role.toUpperCase() as Viewer['role'],
    }),
  }),
}));
