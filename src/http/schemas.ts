import { z } from 'zod';
import { orderMachines } from '../machines/order/registry.ts';

/** The statuses of every order machine version this build runs (the states of the versions). */
export const ORDER_STATUSES = orderMachines().allStatuses() as [string, ...string[]];

/**
 * The one charset of ids (store, food, area, token `sub`, request ids up to 128): ASCII letters,
 * digits and `. _ : @ -`, 1 to 100 characters. Nothing else reaches PostgreSQL, a log or a URL.
 * `.` and `..` alone are no ids: as a URL path segment they mean "here" and "up", so a client's
 * URL library removes them and the id could never be addressed (`/stores/./menu` is `/stores/menu`).
 * The three branches say "not those two" without a look-ahead, which JSON Schema tools read alike.
 */
export const ID_PATTERN = /^(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]{0,99}|\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]{0,98}|\.\.[A-Za-z0-9._:@-]{1,98})$/;
export const ID_RULE = '1-100 of A-Z a-z 0-9 . _ : @ -, other than . and ..';

export const idString = (what: string) => z.string().regex(ID_PATTERN, `must be ${ID_RULE}`).describe(what);

/*
 * The rules of free text, each a regular expression with the `u` flag, so the OpenAPI document
 * states them exactly (JSON Schema patterns are ECMA-262 expressions; with `u`, `.` and a class
 * take a whole code point and \p{…} names a Unicode category):
 * - no control character (Cc: C0 with NUL and newline, DEL, C1 such as U+0085 and U+009B);
 * - no line or paragraph separator (U+2028, U+2029: line breaks to JavaScript and many logs);
 * - no format character (Cf: invisible, and some change how the text around them reads: bidi
 *   embeddings, overrides and isolates U+202A–U+202E and U+2066–U+2069, marks, zero-width
 *   characters, the soft hyphen, the BOM, tags);
 * - no lone UTF-16 surrogate (Cs: with `u`, an unpaired half is a code point of its own);
 * - something other than white space;
 * - at most `max` characters (code points, as JSON Schema and PostgreSQL count them).
 */
const NO_CONTROL = /^\P{Cc}*$/u;
const NO_SEPARATOR = /^[^\u2028\u2029]*$/u;
const NO_FORMAT = /^\P{Cf}*$/u;
const NO_LONE_SURROGATE = /^\P{Cs}*$/u;
const NOT_BLANK = /\S/u;
const atMost = (max: number) => new RegExp(`^[\\s\\S]{0,${max}}$`, 'u');

/** Single-line free text, the one rule of every text field (names, address lines, reasons); stored NFC-normalised and trimmed. */
export const text = (max: number) =>
  z
    .string()
    .regex(NO_CONTROL, 'must not contain control characters (NUL, newline, U+0085, …)')
    .regex(NO_SEPARATOR, 'must not contain line or paragraph separators (U+2028, U+2029)')
    .regex(NO_FORMAT, 'must not contain invisible format characters (bidi controls U+202A–U+202E and U+2066–U+2069, zero-width characters, BOM, …)')
    .regex(NO_LONE_SURROGATE, 'must not contain a lone UTF-16 surrogate')
    .regex(NOT_BLANK, 'must not be empty')
    .regex(atMost(max), `must be at most ${max} characters`)
    // One spelling for what reads the same, without the spaces around it.
    .transform((v) => v.normalize('NFC').trim())
    .pipe(z.string());

/** Bounds of a menu and an order; also in the README ("Authorization and limits"). */
export const LIMITS = {
  maxPrice: 10_000_000,
  maxQty: 100,
  maxLines: 50,
  maxMenuItems: 500,
  nameLength: 200,
  addressLineLength: 300,
  reasonLength: 500,
} as const;

export const MenuItemSchema = z
  .object({
    foodId: idString('food id, unique within the store'),
    name: text(LIMITS.nameLength),
    price: z.number().int().min(0).max(LIMITS.maxPrice).describe('price in the smallest currency unit'),
    available: z.boolean(),
  })
  .strict();

