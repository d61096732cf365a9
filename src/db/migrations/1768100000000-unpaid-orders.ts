import { sqlMigration } from '../sql-migration.ts';

/**
 * How many orders each customer has waiting for payment, kept by the statement that writes
 * orders (src/actors/order-repository.ts): a placement takes a slot only while the count is under
 * MAX_UNPAID_ORDERS_PER_CUSTOMER, and an order that leaves `awaitingPayment` (paid, cancelled,
 * expired) gives its slot back. One row per customer, locked by the statement that changes it,
 * so the limit holds across replicas and concurrent requests.
 */
export const UnpaidOrders1768100000000 = sqlMigration('UnpaidOrders1768100000000', {
  up: [
    `
      CREATE TABLE customer_unpaid_orders (
        customer_id text    PRIMARY KEY,
        unpaid      integer NOT NULL
      )`,
    `
      INSERT INTO customer_unpaid_orders (customer_id, unpaid)
      SELECT customer_id, count(*)::int FROM orders WHERE status = 'awaitingPayment' GROUP BY customer_id`,
  ],
  down: ['DROP TABLE IF EXISTS customer_unpaid_orders'],
});
