import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { importsOf, LAYERS, specifiersOf, unitOf, violations } from '../support/architecture.ts';
import { ROOT } from '../support/manifests.ts';
import { commitStatement } from '../../src/actors/order-commit.ts';
import { chargeGuard } from '../../src/payment/charge-guard.ts';

describe('the architecture (docs/architecture.md)', () => {
  it('reads imports the way TypeScript writes them', () => {
    const source = [
      "import { a } from './a.ts';",
      "import type { B } from '../b/b.ts';",
      "export { c } from './c.ts';",
      "import './side-effect.ts';",
      "const d = await import('../d.ts');",
      "import { e } from 'koa';",
    ].join('\n');
    expect(specifiersOf(source)).to.deep.equal(['./a.ts', '../b/b.ts', './c.ts', './side-effect.ts', '../d.ts']);
    expect(unitOf('actors/order-actor.ts')).to.equal('actors');
    expect(unitOf('main.ts')).to.equal('main');
  });

  it('refuses an upward import, an import between features side by side, and one leaving src/', () => {
    expect(violations([{ from: 'actors/order-actor.ts', to: 'machines/order/registry.ts' }])).to.deep.equal([]);
    expect(violations([{ from: 'actors/x.ts', to: 'payment/pay.ts' }])).to.have.length(1);
    expect(violations([{ from: 'views/x.ts', to: 'notifications/feed.ts' }])[0]).to.match(/side by side/);
    expect(violations([{ from: 'http/x.ts', to: 'app.ts' }])[0]).to.match(/above it/);
    expect(violations([{ from: 'payment/x.ts', to: '../dev/fake-gateway.ts' }])[0]).to.match(/outside src/);
    expect(violations([{ from: 'newthing/x.ts', to: 'db/pg.ts' }])[0]).to.match(/has no layer/);
  });

  it('keeps payment out of the actors: the statement that writes orders touches payment tables only through the guard wired in', () => {
    const mentionsPayment = (sql: string) => /payment_attempts|orphan/.test(sql);
    const bare = commitStatement();
    expect(mentionsPayment(bare.plain) || mentionsPayment(bare.traced)).to.equal(false);
    const paying = commitStatement(chargeGuard);
    expect(mentionsPayment(paying.plain) && mentionsPayment(paying.traced)).to.equal(true);
    expect(paying.traced).to.include("'orphaned', 'pending', now(), now(), i.traceparent");
    for (const file of ['order-commit.ts', 'order-store.ts', 'order-step.ts']) {
      expect(readFileSync(join(ROOT, 'src/actors', file), 'utf8'), file).not.to.match(/payment_attempts|orphan/);
    }
  });

  it('holds for src/: every arrow points down', () => {
    const imports = importsOf(join(ROOT, 'src'));
    expect(imports.length).to.be.greaterThan(200);
    expect(violations(imports)).to.deep.equal([]);
  });

  it('places every unit of src/ in a layer, and docs/architecture.md names each', () => {
    const units = new Set(readdirSync(join(ROOT, 'src')).filter((f) => !f.endsWith('.d.ts')).map((f) => unitOf(f)));
    const placed = new Set(LAYERS.flat());
    expect([...units].filter((u) => !placed.has(u)), 'units without a layer').to.deep.equal([]);
    const doc = readFileSync(join(ROOT, 'docs/architecture.md'), 'utf8');
    for (const unit of units) expect(doc, unit).to.match(new RegExp(`\`src/${unit}(/|\\.ts)?\``));
  });

});
