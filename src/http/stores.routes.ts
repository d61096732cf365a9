import type { DataSource } from 'typeorm';
import { ForbiddenError } from '../errors.ts';
import { getMenu, replaceMenu } from '../catalog/menus.ts';
import { defineRoute, type Route } from './route.ts';
import { MenuSchema, StoreParams } from './schemas.ts';

/** `replaced` is told of each store whose menu was replaced (after the commit). */
export function storeRoutes(deps: { db: DataSource; replaced?: (storeId: string) => void }): Route[] {
  return [
    defineRoute({
      method: 'put',
      path: '/stores/:storeId/menu',
      summary: 'A store replaces its whole menu.',
      tag: 'stores',
      auth: true,
      params: StoreParams,
      body: MenuSchema,
      bodyRequired: true,
      responses: { 200: { description: 'the menu as stored', schema: MenuSchema } },
      errors: [400, 401, 403, 413, 415],
      async handle(ctx, { params, body, principal }) {
        const own = principal.role === 'store' && principal.sub === params.storeId;
        if (!own && principal.role !== 'admin') {
          throw new ForbiddenError('only the store itself may change its menu', { storeId: params.storeId });
        }
        ctx.body = await replaceMenu(deps.db, params.storeId, body);
        deps.replaced?.(params.storeId);
      },
    }),
    defineRoute({
      method: 'get',
      path: '/stores/:storeId/menu',
      summary: "A store's menu (empty when the store has none).",
      tag: 'stores',
      auth: true,
      params: StoreParams,
      responses: { 200: { description: 'the menu', schema: MenuSchema } },
      errors: [401],
      async handle(ctx, { params }) {
        ctx.body = await getMenu(deps.db, params.storeId);
      },
    }),
  ];
}