export const MenuSchema = z
  .array(MenuItemSchema)
  .max(LIMITS.maxMenuItems)
  .describe('each foodId once (a repeated one is refused with 400)')
  .superRefine((items, ctx) => {
    const seen = new Set<string>();
    items.forEach((item, index) => {
      if (seen.has(item.foodId)) ctx.addIssue({ code: 'custom', path: [index, 'foodId'], message: `duplicate foodId ${item.foodId}` });
      seen.add(item.foodId);
    });
  });

export const AddressSchema = z
  .object({ area: idString('delivery area; riders see cooked orders by area'), line: text(LIMITS.addressLineLength) })
  .strict();

export const PlaceOrderSchema = z
  .object({
    storeId: idString('the store to order from'),
    items: z
      .array(z.object({ foodId: idString('a food on the store menu'), qty: z.number().int().min(1).max(LIMITS.maxQty) }).strict())
      .min(1)
      .max(LIMITS.maxLines)
      .describe('each foodId once, on one line (a repeated one is refused with 400, not merged)')
      .superRefine((items, ctx) => {
        // Each food once: merged lines would slip past the per-line quantity limit.
        const seen = new Set<string>();
        items.forEach((item, index) => {
          if (seen.has(item.foodId)) ctx.addIssue({ code: 'custom', path: [index, 'foodId'], message: `duplicate foodId ${item.foodId}: order each food on one line` });
          seen.add(item.foodId);
        });
      }),
    address: AddressSchema,
  })
  .strict();

export const RejectSchema = z.object({ reason: text(LIMITS.reasonLength) }).strict();
export const CancelSchema = z.object({ reason: text(LIMITS.reasonLength).optional() }).strict();
export const EmptyBodySchema = z.object({}).strict();

export const StoreParams = z.object({ storeId: idString('store id') }).strict();
export const OrderParams = z.object({ id: z.uuid().describe('order id') }).strict();

/** The query of a route that takes none: any parameter is refused. */
export const NoQuery = z.object({}).strict();

/** `?limit=`: 1 to 200 in plain decimal digits (no sign, `1e2`, `0x10` or leading zeros), 50 when absent. */
const Limit = z
  .string()
  .regex(/^(?:[1-9][0-9]?|1[0-9]{2}|200)$/, 'must be a whole number from 1 to 200')
  .optional()
  .transform((v) => (v === undefined ? 50 : Number(v)))
  .describe('how many, 1 to 200 (default 50)');

export const ListOrdersQuery = z
  .object({
    status: z.enum(ORDER_STATUSES).optional(),
    area: idString('delivery area').optional(),
    limit: Limit,
  })
  .strict();

export const LimitQuery = z.object({ limit: Limit }).strict();

export const DeliveriesQuery = z
  .object({
    area: idString('the delivery area riders work in'),
    limit: Limit,
  })
  .strict();

export const ReplaySchema = z
  .object({
    consumer: idString('only this consumer').optional(),
    orderId: z.uuid().optional().describe('only this order'),
  })
  .strict();

/** A machine version (a whole number from 1); the current one when absent. */
const MachineVersionParam = z
  .string()
  .regex(/^[1-9][0-9]{0,5}$/, 'must be a machine version, a whole number from 1')
  .transform(Number)
  .optional()
  .describe('a version of the order machine (the current one when absent)');

export const MachineGraphQuery = z.object({ version: MachineVersionParam }).strict();

/** The page reads `orderId` itself and shows what the API says about it; nothing else is taken. */
export const StatechartQuery = z.object({ orderId: idString('an order to follow live').optional(), version: MachineVersionParam }).strict();

/** What If-Match may say: `*`, or one order version as an ETag (`"3"`, `W/"3"`, `3`). */
export const IF_MATCH = /^(?:\*|(?:W\/)?"[0-9]{1,9}"|[0-9]{1,9})$/;

/** Schemas of the request headers routes declare (by lower-case name) in `requestHeaders`. */
export const HEADER_SCHEMAS: Record<string, z.ZodType> = {
  'idempotency-key': z
    .string()
    .regex(/^[\x21-\x7e]{1,200}$/, 'must be 1-200 visible ASCII characters')
    .optional()
    .describe('a key of your choice; a retry with the same key and body returns the same order'),
  'if-match': z
    .string()
    .regex(IF_MATCH, 'must be an ETag of this API, like "3" (or *)')
    .optional()
    .describe('an ETag of this API, like "3" (an order version; W/"3" and 3 are read alike), or * for any version'),
};
