import { expect } from 'chai';
import { measureViews } from '../../src/views/status.ts';
import { eventually, request, startSystem, type Parties, type TestSystem } from '../support/system.ts';

interface ViewState {
  view: string;
  eventsBehind: number;
  lagSeconds: number;
  oldestUnappliedAt: string | null;
  lastAppliedAt: string | null;
}

/** Each view reports how far it trails the journal; a stalled view's lag grows, and shrinks once it runs again. */
describe('views: lag', function () {
  this.timeout(60_000);
  let sys: TestSystem;
  let p: Parties;

  before(async () => {
    sys = await startSystem({ name: 'views_lag' });
    p = await sys.newParties();
  });
  after(async () => {
    await sys?.close();
  });

  const status = async (): Promise<Record<string, ViewState>> => {
    const res = await sys.request('GET', '/views/_status', { token: p.admin });
    expect(res.status).to.equal(200);
    return Object.fromEntries(res.body.views.map((v: ViewState) => [v.view, v]));
  };
  const metric = async (view: string): Promise<number | undefined> => {
    const text = (await request<string>(sys.baseUrl, 'GET', '/metrics')).body;
    const match = new RegExp(`^baedal_view_lag_seconds\\{view="${view}"\\} ([0-9.e+-]+)$`, 'm').exec(text);
    return match ? Number(match[1]) : undefined;
  };

  it('reports each view caught up when nothing is owed', async () => {
    const order = await sys.placeOrder(p);
    await sys.drive(p, order.id, ['pay']);
    const views = await eventually(async () => {
      const s = await status();
      return Object.values(s).every((v) => v.eventsBehind === 0 && v.lastAppliedAt !== null) && s;
    }, 'every view to catch up and note when it applied');
    expect(Object.keys(views)).to.deep.equal(['customer-orders', 'store-orders', 'store-food-counts', 'rider-delivery-counts', 'deliveries']);
    for (const v of Object.values(views)) {
      expect(v.lagSeconds, v.view).to.equal(0);
      expect(v.oldestUnappliedAt, v.view).to.equal(null);
      expect(v.lastAppliedAt, v.view).to.be.a('string');
    }
    expect(await metric('customer-orders')).to.equal(0);
  });

  it('a view that cannot apply falls behind, alone: its lag grows (status, metric, answer header), then shrinks to 0 once it runs again', async () => {
    // A real failure in the view's own statement: it stops applying, the others go on.
    await sys.runtime.db.query(`
      CREATE OR REPLACE FUNCTION test_stall() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'the rider counts are stalled'; END $$`);
    await sys.runtime.db.query('CREATE TRIGGER test_stall BEFORE INSERT OR UPDATE ON view_rider_delivery_counts FOR EACH ROW EXECUTE FUNCTION test_stall()');
    let stalled = true;
    try {
      const orders: { id: string }[] = [];
      for (let i = 0; i < 3; i += 1) {
        const order = await sys.placeOrder(p);
        await sys.drive(p, order.id, ['pay', 'accept', 'start-cooking', 'finish-cooking']);
        orders.push(order);
      }
      // Everything before the picks is applied first, so that no earlier event of these orders can
      // travel in a failing batch with a pick: what the view then owes is exactly the three picks.
      // (Measured afresh: the status the service answers may be a second old.)
      const names = Object.keys(await status());
      await eventually(async () => (await measureViews(sys.runtime.pg, names)).views.every((v) => v.eventsBehind === 0), 'every view to catch up before the picks');
      for (const order of orders) await sys.drive(p, order.id, ['pick']);
      // Each order's pick (the event that moves the count) is owed.
      const first = await eventually(async () => {
        const v = (await status())['rider-delivery-counts']!;
        return v.eventsBehind === 3 && v.lagSeconds > 0 && v;
      }, 'the stalled view to fall behind');
      expect(first.oldestUnappliedAt).to.be.a('string');
      // It keeps growing while the view stands still…
      const later = await eventually(async () => {
        const v = (await status())['rider-delivery-counts']!;
        return v.lagSeconds >= first.lagSeconds + 1 && v;
      }, 'the lag to grow');
      expect(later.eventsBehind).to.equal(3);
      expect(await metric('rider-delivery-counts')).to.be.greaterThan(1);
      const answer = await sys.request('GET', `/views/riders/${p.riderId}/delivery-count`, { token: p.rider });
      expect(answer.body).to.deep.equal({ riderId: p.riderId, count: 0 });
      expect(Number(answer.headers.get('x-view-lag-ms'))).to.be.greaterThan(1000);
      expect(Number(answer.headers.get('x-view-events-behind'))).to.equal(3);
      // The measure scans a bounded window at each end of the unsettled events; beyond it, it says so.
      const narrow = await measureViews(sys.runtime.pg, ['rider-delivery-counts'], 1);
      expect(narrow.complete).to.equal(false);
      expect(narrow.views[0]!.eventsBehind).to.be.within(1, 2);
      const wide = await measureViews(sys.runtime.pg, ['rider-delivery-counts'], 1000);
      expect(wide.complete).to.equal(true);
      expect(wide.views[0]!.eventsBehind).to.equal(3);
      // …while the other views, in the same group, are caught up.
      const others = await eventually(async () => {
        const s = await status();
        return Object.values(s).every((v) => v.view === 'rider-delivery-counts' || v.eventsBehind === 0) && s;
      }, 'the other views to stay caught up');
      expect(others['customer-orders']!.lagSeconds).to.equal(0);
      const mine = (await sys.request('GET', `/views/customers/${p.customerId}/orders`, { token: p.customer })).body as { orderId: string; status: string }[];
      expect(mine.find((o) => o.orderId === orders[2]!.id)).to.include({ status: 'pickedUp' });

      await sys.runtime.db.query('DROP TRIGGER test_stall ON view_rider_delivery_counts');
      stalled = false;
      // An operator replays what failed rather than wait for the next backoff.
      expect((await sys.request('POST', '/admin/failed-events/replay', { token: p.admin, body: { consumer: 'view.rider-delivery-counts' } })).status).to.equal(200);
      const caughtUp = await eventually(async () => {
        const v = (await status())['rider-delivery-counts']!;
        return v.eventsBehind === 0 && v;
      }, 'the view to catch up once it runs again', 15_000);
      expect(caughtUp.lagSeconds).to.equal(0);
      expect(Date.parse(caughtUp.lastAppliedAt!)).to.be.at.least(Date.parse(first.oldestUnappliedAt!));
      expect(await metric('rider-delivery-counts')).to.equal(0);
      const now = await sys.request('GET', `/views/riders/${p.riderId}/delivery-count`, { token: p.rider });
      expect(now.body).to.deep.equal({ riderId: p.riderId, count: 3 });
      expect(now.headers.get('x-view-lag-ms')).to.equal('0');
    } finally {
      if (stalled) await sys.runtime.db.query('DROP TRIGGER IF EXISTS test_stall ON view_rider_delivery_counts');
      await sys.runtime.db.query('DROP FUNCTION IF EXISTS test_stall()');
    }
  });
});
